//! The adapters that act: they observe a target's revisions, re-read it
//! before acting, undo its rollout, wait for that rollout, read its history
//! and probe it for `rollbackd check --online`. They report plainly what
//! happened; deciding whether to act is the engine's job.
//!
//! [`Adapter`] is the one seam: a closed enum with the same methods on each
//! kind of target, matched exhaustively, so that a new kind is a new
//! variant and every driver (the daemon, the operator's commands) gets it.
//!
//! - [`command`]: hosts without Kubernetes, through the operator's own
//!   deploy tool (`current` to read the version, `rollback` to undo).
//! - [`kubernetes`]: Deployments, StatefulSets and DaemonSets, undone as
//!   `kubectl rollout undo` would and waited for as `kubectl rollout
//!   status` would.

pub mod command;
#[cfg(test)]
pub mod fake;
pub mod kubernetes;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Target, Watch};
use crate::engine::{
    ActResult, Action, CheckResult, Input, Millis, Recheck, Revision, RolloutResult,
};

/// Why an adapter could not do what it was asked, by kind.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// No client could be made (credentials, kubeconfig, context).
    #[error("cannot connect to Kubernetes: {0}")]
    Connect(String),
    #[error(transparent)]
    Api(#[from] kubernetes::ApiFailure),
    #[error(transparent)]
    Command(#[from] command::CommandError),
}

impl AdapterError {
    /// A metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            AdapterError::Connect(_) => "connect",
            AdapterError::Api(_) => "api",
            AdapterError::Command(_) => "command",
        }
    }
}

/// What an action did beyond its answer to the engine, for the journal
/// and the reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    /// A rollback command's run.
    Command(command::Run),
    /// What a Kubernetes undo restored.
    Undo(kubernetes::act::UndoDetail),
}

/// An action's answer: the engine's input, and what else it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub input: Input,
    pub detail: Option<Detail>,
}

impl Answer {
    fn plain(input: Input) -> Self {
        Answer {
            input,
            detail: None,
        }
    }

    /// An action that was stopped before it answered.
    pub fn cancelled(action: &Action) -> Self {
        Answer::plain(Input::Cancelled {
            rollback_id: action.rollback_id().to_owned(),
        })
    }

    /// An action that could not be attempted at all.
    pub fn failed(action: Action, why: String) -> Self {
        Answer::plain(match action {
            Action::Recheck { rollback_id, .. } => Input::Rechecked {
                rollback_id,
                result: Recheck::Failed(why),
            },
            Action::Undo(o) => Input::Acted {
                rollback_id: o.rollback_id,
                result: ActResult::Failed(why),
            },
            Action::AwaitRollout { rollback_id, .. } => Input::RolledOut {
                rollback_id,
                result: RolloutResult::Failed(why),
            },
        })
    }
}

/// How far a rollout has got, for a person watching it: kubectl's
/// `rollout status` message and, for a workload, its replica counts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RolloutProgress {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<kubernetes::workload::Counts>,
}

/// Where a rollout's progress is told; by default nowhere.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn Fn(RolloutProgress) + Send + Sync>>);

impl Progress {
    pub fn to(f: impl Fn(RolloutProgress) + Send + Sync + 'static) -> Self {
        Progress(Some(Arc::new(f)))
    }

    pub fn report(&self, p: RolloutProgress) {
        if let Some(f) = &self.0 {
            f(p);
        }
    }
}

/// One revision of a target, as `history` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub revision: String,
    pub images: Vec<String>,
    pub change_cause: Option<String>,
    pub created: Option<Millis>,
    pub current: bool,
}

/// The target of one watch, with what it takes to reach it.
pub enum Adapter {
    Command(command::CommandAdapter),
    Kubernetes(kubernetes::KubeAdapter),
    #[cfg(test)]
    Fake(fake::FakeAdapter),
}

impl Adapter {
    /// The adapter for `watch`'s target; Kubernetes clients come from
    /// `kube` (made on first use, shared by every watch of a context).
    pub fn for_watch(watch: &Watch, kube: &Arc<kubernetes::Connector>) -> Adapter {
        match &watch.target {
            Target::Command(c) => Adapter::Command(command::CommandAdapter {
                watch: watch.name.clone(),
                target: c.clone(),
                interval: watch.settings.interval,
                rollout_timeout: watch.settings.rollout_timeout,
            }),
            Target::Kubernetes(k) => Adapter::Kubernetes(kubernetes::KubeAdapter {
                connector: kube.clone(),
                target: k.clone(),
                rollout_timeout: watch.settings.rollout_timeout,
            }),
        }
    }

