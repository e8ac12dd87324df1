//! One evaluation of one watch: all its checks at once, each under its own
//! timeout and a bound shared by every watch, combined into the
//! [`Evaluation`] the engine judges. The daemon, `verify` and `backtest`
//! all evaluate through [`evaluate`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::prometheus::{Baseline, Coalescer, Source};
use super::{Clients, alert, http, prometheus};
use crate::config::{Config, PrometheusCheck, Watch};
use crate::engine::{CheckResult, Evaluation, Millis, Origin, Revision, Verdict};
use crate::metrics::{KindLabel, Metrics};
use crate::rollback::kubernetes::Connector;

/// Checks running at once across all watches: enough for thousands of
/// watches on local servers, few enough not to overwhelm a Prometheus.
pub const MAX_CONCURRENT_CHECKS: usize = 256;

/// The clients a configuration needs to reach its checks and targets,
/// rebuilt on every reload.
pub struct Connections {
    pub config: Arc<Config>,
    /// HTTP clients, by CA file.
    pub clients: Clients,
    pub sources: HashMap<String, Source>,
    /// Kubernetes clients, made on first use.
    pub kube: Arc<Connector>,
}

impl Connections {
    pub fn build(config: Arc<Config>) -> Self {
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
            kube: Arc::new(Connector::new(&config.kubernetes)),
            config,
            clients,
            sources,
        }
    }
}

/// What every evaluation shares: one query per (source, query) per slot,
/// the alerts Alertmanager sent, the bound on checks at once, metrics.
pub struct Checking {
    pub coalescer: Coalescer,
    pub alerts: Arc<alert::AlertStore>,
    pub permits: Semaphore,
    pub metrics: Arc<Metrics>,
}

impl Checking {
    pub fn new(alerts: Arc<alert::AlertStore>, metrics: Arc<Metrics>) -> Self {
        Self {
            coalescer: Coalescer::default(),
            alerts,
            permits: Semaphore::new(MAX_CONCURRENT_CHECKS),
            metrics,
        }
    }
}

/// A relative check's baseline, by check name: the revision it was taken
/// for, and its samples.
pub type Baselines = BTreeMap<String, (String, Baseline)>;

/// What an evaluation is about.
pub struct Subject<'a> {
    /// The revision the engine holds current.
    pub revision: Option<&'a Revision>,
    /// The revision the target itself says it runs (freshest), if it says.
    pub believed: Option<String>,
    /// Baselines taken so far.
    pub baselines: &'a Baselines,
    /// The target's own checks, already judged (the rollout check).
    pub own: Vec<CheckResult>,
    /// When the evaluation began.
    pub at: Millis,
}

/// An evaluation, and the baselines it took (to be remembered).
pub struct Evaluated {
    pub evaluation: Evaluation,
    pub baselines: Vec<(String, String, Baseline)>,
}

type CheckFuture<'a> = Pin<Box<dyn Future<Output = CheckResult> + Send + 'a>>;

/// Runs every check of `watch` concurrently and combines them.
pub async fn evaluate(
    watch: &Watch,
    conn: &Connections,
    checking: &Checking,
    subject: Subject<'_>,
) -> Evaluated {
    let at = subject.at;
    let taken = std::sync::Mutex::new(Vec::new());
    let mut futures: Vec<CheckFuture<'_>> = Vec::new();
    for h in &watch.health {
        futures.push(Box::pin(async move {
            let _permit = checking.permits.acquire().await;
            let started = Instant::now();
            let r = match conn.clients.by_ca_file(h.ca_file.as_deref()) {
                Some(client) => http::run(&client, h).await,
                None => unusable(
                    &h.name,
                    "health",
                    "its HTTP client could not be built (see the log)",
                ),
            };
            checking.metrics.observe_check("health", started.elapsed());
            r
        }));
    }
    for p in &watch.prometheus {
        let taken = &taken;
        let subject = &subject;
        futures.push(Box::pin(async move {
            let (r, b) = prometheus_check(watch, p, conn, checking, subject).await;
            if let Some(b) = b
                && let Ok(mut t) = taken.lock()
            {
                t.push(b);
            }
            r
        }));
    }
    for a in &watch.alerts {
        let firing = checking.alerts.matching(&a.labels, at);
        let r = alert::judge(a, &firing, subject.revision.map(|r| r.since));
        futures.push(Box::pin(async move { r }));
    }
    let mut checks = futures_util::future::join_all(futures).await;
    checks.extend(subject.own);
    for c in &checks {
        if c.result == Verdict::Inconclusive {
            debug!(check = %c.name, detail = %c.detail, "check inconclusive");
        }
    }
    let mut evaluation = Evaluation::new(at, checks);
    // What the evaluation is about, read at its start: the engine drops it
    // if the revision changes before it is answered.
    evaluation.revision = subject
        .believed
        .or_else(|| subject.revision.map(|r| r.id.clone()));
    Evaluated {
        evaluation,
        baselines: taken.into_inner().unwrap_or_default(),
    }
}

