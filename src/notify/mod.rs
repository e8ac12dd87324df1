//! Telling people: the events of the README's "Notifications" as owned, serialisable values,
//! their rendering for each channel, the senders and the durable outbox.
//!
//! - [`Event`] is built from an engine [`Record`] plus what only the daemon
//!   knows (the host, the target, each failing query and its Prometheus
//!   source for graph links, the timings). It is redacted once, when built,
//!   so everything rendered from it is too.
//! - [`render`] holds the wording every channel shares (headline, subject,
//!   facts, plain text); [`slack`], [`email`] and [`webhook`] turn an event
//!   into a payload (pure) and send it; [`report`] writes the Markdown
//!   incident report of a rollback.
//! - [`outbox`] makes delivery durable: one file per notification per
//!   notifier, written before anything is sent, delivered by a worker that
//!   retries with backoff and never holds up the engine. A file names its
//!   notifier, never its URL or password: those come from the live
//!   configuration at send time.

pub mod email;
pub mod outbox;
pub mod render;
pub mod report;
pub mod slack;
pub mod webhook;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Notifier, PrometheusSource, Redactor, Watch};
use crate::engine::{EventKind, Millis, Outcome, Record, Trigger, Verdict};

pub use outbox::{Notification, Outbox, Worker};

/// The version of the webhook's JSON document.
pub const SCHEMA: &str = "rollbackd.event/v1";

/// What happened, as people are told (the README's "Notifications").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    RollbackStarted,
    RollbackFinished,
    Escalated,
    WatchBlind,
    WouldRollBack,
    ManualRollback,
    ConfigRejected,
    /// `rollbackd notify-test`.
    Test,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RollbackStarted => "rollback_started",
            Kind::RollbackFinished => "rollback_finished",
            Kind::Escalated => "escalated",
            Kind::WatchBlind => "watch_blind",
            Kind::WouldRollBack => "would_roll_back",
            Kind::ManualRollback => "manual_rollback",
            Kind::ConfigRejected => "config_rejected",
            Kind::Test => "test",
        }
    }

    /// The engine events that people hear about; the rest are journal only.
    pub fn of(event: EventKind) -> Option<Kind> {
        Some(match event {
            EventKind::RollbackStarted => Kind::RollbackStarted,
            EventKind::RollbackFinished => Kind::RollbackFinished,
            EventKind::Escalated => Kind::Escalated,
            EventKind::WatchBlind => Kind::WatchBlind,
            EventKind::WouldRollBack => Kind::WouldRollBack,
            EventKind::ManualRollback => Kind::ManualRollback,
            _ => return None,
        })
    }

    /// Events about one rollback, which get (and update) its report.
    pub fn has_report(self) -> bool {
        matches!(
            self,
            Kind::RollbackStarted
                | Kind::RollbackFinished
                | Kind::WouldRollBack
                | Kind::ManualRollback
                | Kind::Escalated
        )
    }
}

/// One check's evidence, with where to look at it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub kind: String,
    pub name: String,
    pub result: String,
    pub value: Option<f64>,
    pub threshold: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub detail: String,
    /// The PromQL of a Prometheus check.
    #[serde(default)]
    pub query: Option<String>,
    /// The query in its source's graph page.
    #[serde(default)]
    pub graph_url: Option<String>,
}

/// Milliseconds since the epoch of the moments a reader wants to line up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// When the revision being judged appeared.
    pub revision_since: Option<Millis>,
    /// When the rollback started.
    pub started_at: Option<Millis>,
    /// When it finished.
    pub finished_at: Option<Millis>,
}

impl Timings {
    /// The timings of `r`, from the rollback it belongs to where that is
    /// the last one the watch finished.
    pub fn of(r: &Record, last: Option<&crate::engine::RollbackSummary>) -> Timings {
        let mut t = Timings::default();
        if r.event == EventKind::RollbackStarted {
            t.started_at = Some(r.ts);
        }
        if let (Some(l), Some(id)) = (last, &r.rollback_id)
            && &l.rollback_id == id
        {
            t.started_at = Some(l.started);
            t.finished_at = Some(l.finished);
        }
        t
    }
}

/// The incident report a notification refers to, as it stood when the
/// notification was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRef {
    pub path: String,
    pub markdown: String,
}

