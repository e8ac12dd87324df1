//! Observing a Kubernetes target through a watch, not by polling: every
//! change of the workload updates a [`Snapshot`] (its rollout status by
//! kubectl's rules and its current revision), and a new revision is
//! reported at once. The watch is re-established with backoff when the API
//! server drops it or fails; meanwhile the object is read directly, and
//! while it cannot be read either the snapshot says why it is stale.

use crate::clock::now_ms;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::workload::{HistoryEntry, Mark, Object, RolloutStatus};
use super::{Connector, Handle};
use crate::config::{KubernetesTarget, WorkloadKind};
use crate::engine::{CheckResult, Millis, Origin, Revision, Verdict};

/// What is known of a target now.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// When it was last confirmed.
    pub at: Millis,
    /// None while the workload is not known to exist.
    pub status: Option<RolloutStatus>,
    pub current: Option<Current>,
    /// The current revision's rollout completed once: later scaling,
    /// evictions or drains are no rollout of it.
    pub completed: bool,
    /// The controller has seen the latest spec.
    pub observed: bool,
    /// Why the snapshot may be stale or empty.
    pub problem: Option<String>,
}

/// The current revision with what reports show of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub revision: Revision,
    pub images: Vec<String>,
    pub change_cause: Option<String>,
    pub mark: Option<Mark>,
}

pub type Feed = watch::Receiver<Option<Snapshot>>;

/// The revision the engine is told of: one a rollback made (`ours`, known
/// by rollbackd's mark, or a reused entry whose template came back: a
/// rollback by anyone) never arms and dates from now, so that alerts from
/// the bad period are not held against it; a new one dates from its
/// creation, which decides after a restart whether it is armed.
pub fn revision_of(e: &HistoryEntry, now: Millis, ours: bool) -> Revision {
    if e.reused || ours {
        Revision {
            id: e.number.to_string(),
            since: now,
            origin: Origin::Rollback,
            definite: true,
        }
    } else {
        Revision {
            id: e.number.to_string(),
            since: e.created.unwrap_or(now).min(now),
            origin: Origin::Rollout,
            definite: true,
        }
    }
}

/// The built-in `rollout` check (the README's "How it decides"): it fails while the current
/// revision's rollout has passed its progress deadline, or has not
/// completed within `rollout_timeout` of its start.
pub fn rollout_check(
    snap: Option<&Snapshot>,
    now: Millis,
    rollout_timeout: Duration,
) -> CheckResult {
    let mut r = CheckResult {
        kind: "rollout".into(),
        name: "rollout".into(),
        result: Verdict::Pass,
        value: None,
        threshold: format!(
            "complete within {}",
            humantime::format_duration(rollout_timeout)
        ),
        labels: Default::default(),
        detail: String::new(),
    };
    let Some(s) = snap else {
        r.result = Verdict::Inconclusive;
        r.detail = "the target has not been read yet".into();
        return r;
    };
    if let Some(p) = &s.problem {
        r.result = Verdict::Inconclusive;
        r.detail = p.clone();
        return r;
    }
    match &s.status {
        None => {
            r.result = Verdict::Inconclusive;
            r.detail = "the target does not exist".into();
        }
        Some(st) if s.completed => {
            r.detail = format!("rolled out; now: {}", st.message());
        }
        Some(_) if !s.observed => {
            r.result = Verdict::Inconclusive;
            r.detail = "the controller has not observed the latest spec yet".into();
        }
        Some(RolloutStatus::DeadlineExceeded(m)) => {
            r.result = Verdict::Fail;
            r.detail = m.clone();
        }
        Some(RolloutStatus::Waiting(m)) => {
            let since = s.current.as_ref().map(|c| c.revision.since);
            let age = since.map(|t| now.saturating_sub(t));
            r.value = age.map(|a| a as f64 / 1000.0);
            let limit = u64::try_from(rollout_timeout.as_millis()).unwrap_or(u64::MAX);
            if age.is_some_and(|a| a > limit) {
                r.result = Verdict::Fail;
                r.detail = format!(
                    "not rolled out {} after it began: {m}",
                    humantime::format_duration(rollout_timeout)
                );
            } else {
                r.detail = m.clone();
            }
        }
        Some(RolloutStatus::Complete(m) | RolloutStatus::Unsupported(m)) => r.detail = m.clone(),
    }
    r
}