async fn prometheus_check(
    watch: &Watch,
    check: &PrometheusCheck,
    conn: &Connections,
    checking: &Checking,
    subject: &Subject<'_>,
) -> (CheckResult, Option<(String, String, Baseline)>) {
    let Some(source) = conn.sources.get(&check.source) else {
        return (
            unusable(
                &check.name,
                "prometheus",
                "its Prometheus source is unusable (see the log)",
            ),
            None,
        );
    };
    let interval = watch.settings.interval;
    let started = Instant::now();
    let answer = checking
        .coalescer
        .query(
            source,
            &check.query,
            None,
            interval,
            interval,
            &checking.permits,
        )
        .await;
    checking
        .metrics
        .observe_check("prometheus", started.elapsed());
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            if e.is_config_problem() {
                checking
                    .metrics
                    .check_config_errors
                    .get_or_create(&KindLabel { kind: "prometheus" })
                    .inc();
                warn!(check = %check.name, error = %e, "the Prometheus query is invalid: fix the configuration; this check is inconclusive");
            }
            return (prometheus::judge_error(check, &e), None);
        }
    };
    let (baseline, taken) = if check.max_increase.is_some() || check.min_decrease.is_some() {
        baseline(check, source, interval, checking, subject).await
    } else {
        (None, None)
    };
    (prometheus::judge(check, &answer, baseline.as_ref()), taken)
}

/// The value of a relative check's query when the current revision's
/// rollout began (an instant query with `time=`), taken once per revision
/// and remembered; the second value is a baseline newly taken.
async fn baseline(
    check: &PrometheusCheck,
    source: &Source,
    timeout: Duration,
    checking: &Checking,
    subject: &Subject<'_>,
) -> (Option<Baseline>, Option<(String, String, Baseline)>) {
    let Some(rev) = subject.revision else {
        return (None, None);
    };
    // A revision first seen after a start has an unknown rollout time: its
    // first sighting may already be bad, so it is no baseline.
    if rev.origin == Origin::Unknown {
        return (None, None);
    }
    if let Some((for_rev, b)) = subject.baselines.get(&check.name)
        && (*for_rev == rev.id || rev.origin == Origin::Rollback)
    {
        // A restored revision is judged against the baseline of the rollout
        // it undid: its own "start" is in the middle of the bad.
        return (Some(b.clone()), None);
    }
    if rev.origin == Origin::Rollback {
        return (None, None);
    }
    let time = rev.since as f64 / 1000.0;
    let Ok(answer) = checking
        .coalescer
        .query(
            source,
            &check.query,
            Some(time),
            timeout,
            Duration::from_secs(3600),
            &checking.permits,
        )
        .await
    else {
        return (None, None);
    };
    let samples: Baseline = answer
        .result
        .samples()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.value.is_finite())
        .collect();
    if samples.is_empty() {
        return (None, None);
    }
    (
        Some(samples.clone()),
        Some((check.name.clone(), rev.id.clone(), samples)),
    )
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
