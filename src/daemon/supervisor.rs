//! The supervisor: the one task that owns the live configuration, every
//! watch's engine and the clock. It feeds the engines what the watch loops
//! observed and what the adapters answered, and carries out their effects in
//! order: journal (durably) and notify before acting, persist after.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::scheduler::{self, Observation, Probes, Report, Running, now_ms};
use super::status::{self, Live, ReloadRecord};
use super::{Control, Shared, metrics, systemd, watcher};
use crate::check::prometheus::Baseline;
use crate::config::{self, Config, Target, Watch};
use crate::engine::{
    ActResult, Effect, EventKind, Input, Machine, Origin, Phase, Policy, Recheck, Record, Revision,
    RolloutResult, Trigger,
};
use crate::rollback::{command, kubernetes};
use crate::store::journal::Journal;
use crate::store::memory::{Loaded, MemoryStore};
use crate::telemetry::Telemetry;

/// An operator's instruction to one watch (the control endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchAction {
    Pause,
    Resume,
    Reset,
}

pub struct WatchCommand {
    pub watch: String,
    pub action: WatchAction,
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// An adapter's answer to an effect, with the output of a command it ran.
pub struct Answer {
    watch: String,
    input: Input,
    output: Option<command::Run>,
    /// What a Kubernetes undo restored, for the journal and reports.
    undo: Option<kubernetes::act::UndoDetail>,
    /// The leadership term the action ran in: answers of an earlier term
    /// are dropped.
    term: u64,
}

/// What `watches/NAME.json` holds.
#[derive(Serialize, Deserialize)]
struct Memory {
    machine: Machine,
    #[serde(default)]
    baselines: BTreeMap<String, (String, Baseline)>,
}

struct WatchRuntime {
    def: Arc<Watch>,
    machine: Machine,
    baselines: BTreeMap<String, (String, Baseline)>,
    running: Running,
    /// What the last Kubernetes undo restored, by rollback id.
    undo: Option<(String, kubernetes::act::UndoDetail)>,
}

pub struct Channels {
    pub control: mpsc::Receiver<Control>,
    pub reports: mpsc::Receiver<Report>,
    pub answers: mpsc::Receiver<Answer>,
    pub commands: mpsc::Receiver<WatchCommand>,
}

pub struct Supervisor {
    pub(super) shared: Arc<Shared>,
    pub(super) config: watch::Sender<Arc<Config>>,
    pub(super) telemetry: Telemetry,
    pub(super) watcher: Option<watcher::ConfigWatcher>,
    journal: Journal,
    memory: MemoryStore,
    sched: Arc<scheduler::Shared>,
    probes: watch::Sender<Arc<Probes>>,
    reports: mpsc::Sender<Report>,
    answers: mpsc::Sender<Answer>,
    watches: BTreeMap<String, WatchRuntime>,
    generation: u64,
    in_flight: usize,
    host: String,
    coalescer_seen: (u64, u64),
    journal_view: BTreeMap<String, JournalView>,
    outbox: crate::notify::Outbox,
    /// Leadership terms so far; actions carry theirs.
    term: u64,
    /// Cancelled when the leadership is lost: actions in flight stop.
    actions: CancellationToken,
}

#[derive(Default)]
struct JournalView {
    /// The last rollback started and not finished: (rollback_id, from).
    open: Option<(String, String)>,
    bad: std::collections::BTreeSet<String>,
}

/// The journal is written before every action, the memory after: where they
/// disagree (a crash between the two, a lost memory file), the journal wins.
/// A started rollback the memory does not know is resumed, never restarted.
fn reconcile(machine: &mut Machine, view: &JournalView, name: &str) {
    for b in &view.bad {
        machine.bad_revisions.insert(b.clone());
    }
    let Some((id, from)) = &view.open else { return };
    let finished = machine
        .last_rollback
        .as_ref()
        .is_some_and(|l| &l.rollback_id == id);
    if machine.phase == Phase::Watching && !finished {
        warn!(watch = %name, rollback_id = %id, "the journal shows a rollback started and not finished; resuming it");
        machine.phase = Phase::Acting {
            rollback_id: id.clone(),
            from: from.clone(),
            to: None,
            started: now_ms(),
            dry_run: false,
        };
    }
}

pub struct Parts {
    pub shared: Arc<Shared>,
    pub config: watch::Sender<Arc<Config>>,
    pub telemetry: Telemetry,
    pub watcher: Option<watcher::ConfigWatcher>,
    pub journal: Journal,
    pub memory: MemoryStore,
    pub sched: Arc<scheduler::Shared>,
    pub probes: watch::Sender<Arc<Probes>>,
    pub reports: mpsc::Sender<Report>,
    pub answers: mpsc::Sender<Answer>,
    pub outbox: crate::notify::Outbox,
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

impl Supervisor {
    pub fn new(p: Parts) -> Self {
        Self {
            shared: p.shared,
            config: p.config,
            telemetry: p.telemetry,
            watcher: p.watcher,
            journal: p.journal,
            memory: p.memory,
            sched: p.sched,
            probes: p.probes,
            reports: p.reports,
            answers: p.answers,
            watches: BTreeMap::new(),
            generation: 0,
            in_flight: 0,
            host: hostname(),
            coalescer_seen: (0, 0),
            journal_view: BTreeMap::new(),
            outbox: p.outbox,
            term: 0,
            actions: CancellationToken::new(),
        }
    }