/// Runs until `cancel`: keeps `feed` current and calls `on_revision` with
/// each new current revision.
pub async fn run<F, Fut>(
    connector: std::sync::Arc<Connector>,
    target: KubernetesTarget,
    feed: watch::Sender<Option<Snapshot>>,
    mut on_revision: F,
    cancel: CancellationToken,
) where
    F: FnMut(Revision) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut o = Observer {
        feed,
        last_key: None,
        history: Vec::new(),
        reported: None,
        completed: None,
        last_problem: None,
    };
    loop {
        let client = tokio::select! {
            _ = cancel.cancelled() => return,
            c = connector.client(target.context.as_deref()) => c,
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                o.problem(e.to_string());
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            }
        };
        let h = Handle {
            client: client.clone(),
            target: target.clone(),
            timeout: connector.request_timeout(),
        };
        let mut events = stream(&h);
        let mut seen = false;
        // A watch error leaves the last state unconfirmed. kube's watcher
        // resumes from the last resourceVersion and says nothing when the
        // object has not changed since, which for a stuck rollout may be
        // never: so the object is read directly, at once and then every
        // REREAD, until a read or an event confirms it.
        let mut reread: Option<tokio::time::Instant> = None;
        loop {
            let due = reread.unwrap_or_else(tokio::time::Instant::now);
            let got = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(due), if reread.is_some() => None,
                ev = events.next() => Some(ev),
            };
            let obj = match got {
                None => match h.get(h.timeout).await {
                    Ok(obj) => Some(obj),
                    Err(e) if e.code == Some(404) => {
                        o.gone(&h);
                        reread = None;
                        None
                    }
                    Err(e) => {
                        o.problem(format!("reading {}: {e}", h.describe()));
                        reread = Some(tokio::time::Instant::now() + REREAD);
                        None
                    }
                },
                Some(None) => break,
                Some(Some(Ok(watcher::Event::Init))) => {
                    seen = false;
                    None
                }
                Some(Some(Ok(watcher::Event::InitApply(obj) | watcher::Event::Apply(obj)))) => {
                    seen = true;
                    Some(obj)
                }
                Some(Some(Ok(watcher::Event::InitDone))) => {
                    if !seen {
                        o.gone(&h);
                    }
                    reread = None;
                    None
                }
                Some(Some(Ok(watcher::Event::Delete(_)))) => {
                    o.gone(&h);
                    reread = None;
                    None
                }
                Some(Some(Err(e))) => {
                    debug!(error = %e, "the watch failed; reading the object directly");
                    reread.get_or_insert_with(tokio::time::Instant::now);
                    None
                }
            };
            if let Some(obj) = obj {
                reread = None;
                if let Some(rev) = o.update(&h, obj).await
                    && !on_revision(rev).await
                {
                    return;
                }
            }
        }
    }
}

/// How often an unconfirmed target is read directly.
const REREAD: Duration = Duration::from_secs(1);

