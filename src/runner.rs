//! One watch driven end to end: its [`Machine`], its target's [`Adapter`],
//! the journal, the memory and the outbox. The runner evaluates the checks
//! on the watch's schedule, feeds the engine what the target and the checks
//! say, and carries out the engine's effects in order: the journal
//! (durably) and the outbox before an action is ordered, the memory after.
//! Answers come back as inputs. The daemon keeps one runner per watch; the
//! operator's commands drive the same runner, so that nothing that decides
//! or acts is written twice.
//!
//! How the loop decides is in the README's "How it decides" section.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use crate::api::{Live, WatchAction};
use crate::check::evaluate::{Evaluated, Subject};
use crate::check::{Baselines, Checking, Connections, evaluate};
use crate::config::{Redactor, Watch, WatchSettings};
use crate::engine::{
    ActResult, Action, Effect, EventKind, Input, JournalSummary, Machine, ManualRequest, Memory,
    Millis, Phase, Policy, Record,
};
use crate::metrics::{Metrics, ResultLabel, RollbackLabels};
use crate::notify::Outbox;
use crate::rollback::kubernetes::act::UndoDetail;
use crate::rollback::{Adapter, Answer, Detail, Polled, Polling, Progress};
use crate::store::journal::{self, Entry, Journal, Line};
use crate::store::memory::{Loaded, MemoryStore};

/// The engine's policy for a watch's settings.
pub fn policy(s: &WatchSettings) -> Policy {
    fn ms(d: Duration) -> Millis {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }
    Policy {
        failure_threshold: s.failure_threshold.max(1),
        arm: s.arm,
        arm_window: ms(s.arm_window),
        cooldown: ms(s.cooldown),
        verify_for: ms(s.verify_for),
        dry_run: s.dry_run,
    }
}

/// A stable offset within the interval, from the watch's name, so that
/// watches do not fire in lockstep.
pub fn phase_offset(name: &str, interval: Duration) -> Duration {
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h % ms)
}

/// What every runner of one process shares.
pub struct Services {
    pub state_dir: std::path::PathBuf,
    pub journal: Mutex<Journal>,
    pub memory: MemoryStore,
    pub outbox: Outbox,
    pub checking: Checking,
    pub connections: watch::Receiver<Arc<Connections>>,
    pub redactor: Redactor,
    pub host: String,
    /// Each watch's state as its runner last published it, for `/status`.
    pub board: RwLock<BTreeMap<String, Live>>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// Every journal line and rollout progress line as it happens, for
    /// those following a watch (`GET /watches/NAME/events`, and the
    /// operator's commands run in process).
    pub events: broadcast::Sender<Published>,
}

/// One line for those following a watch: JSON text, exactly as the
/// journal has it (or a progress line, `api::ProgressLine`).
#[derive(Debug, Clone)]
pub struct Published {
    pub watch: Arc<str>,
    pub rollback_id: Option<Arc<str>>,
    pub line: Arc<str>,
}

/// How many lines a slow follower may fall behind before it misses some
/// (it is told, and can read the journal).
pub const EVENTS_BACKLOG: usize = 1024;

/// Where the engine's `now` comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The wall clock: windows mean the same after a restart.
    Wall,
    /// The runtime's clock from an epoch time, for tests with paused time.
    #[cfg(test)]
    Runtime { epoch: Millis, start: Instant },
}

impl Clock {
    pub fn now(&self) -> Millis {
        match self {
            Clock::Wall => crate::clock::now_ms(),
            #[cfg(test)]
            Clock::Runtime { epoch, start } => epoch + start.elapsed().as_millis() as Millis,
        }
    }
}

/// What the supervisor tells a running watch.
pub enum Msg {
    /// A reload changed its definition.
    Redefine(Arc<Watch>),
    /// An operator's instruction; answered with the state after it.
    Command(WatchAction, oneshot::Sender<String>),
    /// An operator's rollback; answered at once: accepted (it runs on, to
    /// be followed on [`Services::events`]), or refused and why.
    Rollback(Box<ManualRequest>, oneshot::Sender<Result<(), String>>),
}

/// A runner's mailbox: messages are rare (reloads, operators), and a
/// channel per watch would cost a preallocated block each.
#[derive(Clone, Default)]
pub struct Inbox(Arc<Mailbox>);