    /// What the journal says each watch did, for [`reconcile`]: rollbacks
    /// started and never finished, and revisions rolled away from.
    fn read_journal(&mut self) {
        let dir = self
            .journal
            .path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let (records, damage) = match tokio::task::block_in_place(|| Journal::read(&dir)) {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "cannot read the journal; rollbacks in progress cannot be checked against it");
                return;
            }
        };
        for d in damage {
            warn!(line = d.line, problem = %d.problem, "skipping an unreadable journal line");
        }
        for r in records {
            let (Some(watch), Some(event)) = (r["watch"].as_str(), r["event"].as_str()) else {
                continue;
            };
            let view = self.journal_view.entry(watch.to_owned()).or_default();
            let id = r["rollback_id"].as_str().map(str::to_owned);
            let from = r["from_revision"].as_str().map(str::to_owned);
            match (event, id, from) {
                ("rollback_started", Some(id), Some(from)) => view.open = Some((id, from)),
                ("rollback_applied", _, Some(from)) => {
                    view.bad.insert(from);
                }
                ("rollback_finished", Some(id), _)
                    if view.open.as_ref().is_some_and(|o| o.0 == id) =>
                {
                    view.open = None
                }
                _ => {}
            }
        }
    }

    /// Starts a loop for every watch of the running configuration.
    pub fn start(&mut self) {
        self.read_journal();
        let cfg = self.config.borrow().clone();
        self.sync_watches(&cfg);
        self.publish_counts();
    }

