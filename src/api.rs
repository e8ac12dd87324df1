//! The documents the daemon serves and its clients read: the `/status`
//! document (a stable JSON description of the running configuration and
//! each watch's state, documented in the README's "HTTP endpoint"
//! section) and the control requests and answers of `/watches/NAME/ACTION`.
//! The same types serialize on the daemon's side and deserialize on the
//! command line's, so the two cannot drift. Values are rendered here and
//! scrubbed of secrets by the caller.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::clock::rfc3339;
use crate::config::{Arm, Config, Target};
use crate::engine::{CheckResult, Machine, Millis};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub leader: bool,
    pub config_file: String,
    pub config_loaded_at: String,
    pub last_reload: Option<ReloadRecord>,
    pub watches: Vec<WatchStatus>,
}

/// The outcome of the last reload attempt; a rejected one lists its errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadRecord {
    pub at: String,
    pub cause: String,
    pub result: String,
    pub errors: Vec<String>,
}

/// A watch's engine, as the supervisor last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Live {
    pub state: String,
    pub revision: Option<String>,
    pub armed_until: Option<String>,
    pub streak: u32,
    pub last_evaluation: Option<LastEvaluation>,
    pub last_rollback: Option<LastRollback>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastEvaluation {
    pub at: String,
    pub result: String,
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRollback {
    pub rollback_id: String,
    pub from_revision: String,
    pub to_revision: Option<String>,
    pub trigger: crate::engine::Trigger,
    pub started_at: String,
    pub finished_at: String,
    pub outcome: String,
}

fn at(ms: Millis) -> String {
    crate::clock::rfc3339_of(ms)
}

impl Live {
    pub fn of(m: &Machine, now: Millis) -> Self {
        Self {
            state: m.state(now).as_str().to_owned(),
            revision: m.revision().map(|r| r.id.clone()),
            armed_until: match m.policy().arm {
                Arm::Always => None,
                Arm::AfterRollout => m.armed_until().filter(|t| *t > now).map(at),
            },
            streak: m.streak(),
            last_evaluation: m.last_evaluation().map(|e| LastEvaluation {
                at: at(e.at),
                result: e.verdict.as_str().to_owned(),
                checks: e.checks.clone(),
            }),
            last_rollback: m.last_rollback().map(|r| LastRollback {
                rollback_id: r.rollback_id.clone(),
                from_revision: r.from.clone(),
                to_revision: r.to.clone(),
                trigger: r.trigger,
                started_at: at(r.started),
                finished_at: at(r.finished),
                outcome: r.outcome.as_str().to_owned(),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchStatus {
    pub name: String,
    pub target: TargetStatus,
    /// Its engine's state, as its runner last published it.
    #[serde(flatten)]
    pub live: Live,
    pub defined_at: String,
    pub interval: String,
    pub failure_threshold: u32,
    pub arm: String,
    pub arm_window: String,
    pub dry_run: bool,
    pub notify: Vec<String>,
    pub checks: Vec<CheckStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetStatus {
    Kubernetes {
        kind: String,
        namespace: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<String>,
    },
    Command {
        kind: String,
        rollback: Vec<String>,
        current: Option<Vec<String>>,
    },
}

/// A check's definition (its last result is under `last_evaluation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckStatus {
    pub kind: String,
    pub name: String,
    /// What the check looks at: the URL, the query, or the alert labels.
    pub subject: String,
    pub threshold: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
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
        version: env!("CARGO_PKG_VERSION").to_owned(),
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
            kind: k.kind.as_str().to_owned(),
            namespace: k.namespace.clone(),
            name: k.name.clone(),
            context: k.context.clone(),
        },
        Target::Command(c) => TargetStatus::Command {
            kind: "command".to_owned(),
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
            kind: "health".to_owned(),
            name: h.name.clone(),
            subject: h.url.clone(),
            threshold,
            source: None,
            labels: BTreeMap::new(),
        });
    }
    for p in &w.prometheus {
        checks.push(CheckStatus {
            kind: "prometheus".to_owned(),
            name: p.name.clone(),
            subject: p.query.clone(),
            threshold: p.threshold_text(),
            source: Some(p.source.clone()),
            labels: BTreeMap::new(),
        });
    }
    for a in &w.alerts {
        checks.push(CheckStatus {
            kind: "alert".to_owned(),
            name: a.name.clone(),
            subject: "alertmanager".into(),
            threshold: "not firing".into(),
            source: None,
            labels: a.labels.clone(),
        });
    }
    let s = &w.settings;
    let live = live.cloned().unwrap_or(Live {
        state: "idle".to_owned(),
        revision: None,
        armed_until: None,
        streak: 0,
        last_evaluation: None,
        last_rollback: None,
    });
    WatchStatus {
        name: w.name.clone(),
        target,
        live,
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
        }
        .to_owned(),
        arm_window: duration(s.arm_window),
        dry_run: s.dry_run,
        notify: s.notify.clone(),
        checks,
    }
}

/// What an operator can tell one watch through `POST /watches/NAME/ACTION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchAction {
    Pause,
    Resume,
    Reset,
}

impl WatchAction {
    pub fn parse(s: &str) -> Option<WatchAction> {
        match s {
            "pause" => Some(WatchAction::Pause),
            "resume" => Some(WatchAction::Resume),
            "reset" => Some(WatchAction::Reset),
            _ => None,
        }
    }
}

/// The answer to a control request: the watch's state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlAnswer {
    pub watch: String,
    pub state: String,
}

