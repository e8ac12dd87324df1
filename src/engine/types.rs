//! The vocabulary of the engine: what goes in, what comes out, and what a
//! watch remembers.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use crate::config::Arm;

use super::Memory;

/// Milliseconds since the Unix epoch. Wall-clock time, so that windows
/// computed before a restart still mean something after it.
pub type Millis = u64;

/// The revision id used when a target cannot say which version it runs.
pub const UNKNOWN_REVISION: &str = "unknown";

/// The settings of a watch that the engine decides with, in engine terms
/// (built from the configuration by the runner: the engine does not read
/// configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub failure_threshold: u32,
    pub arm: Arm,
    pub arm_window: Millis,
    pub cooldown: Millis,
    pub verify_for: Millis,
    pub dry_run: bool,
}

/// Where a revision came from, as far as the observer can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A new rollout: it arms the watch.
    Rollout,
    /// Created by rolling back (by rollbackd or by hand): it never arms.
    Rollback,
    /// Seen for the first time after a start, age unknown: it does not arm.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub id: String,
    /// When it appeared: its creation time where the target knows it (a
    /// ReplicaSet's), otherwise when it was first seen.
    pub since: Millis,
    pub origin: Origin,
    /// The adapter knows the origin for a fact (a Kubernetes ReplicaSet
    /// says whether it is new or reused); a command target's version
    /// change could be anyone's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub definite: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One check's result in one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub kind: String,
    pub name: String,
    pub result: Verdict,
    /// The observed value (a metric, a latency in seconds, a status code).
    pub value: Option<f64>,
    /// The threshold as an operator reads it: `max 0.05`, `status 2xx`.
    pub threshold: String,
    /// The series labels of the offending value.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Why, in a few words: the failure, or why it was inconclusive.
    #[serde(default)]
    pub detail: String,
}

impl CheckResult {
    /// `error-ratio 0.31 > max 0.05 {pod="web-1"}`, for reasons and subjects.
    pub fn summary(&self) -> String {
        let mut s = self.name.clone();
        if let Some(v) = self.value {
            s.push_str(&format!(" {}", fmt_value(v)));
        }
        if !self.threshold.is_empty() {
            s.push_str(&format!(" (threshold {})", self.threshold));
        }
        if !self.labels.is_empty() {
            let labels: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            s.push_str(&format!(" {{{}}}", labels.join(", ")));
        }
        if !self.detail.is_empty() {
            s.push_str(&format!(": {}", self.detail));
        }
        s
    }
}

/// A number as people write it: `0.31`, `12`, `1.5e-7`.
pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "0" || s == "-0" {
            format!("{v:e}")
        } else {
            s.to_owned()
        }
    }
}

/// All checks of one watch at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub at: Millis,
    pub verdict: Verdict,
    pub checks: Vec<CheckResult>,
    /// The revision the watch believed current when the evaluation began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl Evaluation {
    /// Combines check results as the README's "How it decides" says: fail if any fails, else
    /// inconclusive if any is, else pass. No checks at all decide nothing.
    pub fn new(at: Millis, checks: Vec<CheckResult>) -> Self {
        let verdict = if checks.iter().any(|c| c.result == Verdict::Fail) {
            Verdict::Fail
        } else if checks.is_empty() || checks.iter().any(|c| c.result == Verdict::Inconclusive) {
            Verdict::Inconclusive
        } else {
            Verdict::Pass
        };
        Self {
            at,
            verdict,
            revision: None,
            checks,
        }
    }
}

/// What the adapter found when it re-read the target before acting.
#[derive(Debug, Clone, PartialEq)]
pub enum Recheck {
    /// Still at the failing revision, not paused, with somewhere to go.
    Proceed,
    /// A newer revision appeared since the failing evaluations.
    Superseded(Revision),
    Paused,
    NoPrevious,
    /// The adapter cannot act on this target at all (said once, escalated).
    Refused(String),
    /// The target could not be read.
    Failed(String),
}