/// An event people are told about, self-contained: a notification in the
/// outbox can be rendered and sent long after the configuration changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event; a notification's id is this plus its notifier.
    pub id: String,
    pub kind: Kind,
    pub ts: Millis,
    pub host: String,
    pub watch: Option<String>,
    pub target: Option<String>,
    pub target_kind: Option<String>,
    pub rollback_id: Option<String>,
    pub from_revision: Option<String>,
    pub to_revision: Option<String>,
    /// Container images of the revisions, where the target has them.
    pub from_images: Option<Vec<String>>,
    pub to_images: Option<Vec<String>>,
    pub trigger: Option<Trigger>,
    /// Who asked, for a rollback made by hand through rollbackd.
    #[serde(default)]
    pub operator: Option<String>,
    pub outcome: Option<Outcome>,
    pub reason: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// The checks that failed (or could not decide, for `watch_blind`).
    #[serde(default)]
    pub checks: Vec<Check>,
    /// `config_rejected`: every error, as `FILE:LINE:COLUMN: message`.
    #[serde(default)]
    pub errors: Vec<String>,
    #[serde(default)]
    pub timings: Timings,
    #[serde(default)]
    pub report: Option<ReportRef>,
}

/// What the daemon knows around an engine record.
pub struct Context<'a> {
    pub host: &'a str,
    pub watch: Option<&'a Watch>,
    pub sources: &'a BTreeMap<String, PrometheusSource>,
    pub timings: Timings,
    pub redactor: &'a Redactor,
    /// The images rolled away from and restored, once the undo knows them.
    pub images: Option<(Vec<String>, Vec<String>)>,
}

fn new_id(ts: Millis) -> String {
    format!("{ts}-{:08x}", fastrand::u32(..))
}

impl Event {
    fn blank(kind: Kind, ts: Millis, host: &str) -> Event {
        Event {
            id: new_id(ts),
            kind,
            ts,
            host: host.to_owned(),
            watch: None,
            target: None,
            target_kind: None,
            rollback_id: None,
            from_revision: None,
            to_revision: None,
            from_images: None,
            to_images: None,
            trigger: None,
            operator: None,
            outcome: None,
            reason: None,
            dry_run: false,
            checks: Vec::new(),
            errors: Vec::new(),
            timings: Timings::default(),
            report: None,
        }
    }

    /// The event people hear about for an engine record, or `None` for a
    /// record that stays in the journal.
    pub fn from_record(r: &Record, cx: &Context<'_>) -> Option<Event> {
        let kind = Kind::of(r.event)?;
        let mut e = Event::blank(kind, r.ts, cx.host);
        e.watch = Some(r.watch.clone());
        if let Some(w) = cx.watch {
            e.target = Some(w.target.to_string());
            e.target_kind = Some(w.target.kind().to_owned());
            e.dry_run = w.settings.dry_run;
        }
        e.rollback_id.clone_from(&r.rollback_id);
        e.from_revision = r
            .from_revision
            .clone()
            .or_else(|| r.revision.as_ref().map(|rev| rev.id.clone()));
        e.to_revision.clone_from(&r.to_revision);
        e.trigger = r.trigger;
        e.operator.clone_from(&r.operator);
        if let Some((from, to)) = &cx.images {
            e.from_images = Some(from.clone());
            e.to_images = Some(to.clone());
        }
        e.outcome = r.outcome;
        e.reason.clone_from(&r.reason);
        e.dry_run |= kind == Kind::WouldRollBack;
        e.checks = r
            .checks
            .iter()
            .filter(|c| c.result != Verdict::Pass)
            .map(|c| {
                let def = cx
                    .watch
                    .and_then(|w| w.prometheus.iter().find(|p| p.name == c.name))
                    .filter(|_| c.kind == "prometheus");
                let graph_url = def.and_then(|p| {
                    cx.sources
                        .get(&p.source)
                        .and_then(|s| graph_url(&s.url, &p.query))
                });
                Check {
                    kind: c.kind.clone(),
                    name: c.name.clone(),
                    result: c.result.as_str().to_owned(),
                    value: c.value,
                    threshold: c.threshold.clone(),
                    labels: c.labels.clone(),
                    detail: c.detail.clone(),
                    query: def.map(|p| p.query.trim().to_owned()),
                    graph_url,
                }
            })
            .collect();
        e.timings = cx.timings.clone();
        if e.timings.revision_since.is_none() {
            e.timings.revision_since = r.revision.as_ref().map(|rev| rev.since);
        }
        Some(e.redacted(cx.redactor))
    }

    /// `config_rejected`: a reload was refused; the last good configuration
    /// keeps running.
    pub fn config_rejected(
        ts: Millis,
        host: &str,
        cause: &str,
        errors: &[String],
        redactor: &Redactor,
    ) -> Event {
        let mut e = Event::blank(Kind::ConfigRejected, ts, host);
        e.reason = Some(format!(
            "a configuration reload ({cause}) was rejected with {} error{}; the last good configuration keeps running",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        ));
        e.errors = errors.to_vec();
        e.redacted(redactor)
    }

