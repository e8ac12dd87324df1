//! The scheduler: one loop per watch that, every interval (shifted by a
//! stable per-watch phase so that watches do not fire in lockstep), reads a
//! command target's version, runs all checks concurrently under a global
//! bound with their own timeouts, and hands the evaluation to the
//! supervisor. It observes; the supervisor and the engine decide.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

use crate::check::prometheus::{Baseline, Coalescer, Source};
use crate::check::{Clients, alert, http, prometheus};
pub use crate::clock::now_ms;
use crate::config::{Config, PrometheusCheck, Target, Watch};
use crate::engine::{CheckResult, Evaluation, Millis, Origin, Revision, Verdict};
use crate::rollback::command;
use crate::rollback::kubernetes::{self, observe};

use super::metrics::Metrics;

/// What a watch loop reports to the supervisor.
#[derive(Debug)]
pub enum Observation {
    Revision(Revision),
    Evaluation(Evaluation),
    /// A baseline taken for a relative check, to be remembered.
    Baseline {
        check: String,
        revision: String,
        samples: Baseline,
    },
}

#[derive(Debug)]
pub struct Report {
    pub watch: String,
    /// The generation of the loop that sent it: reports of a stopped loop
    /// (its watch changed) are dropped.
    pub generation: u64,
    pub observation: Observation,
}

/// What checks need, rebuilt on every reload.
pub struct Probes {
    pub clients: Clients,
    pub sources: HashMap<String, Source>,
    /// Kubernetes clients, made on first use.
    pub kube: Arc<kubernetes::Connector>,
}

impl Probes {
    pub fn build(config: &Config) -> Self {
        let mut clients = Clients::default();
        let mut sources = HashMap::new();
        for (name, src) in &config.prometheus {
            match clients.get(src.ca_file.as_deref()) {
                Ok(http) => {
                    sources.insert(name.clone(), Source::new(name, src, http));
                }
                Err(e) => {
                    warn!(source = %name, error = %e, "Prometheus source unusable; its checks are inconclusive")
                }
            }
        }
        for w in &config.watches {
            for h in &w.health {
                if let Err(e) = clients.get(h.ca_file.as_deref()) {
                    warn!(watch = %w.name, check = %h.name, error = %e, "health check unusable; it is inconclusive");
                }
            }
        }
        Self {
            clients,
            sources,
            kube: Arc::new(kubernetes::Connector::new(&config.kubernetes)),
        }
    }
}

/// What every watch loop shares.
pub struct Shared {
    pub probes: watch::Receiver<Arc<Probes>>,
    pub coalescer: Coalescer,
    pub alerts: Arc<alert::AlertStore>,
    pub permits: Semaphore,
    pub metrics: Arc<Metrics>,
}

/// Checks running at once across all watches: enough for thousands of
/// watches on local servers, few enough not to overwhelm a Prometheus.
pub const MAX_CONCURRENT_CHECKS: usize = 256;

/// A stable offset within the interval, from the watch's name.
pub fn phase_offset(name: &str, interval: Duration) -> Duration {
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h % ms)
}

/// The handle of a running watch loop.
pub struct Running {
    pub generation: u64,
    pub cancel: CancellationToken,
    /// The revision and baselines the loop reads (set by the supervisor).
    pub revision: Arc<RwLock<Option<Revision>>>,
    pub baselines: Arc<RwLock<BTreeMap<String, (String, Baseline)>>>,
}