/// What the adapter did with an [`Order`].
#[derive(Debug, Clone, PartialEq)]
pub enum ActResult {
    /// Undone; `to` is the restored revision where the adapter knows it.
    Applied {
        to: Option<String>,
    },
    /// The target changed under us (a concurrent deploy); nothing was done.
    Conflict,
    /// The adapter would not act (already at that template, revision gone).
    Refused(String),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum RolloutResult {
    /// Done; with the revision it landed on, where the adapter saw it.
    Complete(Option<Revision>),
    /// Did not complete: progress deadline exceeded, or `rollout_timeout`.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The target's current revision, as observed now.
    Revision(Revision),
    Evaluation(Evaluation),
    Rechecked {
        rollback_id: String,
        result: Recheck,
    },
    Acted {
        rollback_id: String,
        result: ActResult,
    },
    RolledOut {
        rollback_id: String,
        result: RolloutResult,
    },
    /// The action ordered for `rollback_id` was stopped before it answered
    /// (leadership lost, the watch removed, shutdown): whether it took
    /// effect is unknown, so a started rollback stays where it is for
    /// whoever drives the watch next to resume.
    Cancelled {
        rollback_id: String,
    },
    /// Time passes: a verification window may end.
    Tick,
    /// A start: what the watch remembered (its memory file, if readable)
    /// and what the journal says of it. A rollback in progress is resumed.
    Restore {
        memory: Option<Box<Memory>>,
        journal: JournalSummary,
    },
    /// A reload changed the watch's definition: decide with `policy` from
    /// now on, from a fresh streak; what it remembers is kept.
    Redefine(Policy),
    Pause,
    Resume,
    /// Forget the streak and any escalation (an operator's decision).
    Reset,
    /// An operator asks for a rollback (`rollbackd rollback`); see
    /// [`super::Machine::manual_refusal`] for when it is refused.
    Manual(Box<ManualRequest>),
}

/// An operator's rollback, as `rollbackd rollback` (or
/// `POST /watches/NAME/rollback`) asks for it. It goes through the same
/// re-read, undo, rollout wait and verification as an automatic one, with
/// `trigger = manual`; it never starts a cooldown and never escalates (a
/// person is already deciding), and people hear of it once, as
/// `manual_rollback`, when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualRequest {
    pub rollback_id: String,
    /// The revision the operator saw as current and confirmed rolling
    /// away from: a target that moved on since is not rolled back.
    pub from: String,
    /// The revision to restore; `None`: the previous one not known bad.
    pub to: Option<String>,
    pub reason: String,
    /// `user@host`.
    pub operator: String,
    pub dry_run: bool,
    /// Verify the restored revision with the watch's checks.
    pub verify: bool,
    /// Tell the watch's notifiers when it ends.
    pub notify: bool,
    /// Bound on the rollout wait instead of the watch's `rollout_timeout`.
    #[serde(default)]
    pub timeout: Option<Millis>,
}

/// What the journal says of one watch, for [`Input::Restore`]. The journal
/// is written before every action and the memory after: where they
/// disagree (a crash between the two, a lost memory file) the journal wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalSummary {
    /// The last rollback started and never finished: (rollback_id, from).
    pub open: Option<(String, String)>,
    /// Revisions an undo was applied to.
    pub bad: BTreeSet<String>,
}

/// An instruction to undo the rollout of `from`.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub rollback_id: String,
    pub from: String,
    /// The revision to restore, where someone chose it (a manual rollback);
    /// otherwise the previous one, as `kubectl rollout undo` picks it.
    pub to: Option<String>,
    pub trigger: Trigger,
    /// Who asked, for a manual rollback (`user@host`).
    pub operator: Option<String>,
    /// Revisions never to roll into (README, "How it decides": never worse).
    pub avoid: Vec<String>,
    pub reason: String,
    /// Prove the change (server-side dry-run) without making it.
    pub dry_run: bool,
}

/// What the engine asks of its driver, in order: bookkeeping first (the
/// journal durably, people, the memory), then at most one [`Action`] on the
/// target, whose answer comes back as an [`Input`].
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append to the journal, durably, before the effects that follow.
    Journal(Record),
    /// Tell people (through the outbox; never waited for).
    Notify(Record),
    /// The remembered state changed: save it.
    Persist,
    Act(Action),
}

/// What an adapter does to a target; each answers with one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Re-read the target and answer with [`Input::Rechecked`]; `avoid`
    /// are the revisions never to roll into (none left means no previous).
    Recheck {
        rollback_id: String,
        from: String,
        avoid: Vec<String>,
        /// The revision to restore, where someone chose it: it must exist.
        to: Option<String>,
    },
    /// Undo, answering with [`Input::Acted`].
    Undo(Order),
    /// Wait for the rollout, answering with [`Input::RolledOut`].
    AwaitRollout {
        rollback_id: String,
        from: String,
        /// Instead of the watch's `rollout_timeout` (a manual `--timeout`).
        timeout: Option<Millis>,
    },
}

