//! Slack incoming webhooks: Block Kit with a plain-text fallback, kept
//! within Slack's limits (Slack answers `400 invalid_blocks` to a payload
//! over any of them, and the message is lost): at most 50 blocks, a header
//! of 150 characters, section text of 3,000, ten fields of 2,000 each, ten
//! context elements. Anything cut is marked with `…`.

use serde_json::{Value, json};

use super::render::{self, clip};
use super::{Event, SendError};
use crate::config::SlackNotifier;

pub const MAX_BLOCKS: usize = 50;
pub const MAX_HEADER: usize = 150;
pub const MAX_TEXT: usize = 3000;
pub const MAX_FIELDS: usize = 10;
pub const MAX_FIELD: usize = 2000;
pub const MAX_CONTEXT_ELEMENTS: usize = 10;

/// What Slack's mrkdwn would otherwise read as markup.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escapes, then clips to `max` characters without cutting an entity in two.
fn fit(s: &str, max: usize) -> String {
    let escaped = escape(s);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let mut cut: String = escaped.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        cut.truncate(amp);
    }
    cut.push('…');
    cut
}

fn mrkdwn(text: String) -> Value {
    json!({ "type": "mrkdwn", "text": text })
}

fn section(text: String) -> Value {
    json!({ "type": "section", "text": mrkdwn(text) })
}

fn emoji(e: &Event) -> &'static str {
    match render::severity(e) {
        "critical" => ":rotating_light:",
        "resolved" => ":white_check_mark:",
        "info" => ":information_source:",
        _ => ":warning:",
    }
}

/// A check as one section: the comparison, labels, detail, graph link.
fn check_section(c: &super::Check) -> Value {
    let value = c
        .value
        .map(crate::engine::fmt_value)
        .unwrap_or_else(|| "no value".into());
    let mut text = format!(
        "*{}* ({}, {}): `{}`",
        escape(&c.name),
        escape(&c.kind),
        escape(&c.result),
        escape(&value)
    );
    if !c.threshold.is_empty() {
        text.push_str(&format!(" threshold `{}`", escape(&c.threshold)));
    }
    let labels = render::labels(c);
    if !labels.is_empty() {
        text.push_str(&format!(" `{}`", escape(&labels)));
    }
    // The link goes first so that clipping a long detail cannot cut it.
    let link = c
        .graph_url
        .as_ref()
        .map(|g| format!("\n<{}|Prometheus graph>", escape(g)))
        .unwrap_or_default();
    let room = MAX_TEXT.saturating_sub(text.chars().count() + link.chars().count() + 1);
    if !c.detail.is_empty() && room > 10 {
        text.push('\n');
        text.push_str(&fit(&c.detail, room));
    }
    text.push_str(&link);
    section(clip(&text, MAX_TEXT))
}

/// The webhook payload for `event`: Block Kit plus the `text` fallback
/// Slack shows in notifications and requires beside blocks.
pub fn payload(e: &Event, n: Option<&SlackNotifier>) -> Value {
    let headline = render::headline(e);
    let mut blocks: Vec<Value> = Vec::new();
    blocks.push(json!({
        "type": "header",
        "text": { "type": "plain_text", "text": clip(&format!("{} {headline}", emoji(e)), MAX_HEADER), "emoji": true }
    }));
    if let Some(r) = &e.reason {
        blocks.push(section(fit(r, MAX_TEXT)));
    }
    let fields: Vec<Value> = render::facts(e)
        .into_iter()
        .take(MAX_FIELDS)
        .map(|(k, v)| mrkdwn(format!("*{k}*\n{}", fit(&v, MAX_FIELD - k.len() - 4))))
        .collect();
    blocks.push(json!({ "type": "section", "fields": fields }));
    if !e.errors.is_empty() {
        let all = e.errors.join("\n");
        blocks.push(section(format!("```{}```", fit(&all, MAX_TEXT - 6))));
    }
    // The blocks after the checks, built first so that checks take what is left.
    let mut tail: Vec<Value> = Vec::new();
    if let Some(r) = &e.report {
        tail.push(section(fit(
            &format!("Incident report: {} on {}", r.path, e.host),
            MAX_TEXT,
        )));
    }
    let steps = render::next_steps(e);
    if !steps.is_empty() {
        let list: Vec<String> = steps.iter().map(|s| format!("• {}", escape(s))).collect();
        tail.push(section(clip(
            &format!("*What you can do next*\n{}", list.join("\n")),
            MAX_TEXT,
        )));
    }
    tail.push(json!({
        "type": "context",
        "elements": [mrkdwn(fit(
            &format!("rollbackd on {} · {} · {} · event {}", e.host, e.kind.as_str(), render::time(e.ts), e.id),
            MAX_FIELD,
        ))]
    }));
    if !e.checks.is_empty() {
        let title = if e.kind == super::Kind::WatchBlind {
            "*Checks that could not decide*"
        } else {
            "*Failing checks*"
        };
        blocks.push(json!({ "type": "divider" }));
        blocks.push(section(title.into()));
        // One block is kept for the "and N more" line.
        let room = MAX_BLOCKS.saturating_sub(blocks.len() + tail.len() + 1);
        let shown = e.checks.len().min(room);
        for c in &e.checks[..shown] {
            blocks.push(check_section(c));
        }
        if shown < e.checks.len() {
            blocks.push(section(format!(
                "…and {} more failing checks (see the incident report)",
                e.checks.len() - shown
            )));
        }
    }
    blocks.extend(tail);
    blocks.truncate(MAX_BLOCKS);
    let mut p = json!({
        "text": fit(&headline, MAX_TEXT),
        "blocks": blocks,
    });
    if let Some(n) = n {
        for (key, v) in [
            ("channel", &n.channel),
            ("username", &n.username),
            ("icon_emoji", &n.icon_emoji),
        ] {
            if let Some(v) = v {
                p[key] = v.clone().into();
            }
        }
    }
    p
}