pub fn spawn(
    watch: Arc<Watch>,
    shared: Arc<Shared>,
    generation: u64,
    reports: mpsc::Sender<Report>,
    revision: Option<Revision>,
    baselines: BTreeMap<String, (String, Baseline)>,
    continuing: bool,
) -> Running {
    let revision_id = revision.as_ref().map(|r| r.id.clone());
    let running = Running {
        generation,
        cancel: CancellationToken::new(),
        revision: Arc::new(RwLock::new(revision)),
        baselines: Arc::new(RwLock::new(baselines)),
    };
    let task = Loop {
        watch: watch.clone(),
        shared,
        generation,
        reports,
        revision: running.revision.clone(),
        baselines: running.baselines.clone(),
        // A loop restarted for a changed definition continues from the
        // version it knew: a release shipped together with the watch edit
        // is a rollout, not a version of unknown age.
        last_version: if continuing { revision_id } else { None },
        last_poll: None,
        last_error: None,
        changes_in_a_row: 0,
        feed: None,
    };
    let cancel = running.cancel.clone();
    let span = tracing::info_span!("watch", watch = %watch.name, target = %watch.target);
    let mut task = task;
    if let Target::Kubernetes(k) = &watch.target {
        task.feed = Some(span.in_scope(|| spawn_observer(&task, k, cancel.clone())));
    }
    tokio::spawn(task.run(cancel).instrument(span));
    running
}

/// Starts the watch on a Kubernetes target: it keeps the snapshot the
/// rollout check reads, and reports each new revision at once.
fn spawn_observer(
    task: &Loop,
    target: &crate::config::KubernetesTarget,
    cancel: CancellationToken,
) -> observe::Feed {
    let (tx, rx) = watch::channel(None);
    let connector = task.shared.probes.borrow().kube.clone();
    let reports = task.reports.clone();
    let (name, generation) = (task.watch.name.clone(), task.generation);
    let on_revision = move |rev: Revision| {
        let reports = reports.clone();
        let watch = name.clone();
        async move {
            reports
                .send(Report {
                    watch,
                    generation,
                    observation: Observation::Revision(rev),
                })
                .await
                .is_ok()
        }
    };
    tokio::spawn(
        observe::run(connector, target.clone(), tx, on_revision, cancel)
            .instrument(tracing::Span::current()),
    );
    rx
}

struct Loop {
    watch: Arc<Watch>,
    shared: Arc<Shared>,
    generation: u64,
    reports: mpsc::Sender<Report>,
    revision: Arc<RwLock<Option<Revision>>>,
    baselines: Arc<RwLock<BTreeMap<String, (String, Baseline)>>>,
    last_version: Option<String>,
    /// When `current` last answered: a new version appeared after it.
    last_poll: Option<Millis>,
    last_error: Option<String>,
    /// Polls in a row that each saw a new version.
    changes_in_a_row: u32,
    /// A Kubernetes target's snapshot, kept current by its watch.
    feed: Option<observe::Feed>,
}

/// A `current` whose output changes this many polls in a row is not
/// printing a version (a timestamp, a request id): said once, loudly.
const UNSTABLE_AFTER: u32 = 5;

impl Loop {
    async fn report(&self, observation: Observation) -> bool {
        let r = Report {
            watch: self.watch.name.clone(),
            generation: self.generation,
            observation,
        };
        self.reports.send(r).await.is_ok()
    }

