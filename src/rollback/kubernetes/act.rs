//! The three things the engine asks of a Kubernetes target: re-read it
//! before acting, undo its rollout, and wait for that rollout. Each answers
//! with a plain outcome for the engine.

use crate::clock::now_ms;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::workload::{self, Mark, Object, Refusal, RolloutStatus};
use super::{ApiFailure, Handle};
use crate::engine::{ActResult, Order, Recheck, RolloutResult};
use crate::rollback::{Progress, RolloutProgress};

/// How long the controller may take to observe a spec before a re-read
/// gives up on knowing the current revision.
const OBSERVE_WAIT: Duration = Duration::from_secs(5);

/// Reads the workload until its controller has observed the current spec
/// (a revision number read before that may be about to change).
async fn read_observed(
    h: &Handle,
    budget: Duration,
) -> Result<(Object, Vec<workload::HistoryEntry>), ApiFailure> {
    let deadline = tokio::time::Instant::now() + OBSERVE_WAIT;
    loop {
        let (obj, history) = h.read(budget).await?;
        if obj.observed() || tokio::time::Instant::now() >= deadline {
            return Ok((obj, history));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Before acting: still at the failing revision, not paused, somewhere to go.
/// `to`, where someone chose it, must be a revision in the history.
pub async fn recheck(h: &Handle, from: &str, avoid: &[String], to: Option<&str>) -> Recheck {
    let to = match to.map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return Recheck::NoPrevious,
    };
    let budget = h.timeout;
    let (obj, history) = match read_observed(h, budget).await {
        Ok(r) => r,
        Err(e) if e.is_not_found() => {
            return Recheck::Refused(format!("{} does not exist", h.describe()));
        }
        Err(e) if e.code == Some(403) => {
            return Recheck::Refused(format!("not allowed to read the target: {e}"));
        }
        Err(e) => return Recheck::Failed(e.to_string()),
    };
    let Some(current) = obj.current(&history) else {
        return Recheck::Failed(format!(
            "the controller of {} has not observed its latest spec yet",
            h.describe()
        ));
    };
    if current.number.to_string() != from {
        return Recheck::Superseded(super::observe::revision_of(current, now_ms(), false));
    }
    if obj.paused() {
        return Recheck::Paused;
    }
    match workload::choose(obj.kind(), obj.name(), &history, to, avoid) {
        Ok(e) if e.number == current.number => Recheck::Refused(format!(
            "revision {} is the current one; there is nothing to roll back",
            e.number
        )),
        Ok(_) => Recheck::Proceed,
        // Earlier revisions exist, but each was rolled away from once.
        Err(Refusal::NoPrevious(m)) if history.len() >= 2 => Recheck::Refused(m),
        Err(Refusal::NoPrevious(_) | Refusal::NotFound(_)) => Recheck::NoPrevious,
        Err(r) => Recheck::Refused(r.message().to_owned()),
    }
}

/// What an undo did, beyond its outcome: for reports and the journal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UndoDetail {
    /// The revision whose template was restored (its number before the
    /// controller renumbers it).
    pub restored: Option<i64>,
    pub from_images: Vec<String>,
    pub to_images: Vec<String>,
}

/// Undoes the rollout of `order.from` as `kubectl rollout undo` would,
/// with a precondition on the workload's `resourceVersion`.
pub async fn undo(h: &Handle, order: &Order) -> (ActResult, UndoDetail) {
    let mut detail = UndoDetail::default();
    for attempt in 1..=UNDO_ATTEMPTS {
        match undo_once(h, order, &mut detail).await {
            Attempt::Done(r) => return (r, detail),
            Attempt::StatusMoved if attempt < UNDO_ATTEMPTS => {
                debug!(
                    attempt,
                    "only the status changed under the undo; planning it again"
                );
            }
            Attempt::StatusMoved => break,
        }
    }
    (
        ActResult::Failed(format!(
            "the status of {} kept changing; the undo's precondition failed {UNDO_ATTEMPTS} times",
            h.describe()
        )),
        detail,
    )
}

/// Status writes (the controller's, every few seconds during a rollout)
/// also change `resourceVersion`: a conflict that leaves the spec alone
/// is planned again, this many times at most.
const UNDO_ATTEMPTS: u32 = 5;

enum Attempt {
    Done(ActResult),
    /// The precondition failed on a status write alone.
    StatusMoved,
}

async fn undo_once(h: &Handle, order: &Order, detail: &mut UndoDetail) -> Attempt {
    use Attempt::Done;
    let budget = h.timeout;
    let (obj, history) = match read_observed(h, budget).await {
        Ok(r) => r,
        Err(e) if e.is_not_found() => {
            return Done(ActResult::Refused(format!(
                "{} does not exist",
                h.describe()
            )));
        }
        Err(e) => return Done(ActResult::Failed(e.to_string())),
    };
    // An undo sent before a restart (or whose answer was lost) is not sent again.
    if let Some(m) = Mark::of(&obj).filter(|m| m.rollback_id == order.rollback_id) {
        info!(rollback_id = %m.rollback_id, "the workload already carries this rollback; not patching again");
        return Done(ActResult::Applied { to: Some(m.to) });
    }
    let Some(current) = obj.current(&history) else {
        return Done(ActResult::Conflict);
    };
    // The workload and its history are two reads: a history with a
    // newer revision than the workload named means a deploy landed
    // between them.
    let newest = history.iter().map(|e| e.number).max().unwrap_or(0);
    if current.number.to_string() != order.from || newest > current.number {
        info!(current = current.number, newest, from = %order.from, "the target moved on before the undo; not patching");
        return Done(ActResult::Conflict);
    }
    detail.from_images = current.images();
    let to_revision = match order.to.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return Done(ActResult::Refused(format!(
                "{:?} is not a revision number",
                order.to.as_deref().unwrap_or("")
            )));
        }
    };
    let chosen = match workload::choose(obj.kind(), obj.name(), &history, to_revision, &order.avoid)
    {
        Ok(c) => c.clone(),
        Err(r) => return Done(ActResult::Refused(r.message().to_owned())),
    };
    detail.restored = Some(chosen.number);
    detail.to_images = chosen.images();
    // The controller gives the restored template the next number.
    let next = history.iter().map(|e| e.number).max().unwrap_or(0) + 1;
    let to = if order.dry_run { chosen.number } else { next };
    let mark = Mark {
        rollback_id: order.rollback_id.clone(),
        from: order.from.clone(),
        to: to.to_string(),
        trigger: order.trigger.as_str().into(),
        reason: order.reason.clone(),
        operator: order.operator.clone(),
        at: jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_string(),
    };
    let plan = match workload::plan(&obj, &history, Some(chosen.number), &order.avoid, &mark) {
        Ok(p) => p,
        Err(r) => return Done(ActResult::Refused(r.message().to_owned())),
    };
    info!(
        from = %order.from,
        restoring = chosen.number,
        images = %detail.to_images.join(","),
        dry_run = order.dry_run,
        "patching the workload back to the previous revision"
    );
    let applied = ActResult::Applied {
        to: Some(to.to_string()),
    };
    match h.patch(&plan.patch, order.dry_run, budget).await {
        Ok(()) => Done(applied),
        Err(e) if e.is_conflict() || e.transient => {
            let Ok(now) = h.get(budget).await else {
                return Done(ActResult::Failed(e.to_string()));
            };
            // A lost answer may hide a patch that was applied: the mark says.
            if !order.dry_run && Mark::of(&now).is_some_and(|m| m.rollback_id == order.rollback_id)
            {
                return Done(applied);
            }
            let spec_unchanged =
                now.meta().generation == obj.meta().generation && now.template() == obj.template();
            if spec_unchanged {
                return Attempt::StatusMoved;
            }
            warn!(error = %e, "the workload's spec changed between the re-read and the patch; not clobbering it");
            Done(ActResult::Conflict)
        }
        Err(e) if e.is_not_found() => Done(ActResult::Refused(format!(
            "{} does not exist",
            h.describe()
        ))),
        Err(e) => Done(ActResult::Failed(e.to_string())),
    }
}

