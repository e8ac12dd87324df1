//! The supervisor: the one task that owns the live configuration and one
//! [`Runner`] per watch. It applies reloads (the same diff it logs), gains
//! and gives up the right to act with leader election, forwards operators'
//! instructions, and keeps the metrics that span watches. Deciding and
//! acting are the runners'.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Control, DaemonState, systemd, watcher};
use crate::api::{ReloadRecord, WatchAction};
use crate::check::Connections;
use crate::clock::rfc3339;
use crate::config::{self, Config, ConfigDiff, Watch, WatchChange};
use crate::engine::JournalSummary;
use crate::metrics::{KindLabel, ResultLabel, StateLabel};
use crate::runner::{Inbox, Msg, Runner, Services, Stop};
use crate::store::journal::{self, Journal};
use crate::telemetry::Telemetry;

/// An operator's instruction to one watch (the control endpoints).
pub struct WatchCommand {
    pub watch: String,
    pub action: WatchAction,
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// A runner in its task.
struct Running {
    inbox: Inbox,
    stop: Stop,
    task: JoinHandle<()>,
}

pub struct Supervisor {
    pub(super) state: Arc<DaemonState>,
    pub(super) config: watch::Sender<Arc<Config>>,
    pub(super) telemetry: Telemetry,
    pub(super) watcher: Option<watcher::ConfigWatcher>,
    services: Arc<Services>,
    connections: watch::Sender<Arc<Connections>>,
    runners: BTreeMap<String, Running>,
    /// Runners told to stop whose task may not have ended yet: a watch that
    /// comes back waits for its old runner to have saved its memory.
    retiring: BTreeMap<String, JoinHandle<()>>,
    /// What the journal says of each watch, read when leadership starts.
    journal_view: BTreeMap<String, JournalSummary>,
    coalescer_seen: (u64, u64),
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

impl Supervisor {
    pub fn new(
        state: Arc<DaemonState>,
        config: watch::Sender<Arc<Config>>,
        telemetry: Telemetry,
        watcher: Option<watcher::ConfigWatcher>,
        services: Arc<Services>,
        connections: watch::Sender<Arc<Connections>>,
    ) -> Self {
        Self {
            state,
            config,
            telemetry,
            watcher,
            services,
            connections,
            runners: BTreeMap::new(),
            retiring: BTreeMap::new(),
            journal_view: BTreeMap::new(),
            coalescer_seen: (0, 0),
        }
    }

    /// What the journal says each watch did: rollbacks started and never
    /// finished, and revisions rolled away from.
    fn read_journal(&mut self) {
        let dir = self.services.state_dir.clone();
        let (lines, damage) = match tokio::task::block_in_place(|| Journal::read(&dir)) {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "cannot read the journal; rollbacks in progress cannot be checked against it");
                return;
            }
        };
        for d in damage {
            warn!(line = d.line, problem = %d.problem, "skipping an unreadable journal line");
        }
        self.journal_view = journal::summaries(&lines);
    }

    /// Starts a runner for every watch of the running configuration.
    pub async fn start(&mut self) {
        if !self.state.is_leader() {
            return;
        }
        self.read_journal();
        let cfg = self.config.borrow().clone();
        for w in &cfg.watches {
            if !self.runners.contains_key(&w.name) {
                self.add(w).await;
            }
        }
        self.publish_counts();
    }

