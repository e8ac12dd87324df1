//! Alert checks: firing alerts arrive from Alertmanager's webhook (payload
//! version 4), are kept by fingerprint until resolved or past `endsAt`, and
//! persist in the state directory. A watch's `[[watch.alert]]` fails while an
//! alert carrying all of its labels fires.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::AlertCheck;
use crate::engine::{CheckResult, Millis, Verdict};

pub const FILE: &str = "alerts.json";

/// Alertmanager repeats a firing alert every `repeat_interval` (4 h by
/// default) but blanks its `endsAt`: one not repeated for this long is
/// taken as resolved, so a lost "resolved" cannot block a service forever.
pub const TTL: Millis = 24 * 3600 * 1000;

/// At most this many firing alerts are kept; a delivery beyond it is refused.
pub const MAX_ALERTS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiringAlert {
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub starts_at: Option<Millis>,
    /// After this the alert counts as resolved even without word of it.
    pub ends_at: Option<Millis>,
    /// When Alertmanager last sent it.
    #[serde(default)]
    pub seen_at: Millis,
}

impl FiringAlert {
    fn live(&self, now: Millis) -> bool {
        self.ends_at.is_none_or(|t| t > now) && now.saturating_sub(self.seen_at) < TTL
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error(
        "unsupported payload version {0:?}; rollbackd reads Alertmanager's webhook version \"4\""
    )]
    Version(String),
    #[error("alert {index}: {problem}")]
    Alert { index: usize, problem: String },
    #[error(
        "more than {MAX_ALERTS} firing alerts; refusing more (is the receiver's route too broad?)"
    )]
    TooMany,
}

#[derive(Deserialize)]
struct Payload {
    version: String,
    alerts: Vec<PayloadAlert>,
}

#[derive(Deserialize)]
struct PayloadAlert {
    status: String,
    labels: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(rename = "endsAt")]
    ends_at: Option<String>,
    fingerprint: Option<String>,
}

/// Alertmanager writes "0001-01-01T00:00:00Z" for "not set".
fn timestamp(s: Option<&str>) -> Result<Option<Millis>, String> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let t: jiff::Timestamp = s.parse().map_err(|e| format!("bad time {s:?}: {e}"))?;
    Ok(u64::try_from(t.as_millisecond()).ok().filter(|ms| *ms > 0))
}

/// The firing alerts, shared by the HTTP endpoint and the checks.
pub struct AlertStore {
    alerts: Mutex<BTreeMap<String, FiringAlert>>,
    path: Option<PathBuf>,
}

/// What one delivery changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub firing: usize,
    pub resolved: usize,
}

impl AlertStore {
    pub fn in_memory() -> Self {
        Self {
            alerts: Mutex::default(),
            path: None,
        }
    }

    /// Loads the alerts kept in `state_dir`; an unreadable file is moved
    /// aside and reported in the returned warning.
    pub fn open(state_dir: &Path) -> (Self, Option<String>) {
        let path = state_dir.join(FILE);
        let mut warning = None;
        let alerts = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(a) => a,
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    let _ = std::fs::rename(&path, &aside);
                    warning = Some(format!(
                        "{} is unreadable ({e}); moved to {}",
                        path.display(),
                        aside.display()
                    ));
                    BTreeMap::new()
                }
            },
            Err(_) => BTreeMap::new(),
        };
        (
            Self {
                alerts: Mutex::new(alerts),
                path: Some(path),
            },
            warning,
        )
    }

    /// Applies a webhook delivery. Nothing changes unless all of it reads.
    pub fn apply(&self, body: &[u8], now: Millis) -> Result<Applied, PayloadError> {
        let payload: Payload =
            serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
        if payload.version != "4" {
            return Err(PayloadError::Version(payload.version));
        }
        let mut changes = Vec::with_capacity(payload.alerts.len());
        for (index, a) in payload.alerts.into_iter().enumerate() {
            let bad = |problem: String| PayloadError::Alert { index, problem };
            if a.labels.is_empty() {
                return Err(bad("no labels".into()));
            }
            let firing = match a.status.as_str() {
                "firing" => true,
                "resolved" => false,
                other => {
                    return Err(bad(format!(
                        "status {other:?} is neither \"firing\" nor \"resolved\""
                    )));
                }
            };
            let fingerprint = a.fingerprint.filter(|f| !f.is_empty()).unwrap_or_else(|| {
                a.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let starts_at = timestamp(a.starts_at.as_deref()).map_err(bad)?;
            let ends_at = timestamp(a.ends_at.as_deref()).map_err(bad)?;
            changes.push((
                firing,
                FiringAlert {
                    fingerprint,
                    labels: a.labels,
                    starts_at,
                    ends_at,
                    seen_at: now,
                },
            ));
        }
        let mut applied = Applied {
            firing: 0,
            resolved: 0,
        };
        if let Ok(mut alerts) = self.alerts.lock() {
            alerts.retain(|_, a| a.live(now));
            let new = changes
                .iter()
                .filter(|(f, a)| *f && !alerts.contains_key(&a.fingerprint))
                .count();
            if alerts.len() + new > MAX_ALERTS {
                return Err(PayloadError::TooMany);
            }
            for (firing, alert) in changes {
                // A firing alert whose endsAt already passed is resolved.
                if firing && alert.ends_at.is_none_or(|t| t > now) {
                    applied.firing += 1;
                    alerts.insert(alert.fingerprint.clone(), alert);
                } else {
                    applied.resolved += 1;
                    alerts.remove(&alert.fingerprint);
                }
            }
            self.save(&alerts);
        }
        Ok(applied)
    }

    fn save(&self, alerts: &BTreeMap<String, FiringAlert>) {
        let Some(path) = &self.path else { return };
        let tmp = path.with_extension("json.tmp");
        let result = serde_json::to_vec(alerts)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the firing alerts; they are kept in memory");
        }
    }

    /// Firing alerts that carry every label of `labels`.
    pub fn matching(&self, labels: &BTreeMap<String, String>, now: Millis) -> Vec<FiringAlert> {
        let Ok(alerts) = self.alerts.lock() else {
            return Vec::new();
        };
        alerts
            .values()
            .filter(|a| a.live(now))
            .filter(|a| labels.iter().all(|(k, v)| a.labels.get(k) == Some(v)))
            .cloned()
            .collect()
    }

    pub fn firing_count(&self, now: Millis) -> usize {
        self.alerts
            .lock()
            .map(|a| a.values().filter(|a| a.live(now)).count())
            .unwrap_or(0)
    }
}

