//! The daemon's metrics, exposed in OpenMetrics text at `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RollbackLabels {
    pub trigger: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub config_last_reload_success: Gauge<f64, AtomicU64>,
    pub config_last_reload_successful: Gauge,
    pub watches: Gauge,
    pub checks: Family<KindLabel, Gauge>,
    pub watches_by_state: Family<StateLabel, Gauge>,
    pub evaluations: Family<ResultLabel, Counter>,
    pub check_duration: Family<KindLabel, Histogram>,
    pub evaluation_lag: Histogram,
    pub check_config_errors: Family<KindLabel, Counter>,
    pub rollbacks: Family<RollbackLabels, Counter>,
    pub rollback_duration: Histogram,
    pub prometheus_queries: Counter,
    pub prometheus_queries_coalesced: Counter,
    pub alerts_firing: Gauge,
    pub leader: Gauge,
    /// The outbox's own counters (notifications by result, pending, delay).
    pub notify: crate::notify::outbox::Counters,
}

/// Buckets for durations from a millisecond to a minute.
fn fast_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rollbackd");
        registry.register(
            "build",
            "rollbackd build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let config_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result (success or failure)",
            config_reloads.clone(),
        );
        let config_last_reload_success = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "config_last_reload_success_timestamp",
            "When the configuration was last loaded successfully, in seconds since the epoch",
            Unit::Seconds,
            config_last_reload_success.clone(),
        );
        let config_last_reload_successful = Gauge::default();
        registry.register(
            "config_last_reload_successful",
            "1 if the last reload attempt succeeded, 0 if the last good configuration is still running after a rejected one",
            config_last_reload_successful.clone(),
        );
        let watches = Gauge::default();
        registry.register(
            "watches_configured",
            "Watches in the running configuration",
            watches.clone(),
        );
        let checks = Family::<KindLabel, Gauge>::default();
        registry.register(
            "checks_configured",
            "Checks in the running configuration, by kind",
            checks.clone(),
        );
        for kind in ["health", "prometheus", "alert"] {
            checks.get_or_create(&KindLabel { kind }).set(0);
        }
        let watches_by_state = Family::<StateLabel, Gauge>::default();
        registry.register("watches", "Watches by state", watches_by_state.clone());
        for state in crate::engine::State::ALL {
            watches_by_state
                .get_or_create(&StateLabel {
                    state: state.as_str(),
                })
                .set(0);
        }
        let evaluations = Family::<ResultLabel, Counter>::default();
        registry.register(
            "evaluations",
            "Evaluations by result (pass, fail, inconclusive)",
            evaluations.clone(),
        );
        for result in ["pass", "fail", "inconclusive"] {
            let _ = evaluations.get_or_create(&ResultLabel { result });
        }
        let check_duration =
            Family::<KindLabel, Histogram>::new_with_constructor(fast_buckets as fn() -> Histogram);
        registry.register_with_unit(
            "check_duration",
            "How long checks took, by kind",
            Unit::Seconds,
            check_duration.clone(),
        );
        let evaluation_lag = fast_buckets();
        registry.register_with_unit(
            "evaluation_lag",
            "How late evaluations started against their schedule",
            Unit::Seconds,
            evaluation_lag.clone(),
        );
        let check_config_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "check_config_errors",
            "Checks that could not run because their configuration is wrong (a Prometheus 400/422), by kind",
            check_config_errors.clone(),
        );
        let rollbacks = Family::<RollbackLabels, Counter>::default();
        registry.register(
            "rollbacks",
            "Finished rollbacks by trigger and outcome",
            rollbacks.clone(),
        );
        let rollback_duration = Histogram::new([
            1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
        ]);
        registry.register_with_unit(
            "rollback_duration",
            "From the rollback's start to its outcome",
            Unit::Seconds,
            rollback_duration.clone(),
        );
        let prometheus_queries = Counter::default();
        registry.register(
            "prometheus_queries",
            "Queries sent to Prometheus sources",
            prometheus_queries.clone(),
        );
        let prometheus_queries_coalesced = Counter::default();
        registry.register(
            "prometheus_queries_coalesced",
            "Queries answered by an identical query sent within the same interval",
            prometheus_queries_coalesced.clone(),
        );
        let alerts_firing = Gauge::default();
        registry.register(
            "alerts_firing",
            "Firing alerts received from Alertmanager",
            alerts_firing.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this daemon may act (the only one, or the Lease holder)",
            leader.clone(),
        );
        for result in ["success", "failure"] {
            let _ = config_reloads.get_or_create(&ResultLabel { result });
        }
        let notify = crate::notify::outbox::Counters::default();
        registry.register(
            "notifications",
            "Notification delivery attempts by notifier kind and result (sent, retried, expired, corrupt)",
            notify.notifications.clone(),
        );
        registry.register(
            "outbox_pending",
            "Notifications in the outbox waiting to be delivered",
            notify.pending.clone(),
        );
        registry.register_with_unit(
            "notification_delay",
            "From an event to the delivery of its notification",
            Unit::Seconds,
            notify.delay.clone(),
        );
        Self {
            registry,
            config_reloads,
            config_last_reload_success,
            config_last_reload_successful,
            watches,
            checks,
            watches_by_state,
            evaluations,
            check_duration,
            evaluation_lag,
            check_config_errors,
            rollbacks,
            rollback_duration,
            prometheus_queries,
            prometheus_queries_coalesced,
            alerts_firing,
            leader,
            notify,
        }
    }

    pub fn observe_check(&self, kind: &'static str, took: std::time::Duration) {
        self.check_duration
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
