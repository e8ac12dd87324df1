//! The long-running daemon: the supervisor that owns the live configuration
//! and the clock, and the machinery around it (reloads from file events and
//! SIGHUP through one path, signals, the HTTP endpoint, systemd notification).

mod http;
mod metrics;
pub mod signals;
pub mod status;
mod systemd;
mod watcher;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{self, Config, Redactor};
use crate::store::{StateDir, StoreError};
use crate::telemetry::Telemetry;
pub use metrics::Metrics;
use status::ReloadRecord;

/// Messages to the supervisor. SIGHUP and file events both send `Reload`,
/// so there is one reload path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Reload { cause: &'static str },
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    State(#[from] StoreError),
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
pub struct Shared {
    config: watch::Receiver<Arc<Config>>,
    loaded_at: RwLock<SystemTime>,
    last_reload: RwLock<Option<ReloadRecord>>,
    metrics: Metrics,
    ready: AtomicBool,
    started: Instant,
    heartbeat_ms: AtomicU64,
    redactor: Redactor,
}

impl Shared {
    fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(ms, Ordering::Release);
    }

    fn heartbeat_age(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.heartbeat_ms.load(Ordering::Acquire)))
    }

    fn status(&self) -> status::Status {
        let config = self.config.borrow().clone();
        let loaded_at = self
            .loaded_at
            .read()
            .map(|t| *t)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let last = self.last_reload.read().ok().and_then(|r| r.clone());
        status::build(&config, loaded_at, last)
    }
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs the daemon until SIGTERM or SIGINT. The configuration has been
/// loaded and the logger installed by the caller.
pub async fn run(
    config: Config,
    telemetry: Telemetry,
    redactor: Redactor,
) -> Result<(), DaemonError> {
    let state = StateDir::open(&config.daemon.state_dir)?;
    let addr = config.daemon.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| DaemonError::Bind { addr, error })?;
    let local = listener
        .local_addr()
        .map_err(|error| DaemonError::Bind { addr, error })?;

    let shutdown = CancellationToken::new();
    let (control_tx, control_rx) = mpsc::channel(8);
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

    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let now = SystemTime::now();
    let shared = Arc::new(Shared {
        config: config_rx,
        loaded_at: RwLock::new(now),
        last_reload: RwLock::new(None),
        metrics: Metrics::new(),
        ready: AtomicBool::new(false),
        started: Instant::now(),
        heartbeat_ms: AtomicU64::new(0),
        redactor,
    });
    let mut sup = Supervisor {
        shared: shared.clone(),
        config: config_tx,
        telemetry,
        watcher,
    };
    sup.publish_counts();
    shared
        .metrics
        .config_last_reload_success
        .set(epoch_secs(now));
    shared.metrics.config_last_reload_successful.set(1);

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
    systemd::ready(&sup.status_line());

    sup.run(control_rx, shutdown.clone()).await;

    systemd::stopping();
    let grace = sup.config.borrow().daemon.shutdown_timeout;
    match tokio::time::timeout(grace, http).await {
        Ok(Ok(Err(e))) => return Err(DaemonError::Http(e)),
        Ok(_) => {}
        Err(_) => {
            warn!(timeout = %humantime::format_duration(grace), "HTTP connections still open at the shutdown timeout; closing them")
        }
    }
    drop(state);
    info!("rollbackd stopped");
    Ok(())
}

struct Supervisor {
    shared: Arc<Shared>,
    config: watch::Sender<Arc<Config>>,
    telemetry: Telemetry,
    watcher: Option<watcher::ConfigWatcher>,
}