pub async fn send(
    n: &SlackNotifier,
    e: &Event,
    http: &reqwest::Client,
) -> Result<String, SendError> {
    let resp = http
        .post(n.webhook_url.expose())
        .timeout(n.timeout)
        .json(&payload(e, Some(n)))
        .send()
        .await
        .map_err(super::http_error)?;
    super::http_answer(resp).await
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    /// Slack's rules for the blocks rollbackd sends (the same the test
    /// receiver in `tests/it/support/receivers.rs` enforces).
    fn assert_valid(p: &Value) {
        assert!(
            p["text"].as_str().is_some_and(|t| !t.is_empty()),
            "no fallback text"
        );
        let blocks = p["blocks"].as_array().unwrap();
        assert!(
            !blocks.is_empty() && blocks.len() <= MAX_BLOCKS,
            "{}",
            blocks.len()
        );
        let len = |v: &Value| v.as_str().unwrap().chars().count();
        for b in blocks {
            match b["type"].as_str().unwrap() {
                "header" => {
                    assert_eq!(b["text"]["type"], "plain_text");
                    assert!(len(&b["text"]["text"]) <= MAX_HEADER);
                }
                "section" => {
                    if let Some(t) = b.get("text") {
                        assert!(len(&t["text"]) <= MAX_TEXT && len(&t["text"]) > 0);
                    }
                    if let Some(f) = b.get("fields") {
                        let f = f.as_array().unwrap();
                        assert!(!f.is_empty() && f.len() <= MAX_FIELDS);
                        for x in f {
                            assert!(len(&x["text"]) <= MAX_FIELD);
                        }
                    }
                }
                "context" => {
                    let el = b["elements"].as_array().unwrap();
                    assert!(!el.is_empty() && el.len() <= MAX_CONTEXT_ELEMENTS);
                }
                "divider" => {}
                other => panic!("unexpected block {other}"),
            }
        }
    }

    #[test]
    fn every_event_fits_slacks_limits() {
        for e in fixtures::all() {
            assert_valid(&payload(&e, None));
        }
    }

    #[test]
    fn huge_events_are_cut_to_the_limits_and_the_cut_is_marked() {
        let mut e = fixtures::finished(crate::engine::Outcome::VerifyFailed);
        e.reason = Some("r".repeat(10_000));
        let template = e.checks[0].clone();
        e.checks = (0..120)
            .map(|i| {
                let mut c = template.clone();
                c.name = format!("check-{i}-{}", "n".repeat(300));
                c.detail = "<&>".repeat(2000);
                c
            })
            .collect();
        e.watch = Some("w".repeat(500));
        e.errors = vec!["e".repeat(5000)];
        let p = payload(&e, None);
        assert_valid(&p);
        let blocks = p["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), MAX_BLOCKS);
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains("more failing checks (see the incident report)"));
        assert!(text.contains('…'));
        assert!(
            !text.contains("&a…") && !text.contains("&am…"),
            "an entity was cut in two"
        );
    }

    #[test]
    fn overrides_are_set_only_where_configured() {
        let n = SlackNotifier {
            webhook_url: crate::config::Secret::new("https://hooks.slack.test/x"),
            channel: Some("#ops".into()),
            username: None,
            icon_emoji: Some(":rewind:".into()),
            timeout: std::time::Duration::from_secs(1),
        };
        let p = payload(&fixtures::started(), Some(&n));
        assert_eq!(p["channel"], "#ops");
        assert_eq!(p["icon_emoji"], ":rewind:");
        assert!(p.get("username").is_none());
    }

    #[test]
    fn snapshot_of_a_finished_rollback() {
        let p = payload(&fixtures::finished(crate::engine::Outcome::Recovered), None);
        super::super::snapshot::assert_snapshot(
            "slack-rollback-finished.json",
            &serde_json::to_string_pretty(&p).unwrap(),
        );
    }
}
