//! The long-running daemon: the supervisor that owns the live configuration
//! and one runner per watch (`supervisor`), and the machinery around them
//! (reloads from file events and SIGHUP through one path, leader election,
//! signals, the HTTP endpoint, systemd notification).

mod http;
mod leader;
pub mod signals;
mod supervisor;
mod systemd;
mod watcher;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::ReloadRecord;
use crate::check::alert::AlertStore;
use crate::check::{Checking, Connections};
use crate::config::{Config, Redactor};
use crate::metrics::Metrics;
use crate::runner::{Clock, Services};
use crate::store::journal::Journal;
use crate::store::memory::MemoryStore;
use crate::store::{StateDir, StoreError};
use crate::telemetry::Telemetry;
use supervisor::{Supervisor, WatchCommand};

/// Messages to the supervisor. SIGHUP and file events both send `Reload`,
/// so there is one reload path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Reload {
        cause: &'static str,
    },
    /// Leader election's verdict: only the Lease holder evaluates and acts.
    Leadership {
        leader: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    State(#[from] StoreError),
    #[error("cannot open the state directory's files: {0}")]
    StateFiles(std::io::Error),
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("the HTTP endpoint failed: {0}")]
    Http(std::io::Error),
}

/// What the supervisor shares with the HTTP endpoint.
pub struct DaemonState {
    config: watch::Receiver<Arc<Config>>,
    loaded_at: RwLock<SystemTime>,
    last_reload: RwLock<Option<ReloadRecord>>,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
    started: Instant,
    heartbeat_ms: AtomicU64,
    redactor: Redactor,
    services: Arc<Services>,
    alerts: Arc<AlertStore>,
    commands: mpsc::Sender<WatchCommand>,
    /// Holds the Lease (always, without leader election).
    leader: AtomicBool,
    /// The Lease and this daemon's identity, with leader election.
    election: Option<(String, String)>,
}

impl DaemonState {
    fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(ms, Ordering::Release);
    }

    fn heartbeat_age(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.heartbeat_ms.load(Ordering::Acquire)))
    }

    fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    fn status(&self) -> crate::api::Status {
        let config = self.config.borrow().clone();
        let loaded_at = self
            .loaded_at
            .read()
            .map(|t| *t)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let last = self.last_reload.read().ok().and_then(|r| r.clone());
        let live = self
            .services
            .board
            .read()
            .map(|l| l.clone())
            .unwrap_or_default();
        crate::api::build(&config, loaded_at, last, &live, self.is_leader())
    }
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Binds the daemon's HTTP endpoint (`daemon.listen`).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| DaemonError::Bind { addr, error })
}

/// Where the daemon's logs go and what they never show.
pub struct Logging {
    pub telemetry: Telemetry,
    pub redactor: Redactor,
}