#[derive(Default)]
struct Mailbox {
    queue: Mutex<VecDeque<Msg>>,
    ready: tokio::sync::Notify,
}

impl Inbox {
    pub fn send(&self, msg: Msg) {
        if let Ok(mut q) = self.0.queue.lock() {
            q.push_back(msg);
        }
        self.0.ready.notify_one();
    }

    async fn recv(&self) -> Msg {
        loop {
            if let Some(m) = self.0.queue.lock().ok().and_then(|mut q| q.pop_front()) {
                return m;
            }
            // A send between the pop and here leaves a permit: no wakeup
            // is lost.
            self.0.ready.notified().await;
        }
    }
}

/// How a runner is told to stop: [`Stop::graceful`] stops evaluating, lets
/// an action in flight answer (bounded by `shutdown_timeout`), saves and
/// returns; [`Stop::abandon`] stops at once, dropping the action in flight
/// (leadership lost, the watch removed): a rollback under way resumes at
/// the next start.
#[derive(Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    abandon: Arc<std::sync::atomic::AtomicBool>,
}

impl Stop {
    pub fn graceful(&self) {
        self.token.cancel();
    }

    pub fn abandon(&self) {
        self.abandon
            .store(true, std::sync::atomic::Ordering::Release);
        self.token.cancel();
    }

