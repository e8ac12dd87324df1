//! The simulated cluster's objects and its Deployment controller: a new
//! pod template makes (or reuses) a ReplicaSet with the next revision, as
//! the real controller does, and rollouts progress with time. An image whose
//! name contains "bad" never becomes ready, so its rollout stalls and passes
//! its progress deadline.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// How long a good new ReplicaSet takes to become available.
pub const READY_AFTER: Duration = Duration::from_millis(300);

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const HASH_LABEL: &str = "pod-template-hash";

/// An API error, rendered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn not_found(kind: &str, name: &str) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: format!("{kind} \"{name}\" not found"),
        }
    }

    pub fn status(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code})
    }
}

/// A change, for watches.
#[derive(Debug, Clone)]
pub struct Event {
    pub resource: &'static str,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
}

type Key = (String, String);

struct Rollout {
    started: Instant,
    /// Pods of older revisions still serving when it started.
    old_available: i64,
}

#[derive(Default)]
struct State {
    resource_version: u64,
    uid: u64,
    deployments: BTreeMap<Key, Value>,
    replicasets: BTreeMap<Key, Value>,
    rollouts: BTreeMap<Key, Rollout>,
    /// The image whose pods answer each workload's traffic.
    serving: BTreeMap<Key, String>,
    /// Requests each workload has answered: (ok, errors).
    traffic: BTreeMap<Key, (u64, u64)>,
}

/// Faults the API server injects, for tests of a client's resilience.
/// Counted, not random, so that tests are deterministic.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer this many upcoming requests with 503.
    pub unavailable: u32,
    /// Answer this many upcoming requests with 429 and `Retry-After: 1`.
    pub throttled: u32,
    /// Delay every answer by this much.
    pub latency: Duration,
    /// End every watch after this long.
    pub watch_lifetime: Option<Duration>,
}

pub struct Cluster {
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
    pub faults: Mutex<Faults>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            events: broadcast::channel(1024).0,
            faults: Mutex::default(),
        }
    }
}

/// "degraded" images are ready but fail 40% of their requests.
pub fn degraded(image: &str) -> bool {
    image.contains("degraded")
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A template as the controller compares it: without the hash label, and
/// without the `null`s and `{}`s a client's round trip adds.
pub fn normalize(template: &Value) -> Value {
    fn strip(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => {
                let out: serde_json::Map<String, Value> = m
                    .iter()
                    .filter_map(|(k, v)| strip(v).map(|v| (k.clone(), v)))
                    .collect();
                (!out.is_empty()).then_some(Value::Object(out))
            }
            Value::Array(a) => Some(Value::Array(a.iter().filter_map(strip).collect())),
            other => Some(other.clone()),
        }
    }
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    strip(&t).unwrap_or(Value::Null)
}

