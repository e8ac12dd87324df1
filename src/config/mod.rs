//! The configuration: the main file (`rollbackd.toml`) and the watch files it
//! names, read into validated, typed values.
//!
//! Reading is all-or-nothing: [`load`] returns either a whole [`Config`] or
//! every error found, each located as `FILE:LINE:COLUMN`. Secrets are held in
//! [`Secret`] and collected in [`Config::secrets`] for redaction. [`diff`]
//! compares two configurations purely; its [`ConfigDiff`] is what a reload
//! logs and applies, keeping the watches whose definition did not change.

mod diag;
mod diff;
mod load;
mod reader;
mod secret;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use diag::{ConfigErrors, Diagnostic, Location, Severity, SourceFile, did_you_mean};
pub use diff::{ConfigDiff, WatchChange, diff, diff_watches, restart_required};
pub use load::{DEFAULT_CONFIG_PATH, load, load_with_env, log_level_problem};
pub use reader::EnvLookup;
pub use secret::{REDACTED, Redactor, Secret, SecretSet};

/// A whole, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main file, as it was given (relative paths stay relative, so
    /// messages show what the operator typed).
    pub main_file: PathBuf,
    pub daemon: DaemonSettings,
    pub kubernetes: KubernetesSettings,
    pub prometheus: BTreeMap<String, PrometheusSource>,
    pub notifiers: BTreeMap<String, Notifier>,
    /// Sorted by name.
    pub watches: Vec<Watch>,
    /// Where each watch was defined, by watch name.
    pub origins: BTreeMap<String, Location>,
    /// Every file that was read: the main file first, then the watch files.
    pub files: Vec<PathBuf>,
    /// Problems that do not make the configuration invalid.
    pub warnings: Vec<Diagnostic>,
    /// Every secret value, for redaction.
    pub secrets: SecretSet,
    /// When reading began: files changed at or after it may not be in here.
    pub loaded_at: std::time::SystemTime,
}

impl Config {
    pub fn watch(&self, name: &str) -> Option<&Watch> {
        self.watches.iter().find(|w| w.name == name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    /// Watch files and directories, resolved against the main file's directory.
    pub watches: Vec<PathBuf>,
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    pub log_level: String,
    pub control_token: Option<Secret>,
    pub shutdown_timeout: Duration,
    pub notify_max_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesSettings {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub request_timeout: Duration,
    pub leader_election: Option<LeaderElection>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeaderElection {
    pub lease: String,
    pub namespace: String,
    pub lease_duration: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusSource {
    pub url: String,
    pub timeout: Duration,
    pub auth: HttpAuth,
    pub headers: BTreeMap<String, Secret>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HttpAuth {
    None,
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Notifier {
    Slack(SlackNotifier),
    Email(EmailNotifier),
    Webhook(WebhookNotifier),
}

impl Notifier {
    pub fn kind(&self) -> &'static str {
        match self {
            Notifier::Slack(_) => "slack",
            Notifier::Email(_) => "email",
            Notifier::Webhook(_) => "webhook",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlackNotifier {
    pub webhook_url: Secret,
    pub channel: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    Tls,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmailNotifier {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookNotifier {
    pub url: Secret,
    pub headers: BTreeMap<String, Secret>,
    pub hmac_secret: Option<Secret>,
    pub timeout: Duration,
}

/// One watched target with its checks; `[defaults]` are already applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub name: String,
    pub target: Target,
    pub settings: WatchSettings,
    pub health: Vec<HealthCheck>,
    pub prometheus: Vec<PrometheusCheck>,
    pub alerts: Vec<AlertCheck>,
}

impl Watch {
    pub fn check_count(&self) -> usize {
        self.health.len() + self.prometheus.len() + self.alerts.len()
    }
}

/// The keys that `[defaults]` may set and every watch may override.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSettings {
    pub interval: Duration,
    pub failure_threshold: u32,
    pub arm: Arm,
    pub arm_window: Duration,
    pub cooldown: Duration,
    pub rollout_timeout: Duration,
    pub verify_for: Duration,
    pub notify: Vec<String>,
    pub dry_run: bool,
    pub rollout_check: bool,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            failure_threshold: 3,
            arm: Arm::AfterRollout,
            arm_window: Duration::from_secs(30 * 60),
            cooldown: Duration::from_secs(30 * 60),
            rollout_timeout: Duration::from_secs(10 * 60),
            verify_for: Duration::from_secs(2 * 60),
            notify: Vec::new(),
            dry_run: false,
            rollout_check: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    AfterRollout,
    Always,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Kubernetes(KubernetesTarget),
    Command(CommandTarget),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Kubernetes(k) => k.kind.as_str(),
            Target::Command(_) => "command",
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Kubernetes(k) => write!(f, "{}/{}/{}", k.kind.as_str(), k.namespace, k.name),
            // Only the program: arguments can be long, and carry tokens.
            Target::Command(c) => write!(
                f,
                "command {}",
                c.rollback.first().map(String::as_str).unwrap_or("")
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesTarget {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    pub context: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandTarget {
    pub rollback: Vec<String>,
    pub current: Option<Vec<String>>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Fail,
    Inconclusive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNoData {
    Inconclusive,
    Fail,
    Pass,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub name: String,
    pub url: String,
    /// Empty means any 2xx.
    pub expect_status: Vec<u16>,
    pub timeout: Duration,
    pub max_latency: Option<Duration>,
    pub body_contains: Option<String>,
    pub headers: BTreeMap<String, Secret>,
    pub ca_file: Option<PathBuf>,
    pub on_error: OnError,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusCheck {
    pub name: String,
    pub query: String,
    pub source: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_increase: Option<f64>,
    pub min_decrease: Option<f64>,
    pub on_no_data: OnNoData,
    pub on_error: OnError,
}

impl PrometheusCheck {
    /// The thresholds as an operator would read them: `max 0.05, min 1`.
    pub fn threshold_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = self.max {
            parts.push(format!("max {v}"));
        }
        if let Some(v) = self.min {
            parts.push(format!("min {v}"));
        }
        if let Some(v) = self.max_increase {
            parts.push(format!("max_increase {v}x"));
        }
        if let Some(v) = self.min_decrease {
            parts.push(format!("min_decrease {v}x"));
        }
        parts.join(", ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertCheck {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}
