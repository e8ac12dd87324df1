//! The `/status` document: a stable JSON description of the running
//! configuration, for scripts. Values are rendered here and scrubbed of
//! secrets by the caller.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::{Arm, Config, Target};
use crate::engine::{CheckResult, Machine, Millis};

#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub leader: bool,
    pub config_file: String,
    pub config_loaded_at: String,
    pub last_reload: Option<ReloadRecord>,
    pub watches: Vec<WatchStatus>,
}

/// The outcome of the last reload attempt; a rejected one lists its errors.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadRecord {
    pub at: String,
    pub cause: &'static str,
    pub result: &'static str,
    pub errors: Vec<String>,
}

/// A watch's engine, as the supervisor last saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    pub state: &'static str,
    pub revision: Option<String>,
    pub armed_until: Option<String>,
    pub streak: u32,
    pub last_evaluation: Option<LastEvaluation>,
    pub last_rollback: Option<LastRollback>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastEvaluation {
    pub at: String,
    pub result: &'static str,
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRollback {
    pub rollback_id: String,
    pub from_revision: String,
    pub to_revision: Option<String>,
    pub trigger: crate::engine::Trigger,
    pub started_at: String,
    pub finished_at: String,
    pub outcome: &'static str,
}

fn at(ms: Millis) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

impl Live {
    pub fn of(m: &Machine, now: Millis) -> Self {
        Self {
            state: m.state(now).as_str(),
            revision: m.revision.as_ref().map(|r| r.id.clone()),
            armed_until: match m.policy.arm {
                Arm::Always => None,
                Arm::AfterRollout => m.armed_until.filter(|t| *t > now).map(at),
            },
            streak: m.streak,
            last_evaluation: m.last_evaluation.as_ref().map(|e| LastEvaluation {
                at: at(e.at),
                result: e.verdict.as_str(),
                checks: e.checks.clone(),
            }),
            last_rollback: m.last_rollback.as_ref().map(|r| LastRollback {
                rollback_id: r.rollback_id.clone(),
                from_revision: r.from.clone(),
                to_revision: r.to.clone(),
                trigger: r.trigger,
                started_at: at(r.started),
                finished_at: at(r.finished),
                outcome: r.outcome.as_str(),
            }),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct WatchStatus {
    pub name: String,
    pub target: TargetStatus,
    pub state: &'static str,
    pub revision: Option<String>,
    pub armed_until: Option<String>,
    pub streak: u32,
    pub last_evaluation: Option<LastEvaluation>,
    pub last_rollback: Option<LastRollback>,
    pub defined_at: String,
    pub interval: String,
    pub failure_threshold: u32,
    pub arm: &'static str,
    pub arm_window: String,
    pub dry_run: bool,
    pub notify: Vec<String>,
    pub checks: Vec<CheckStatus>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum TargetStatus {
    Kubernetes {
        kind: &'static str,
        namespace: String,
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        context: Option<String>,
    },
    Command {
        kind: &'static str,
        rollback: Vec<String>,
        current: Option<Vec<String>>,
    },
}

/// A check's definition (its last result is under `last_evaluation`).
#[derive(Debug, Serialize)]
pub struct CheckStatus {
    pub kind: &'static str,
    pub name: String,
    /// What the check looks at: the URL, the query, or the alert labels.
    pub subject: String,
    pub threshold: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn rfc3339_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub fn build(
    config: &Config,
    loaded_at: SystemTime,
    last_reload: Option<ReloadRecord>,
    live: &std::collections::BTreeMap<String, Live>,
    leader: bool,
) -> Status {
    Status {
        version: env!("CARGO_PKG_VERSION"),
        leader,
        config_file: config.main_file.display().to_string(),
        config_loaded_at: rfc3339(loaded_at),
        last_reload,
        watches: config
            .watches
            .iter()
            .map(|w| watch_status(config, w, live.get(&w.name)))
            .collect(),
    }
}

fn watch_status(config: &Config, w: &crate::config::Watch, live: Option<&Live>) -> WatchStatus {
    let target = match &w.target {
        Target::Kubernetes(k) => TargetStatus::Kubernetes {
            kind: k.kind.as_str(),
            namespace: k.namespace.clone(),
            name: k.name.clone(),
            context: k.context.clone(),
        },
        Target::Command(c) => TargetStatus::Command {
            kind: "command",
            rollback: c.rollback.clone(),
            current: c.current.clone(),
        },
    };
    let mut checks = Vec::new();
    for h in &w.health {
        let mut threshold = match h.expect_status.as_slice() {
            [] => "status 2xx".to_owned(),
            codes => format!("status in {codes:?}"),
        };
        if let Some(l) = h.max_latency {
            threshold.push_str(&format!(", latency <= {}", duration(l)));
        }
        if let Some(b) = &h.body_contains {
            threshold.push_str(&format!(", body contains {b:?}"));
        }
        checks.push(CheckStatus {
            kind: "health",
            name: h.name.clone(),
            subject: h.url.clone(),
            threshold,
            source: None,
            labels: BTreeMap::new(),
        });
    }
    for p in &w.prometheus {
        checks.push(CheckStatus {
            kind: "prometheus",
            name: p.name.clone(),
            subject: p.query.clone(),
            threshold: p.threshold_text(),
            source: Some(p.source.clone()),
            labels: BTreeMap::new(),
        });
    }
    for a in &w.alerts {
        checks.push(CheckStatus {
            kind: "alert",
            name: a.name.clone(),
            subject: "alertmanager".into(),
            threshold: "not firing".into(),
            source: None,
            labels: a.labels.clone(),
        });
    }
    let s = &w.settings;
    let live = live.cloned().unwrap_or(Live {
        state: "idle",
        revision: None,
        armed_until: None,
        streak: 0,
        last_evaluation: None,
        last_rollback: None,
    });
    WatchStatus {
        name: w.name.clone(),
        target,
        state: live.state,
        revision: live.revision,
        armed_until: live.armed_until,
        streak: live.streak,
        last_evaluation: live.last_evaluation,
        last_rollback: live.last_rollback,
        defined_at: config
            .origins
            .get(&w.name)
            .map(|l| l.to_string())
            .unwrap_or_default(),
        interval: duration(s.interval),
        failure_threshold: s.failure_threshold,
        arm: match s.arm {
            Arm::AfterRollout => "after-rollout",
            Arm::Always => "always",
        },
        arm_window: duration(s.arm_window),
        dry_run: s.dry_run,
        notify: s.notify.clone(),
        checks,
    }
}