    async fn run(mut self, cancel: CancellationToken) {
        let interval = self.watch.settings.interval;
        let mut next = tokio::time::Instant::now() + phase_offset(&self.watch.name, interval);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            let lag = tokio::time::Instant::now().saturating_duration_since(next);
            self.shared
                .metrics
                .evaluation_lag
                .observe(lag.as_secs_f64());
            if !self.observe_version().await {
                return;
            }
            let evaluation = tokio::select! {
                _ = cancel.cancelled() => return,
                e = self.evaluate() => e,
            };
            if !self.report(Observation::Evaluation(evaluation)).await {
                return;
            }
            next += interval;
            let now = tokio::time::Instant::now();
            if next < now {
                // Far behind (a stalled machine): skip the missed slots
                // rather than evaluating in a burst.
                let behind = now - next;
                let missed = behind.as_nanos() / interval.as_nanos().max(1) + 1;
                next += interval * missed as u32;
            }
        }
    }

    /// Reads a command target's version; a change is a new revision.
    async fn observe_version(&mut self) -> bool {
        let Target::Command(c) = &self.watch.target else {
            return true;
        };
        let Some(argv) = &c.current else { return true };
        let env = command::Env {
            watch: &self.watch.name,
            reason: "",
            from_version: self.last_version.as_deref().unwrap_or(""),
        };
        let timeout = self.watch.settings.interval.min(c.timeout);
        let polled = now_ms();
        match command::current(argv, &env, timeout).await {
            Ok(version) => {
                self.last_error = None;
                let previous_poll = self.last_poll.replace(polled);
                if self.last_version.as_deref() == Some(version.as_str()) {
                    self.changes_in_a_row = 0;
                } else {
                    if self.last_version.is_some() {
                        self.changes_in_a_row += 1;
                    }
                    if self.changes_in_a_row == UNSTABLE_AFTER {
                        warn!(
                            polls = UNSTABLE_AFTER,
                            "`current` printed a different version on every poll; it must print the deployed version only (no timestamps), or every poll is a new rollout"
                        );
                    }
                    // The first version this loop sees has an unknown age:
                    // only the saved memory can say whether it is armed.
                    let origin = if self.last_version.is_none() {
                        Origin::Unknown
                    } else {
                        Origin::Rollout
                    };
                    self.last_version = Some(version.clone());
                    // The rollout began after the last poll that saw the old
                    // version: that is the baseline's moment, and the start
                    // of the arming window.
                    let since = previous_poll.unwrap_or(polled);
                    let rev = Revision {
                        id: version,
                        since,
                        origin,
                        definite: false,
                    };
                    return self.report(Observation::Revision(rev)).await;
                }
            }
            Err(e) => {
                if self.last_error.as_deref() != Some(e.as_str()) {
                    warn!(error = %e, "cannot read the deployed version");
                    self.last_error = Some(e);
                }
            }
        }
        true
    }

    async fn evaluate(&mut self) -> Evaluation {
        let probes = self.shared.probes.borrow().clone();
        let at = now_ms();
        // What the evaluation is about, read once at its start: the engine
        // drops it if the revision changes before it is answered.
        let snapshot = self.feed.as_ref().map(|f| f.borrow().clone());
        // The freshest word on it: the version this loop just read, or the
        // revision the target's watch reported (both reach the engine
        // before this evaluation does), else the engine's own.
        let observed = match &snapshot {
            Some(s) => s
                .as_ref()
                .and_then(|s| s.current.as_ref())
                .map(|c| c.revision.id.clone()),
            None => self.last_version.clone(),
        };
        let revision_at_start = observed.or_else(|| {
            self.revision
                .read()
                .ok()
                .and_then(|r| r.as_ref().map(|r| r.id.clone()))
        });
        let w = self.watch.clone();
        let mut futures: Vec<
            std::pin::Pin<Box<dyn std::future::Future<Output = CheckResult> + Send + '_>>,
        > = Vec::new();
        for h in &w.health {
            let probes = probes.clone();
            let shared = self.shared.clone();
            futures.push(Box::pin(async move {
                let _permit = shared.permits.acquire().await;
                let started = Instant::now();
                let r = match probes.clients.by_ca_file(h.ca_file.as_deref()) {
                    Some(client) => http::run(&client, h).await,
                    None => unusable(
                        &h.name,
                        "health",
                        "its HTTP client could not be built (see the log)",
                    ),
                };
                shared.metrics.observe_check("health", started.elapsed());
                r
            }));
        }
        for p in &w.prometheus {
            let probes = probes.clone();
            futures.push(Box::pin(self.prometheus_check(p, probes)));
        }
        for a in &w.alerts {
            let firing = self.shared.alerts.matching(&a.labels, at);
            let since = self
                .revision
                .read()
                .ok()
                .and_then(|r| r.as_ref().map(|r| r.since));
            let r = alert::judge(a, &firing, since);
            futures.push(Box::pin(async move { r }));
        }
        let mut checks = futures_util::future::join_all(futures).await;
        if let Some(snap) = snapshot
            && w.settings.rollout_check
        {
            checks.push(observe::rollout_check(
                snap.as_ref(),
                at,
                w.settings.rollout_timeout,
            ));
        }
        for c in &checks {
            if c.result == Verdict::Inconclusive {
                debug!(check = %c.name, detail = %c.detail, "check inconclusive");
            }
        }
        let mut e = Evaluation::new(at, checks);
        e.revision = revision_at_start;
        e
    }

    async fn prometheus_check(&self, check: &PrometheusCheck, probes: Arc<Probes>) -> CheckResult {
        let Some(source) = probes.sources.get(&check.source) else {
            return unusable(
                &check.name,
                "prometheus",
                "its Prometheus source is unusable (see the log)",
            );
        };
        let interval = self.watch.settings.interval;
        let started = Instant::now();
        let answer = self
            .shared
            .coalescer
            .query(
                source,
                &check.query,
                None,
                interval,
                interval,
                &self.shared.permits,
            )
            .await;
        self.shared
            .metrics
            .observe_check("prometheus", started.elapsed());
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                if e.is_config_problem() {
                    self.shared
                        .metrics
                        .check_config_errors
                        .get_or_create(&super::metrics::KindLabel { kind: "prometheus" })
                        .inc();
                    warn!(check = %check.name, error = %e, "the Prometheus query is invalid: fix the configuration; this check is inconclusive");
                }
                return prometheus::judge_error(check, &e);
            }
        };
        let baseline = if check.max_increase.is_some() || check.min_decrease.is_some() {
            self.baseline(check, source, interval).await
        } else {
            None
        };
        prometheus::judge(check, &answer, baseline.as_ref())
    }

    /// The value of a relative check's query when the current revision's
    /// rollout began (an instant query with `time=`), taken once per
    /// revision and remembered.
    async fn baseline(
        &self,
        check: &PrometheusCheck,
        source: &Source,
        timeout: Duration,
    ) -> Option<Baseline> {
        let rev = self.revision.read().ok()?.clone()?;
        // A revision first seen after a start has an unknown rollout time:
        // its first sighting may already be bad, so it is no baseline.
        if rev.origin == Origin::Unknown {
            return None;
        }
        if let Some((for_rev, b)) = self.baselines.read().ok()?.get(&check.name)
            && (*for_rev == rev.id || rev.origin == Origin::Rollback)
        {
            // A restored revision is judged against the baseline of the
            // rollout it undid: its own "start" is in the middle of the bad.
            return Some(b.clone());
        }
        if rev.origin == Origin::Rollback {
            return None;
        }
        let time = rev.since as f64 / 1000.0;
        let answer = self
            .shared
            .coalescer
            .query(
                source,
                &check.query,
                Some(time),
                timeout,
                Duration::from_secs(3600),
                &self.shared.permits,
            )
            .await
            .ok()?;
        let samples: Baseline = answer
            .result
            .samples()?
            .into_iter()
            .filter(|s| s.value.is_finite())
            .collect();
        if samples.is_empty() {
            return None;
        }
        if let Ok(mut b) = self.baselines.write() {
            b.insert(check.name.clone(), (rev.id.clone(), samples.clone()));
        }
        self.report(Observation::Baseline {
            check: check.name.clone(),
            revision: rev.id,
            samples: samples.clone(),
        })
        .await;
        Some(samples)
    }
}

fn unusable(name: &str, kind: &str, why: &str) -> CheckResult {
    CheckResult {
        kind: kind.into(),
        name: name.into(),
        result: Verdict::Inconclusive,
        value: None,
        threshold: String::new(),
        labels: Default::default(),
        detail: why.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_offsets_are_stable_spread_and_within_the_interval() {
        let i = Duration::from_secs(10);
        assert_eq!(phase_offset("shop-web", i), phase_offset("shop-web", i));
        let offsets: std::collections::BTreeSet<u128> = (0..100)
            .map(|n| phase_offset(&format!("w{n}"), i).as_millis() / 1000)
            .collect();
        assert!(
            offsets.len() >= 8,
            "100 watches spread over the 10 one-second slots: {offsets:?}"
        );
        assert!((0..1000).all(|n| phase_offset(&format!("w{n}"), i) < i));
    }
}
