//! Email through SMTP (lettre): STARTTLS, implicit TLS or none, optional
//! authentication, several recipients; multipart text + HTML with the
//! incident report attached. The events of one rollback thread together:
//! the first (`rollback_started`) carries the thread's Message-ID, the
//! others answer it with In-Reply-To and References. A notification keeps
//! its Message-ID across retries, so a receiver can drop a duplicate.

use std::time::{Duration, SystemTime};

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::render;
use super::{Event, Kind, SendError};
use crate::config::{EmailNotifier, SmtpTls};

/// An email, rendered; building the MIME message from it cannot lose text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub message_id: String,
    /// The thread's first message, for In-Reply-To and References.
    pub in_reply_to: Option<String>,
    /// File name and Markdown of the incident report.
    pub report: Option<(String, String)>,
}

/// What may stand in a Message-ID's domain part.
fn id_domain(host: &str) -> String {
    let clean: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    if clean.is_empty() {
        "rollbackd.invalid".into()
    } else {
        format!("rollbackd.{clean}")
    }
}

fn id_local(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Backticks in the shared wording mark commands: show them as code.
fn html_inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{}</code>", html_escape(part)));
        } else {
            out.push_str(&html_escape(part));
        }
    }
    out
}

fn html(e: &Event, report_attached: bool) -> String {
    let color = match render::severity(e) {
        "critical" => "#b00020",
        "resolved" => "#1b7f3b",
        "info" => "#555555",
        _ => "#b26a00",
    };
    let mut h = String::from(
        "<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif; font-size: 14px;\">\n",
    );
    h.push_str(&format!(
        "<h2 style=\"color: {color};\">{}</h2>\n",
        html_escape(&render::headline(e))
    ));
    if let Some(r) = &e.reason {
        h.push_str(&format!("<p>{}</p>\n", html_inline(r)));
    }
    h.push_str("<table cellpadding=\"4\">\n");
    for (k, v) in render::facts(e) {
        h.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
            html_escape(k),
            html_escape(&v)
        ));
    }
    h.push_str("</table>\n");
    if !e.checks.is_empty() {
        let title = if e.kind == Kind::WatchBlind {
            "Checks that could not decide"
        } else {
            "Failing checks"
        };
        h.push_str(&format!("<h3>{title}</h3>\n<ul>\n"));
        for c in &e.checks {
            let value = c
                .value
                .map(crate::engine::fmt_value)
                .unwrap_or_else(|| "no value".into());
            h.push_str(&format!(
                "<li><b>{}</b> ({}, {}): <code>{}</code> threshold <code>{}</code> <code>{}</code>",
                html_escape(&c.name),
                html_escape(&c.kind),
                html_escape(&c.result),
                html_escape(&value),
                html_escape(&c.threshold),
                html_escape(&render::labels(c))
            ));
            if !c.detail.is_empty() {
                h.push_str(&format!("<br>{}", html_escape(&c.detail)));
            }
            if let Some(q) = &c.query {
                h.push_str(&format!("<br><code>{}</code>", html_escape(q)));
            }
            if let Some(g) = &c.graph_url {
                h.push_str(&format!(
                    "<br><a href=\"{}\">Prometheus graph</a>",
                    html_escape(g)
                ));
            }
            h.push_str("</li>\n");
        }
        h.push_str("</ul>\n");
    }
    if !e.errors.is_empty() {
        h.push_str("<h3>Errors</h3>\n<pre>");
        for err in &e.errors {
            h.push_str(&html_escape(err));
            h.push('\n');
        }
        h.push_str("</pre>\n");
    }
    if let Some(r) = &e.report {
        h.push_str(&format!(
            "<p>Incident report: <code>{}</code>{}</p>\n",
            html_escape(&r.path),
            if report_attached { " (attached)" } else { "" }
        ));
    }
    let steps = render::next_steps(e);
    if !steps.is_empty() {
        h.push_str("<h3>What you can do next</h3>\n<ul>\n");
        for s in steps {
            h.push_str(&format!("<li>{}</li>\n", html_inline(&s)));
        }
        h.push_str("</ul>\n");
    }
    h.push_str(&format!(
        "<p style=\"color: #777777; font-size: 12px;\">rollbackd on {} · {} · event {}</p>\n</body></html>\n",
        html_escape(&e.host),
        e.kind.as_str(),
        html_escape(&e.id)
    ));
    h
}