    fn abandoned(&self) -> bool {
        self.abandon.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// What `watches/NAME.json` holds.
#[derive(Serialize, Deserialize)]
struct Saved {
    machine: Memory,
    #[serde(default)]
    baselines: Baselines,
}

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An evaluation under way: first the target is polled (a new version is
/// stepped into the engine before the checks run), then the checks.
enum Evaluating {
    Polling(Boxed<(Polling, Polled)>),
    Checking(Boxed<Evaluated>),
}

enum Stage {
    Polled(Box<(Polling, Polled)>),
    Checked(Evaluated),
}

pub struct Runner {
    def: Arc<Watch>,
    machine: Machine,
    baselines: Baselines,
    services: Arc<Services>,
    /// What the last Kubernetes undo restored, by rollback id.
    undo: Option<(String, UndoDetail)>,
    #[cfg(test)]
    fake: Option<crate::rollback::fake::FakeAdapter>,
}

/// Awaits the future in `slot`, or never when there is none.
async fn maybe<T>(slot: &mut Option<Boxed<T>>) -> T {
    match slot {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// File writes from inside the runtime: off the worker where it can be.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Runner {
    pub fn new(def: Arc<Watch>, services: Arc<Services>) -> Self {
        let machine = Machine::new(def.name.clone(), policy(&def.settings));
        Self {
            def,
            machine,
            baselines: Baselines::new(),
            services,
            undo: None,
            #[cfg(test)]
            fake: None,
        }
    }

    #[cfg(test)]
    pub fn with_fake(mut self, fake: crate::rollback::fake::FakeAdapter) -> Self {
        self.fake = Some(fake);
        self
    }

    fn adapter(&self) -> Adapter {
        #[cfg(test)]
        if let Some(f) = &self.fake {
            return Adapter::Fake(f.clone());
        }
        let conn = self.services.connections.borrow().clone();
        Adapter::for_watch(&self.def, &conn.kube)
    }

    fn now(&self) -> Millis {
        self.services.clock.now()
    }

    /// Reads what the watch remembered, and gives it to the engine with
    /// what the journal says. A rollback in progress resumes here.
    fn restore(&mut self, journal: JournalSummary, fx: &mut VecDeque<Effect>) {
        let name = self.def.name.clone();
        let memory = match blocking(|| self.services.memory.load::<Saved>(&name)) {
            Ok(Loaded::Found(saved)) => {
                self.baselines = saved.baselines;
                Some(Box::new(saved.machine))
            }
            Ok(Loaded::Missing) => None,
            Ok(Loaded::Corrupt { problem, moved_to }) => {
                error!(problem = %problem, moved_to = %moved_to.display(), "the watch's saved memory is unreadable; starting without it (bad revisions and arming are forgotten)");
                None
            }
            Err(e) => {
                error!(error = %e, "cannot read the watch's saved memory; starting without it");
                None
            }
        };
        if let Some((id, _)) = &journal.open {
            let remembered = memory.as_ref().is_some_and(|m| {
                m.phase != Phase::Watching
                    || m.last_rollback
                        .as_ref()
                        .is_some_and(|l| &l.rollback_id == id)
            });
            if !remembered {
                warn!(rollback_id = %id, "the journal shows a rollback started and not finished; resuming it");
            }
        }
        let now = self.now();
        fx.extend(self.machine.step(now, Input::Restore { memory, journal }));
    }

    /// Drives the watch until told to stop.
    // Not an `async fn`: its arguments would be kept in the future beside
    // the copies the loop moves them into, for every watch's whole life.
    pub fn run(
        mut self,
        journal: JournalSummary,
        inbox: Inbox,
        stop: Stop,
    ) -> impl Future<Output = ()> + Send {
        let span = tracing::info_span!("watch", watch = %self.def.name, target = %self.def.target);
        async move {
            let mut fx = VecDeque::new();
            self.restore(journal, &mut fx);
            let mut action: Option<Boxed<Answer>> = None;
            self.apply(fx, &mut action);
            let mut observing = CancellationToken::new();
            let mut observer = self.adapter().observe(self.machine.revision(), observing.clone());
            let mut observed = true;
            let mut evaluating: Option<Evaluating> = None;
            let mut next = Instant::now() + phase_offset(&self.def.name, self.def.settings.interval);
            loop {
                let deadline = self.deadline();
                // One timer: the next evaluation (none while one is under
                // way) or the engine's deadline, whichever is first.
                let far = Instant::now() + Duration::from_secs(86_400);
                let slot = if evaluating.is_none() { next } else { far };
                let wake = deadline.map_or(slot, |d| d.min(slot));
                tokio::select! {
                    biased;
                    _ = stop.token.cancelled() => {
                        if !stop.abandoned() {
                            // Boxed: the shutdown's state is not carried by
                            // every runner for its whole life.
                            Box::pin(self.finish_actions(&mut action)).await;
                        } else if action.is_some() {
                            self.cancelled();
                        }
                        break;
                    }
                    msg = inbox.recv() => match msg {
                        Msg::Redefine(def) => {
                            observing.cancel();
                            self.redefine(def);
                            observing = CancellationToken::new();
                            observer = self.adapter().observe(self.machine.revision(), observing.clone());
                            observed = true;
                            evaluating = None;
                            next = Instant::now() + phase_offset(&self.def.name, self.def.settings.interval);
                        }
                        Msg::Command(what, reply) => {
                            let input = match what {
                                WatchAction::Pause => Input::Pause,
                                WatchAction::Resume => Input::Resume,
                                WatchAction::Reset => Input::Reset,
                            };
                            self.step(input, &mut action);
                            let _ = reply.send(self.machine.state(self.now()).as_str().to_owned());
                        }
                        Msg::Rollback(req, reply) => {
                            match self.machine.manual_refusal(&req) {
                                Some(why) => {
                                    let _ = reply.send(Err(why));
                                }
                                None => {
                                    info!(rollback_id = %req.rollback_id, operator = %req.operator, "rollback asked for by an operator");
                                    // Accepted before the first record, so
                                    // the follower's stream has it all.
                                    let _ = reply.send(Ok(()));
                                    self.step(Input::Manual(req), &mut action);
                                }
                            }
                        }
                    },
                    answer = maybe(&mut action) => {
                        action = None;
                        self.answered(answer, &mut action);
                    }
                    rev = observer.next(), if observed => match rev {
                        Some(rev) => self.step(Input::Revision(rev), &mut action),
                        None => observed = false,
                    },
                    stage = async {
                        match &mut evaluating {
                            Some(Evaluating::Polling(f)) => Stage::Polled(Box::new(f.await)),
                            Some(Evaluating::Checking(f)) => Stage::Checked(f.await),
                            None => std::future::pending().await,
                        }
                    } => match stage {
                        Stage::Polled(p) => {
                            let (polling, polled) = *p;
                            if let Some(rev) = polled.new.clone() {
                                self.step(Input::Revision(rev), &mut action);
                            }
                            evaluating = Some(Evaluating::Checking(self.checks(polling, polled)));
                        }
                        Stage::Checked(done) => {
                            evaluating = None;
                            self.evaluated(done, &mut action);
                            next = following(next, self.def.settings.interval);
                        }
                    },
                    _ = tokio::time::sleep_until(wake) => {
                        if deadline.is_some_and(|d| d <= Instant::now()) {
                            self.step(Input::Tick, &mut action);
                        }
                        if evaluating.is_none() && next <= Instant::now() {
                            let lag = Instant::now().saturating_duration_since(next);
                            self.services.metrics.evaluation_lag.observe(lag.as_secs_f64());
                            let polling = observer.before_evaluation();
                            evaluating = Some(Evaluating::Polling(Box::pin(async move {
                                let polled = polling.poll().await;
                                (polling, polled)
                            })));
                        }
                    }
                }
            }
            observing.cancel();
            // Failures are logged where they happen; nothing here acts on them.
            let _ = self.persist();
            self.publish();
        }
        .instrument(span)
    }

    /// When the engine next wants a tick, on the runtime's clock.
    fn deadline(&self) -> Option<Instant> {
        let now = self.now();
        self.machine
            .next_deadline(now)
            .map(|t| Instant::now() + Duration::from_millis(t.saturating_sub(now)))
    }

    fn redefine(&mut self, def: Arc<Watch>) {
        self.def = def;
        let now = self.now();
        let fx = self
            .machine
            .step(now, Input::Redefine(policy(&self.def.settings)));
        debug_assert!(fx.is_empty());
        self.publish();
    }

    /// The checks of one evaluation, about the revision the engine holds
    /// now (a new version just polled included).
    fn checks(&self, polling: Polling, polled: Polled) -> Boxed<Evaluated> {
        let def = self.def.clone();
        let services = self.services.clone();
        let revision = self.machine.revision().cloned();
        let baselines = self.baselines.clone();
        let at = self.now();
        Box::pin(async move {
            let conn = services.connections.borrow().clone();
            let own = polling.own_checks(&def, at);
            evaluate(
                &def,
                &conn,
                &services.checking,
                Subject {
                    revision: revision.as_ref(),
                    believed: polled.believed,
                    baselines: &baselines,
                    own,
                    at,
                },
            )
            .await
        })
    }

    fn evaluated(&mut self, done: Evaluated, action: &mut Option<Boxed<Answer>>) {
        if !done.baselines.is_empty() {
            for (check, revision, samples) in done.baselines {
                self.baselines.insert(check, (revision, samples));
            }
            let _ = self.persist();
        }
        let result = done.evaluation.verdict.as_str();
        debug!(result, "evaluated");
        self.step(Input::Evaluation(done.evaluation), action);
        // Counted once published: whoever sees the count go up finds this
        // evaluation in /status.
        self.services
            .metrics
            .evaluations
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Shutdown: actions in flight may answer (and what follows from them
    /// may run) until `shutdown_timeout`.
    async fn finish_actions(&mut self, action: &mut Option<Boxed<Answer>>) {
        let grace = self
            .services
            .connections
            .borrow()
            .config
            .daemon
            .shutdown_timeout;
        let deadline = Instant::now() + grace;
        while let Some(f) = action.as_mut() {
            info!("waiting for the action in flight to finish");
            match tokio::time::timeout_at(deadline, f).await {
                Ok(answer) => {
                    *action = None;
                    self.answered(answer, action);
                }
                Err(_) => {
                    warn!(
                        "shutdown timeout: leaving the action in flight; it resumes at the next start"
                    );
                    self.cancelled();
                    *action = None;
                }
            }
        }
    }

    /// The action in flight was dropped unanswered.
    fn cancelled(&mut self) {
        let id = match self.machine.phase() {
            Phase::Deciding { rollback_id, .. } => rollback_id.clone(),
            p => match p.underway() {
                Some(u) => u.rollback_id.to_owned(),
                None => return,
            },
        };
        warn!(rollback_id = %id, "stopping with an action in flight; a rollback under way resumes at the next start");
        let mut none = None;
        self.step(Input::Cancelled { rollback_id: id }, &mut none);
    }

    fn answered(&mut self, answer: Answer, action: &mut Option<Boxed<Answer>>) {
        let rollback_id = match &answer.input {
            Input::Acted { rollback_id, .. } => Some(rollback_id.clone()),
            _ => None,
        };
        match (answer.detail, rollback_id) {
            (Some(Detail::Command(run)), id) => {
                let _ = self.write(
                    self.now(),
                    Entry::CommandOutput(journal::CommandOutput {
                        rollback_id: id,
                        exit_code: run.exit_code,
                        timed_out: run.timed_out,
                        duration_ms: run.duration.as_millis() as u64,
                        stdout: run.stdout,
                        stderr: run.stderr,
                    }),
                );
            }
            (Some(Detail::Undo(d)), Some(id)) => {
                let _ = self.write(
                    self.now(),
                    Entry::UndoPatch(journal::UndoPatch {
                        rollback_id: id.clone(),
                        restored_revision: d.restored,
                        from_images: d.from_images.clone(),
                        to_images: d.to_images.clone(),
                    }),
                );
                self.undo = Some((id, d));
            }
            _ => {}
        }
        self.step(answer.input, action);
    }

    /// Feeds one input to the engine and carries out its effects.
    fn step(&mut self, input: Input, action: &mut Option<Boxed<Answer>>) {
        let now = self.now();
        let fx = self.machine.step(now, input).into();
        self.apply(fx, action);
    }

    /// Carries out effects in order. What is about to be done must be on
    /// disk first: if a journal line or the memory could not be written,
    /// the undo is refused.
    fn apply(&mut self, mut fx: VecDeque<Effect>, action: &mut Option<Boxed<Answer>>) {
        let mut unwritten: Option<String> = None;
        while let Some(effect) = fx.pop_front() {
            match effect {
                Effect::Journal(r) => {
                    if let Err(e) = self.journal_record(&r) {
                        unwritten.get_or_insert(format!("cannot write the journal: {e}"));
                    }
                }
                Effect::Notify(r) => self.notify(&r),
                Effect::Persist => {
                    if let Err(e) = self.persist() {
                        unwritten.get_or_insert(format!("cannot save the watch's memory: {e}"));
                    }
                }
                Effect::Act(Action::Undo(order)) if unwritten.is_some() => {
                    let why = format!(
                        "not rolling back: {}",
                        unwritten.clone().unwrap_or_default()
                    );
                    error!(reason = %why, "refusing to act without a durable record");
                    let now = self.now();
                    fx.extend(self.machine.step(
                        now,
                        Input::Acted {
                            rollback_id: order.rollback_id,
                            result: ActResult::Refused(why),
                        },
                    ));
                }
                Effect::Act(a) => {
                    if action.is_some() {
                        // The engine orders one action at a time; a second
                        // means the first's answer no longer matters.
                        warn!("a new action replaces the one in flight");
                    }
                    let adapter = self.adapter();
                    let progress = self.progress(a.rollback_id());
                    let span = tracing::info_span!("rollback", rollback_id = %a.rollback_id());
                    *action = Some(Box::pin(
                        async move { adapter.execute(a, &progress).await }.instrument(span),
                    ));
                }
            }
        }
        self.publish();
    }

    /// Where a rollout's progress goes: to those following the watch.
    fn progress(&self, rollback_id: &str) -> Progress {
        let events = self.services.events.clone();
        let watch: Arc<str> = self.def.name.as_str().into();
        let id: Arc<str> = rollback_id.into();
        Progress::to(move |progress| {
            if events.receiver_count() == 0 {
                return;
            }
            let line = crate::api::ProgressLine {
                event: crate::api::ROLLOUT_PROGRESS.to_owned(),
                ts: crate::clock::rfc3339_millis(std::time::SystemTime::now()),
                watch: watch.to_string(),
                rollback_id: id.to_string(),
                progress,
            };
            if let Ok(text) = serde_json::to_string(&line) {
                let _ = events.send(Published {
                    watch: watch.clone(),
                    rollback_id: Some(id.clone()),
                    line: text.into(),
                });
            }
        })
    }

    fn publish(&self) {
        let live = Live::of(&self.machine, self.now());
        if let Ok(mut b) = self.services.board.write() {
            b.insert(self.def.name.clone(), live);
        }
    }

    fn write(&self, ts: Millis, entry: Entry) -> std::io::Result<()> {
        let line = Line {
            ts,
            watch: self.def.name.clone(),
            target: Some(self.def.target.to_string()),
            host: self.services.host.clone(),
            entry,
        };
        let written = blocking(|| match self.services.journal.lock() {
            Ok(mut j) => j.append(&line, &self.services.redactor),
            Err(_) => Err(std::io::Error::other("the journal's lock is poisoned")),
        });
        match written {
            Ok(text) => {
                if self.services.events.receiver_count() > 0 {
                    let _ = self.services.events.send(Published {
                        watch: self.def.name.as_str().into(),
                        rollback_id: line.rollback_id().map(Into::into),
                        line: text.into(),
                    });
                }
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "cannot write the journal");
                Err(e)
            }
        }
    }

    fn journal_record(&self, r: &Record) -> std::io::Result<()> {
        if r.event == EventKind::RollbackFinished
            && let Some(outcome) = r.outcome
            && let Some(last) = self.machine.last_rollback()
        {
            let trigger = last.trigger.as_str();
            let m = &self.services.metrics;
            m.rollbacks
                .get_or_create(&RollbackLabels {
                    trigger,
                    outcome: outcome.as_str(),
                })
                .inc();
            m.rollback_duration
                .observe(last.finished.saturating_sub(last.started) as f64 / 1000.0);
        }
        self.write(r.ts, Entry::Engine(r.clone()))
    }

    /// Tells people: logs the event, and queues it in the outbox for the
    /// watch's notifiers (a durable local write; delivery is the outbox
    /// worker's, never waited for here).
    fn notify(&self, r: &Record) {
        let conn = self.services.connections.borrow().clone();
        let cx = crate::notify::Context {
            host: &self.services.host,
            watch: Some(&self.def),
            sources: &conn.config.prometheus,
            timings: crate::notify::Timings::of(r, self.machine.last_rollback()),
            redactor: &self.services.redactor,
            images: self.undo.as_ref().and_then(|(id, d)| {
                (r.rollback_id.as_ref() == Some(id) && !d.to_images.is_empty())
                    .then(|| (d.from_images.clone(), d.to_images.clone()))
            }),
        };
        blocking(|| {
            self.services
                .outbox
                .record(r, &cx, &self.def.settings.notify)
        });
        let event = r.event.as_str();
        let revision = r.revision.as_ref().map(|rev| rev.id.as_str()).unwrap_or("");
        let reason = r.reason.as_deref().unwrap_or("");
        let outcome = r.outcome.map(|o| o.as_str()).unwrap_or("");
        let rollback_id = r.rollback_id.as_deref().unwrap_or("");
        match r.event {
            EventKind::Escalated => {
                error!(
                    revision,
                    event, rollback_id, reason, "escalated: a person must act"
                )
            }
            EventKind::RollbackFinished if outcome != "recovered" && outcome != "conflict" => {
                error!(
                    revision,
                    event, rollback_id, outcome, reason, "rollback finished without recovery"
                )
            }
            EventKind::RollbackFinished => {
                info!(revision, event, rollback_id, outcome, "rollback finished")
            }
            EventKind::RollbackStarted => {
                warn!(revision, event, rollback_id, reason, "rolling back")
            }
            EventKind::WouldRollBack => {
                warn!(
                    revision,
                    event, rollback_id, reason, "dry run: would roll back"
                )
            }
            _ => warn!(revision, event, reason, "watch event"),
        }
    }

    fn persist(&self) -> std::io::Result<()> {
        let saved = Saved {
            machine: self.machine.memory(),
            baselines: self.baselines.clone(),
        };
        let name = &self.def.name;
        let written = blocking(|| self.services.memory.save(name, &saved));
        if let Err(e) = &written {
            error!(error = %e, "cannot save the watch's memory; a restart would forget it");
        }
        written
    }
}

/// The slot after `next`; far behind (a stalled machine), the missed slots
/// are skipped rather than evaluated in a burst.
fn following(next: Instant, interval: Duration) -> Instant {
    let mut next = next + interval;
    let now = Instant::now();
    if next < now {
        let behind = now - next;
        let missed = behind.as_nanos() / interval.as_nanos().max(1) + 1;
        next += interval * missed as u32;
    }
    next
}

#[cfg(test)]
mod tests;
