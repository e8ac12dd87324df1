//! An in-memory target for the runner's tests: revisions are sent to it by
//! the test, actions are recorded and answered as the test scripted them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Answer, HistoryRow};
use crate::engine::{ActResult, Action, Input, Recheck, Revision, RolloutResult};

#[derive(Clone, Default)]
pub struct FakeAdapter {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    revisions: Option<mpsc::Sender<Revision>>,
    pending: VecDeque<Revision>,
    /// Every action ordered, in order.
    actions: Vec<Action>,
    /// How long each action takes.
    delay: Duration,
    /// How long the rollout takes, on top.
    rollout_delay: Duration,
    /// The rollout's answer; complete unless set.
    rollout: Option<RolloutResult>,
}

impl FakeAdapter {
    pub fn observe(&self) -> mpsc::Receiver<Revision> {
        let (tx, rx) = mpsc::channel(16);
        let mut inner = self.inner.lock().unwrap();
        for r in inner.pending.drain(..) {
            let _ = tx.try_send(r);
        }
        inner.revisions = Some(tx);
        rx
    }

    /// The target now runs `rev`.
    pub fn deploy(&self, rev: Revision) {
        let mut inner = self.inner.lock().unwrap();
        match &inner.revisions {
            Some(tx) => {
                let _ = tx.try_send(rev);
            }
            None => inner.pending.push_back(rev),
        }
    }

    pub fn set_delay(&self, d: Duration) {
        self.inner.lock().unwrap().delay = d;
    }

    pub fn set_rollout_delay(&self, d: Duration) {
        self.inner.lock().unwrap().rollout_delay = d;
    }

    pub fn actions(&self) -> Vec<Action> {
        self.inner.lock().unwrap().actions.clone()
    }

    pub async fn execute(&self, action: Action) -> Answer {
        let delay = {
            let mut inner = self.inner.lock().unwrap();
            inner.actions.push(action.clone());
            match action {
                Action::AwaitRollout { .. } => inner.delay + inner.rollout_delay,
                _ => inner.delay,
            }
        };
        tokio::time::sleep(delay).await;
        let rollout = self.inner.lock().unwrap().rollout.clone();
        let input = match action {
            Action::Recheck { rollback_id, .. } => Input::Rechecked {
                rollback_id,
                result: Recheck::Proceed,
            },
            Action::Undo(o) => Input::Acted {
                rollback_id: o.rollback_id,
                result: ActResult::Applied { to: None },
            },
            Action::AwaitRollout { rollback_id, .. } => Input::RolledOut {
                rollback_id,
                result: rollout.unwrap_or(RolloutResult::Complete(None)),
            },
        };
        Answer {
            input,
            detail: None,
        }
    }

    pub fn history(&self) -> Vec<HistoryRow> {
        Vec::new()
    }
}