    pub async fn run(&mut self, ch: &mut Channels, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watchdog = systemd::watchdog_interval();
        let mut pet = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        loop {
            self.shared.beat();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(msg) = ch.control.recv() => match msg {
                    Control::Reload { cause } => self.reload(cause).await,
                    Control::Leadership { leader } => self.leadership(leader),
                },
                Some(a) = ch.answers.recv() => self.on_answer(a),
                Some(c) = ch.commands.recv() => self.on_command(c),
                Some(r) = ch.reports.recv() => self.on_report(r),
                _ = tick.tick() => self.on_tick(),
                _ = pet.tick(), if watchdog.is_some() => systemd::watchdog(),
            }
        }
    }

    /// Stops evaluating, lets actions in flight reach their answer (bounded
    /// by `grace`), and saves every watch's memory.
    pub async fn shutdown(&mut self, ch: &mut Channels, grace: Duration) {
        for rt in self.watches.values() {
            rt.running.cancel.cancel();
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.in_flight > 0 {
            info!(
                actions = self.in_flight,
                "waiting for actions in flight to finish"
            );
            match tokio::time::timeout_at(deadline, ch.answers.recv()).await {
                Ok(Some(a)) => self.on_answer(a),
                Ok(None) => break,
                Err(_) => {
                    warn!(
                        actions = self.in_flight,
                        "shutdown timeout: leaving actions in flight; they resume at the next start"
                    );
                    break;
                }
            }
        }
        let names: Vec<String> = self.watches.keys().cloned().collect();
        for name in names {
            // Failures are logged where they happen; nothing here acts on them.
            let _ = self.persist(&name);
        }
    }

    fn policy_of(def: &Watch) -> Policy {
        Policy::from_settings(&def.settings)
    }

    fn spawn_loop(
        &mut self,
        def: &Arc<Watch>,
        machine: &Machine,
        baselines: &BTreeMap<String, (String, Baseline)>,
        continuing: bool,
    ) -> Running {
        self.generation += 1;
        scheduler::spawn(
            def.clone(),
            self.sched.clone(),
            self.generation,
            self.reports.clone(),
            machine.revision.clone(),
            baselines.clone(),
            continuing,
        )
    }

    pub(super) fn probes_now(&self) -> Arc<Probes> {
        self.probes.borrow().clone()
    }

    /// Gains or gives up the right to evaluate and act. A new leader reads
    /// its state afresh (the journal, each watch's memory) and starts every
    /// watch; one that loses the Lease saves and stops them all.
    fn leadership(&mut self, leader: bool) {
        use std::sync::atomic::Ordering;
        if self.shared.leader.swap(leader, Ordering::AcqRel) == leader {
            return;
        }
        self.term += 1;
        self.actions.cancel();
        self.actions = CancellationToken::new();
        self.shared.metrics.leader.set(i64::from(leader));
        if leader {
            self.start();
            return;
        }
        let names: Vec<String> = self.watches.keys().cloned().collect();
        for name in names {
            self.retire(
                &name,
                "lost the leadership while a rollback was in progress; the new leader sees it on the workload (rollbackd.io/rollback) and does not repeat it",
            );
        }
        self.journal_view.clear();
    }

    /// Saves a watch's memory and stops its loop; `in_progress` is said if
    /// a rollback was under way.
    fn retire(&mut self, name: &str, in_progress: &str) {
        // Failures are logged where they happen; nothing here acts on them.
        let _ = self.persist(name);
        if let Some(rt) = self.watches.remove(name) {
            rt.running.cancel.cancel();
            if rt.machine.phase != Phase::Watching {
                warn!(watch = %name, "{in_progress}");
            }
        }
        self.shared.forget(name);
    }

    /// Starts, restarts and stops watch loops to match `cfg`. Kept watches
    /// keep everything; changed ones keep their memory but start a fresh
    /// streak; removed ones are saved and stopped. A standby runs none.
    fn sync_watches(&mut self, cfg: &Config) {
        if !self.shared.is_leader() {
            return;
        }
        let wanted: BTreeMap<&str, &Watch> =
            cfg.watches.iter().map(|w| (w.name.as_str(), w)).collect();
        let gone: Vec<String> = self
            .watches
            .keys()
            .filter(|n| !wanted.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.retire(
                &name,
                "removed while a rollback was in progress; it resumes if the watch comes back",
            );
        }
        for (name, def) in wanted {
            match self.watches.get(name) {
                Some(rt) if *rt.def == *def => continue,
                Some(_) => {
                    let def = Arc::new(def.clone());
                    let Some(mut rt) = self.watches.remove(name) else {
                        continue;
                    };
                    rt.running.cancel.cancel();
                    let mut machine = Machine {
                        policy: Self::policy_of(&def),
                        ..rt.machine
                    };
                    machine.streak = 0;
                    machine.inconclusive_run = 0;
                    machine.blind = false;
                    machine.evidence.clear();
                    rt.running = self.spawn_loop(&def, &machine, &rt.baselines, true);
                    rt.machine = machine;
                    rt.def = def;
                    self.watches.insert(name.to_owned(), rt);
                    self.refresh_live(name);
                }
                None => self.add(name, def),
            }
        }
    }

    fn add(&mut self, name: &str, def: &Watch) {
        let def = Arc::new(def.clone());
        let policy = Self::policy_of(&def);
        let (machine, baselines) = match self.memory.load::<Memory>(name) {
            Ok(Loaded::Found(m)) => (
                Machine {
                    policy,
                    ..m.machine
                },
                m.baselines,
            ),
            Ok(Loaded::Missing) => (Machine::new(name, policy), BTreeMap::new()),
            Ok(Loaded::Corrupt { problem, moved_to }) => {
                error!(watch = %name, problem = %problem, moved_to = %moved_to.display(), "the watch's saved memory is unreadable; starting without it (bad revisions and arming are forgotten)");
                (Machine::new(name, policy), BTreeMap::new())
            }
            Err(e) => {
                error!(watch = %name, error = %e, "cannot read the watch's saved memory; starting without it");
                (Machine::new(name, policy), BTreeMap::new())
            }
        };
        let mut machine = machine;
        if let Some(view) = self.journal_view.remove(name) {
            reconcile(&mut machine, &view, name);
        }
        let running = self.spawn_loop(&def, &machine, &baselines, false);
        let resume = machine.phase != Phase::Watching;
        self.watches.insert(
            name.to_owned(),
            WatchRuntime {
                def,
                machine,
                baselines,
                running,
                undo: None,
            },
        );
        if resume {
            self.step(name, Input::Resumed);
        }
        self.refresh_live(name);
    }

    fn on_report(&mut self, r: Report) {
        let Some(rt) = self.watches.get_mut(&r.watch) else {
            return;
        };
        if rt.running.generation != r.generation {
            return;
        }
        match r.observation {
            Observation::Revision(rev) => self.step(&r.watch, Input::Revision(rev)),
            Observation::Evaluation(e) => {
                let result = e.verdict.as_str();
                self.shared
                    .metrics
                    .evaluations
                    .get_or_create(&metrics::ResultLabel { result })
                    .inc();
                debug!(watch = %r.watch, result, "evaluated");
                self.step(&r.watch, Input::Evaluation(e));
            }
            Observation::Baseline {
                check,
                revision,
                samples,
            } => {
                rt.baselines.insert(check, (revision, samples));
                let _ = self.persist(&r.watch);
            }
        }
    }

    fn on_answer(&mut self, a: Answer) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if a.term != self.term {
            debug!(watch = %a.watch, "dropping the answer of an action from an earlier leadership term");
            return;
        }
        if let Some(run) = &a.output {
            let mut v = serde_json::json!({
                "event": "command_output",
                "exit_code": run.exit_code,
                "timed_out": run.timed_out,
                "duration_ms": run.duration.as_millis() as u64,
                "stdout": run.stdout,
                "stderr": run.stderr,
            });
            if let Input::Acted { rollback_id, .. } = &a.input {
                v["rollback_id"] = rollback_id.clone().into();
            }
            let _ = self.append(&a.watch, v);
        }
        if let (Some(d), Input::Acted { rollback_id, .. }) = (&a.undo, &a.input) {
            if let Some(rt) = self.watches.get_mut(&a.watch) {
                rt.undo = Some((rollback_id.clone(), d.clone()));
            }
            let v = serde_json::json!({
                "event": "undo_patch",
                "rollback_id": rollback_id,
                "restored_revision": d.restored,
                "from_images": d.from_images,
                "to_images": d.to_images,
            });
            let _ = self.append(&a.watch, v);
        }
        if self.watches.contains_key(&a.watch) {
            self.step(&a.watch, a.input);
        }
    }

    fn on_command(&mut self, c: WatchCommand) {
        if !self.watches.contains_key(&c.watch) {
            let _ = c.reply.send(Err(format!("no watch named {:?}", c.watch)));
            return;
        }
        let input = match c.action {
            WatchAction::Pause => Input::Pause,
            WatchAction::Resume => Input::Resume,
            WatchAction::Reset => Input::Reset,
        };
        self.step(&c.watch, input);
        let state = self
            .watches
            .get(&c.watch)
            .map(|rt| rt.machine.state(now_ms()).as_str())
            .unwrap_or("");
        let _ = c.reply.send(Ok(state.to_owned()));
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        let verifying: Vec<String> = self
            .watches
            .iter()
            .filter(|(_, rt)| matches!(rt.machine.phase, Phase::Verifying { .. }))
            .map(|(n, _)| n.clone())
            .collect();
        for name in verifying {
            self.step(&name, Input::Tick);
        }
        let m = &self.shared.metrics;
        let mut counts: BTreeMap<&'static str, i64> = crate::engine::State::ALL
            .iter()
            .map(|s| (s.as_str(), 0))
            .collect();
        for (name, rt) in &self.watches {
            *counts.entry(rt.machine.state(now).as_str()).or_default() += 1;
            if let Ok(mut live) = self.shared.live.write()
                && let Some(l) = live.get_mut(name)
            {
                l.state = rt.machine.state(now).as_str();
            }
        }
        for (state, n) in counts {
            m.watches_by_state
                .get_or_create(&metrics::StateLabel { state })
                .set(n);
        }
        m.alerts_firing
            .set(self.sched.alerts.firing_count(now) as i64);
        let (sent, shared) = self.sched.coalescer.counts();
        m.prometheus_queries
            .inc_by(sent.saturating_sub(self.coalescer_seen.0));
        m.prometheus_queries_coalesced
            .inc_by(shared.saturating_sub(self.coalescer_seen.1));
        self.coalescer_seen = (sent, shared);
    }

    /// Feeds one input to a watch's engine and carries out the effects.
    fn step(&mut self, name: &str, input: Input) {
        let now = now_ms();
        let Some(rt) = self.watches.get_mut(name) else {
            return;
        };
        let effects = rt.machine.step(now, input);
        if let Ok(mut r) = rt.running.revision.write() {
            r.clone_from(&rt.machine.revision);
        }
        // SPEC §4.3.2: what is about to be done must be on disk first. If a
        // journal line or the memory could not be written, do not act.
        let mut unwritten: Option<String> = None;
        for effect in effects {
            match effect {
                Effect::Journal(r) => {
                    if let Err(e) = self.journal_record(name, &r) {
                        unwritten.get_or_insert(format!("cannot write the journal: {e}"));
                    }
                }
                Effect::Notify(r) => self.notify(name, &r),
                Effect::Persist => {
                    if let Err(e) = self.persist(name) {
                        unwritten.get_or_insert(format!("cannot save the watch's memory: {e}"));
                    }
                }
                Effect::Rollback(order) if unwritten.is_some() => {
                    let why = format!(
                        "not rolling back: {}",
                        unwritten.clone().unwrap_or_default()
                    );
                    error!(watch = %name, reason = %why, "refusing to act without a durable record");
                    self.in_flight += 1;
                    let _ = self.answers.try_send(Answer {
                        watch: name.to_owned(),
                        input: Input::Acted {
                            rollback_id: order.rollback_id,
                            result: ActResult::Refused(why),
                        },
                        output: None,
                        undo: None,
                        term: self.term,
                    });
                }
                action => self.act(name, action),
            }
        }
        self.refresh_live(name);
    }

    fn append(&mut self, name: &str, mut v: serde_json::Value) -> std::io::Result<()> {
        let target = self.watches.get(name).map(|rt| rt.def.target.to_string());
        if let Some(obj) = v.as_object_mut() {
            obj.entry("ts")
                .or_insert_with(|| status::rfc3339(SystemTime::now()).into());
            obj.insert("watch".into(), name.into());
            obj.insert("target".into(), target.into());
            obj.insert("host".into(), self.host.clone().into());
        }
        self.shared.redactor.redact_json(&mut v);
        let journal = &mut self.journal;
        let written = tokio::task::block_in_place(|| journal.append(&v));
        if let Err(e) = &written {
            error!(watch = %name, error = %e, path = %self.journal.path().display(), "cannot write the journal");
        }
        written
    }

    fn journal_record(&mut self, name: &str, r: &Record) -> std::io::Result<()> {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        let ts = SystemTime::UNIX_EPOCH + Duration::from_millis(r.ts);
        v["ts"] = status::rfc3339_millis(ts).into();
        if r.event == EventKind::RollbackFinished
            && let (Some(outcome), Some(rt)) = (r.outcome, self.watches.get(name))
            && let Some(last) = &rt.machine.last_rollback
        {
            let trigger = match last.trigger {
                Trigger::Auto => "auto",
                Trigger::Manual => "manual",
            };
            self.shared
                .metrics
                .rollbacks
                .get_or_create(&metrics::RollbackLabels {
                    trigger,
                    outcome: outcome.as_str(),
                })
                .inc();
            self.shared
                .metrics
                .rollback_duration
                .observe(last.finished.saturating_sub(last.started) as f64 / 1000.0);
        }
        self.append(name, v)
    }

    /// Tells people: logs the event, and queues it in the outbox for the
    /// watch's notifiers (a durable local write; delivery is the outbox
    /// worker's, never waited for here).
    fn notify(&mut self, name: &str, r: &Record) {
        self.enqueue_notification(name, r);
        let event = r.event.as_str();
        let revision = r.revision.as_ref().map(|rev| rev.id.as_str()).unwrap_or("");
        let target = self
            .watches
            .get(name)
            .map(|rt| rt.def.target.to_string())
            .unwrap_or_default();
        let reason = r.reason.as_deref().unwrap_or("");
        let outcome = r.outcome.map(|o| o.as_str()).unwrap_or("");
        let rollback_id = r.rollback_id.as_deref().unwrap_or("");
        match r.event {
            EventKind::Escalated => {
                error!(watch = %name, %target, revision, event, rollback_id, reason, "escalated: a person must act")
            }
            EventKind::RollbackFinished if outcome != "recovered" && outcome != "conflict" => {
                error!(watch = %name, %target, revision, event, rollback_id, outcome, reason, "rollback finished without recovery")
            }
            EventKind::RollbackFinished => {
                info!(watch = %name, %target, revision, event, rollback_id, outcome, "rollback finished")
            }
            EventKind::RollbackStarted => {
                warn!(watch = %name, %target, revision, event, rollback_id, reason, "rolling back")
            }
            EventKind::WouldRollBack => {
                warn!(watch = %name, %target, revision, event, rollback_id, reason, "dry run: would roll back")
            }
            _ => warn!(watch = %name, %target, revision, event, reason, "watch event"),
        }
    }

    fn enqueue_notification(&self, name: &str, r: &Record) {
        let cfg = self.config.borrow().clone();
        let rt = self.watches.get(name);
        let cx = crate::notify::Context {
            host: &self.host,
            watch: rt.map(|rt| &*rt.def),
            sources: &cfg.prometheus,
            timings: crate::notify::Timings::of(
                r,
                rt.and_then(|rt| rt.machine.last_rollback.as_ref()),
            ),
            redactor: &self.shared.redactor,
            images: rt.and_then(|rt| rt.undo.as_ref()).and_then(|(id, d)| {
                (r.rollback_id.as_ref() == Some(id) && !d.to_images.is_empty())
                    .then(|| (d.from_images.clone(), d.to_images.clone()))
            }),
        };
        let notifiers = rt
            .map(|rt| rt.def.settings.notify.as_slice())
            .unwrap_or(&[]);
        tokio::task::block_in_place(|| self.outbox.record(r, &cx, notifiers));
    }

    fn persist(&mut self, name: &str) -> std::io::Result<()> {
        let Some(rt) = self.watches.get(name) else {
            return Ok(());
        };
        let memory = Memory {
            machine: rt.machine.clone(),
            baselines: rt.baselines.clone(),
        };
        let store = &self.memory;
        let saved = tokio::task::block_in_place(|| store.save(name, &memory));
        if let Err(e) = &saved {
            error!(watch = %name, error = %e, "cannot save the watch's memory; a restart would forget it");
        }
        saved
    }

    /// Runs an action on the target in its own task; the answer comes back
    /// as a message, so a slow target never holds up other watches.
    fn act(&mut self, name: &str, effect: Effect) {
        let Some(rt) = self.watches.get(name) else {
            return;
        };
        let def = rt.def.clone();
        let answers = self.answers.clone();
        let kube = self.probes.borrow().kube.clone();
        self.in_flight += 1;
        let (term, cancel) = (self.term, self.actions.clone());
        let watch = name.to_owned();
        let span = tracing::info_span!("rollback", watch = %name, target = %def.target);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                // Leadership lost: the action stops where it is; the new
                // leader reads the workload afresh.
                let mut answer = tokio::select! {
                    a = execute(&def, &kube, effect) => a,
                    _ = cancel.cancelled() => {
                        warn!("leadership lost: abandoning the action in flight");
                        unreachable_effect(&watch)
                    }
                };
                answer.term = term;
                let _ = answers.send(answer).await;
            },
            span,
        ));
    }

    fn refresh_live(&self, name: &str) {
        let Some(rt) = self.watches.get(name) else {
            return;
        };
        let now = now_ms();
        let live = Live::of(&rt.machine, now);
        if let Ok(mut l) = self.shared.live.write() {
            l.insert(name.to_owned(), live);
        }
    }

    fn status_line(&self) -> String {
        let n = self.config.borrow().watches.len();
        let rejected = self.shared.last_reload.read().ok().and_then(|r| {
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
        let m = &self.shared.metrics;
        m.watches.set(cfg.watches.len() as i64);
        let count =
            |f: fn(&config::Watch) -> usize| cfg.watches.iter().map(f).sum::<usize>() as i64;
        m.checks
            .get_or_create(&metrics::KindLabel { kind: "health" })
            .set(count(|w| w.health.len()));
        m.checks
            .get_or_create(&metrics::KindLabel { kind: "prometheus" })
            .set(count(|w| w.prometheus.len()));
        m.checks
            .get_or_create(&metrics::KindLabel { kind: "alert" })
            .set(count(|w| w.alerts.len()));
    }

    fn record(&self, cause: &'static str, errors: Vec<String>) {
        let result = if errors.is_empty() {
            "success"
        } else {
            "failure"
        };
        let record = ReloadRecord {
            at: status::rfc3339(SystemTime::now()),
            cause,
            result,
            errors,
        };
        if let Ok(mut r) = self.shared.last_reload.write() {
            *r = Some(record);
        }
        let m = &self.shared.metrics;
        m.config_reloads
            .get_or_create(&metrics::ResultLabel { result })
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
                let probes = Probes::build(&c);
                (c, probes)
            })
        })
        .await;
        let (new, probes) = match loaded {
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
        self.shared.redactor.add(&new.secrets);
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
        let new = Arc::new(new);
        self.probes.send_replace(Arc::new(probes));
        self.config.send_replace(new.clone());
        self.sync_watches(&new);
        if let Ok(mut t) = self.shared.loaded_at.write() {
            *t = now;
        }
        self.shared
            .metrics
            .config_last_reload_success
            .set(super::epoch_secs(now));
        self.record(cause, Vec::new());
        self.outbox.config_accepted();
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
            self.outbox
                .config_rejected(&self.host, cause, errors, &to, &self.shared.redactor)
        });
    }
}