/// Judges the firing alerts that match a check. Only alerts that began
/// with the current revision (at or after `since`) speak about it: one that
/// was already firing when a fix shipped must not roll the fix back.
pub fn judge(check: &AlertCheck, firing: &[FiringAlert], since: Option<Millis>) -> CheckResult {
    let threshold = format!(
        "no firing alert with {}",
        check
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (current, older): (Vec<&FiringAlert>, Vec<&FiringAlert>) =
        firing.iter().partition(|a| match (since, a.starts_at) {
            (Some(since), Some(start)) => start >= since,
            _ => true,
        });
    let (result, labels, detail) = match (current.first(), older.first()) {
        (Some(a), _) => (
            Verdict::Fail,
            a.labels.clone(),
            if current.len() == 1 {
                "alert firing".to_owned()
            } else {
                format!("{} alerts firing", current.len())
            },
        ),
        (None, Some(a)) => (
            Verdict::Inconclusive,
            a.labels.clone(),
            "alert firing since before this revision appeared".to_owned(),
        ),
        (None, None) => (Verdict::Pass, BTreeMap::new(), String::new()),
    };
    CheckResult {
        kind: "alert".into(),
        name: check.name.clone(),
        result,
        value: Some(current.len() as f64),
        threshold,
        labels,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_795_000_000_000;

    fn payload(status: &str, labels: &str, ends_at: &str) -> Vec<u8> {
        format!(
            r#"{{"version":"4","groupKey":"{{}}:{{}}","status":"{status}","receiver":"rollbackd","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","alerts":[{{"status":"{status}","labels":{labels},"annotations":{{}},"startsAt":"2026-11-18T10:00:00.123Z","endsAt":"{ends_at}","generatorURL":"","fingerprint":"abc123"}}]}}"#
        )
        .into_bytes()
    }

    fn check() -> AlertCheck {
        AlertCheck {
            name: "HighErrorRate".into(),
            labels: [
                ("alertname".into(), "HighErrorRate".into()),
                ("deployment".into(), "web".into()),
            ]
            .into(),
        }
    }

    #[test]
    fn a_firing_alert_with_all_the_labels_fails_the_check_until_resolved() {
        let store = AlertStore::in_memory();
        let labels = r#"{"alertname":"HighErrorRate","deployment":"web","pod":"web-1"}"#;
        assert_eq!(
            store
                .apply(&payload("firing", labels, "0001-01-01T00:00:00Z"), NOW)
                .unwrap(),
            Applied {
                firing: 1,
                resolved: 0
            }
        );
        let firing = store.matching(&check().labels, NOW);
        let r = judge(&check(), &firing, None);
        assert_eq!(r.result, Verdict::Fail);
        assert_eq!(r.labels["pod"], "web-1");
        store
            .apply(&payload("resolved", labels, "2026-11-18T10:05:00Z"), NOW)
            .unwrap();
        assert_eq!(
            judge(&check(), &store.matching(&check().labels, NOW), None).result,
            Verdict::Pass
        );
    }

    #[test]
    fn an_alert_older_than_the_revision_does_not_fail_it() {
        let store = AlertStore::in_memory();
        // startsAt in the payload is 2026-11-18T10:00:00.123Z.
        let starts = 1_795_000_000_000 - 2 * 24 * 3600 * 1000;
        store
            .apply(
                &payload(
                    "firing",
                    r#"{"alertname":"HighErrorRate","deployment":"web"}"#,
                    "",
                ),
                NOW,
            )
            .unwrap();
        let firing = store.matching(&check().labels, NOW);
        let before = judge(&check(), &firing, Some(NOW));
        assert_eq!(
            before.result,
            Verdict::Inconclusive,
            "a fix shipped while it fired: {}",
            before.detail
        );
        assert_eq!(
            judge(&check(), &firing, Some(starts - 1)).result,
            Verdict::Fail,
            "it began with the revision"
        );
    }

    #[test]
    fn an_alert_not_repeated_within_the_ttl_expires_and_the_store_is_capped() {
        let store = AlertStore::in_memory();
        store
            .apply(
                &payload(
                    "firing",
                    r#"{"alertname":"HighErrorRate","deployment":"web"}"#,
                    "",
                ),
                NOW,
            )
            .unwrap();
        assert_eq!(store.firing_count(NOW + TTL - 1), 1);
        assert_eq!(
            store.firing_count(NOW + TTL),
            0,
            "a lost \"resolved\" does not block forever"
        );
        let many: Vec<String> = (0..MAX_ALERTS + 1)
            .map(|i| format!(r#"{{"status":"firing","labels":{{"alertname":"A","i":"{i}"}},"fingerprint":"f{i}"}}"#))
            .collect();
        let body = format!(r#"{{"version":"4","alerts":[{}]}}"#, many.join(","));
        assert_eq!(
            store.apply(body.as_bytes(), NOW).unwrap_err(),
            PayloadError::TooMany
        );
    }

    #[test]
    fn labels_match_as_a_subset() {
        let store = AlertStore::in_memory();
        store
            .apply(
                &payload(
                    "firing",
                    r#"{"alertname":"HighErrorRate","deployment":"api"}"#,
                    "",
                ),
                NOW,
            )
            .unwrap();
        assert!(
            store.matching(&check().labels, NOW).is_empty(),
            "another deployment's alert"
        );
    }

    #[test]
    fn an_alert_expires_at_its_ends_at() {
        let store = AlertStore::in_memory();
        let labels = r#"{"alertname":"HighErrorRate","deployment":"web"}"#;
        let ends = jiff::Timestamp::from_millisecond(NOW as i64 + 60_000)
            .unwrap()
            .to_string();
        store.apply(&payload("firing", labels, &ends), NOW).unwrap();
        assert_eq!(store.matching(&check().labels, NOW + 59_000).len(), 1);
        assert!(store.matching(&check().labels, NOW + 61_000).is_empty());
    }

    #[test]
    fn malformed_payloads_are_refused_whole_with_a_clear_error() {
        let store = AlertStore::in_memory();
        let cases: [(&[u8], &str); 5] = [
            (b"{not json", "malformed JSON"),
            (
                br#"{"version":"3","alerts":[]}"#,
                "unsupported payload version \"3\"",
            ),
            (br#"{"version":"4"}"#, "missing field `alerts`"),
            (
                br#"{"version":"4","alerts":[{"status":"firing","labels":{}}]}"#,
                "alert 0: no labels",
            ),
            (
                br#"{"version":"4","alerts":[{"status":"burning","labels":{"a":"b"}}]}"#,
                "neither",
            ),
        ];
        for (body, expected) in cases {
            let e = store.apply(body, NOW).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
        assert_eq!(store.firing_count(NOW), 0);
    }

    #[test]
    fn firing_alerts_survive_a_restart_and_a_corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (store, warning) = AlertStore::open(dir.path());
        assert!(warning.is_none());
        store
            .apply(
                &payload(
                    "firing",
                    r#"{"alertname":"HighErrorRate","deployment":"web"}"#,
                    "",
                ),
                NOW,
            )
            .unwrap();
        let (again, _) = AlertStore::open(dir.path());
        assert_eq!(again.firing_count(NOW), 1);
        std::fs::write(dir.path().join(FILE), "{broken").unwrap();
        let (third, warning) = AlertStore::open(dir.path());
        assert!(warning.unwrap().contains("unreadable"));
        assert_eq!(third.firing_count(NOW), 0);
    }
}
