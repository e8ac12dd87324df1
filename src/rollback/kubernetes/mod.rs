//! The Kubernetes adapter: it connects (in-cluster, a kubeconfig, a
//! context), observes a Deployment, StatefulSet or DaemonSet through a watch,
//! re-reads it before acting, undoes its rollout as `kubectl rollout undo`
//! does and waits as `kubectl rollout status` does. It reports plain
//! outcomes; the engine decides. kubectl's rules themselves are the pure
//! functions of [`workload`].
//!
//! Every call has a timeout (kube's own read timeout is 295 s, long enough
//! for watches only). Transient failures (5xx, 429, timeouts, dropped
//! connections) are retried with backoff within a budget; permanent ones
//! (400, 403, 404, 409, 422) are answered at once, for the engine to decide.

pub mod act;
pub mod observe;
pub mod workload;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tracing::{debug, info};

use super::{AdapterError, Answer, Detail, HistoryRow};
use crate::config::{KubernetesSettings, KubernetesTarget, WorkloadKind};
use crate::engine::{Action, Input, Revision};
use workload::{HistoryEntry, Object};

/// A failed API call, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// The HTTP status, when the server answered.
    pub code: Option<u16>,
    pub message: String,
    /// Worth retrying: the server or the network may do better later.
    pub transient: bool,
}

impl std::error::Error for ApiFailure {}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(f, "{} (HTTP {c})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl ApiFailure {
    pub fn is_conflict(&self) -> bool {
        self.code == Some(409)
    }

    pub fn is_not_found(&self) -> bool {
        self.code == Some(404)
    }

    fn timeout(what: &str, after: Duration) -> Self {
        Self {
            code: None,
            message: format!(
                "{what}: no answer within {}",
                humantime::format_duration(after)
            ),
            transient: true,
        }
    }
}

/// Sorts kube's errors into transient and permanent.
pub fn classify(what: &str, e: &kube::Error) -> ApiFailure {
    match e {
        kube::Error::Api(s) => ApiFailure {
            code: Some(s.code),
            message: format!(
                "{what}: {}",
                if s.message.is_empty() {
                    &s.reason
                } else {
                    &s.message
                }
            ),
            transient: s.code == 429 || s.code >= 500,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            ApiFailure {
                code: None,
                message: format!("{what}: {}", crate::check::error_chain(e)),
                transient: true,
            }
        }
        other => ApiFailure {
            code: None,
            message: format!("{what}: {}", crate::check::error_chain(other)),
            transient: false,
        },
    }
}

/// Exponential backoff with jitter, so that many watches do not retry in
/// step. The ceiling is low on purpose: a target whose API calls fail is a
/// target rollbackd cannot protect, so seconds of blindness matter more here
/// than they do to client-go's reflectors (which wait up to 30 s, plus
/// jitter). rollbackd holds one field-selected watch per target, so the
/// load a retry puts on a struggling API server stays small.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    ceiling: Duration,
    next: Duration,
}

impl Backoff {
    /// For calls retried within a budget: 100 ms doubling to 2 s.
    pub fn calls() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(2))
    }

    /// For re-establishing a watch: 250 ms doubling to 5 s.
    pub fn watches() -> Backoff {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(5))
    }

    fn new(first: Duration, ceiling: Duration) -> Backoff {
        Backoff {
            first,
            ceiling,
            next: first,
        }
    }

    /// The delay before the next attempt, without its jitter.
    pub fn base(&self) -> Duration {
        self.next
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    /// The delay plus up to half again as jitter; never ends.
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (d * 2).min(self.ceiling);
        let jitter = fastrand::u64(0..=d.as_millis() as u64 / 2);
        Some(d + Duration::from_millis(jitter))
    }
}

impl kube::runtime::utils::Backoff for Backoff {
    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Calls `f` until it succeeds, fails permanently, or `budget` is spent;
/// each attempt is bounded by `timeout`.
pub async fn retry<T, F, Fut>(
    what: &str,
    timeout: Duration,
    budget: Duration,
    mut f: F,
) -> Result<T, ApiFailure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let mut backoff = Backoff::calls();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let failure = match tokio::time::timeout(timeout, f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => classify(what, &e),
            Err(_) => ApiFailure::timeout(what, timeout),
        };
        let now = tokio::time::Instant::now();
        if !failure.transient || now + backoff.base() >= deadline {
            return Err(failure);
        }
        debug!(attempt, error = %failure, "transient API failure; retrying");
        let delay = backoff.next().unwrap_or(backoff.base());
        tokio::time::sleep(delay).await;
    }
}