/// Carries out one action on a watch's target and says what happened.
async fn execute(def: &Watch, kube: &Arc<kubernetes::Connector>, effect: Effect) -> Answer {
    let watch = def.name.clone();
    let answer = |input: Input, output: Option<command::Run>| Answer {
        watch: watch.clone(),
        input,
        output,
        undo: None,
        term: 0,
    };
    let c = match &def.target {
        Target::Command(c) => c,
        Target::Kubernetes(k) => return execute_kubernetes(def, k, kube, effect).await,
    };
    match effect {
        Effect::Recheck {
            rollback_id, from, ..
        } => {
            let result = match &c.current {
                None => Recheck::Proceed,
                Some(argv) => {
                    let env = command::Env {
                        watch: &def.name,
                        reason: "",
                        from_version: &from,
                    };
                    match command::current(argv, &env, def.settings.interval.min(c.timeout)).await {
                        Ok(v) if v == from => Recheck::Proceed,
                        Ok(v) => Recheck::Superseded(Revision {
                            id: v,
                            since: now_ms(),
                            origin: Origin::Rollout,
                            definite: false,
                        }),
                        Err(e) => Recheck::Failed(e),
                    }
                }
            };
            answer(
                Input::Rechecked {
                    rollback_id,
                    result,
                },
                None,
            )
        }
        Effect::Rollback(order) => {
            if order.dry_run {
                // A command has no dry run: proving it would mean running it.
                return answer(
                    Input::Acted {
                        rollback_id: order.rollback_id,
                        result: ActResult::Applied { to: None },
                    },
                    None,
                );
            }
            let env = command::Env {
                watch: &def.name,
                reason: &order.reason,
                from_version: &order.from,
            };
            info!(command = %c.rollback.join(" "), "running the rollback command");
            match command::run(&c.rollback, &env, c.timeout).await {
                Ok(run) => {
                    let result = if run.success() {
                        ActResult::Applied { to: None }
                    } else {
                        ActResult::Failed(run.failure())
                    };
                    answer(
                        Input::Acted {
                            rollback_id: order.rollback_id,
                            result,
                        },
                        Some(run),
                    )
                }
                Err(e) => answer(
                    Input::Acted {
                        rollback_id: order.rollback_id,
                        result: ActResult::Failed(e.to_string()),
                    },
                    None,
                ),
            }
        }
        Effect::WaitRollout { rollback_id, from } => {
            let result = wait_version_change(def, c, &from).await;
            answer(
                Input::RolledOut {
                    rollback_id,
                    result,
                },
                None,
            )
        }
        _ => unreachable_effect(&watch),
    }
}

