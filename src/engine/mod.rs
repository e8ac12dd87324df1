//! The pure decision core: one state machine per watch that turns what was
//! observed (revisions, evaluations, the answers of adapters) into what to do
//! (re-read the target, roll back, wait, journal, notify, persist).
//!
//! It never does I/O and never reads a clock: `now` is an argument, in
//! milliseconds since the Unix epoch, so that arming windows and cooldowns
//! survive a restart and every rule of the README's "How it decides" is a plain unit test of
//! [`Machine::step`].

mod types;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use types::*;

/// One watch's state machine. Its fields are its own: every change is an
/// [`Input`] to [`Machine::step`], and what a restart must know is its
/// [`Memory`].
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    watch: String,
    policy: Policy,
    /// The target's current revision, as last observed.
    revision: Option<Revision>,
    /// The end of the arming window of the current revision.
    armed_until: Option<Millis>,
    /// Revisions rolled away from: never rolled back twice, never rolled into.
    bad_revisions: BTreeSet<String>,
    /// No automatic rollback before this time.
    cooldown_until: Option<Millis>,
    /// The revision on which the watch gave up; cleared by a new revision.
    escalated_for: Option<String>,
    /// The revision for which a dry run already said "would roll back".
    dry_run_done_for: Option<String>,
    paused: bool,
    phase: Phase,
    last_rollback: Option<RollbackSummary>,
    /// The revision our last rollback produced (a Deployment renumbers the
    /// restored template: rolling 7 back to 6 yields revision 8).
    restored_revision: Option<String>,
    /// The rollback that produced `restored_revision`.
    restored_in: Option<String>,
    /// The operator's request, while a manual rollback is under way.
    manual: Option<ManualRequest>,
    // Counters a restart may forget (saving them would mean a write per
    // watch per interval).
    streak: u32,
    inconclusive_run: u32,
    blind: bool,
    last_evaluation: Option<Evaluation>,
    /// The failing checks that made the current streak, for reports.
    evidence: Vec<CheckResult>,
}

/// What a watch remembers across a restart: saved on every
/// [`Effect::Persist`], given back with [`Input::Restore`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub watch: String,
    pub revision: Option<Revision>,
    pub armed_until: Option<Millis>,
    pub bad_revisions: BTreeSet<String>,
    pub cooldown_until: Option<Millis>,
    pub escalated_for: Option<String>,
    pub dry_run_done_for: Option<String>,
    pub paused: bool,
    pub phase: Phase,
    pub last_rollback: Option<RollbackSummary>,
    #[serde(default)]
    pub restored_revision: Option<String>,
    #[serde(default)]
    pub restored_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<ManualRequest>,
}

impl Machine {
    pub fn new(watch: impl Into<String>, policy: Policy) -> Self {
        Self {
            watch: watch.into(),
            policy,
            revision: None,
            armed_until: None,
            bad_revisions: BTreeSet::new(),
            cooldown_until: None,
            escalated_for: None,
            dry_run_done_for: None,
            paused: false,
            phase: Phase::Watching,
            last_rollback: None,
            restored_revision: None,
            restored_in: None,
            manual: None,
            streak: 0,
            inconclusive_run: 0,
            blind: false,
            last_evaluation: None,
            evidence: Vec::new(),
        }
    }

    /// What a restart needs to know, to be saved.
    pub fn memory(&self) -> Memory {
        Memory {
            watch: self.watch.clone(),
            revision: self.revision.clone(),
            armed_until: self.armed_until,
            bad_revisions: self.bad_revisions.clone(),
            cooldown_until: self.cooldown_until,
            escalated_for: self.escalated_for.clone(),
            dry_run_done_for: self.dry_run_done_for.clone(),
            paused: self.paused,
            phase: self.phase.clone(),
            last_rollback: self.last_rollback.clone(),
            restored_revision: self.restored_revision.clone(),
            restored_in: self.restored_in.clone(),
            manual: self.manual.clone(),
        }
    }

    pub fn watch(&self) -> &str {
        &self.watch
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The target's current revision, as last observed.
    pub fn revision(&self) -> Option<&Revision> {
        self.revision.as_ref()
    }

    /// The end of the current revision's arming window.
    pub fn armed_until(&self) -> Option<Millis> {
        self.armed_until
    }

    /// Consecutive failing evaluations.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn last_evaluation(&self) -> Option<&Evaluation> {
        self.last_evaluation.as_ref()
    }

    pub fn last_rollback(&self) -> Option<&RollbackSummary> {
        self.last_rollback.as_ref()
    }

    /// When the machine next wants an [`Input::Tick`] (a verification
    /// window ends, or its state changes with time: the arming window or
    /// the cooldown ends), if ever; only times after `now`.
    pub fn next_deadline(&self, now: Millis) -> Option<Millis> {
        let verify_end = match self.phase {
            Phase::Verifying { since, .. } => Some(since.saturating_add(self.policy.verify_for)),
            _ => None,
        };
        if verify_end.is_some_and(|end| end <= now) {
            return Some(now);
        }
        [verify_end, self.armed_until, self.cooldown_until]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min()
    }

    /// The id of the rollback under way, from its start to its outcome.
    fn rollback_in_progress(&self) -> Option<String> {
        self.phase.underway().map(|u| u.rollback_id.to_owned())
    }