/// `POST /watches/NAME/rollback`: an operator's rollback, carried out by
/// the daemon (the README's "rollbackd rollback").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The revision the operator saw as current: a target that moved on
    /// since is not rolled back.
    pub from_revision: String,
    /// `None`: the previous revision not known bad.
    #[serde(default)]
    pub to_revision: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "yes")]
    pub verify: bool,
    #[serde(default = "yes")]
    pub notify: bool,
    /// `user@host`.
    pub operator: String,
    /// Bound on the rollout wait, e.g. `"5m"`; default the watch's
    /// `rollout_timeout`.
    #[serde(default)]
    pub timeout: Option<String>,
}

fn yes() -> bool {
    true
}

/// The answer to an accepted rollback: follow it at
/// `GET /watches/NAME/events?rollback_id=ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackAccepted {
    pub watch: String,
    pub rollback_id: String,
}

/// The `event` of a progress line in the event stream.
pub const ROLLOUT_PROGRESS: &str = "rollout_progress";

/// One line of `GET /watches/NAME/events` (newline-delimited JSON): a
/// journal line of the watch, exactly as the journal has it, or how far the
/// rollout of a rollback has got (`event = "rollout_progress"`).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Journal(crate::store::journal::Line),
    Progress(ProgressLine),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressLine {
    pub event: String,
    pub ts: String,
    pub watch: String,
    pub rollback_id: String,
    #[serde(flatten)]
    pub progress: crate::rollback::RolloutProgress,
}

impl StreamItem {
    /// Reads one line of the stream.
    pub fn parse(line: &str) -> Result<StreamItem, String> {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if v.get("event").and_then(|e| e.as_str()) == Some(ROLLOUT_PROGRESS) {
            serde_json::from_value(v)
                .map(StreamItem::Progress)
                .map_err(|e| e.to_string())
        } else {
            crate::store::journal::Line::from_value(v).map(StreamItem::Journal)
        }
    }

    /// The rollback the item belongs to.
    pub fn rollback_id(&self) -> Option<&str> {
        match self {
            StreamItem::Journal(l) => l.rollback_id(),
            StreamItem::Progress(p) => Some(&p.rollback_id),
        }
    }
}

/// The answer to a request that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::rfc3339_millis;

    #[test]
    fn the_status_document_reads_back_as_it_was_served() {
        let live = Live::of(
            &Machine::new(
                "shop-web",
                crate::engine::Policy {
                    failure_threshold: 3,
                    arm: Arm::AfterRollout,
                    arm_window: 1_800_000,
                    cooldown: 1_800_000,
                    verify_for: 120_000,
                    dry_run: false,
                },
            ),
            0,
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rollbackd.toml"),
            "[daemon]\nwatches = [\"watches.d\"]\nstate_dir = \"state\"\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("watches.d")).unwrap();
        std::fs::write(
            dir.path().join("watches.d/web.toml"),
            "[[watch]]\nname = \"shop-web\"\ntarget = { kind = \"deployment\", namespace = \"shop\", name = \"web\" }\n[[watch.health]]\nurl = \"http://127.0.0.1:1/healthz\"\n",
        )
        .unwrap();
        let config = crate::config::load(&dir.path().join("rollbackd.toml")).unwrap();
        let status = build(
            &config,
            SystemTime::UNIX_EPOCH,
            Some(ReloadRecord {
                at: rfc3339_millis(SystemTime::UNIX_EPOCH),
                cause: "SIGHUP".into(),
                result: "success".into(),
                errors: vec![],
            }),
            &BTreeMap::from([("shop-web".to_owned(), live)]),
            true,
        );
        let text = serde_json::to_string(&status).unwrap();
        let back: Status = serde_json::from_str(&text).unwrap();
        assert_eq!(back, status);
        assert_eq!(back.watches[0].live.state, "idle");
        assert_eq!(back.watches[0].checks[0].kind, "health");
        let answer: ControlAnswer =
            serde_json::from_str(r#"{"watch":"shop-web","state":"paused"}"#).unwrap();
        assert_eq!(answer.state, "paused");
        assert_eq!(WatchAction::parse("reset"), Some(WatchAction::Reset));
        assert_eq!(WatchAction::parse("undo"), None);
    }
}