fn stream(
    h: &Handle,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<watcher::Event<Object>, watcher::Error>> + Send>> {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", h.target.name));
    let ns = &h.target.namespace;
    let c = h.client.clone();
    match h.target.kind {
        WorkloadKind::Deployment => watcher(Api::<Deployment>::namespaced(c, ns), cfg)
            .backoff(super::Backoff::watches())
            .map(|r| r.map(|e| e.map_into(Object::Deployment)))
            .boxed(),
        WorkloadKind::StatefulSet => watcher(Api::<StatefulSet>::namespaced(c, ns), cfg)
            .backoff(super::Backoff::watches())
            .map(|r| r.map(|e| e.map_into(Object::StatefulSet)))
            .boxed(),
        WorkloadKind::DaemonSet => watcher(Api::<DaemonSet>::namespaced(c, ns), cfg)
            .backoff(super::Backoff::watches())
            .map(|r| r.map(|e| e.map_into(Object::DaemonSet)))
            .boxed(),
    }
}

trait MapInto<K> {
    fn map_into(self, f: fn(K) -> Object) -> watcher::Event<Object>;
}

impl<K> MapInto<K> for watcher::Event<K> {
    fn map_into(self, f: fn(K) -> Object) -> watcher::Event<Object> {
        match self {
            watcher::Event::Apply(k) => watcher::Event::Apply(f(k)),
            watcher::Event::Delete(k) => watcher::Event::Delete(f(k)),
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitApply(k) => watcher::Event::InitApply(f(k)),
            watcher::Event::InitDone => watcher::Event::InitDone,
        }
    }
}

struct Observer {
    feed: watch::Sender<Option<Snapshot>>,
    /// What the history was last read for: it is re-read only when the
    /// revision may have changed, not on every status update.
    last_key: Option<String>,
    history: Vec<HistoryEntry>,
    reported: Option<String>,
    /// The revision whose rollout was last seen complete.
    completed: Option<String>,
    last_problem: Option<String>,
}

/// Changes whenever the revision may have: the spec, the controller's
/// view of it, or the revision it names.
fn history_key(obj: &Object) -> String {
    let m = obj.meta();
    let observed = obj.observed_generation();
    let named = match obj {
        Object::Deployment(d) => d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(super::workload::REVISION).cloned()),
        Object::StatefulSet(s) => s.status.as_ref().and_then(|s| s.update_revision.clone()),
        Object::DaemonSet(_) => None,
    };
    format!("{:?}/{:?}/{:?}/{:?}", m.uid, m.generation, observed, named)
}

impl Observer {
    fn problem(&mut self, p: String) {
        if self.last_problem.as_deref() != Some(p.as_str()) {
            warn!(problem = %p, "the target cannot be observed; its rollout check is inconclusive until it can");
            self.last_problem = Some(p.clone());
        }
        self.feed.send_modify(|s| match s {
            Some(s) => s.problem = Some(p),
            None => {
                *s = Some(Snapshot {
                    at: now_ms(),
                    status: None,
                    current: None,
                    completed: false,
                    observed: false,
                    problem: Some(p),
                })
            }
        });
    }

    fn gone(&mut self, h: &Handle) {
        self.problem(format!("{} does not exist", h.describe()));
    }