/// How often the rollout is re-read while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Waits as `kubectl rollout status` does, bounded by `timeout`, for the
/// workload to move off `from` and finish rolling out. A workload whose
/// controller has seen its spec, still at `from` and without this
/// rollback's mark, never got the undo (the daemon stopped between the
/// journal and the patch): that is said at once, not after `timeout`.
///
/// Each change of kubectl's message (and of the replica counts) is told
/// to `progress`, for a person watching.
pub async fn wait(
    h: &Handle,
    rollback_id: &str,
    from: &str,
    timeout: Duration,
    progress: &Progress,
) -> RolloutResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut told: Option<RolloutProgress> = None;
    let mut tell = |message: &str, counts| {
        let now = RolloutProgress {
            message: message.to_owned(),
            counts,
        };
        if told.as_ref() != Some(&now) {
            progress.report(now.clone());
            told = Some(now);
        }
    };
    loop {
        let mut counts = None;
        let last = match h.read(h.timeout).await {
            Ok((obj, history)) => match obj.current(&history) {
                Some(cur) if cur.number.to_string() != from => {
                    let mark = Mark::of(&obj).filter(|m| m.rollback_id == rollback_id);
                    let ours = mark
                        .as_ref()
                        .is_some_and(|m| m.to == cur.number.to_string());
                    if !ours {
                        // Someone else's deploy: the watch reports it and the
                        // engine ends this rollback as a conflict.
                        format!(
                            "revision {} is not the one this rollback restored",
                            cur.number
                        )
                    } else {
                        counts = Some(obj.counts());
                        match obj.rollout_status() {
                            RolloutStatus::Complete(m) => {
                                tell(&m, counts);
                                let rev = super::observe::revision_of(cur, now_ms(), true);
                                return RolloutResult::Complete(Some(rev));
                            }
                            RolloutStatus::Unsupported(m) => {
                                return RolloutResult::Failed(format!(
                                    "{m}: the restored revision's pods are replaced only as they are deleted; verify by hand"
                                ));
                            }
                            RolloutStatus::DeadlineExceeded(m) => {
                                let patched = mark
                                    .as_ref()
                                    .and_then(|m| m.at.parse::<jiff::Timestamp>().ok());
                                match (obj.deadline_exceeded_at(), patched) {
                                    // The bad rollout's condition, not yet
                                    // replaced by the controller.
                                    (Some(at), Some(patched)) if at < patched => {
                                        "the previous rollout's deadline condition is still set"
                                            .into()
                                    }
                                    _ => return RolloutResult::Failed(m),
                                }
                            }
                            RolloutStatus::Waiting(m) => m,
                        }
                    }
                }
                Some(_) if Mark::of(&obj).is_none_or(|m| m.rollback_id != rollback_id) => {
                    return RolloutResult::Failed(format!(
                        "the undo was never applied: {} is still at revision {from} without this rollback's mark (the daemon stopped before sending it); not sending it now, a person decides",
                        h.describe()
                    ));
                }
                Some(_) => {
                    format!("still at revision {from}: the undo has not reached the controller")
                }
                None => "Waiting for the controller to observe the rollback...".into(),
            },
            Err(e) if e.is_not_found() => {
                return RolloutResult::Failed(format!("{} was deleted", h.describe()));
            }
            Err(e) => e.to_string(),
        };
        tell(&last, counts);
        if tokio::time::Instant::now() + POLL >= deadline {
            return RolloutResult::Failed(format!(
                "the rollout did not finish within {}: {last}",
                humantime::format_duration(timeout)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
