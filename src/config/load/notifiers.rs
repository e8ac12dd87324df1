//! The `[notifiers.NAME]` tables (README, "Configuration",
//! `[notifiers.NAME]`): Slack, email and webhook notifiers, whose `type`
//! decides their other keys.

use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use super::values::{http_url, optional, read_headers, readable_file};
use crate::config::reader::{Ctx, Table, Value};
use crate::config::secret::Secret;
use crate::config::{EmailNotifier, Notifier, SlackNotifier, SmtpTls, WebhookNotifier};

/// Reads one `[notifiers.NAME]`; `None` when it is invalid (and reported).
pub(super) fn read_notifier(cx: &mut Ctx<'_>, name: &str, v: &Value<'_>) -> Option<Notifier> {
    let mut t = cx.table(name, v, format!("[notifiers.{name}]"))?;
    #[derive(Clone, Copy)]
    enum Kind {
        Slack,
        Email,
        Webhook,
    }
    const TYPES: &[(&str, Kind)] = &[
        ("slack", Kind::Slack),
        ("email", Kind::Email),
        ("webhook", Kind::Webhook),
    ];
    let kind = match t.get("type") {
        Some(v) => cx.choice("type", v, TYPES),
        None => {
            cx.error_hint(
                &t.span,
                format!("{} is missing the required key \"type\"", t.what),
                Some("it is \"slack\", \"email\" or \"webhook\"; use \"webhook\" for any other service".into()),
            );
            None
        }
    };
    let Some(kind) = kind else {
        t.finish_any_variant(cx, NOTIFIER_KEYS);
        return None;
    };
    let timeout_default = match kind {
        Kind::Email => Duration::from_secs(30),
        _ => Duration::from_secs(10),
    };
    let timeout = match t.get("timeout") {
        Some(v) => cx.duration_min("timeout", v, Duration::from_millis(10)),
        None => Some(timeout_default),
    };
    let n = match kind {
        Kind::Slack => {
            let url = secret_url(cx, &mut t, "webhook_url", "webhook_url_file");
            let channel = optional(&mut t, "channel", |v| cx.nonempty_string("channel", v));
            let username = optional(&mut t, "username", |v| cx.nonempty_string("username", v));
            let icon_emoji = optional(&mut t, "icon_emoji", |v| {
                cx.nonempty_string("icon_emoji", v)
            });
            t.finish(cx);
            Notifier::Slack(SlackNotifier {
                webhook_url: url?,
                channel: channel.ok()?,
                username: username.ok()?,
                icon_emoji: icon_emoji.ok()?,
                timeout: timeout?,
            })
        }
        Kind::Webhook => {
            let url = secret_url(cx, &mut t, "url", "url_file");
            let headers = optional(&mut t, "headers", |v| read_headers(cx, v));
            let hmac = cx.secret(&mut t, "hmac_secret", "hmac_secret_file");
            t.finish(cx);
            Notifier::Webhook(WebhookNotifier {
                url: url?,
                headers: headers.ok()?.unwrap_or_default(),
                hmac_secret: hmac,
                timeout: timeout?,
            })
        }
        Kind::Email => read_email(cx, t, timeout)?,
    };
    Some(n)
}

/// A URL that is a secret in itself (Slack webhook URLs are credentials).
fn secret_url(
    cx: &mut Ctx<'_>,
    t: &mut Table<'_, '_>,
    key: &'static str,
    file_key: &'static str,
) -> Option<Secret> {
    let s = cx.secret(t, key, file_key);
    let Some(s) = s else {
        if t.peek(key).is_none() && t.peek(file_key).is_none() {
            cx.error(
                &t.span,
                format!("{} is missing \"{key}\" (or \"{file_key}\")", t.what),
            );
        }
        return None;
    };
    let span = t
        .peek(key)
        .or_else(|| t.peek(file_key))
        .map(|v| v.span())
        .unwrap_or(t.span.clone());
    http_url(cx, key, s.expose(), &span).then_some(s)
}

fn mailbox(cx: &mut Ctx<'_>, key: &str, s: &str, span: &Range<usize>) -> bool {
    match lettre::message::Mailbox::from_str(s) {
        Ok(_) => true,
        Err(_) => {
            cx.error(
                span,
                format!(
                    "\"{key}\": \"{s}\" is not an email address like \"name <user@example.com>\""
                ),
            );
            false
        }
    }
}

/// Every key of every notifier type: with an unknown `type`, only keys that
/// no type knows are reported.
const NOTIFIER_KEYS: &[&str] = &[
    "timeout",
    "webhook_url",
    "webhook_url_file",
    "channel",
    "username",
    "icon_emoji",
    "url",
    "url_file",
    "headers",
    "hmac_secret",
    "hmac_secret_file",
    "smtp_host",
    "smtp_port",
    "tls",
    "password",
    "password_file",
    "ca_file",
    "from",
    "to",
];

fn read_email(
    cx: &mut Ctx<'_>,
    mut t: Table<'_, '_>,
    timeout: Option<Duration>,
) -> Option<Notifier> {
    let host = t
        .require(cx, "smtp_host")
        .and_then(|v| cx.nonempty_string("smtp_host", v));
    let tls = match t.get("tls") {
        Some(v) => cx.choice(
            "tls",
            v,
            &[
                ("starttls", SmtpTls::StartTls),
                ("tls", SmtpTls::Tls),
                ("none", SmtpTls::None),
            ],
        ),
        None => Some(SmtpTls::StartTls),
    };
    let port = match t.get("smtp_port") {
        Some(v) => cx.int("smtp_port", v, 1, 65535).map(|p| p as u16),
        None => tls.map(|t| match t {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }),
    };
    let username = optional(&mut t, "username", |v| cx.nonempty_string("username", v));
    let password = cx.secret(&mut t, "password", "password_file");
    if password.is_some() && !matches!(username, Ok(Some(_))) {
        let at = t
            .peek("password")
            .or_else(|| t.peek("password_file"))
            .map_or(t.span.clone(), |v| v.span());
        cx.error(
            &at,
            format!("{} sets a password but no \"username\"", t.what),
        );
    }
    let ca_file = optional(&mut t, "ca_file", |v| readable_file(cx, "ca_file", v));
    let from = t.require(cx, "from").and_then(|v| {
        let s = cx.nonempty_string("from", v)?;
        mailbox(cx, "from", &s, &v.span()).then_some(s)
    });
    let to = t.require(cx, "to").and_then(|v| {
        let list = cx.string_list("to", v)?;
        if list.is_empty() {
            cx.error(&v.span(), "\"to\" must list at least one address");
            return None;
        }
        let mut ok = true;
        for (s, span) in &list {
            ok &= mailbox(cx, "to", s, span);
        }
        ok.then(|| list.into_iter().map(|(s, _)| s).collect())
    });
    t.finish(cx);
    Some(Notifier::Email(EmailNotifier {
        smtp_host: host?,
        smtp_port: port?,
        tls: tls?,
        username: username.ok()?,
        password,
        ca_file: ca_file.ok()?,
        from: from?,
        to: to?,
        timeout: timeout?,
    }))
}
