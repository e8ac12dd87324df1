//! A Kubernetes API simulator owned by the project: enough of the API
//! server and the Deployment controller for rollbackd's tests and its demo,
//! proven against the real `kubectl` (`tests/kubectl.rs`). It runs on
//! loopback, in-process.

pub mod api;
pub mod cluster;
pub mod controller;
pub mod patch;
pub mod resources;
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