/// Clients per context, made on first use and kept: connecting reads
/// files and may run credential plugins.
pub struct Connector {
    settings: KubernetesSettings,
    clients: tokio::sync::Mutex<HashMap<Option<String>, kube::Client>>,
}

impl Connector {
    pub fn new(settings: &KubernetesSettings) -> Self {
        Self {
            settings: settings.clone(),
            clients: Default::default(),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        self.settings.request_timeout
    }

    /// A target with the client of its context: the one way adapters,
    /// observers and probes reach a workload.
    pub async fn handle(&self, target: &KubernetesTarget) -> Result<Handle, AdapterError> {
        Ok(Handle {
            client: self.client(target.context.as_deref()).await?,
            target: target.clone(),
            timeout: self.request_timeout(),
        })
    }

    /// The client for a target's `context` (or the configured one).
    pub async fn client(&self, context: Option<&str>) -> Result<kube::Client, AdapterError> {
        let key = context
            .map(str::to_owned)
            .or_else(|| self.settings.context.clone());
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = connect(&self.settings, key.as_deref())
            .await
            .map_err(AdapterError::Connect)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// In-cluster credentials first (a sidecar), then `$KUBECONFIG`, then
/// `~/.kube/config`; an explicit kubeconfig or context is used as given.
async fn connect(s: &KubernetesSettings, context: Option<&str>) -> Result<kube::Client, String> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    let mut config = if let Some(path) = &s.kubeconfig {
        let kc = Kubeconfig::read_from(path)
            .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
        kube::Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
    } else if context.is_some() {
        kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| format!("kubeconfig: {e}"))?
    } else {
        match kube::Config::incluster() {
            Ok(c) => c,
            Err(_) => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| format!("no in-cluster credentials, and no usable kubeconfig ($KUBECONFIG or ~/.kube/config): {e}"))?,
        }
    };
    // Retries are ours, bounded; kube's own would wait up to 1000 s.
    config.default_retry = false;
    config.connect_timeout = Some(s.request_timeout);
    config.write_timeout = Some(s.request_timeout);
    info!(server = %config.cluster_url, context = context.unwrap_or("(current)"), "connecting to Kubernetes");
    kube::Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))
}

/// A target with its client.
#[derive(Clone)]
pub struct Handle {
    pub client: kube::Client,
    pub target: KubernetesTarget,
    pub timeout: Duration,
}