    /// The revision the rollback under way is rolling away from.
    fn rollback_from(&self) -> Option<&str> {
        self.phase.underway().map(|u| u.from)
    }

    fn current_id(&self) -> Option<&str> {
        self.revision.as_ref().map(|r| r.id.as_str())
    }

    /// The current revision's id for loop protection: a target that cannot
    /// say which version it runs is one revision, "unknown", so that
    /// escalation and "at most once" hold for it too.
    fn current_key(&self) -> &str {
        self.current_id().unwrap_or(UNKNOWN_REVISION)
    }

    /// Whether an automatic rollback is allowed by the arming rule (README, "How it decides": arming).
    /// A revision produced by a rollback never is, whatever `arm` says: it
    /// is what "previous" means to the deploy tool.
    pub fn armed(&self, now: Millis) -> bool {
        if self
            .revision
            .as_ref()
            .is_some_and(|r| r.origin == Origin::Rollback)
        {
            return false;
        }
        match self.policy.arm {
            Arm::Always => true,
            Arm::AfterRollout => self.armed_until.is_some_and(|t| now < t),
        }
    }

    /// The state shown in `/status` and counted in metrics.
    pub fn state(&self, now: Millis) -> State {
        if self.paused {
            return State::Paused;
        }
        match self.phase {
            Phase::Deciding { .. }
            | Phase::Acting { .. }
            | Phase::RollingOut { .. }
            | Phase::Finishing { .. } => {
                return State::RollingBack;
            }
            Phase::Verifying { .. } => return State::Verifying,
            Phase::Watching => {}
        }
        if self.escalated_for.as_deref() == Some(self.current_key()) {
            return State::Escalated;
        }
        if self.blind {
            return State::Blind;
        }
        if self.streak > 0 {
            return State::Failing;
        }
        let armed = self.armed(now);
        if armed && self.cooldown_until.is_some_and(|t| now < t) {
            return State::Cooldown;
        }
        if armed {
            return State::Armed;
        }
        let restored = self.last_rollback.as_ref().and_then(|r| r.to.as_deref());
        let current = self.current_id();
        if current.is_some()
            && (restored == current || self.restored_revision.as_deref() == current)
        {
            return State::Recovered;
        }
        if self.revision.is_some() {
            return State::Baked;
        }
        State::Idle
    }