/// The email for one notification.
pub fn render(e: &Event, notification_id: &str) -> Rendered {
    let domain = id_domain(&e.host);
    let root = e
        .rollback_id
        .as_ref()
        .map(|id| format!("<rollback.{}@{domain}>", id_local(id)));
    let starts_thread = matches!(e.kind, Kind::RollbackStarted | Kind::WouldRollBack);
    let (message_id, in_reply_to) = match root {
        Some(root) if starts_thread => (root, None),
        Some(root) => (
            format!("<{}@{domain}>", id_local(notification_id)),
            Some(root),
        ),
        None => (format!("<{}@{domain}>", id_local(notification_id)), None),
    };
    let report = e.report.as_ref().map(|r| {
        let name = std::path::Path::new(&r.path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "incident-report.md".into());
        (name, r.markdown.clone())
    });
    Rendered {
        subject: render::subject(e),
        text: render::text(e, report.is_some()),
        html: html(e, report.is_some()),
        message_id,
        in_reply_to,
        report,
    }
}

fn mailbox(what: &str, s: &str) -> Result<Mailbox, SendError> {
    s.parse()
        .map_err(|err| SendError(format!("{what} {s:?} is not an email address: {err}")))
}

/// The MIME message: `multipart/alternative` (text, HTML), inside
/// `multipart/mixed` with the report when there is one.
pub fn message(n: &EmailNotifier, r: &Rendered, date: SystemTime) -> Result<Message, SendError> {
    let mut b = Message::builder()
        .from(mailbox("from", &n.from)?)
        .subject(r.subject.clone())
        .date(date)
        .message_id(Some(r.message_id.clone()))
        .user_agent(concat!("rollbackd/", env!("CARGO_PKG_VERSION")).into());
    for to in &n.to {
        b = b.to(mailbox("to", to)?);
    }
    if let Some(root) = &r.in_reply_to {
        b = b.in_reply_to(root.clone()).references(root.clone());
    }
    let body = MultiPart::alternative()
        .singlepart(SinglePart::plain(r.text.clone()))
        .singlepart(SinglePart::html(r.html.clone()));
    let built = match &r.report {
        Some((name, md)) => {
            let ct = ContentType::parse("text/markdown; charset=utf-8")
                .unwrap_or(ContentType::TEXT_PLAIN);
            b.multipart(
                MultiPart::mixed()
                    .multipart(body)
                    .singlepart(Attachment::new(name.clone()).body(md.clone(), ct)),
            )
        }
        None => b.multipart(body),
    };
    built.map_err(|err| SendError(format!("cannot build the email: {err}")))
}

fn transport(n: &EmailNotifier) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
    let params = || -> Result<TlsParameters, SendError> {
        let mut b = TlsParameters::builder(n.smtp_host.clone());
        if let Some(path) = &n.ca_file {
            let pem = std::fs::read(path).map_err(|err| {
                SendError(format!("cannot read ca_file {}: {err}", path.display()))
            })?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|err| SendError(format!("ca_file {}: {err}", path.display())))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls()
            .map_err(|err| SendError(format!("TLS setup: {err}")))
    };
    let tls = match n.tls {
        SmtpTls::StartTls => Tls::Required(params()?),
        SmtpTls::Tls => Tls::Wrapper(params()?),
        SmtpTls::None => Tls::None,
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(n.smtp_host.clone())
        .port(n.smtp_port)
        .tls(tls)
        .timeout(Some(n.timeout));
    if let Some(user) = &n.username {
        let password = n
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        b = b.credentials(Credentials::new(user.clone(), password));
    }
    Ok(b.build())
}

