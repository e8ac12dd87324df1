//! The durable outbox, `STATE_DIR/outbox/`: one JSON file per notification
//! per notifier, on disk (temporary file, fsync, rename, fsync of the
//! directory) before anything is sent. A worker task delivers them, retries
//! failures with exponential backoff and jitter until delivered or
//! `notify_max_age` has passed, and removes each file once delivered.
//!
//! A file names its notifier, never the notifier's URL or password: those
//! are read from the live configuration at send time, so the outbox holds
//! no credential and a corrected URL applies to what is still pending. A
//! notification's id is in its file and is sent with it (webhook `id`,
//! email Message-ID), the same on every retry and after a restart; one file
//! is sent by one task at a time, and removed before it is forgotten.

use crate::clock::now_ms;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{Context, Event, SendError, report};
use crate::config::{Config, Redactor};
use crate::engine::{Millis, Record};

pub const DIR: &str = "outbox";

/// The format of an outbox file.
const FORMAT: u32 = 1;

/// Sends at once, across all notifiers.
const CONCURRENCY: usize = 4;

/// One event for one notifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub format: u32,
    pub id: String,
    /// The notifier's name in the configuration.
    pub notifier: String,
    /// When it was queued (milliseconds since the epoch).
    pub created: Millis,
    pub event: Event,
}

/// What may stand in a file name.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Notification {
    pub fn new(event: &Event, notifier: &str, created: Millis) -> Self {
        Self {
            format: FORMAT,
            id: format!("{}-{}", event.id, file_safe(notifier)),
            notifier: notifier.to_owned(),
            created,
            event: event.clone(),
        }
    }
}

/// The outbox's metrics, registered by the daemon.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone)]
pub struct Counters {
    /// By notifier kind and result: `sent`, `retried`, `expired`, `corrupt`.
    pub notifications: Family<ResultLabels, Counter>,
    pub pending: Gauge,
    /// From the event to its delivery.
    pub delay: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            notifications: Family::default(),
            pending: Gauge::default(),
            delay: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
        }
    }
}