    /// Applies one input and returns the effects to carry out, in order
    /// (journal entries before the actions they announce).
    pub fn step(&mut self, now: Millis, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Revision(rev) => self.on_revision(now, rev, &mut fx),
            Input::Evaluation(ev) => self.on_evaluation(now, ev, &mut fx),
            Input::Rechecked {
                rollback_id,
                result,
            } => self.on_rechecked(now, &rollback_id, result, &mut fx),
            Input::Acted {
                rollback_id,
                result,
            } => self.on_acted(now, &rollback_id, result, &mut fx),
            Input::RolledOut {
                rollback_id,
                result,
            } => self.on_rolled_out(now, &rollback_id, result, &mut fx),
            Input::Tick => self.check_verification_end(now, &mut fx),
            Input::Restore { memory, journal } => self.on_restore(now, memory, journal, &mut fx),
            Input::Redefine(policy) => {
                self.policy = policy;
                self.streak = 0;
                self.inconclusive_run = 0;
                self.blind = false;
                self.evidence.clear();
            }
            Input::Cancelled { rollback_id } => self.on_cancelled(now, &rollback_id, &mut fx),
            Input::Pause => {
                if !self.paused {
                    self.paused = true;
                    fx.push(self.journal(now, EventKind::Paused, None));
                    fx.push(Effect::Persist);
                }
            }
            Input::Resume => {
                if self.paused {
                    self.paused = false;
                    fx.push(self.journal(now, EventKind::Resumed, None));
                    fx.push(Effect::Persist);
                }
            }
            Input::Manual(req) => self.on_manual(now, *req, &mut fx),
            Input::Reset => {
                self.streak = 0;
                self.inconclusive_run = 0;
                self.blind = false;
                self.evidence.clear();
                self.escalated_for = None;
                fx.push(self.journal(now, EventKind::Reset, None));
                fx.push(Effect::Persist);
            }
        }
        fx
    }

    fn record(&self, now: Millis, event: EventKind) -> Record {
        Record {
            ts: now,
            event,
            watch: self.watch.clone(),
            rollback_id: None,
            from_revision: None,
            to_revision: None,
            trigger: None,
            outcome: None,
            reason: None,
            revision: self.revision.clone(),
            operator: None,
            checks: Vec::new(),
        }
    }

    /// The manual request behind rollback `id`, if it is one.
    fn manual_for(&self, id: &str) -> Option<&ManualRequest> {
        self.manual.as_ref().filter(|m| m.rollback_id == id)
    }

    fn trigger_of(&self, id: &str) -> Trigger {
        if self.manual_for(id).is_some() {
            Trigger::Manual
        } else {
            Trigger::Auto
        }
    }

    /// A record about rollback `id`: its trigger and, for a manual one,
    /// who asked.
    fn rollback_record(&self, now: Millis, event: EventKind, id: &str, from: &str) -> Record {
        let mut r = self.record(now, event);
        r.rollback_id = Some(id.to_owned());
        r.from_revision = Some(from.to_owned());
        r.trigger = Some(self.trigger_of(id));
        r.operator = self.manual_for(id).map(|m| m.operator.clone());
        r
    }

    /// Why an operator's rollback cannot start now, if it cannot: another
    /// rollback is under way (or being decided), or the target is no
    /// longer at the revision the operator saw.
    pub fn manual_refusal(&self, req: &ManualRequest) -> Option<String> {
        match &self.phase {
            Phase::Watching => {}
            Phase::Deciding { rollback_id, .. } => {
                return Some(format!(
                    "a rollback ({rollback_id}) is being decided for this watch right now; try again in a moment"
                ));
            }
            p => {
                let id = p.underway().map(|u| u.rollback_id).unwrap_or_default();
                return Some(format!(
                    "a rollback ({id}) is already in progress for this watch"
                ));
            }
        }
        match self.current_id() {
            Some(current) if current != req.from => Some(format!(
                "the target is at revision {current} now, not {}: look again before rolling back",
                req.from
            )),
            _ => None,
        }
    }

    /// An operator's rollback: the same path as an automatic one from the
    /// re-read on, never blocked by arming, cooldown or escalation (a
    /// person decided), and refused while another is under way.
    fn on_manual(&mut self, now: Millis, req: ManualRequest, fx: &mut Vec<Effect>) {
        if let Some(why) = self.manual_refusal(&req) {
            let mut r = self.record(now, EventKind::DecisionDropped);
            r.rollback_id = Some(req.rollback_id.clone());
            r.trigger = Some(Trigger::Manual);
            r.operator = Some(req.operator.clone());
            r.reason = Some(why);
            fx.push(Effect::Journal(r));
            return;
        }
        let (rollback_id, from) = (req.rollback_id.clone(), req.from.clone());
        // A revision the operator chose is theirs to choose, known bad or
        // not (the command asks again for those); otherwise as automatic.
        let avoid = if req.to.is_some() {
            Vec::new()
        } else {
            self.bad_revisions.iter().cloned().collect()
        };
        let to = req.to.clone();
        self.manual = Some(req);
        let mut r = self.rollback_record(now, EventKind::Decided, &rollback_id, &from);
        r.to_revision = to.clone();
        r.reason = self.manual.as_ref().map(|m| m.reason.clone());
        fx.push(Effect::Journal(r));
        fx.push(Effect::Act(Action::Recheck {
            rollback_id: rollback_id.clone(),
            from: from.clone(),
            avoid,
            to,
        }));
        self.phase = Phase::Deciding { rollback_id, from };
        fx.push(Effect::Persist);
    }

    /// A manual rollback ends before it started: said in the journal (the
    /// operator following it reads why), nothing escalated.
    fn drop_manual(&mut self, now: Millis, id: &str, why: String, fx: &mut Vec<Effect>) {
        let mut r = self.rollback_record(now, EventKind::DecisionDropped, id, "");
        r.from_revision = self.manual_for(id).map(|m| m.from.clone());
        r.reason = Some(why);
        fx.push(Effect::Journal(r));
        self.manual = None;
        self.phase = Phase::Watching;
        fx.push(Effect::Persist);
    }

    fn journal(&self, now: Millis, event: EventKind, reason: Option<String>) -> Effect {
        let mut r = self.record(now, event);
        r.reason = reason;
        Effect::Journal(r)
    }

    fn on_revision(&mut self, now: Millis, rev: Revision, fx: &mut Vec<Effect>) {
        if self.current_id() == Some(rev.id.as_str()) {
            return;
        }
        let mut rev = rev;
        let rolling_back = self.rollback_in_progress();
        // A revision that appears while we are rolling back is the one our
        // rollback produced, whatever the adapter could tell. Once that one
        // is known, any other is someone else's rollout.
        let restored_known = rolling_back.is_some() && self.restored_in == rolling_back;
        // An adapter that knows a revision is a new rollout knows it is
        // not the one our undo restored.
        let foreign = rev.definite
            && rev.origin == Origin::Rollout
            && self.rollback_from() != Some(rev.id.as_str());
        if rolling_back.is_some() && (restored_known || foreign) {
            self.finish_with(
                now,
                Outcome::Conflict,
                Some(format!(
                    "revision {} was deployed while the rollback was in progress",
                    rev.id
                )),
                fx,
            );
        }
        let ours = rolling_back.is_some() && !restored_known && !foreign;
        // After a restart the first sighting may still be the revision being
        // rolled away from (the undo is still under way): that is no landing.
        if ours && self.rollback_from() == Some(rev.id.as_str()) {
            self.revision = Some(rev);
            return;
        }
        if ours {
            rev.origin = Origin::Rollback;
            self.restored_revision = Some(rev.id.clone());
            self.restored_in = rolling_back;
            if self.bad_revisions.contains(&rev.id) {
                // Never roll forward into a bad revision.
                let id = rev.id.clone();
                self.revision = Some(rev);
                self.finish_with(
                    now,
                    Outcome::Error,
                    Some(format!("the rollback went to revision {id}, which was already rolled away from once")),
                    fx,
                );
                return;
            }
        }
        if let Phase::Deciding { rollback_id, .. } = &self.phase {
            // A newer revision wins over a pending decision.
            let mut r = self.record(now, EventKind::DecisionDropped);
            r.rollback_id = Some(rollback_id.clone());
            r.reason = Some(format!(
                "revision {} appeared before the rollback started",
                rev.id
            ));
            fx.push(Effect::Journal(r));
            self.phase = Phase::Watching;
        }
        self.armed_until = match (rev.origin, self.policy.arm) {
            (Origin::Rollout, _) => {
                Some(rev.since.saturating_add(self.policy.arm_window)).filter(|t| now < *t)
            }
            (Origin::Rollback | Origin::Unknown, _) => None,
        };
        if let Phase::Acting { to, .. } | Phase::RollingOut { to, .. } | Phase::Verifying { to, .. } =
            &mut self.phase
            && to.is_none()
        {
            *to = Some(rev.id.clone());
        }
        if !ours {
            self.streak = 0;
            self.inconclusive_run = 0;
            self.blind = false;
            self.evidence.clear();
        }
        // After a restart a rollback may end (and escalate) before the
        // target is first read, so the escalation names no revision. If the
        // first revision seen is one that rollback was about, it is the
        // escalated revision, not a new one: a person still decides.
        let first_sighting_of_escalated = self.current_id().is_none()
            && self.escalated_for.as_deref() == Some(UNKNOWN_REVISION)
            && self
                .last_rollback
                .as_ref()
                .is_some_and(|l| l.from == rev.id || l.to.as_deref() == Some(rev.id.as_str()));
        self.escalated_for = first_sighting_of_escalated.then(|| rev.id.clone());
        self.dry_run_done_for = None;
        let armed = self.armed_until;
        // An earlier template brought back, and not by us: someone rolled
        // back by hand (`kubectl rollout undo`). Journaled and told as
        // such; it never arms and starts no cooldown.
        let by_hand = (!ours && rev.origin == Origin::Rollback && rev.definite)
            .then(|| self.current_id().map(str::to_owned))
            .flatten();
        let restored = rev.id.clone();
        self.revision = Some(rev);
        if let Some(previous) = by_hand {
            let mut r = self.record(now, EventKind::ManualRollback);
            r.from_revision = Some(previous.clone());
            r.to_revision = Some(restored.clone());
            r.trigger = Some(Trigger::Manual);
            r.reason = Some(format!(
                "rolled back by hand, not by rollbackd: revision {previous} to {restored} (an earlier template); not armed"
            ));
            fx.push(Effect::Journal(r.clone()));
            fx.push(Effect::Notify(r));
            fx.push(Effect::Persist);
            return;
        }
        let mut r = self.record(
            now,
            if armed.is_some() {
                EventKind::Armed
            } else {
                EventKind::RevisionObserved
            },
        );
        r.reason = Some(match armed {
            Some(until) => format!("new revision, armed until {until}"),
            None => "revision observed; not armed".to_owned(),
        });
        fx.push(Effect::Journal(r));
        fx.push(Effect::Persist);
    }

    fn on_evaluation(&mut self, now: Millis, ev: Evaluation, fx: &mut Vec<Effect>) {
        // Begun under an earlier revision and answered after a new one
        // appeared: it measured the old one, and says nothing of this one.
        if let (Some(of), Some(current)) = (ev.revision.as_deref(), self.current_id())
            && of != current
        {
            return;
        }
        let verdict = ev.verdict;
        let failing: Vec<CheckResult> = ev
            .checks
            .iter()
            .filter(|c| c.result == Verdict::Fail)
            .cloned()
            .collect();
        let at = ev.at;
        self.last_evaluation = Some(ev);
        match &mut self.phase {
            // Started before the rollout completed: it measured the revision
            // being rolled away from, not the restored one.
            Phase::Verifying { since, .. } if at < *since => return,
            Phase::Verifying { streak, passed, .. } => {
                match verdict {
                    Verdict::Fail => *streak += 1,
                    Verdict::Pass => {
                        *streak = 0;
                        *passed = true;
                    }
                    Verdict::Inconclusive => {}
                }
                if verdict == Verdict::Fail {
                    self.evidence = failing;
                }
                let failed = *streak >= self.policy.failure_threshold;
                if failed {
                    self.finish(now, Outcome::VerifyFailed, fx);
                } else {
                    self.check_verification_end(now, fx);
                }
                return;
            }
            // The target is changing under us: these evaluations say nothing
            // about either revision.
            Phase::Deciding { .. }
            | Phase::Acting { .. }
            | Phase::RollingOut { .. }
            | Phase::Finishing { .. } => return,
            Phase::Watching => {}
        }
        match verdict {
            Verdict::Pass => {
                self.streak = 0;
                self.inconclusive_run = 0;
                self.blind = false;
                self.evidence.clear();
            }
            Verdict::Fail => {
                self.streak += 1;
                self.inconclusive_run = 0;
                self.blind = false;
                self.evidence = failing;
            }
            Verdict::Inconclusive => {
                // Neither grows nor resets the streak (the README's "How it decides").
                self.inconclusive_run += 1;
                if self.inconclusive_run >= self.policy.failure_threshold && !self.blind {
                    self.blind = true;
                    let mut r = self.record(now, EventKind::WatchBlind);
                    r.reason = Some(format!(
                        "{} consecutive evaluations could not decide",
                        self.inconclusive_run
                    ));
                    r.checks = self
                        .last_evaluation
                        .as_ref()
                        .map(|e| e.checks.clone())
                        .unwrap_or_default();
                    fx.push(Effect::Journal(r.clone()));
                    fx.push(Effect::Notify(r));
                }
            }
        }
        if verdict == Verdict::Fail && self.streak >= self.policy.failure_threshold {
            self.decide(now, fx);
        }
    }

    /// The streak reached the threshold: roll back, or say why not.
    fn decide(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        if self.paused {
            return;
        }
        let current = self.current_key().to_owned();
        if self.escalated_for.as_deref() == Some(current.as_str()) {
            return;
        }
        let at_threshold = self.streak == self.policy.failure_threshold;
        if !self.armed(now) {
            // Baked (or never armed): reported, never acted on. Journal the
            // crossing once, not every interval.
            if at_threshold {
                fx.push(self.journal(now, EventKind::NotArmed, Some("failing, but the revision is not armed (older than arm_window, or created by a rollback)".into())));
            }
            return;
        }
        if self.bad_revisions.contains(&current) {
            self.escalate(
                now,
                format!("revision {current} was already rolled back once; not rolling back again"),
                fx,
            );
            return;
        }
        if let Some(until) = self.cooldown_until
            && now < until
        {
            self.escalate(now, format!("failing within the cooldown of the last rollback (until {until}); not rolling back again"), fx);
            return;
        }
        if self.policy.dry_run
            && self.dry_run_done_for.is_some()
            && self.dry_run_done_for.as_deref() == Some(current.as_str())
        {
            return;
        }
        let from = current;
        let rollback_id = format!("{}-{now}", self.watch);
        let mut r = self.record(now, EventKind::Decided);
        r.rollback_id = Some(rollback_id.clone());
        r.from_revision = Some(from.clone());
        r.checks = self.evidence.clone();
        r.reason = Some(self.reason());
        fx.push(Effect::Journal(r));
        fx.push(Effect::Act(Action::Recheck {
            rollback_id: rollback_id.clone(),
            from: from.clone(),
            avoid: self.bad_revisions.iter().cloned().collect(),
            to: None,
        }));
        self.phase = Phase::Deciding { rollback_id, from };
    }

    /// One line on why: the failing checks with their values and thresholds.
    pub fn reason(&self) -> String {
        let parts: Vec<String> = self.evidence.iter().map(|c| c.summary()).collect();
        let what = if parts.is_empty() {
            "checks failing".to_owned()
        } else {
            parts.join("; ")
        };
        format!(
            "{what} ({} consecutive failing evaluations)",
            self.streak.max(self.policy.failure_threshold)
        )
    }

    fn escalate(&mut self, now: Millis, reason: String, fx: &mut Vec<Effect>) {
        if self.escalated_for.as_deref() == Some(self.current_key()) {
            return;
        }
        self.escalated_for = Some(self.current_key().to_owned());
        let mut r = self.record(now, EventKind::Escalated);
        r.reason = Some(reason);
        r.checks = self.evidence.clone();
        r.rollback_id = self.last_rollback.as_ref().map(|l| l.rollback_id.clone());
        fx.push(Effect::Journal(r.clone()));
        fx.push(Effect::Notify(r));
        fx.push(Effect::Persist);
    }

    /// A start: the remembered state is taken back, the journal's word
    /// added to it, and a rollback in progress resumed.
    fn on_restore(
        &mut self,
        now: Millis,
        memory: Option<Box<Memory>>,
        journal: JournalSummary,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(m) = memory {
            let Memory {
                watch: _,
                revision,
                armed_until,
                bad_revisions,
                cooldown_until,
                escalated_for,
                dry_run_done_for,
                paused,
                phase,
                last_rollback,
                restored_revision,
                restored_in,
                manual,
            } = *m;
            self.revision = revision;
            self.armed_until = armed_until;
            self.bad_revisions = bad_revisions;
            self.cooldown_until = cooldown_until;
            self.escalated_for = escalated_for;
            self.dry_run_done_for = dry_run_done_for;
            self.paused = paused;
            self.phase = phase;
            self.last_rollback = last_rollback;
            self.restored_revision = restored_revision;
            self.restored_in = restored_in;
            self.manual = manual;
        }
        self.bad_revisions.extend(journal.bad);
        if let Some((id, from)) = journal.open {
            let finished = self
                .last_rollback
                .as_ref()
                .is_some_and(|l| l.rollback_id == id);
            // Journaled as started, but the memory was saved before that
            // (or lost): the undo may have been sent, so it is resumed,
            // never ordered again.
            if self.phase == Phase::Watching && !finished {
                self.phase = Phase::Acting {
                    rollback_id: id,
                    from,
                    to: None,
                    started: now,
                    dry_run: false,
                };
            }
        }
        if self.phase != Phase::Watching {
            self.on_resumed(now, fx);
        }
    }

    /// An action stopped before its answer. Before the rollback started
    /// nothing was done: the decision is dropped, to be taken again from
    /// fresh evaluations. After, the undo may or may not have happened:
    /// the phase stays, and the next start resumes it.
    fn on_cancelled(&mut self, now: Millis, id: &str, fx: &mut Vec<Effect>) {
        let Phase::Deciding { rollback_id, .. } = &self.phase else {
            return;
        };
        if rollback_id != id {
            return;
        }
        let mut r = self.record(now, EventKind::DecisionDropped);
        r.rollback_id = Some(rollback_id.clone());
        r.reason = Some("the re-read of the target was stopped before it answered".into());
        fx.push(Effect::Journal(r));
        self.phase = Phase::Watching;
        self.manual = None;
    }

    /// After a restart, a rollback in progress is carried on, never started
    /// again (README, "How it decides": never worse): an undo that may have happened is taken as done,
    /// and the rollout is waited for and verified afresh (README, "How it decides": rolling back).
    fn on_resumed(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let resumed = |m: &Self, id: &str, from: &str, why: &str| {
            let mut r = m.rollback_record(now, EventKind::RollbackResumed, id, from);
            r.reason = Some(why.to_owned());
            Effect::Journal(r)
        };
        match self.phase.clone() {
            Phase::Watching => {}
            Phase::Deciding { rollback_id, .. } => {
                // Nothing was done yet: decide again from fresh evaluations.
                let mut r = self.record(now, EventKind::DecisionDropped);
                r.rollback_id = Some(rollback_id);
                r.reason = Some("the daemon restarted before the rollback started".into());
                fx.push(Effect::Journal(r));
                self.phase = Phase::Watching;
                self.manual = None;
                fx.push(Effect::Persist);
            }
            Phase::Acting {
                rollback_id,
                dry_run: true,
                ..
            } => {
                // A dry run changed nothing: there is nothing to resume.
                let mut r = self.record(now, EventKind::DecisionDropped);
                r.rollback_id = Some(rollback_id);
                r.reason = Some("the daemon restarted during a dry run".into());
                fx.push(Effect::Journal(r));
                self.phase = Phase::Watching;
                self.manual = None;
                fx.push(Effect::Persist);
            }
            Phase::Acting {
                rollback_id,
                from,
                to,
                started,
                ..
            }
            | Phase::Finishing {
                rollback_id,
                from,
                to,
                started,
            } => {
                fx.push(resumed(self, &rollback_id, &from, "the daemon restarted while the rollback was being applied; it is not applied again: waiting for the rollout and verifying"));
                self.await_rollout(now, rollback_id, from, to, started, fx);
            }
            Phase::RollingOut {
                rollback_id, from, ..
            } => {
                fx.push(resumed(
                    self,
                    &rollback_id,
                    &from,
                    "the daemon restarted while waiting for the rollout; waiting again",
                ));
                let timeout = self.manual_for(&rollback_id).and_then(|m| m.timeout);
                fx.push(Effect::Act(Action::AwaitRollout {
                    rollback_id,
                    from,
                    timeout,
                }));
            }
            Phase::Verifying {
                rollback_id,
                from,
                to,
                started,
                ..
            } => {
                fx.push(resumed(
                    self,
                    &rollback_id,
                    &from,
                    "the daemon restarted while verifying; verifying afresh",
                ));
                self.phase = Phase::Verifying {
                    rollback_id,
                    from,
                    to,
                    started,
                    since: now,
                    streak: 0,
                    passed: false,
                };
                fx.push(Effect::Persist);
            }
        }
    }

    /// `from` was (or may have been) rolled away from: it is never rolled
    /// back again, and the cooldown starts (README, "How it decides": never worse).
    /// A manual rollback marks `from` too, but starts no cooldown (the
    /// README's "Rolling back by hand").
    fn count_rollback(&mut self, now: Millis, id: &str, from: &str) {
        self.bad_revisions.insert(from.to_owned());
        if self.manual_for(id).is_none() {
            self.cooldown_until = Some(now.saturating_add(self.policy.cooldown));
        }
    }

    /// The undo is done (or taken as done): wait for its rollout.
    fn await_rollout(
        &mut self,
        now: Millis,
        rollback_id: String,
        from: String,
        to: Option<String>,
        started: Millis,
        fx: &mut Vec<Effect>,
    ) {
        self.count_rollback(now, &rollback_id, &from);
        let timeout = self.manual_for(&rollback_id).and_then(|m| m.timeout);
        fx.push(Effect::Act(Action::AwaitRollout {
            rollback_id: rollback_id.clone(),
            from: from.clone(),
            timeout,
        }));
        self.phase = Phase::RollingOut {
            rollback_id,
            from,
            to,
            started,
        };
        fx.push(Effect::Persist);
    }

    fn on_rechecked(&mut self, now: Millis, id: &str, result: Recheck, fx: &mut Vec<Effect>) {
        let Phase::Deciding { rollback_id, from } = &self.phase else {
            return;
        };
        if rollback_id != id {
            return;
        }
        let (rollback_id, from) = (rollback_id.clone(), from.clone());
        if let Some(manual) = self.manual_for(&rollback_id)
            && result != Recheck::Proceed
        {
            // An operator is following this one: every refusal is theirs
            // to read, none escalates.
            let to = manual.to.clone();
            let why = match result {
                Recheck::Proceed => String::new(),
                Recheck::Superseded(rev) => {
                    let id = rev.id.clone();
                    self.phase = Phase::Watching;
                    self.on_revision(now, rev, fx);
                    format!("revision {id} appeared since; not rolling back")
                }
                Recheck::Paused => "the target's rollout is paused (kubectl rollout resume first); not rolling back a paused rollout".into(),
                Recheck::NoPrevious => match to {
                    Some(to) => format!("there is no revision {to} to roll back to"),
                    None => "the target has no earlier revision to roll back to".into(),
                },
                Recheck::Refused(why) => why,
                Recheck::Failed(e) => format!("cannot re-read the target: {e}"),
            };
            self.drop_manual(now, &rollback_id, why, fx);
            return;
        }
        match result {
            Recheck::Proceed => {
                let manual = self.manual_for(&rollback_id).cloned();
                let reason = match &manual {
                    Some(m) => m.reason.clone(),
                    None => self.reason(),
                };
                let dry_run = manual.as_ref().map_or(self.policy.dry_run, |m| m.dry_run);
                if !dry_run {
                    let mut r =
                        self.rollback_record(now, EventKind::RollbackStarted, &rollback_id, &from);
                    r.to_revision = manual.as_ref().and_then(|m| m.to.clone());
                    r.reason = Some(reason.clone());
                    r.checks = self.evidence.clone();
                    // Durable before the change is made (README, "How it decides": rolling back).
                    fx.push(Effect::Journal(r.clone()));
                    // A manual rollback is told once, when it ends.
                    if manual.is_none() {
                        fx.push(Effect::Notify(r));
                    }
                }
                let order = Order {
                    rollback_id: rollback_id.clone(),
                    from: from.clone(),
                    to: manual.as_ref().and_then(|m| m.to.clone()),
                    trigger: self.trigger_of(&rollback_id),
                    operator: manual.as_ref().map(|m| m.operator.clone()),
                    avoid: match &manual {
                        Some(m) if m.to.is_some() => Vec::new(),
                        _ => self.bad_revisions.iter().cloned().collect(),
                    },
                    reason,
                    dry_run,
                };
                self.phase = Phase::Acting {
                    rollback_id,
                    from,
                    to: None,
                    started: now,
                    dry_run,
                };
                // Saved before the order: a crash once the command runs must
                // find the rollback in progress, never start a second one.
                fx.push(Effect::Persist);
                fx.push(Effect::Act(Action::Undo(order)));
            }
            Recheck::Superseded(rev) => {
                self.phase = Phase::Watching;
                self.on_revision(now, rev, fx);
            }
            Recheck::Paused => {
                self.phase = Phase::Watching;
                self.escalate(
                    now,
                    "the target is paused; not rolling back a paused rollout".into(),
                    fx,
                );
            }
            Recheck::NoPrevious => {
                self.phase = Phase::Watching;
                self.escalate(
                    now,
                    "the target has no earlier revision to roll back to".into(),
                    fx,
                );
            }
            Recheck::Refused(why) => {
                self.phase = Phase::Watching;
                self.escalate(now, why, fx);
            }
            Recheck::Failed(error) => {
                // Try again at the next failing evaluation.
                self.phase = Phase::Watching;
                let mut r = self.record(now, EventKind::DecisionDropped);
                r.rollback_id = Some(rollback_id);
                r.reason = Some(format!("cannot re-read the target: {error}"));
                fx.push(Effect::Journal(r));
            }
        }
    }

    fn on_acted(&mut self, now: Millis, id: &str, result: ActResult, fx: &mut Vec<Effect>) {
        let Phase::Acting {
            rollback_id,
            from,
            to,
            started,
            dry_run,
        } = &self.phase
        else {
            return;
        };
        if rollback_id != id {
            return;
        }
        let (rollback_id, from, seen_to, started, dry_run) = (
            rollback_id.clone(),
            from.clone(),
            to.clone(),
            *started,
            *dry_run,
        );
        if dry_run {
            let manual = self.manual_for(&rollback_id).cloned();
            let mut r = self.rollback_record(now, EventKind::WouldRollBack, &rollback_id, &from);
            r.checks = self.evidence.clone();
            self.phase = Phase::Watching;
            self.manual = None;
            if manual.is_none() {
                self.dry_run_done_for = Some(from.clone());
            }
            match result {
                ActResult::Applied { to } => {
                    r.to_revision = to;
                    r.reason = Some(format!("dry run: would roll back; {}", self.reason()));
                }
                ActResult::Conflict => {
                    r.reason =
                        Some("dry run: the rollback would conflict with a concurrent change".into())
                }
                ActResult::Refused(why) | ActResult::Failed(why) => {
                    r.reason = Some(format!("dry run: the rollback would fail: {why}"))
                }
            }
            fx.push(Effect::Journal(r.clone()));
            // A manual dry run is the operator's own look; nobody else is told.
            if manual.is_none() {
                fx.push(Effect::Notify(r));
            }
            fx.push(Effect::Persist);
            return;
        }
        match result {
            ActResult::Applied { to } => {
                let to = to.or(seen_to);
                let mut r =
                    self.rollback_record(now, EventKind::RollbackApplied, &rollback_id, &from);
                r.to_revision = to.clone();
                fx.push(Effect::Journal(r));
                self.await_rollout(now, rollback_id, from, to, started, fx);
            }
            ActResult::Conflict => {
                // A concurrent deploy won; its revision is decided afresh.
                self.streak = 0;
                self.phase = Phase::Finishing {
                    rollback_id,
                    from,
                    to: seen_to,
                    started,
                };
                self.finish(now, Outcome::Conflict, fx);
            }
            ActResult::Refused(why) => {
                self.phase = Phase::Finishing {
                    rollback_id,
                    from,
                    to: seen_to,
                    started,
                };
                self.finish_with(now, Outcome::Error, Some(why), fx);
            }
            ActResult::Failed(why) => {
                // It ran and failed: it may have changed the target halfway.
                // The revision still counts as rolled back once.
                self.count_rollback(now, &rollback_id, &from);
                self.phase = Phase::Finishing {
                    rollback_id,
                    from,
                    to: seen_to,
                    started,
                };
                self.finish_with(now, Outcome::Error, Some(why), fx);
            }
        }
    }

    fn on_rolled_out(
        &mut self,
        now: Millis,
        id: &str,
        result: RolloutResult,
        fx: &mut Vec<Effect>,
    ) {
        let Phase::RollingOut { rollback_id, .. } = &self.phase else {
            return;
        };
        if rollback_id != id {
            return;
        }
        // The revision the rollout landed on is the restored one: known now,
        // it cannot be mistaken later for someone else's rollout.
        if let RolloutResult::Complete(Some(rev)) = &result {
            self.on_revision(now, rev.clone(), fx);
        }
        let Phase::RollingOut {
            rollback_id,
            from,
            to,
            started,
        } = &self.phase
        else {
            // Landing on a known bad revision ended the rollback.
            return;
        };
        let skip_verify = self.manual_for(rollback_id).is_some_and(|m| !m.verify);
        match result {
            RolloutResult::Complete(_) if skip_verify => self.finish_with(
                now,
                Outcome::Unverified,
                Some("rolled out; not verified, as asked".into()),
                fx,
            ),
            RolloutResult::Complete(_) => {
                let mut r = self.record(now, EventKind::Verifying);
                r.rollback_id = Some(rollback_id.clone());
                r.from_revision = Some(from.clone());
                r.to_revision = to.clone();
                fx.push(Effect::Journal(r));
                self.phase = Phase::Verifying {
                    rollback_id: rollback_id.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    started: *started,
                    since: now,
                    streak: 0,
                    passed: false,
                };
                fx.push(Effect::Persist);
            }
            RolloutResult::Failed(why) => {
                self.finish_with(now, Outcome::RolloutFailed, Some(why), fx)
            }
        }
    }

    fn check_verification_end(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let Phase::Verifying { since, passed, .. } = self.phase else {
            return;
        };
        if now.saturating_sub(since) < self.policy.verify_for {
            return;
        }
        // Recovered: no failing streak reached the threshold (else we would
        // have finished already) and at least one evaluation passed.
        let outcome = if passed {
            Outcome::Recovered
        } else {
            Outcome::Unverified
        };
        self.finish(now, outcome, fx);
    }

    fn finish(&mut self, now: Millis, outcome: Outcome, fx: &mut Vec<Effect>) {
        self.finish_with(now, outcome, None, fx);
    }

    /// Ends the rollback in progress with `outcome` (README, "How it decides": rolling back); anything
    /// but `recovered` (and a lost race) escalates (README, "How it decides": never worse).
    fn finish_with(
        &mut self,
        now: Millis,
        outcome: Outcome,
        detail: Option<String>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(u) = self.phase.underway() else {
            return;
        };
        let (rollback_id, from, to, started) = (
            u.rollback_id.to_owned(),
            u.from.to_owned(),
            u.to.cloned(),
            u.started,
        );
        let mut r = self.rollback_record(now, EventKind::RollbackFinished, &rollback_id, &from);
        let trigger = self.trigger_of(&rollback_id);
        let manual = self.manual.take().filter(|m| m.rollback_id == rollback_id);
        self.phase = Phase::Watching;
        self.streak = 0;
        self.last_rollback = Some(RollbackSummary {
            rollback_id,
            from,
            to: to.clone(),
            trigger,
            started,
            finished: now,
            outcome,
        });
        r.to_revision = to;
        r.outcome = Some(outcome);
        r.reason = detail.clone();
        r.checks = self.evidence.clone();
        fx.push(Effect::Journal(r.clone()));
        if let Some(m) = manual {
            // Told once, as what it was; no escalation: a person is on it.
            if m.notify {
                let mut told = r;
                told.event = EventKind::ManualRollback;
                fx.push(Effect::Notify(told));
            }
            fx.push(Effect::Persist);
            return;
        }
        fx.push(Effect::Notify(r));
        fx.push(Effect::Persist);
        match outcome {
            Outcome::Recovered | Outcome::Conflict => {}
            Outcome::VerifyFailed => self.escalate(now, "the restored revision did not recover; no further automatic action until a new revision appears".into(), fx),
            Outcome::Unverified => self.escalate(now, "no evaluation passed while verifying the restored revision; no further automatic action until a new revision appears".into(), fx),
            Outcome::RolloutFailed => self.escalate(now, format!("the rollback's rollout did not complete: {}", detail.unwrap_or_default()), fx),
            Outcome::Error => self.escalate(now, format!("the rollback failed: {}", detail.unwrap_or_default()), fx),
        }
    }
}

#[cfg(test)]
mod tests;