fn selector_string(s: Option<&LabelSelector>) -> Option<String> {
    let s = s?;
    // With expressions the owner reference alone decides; match labels
    // only narrow the list.
    let labels = s.match_labels.as_ref()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

impl Handle {
    pub fn describe(&self) -> String {
        format!(
            "{}/{}/{}",
            self.target.kind.as_str(),
            self.target.namespace,
            self.target.name
        )
    }

    /// The workload alone.
    pub async fn get(&self, budget: Duration) -> Result<Object, ApiFailure> {
        let ns = &self.target.namespace;
        let name = &self.target.name;
        let what = format!("get {}", self.describe());
        let c = &self.client;
        Ok(match self.target.kind {
            WorkloadKind::Deployment => {
                let api: Api<Deployment> = Api::namespaced(c.clone(), ns);
                Object::Deployment(retry(&what, self.timeout, budget, || api.get(name)).await?)
            }
            WorkloadKind::StatefulSet => {
                let api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
                Object::StatefulSet(retry(&what, self.timeout, budget, || api.get(name)).await?)
            }
            WorkloadKind::DaemonSet => {
                let api: Api<DaemonSet> = Api::namespaced(c.clone(), ns);
                Object::DaemonSet(retry(&what, self.timeout, budget, || api.get(name)).await?)
            }
        })
    }

    /// The workload's history, as kubectl lists it.
    pub async fn history(
        &self,
        obj: &Object,
        budget: Duration,
    ) -> Result<Vec<HistoryEntry>, ApiFailure> {
        let ns = &self.target.namespace;
        let what = format!("list the history of {}", self.describe());
        match obj {
            Object::Deployment(d) => {
                // Untyped, so that an undo restores every field of the
                // template, including those this build does not know.
                let resource = ApiResource::erase::<ReplicaSet>(&());
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), ns, &resource);
                let lp = list_params(selector_string(d.spec.as_ref().map(|s| &s.selector)));
                let list = retry(&what, self.timeout, budget, || api.list(&lp)).await?;
                let raw: Vec<serde_json::Value> = list
                    .items
                    .iter()
                    .filter_map(|o| serde_json::to_value(o).ok())
                    .collect();
                Ok(workload::replicaset_history(d, &raw))
            }
            Object::StatefulSet(s) => {
                let lp = list_params(selector_string(s.spec.as_ref().map(|s| &s.selector)));
                self.revisions(&what, s.metadata.uid.as_deref(), &lp, budget)
                    .await
            }
            Object::DaemonSet(d) => {
                let lp = list_params(selector_string(d.spec.as_ref().map(|s| &s.selector)));
                self.revisions(&what, d.metadata.uid.as_deref(), &lp, budget)
                    .await
            }
        }
    }

    async fn revisions(
        &self,
        what: &str,
        uid: Option<&str>,
        lp: &ListParams,
        budget: Duration,
    ) -> Result<Vec<HistoryEntry>, ApiFailure> {
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), &self.target.namespace);
        let list = retry(what, self.timeout, budget, || api.list(lp)).await?;
        Ok(workload::controller_revision_history(uid, &list.items))
    }

    /// The workload and its history, read together.
    pub async fn read(&self, budget: Duration) -> Result<(Object, Vec<HistoryEntry>), ApiFailure> {
        let obj = self.get(budget).await?;
        let history = self.history(&obj, budget).await?;
        Ok((obj, history))
    }

    /// Sends an undo patch; `dry_run` asks the API server to validate it
    /// (RBAC, admission, the precondition) without storing it.
    pub async fn patch(
        &self,
        patch: &workload::UndoPatch,
        dry_run: bool,
        budget: Duration,
    ) -> Result<(), ApiFailure> {
        let ns = &self.target.namespace;
        let name = &self.target.name;
        let what = format!("patch {}", self.describe());
        let mut pp = PatchParams::default();
        if dry_run {
            pp = pp.dry_run();
        }
        macro_rules! send {
            ($t:ty, $body:expr) => {{
                let api: Api<$t> = Api::namespaced(self.client.clone(), ns);
                retry(&what, self.timeout, budget, || api.patch(name, &pp, $body))
                    .await
                    .map(|_| ())
            }};
        }
        match patch {
            workload::UndoPatch::Json(v) => {
                let p: json_patch::Patch =
                    serde_json::from_value(v.clone()).map_err(|e| ApiFailure {
                        code: None,
                        message: format!("{what}: {e}"),
                        transient: false,
                    })?;
                let body = Patch::Json::<()>(p);
                match self.target.kind {
                    WorkloadKind::Deployment => send!(Deployment, &body),
                    WorkloadKind::StatefulSet => send!(StatefulSet, &body),
                    WorkloadKind::DaemonSet => send!(DaemonSet, &body),
                }
            }
            workload::UndoPatch::Strategic(v) => {
                let body = Patch::Strategic(v);
                match self.target.kind {
                    WorkloadKind::Deployment => send!(Deployment, &body),
                    WorkloadKind::StatefulSet => send!(StatefulSet, &body),
                    WorkloadKind::DaemonSet => send!(DaemonSet, &body),
                }
            }
        }
    }
}

fn list_params(selector: Option<String>) -> ListParams {
    match selector {
        Some(s) if !s.is_empty() => ListParams::default().labels(&s),
        _ => ListParams::default(),
    }
}

/// A Deployment, StatefulSet or DaemonSet, as one watch drives it.
pub struct KubeAdapter {
    pub connector: Arc<Connector>,
    pub target: KubernetesTarget,
    pub rollout_timeout: Duration,
}

