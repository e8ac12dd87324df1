//! The daemon's metrics, exposed in OpenMetrics text at `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
        for result in ["success", "failure"] {
            let _ = config_reloads.get_or_create(&ResultLabel { result });
        }
        Self {
            registry,
            config_reloads,
            config_last_reload_success,
            config_last_reload_successful,
            watches,
            checks,
        }
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