    /// Starts observing the target's revisions until `cancel`. `known` is
    /// the revision the watch already knows (a redefined watch carries on
    /// from it instead of treating it as a version of unknown age).
    pub fn observe(&self, known: Option<&Revision>, cancel: CancellationToken) -> Observer {
        match self {
            Adapter::Command(c) => Observer::Command(Arc::new(tokio::sync::Mutex::new(
                c.poller(known.map(|r| r.id.clone())),
            ))),
            Adapter::Kubernetes(k) => {
                let (feed, revisions) = k.observe(cancel);
                Observer::Kubernetes { feed, revisions }
            }
            #[cfg(test)]
            Adapter::Fake(f) => Observer::Fake(f.observe()),
        }
    }

    /// Carries out one action and answers it; a rollout being waited for
    /// tells `progress` how far it got.
    pub async fn execute(&self, action: Action, progress: &Progress) -> Answer {
        match self {
            Adapter::Command(c) => c.execute(action).await,
            Adapter::Kubernetes(k) => k.execute(action, progress).await,
            #[cfg(test)]
            Adapter::Fake(f) => f.execute(action).await,
        }
    }

    /// The target's revisions, oldest first.
    pub async fn history(&self) -> Result<Vec<HistoryRow>, AdapterError> {
        match self {
            Adapter::Command(c) => c.history().await,
            Adapter::Kubernetes(k) => k.history().await,
            #[cfg(test)]
            Adapter::Fake(f) => Ok(f.history()),
        }
    }

    /// What `rollbackd check --online` says of the target: each probe's
    /// subject and its finding.
    pub async fn probe(&self) -> Vec<(String, Result<String, String>)> {
        match self {
            Adapter::Command(c) => c.probe(),
            Adapter::Kubernetes(k) => k.probe().await,
            #[cfg(test)]
            Adapter::Fake(_) => Vec::new(),
        }
    }
}

/// How revisions reach a watch's driver.
pub enum Observer {
    /// A command target's `current`, run before each evaluation.
    Command(Arc<tokio::sync::Mutex<command::Poller>>),
    /// A Kubernetes target's watch, in a task of its own: each new revision
    /// arrives on `revisions`; `feed` is the snapshot the rollout check
    /// reads.
    Kubernetes {
        feed: kubernetes::observe::Feed,
        revisions: mpsc::Receiver<Revision>,
    },
    #[cfg(test)]
    Fake(mpsc::Receiver<Revision>),
}

impl Observer {
    /// The next revision a background watch reported; never, for a target
    /// that is polled. `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<Revision> {
        match self {
            Observer::Command(_) => std::future::pending().await,
            Observer::Kubernetes { revisions, .. } => revisions.recv().await,
            #[cfg(test)]
            Observer::Fake(rx) => rx.recv().await,
        }
    }

    /// What an evaluation needs of the target, read once at its start.
    pub fn before_evaluation(&self) -> Polling {
        match self {
            Observer::Command(p) => Polling::Poll(p.clone()),
            Observer::Kubernetes { feed, .. } => {
                Polling::Snapshot(feed.borrow().clone().map(Box::new))
            }
            #[cfg(test)]
            Observer::Fake(_) => Polling::Nothing,
        }
    }
}

/// The target's side of one evaluation.
pub enum Polling {
    /// Run `current` first: a new version is a new revision.
    Poll(Arc<tokio::sync::Mutex<command::Poller>>),
    /// The Kubernetes snapshot as the evaluation began.
    Snapshot(Option<Box<kubernetes::observe::Snapshot>>),
    #[cfg(test)]
    Nothing,
}

/// What polling found: a new revision, and the one the target says it runs.
pub struct Polled {
    pub new: Option<Revision>,
    pub believed: Option<String>,
}

impl Polling {
    /// Polls the target where it is polled.
    pub async fn poll(&self) -> Polled {
        match self {
            Polling::Poll(p) => {
                let mut p = p.lock().await;
                let new = p.poll().await;
                Polled {
                    new,
                    believed: p.last_version(),
                }
            }
            Polling::Snapshot(s) => Polled {
                new: None,
                believed: s
                    .as_ref()
                    .and_then(|s| s.current.as_ref())
                    .map(|c| c.revision.id.clone()),
            },
            #[cfg(test)]
            Polling::Nothing => Polled {
                new: None,
                believed: None,
            },
        }
    }

    /// The target's own checks (the built-in rollout check), at `at`.
    pub fn own_checks(&self, watch: &Watch, at: Millis) -> Vec<CheckResult> {
        match self {
            Polling::Snapshot(s) if watch.settings.rollout_check => {
                vec![kubernetes::observe::rollout_check(
                    s.as_deref(),
                    at,
                    watch.settings.rollout_timeout,
                )]
            }
            _ => Vec::new(),
        }
    }
}