impl KubeAdapter {
    /// Starts the target's watch in a task of its own, until `cancel`: it
    /// keeps the snapshot the rollout check reads and sends each new
    /// revision.
    pub fn observe(
        &self,
        cancel: tokio_util::sync::CancellationToken,
    ) -> (observe::Feed, tokio::sync::mpsc::Receiver<Revision>) {
        let (feed_tx, feed) = tokio::sync::watch::channel(None);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let on_revision = move |rev: Revision| {
            let tx = tx.clone();
            async move { tx.send(rev).await.is_ok() }
        };
        tokio::spawn(tracing::Instrument::instrument(
            observe::run(
                self.connector.clone(),
                self.target.clone(),
                feed_tx,
                on_revision,
                cancel,
            ),
            tracing::Span::current(),
        ));
        (feed, rx)
    }

    pub async fn execute(&self, action: Action, progress: &crate::rollback::Progress) -> Answer {
        let h = match self.connector.handle(&self.target).await {
            Ok(h) => h,
            Err(e) => return Answer::failed(action, e.to_string()),
        };
        match action {
            Action::Recheck {
                rollback_id,
                from,
                avoid,
                to,
            } => Answer {
                input: Input::Rechecked {
                    rollback_id,
                    result: act::recheck(&h, &from, &avoid, to.as_deref()).await,
                },
                detail: None,
            },
            Action::Undo(order) => {
                let (result, detail) = act::undo(&h, &order).await;
                Answer {
                    input: Input::Acted {
                        rollback_id: order.rollback_id,
                        result,
                    },
                    detail: Some(Detail::Undo(detail)),
                }
            }
            Action::AwaitRollout {
                rollback_id,
                from,
                timeout,
            } => {
                let timeout =
                    timeout.map_or(self.rollout_timeout, std::time::Duration::from_millis);
                let result = act::wait(&h, &rollback_id, &from, timeout, progress).await;
                Answer {
                    input: Input::RolledOut {
                        rollback_id,
                        result,
                    },
                    detail: None,
                }
            }
        }
    }

    /// The revisions as `kubectl rollout history` lists them, oldest first.
    pub async fn history(&self) -> Result<Vec<HistoryRow>, AdapterError> {
        let h = self.connector.handle(&self.target).await?;
        let (obj, history) = h.read(h.timeout).await?;
        let current = obj.current(&history).map(|e| e.number);
        Ok(history
            .iter()
            .map(|e| HistoryRow {
                revision: e.number.to_string(),
                images: e.images(),
                change_cause: e.change_cause.clone(),
                created: e.created,
                current: Some(e.number) == current,
            })
            .collect())
    }

    /// Reads the target and its history as the daemon would, and proves
    /// with a patch that changes nothing, sent as a dry run, that an undo
    /// would be allowed (RBAC and admission).
    pub async fn probe(&self) -> Vec<(String, Result<String, String>)> {
        let what = format!(
            "target {}/{}/{}",
            self.target.kind.as_str(),
            self.target.namespace,
            self.target.name
        );
        vec![(what, self.probe_inner().await)]
    }

    async fn probe_inner(&self) -> Result<String, String> {
        let h = self
            .connector
            .handle(&self.target)
            .await
            .map_err(|e| e.to_string())?;
        let (obj, history) = h.read(h.timeout).await.map_err(|e| e.to_string())?;
        let noop = workload::UndoPatch::Strategic(serde_json::json!({}));
        h.patch(&noop, true, h.timeout)
            .await
            .map_err(|e| format!("readable, but an undo would fail: {e}"))?;
        let current = match obj.current(&history) {
            Some(e) => format!("at revision {} ({})", e.number, e.images().join(", ")),
            None => "no revision yet".to_owned(),
        };
        Ok(format!(
            "{current}, {} earlier revision{}; {}; may be patched (dry run)",
            history.len().saturating_sub(1),
            if history.len() == 2 { "" } else { "s" },
            obj.rollout_status().message()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff as _;

    #[test]
    fn watch_backoff_doubles_to_its_ceiling_with_bounded_jitter_and_resets() {
        let mut b = Backoff::watches();
        let bases = [250, 500, 1000, 2000, 4000, 5000, 5000];
        for base in bases {
            let d = b.next().unwrap().as_millis() as u64;
            assert!((base..=base + base / 2).contains(&d), "{d} for base {base}");
        }
        b.reset();
        assert_eq!(b.base(), Duration::from_millis(250));
    }

    #[test]
    fn call_backoff_stops_at_two_seconds() {
        let mut b = Backoff::calls();
        for _ in 0..10 {
            b.next();
        }
        assert_eq!(b.base(), Duration::from_secs(2));
    }
}