/// A command target's rollout is done when `current` no longer prints the
/// version rolled away from. Right after a successful rollback command that
/// is at once; after a restart the command may still be running, orphaned,
/// so this waits for it, bounded by `rollout_timeout`. Without `current`
/// the command's success is all there is to go by.
async fn wait_version_change(
    def: &Watch,
    c: &crate::config::CommandTarget,
    from: &str,
) -> RolloutResult {
    let Some(argv) = &c.current else {
        return RolloutResult::Complete(None);
    };
    let deadline = tokio::time::Instant::now() + def.settings.rollout_timeout;
    let env = command::Env {
        watch: &def.name,
        reason: "",
        from_version: from,
    };
    let poll = def
        .settings
        .interval
        .clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        if let Ok(v) =
            command::current(argv, &env, poll.max(Duration::from_secs(1)).min(c.timeout)).await
            && v != from
        {
            let landed = Revision {
                id: v,
                since: now_ms(),
                origin: Origin::Rollback,
                definite: false,
            };
            return RolloutResult::Complete(Some(landed));
        }
        if tokio::time::Instant::now() + poll > deadline {
            return RolloutResult::Failed(format!(
                "`current` still reports {from} {} after the rollback",
                humantime::format_duration(def.settings.rollout_timeout)
            ));
        }
        tokio::time::sleep(poll).await;
    }
}