    /// The message of `rollbackd notify-test`.
    pub fn test(ts: Millis, host: &str) -> Event {
        let mut e = Event::blank(Kind::Test, ts, host);
        e.reason = Some(
            "This is a test message sent by `rollbackd notify-test`. No watch, target or rollback is involved; nothing needs to be done."
                .into(),
        );
        e
    }

    /// The event with every secret the configurations held scrubbed: reasons
    /// and details quote commands, URLs and server answers.
    pub fn redacted(self, redactor: &Redactor) -> Event {
        let Ok(mut v) = serde_json::to_value(&self) else {
            return self;
        };
        redactor.redact_json(&mut v);
        serde_json::from_value(v).unwrap_or(self)
    }
}

/// The query in the Prometheus UI's graph page, without any credentials the
/// source URL carries.
pub fn graph_url(base: &str, query: &str) -> Option<String> {
    let mut url = reqwest::Url::parse(base).ok()?;
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    let path = format!("{}/graph", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.query_pairs_mut()
        .append_pair("g0.expr", query.trim())
        .append_pair("g0.tab", "0")
        .append_pair("g0.range_input", "1h");
    Some(url.to_string())
}

/// How a delivery went wrong: the server's answer or the connection's
/// error, with every secret (and the URL reqwest puts in its errors) gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError(pub String);

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An error and its causes on one line (reqwest's top level says only
/// "error sending request"; the cause says "connection refused").
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// What a reqwest failure says, without the URL (a Slack webhook URL is a
/// credential).
pub(crate) fn http_error(e: reqwest::Error) -> SendError {
    let kind = if e.is_timeout() {
        "timed out: "
    } else if e.is_connect() {
        "cannot connect: "
    } else {
        ""
    };
    SendError(format!("{kind}{}", error_chain(&e.without_url())))
}

/// Reads a failed answer: `HTTP 400: invalid_blocks`.
pub(crate) async fn http_answer(resp: reqwest::Response) -> Result<String, SendError> {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.trim().chars().take(300).collect();
    if status.is_success() {
        Ok(format!("HTTP {}{}", status.as_u16(), prefixed(": ", &body)))
    } else {
        Err(SendError(format!(
            "HTTP {}{}",
            status.as_u16(),
            prefixed(": ", &body)
        )))
    }
}

fn prefixed(prefix: &str, s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("{prefix}{s}")
    }
}

/// Sends one notification through one notifier and returns the server's
/// answer. Used by the outbox worker and by `notify-test`.
pub async fn deliver(
    notifier: &Notifier,
    notification_id: &str,
    event: &Event,
    http: &reqwest::Client,
) -> Result<String, SendError> {
    match notifier {
        Notifier::Slack(s) => slack::send(s, event, http).await,
        Notifier::Email(m) => email::send(m, notification_id, event).await,
        Notifier::Webhook(w) => webhook::send(w, notification_id, event, http).await,
    }
}

/// The HTTP client the senders share: no redirects (a webhook that
/// redirects is misconfigured, and following it would resend the body).
pub fn http_client() -> Result<reqwest::Client, SendError> {
    reqwest::Client::builder()
        .user_agent(concat!("rollbackd/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(http_error)
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod snapshot;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_links_drop_credentials_and_encode_the_query() {
        let u = graph_url(
            "http://user:pw@prom.example:9090/prefix/",
            "sum(rate(x{a=\"b\"}[1m]))",
        )
        .unwrap();
        assert_eq!(
            u,
            "http://prom.example:9090/prefix/graph?g0.expr=sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29&g0.tab=0&g0.range_input=1h"
        );
        assert!(graph_url("not a url", "up").is_none());
    }

    #[test]
    fn only_the_events_of_spec_4_5_are_notified() {
        assert_eq!(
            Kind::of(EventKind::RollbackFinished),
            Some(Kind::RollbackFinished)
        );
        assert_eq!(Kind::of(EventKind::Armed), None);
        assert_eq!(Kind::of(EventKind::RollbackApplied), None);
    }

    #[test]
    fn an_event_is_built_from_a_record_with_graph_links_and_no_secrets() {
        let e = fixtures::started();
        assert_eq!(e.kind, Kind::RollbackStarted);
        assert_eq!(e.watch.as_deref(), Some("shop-web"));
        assert_eq!(e.target.as_deref(), Some("deployment/shop/web"));
        assert_eq!(e.checks.len(), 2, "the passing check is left out");
        let c = &e.checks[0];
        assert_eq!(c.name, "error-ratio");
        assert!(
            c.graph_url
                .as_deref()
                .unwrap()
                .starts_with("http://prometheus.monitoring:9090/graph?g0.expr=sum")
        );
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("tok-secret-1234"), "{json}");
        assert!(json.contains("[REDACTED]"));
    }
}