/// The handle that queues: cheap to clone, shared by the supervisor.
#[derive(Clone)]
pub struct Outbox {
    state_dir: PathBuf,
    dir: PathBuf,
    wake: Arc<tokio::sync::Notify>,
    /// The errors of the last rejected configuration, so that saving the
    /// same broken file again does not page anyone twice.
    last_rejected: Arc<Mutex<Option<Vec<String>>>>,
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl Outbox {
    /// Opens (creating) `STATE_DIR/outbox`, clearing temporary files a
    /// crash left behind (never renamed, so never queued).
    pub fn open(state_dir: &Path) -> std::io::Result<Outbox> {
        let dir = state_dir.join(DIR);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Outbox {
            state_dir: state_dir.to_path_buf(),
            dir,
            wake: Arc::new(tokio::sync::Notify::new()),
            last_rejected: Arc::new(Mutex::new(None)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files waiting to be delivered.
    pub fn pending(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| is_queued(p))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Queues `event` for each of `notifiers`, durably: when this returns,
    /// a crash loses none of them. Blocking (fsync); never waits for a send.
    pub fn enqueue(&self, event: &Event, notifiers: &[String]) -> std::io::Result<Vec<String>> {
        let created = now_ms();
        let mut ids = Vec::new();
        for name in notifiers {
            let n = Notification::new(event, name, created);
            let bytes = serde_json::to_vec_pretty(&n).map_err(std::io::Error::other)?;
            let path = self.dir.join(format!("{}.json", n.id));
            let tmp = self.dir.join(format!(".{}.json.tmp", n.id));
            {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            ids.push(n.id);
        }
        if !ids.is_empty() {
            sync_dir(&self.dir)?;
            self.wake.notify_one();
        }
        Ok(ids)
    }

    /// An engine record: builds the event (writing the rollback's report
    /// first, so the notification can carry it) and queues it for
    /// `notifiers`. Problems are logged: telling people must never stop
    /// the rollback.
    pub fn record(&self, r: &Record, cx: &Context<'_>, notifiers: &[String]) {
        let Some(mut event) = Event::from_record(r, cx) else {
            return;
        };
        if let Some(written) = report::write(&self.state_dir, &event) {
            match written {
                Ok(rep) => event.report = Some(rep),
                Err(e) => {
                    warn!(watch = %r.watch, error = %e, "cannot write the incident report; notifying without it")
                }
            }
        }
        self.queue(&event, notifiers);
    }

    /// A rejected reload, unless it is the same rejection as the last one.
    pub fn config_rejected(
        &self,
        host: &str,
        cause: &str,
        errors: &[String],
        notifiers: &[String],
        redactor: &Redactor,
    ) {
        if let Ok(mut last) = self.last_rejected.lock() {
            if last.as_deref() == Some(errors) {
                return;
            }
            *last = Some(errors.to_vec());
        }
        let event = Event::config_rejected(now_ms(), host, cause, errors, redactor);
        self.queue(&event, notifiers);
    }

    /// A reload was accepted: the next rejection is news again.
    pub fn config_accepted(&self) {
        if let Ok(mut last) = self.last_rejected.lock() {
            *last = None;
        }
    }

    fn queue(&self, event: &Event, notifiers: &[String]) {
        if notifiers.is_empty() {
            return;
        }
        // `event_type`, not `event`: log lines with `event` are the engine's,
        // and one event must not appear to happen once per delivery attempt.
        match self.enqueue(event, notifiers) {
            Ok(ids) => {
                tracing::debug!(event_type = event.kind.as_str(), notifications = %ids.join(","), "notifications queued")
            }
            Err(e) => error!(
                event_type = event.kind.as_str(),
                watch = event.watch.as_deref().unwrap_or(""),
                error = %e,
                path = %self.dir.display(),
                "cannot queue notifications; people will not hear of this event"
            ),
        }
    }
}

fn is_queued(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    !name.starts_with('.') && name.ends_with(".json")
}

/// Exponential backoff with jitter: the n-th retry waits between half and
/// all of `base · 2^(n-1)`, at most `cap`.
#[derive(Debug, Clone, Copy)]
pub struct RetryDelay {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryDelay {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

impl RetryDelay {
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(20);
        let full = self.base.saturating_mul(1 << exp).min(self.cap);
        let half = full / 2;
        half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
    }
}

struct Entry {
    path: PathBuf,
    n: Notification,
    attempts: u32,
    next_at: Instant,
    in_flight: bool,
    last_error: Option<String>,
}

struct Done {
    id: String,
    kind: &'static str,
    result: Result<String, SendError>,
}

/// Delivers what the outbox holds.
pub struct Worker {
    outbox: Outbox,
    config: watch::Receiver<Arc<Config>>,
    redactor: Redactor,
    counters: Counters,
    backoff: RetryDelay,
}

impl Worker {
    pub fn new(
        outbox: Outbox,
        config: watch::Receiver<Arc<Config>>,
        redactor: Redactor,
        counters: Counters,
    ) -> Self {
        Self {
            outbox,
            config,
            redactor,
            counters,
            backoff: RetryDelay::default(),
        }
    }

    /// Picks up files not seen yet; moves unreadable ones aside.
    fn scan(&self, entries: &mut BTreeMap<String, Entry>) {
        let now = Instant::now();
        for path in self.outbox.pending() {
            let Some(id) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            if entries.contains_key(&id) {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<Notification>(&b).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(n) => {
                    entries.insert(
                        id,
                        Entry {
                            path,
                            n,
                            attempts: 0,
                            next_at: now,
                            in_flight: false,
                            last_error: None,
                        },
                    );
                }
                Err(problem) => {
                    let aside = path.with_extension("json.corrupt");
                    let moved = std::fs::rename(&path, &aside);
                    error!(path = %path.display(), moved_to = %aside.display(), problem = %problem, moved_aside = moved.is_ok(), "unreadable outbox file moved aside; its notification cannot be sent");
                    self.counters
                        .notifications
                        .get_or_create(&ResultLabels {
                            kind: "unknown",
                            result: "corrupt",
                        })
                        .inc();
                }
            }
        }
    }

    fn count(&self, kind: &'static str, result: &'static str) {
        self.counters
            .notifications
            .get_or_create(&ResultLabels { kind, result })
            .inc();
    }

    /// Runs until `shutdown`; then lets sends in flight finish (briefly).
    /// What is left stays queued for the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        let http = match super::http_client() {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "cannot build the HTTP client; Slack and webhook notifications stay queued");
                reqwest::Client::new()
            }
        };
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        loop {
            self.scan(&mut entries);
            let now = Instant::now();
            let cfg = self.config.borrow().clone();
            let max_age = cfg.daemon.notify_max_age;
            let mut expired = Vec::new();
            for (id, e) in entries.iter_mut() {
                if e.in_flight || e.next_at > now {
                    continue;
                }
                let age = Duration::from_millis(now_ms().saturating_sub(e.n.created));
                if age > max_age {
                    expired.push(id.clone());
                    continue;
                }
                if tasks.len() >= CONCURRENCY {
                    continue;
                }
                let Some(notifier) = cfg.notifiers.get(&e.n.notifier).cloned() else {
                    e.attempts += 1;
                    let wait = self.backoff.delay(e.attempts);
                    e.next_at = now + wait;
                    let msg = format!(
                        "notifier {:?} is not in the running configuration",
                        e.n.notifier
                    );
                    if e.last_error.as_deref() != Some(msg.as_str()) {
                        warn!(notifier = %e.n.notifier, notification = %id, error = %msg, "notification not delivered; kept until the notifier is configured again or it expires");
                    }
                    e.last_error = Some(msg);
                    continue;
                };
                e.in_flight = true;
                let (id, n, http, path, dir) = (
                    id.clone(),
                    e.n.clone(),
                    http.clone(),
                    e.path.clone(),
                    self.outbox.dir.clone(),
                );
                tasks.spawn(async move {
                    let kind = notifier.kind();
                    let result = super::deliver(&notifier, &n.id, &n.event, &http).await;
                    if result.is_ok() {
                        // Removed before it is forgotten: a restart must not
                        // find and send it again.
                        let _ = tokio::task::spawn_blocking(move || {
                            std::fs::remove_file(&path).and_then(|()| sync_dir(&dir))
                        })
                        .await;
                    }
                    Done { id, kind, result }
                });
            }
            for id in expired {
                if let Some(e) = entries.remove(&id) {
                    let kind = cfg
                        .notifiers
                        .get(&e.n.notifier)
                        .map(|n| n.kind())
                        .unwrap_or("unknown");
                    let _ = std::fs::remove_file(&e.path);
                    self.count(kind, "expired");
                    error!(
                        notifier = %e.n.notifier,
                        notification = %id,
                        event_type = e.n.event.kind.as_str(),
                        watch = e.n.event.watch.as_deref().unwrap_or(""),
                        attempts = e.attempts,
                        max_age = %humantime::format_duration(max_age),
                        last_error = %self.redactor.redact(e.last_error.as_deref().unwrap_or("none")),
                        "notification undelivered for longer than notify_max_age; dropped"
                    );
                }
            }
            self.counters.pending.set(entries.len() as i64);
            let next = entries
                .values()
                .filter(|e| !e.in_flight)
                .map(|e| e.next_at)
                .min();
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.outbox.wake.notified() => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(done) = done {
                        self.finish(&mut entries, done);
                    }
                }
                // With every slot busy, only a finished send can make progress.
                _ = sleep, if tasks.len() < CONCURRENCY => {}
            }
        }
        let drain = async {
            while let Some(done) = tasks.join_next().await {
                if let Ok(done) = done {
                    self.finish(&mut entries, done);
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(2), drain)
            .await
            .is_err()
        {
            warn!(
                "notifications still being sent at shutdown; they stay queued and are sent at the next start"
            );
        }
        self.counters.pending.set(entries.len() as i64);
    }

    fn finish(&self, entries: &mut BTreeMap<String, Entry>, done: Done) {
        let Some(e) = entries.get_mut(&done.id) else {
            return;
        };
        e.in_flight = false;
        e.attempts += 1;
        match done.result {
            Ok(answer) => {
                let delay_ms = now_ms().saturating_sub(e.n.event.ts);
                self.count(done.kind, "sent");
                self.counters.delay.observe(delay_ms as f64 / 1000.0);
                info!(
                    notifier = %e.n.notifier,
                    notification = %done.id,
                    event_type = e.n.event.kind.as_str(),
                    watch = e.n.event.watch.as_deref().unwrap_or(""),
                    attempts = e.attempts,
                    delay_ms,
                    answer = %self.redactor.redact(&answer),
                    "notification delivered"
                );
                entries.remove(&done.id);
            }
            Err(err) => {
                let wait = self.backoff.delay(e.attempts);
                e.next_at = Instant::now() + wait;
                let msg = self.redactor.redact(&err.0);
                self.count(done.kind, "retried");
                warn!(
                    notifier = %e.n.notifier,
                    notification = %done.id,
                    event_type = e.n.event.kind.as_str(),
                    watch = e.n.event.watch.as_deref().unwrap_or(""),
                    attempt = e.attempts,
                    retry_in_ms = wait.as_millis() as u64,
                    error = %msg,
                    "notification not delivered; will retry"
                );
                e.last_error = Some(msg);
            }
        }
        self.counters.pending.set(entries.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let b = RetryDelay::default();
        for _ in 0..50 {
            let first = b.delay(1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let fourth = b.delay(4);
            assert!(fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8));
            assert!(b.delay(40) <= Duration::from_secs(300));
            assert!(b.delay(40) >= Duration::from_secs(150));
        }
    }

    #[test]
    fn a_queued_notification_is_one_durable_file_per_notifier_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let e = fixtures::started();
        let ids = outbox
            .enqueue(&e, &["ops-slack".into(), "odd/name".into()])
            .unwrap();
        assert_eq!(
            ids,
            [format!("{}-ops-slack", e.id), format!("{}-odd_name", e.id)]
        );
        let files = outbox.pending();
        assert_eq!(files.len(), 2);
        let n: Notification = serde_json::from_slice(&std::fs::read(&files[1]).unwrap()).unwrap();
        assert_eq!(n.notifier, "ops-slack");
        assert_eq!(n.event, e);
        assert!(
            !std::fs::read_to_string(&files[0])
                .unwrap()
                .contains("tok-secret-1234")
        );
    }

    #[test]
    fn leftover_temporary_files_are_cleared_and_never_queued() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(DIR)).unwrap();
        std::fs::write(dir.path().join(DIR).join(".x.json.tmp"), "{").unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert!(outbox.pending().is_empty());
        assert!(!dir.path().join(DIR).join(".x.json.tmp").exists());
    }

    #[test]
    fn the_same_rejection_is_notified_once() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let red = Redactor::default();
        let errs = vec!["a.toml:1:1: bad".to_owned()];
        let to = vec!["audit".to_owned()];
        outbox.config_rejected("h", "file change", &errs, &to, &red);
        outbox.config_rejected("h", "SIGHUP", &errs, &to, &red);
        assert_eq!(outbox.pending().len(), 1);
        outbox.config_accepted();
        outbox.config_rejected("h", "SIGHUP", &errs, &to, &red);
        assert_eq!(outbox.pending().len(), 2);
    }
}