    /// Takes a new state of the workload; returns a new current revision.
    async fn update(&mut self, h: &Handle, obj: Object) -> Option<Revision> {
        let now = now_ms();
        let status = obj.rollout_status();
        let key = history_key(&obj);
        let mut problem = None;
        if obj.observed() && self.last_key.as_deref() != Some(key.as_str()) {
            match h.history(&obj, h.timeout).await {
                Ok(history) => {
                    self.history = history;
                    self.last_key = Some(key);
                }
                Err(e) => problem = Some(e.to_string()),
            }
        }
        let previous = self.feed.borrow().as_ref().and_then(|s| s.current.clone());
        let mark = Mark::of(&obj);
        let current = if obj.observed() {
            obj.current(&self.history).map(|e| Current {
                revision: match &previous {
                    // Keep the first sighting's date: a reused entry seen
                    // again is the same rollback, not a new one.
                    Some(p) if p.revision.id == e.number.to_string() => p.revision.clone(),
                    // The revision our own undo produced is known by its
                    // mark, whatever the timestamps say (they have
                    // one-second resolution).
                    _ => revision_of(
                        e,
                        now,
                        mark.as_ref().is_some_and(|m| m.to == e.number.to_string()),
                    ),
                },
                images: e.images(),
                change_cause: e.change_cause.clone(),
                mark: mark.clone(),
            })
        } else {
            previous
        };
        if problem.is_none() && self.last_problem.take().is_some() {
            info!("the target is observed again");
        }
        let new = current
            .as_ref()
            .filter(|c| self.reported.as_deref() != Some(c.revision.id.as_str()))
            .map(|c| c.revision.clone());
        let id = current.as_ref().map(|c| c.revision.id.clone());
        if obj.observed() && matches!(status, RolloutStatus::Complete(_)) {
            self.completed.clone_from(&id);
        }
        let completed = id.is_some() && self.completed == id;
        if let Some(r) = &new {
            debug!(revision = %r.id, origin = ?r.origin, "current revision");
            self.reported = Some(r.id.clone());
        }
        self.feed.send_replace(Some(Snapshot {
            at: now,
            observed: obj.observed(),
            status: Some(status),
            current,
            completed,
            problem,
        }));
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(status: RolloutStatus, since: Millis) -> Snapshot {
        Snapshot {
            at: since,
            status: Some(status),
            current: Some(Current {
                revision: Revision {
                    id: "4".into(),
                    since,
                    origin: Origin::Rollout,
                    definite: true,
                },
                images: vec!["web:v4".into()],
                change_cause: None,
                mark: None,
            }),
            completed: false,
            observed: true,
            problem: None,
        }
    }

    #[test]
    fn the_rollout_check_fails_on_a_passed_deadline_or_on_rollout_timeout() {
        let t = Duration::from_secs(600);
        let waiting = RolloutStatus::Waiting("Waiting for 2 pods to be ready...".into());
        let r = rollout_check(Some(&snap(waiting.clone(), 0)), 599_000, t);
        assert_eq!(r.result, Verdict::Pass, "still within its time: {r:?}");
        let r = rollout_check(Some(&snap(waiting, 0)), 601_000, t);
        assert_eq!(r.result, Verdict::Fail);
        assert_eq!(
            r.detail,
            "not rolled out 10m after it began: Waiting for 2 pods to be ready..."
        );
        assert_eq!(r.value, Some(601.0));
        let exceeded = RolloutStatus::DeadlineExceeded(
            "deployment \"web\" exceeded its progress deadline".into(),
        );
        let r = rollout_check(Some(&snap(exceeded, 0)), 1_000, t);
        assert_eq!((r.result, r.kind.as_str()), (Verdict::Fail, "rollout"));
        let done = RolloutStatus::Complete("deployment \"web\" successfully rolled out".into());
        assert_eq!(
            rollout_check(Some(&snap(done, 0)), 10_000_000, t).result,
            Verdict::Pass
        );
    }

    #[test]
    fn a_completed_rollout_is_not_failed_by_later_scaling_or_a_spec_not_yet_observed() {
        let t = Duration::from_secs(60);
        let scaling = RolloutStatus::Waiting(
            "Waiting for deployment \"web\" rollout to finish: 3 of 5 updated replicas are available...".into(),
        );
        let mut s = snap(scaling, 0);
        s.completed = true;
        assert_eq!(rollout_check(Some(&s), 3_600_000, t).result, Verdict::Pass);
        let unseen =
            RolloutStatus::Waiting("Waiting for deployment spec update to be observed...".into());
        let mut s = snap(unseen, 0);
        s.observed = false;
        assert_eq!(
            rollout_check(Some(&s), 3_600_000, t).result,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn an_unobservable_target_makes_the_rollout_check_inconclusive() {
        let t = Duration::from_secs(600);
        assert_eq!(rollout_check(None, 0, t).result, Verdict::Inconclusive);
        let mut s = snap(RolloutStatus::DeadlineExceeded("x".into()), 0);
        s.problem = Some("watching deployment/shop/web: 503".into());
        let r = rollout_check(Some(&s), 0, t);
        assert_eq!(r.result, Verdict::Inconclusive);
        assert!(r.detail.contains("503"));
    }
}