fn hash(template: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in template.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn revision_of(rs: &Value) -> i64 {
    rs.pointer(&format!(
        "/metadata/annotations/{}",
        REVISION.replace('/', "~1")
    ))
    .and_then(Value::as_str)
    .and_then(|r| r.parse().ok())
    .unwrap_or(0)
}

fn images(template: &Value) -> Vec<String> {
    template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["image"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// "bad" images crash-loop: their pods never become ready.
pub fn never_ready(template: &Value) -> bool {
    images(template).iter().any(|i| i.contains("bad"))
}

impl Cluster {
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn emit(&self, resource: &'static str, kind: &'static str, object: &Value) {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let _ = self.events.send(Event {
            resource,
            namespace,
            kind,
            object: object.clone(),
        });
    }

    fn bump(state: &mut State, obj: &mut Value) {
        state.resource_version += 1;
        obj["metadata"]["resourceVersion"] = state.resource_version.to_string().into();
    }

    pub fn resource_version(&self) -> u64 {
        self.state.lock().map(|s| s.resource_version).unwrap_or(0)
    }

    /// Creates a Deployment with one container.
    pub fn create_deployment(
        &self,
        namespace: &str,
        name: &str,
        image: &str,
        replicas: i64,
        progress_deadline_seconds: i64,
    ) -> Value {
        let Ok(mut s) = self.state.lock() else {
            return Value::Null;
        };
        s.uid += 1;
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("00000000-0000-0000-0000-{:012}", s.uid),
                         "generation": 1, "creationTimestamp": now_rfc3339(), "labels": {"app": name}, "annotations": {}},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": progress_deadline_seconds, "revisionHistoryLimit": 10,
                     "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image}]}}},
            "status": {}
        });
        Self::bump(&mut s, &mut d);
        let key = (namespace.to_owned(), name.to_owned());
        s.deployments.insert(key.clone(), d);
        self.reconcile(&mut s, &key);
        s.deployments.get(&key).cloned().unwrap_or(Value::Null)
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let s = self.state.lock().ok()?;
        let key = (namespace.to_owned(), name.to_owned());
        match resource {
            "deployments" => s.deployments.get(&key).cloned(),
            "replicasets" => s.replicasets.get(&key).cloned(),
            _ => None,
        }
    }

    /// Objects of a namespace matching an equality label selector
    /// (`a=b,c=d`) and, optionally, a name.
    pub fn list(
        &self,
        resource: &str,
        namespace: &str,
        selector: Option<&str>,
        name: Option<&str>,
    ) -> (Vec<Value>, u64) {
        let Ok(s) = self.state.lock() else {
            return (Vec::new(), 0);
        };
        let map = match resource {
            "deployments" => &s.deployments,
            _ => &s.replicasets,
        };
        let wanted: Vec<(&str, &str)> = selector
            .unwrap_or("")
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let items = map
            .iter()
            .filter(|((ns, n), _)| ns == namespace && name.is_none_or(|w| w == n))
            .filter(|(_, o)| {
                wanted
                    .iter()
                    .all(|(k, v)| o["metadata"]["labels"][k].as_str() == Some(v))
            })
            .map(|(_, o)| o.clone())
            .collect();
        (items, s.resource_version)
    }

    /// Applies a patch to a Deployment (or, with `dry_run`, only says what
    /// it would become). A `metadata.resourceVersion` in the result that
    /// differs from the stored one is a conflict, as on a real API server.
    pub fn patch_deployment(
        &self,
        namespace: &str,
        name: &str,
        content_type: &str,
        body: &[u8],
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let Ok(mut s) = self.state.lock() else {
            return Err(ApiError {
                code: 500,
                reason: "InternalError",
                message: "state poisoned".into(),
            });
        };
        let key = (namespace.to_owned(), name.to_owned());
        let current = s
            .deployments
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found("deployments.apps", name))?;
        let mut next = current.clone();
        super::patch::apply(&mut next, content_type, body).map_err(|e| ApiError {
            code: 422,
            reason: "Invalid",
            message: e.to_string(),
        })?;
        let wanted_rv = next["metadata"]["resourceVersion"].clone();
        if wanted_rv != current["metadata"]["resourceVersion"] {
            return Err(ApiError {
                code: 409,
                reason: "Conflict",
                message: format!(
                    "Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
            });
        }
        if next["spec"] != current["spec"] {
            let g = current["metadata"]["generation"].as_i64().unwrap_or(1);
            next["metadata"]["generation"] = (g + 1).into();
        }
        if dry_run {
            return Ok(next);
        }
        Self::bump(&mut s, &mut next);
        s.deployments.insert(key.clone(), next);
        self.reconcile(&mut s, &key);
        let d = s.deployments.get(&key).cloned().unwrap_or(Value::Null);
        self.emit("deployments", "MODIFIED", &d);
        Ok(d)
    }

    /// The Deployment controller's reaction to a spec change.
    fn reconcile(&self, s: &mut State, key: &Key) {
        let Some(mut d) = s.deployments.get(key).cloned() else {
            return;
        };
        let uid = d["metadata"]["uid"].clone();
        let paused = d["spec"]["paused"].as_bool().unwrap_or(false);
        let owned: Vec<Key> = s
            .replicasets
            .iter()
            .filter(|((ns, _), rs)| {
                *ns == key.0 && rs["metadata"]["ownerReferences"][0]["uid"] == uid
            })
            .map(|(k, _)| k.clone())
            .collect();
        let max_rev = owned
            .iter()
            .filter_map(|k| s.replicasets.get(k))
            .map(revision_of)
            .max()
            .unwrap_or(0);
        let template = normalize(&d["spec"]["template"]);
        let matching = owned
            .iter()
            .find(|k| {
                s.replicasets
                    .get(*k)
                    .is_some_and(|rs| normalize(&rs["spec"]["template"]) == template)
            })
            .cloned();
        let mut changed_rs = Vec::new();
        if !paused {
            let cause = d["metadata"]["annotations"][CHANGE_CAUSE].clone();
            let newest = match matching {
                Some(k) => {
                    let rs = s.replicasets.get_mut(&k).map(|rs| {
                        if revision_of(rs) != max_rev {
                            // A rollback to this template: the ReplicaSet is
                            // reused and renumbered, as the real controller does.
                            rs["metadata"]["annotations"][REVISION] =
                                (max_rev + 1).to_string().into();
                            Some(rs.clone())
                        } else {
                            None
                        }
                    });
                    if let Some(Some(rs)) = rs {
                        changed_rs.push(k.clone());
                        let _ = rs;
                    }
                    k
                }
                None => {
                    let h = hash(&template);
                    let mut t = d["spec"]["template"].clone();
                    t["metadata"]["labels"][HASH_LABEL] = h.clone().into();
                    let mut selector = d["spec"]["selector"].clone();
                    selector["matchLabels"][HASH_LABEL] = h.clone().into();
                    let mut labels = t["metadata"]["labels"].clone();
                    labels[HASH_LABEL] = h.clone().into();
                    s.uid += 1;
                    let rs_name = format!("{}-{h}", key.1);
                    let rs = json!({
                        "apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "metadata": {"name": rs_name, "namespace": key.0, "uid": format!("00000000-0000-0000-0001-{:012}", s.uid),
                                     "labels": labels, "creationTimestamp": now_rfc3339(),
                                     "annotations": {REVISION: (max_rev + 1).to_string()},
                                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": key.1,
                                                          "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
                        "spec": {"replicas": d["spec"]["replicas"], "selector": selector, "template": t},
                        "status": {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0}
                    });
                    let k = (key.0.clone(), rs_name);
                    s.replicasets.insert(k.clone(), rs);
                    changed_rs.push(k.clone());
                    k
                }
            };
            if let Some(rs) = s.replicasets.get_mut(&newest) {
                if !cause.is_null() {
                    rs["metadata"]["annotations"][CHANGE_CAUSE] = cause;
                }
                let rev = revision_of(rs);
                d["metadata"]["annotations"][REVISION] = rev.to_string().into();
            }
            if !changed_rs.is_empty() {
                let old_available = d["status"]["availableReplicas"].as_i64().unwrap_or(0);
                s.rollouts.insert(
                    key.clone(),
                    Rollout {
                        started: Instant::now(),
                        old_available,
                    },
                );
            }
            self.prune(
                s,
                key,
                &uid,
                d["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10),
            );
        }
        d["status"]["observedGeneration"] = d["metadata"]["generation"].clone();
        Self::bump(s, &mut d);
        s.deployments.insert(key.clone(), d);
        for k in changed_rs {
            if let Some(rs) = s.replicasets.get(&k).cloned() {
                let mut rs = rs;
                Self::bump(s, &mut rs);
                s.replicasets.insert(k, rs.clone());
                self.emit("replicasets", "MODIFIED", &rs);
            }
        }
        self.progress(s, key);
    }

    /// Keeps `revisionHistoryLimit` old ReplicaSets besides the newest.
    fn prune(&self, s: &mut State, key: &Key, uid: &Value, limit: i64) {
        let mut owned: Vec<(i64, Key)> = s
            .replicasets
            .iter()
            .filter(|((ns, _), rs)| {
                *ns == key.0 && rs["metadata"]["ownerReferences"][0]["uid"] == *uid
            })
            .map(|(k, rs)| (revision_of(rs), k.clone()))
            .collect();
        owned.sort();
        let excess = owned.len() as i64 - 1 - limit.max(0);
        for (_, k) in owned.into_iter().take(excess.max(0) as usize) {
            s.replicasets.remove(&k);
        }
    }

    /// Moves every rollout along with time, and lets the serving pods
    /// answer some traffic; called every 50 ms.
    pub fn tick(&self) {
        let Ok(mut s) = self.state.lock() else { return };
        let keys: Vec<Key> = s.deployments.keys().cloned().collect();
        for k in keys {
            self.progress(&mut s, &k);
            if let Some(image) = s.serving.get(&k).cloned() {
                let t = s.traffic.entry(k).or_default();
                if degraded(&image) {
                    t.0 += 3;
                    t.1 += 2;
                } else {
                    t.0 += 5;
                }
            }
        }
    }

    /// The image whose pods answer a workload's traffic: the new one once
    /// its rollout is available, the old one until then.
    pub fn serving_image(&self, namespace: &str, name: &str) -> Option<String> {
        let s = self.state.lock().ok()?;
        s.serving
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// A workload's request counters, as its pods would export them.
    pub fn traffic(&self, namespace: &str, name: &str) -> (u64, u64) {
        self.state
            .lock()
            .ok()
            .and_then(|s| {
                s.traffic
                    .get(&(namespace.to_owned(), name.to_owned()))
                    .copied()
            })
            .unwrap_or((0, 0))
    }

    /// Sets a Deployment's status from its rollout's age and its image.
    fn progress(&self, s: &mut State, key: &Key) {
        let Some(mut d) = s.deployments.get(key).cloned() else {
            return;
        };
        let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let (started, old_available) = match s.rollouts.get(key) {
            Some(r) => (r.started, r.old_available),
            None => (Instant::now(), 0),
        };
        let age = started.elapsed();
        let deadline =
            Duration::from_secs(d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600));
        let paused = d["spec"]["paused"].as_bool().unwrap_or(false);
        let ready = !never_ready(&d["spec"]["template"]) && age >= READY_AFTER;
        let (replicas, updated, available) = if ready {
            (desired, desired, desired)
        } else {
            (desired + old_available, desired, old_available)
        };
        let progressing = if paused {
            json!({"type": "Progressing", "status": "Unknown", "reason": "DeploymentPaused", "message": "Deployment is paused"})
        } else if ready {
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet has successfully progressed."})
        } else if age > deadline {
            json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet has timed out progressing."})
        } else {
            json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "ReplicaSet is progressing."})
        };
        let status = json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": replicas, "updatedReplicas": updated, "readyReplicas": available, "availableReplicas": available,
            "unavailableReplicas": (desired - available).max(0),
            "conditions": [
                {"type": "Available", "status": if available >= desired { "True" } else { "False" }, "reason": "MinimumReplicasAvailable"},
                progressing
            ]
        });
        if ready
            && !paused
            && let Some(image) = images(&d["spec"]["template"]).into_iter().next()
        {
            s.serving.insert(key.clone(), image);
        }
        if d["status"] == status {
            return;
        }
        d["status"] = status;
        Self::bump(s, &mut d);
        s.deployments.insert(key.clone(), d.clone());
        self.emit("deployments", "MODIFIED", &d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_follows_the_image_that_serves_it() {
        let c = Cluster::default();
        c.create_deployment("shop", "web", "img:v1", 2, 600);
        assert_eq!(c.serving_image("shop", "web"), None, "not ready yet");
        std::thread::sleep(READY_AFTER + Duration::from_millis(20));
        c.tick();
        assert_eq!(c.serving_image("shop", "web").as_deref(), Some("img:v1"));
        let set = |image: &str| {
            let body = format!(
                r#"{{"spec":{{"template":{{"spec":{{"containers":[{{"name":"web","image":"{image}"}}]}}}}}}}}"#
            );
            c.patch_deployment(
                "shop",
                "web",
                "application/strategic-merge-patch+json",
                body.as_bytes(),
                false,
            )
            .unwrap();
        };
        set("img:bad");
        std::thread::sleep(READY_AFTER + Duration::from_millis(20));
        c.tick();
        assert_eq!(
            c.serving_image("shop", "web").as_deref(),
            Some("img:v1"),
            "the old pods keep answering"
        );
        set("img:degraded");
        std::thread::sleep(READY_AFTER + Duration::from_millis(20));
        let before = c.traffic("shop", "web");
        c.tick();
        c.tick();
        let after = c.traffic("shop", "web");
        assert_eq!(
            c.serving_image("shop", "web").as_deref(),
            Some("img:degraded")
        );
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (6, 4),
            "degraded pods fail 40%"
        );
    }

    #[test]
    fn templates_compare_by_meaning() {
        let a = json!({"metadata": {"labels": {"app": "web"}, "creationTimestamp": null}, "spec": {"containers": [{"name": "web", "image": "x", "resources": {}}]}});
        let b = json!({"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}}, "spec": {"containers": [{"name": "web", "image": "x"}]}});
        assert_eq!(normalize(&a), normalize(&b));
    }

    #[test]
    fn a_new_template_gets_the_next_revision_and_an_old_one_is_reused_and_renumbered() {
        let c = Cluster::default();
        c.create_deployment("shop", "web", "img:v1", 2, 600);
        let set = |image: &str| {
            let body = format!(
                r#"{{"spec":{{"template":{{"spec":{{"containers":[{{"name":"web","image":"{image}"}}]}}}}}}}}"#
            );
            c.patch_deployment(
                "shop",
                "web",
                "application/strategic-merge-patch+json",
                body.as_bytes(),
                false,
            )
            .unwrap()
        };
        set("img:v2");
        let revs = |c: &Cluster| {
            let mut r: Vec<(i64, String)> = c
                .list("replicasets", "shop", Some("app=web"), None)
                .0
                .iter()
                .map(|rs| (revision_of(rs), images(&rs["spec"]["template"])[0].clone()))
                .collect();
            r.sort();
            r
        };
        assert_eq!(
            revs(&c),
            [(1, "img:v1".to_owned()), (2, "img:v2".to_owned())]
        );
        let d = set("img:v1");
        assert_eq!(
            revs(&c),
            [(2, "img:v2".to_owned()), (3, "img:v1".to_owned())]
        );
        assert_eq!(d["metadata"]["annotations"][REVISION], "3");
        assert_eq!(d["metadata"]["generation"], 3);
    }

    #[test]
    fn a_stale_resource_version_is_a_conflict() {
        let c = Cluster::default();
        let d = c.create_deployment("shop", "web", "img:v1", 1, 600);
        let rv = d["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned();
        c.patch_deployment(
            "shop",
            "web",
            "application/merge-patch+json",
            br#"{"spec":{"replicas":2}}"#,
            false,
        )
        .unwrap();
        let body =
            format!(r#"{{"metadata":{{"resourceVersion":"{rv}"}},"spec":{{"replicas":3}}}}"#);
        let e = c
            .patch_deployment(
                "shop",
                "web",
                "application/merge-patch+json",
                body.as_bytes(),
                false,
            )
            .unwrap_err();
        assert_eq!(e.code, 409);
    }

    #[test]
    fn a_bad_image_never_becomes_available_and_passes_its_deadline() {
        let c = Cluster::default();
        c.create_deployment("shop", "web", "img:bad", 2, 0);
        std::thread::sleep(Duration::from_millis(20));
        c.tick();
        let d = c.get("deployments", "shop", "web").unwrap();
        assert_eq!(d["status"]["availableReplicas"], 0);
        assert_eq!(
            d["status"]["conditions"][1]["reason"],
            "ProgressDeadlineExceeded"
        );
    }
}