pub async fn send(
    n: &EmailNotifier,
    notification_id: &str,
    e: &Event,
) -> Result<String, SendError> {
    let r = render(e, notification_id);
    let date = SystemTime::UNIX_EPOCH + Duration::from_millis(e.ts);
    let msg = message(n, &r, date)?;
    let t = transport(n)?;
    // lettre's timeout is per exchange; bound the whole conversation too.
    let whole = n.timeout.saturating_mul(3);
    let sent = tokio::time::timeout(whole, t.send(msg))
        .await
        .map_err(|_| {
            SendError(format!(
                "timed out after {}",
                humantime::format_duration(whole)
            ))
        })?;
    match sent {
        Ok(resp) => Ok(format!(
            "{} {}",
            resp.code(),
            resp.message().collect::<Vec<_>>().join(" ")
        )),
        Err(err) => Err(SendError(format!(
            "{}:{}: {}",
            n.smtp_host,
            n.smtp_port,
            super::error_chain(&err)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use crate::engine::Outcome;

    fn notifier() -> EmailNotifier {
        EmailNotifier {
            smtp_host: "smtp.example.com".into(),
            smtp_port: 587,
            tls: SmtpTls::StartTls,
            username: None,
            password: None,
            ca_file: None,
            from: "rollbackd <rollbackd@example.com>".into(),
            to: vec!["oncall@example.com".into(), "team@example.com".into()],
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_events_of_one_rollback_thread_together() {
        let started = render(&fixtures::started(), "a-mail");
        let finished = render(&fixtures::finished(Outcome::Recovered), "b-mail");
        let escalated = render(&fixtures::escalated(), "c-mail");
        let root = format!("<rollback.shop-web-{}@rollbackd.ops-1>", fixtures::T0);
        assert_eq!(started.message_id, root);
        assert_eq!(started.in_reply_to, None);
        assert_eq!(finished.message_id, "<b-mail@rollbackd.ops-1>");
        assert_eq!(finished.in_reply_to.as_deref(), Some(root.as_str()));
        assert_eq!(escalated.in_reply_to.as_deref(), Some(root.as_str()));
        let blind = render(&fixtures::blind(), "d-mail");
        assert_eq!(blind.in_reply_to, None);
    }

    #[test]
    fn the_message_is_multipart_with_the_report_attached() {
        let r = render(&fixtures::finished(Outcome::Recovered), "b-mail");
        let raw = String::from_utf8(
            message(
                &notifier(),
                &r,
                SystemTime::UNIX_EPOCH + Duration::from_millis(fixtures::T0),
            )
            .unwrap()
            .formatted(),
        )
        .unwrap();
        for needle in [
            "Subject: [rollbackd] shop-web rolled back: error-ratio 0.31 > 0.05 (+1 more)",
            "To: oncall@example.com, team@example.com",
            "Message-ID: <b-mail@rollbackd.ops-1>",
            "In-Reply-To: <rollback.shop-web-",
            "References: <rollback.shop-web-",
            "Date: Sat, 21 Nov 2026 10:05:10 +0000",
            "multipart/mixed",
            "multipart/alternative",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Type: text/html; charset=utf-8",
            "Content-Type: text/markdown; charset=utf-8",
            "filename=\"shop-web-1795255510000.md\"",
        ] {
            assert!(raw.contains(needle), "{needle} missing from:\n{raw}");
        }
    }

    #[test]
    fn html_escapes_what_it_shows() {
        let mut e = fixtures::finished(Outcome::Error);
        e.reason = Some("<script>alert(1)</script> & `cmd <x>`".into());
        let h = render(&e, "x").html;
        assert!(!h.contains("<script>"));
        assert!(h.contains("&lt;script&gt;"));
        assert!(h.contains("<code>cmd &lt;x&gt;</code>"));
    }

    #[test]
    fn snapshot_of_the_text_of_a_finished_rollback() {
        let r = render(&fixtures::finished(Outcome::VerifyFailed), "b-mail");
        super::super::snapshot::assert_snapshot(
            "email-rollback-finished.txt",
            &format!("Subject: {}\n\n{}", r.subject, r.text),
        );
    }
}