impl Supervisor {
    async fn run(&mut self, mut control: mpsc::Receiver<Control>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let watchdog = systemd::watchdog_interval();
        let mut pet = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        loop {
            self.shared.beat();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(msg) = control.recv() => match msg {
                    Control::Reload { cause } => self.reload(cause).await,
                },
                _ = tick.tick() => {}
                _ = pet.tick(), if watchdog.is_some() => systemd::watchdog(),
            }
        }
    }

    fn status_line(&self) -> String {
        let n = self.config.borrow().watches.len();
        let rejected = self.shared.last_reload.read().ok().and_then(|r| {
            r.as_ref()
                .filter(|r| r.result == "failure")
                .map(|r| r.errors.len())
        });
        match rejected {
            Some(e) => format!("watching {n} watches; last reload rejected with {e} errors"),
            None => format!("watching {n} watches"),
        }
    }

    fn publish_counts(&self) {
        let cfg = self.config.borrow();
        let m = &self.shared.metrics;
        m.watches.set(cfg.watches.len() as i64);
        let count =
            |f: fn(&config::Watch) -> usize| cfg.watches.iter().map(f).sum::<usize>() as i64;
        m.checks
            .get_or_create(&metrics::KindLabel { kind: "health" })
            .set(count(|w| w.health.len()));
        m.checks
            .get_or_create(&metrics::KindLabel { kind: "prometheus" })
            .set(count(|w| w.prometheus.len()));
        m.checks
            .get_or_create(&metrics::KindLabel { kind: "alert" })
            .set(count(|w| w.alerts.len()));
    }

    fn record(&self, cause: &'static str, errors: Vec<String>) {
        let result = if errors.is_empty() {
            "success"
        } else {
            "failure"
        };
        let record = ReloadRecord {
            at: status::rfc3339(SystemTime::now()),
            cause,
            result,
            errors,
        };
        if let Ok(mut r) = self.shared.last_reload.write() {
            *r = Some(record);
        }
        let m = &self.shared.metrics;
        m.config_reloads
            .get_or_create(&metrics::ResultLabel { result })
            .inc();
        m.config_last_reload_successful
            .set(i64::from(result == "success"));
    }

    /// The one reload path: read everything, validate it whole, and either
    /// swap it in or keep the last good configuration.
    async fn reload(&mut self, cause: &'static str) {
        systemd::reloading();
        if let Some(w) = &mut self.watcher {
            w.refresh();
        }
        let old = self.config.borrow().clone();
        let path = old.main_file.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path)).await;
        let new = match loaded {
            Ok(Ok(new)) => new,
            Ok(Err(errors)) => {
                let lines: Vec<String> = errors.errors.iter().map(|d| d.to_string()).collect();
                self.reject(cause, lines);
                return;
            }
            Err(join) => {
                self.reject(cause, vec![format!("configuration loader failed: {join}")]);
                return;
            }
        };
        let refused = config::restart_required(&old, &new);
        if !refused.is_empty() {
            self.reject(cause, refused);
            return;
        }
        self.shared.redactor.add(&new.secrets);
        for w in &new.warnings {
            warn!(warning = %w, "configuration warning");
        }
        let d = config::diff(&old, &new);
        let logging = match self
            .telemetry
            .apply(new.daemon.log_format, &new.daemon.log_level)
        {
            Ok(changed) => changed,
            Err(e) => vec![format!("not applied: {e}")],
        };
        if let Some(w) = &mut self.watcher {
            w.update(&new);
        }
        if d.is_noop() && logging.is_empty() {
            tracing::debug!(
                cause,
                watches = new.watches.len(),
                "configuration reloaded, nothing changed"
            );
        } else {
            info!(
                cause,
                added = %d.added.join(","),
                removed = %d.removed.join(","),
                changed = %d.changed.join(","),
                kept = d.kept.len(),
                logging = %logging.join(","),
                "configuration reloaded"
            );
        }
        let now = SystemTime::now();
        self.config.send_replace(Arc::new(new));
        if let Ok(mut t) = self.shared.loaded_at.write() {
            *t = now;
        }
        self.shared
            .metrics
            .config_last_reload_success
            .set(epoch_secs(now));
        self.record(cause, Vec::new());
        self.publish_counts();
        systemd::ready(&self.status_line());
    }

    fn reject(&mut self, cause: &'static str, errors: Vec<String>) {
        for e in &errors {
            warn!(cause, error = %e, "configuration error");
        }
        warn!(
            cause,
            errors = errors.len(),
            "configuration rejected; the last good configuration keeps running"
        );
        self.record(cause, errors);
        systemd::ready(&self.status_line());
    }
}