/// Runs the daemon until SIGTERM, SIGINT or `shutdown`, serving HTTP on
/// `listener` (bound by the caller: the command line binds
/// `daemon.listen`, tests and the demo a port of their choosing). The
/// configuration has been loaded and the logger installed by the caller.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    logging: Logging,
) -> Result<(), DaemonError> {
    let Logging {
        telemetry,
        redactor,
    } = logging;
    let state = StateDir::open(&config.daemon.state_dir)?;
    let journal = Journal::open(state.path()).map_err(DaemonError::StateFiles)?;
    let memory = MemoryStore::open(state.path()).map_err(DaemonError::StateFiles)?;
    let outbox = crate::notify::Outbox::open(state.path()).map_err(DaemonError::StateFiles)?;
    let (alerts, damaged) = AlertStore::open(state.path());
    if let Some(w) = damaged {
        warn!(problem = %w, "firing alerts forgotten");
    }
    let alerts = Arc::new(alerts);
    let local = listener.local_addr().map_err(|error| DaemonError::Bind {
        addr: config.daemon.listen,
        error,
    })?;

    let (control_tx, mut control_rx) = mpsc::channel(8);
    let (commands_tx, mut commands_rx) = mpsc::channel(16);
    signals::spawn(control_tx.clone(), shutdown.clone()).map_err(DaemonError::Signals)?;
    // Without inotify (its instances are a per-user limit that busy nodes
    // exhaust) the daemon still works: SIGHUP reloads.
    let watcher = match watcher::ConfigWatcher::start(&config, control_tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(error = %e, "cannot watch the configuration files; reload with SIGHUP");
            None
        }
    };
    if watcher::changed_since(&config, config.loaded_at) {
        let _ = control_tx.try_send(Control::Reload {
            cause: "changed during start",
        });
    }

    let metrics = Arc::new(Metrics::new());
    let election = config.kubernetes.leader_election.clone();
    let identity = leader::identity();
    let config = Arc::new(config);
    let (connections_tx, connections_rx) =
        watch::channel(Arc::new(Connections::build(config.clone())));
    let services = Arc::new(Services {
        state_dir: state.path().to_path_buf(),
        journal: Mutex::new(journal),
        memory,
        outbox: outbox.clone(),
        checking: Checking::new(alerts.clone(), metrics.clone()),
        connections: connections_rx,
        redactor: redactor.clone(),
        host: supervisor::hostname(),
        board: RwLock::new(BTreeMap::new()),
        metrics: metrics.clone(),
        clock: Clock::Wall,
        events: tokio::sync::broadcast::channel(crate::runner::EVENTS_BACKLOG).0,
    });
    let (config_tx, config_rx) = watch::channel(config);
    let now = SystemTime::now();
    let shared = Arc::new(DaemonState {
        config: config_rx,
        loaded_at: RwLock::new(now),
        last_reload: RwLock::new(None),
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
        started: Instant::now(),
        heartbeat_ms: AtomicU64::new(0),
        redactor,
        services: services.clone(),
        alerts,
        commands: commands_tx,
        leader: AtomicBool::new(election.is_none()),
        election: election
            .as_ref()
            .map(|e| (format!("{}/{}", e.namespace, e.lease), identity.clone())),
    });
    metrics.config_last_reload_success.set(epoch_secs(now));
    metrics.config_last_reload_successful.set(1);
    metrics.leader.set(i64::from(election.is_none()));

    let mut sup = Supervisor::new(
        shared.clone(),
        config_tx,
        telemetry,
        watcher,
        services.clone(),
        connections_tx,
    );
    // The outbox worker outlives the supervisor's shutdown, so that what
    // the last actions notify still has its chance to go out.
    let notify_stop = CancellationToken::new();
    let notify_worker = tokio::spawn(
        crate::notify::Worker::new(
            outbox,
            shared.config.clone(),
            shared.redactor.clone(),
            metrics.notify.clone(),
        )
        .run(notify_stop.clone()),
    );
    sup.start().await;
    if let Some(settings) = election {
        info!(identity = %identity, lease = %settings.lease, namespace = %settings.namespace, "standing by until this replica holds the Lease");
        let elector = leader::Elector {
            connector: services.connections.borrow().kube.clone(),
            settings,
            identity,
            control: control_tx.clone(),
        };
        tokio::spawn(elector.run(shutdown.clone()));
    }

    let http = tokio::spawn(http::serve(listener, shared.clone(), shutdown.clone()));
    shared.ready.store(true, Ordering::Release);
    {
        let cfg = sup.config.borrow();
        info!(
            addr = %local,
            state_dir = %state.path().display(),
            watches = cfg.watches.len(),
            config = %cfg.main_file.display(),
            "rollbackd started"
        );
    }
    systemd::ready(&sup.ready_line());

    sup.run(&mut control_rx, &mut commands_rx, shutdown.clone())
        .await;

    systemd::stopping();
    let grace = sup.config.borrow().daemon.shutdown_timeout;
    sup.shutdown(grace).await;
    notify_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(3), notify_worker).await;
    match tokio::time::timeout(Duration::from_secs(2), http).await {
        Ok(Ok(Err(e))) => return Err(DaemonError::Http(e)),
        Ok(_) => {}
        Err(_) => warn!("HTTP connections still open at shutdown; closing them"),
    }
    drop(state);
    info!("rollbackd stopped");
    Ok(())
}
