//! A Kubernetes API simulator owned by the project: enough of an API server
//! and of the controllers behind it for rollbackd's tests and its demo,
//! proven against the real `kubectl` and kube-rs clients by the workspace's
//! `tests/it/kubectl.rs` and `tests/it/simulator.rs`. It runs on loopback,
//! in-process.
//!
//! # Layout
//! - [`resources`]: the served resources (group, kind, short names, verbs)
//!   and the discovery documents; it uses nothing else of the crate.
//! - [`error`]: the API errors, rendered as `Status` objects.
//! - [`selector`]: label and field selectors.
//! - [`cluster`]: the store and the API verbs (get, list, watch, create,
//!   update, patch, delete, dry-run, conflicts), server defaults and
//!   validation, the bounded event history watches resume from, and the
//!   helpers tests and the demo drive it with.
//! - [`controller`]: the Deployment, ReplicaSet, StatefulSet and DaemonSet
//!   controllers, the kubelet (pod readiness by image), events, and the
//!   application side's traffic.
//! - [`api`]: the HTTP surface; [`table`]: server-side printing for
//!   `kubectl get`; [`patch`]: JSON, merge and strategic merge patches.
//!
//! Dependencies between the modules go one way, in that order: `resources`,
//! then `error`, `selector`, `patch`, then `cluster`, `controller`, `table`,
//! and `api` on top.
//!
//! # Timing
//! The controllers run on a tick (every 50 ms under [`Simulator`], or
//! whenever a test calls [`Cluster::tick`]), not inside API calls: right
//! after a spec change `metadata.generation` is ahead of
//! `status.observedGeneration` and the new ReplicaSet or ControllerRevision
//! does not exist yet, as on a cluster. A pod is ready
//! [`cluster::READY_AFTER`] after it is created; an image whose name
//! contains "bad" crash-loops and is never ready; one containing "degraded"
//! is ready but fails 40% of its requests on the application side.
//!
//! # Known deviations from a real API server
//! - No authentication, authorization or admission webhooks: every request
//!   is allowed, and recorded once per distinct (verb, group, resource,
//!   namespace) in [`Cluster::audit`], for tests of RBAC rules. No OpenAPI documents (`kubectl create -f`/`apply` need
//!   `--validate=false`; `kubectl explain` does not work), no server-side
//!   apply (`application/apply-patch+yaml` is a 415), JSON only (no
//!   protobuf; kubectl falls back to JSON).
//! - Every namespace exists and is Active; namespaces cannot be created or
//!   deleted. Deletion is immediate (no finalizers, no grace period) and
//!   removes dependents at once, as background garbage collection would.
//! - Validation is a subset (names, selectors matching template labels,
//!   immutable selectors, containers with name and image, field types by
//!   the `k8s-openapi` types). Unknown fields are kept, not pruned.
//!   Defaulting covers the workload strategies and the pod-template fields
//!   `kubectl get -o yaml` shows; stored templates are canonicalized like
//!   Go's encoder for the common fields (no `null`s, empty lists, empty
//!   strings or empty label maps; `creationTimestamp: null`), which is what
//!   makes ControllerRevision `data` byte-equal to kubectl's own encoding.
//! - Strategic merge knows the merge keys of the common lists (containers,
//!   env, ports, volumes, volumeMounts, ...) and the `$patch` and
//!   `$setElementOrder` directives; `$retainKeys` and
//!   `$deleteFromPrimitiveList` are ignored; other lists are replaced.
//! - Lists ignore `limit`/`continue` (one page) and `resourceVersionMatch`.
//!   Watches resume from a history of the last
//!   [`cluster::HISTORY_LIMIT`] changes (all kinds together) and answer
//!   410 Expired beyond it; a label-filtered watch does not send DELETED
//!   when an object stops matching; bookmarks come every second (a server
//!   sends them about once a minute); watches always carry full objects,
//!   never `Table`s (`kubectl get -w` prints them as it can).
//! - Deployments roll out coarsely: the new ReplicaSet is scaled straight
//!   to the desired count (maxSurge/maxUnavailable are not honoured pod by
//!   pod), unready old ReplicaSets are scaled down at once and the others
//!   once every new pod is ready; the progress deadline counts from the
//!   rollout's start, not its last progress; conditions carry no times;
//!   `minReadySeconds` and proportional scaling of paused Deployments are
//!   not modelled.
//! - StatefulSets have no volume claims or governing Service; a pod is
//!   replaced in one step (deleted and recreated in the same tick);
//!   `maxUnavailable` is ignored. As on a cluster with OrderedReady, a
//!   rollout stuck on a crash-looping pod stays stuck after a rollback
//!   until that pod is deleted (the "forced rollback" caveat).
//! - DaemonSets run on three fixed nodes (`node-1`..`node-3`) with no
//!   selectors or taints; `maxSurge` is ignored. Their revision hash is an
//!   FNV hash of the template, not Go's object hash, so names differ from a
//!   real cluster's (StatefulSet revision names are computed exactly).
//! - Pods run nothing: no logs, exec or port-forward; `imageID` is empty;
//!   a crash-looping pod restarts every [`cluster::READY_AFTER`], not with
//!   exponential back-off. Generated name suffixes are deterministic.
//! - Events are core/v1 only (no `events.k8s.io`), repeated ones are
//!   counted in one Event, and they never expire.
//! - The `status` subresource accepts writes, but the controllers rewrite
//!   status on their next tick.

pub mod api;
pub mod cluster;
pub mod controller;
pub mod error;
pub mod patch;
pub mod resources;
pub mod selector;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use cluster::Cluster;

/// A running simulator: its address and its cluster.
pub struct Simulator {
    pub addr: SocketAddr,
    pub cluster: Arc<Cluster>,
    stop: tokio_util::sync::CancellationToken,
}

impl Simulator {
    /// Serves a new, empty cluster on `127.0.0.1:0`, with its controller
    /// moving rollouts along every 50 ms.
    pub async fn start() -> std::io::Result<Simulator> {
        let cluster = Arc::new(Cluster::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = tokio_util::sync::CancellationToken::new();
        let app = api::router(cluster.clone());
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
        });
        let (c, s) = (cluster.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    _ = s.cancelled() => return,
                    _ = tick.tick() => c.tick(),
                }
            }
        });
        Ok(Simulator {
            addr,
            cluster,
            stop,
        })
    }

    /// A kubeconfig that points at this simulator.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: http://{}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\nusers:\n- name: sim\n  user:\n    token: simulator\n",
            self.addr
        )
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