    pub async fn run(
        &mut self,
        control: &mut mpsc::Receiver<Control>,
        commands: &mut mpsc::Receiver<WatchCommand>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watchdog = systemd::watchdog_interval();
        let mut pet = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        loop {
            self.state.beat();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(msg) = control.recv() => match msg {
                    Control::Reload { cause } => self.reload(cause).await,
                    Control::Leadership { leader } => self.leadership(leader).await,
                },
                Some(c) = commands.recv() => self.on_command(c),
                _ = tick.tick() => self.refresh_metrics(),
                _ = pet.tick(), if watchdog.is_some() => systemd::watchdog(),
            }
        }
    }

    /// Stops evaluating, lets actions in flight reach their answer (bounded
    /// by `grace`), and lets every runner save its memory.
    pub async fn shutdown(&mut self, grace: Duration) {
        let runners = std::mem::take(&mut self.runners);
        for r in runners.values() {
            r.stop.graceful();
        }
        let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(1);
        for (name, r) in runners {
            if tokio::time::timeout_at(deadline, r.task).await.is_err() {
                warn!(watch = %name, "the watch did not stop within the shutdown timeout");
            }
        }
        for (_, task) in std::mem::take(&mut self.retiring) {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
    }

    /// Gains or gives up the right to evaluate and act. A new leader reads
    /// its state afresh (the journal, each watch's memory) and starts every
    /// watch; one that loses the Lease stops them all at once.
    async fn leadership(&mut self, leader: bool) {
        use std::sync::atomic::Ordering;
        if self.state.leader.swap(leader, Ordering::AcqRel) == leader {
            return;
        }
        self.state.metrics.leader.set(i64::from(leader));
        if leader {
            self.start().await;
            return;
        }
        let names: Vec<String> = self.runners.keys().cloned().collect();
        for name in names {
            self.retire(
                &name,
                "lost the leadership while a rollback was in progress; the new leader sees it on the workload (rollbackd.io/rollback) and does not repeat it",
            );
        }
        self.journal_view.clear();
    }

    /// Stops a watch's runner at once (its memory is saved as it stops);
    /// `in_progress` is said if a rollback was under way.
    fn retire(&mut self, name: &str, in_progress: &str) {
        let Some(r) = self.runners.remove(name) else {
            return;
        };
        r.stop.abandon();
        let busy = self
            .services
            .board
            .read()
            .ok()
            .and_then(|b| b.get(name).map(|l| l.state.clone()))
            .is_some_and(|s| s == "rolling_back" || s == "verifying");
        if busy {
            warn!(watch = %name, "{in_progress}");
        }
        self.retiring.insert(name.to_owned(), r.task);
        if let Ok(mut b) = self.services.board.write() {
            b.remove(name);
        }
    }

    /// Applies a reload's diff: removed watches are stopped, changed ones
    /// redefined (they keep their memory, with a fresh streak), added ones
    /// started. Kept ones are not touched. A standby runs none.
    async fn apply(&mut self, diff: &ConfigDiff, cfg: &Config) {
        if !self.state.is_leader() {
            return;
        }
        for (name, change) in diff.changes() {
            match change {
                WatchChange::Removed => self.retire(
                    name,
                    "removed while a rollback was in progress; it resumes if the watch comes back",
                ),
                WatchChange::Added | WatchChange::Changed => {
                    let Some(def) = cfg.watch(name) else { continue };
                    match self.runners.get(name) {
                        Some(r) => r.inbox.send(Msg::Redefine(Arc::new(def.clone()))),
                        None => self.add(def).await,
                    }
                }
                WatchChange::Kept => {}
            }
        }
    }

    async fn add(&mut self, def: &Watch) {
        let name = def.name.clone();
        if let Some(old) = self.retiring.remove(&name)
            && tokio::time::timeout(Duration::from_secs(5), old)
                .await
                .is_err()
        {
            warn!(watch = %name, "the watch's previous runner has not stopped; starting anyway");
        }
        self.retiring.retain(|_, t| !t.is_finished());
        let def = Arc::new(def.clone());
        let inbox = Inbox::default();
        let stop = Stop::default();
        let journal = self.journal_view.remove(&name).unwrap_or_default();
        let runner = Runner::new(def, self.services.clone());
        let task = tokio::spawn(runner.run(journal, inbox.clone(), stop.clone()));
        self.runners.insert(name, Running { inbox, stop, task });
    }

    fn on_command(&mut self, c: WatchCommand) {
        let Some(r) = self.runners.get(&c.watch) else {
            let _ = c.reply.send(Err(format!("no watch named {:?}", c.watch)));
            return;
        };
        let inbox = r.inbox.clone();
        tokio::spawn(async move {
            let (tx, rx) = oneshot::channel();
            inbox.send(Msg::Command(c.action, tx));
            let answer = rx.await.map_err(|_| "the watch stopped".to_owned());
            let _ = c.reply.send(answer);
        });
    }

    /// Metrics that span watches, from what the runners published.
    fn refresh_metrics(&mut self) {
        let m = &self.state.metrics;
        let mut counts: BTreeMap<&'static str, i64> = crate::engine::State::ALL
            .iter()
            .map(|s| (s.as_str(), 0))
            .collect();
        if let Ok(board) = self.services.board.read() {
            for live in board.values() {
                if let Some(n) = counts.get_mut(live.state.as_str()) {
                    *n += 1;
                }
            }
        }
        for (state, n) in counts {
            m.watches_by_state
                .get_or_create(&StateLabel { state })
                .set(n);
        }
        let now = crate::clock::now_ms();
        let checking = &self.services.checking;
        m.alerts_firing
            .set(checking.alerts.firing_count(now) as i64);
        let (sent, shared) = checking.coalescer.counts();
        m.prometheus_queries
            .inc_by(sent.saturating_sub(self.coalescer_seen.0));
        m.prometheus_queries_coalesced
            .inc_by(shared.saturating_sub(self.coalescer_seen.1));
        self.coalescer_seen = (sent, shared);
        self.retiring.retain(|_, t| !t.is_finished());
    }

    fn status_line(&self) -> String {
        let n = self.config.borrow().watches.len();
        let rejected = self.state.last_reload.read().ok().and_then(|r| {
            r.as_ref()
                .filter(|r| r.result == "failure")
                .map(|r| r.errors.len())
        });
        match rejected {
            Some(e) => format!("watching {n} watches; last reload rejected with {e} errors"),
            None => format!("watching {n} watches"),
        }
    }

    pub fn ready_line(&self) -> String {
        self.status_line()
    }

    pub(super) fn publish_counts(&self) {
        let cfg = self.config.borrow();
        let m = &self.state.metrics;
        m.watches.set(cfg.watches.len() as i64);
        let count =
            |f: fn(&config::Watch) -> usize| cfg.watches.iter().map(f).sum::<usize>() as i64;
        m.checks
            .get_or_create(&KindLabel { kind: "health" })
            .set(count(|w| w.health.len()));
        m.checks
            .get_or_create(&KindLabel { kind: "prometheus" })
            .set(count(|w| w.prometheus.len()));
        m.checks
            .get_or_create(&KindLabel { kind: "alert" })
            .set(count(|w| w.alerts.len()));
    }

    fn record(&self, cause: &'static str, errors: Vec<String>) {
        let result = if errors.is_empty() {
            "success"
        } else {
            "failure"
        };
        let record = ReloadRecord {
            at: rfc3339(SystemTime::now()),
            cause: cause.to_owned(),
            result: result.to_owned(),
            errors,
        };
        if let Ok(mut r) = self.state.last_reload.write() {
            *r = Some(record);
        }
        let m = &self.state.metrics;
        m.config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
        m.config_last_reload_successful
            .set(i64::from(result == "success"));
    }

    /// The one reload path: read everything, validate it whole, and either
    /// swap it in or keep the last good configuration.
    async fn reload(&mut self, cause: &'static str) {
        systemd::reloading();
        if let Some(w) = &mut self.watcher {
            w.refresh();
        }
        let old = self.config.borrow().clone();
        let path = old.main_file.clone();
        // Building HTTP clients reads the system's CA roots: keep it off the
        // supervisor, with the file reading.
        let loaded = tokio::task::spawn_blocking(move || {
            config::load(&path).map(|c| {
                let c = Arc::new(c);
                let conn = Connections::build(c.clone());
                (c, conn)
            })
        })
        .await;
        let (new, conn) = match loaded {
            Ok(Ok(new)) => new,
            Ok(Err(errors)) => {
                let lines: Vec<String> = errors.errors.iter().map(|d| d.to_string()).collect();
                self.reject(cause, lines);
                return;
            }
            Err(join) => {
                self.reject(cause, vec![format!("configuration loader failed: {join}")]);
                return;
            }
        };
        let refused = config::restart_required(&old, &new);
        if !refused.is_empty() {
            self.reject(cause, refused);
            return;
        }
        self.state.redactor.add(&new.secrets);
        for w in &new.warnings {
            warn!(warning = %w, "configuration warning");
        }
        let d = config::diff(&old, &new);
        let logging = match self
            .telemetry
            .apply(new.daemon.log_format, &new.daemon.log_level)
        {
            Ok(changed) => changed,
            Err(e) => vec![format!("not applied: {e}")],
        };
        if let Some(w) = &mut self.watcher {
            w.update(&new);
        }
        let now = SystemTime::now();
        // Recorded before the new configuration is visible: whoever sees
        // its watches in /status finds the reload counted in the metrics.
        if let Ok(mut t) = self.state.loaded_at.write() {
            *t = now;
        }
        self.state
            .metrics
            .config_last_reload_success
            .set(super::epoch_secs(now));
        self.record(cause, Vec::new());
        self.connections.send_replace(Arc::new(conn));
        self.config.send_replace(new.clone());
        self.apply(&d, &new).await;
        self.services.outbox.config_accepted();
        self.publish_counts();
        // Logged once applied: whoever reads this line sees the new state.
        if d.is_noop() && logging.is_empty() {
            debug!(
                cause,
                watches = new.watches.len(),
                "configuration reloaded, nothing changed"
            );
        } else {
            info!(
                cause,
                added = %d.added.join(","),
                removed = %d.removed.join(","),
                changed = %d.changed.join(","),
                kept = d.kept.len(),
                logging = %logging.join(","),
                "configuration reloaded"
            );
        }
        systemd::ready(&self.status_line());
    }

    fn reject(&mut self, cause: &'static str, errors: Vec<String>) {
        // Recorded before it is logged: whoever reads the log line finds
        // the rejection in /status too.
        self.record(cause, errors.clone());
        for e in &errors {
            warn!(cause, error = %e, "configuration error");
        }
        warn!(
            cause,
            errors = errors.len(),
            "configuration rejected; the last good configuration keeps running"
        );
        self.notify_rejected(cause, &errors);
        systemd::ready(&self.status_line());
    }

    /// `config_rejected` goes to every notifier the running watches use
    /// (all of them when no watch names one): it has no watch of its own.
    fn notify_rejected(&self, cause: &str, errors: &[String]) {
        let cfg = self.config.borrow().clone();
        let mut to: Vec<String> = cfg
            .watches
            .iter()
            .flat_map(|w| w.settings.notify.iter().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if to.is_empty() {
            to = cfg.notifiers.keys().cloned().collect();
        }
        tokio::task::block_in_place(|| {
            self.services.outbox.config_rejected(
                &self.services.host,
                cause,
                errors,
                &to,
                &self.state.redactor,
            )
        });
    }
}