impl Action {
    pub fn rollback_id(&self) -> &str {
        match self {
            Action::Recheck { rollback_id, .. } | Action::AwaitRollout { rollback_id, .. } => {
                rollback_id
            }
            Action::Undo(o) => &o.rollback_id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    RevisionObserved,
    Armed,
    NotArmed,
    Decided,
    DecisionDropped,
    RollbackStarted,
    RollbackApplied,
    Verifying,
    RollbackFinished,
    Escalated,
    WatchBlind,
    WouldRollBack,
    RollbackResumed,
    Paused,
    Resumed,
    Reset,
    /// A rollback made by hand: by an operator through rollbackd (when it
    /// ends), or by anyone else (`kubectl rollout undo`), as observed.
    ManualRollback,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RevisionObserved => "revision_observed",
            EventKind::Armed => "armed",
            EventKind::NotArmed => "not_armed",
            EventKind::Decided => "decided",
            EventKind::DecisionDropped => "decision_dropped",
            EventKind::RollbackStarted => "rollback_started",
            EventKind::RollbackApplied => "rollback_applied",
            EventKind::Verifying => "verifying",
            EventKind::RollbackFinished => "rollback_finished",
            EventKind::Escalated => "escalated",
            EventKind::WatchBlind => "watch_blind",
            EventKind::WouldRollBack => "would_roll_back",
            EventKind::RollbackResumed => "rollback_resumed",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::Reset => "reset",
            EventKind::ManualRollback => "manual_rollback",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Auto,
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Auto => "auto",
            Trigger::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Recovered,
    RolloutFailed,
    VerifyFailed,
    Unverified,
    Conflict,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Recovered => "recovered",
            Outcome::RolloutFailed => "rollout_failed",
            Outcome::VerifyFailed => "verify_failed",
            Outcome::Unverified => "unverified",
            Outcome::Conflict => "conflict",
            Outcome::Error => "error",
        }
    }
}

/// One journal line (the README's "State directory") and the substance of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub ts: Millis,
    pub event: EventKind,
    pub watch: String,
    pub rollback_id: Option<String>,
    pub from_revision: Option<String>,
    pub to_revision: Option<String>,
    pub trigger: Option<Trigger>,
    pub outcome: Option<Outcome>,
    pub reason: Option<String>,
    /// The target's revision when it happened.
    pub revision: Option<Revision>,
    /// Who asked, for a manual rollback (`user@host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
}

/// Where a rollback in progress stands. Saved, so that a restart resumes it
/// instead of starting another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    Watching,
    /// The threshold was reached; waiting for the target to be re-read.
    Deciding {
        rollback_id: String,
        from: String,
    },
    /// The undo was ordered.
    Acting {
        rollback_id: String,
        from: String,
        to: Option<String>,
        started: Millis,
        /// Ordered as a dry run: judged as one even if the policy changes.
        #[serde(default)]
        dry_run: bool,
    },
    /// Undone; waiting for the rollout to complete.
    RollingOut {
        rollback_id: String,
        from: String,
        to: Option<String>,
        started: Millis,
    },
    /// Checking that the restored revision recovers.
    Verifying {
        rollback_id: String,
        from: String,
        to: Option<String>,
        started: Millis,
        since: Millis,
        streak: u32,
        passed: bool,
    },
    /// Momentary: ending a rollback that did not get to its rollout.
    Finishing {
        rollback_id: String,
        from: String,
        to: Option<String>,
        started: Millis,
    },
}

/// The rollback a [`Phase`] is about, once it has been started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underway<'a> {
    pub rollback_id: &'a str,
    pub from: &'a str,
    pub to: Option<&'a String>,
    pub started: Millis,
}

impl Phase {
    /// The started rollback this phase belongs to (from the order to the
    /// outcome); `None` while watching or still deciding.
    pub fn underway(&self) -> Option<Underway<'_>> {
        match self {
            Phase::Acting {
                rollback_id,
                from,
                to,
                started,
                ..
            }
            | Phase::RollingOut {
                rollback_id,
                from,
                to,
                started,
            }
            | Phase::Finishing {
                rollback_id,
                from,
                to,
                started,
            }
            | Phase::Verifying {
                rollback_id,
                from,
                to,
                started,
                ..
            } => Some(Underway {
                rollback_id,
                from,
                to: to.as_ref(),
                started: *started,
            }),
            Phase::Watching | Phase::Deciding { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackSummary {
    pub rollback_id: String,
    pub from: String,
    pub to: Option<String>,
    pub trigger: Trigger,
    pub started: Millis,
    pub finished: Millis,
    pub outcome: Outcome,
}

/// The states `/status` names (the README's "HTTP endpoint").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Idle,
    Armed,
    Failing,
    RollingBack,
    Verifying,
    Recovered,
    Cooldown,
    Escalated,
    Baked,
    Paused,
    Blind,
}

impl State {
    pub const ALL: [State; 11] = [
        State::Idle,
        State::Armed,
        State::Failing,
        State::RollingBack,
        State::Verifying,
        State::Recovered,
        State::Cooldown,
        State::Escalated,
        State::Baked,
        State::Paused,
        State::Blind,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Armed => "armed",
            State::Failing => "failing",
            State::RollingBack => "rolling_back",
            State::Verifying => "verifying",
            State::Recovered => "recovered",
            State::Cooldown => "cooldown",
            State::Escalated => "escalated",
            State::Baked => "baked",
            State::Paused => "paused",
            State::Blind => "blind",
        }
    }
}