fn unreachable_effect(watch: &str) -> Answer {
    // `act` is only called with the three actions above.
    Answer {
        watch: watch.to_owned(),
        input: Input::Tick,
        output: None,
        undo: None,
        term: 0,
    }
}

/// The same three actions on a Deployment, StatefulSet or DaemonSet.
async fn execute_kubernetes(
    def: &Watch,
    target: &crate::config::KubernetesTarget,
    kube: &Arc<kubernetes::Connector>,
    effect: Effect,
) -> Answer {
    let watch = def.name.clone();
    let answer = |input: Input, undo: Option<kubernetes::act::UndoDetail>| Answer {
        watch: watch.clone(),
        input,
        output: None,
        undo,
        term: 0,
    };
    let handle = match kube.client(target.context.as_deref()).await {
        Ok(client) => kubernetes::Handle {
            client,
            target: target.clone(),
            timeout: kube.request_timeout(),
        },
        Err(e) => {
            let why = format!("cannot connect to Kubernetes: {e}");
            return match effect {
                Effect::Recheck { rollback_id, .. } => answer(
                    Input::Rechecked {
                        rollback_id,
                        result: Recheck::Failed(why),
                    },
                    None,
                ),
                Effect::Rollback(o) => answer(
                    Input::Acted {
                        rollback_id: o.rollback_id,
                        result: ActResult::Failed(why),
                    },
                    None,
                ),
                Effect::WaitRollout { rollback_id, .. } => answer(
                    Input::RolledOut {
                        rollback_id,
                        result: RolloutResult::Failed(why),
                    },
                    None,
                ),
                _ => unreachable_effect(&watch),
            };
        }
    };
    match effect {
        Effect::Recheck {
            rollback_id,
            from,
            avoid,
        } => {
            let result = kubernetes::act::recheck(&handle, &from, &avoid).await;
            answer(
                Input::Rechecked {
                    rollback_id,
                    result,
                },
                None,
            )
        }
        Effect::Rollback(order) => {
            let (result, detail) = kubernetes::act::undo(&handle, &order, Trigger::Auto).await;
            answer(
                Input::Acted {
                    rollback_id: order.rollback_id,
                    result,
                },
                Some(detail),
            )
        }
        Effect::WaitRollout { rollback_id, from } => {
            let result =
                kubernetes::act::wait(&handle, &rollback_id, &from, def.settings.rollout_timeout)
                    .await;
            answer(
                Input::RolledOut {
                    rollback_id,
                    result,
                },
                None,
            )
        }
        _ => unreachable_effect(&watch),
    }
}
