//! The simulated cluster's controllers and kubelet, one pass per tick, in
//! the order a real control plane would settle them: the Deployment
//! controller (a ReplicaSet per template, reused and renumbered on
//! rollback, with `revision-history`), the ReplicaSet controller, the
//! StatefulSet and DaemonSet controllers (a ControllerRevision per
//! template, ordered rolling updates with partitions, history limits), pods
//! that become ready with time unless their image is "bad", then every
//! status from the pods. Because they run on the tick and not inside the
//! API call, a client sees what it sees on a cluster: right after a spec
//! change, `metadata.generation` is ahead of `status.observedGeneration`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{
    CONTROLLER_REVISION_HASH, Cluster, DESIRED_REPLICAS, HASH_LABEL, Key, MAX_REPLICAS, PodLife,
    READY_AFTER, REVISION, REVISION_HISTORY, STS_REVISION_HASH, State, degraded, fnv1_32, images,
    key_of, never_ready, normalize, now_rfc3339, revision_data, revision_of, safe_encode,
    sts_revision_hash, template_hash,
};
use crate::resources::{
    CONTROLLERREVISIONS, DAEMONSETS, DEPLOYMENTS, EVENTS, Kind, PODS, REPLICASETS, STATEFULSETS,
};

/// The simulated nodes; a DaemonSet runs one pod on each.
pub const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

/// How long the deployment controller lets `revision-history` grow, as the
/// real one does.
const REVISION_HISTORY_CHARS: usize = 2000;

/// Annotations a Deployment keeps to itself, never copied to its
/// ReplicaSets (the controller's skip list).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

fn keys(s: &State, kind: &Kind) -> Vec<Key> {
    s.map(kind)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

pub(crate) fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn int(v: &Value, default: i64) -> i64 {
    v.as_i64().unwrap_or(default)
}

/// An int-or-percent (`maxUnavailable`) against a total, rounded as the
/// controllers round it.
fn resolve(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(p) => {
            let pct: i64 = p.trim_end_matches('%').parse().unwrap_or(0);
            if round_up {
                (pct * total + 99) / 100
            } else {
                pct * total / 100
            }
        }
        _ => 0,
    }
}

fn owner_ref(owner: &Value) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

/// A ControllerRevision's template: its data, less the replace directive.
fn revision_template(cr: &Value) -> Value {
    let mut t = cr["data"]["spec"]["template"].clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    t
}

/// Whether a ControllerRevision's data is `data`, byte for byte, as the
/// controllers compare them.
fn holds(cr: &Value, data: &str) -> bool {
    serde_json::to_string(&cr["data"]).is_ok_and(|d| d == data)
}

fn revision_number(cr: &Value) -> i64 {
    int(&cr["revision"], 0)
}

impl Cluster {
    /// One pass of every controller and of the kubelet; the simulator calls
    /// it every 50 ms.
    pub fn tick(&self) {
        let Ok(mut guard) = self.lock() else { return };
        let s = &mut *guard;
        s.ticks += 1;
        let now = Instant::now();
        for k in keys(s, &DEPLOYMENTS) {
            self.sync_deployment(s, &k, now);
        }
        for k in keys(s, &REPLICASETS) {
            self.sync_replicaset(s, &k);
        }
        for k in keys(s, &STATEFULSETS) {
            self.sync_statefulset(s, &k);
        }
        for k in keys(s, &DAEMONSETS) {
            self.sync_daemonset(s, &k);
        }
        for k in keys(s, &PODS) {
            self.kubelet(s, &k, now);
        }
        for k in keys(s, &REPLICASETS) {
            self.replicaset_status(s, &k);
        }
        for k in keys(s, &DEPLOYMENTS) {
            self.deployment_status(s, &k, now);
        }
        for k in keys(s, &STATEFULSETS) {
            self.statefulset_status(s, &k);
        }
        for k in keys(s, &DAEMONSETS) {
            self.daemonset_status(s, &k);
        }
        self.serve_traffic(s);
    }

    /// Records an event about `involved`, counting repeats of the same one
    /// in a single Event as the event correlator does.
    fn record(
        &self,
        s: &mut State,
        involved: &Value,
        kind: &str,
        reason: &str,
        message: String,
        component: &str,
    ) {
        let (ns, name) = key_of(involved);
        let uid = involved["metadata"]["uid"].as_str().unwrap_or("");
        let event_name = format!(
            "{name}.{:08x}",
            fnv1_32(format!("{uid}{reason}{message}").as_bytes())
        );
        let now = now_rfc3339();
        let key = (ns.clone(), event_name.clone());
        let event = match s.object(&EVENTS, &key) {
            Some(e) => {
                let mut e = e.clone();
                e["count"] = (int(&e["count"], 1) + 1).into();
                e["lastTimestamp"] = now.into();
                e
            }
            None => {
                let uid = s.next_uid(9);
                json!({"apiVersion": "v1", "kind": "Event",
                       "metadata": {"name": event_name, "namespace": ns, "uid": uid, "creationTimestamp": now},
                       "involvedObject": {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": name,
                                          "namespace": involved["metadata"]["namespace"], "uid": involved["metadata"]["uid"],
                                          "resourceVersion": involved["metadata"]["resourceVersion"]},
                       "reason": reason, "message": message, "source": {"component": component},
                       "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": kind,
                       "eventTime": null, "reportingComponent": component, "reportingInstance": ""})
            }
        };
        self.store(s, &EVENTS, event);
    }

    /// Creates a pod from a template, owned by `owner`.
    fn new_pod(
        &self,
        s: &mut State,
        owner: &Value,
        name: String,
        template: &Value,
        labels: &[(&str, String)],
        node: &str,
    ) -> Value {
        let ns = owner["metadata"]["namespace"].clone();
        let mut metadata = json!({"name": name, "namespace": ns, "uid": s.next_uid(2),
                                  "creationTimestamp": now_rfc3339(),
                                  "labels": template["metadata"]["labels"].clone(),
                                  "ownerReferences": [owner_ref(owner)]});
        if !metadata["labels"].is_object() {
            metadata["labels"] = json!({});
        }
        for (k, v) in labels {
            metadata["labels"][*k] = v.clone().into();
        }
        if template["metadata"]["annotations"].is_object() {
            metadata["annotations"] = template["metadata"]["annotations"].clone();
        }
        let mut spec = template["spec"].clone();
        spec["nodeName"] = node.into();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
                         "status": {"phase": "Pending", "qosClass": "BestEffort",
                                    "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                                                    "lastTransitionTime": now_rfc3339()}]}});
        s.pods.insert(
            key_of(&pod),
            PodLife {
                started: Instant::now(),
            },
        );
        self.store(s, &PODS, pod)
    }

    /// A pod name with a generated suffix, as ReplicaSets and DaemonSets
    /// name theirs.
    fn pod_name(s: &mut State, prefix: &str) -> String {
        s.uid += 1;
        let suffix = safe_encode(&fnv1_32(format!("{prefix}{}", s.uid).as_bytes()).to_string());
        format!("{prefix}-{}", &suffix[suffix.len().saturating_sub(5)..])
    }

    // ---- Deployments and ReplicaSets ----

    fn sync_deployment(&self, s: &mut State, key: &Key, now: Instant) {
        let Some(d) = s.object(&DEPLOYMENTS, key).cloned() else {
            return;
        };
        let uid = d["metadata"]["uid"].clone();
        let rss = s.owned_by(&REPLICASETS, &key.0, &uid);
        if d["status"]["observedGeneration"] != d["metadata"]["generation"] {
            // Progress is measured from the controller's first sight of a
            // spec change, as the Progressing condition's time is.
            s.rollouts.insert(key.clone(), now);
        }
        let paused = d["spec"]["paused"].as_bool().unwrap_or(false);
        let template = normalize(&d["spec"]["template"]);
        let max_rev = rss.iter().map(revision_of).max().unwrap_or(0);
        let matching = rss
            .iter()
            .find(|rs| normalize(&rs["spec"]["template"]) == template)
            .cloned();
        let new_rs = if paused {
            matching
        } else {
            let mut rs = match matching {
                Some(rs) => rs,
                None => {
                    s.rollouts.insert(key.clone(), now);
                    self.new_replicaset(s, &d, max_rev + 1)
                }
            };
            for (k, v) in d["metadata"]["annotations"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if !NOT_COPIED.contains(&k.as_str()) {
                    rs["metadata"]["annotations"][k] = v.clone();
                }
            }
            let old = revision_of(&rs);
            if old < max_rev {
                // Rolling back to this template: the ReplicaSet is reused
                // and renumbered, and keeps the numbers it had before.
                let history = rs["metadata"]["annotations"][REVISION_HISTORY]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                let mut revisions: Vec<String> = history
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect();
                revisions.push(old.to_string());
                while revisions.join(",").len() > REVISION_HISTORY_CHARS && revisions.len() > 1 {
                    revisions.remove(0);
                }
                rs["metadata"]["annotations"][REVISION_HISTORY] = revisions.join(",").into();
                rs["metadata"]["annotations"][REVISION] = (max_rev + 1).to_string().into();
                s.rollouts.insert(key.clone(), now);
            }
            Some(self.store_if_changed(s, &REPLICASETS, rs))
        };
        let mut d = d;
        if let Some(rs) = &new_rs {
            if !d["metadata"]["annotations"].is_object() {
                d["metadata"]["annotations"] = json!({});
            }
            d["metadata"]["annotations"][REVISION] = revision_of(rs).to_string().into();
        }
        let d = self.store_if_changed(s, &DEPLOYMENTS, d);

        let desired = int(&d["spec"]["replicas"], 1);
        let new_key = new_rs.as_ref().map(key_of);
        let new_done = new_rs.as_ref().is_some_and(|rs| {
            int(&rs["spec"]["replicas"], 0) == desired
                && int(&rs["status"]["readyReplicas"], 0) == desired
        });
        for rs in s.owned_by(&REPLICASETS, &key.0, &uid) {
            let have = int(&rs["spec"]["replicas"], 0);
            let want = if Some(key_of(&rs)) == new_key {
                desired
            } else if new_done || int(&rs["status"]["readyReplicas"], 0) == 0 {
                // The old pods go once the new ones serve, and unready old
                // ones go at once: they serve nothing.
                0
            } else {
                have
            };
            if want != have {
                let mut rs = rs;
                rs["spec"]["replicas"] = want.into();
                let rs = self.store(s, &REPLICASETS, rs);
                let direction = if want > have { "up" } else { "down" };
                self.record(
                    s,
                    &d,
                    "Normal",
                    "ScalingReplicaSet",
                    format!(
                        "Scaled {direction} replica set {} from {have} to {want}",
                        rs["metadata"]["name"].as_str().unwrap_or("")
                    ),
                    "deployment-controller",
                );
            }
        }
        self.prune_replicasets(s, &d, new_key.as_ref());
    }

    /// Keeps `revisionHistoryLimit` old ReplicaSets, once they are scaled
    /// down to nothing, as the controller's cleanup does.
    fn prune_replicasets(&self, s: &mut State, d: &Value, new_key: Option<&Key>) {
        let (ns, _) = key_of(d);
        let mut old: Vec<Value> = s
            .owned_by(&REPLICASETS, &ns, &d["metadata"]["uid"])
            .into_iter()
            .filter(|rs| Some(&key_of(rs)) != new_key)
            .collect();
        old.sort_by_key(revision_of);
        let limit = int(&d["spec"]["revisionHistoryLimit"], 10).max(0) as usize;
        let excess = old.len().saturating_sub(limit);
        for rs in old.iter().take(excess) {
            if int(&rs["spec"]["replicas"], 0) == 0 && int(&rs["status"]["replicas"], 0) == 0 {
                self.remove(s, &REPLICASETS, &key_of(rs));
            }
        }
    }

    /// A new ReplicaSet for a Deployment's template (not yet stored: the
    /// caller stores it with its annotations).
    fn new_replicaset(&self, s: &mut State, d: &Value, revision: i64) -> Value {
        let h = template_hash(&d["spec"]["template"]);
        let mut template = d["spec"]["template"].clone();
        template["metadata"]["labels"][HASH_LABEL] = h.clone().into();
        let mut selector = d["spec"]["selector"].clone();
        selector["matchLabels"][HASH_LABEL] = h.clone().into();
        let labels = template["metadata"]["labels"].clone();
        let desired = int(&d["spec"]["replicas"], 1);
        let surge = resolve(
            &d["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
            desired,
            true,
        );
        let name = format!("{}-{h}", d["metadata"]["name"].as_str().unwrap_or(""));
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": d["metadata"]["namespace"], "uid": s.next_uid(1),
                         "labels": labels, "creationTimestamp": now_rfc3339(),
                         "annotations": {REVISION: revision.to_string(), DESIRED_REPLICAS: desired.to_string(),
                                         MAX_REPLICAS: (desired + surge).to_string()},
                         "ownerReferences": [owner_ref(d)]},
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0}
        })
    }

    fn sync_replicaset(&self, s: &mut State, key: &Key) {
        let Some(rs) = s.object(&REPLICASETS, key).cloned() else {
            return;
        };
        let mut pods = s.owned_by(&PODS, &key.0, &rs["metadata"]["uid"]);
        let want = int(&rs["spec"]["replicas"], 1).max(0) as usize;
        while pods.len() < want {
            let name = Self::pod_name(s, &key.1);
            let node = NODES[pods.len() % NODES.len()];
            let pod = self.new_pod(s, &rs, name.clone(), &rs["spec"]["template"], &[], node);
            pods.push(pod);
            self.record(
                s,
                &rs,
                "Normal",
                "SuccessfulCreate",
                format!("Created pod: {name}"),
                "replicaset-controller",
            );
        }
        if pods.len() > want {
            // Unready pods go first, then the youngest.
            pods.sort_by_key(|p| {
                (
                    pod_ready(p),
                    std::cmp::Reverse(s.pods.get(&key_of(p)).map(|l| l.started)),
                )
            });
            for p in pods.iter().take(pods.len() - want) {
                self.remove(s, &PODS, &key_of(p));
                self.record(
                    s,
                    &rs,
                    "Normal",
                    "SuccessfulDelete",
                    format!(
                        "Deleted pod: {}",
                        p["metadata"]["name"].as_str().unwrap_or("")
                    ),
                    "replicaset-controller",
                );
            }
        }
    }

    fn replicaset_status(&self, s: &mut State, key: &Key) {
        let Some(mut rs) = s.object(&REPLICASETS, key).cloned() else {
            return;
        };
        let pods = s.owned_by(&PODS, &key.0, &rs["metadata"]["uid"]);
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        rs["status"] = json!({"replicas": pods.len(), "fullyLabeledReplicas": pods.len(),
                              "readyReplicas": ready, "availableReplicas": ready,
                              "observedGeneration": rs["metadata"]["generation"]});
        self.store_if_changed(s, &REPLICASETS, rs);
    }

    fn deployment_status(&self, s: &mut State, key: &Key, now: Instant) {
        let Some(mut d) = s.object(&DEPLOYMENTS, key).cloned() else {
            return;
        };
        let rss = s.owned_by(&REPLICASETS, &key.0, &d["metadata"]["uid"]);
        let desired = int(&d["spec"]["replicas"], 1);
        let template = normalize(&d["spec"]["template"]);
        let new_rs = rss
            .iter()
            .find(|rs| normalize(&rs["spec"]["template"]) == template);
        let sum = |field: &str| -> i64 { rss.iter().map(|rs| int(&rs["status"][field], 0)).sum() };
        let (replicas, ready, available) = (
            sum("replicas"),
            sum("readyReplicas"),
            sum("availableReplicas"),
        );
        let updated = new_rs.map_or(0, |rs| int(&rs["status"]["replicas"], 0));
        let new_name = new_rs
            .and_then(|rs| rs["metadata"]["name"].as_str())
            .unwrap_or("")
            .to_owned();
        let started = *s.rollouts.entry(key.clone()).or_insert(now);
        let deadline =
            Duration::from_secs(d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600));
        let complete =
            new_rs.is_some() && updated == desired && replicas == desired && available == desired;
        let paused = d["spec"]["paused"].as_bool().unwrap_or(false);
        let progressing = if paused {
            json!({"type": "Progressing", "status": "Unknown", "reason": "DeploymentPaused", "message": "Deployment is paused"})
        } else if complete {
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                   "message": format!("ReplicaSet \"{new_name}\" has successfully progressed.")})
        } else if now.duration_since(started) > deadline {
            json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                   "message": format!("ReplicaSet \"{new_name}\" has timed out progressing.")})
        } else {
            json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                   "message": format!("ReplicaSet \"{new_name}\" is progressing.")})
        };
        let max_unavailable = resolve(
            &d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            desired,
            false,
        );
        let available_condition = if available >= desired - max_unavailable {
            json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."})
        } else {
            json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability."})
        };
        let mut status = json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
            "conditions": [available_condition, progressing]
        });
        if desired > available {
            status["unavailableReplicas"] = (desired - available).into();
        }
        d["status"] = status;
        self.store_if_changed(s, &DEPLOYMENTS, d);
    }

    // ---- StatefulSets ----

    /// The revision a StatefulSet's current template is at: the newest
    /// one if it matches, else an older equal one renumbered to the next
    /// revision (a rollback), else a new one.
    fn statefulset_revision(&self, s: &mut State, sts: &Value) -> Value {
        let (ns, name) = key_of(sts);
        let mut revisions = s.owned_by(&CONTROLLERREVISIONS, &ns, &sts["metadata"]["uid"]);
        revisions.sort_by_key(|r| (revision_number(r), r["metadata"]["name"].to_string()));
        let data = revision_data(&sts["spec"]["template"]);
        let next = revisions.last().map_or(0, revision_number) + 1;
        let equal = |r: &&Value| holds(r, &data);
        if let Some(last) = revisions.last()
            && equal(&last)
        {
            return last.clone();
        }
        if let Some(eq) = revisions.iter().rev().find(equal) {
            let mut eq = eq.clone();
            eq["revision"] = next.into();
            return self.store(s, &CONTROLLERREVISIONS, eq);
        }
        let mut collisions = int(&sts["status"]["collisionCount"], 0);
        let (hash, cr_name) = loop {
            let hash = sts_revision_hash(&data, collisions);
            let cr_name = format!("{name}-{hash}");
            match s.object(&CONTROLLERREVISIONS, &(ns.clone(), cr_name.clone())) {
                Some(other) if !holds(other, &data) => collisions += 1,
                _ => break (hash, cr_name),
            }
        };
        if collisions != int(&sts["status"]["collisionCount"], 0) {
            let mut sts = sts.clone();
            sts["status"]["collisionCount"] = collisions.into();
            self.store(s, &STATEFULSETS, sts);
        }
        let mut labels = sts["spec"]["template"]["metadata"]["labels"].clone();
        labels[STS_REVISION_HASH] = hash.into();
        let mut cr = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
                            "metadata": {"name": cr_name, "namespace": ns, "uid": s.next_uid(3),
                                         "creationTimestamp": now_rfc3339(), "labels": labels,
                                         "ownerReferences": [owner_ref(sts)]},
                            "data": serde_json::from_str::<Value>(&data).unwrap_or(Value::Null),
                            "revision": next});
        if sts["metadata"]["annotations"].is_object() {
            cr["metadata"]["annotations"] = sts["metadata"]["annotations"].clone();
        }
        self.store(s, &CONTROLLERREVISIONS, cr)
    }

    fn sync_statefulset(&self, s: &mut State, key: &Key) {
        let Some(sts) = s.object(&STATEFULSETS, key).cloned() else {
            return;
        };
        let update = self.statefulset_revision(s, &sts);
        let update_name = update["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let uid = sts["metadata"]["uid"].clone();
        let revisions = s.owned_by(&CONTROLLERREVISIONS, &key.0, &uid);
        let current = sts["status"]["currentRevision"]
            .as_str()
            .and_then(|c| revisions.iter().find(|r| r["metadata"]["name"] == c))
            .cloned()
            .unwrap_or_else(|| update.clone());
        let current_name = current["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let replicas = int(&sts["spec"]["replicas"], 1).max(0);
        let rolling = sts["spec"]["updateStrategy"]["type"] == "RollingUpdate";
        let partition = if rolling {
            int(
                &sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
                0,
            )
        } else {
            0
        };
        let ordered = sts["spec"]["podManagementPolicy"] != "Parallel";
        let pods = s.owned_by(&PODS, &key.0, &uid);
        let pod_at = |i: i64| {
            let n = format!("{}-{i}", key.1);
            pods.iter()
                .find(|p| p["metadata"]["name"] == n.as_str())
                .cloned()
        };
        let revision_of_pod = |p: &Value| {
            p["metadata"]["labels"][CONTROLLER_REVISION_HASH]
                .as_str()
                .map(str::to_owned)
        };
        let create = |this: &Self, s: &mut State, i: i64, cr: &Value, cr_name: &str| {
            let name = format!("{}-{i}", key.1);
            let labels = [
                (CONTROLLER_REVISION_HASH, cr_name.to_owned()),
                ("statefulset.kubernetes.io/pod-name", name.clone()),
                ("apps.kubernetes.io/pod-index", i.to_string()),
            ];
            let mut template = revision_template(cr);
            template["spec"]["hostname"] = name.clone().into();
            if let Some(service) = sts["spec"]["serviceName"].as_str() {
                template["spec"]["subdomain"] = service.into();
            }
            let node = NODES[i as usize % NODES.len()];
            this.new_pod(s, &sts, name.clone(), &template, &labels, node);
            this.record(
                s,
                &sts,
                "Normal",
                "SuccessfulCreate",
                format!("create Pod {name} in StatefulSet {} successful", key.1),
                "statefulset-controller",
            );
        };
        'manage: {
            for i in 0..replicas {
                match pod_at(i) {
                    None => {
                        let (cr, cr_name) = if rolling && i < partition {
                            (&current, &current_name)
                        } else {
                            (&update, &update_name)
                        };
                        create(self, s, i, cr, cr_name);
                        if ordered {
                            break 'manage;
                        }
                    }
                    // A pod that is not running and ready holds everything
                    // up, even a rollback away from its broken revision:
                    // the real controller's forced-rollback caveat.
                    Some(p) if ordered && !pod_ready(&p) => break 'manage,
                    Some(_) => {}
                }
            }
            let extra = pods
                .iter()
                .filter_map(|p| {
                    let ordinal: i64 = p["metadata"]["name"]
                        .as_str()?
                        .rsplit('-')
                        .next()?
                        .parse()
                        .ok()?;
                    (ordinal >= replicas).then_some((ordinal, p))
                })
                .max_by_key(|(o, _)| *o);
            if let Some((_, p)) = extra {
                let name = p["metadata"]["name"].as_str().unwrap_or("").to_owned();
                self.remove(s, &PODS, &key_of(p));
                self.record(
                    s,
                    &sts,
                    "Normal",
                    "SuccessfulDelete",
                    format!("delete Pod {name} in StatefulSet {} successful", key.1),
                    "statefulset-controller",
                );
                break 'manage;
            }
            if rolling {
                for i in (partition.max(0)..replicas).rev() {
                    let Some(p) = pod_at(i) else { break 'manage };
                    if revision_of_pod(&p).as_deref() != Some(update_name.as_str()) {
                        let name = p["metadata"]["name"].as_str().unwrap_or("").to_owned();
                        self.remove(s, &PODS, &key_of(&p));
                        self.record(
                            s,
                            &sts,
                            "Normal",
                            "SuccessfulDelete",
                            format!("delete Pod {name} in StatefulSet {} successful", key.1),
                            "statefulset-controller",
                        );
                        create(self, s, i, &update, &update_name);
                        break 'manage;
                    }
                    if !pod_ready(&p) {
                        break 'manage;
                    }
                }
            }
        }
        // History: keep revisionHistoryLimit revisions besides the live
        // ones (current, update, and any a pod runs).
        let mut live: BTreeSet<String> = [current_name, update_name].into();
        live.extend(
            s.owned_by(&PODS, &key.0, &uid)
                .iter()
                .filter_map(revision_of_pod),
        );
        let mut old: Vec<Value> = s
            .owned_by(&CONTROLLERREVISIONS, &key.0, &uid)
            .into_iter()
            .filter(|r| !live.contains(r["metadata"]["name"].as_str().unwrap_or("")))
            .collect();
        old.sort_by_key(revision_number);
        let limit = int(&sts["spec"]["revisionHistoryLimit"], 10).max(0) as usize;
        for r in old.iter().take(old.len().saturating_sub(limit)) {
            self.remove(s, &CONTROLLERREVISIONS, &key_of(r));
        }
    }

    fn statefulset_status(&self, s: &mut State, key: &Key) {
        let Some(mut sts) = s.object(&STATEFULSETS, key).cloned() else {
            return;
        };
        let uid = sts["metadata"]["uid"].clone();
        let data = revision_data(&sts["spec"]["template"]);
        let mut revisions = s.owned_by(&CONTROLLERREVISIONS, &key.0, &uid);
        revisions.sort_by_key(revision_number);
        let Some(update) = revisions
            .iter()
            .rev()
            .find(|r| holds(r, &data))
            .and_then(|r| r["metadata"]["name"].as_str())
            .map(str::to_owned)
        else {
            return;
        };
        let mut current = sts["status"]["currentRevision"]
            .as_str()
            .filter(|c| revisions.iter().any(|r| r["metadata"]["name"] == *c))
            .unwrap_or(&update)
            .to_owned();
        let pods = s.owned_by(&PODS, &key.0, &uid);
        let at = |rev: &str| {
            pods.iter()
                .filter(|p| p["metadata"]["labels"][CONTROLLER_REVISION_HASH] == rev)
                .count() as i64
        };
        let desired = int(&sts["spec"]["replicas"], 1);
        let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
        let updated = at(&update);
        let replicas = pods.len() as i64;
        if updated == desired && ready == desired && replicas == desired {
            current = update.clone();
        }
        sts["status"] = json!({
            "observedGeneration": sts["metadata"]["generation"],
            "replicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
            "currentReplicas": at(&current), "updatedReplicas": updated,
            "currentRevision": current, "updateRevision": update,
            "collisionCount": int(&sts["status"]["collisionCount"], 0)
        });
        self.store_if_changed(s, &STATEFULSETS, sts);
    }

    // ---- DaemonSets ----

    /// The DaemonSet's revision for its current template (the history
    /// controller's `constructHistory`): an equal one renumbered past the
    /// others, or a new snapshot.
    fn daemonset_revision(&self, s: &mut State, ds: &Value) -> Value {
        let (ns, name) = key_of(ds);
        let data = revision_data(&ds["spec"]["template"]);
        let revisions = s.owned_by(&CONTROLLERREVISIONS, &ns, &ds["metadata"]["uid"]);
        let (mut current, old): (Vec<Value>, Vec<Value>) =
            revisions.into_iter().partition(|r| holds(r, &data));
        let next = old.iter().map(revision_number).max().unwrap_or(0) + 1;
        current.sort_by_key(revision_number);
        let Some(keep) = current.pop() else {
            let hash = template_hash(&ds["spec"]["template"]);
            let mut labels = ds["spec"]["template"]["metadata"]["labels"].clone();
            labels[CONTROLLER_REVISION_HASH] = hash.clone().into();
            let mut cr = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
                                "metadata": {"name": format!("{name}-{hash}"), "namespace": ns, "uid": s.next_uid(3),
                                             "creationTimestamp": now_rfc3339(), "labels": labels,
                                             "ownerReferences": [owner_ref(ds)]},
                                "data": serde_json::from_str::<Value>(&data).unwrap_or(Value::Null),
                                "revision": next});
            if ds["metadata"]["annotations"].is_object() {
                cr["metadata"]["annotations"] = ds["metadata"]["annotations"].clone();
            }
            return self.store(s, &CONTROLLERREVISIONS, cr);
        };
        for duplicate in current {
            self.remove(s, &CONTROLLERREVISIONS, &key_of(&duplicate));
        }
        if revision_number(&keep) < next {
            let mut keep = keep;
            keep["revision"] = next.into();
            return self.store(s, &CONTROLLERREVISIONS, keep);
        }
        keep
    }

    fn sync_daemonset(&self, s: &mut State, key: &Key) {
        let Some(ds) = s.object(&DAEMONSETS, key).cloned() else {
            return;
        };
        let cur = self.daemonset_revision(s, &ds);
        let hash = cur["metadata"]["labels"][CONTROLLER_REVISION_HASH]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let uid = ds["metadata"]["uid"].clone();
        let template = revision_template(&cur);
        let labels = [
            (CONTROLLER_REVISION_HASH, hash.clone()),
            (
                "pod-template-generation",
                int(&ds["metadata"]["generation"], 1).to_string(),
            ),
        ];
        let create = |this: &Self, s: &mut State, node: &str| {
            let name = Self::pod_name(s, &key.1);
            this.new_pod(s, &ds, name.clone(), &template, &labels, node);
            this.record(
                s,
                &ds,
                "Normal",
                "SuccessfulCreate",
                format!("Created pod: {name}"),
                "daemonset-controller",
            );
        };
        let replace = |this: &Self, s: &mut State, p: &Value| {
            let node = p["spec"]["nodeName"]
                .as_str()
                .unwrap_or(NODES[0])
                .to_owned();
            this.remove(s, &PODS, &key_of(p));
            this.record(
                s,
                &ds,
                "Normal",
                "SuccessfulDelete",
                format!(
                    "Deleted pod: {}",
                    p["metadata"]["name"].as_str().unwrap_or("")
                ),
                "daemonset-controller",
            );
            create(this, s, &node);
        };
        let pods = s.owned_by(&PODS, &key.0, &uid);
        for node in NODES {
            if !pods.iter().any(|p| p["spec"]["nodeName"] == node) {
                create(self, s, node);
            }
        }
        if ds["spec"]["updateStrategy"]["type"] == "RollingUpdate" {
            let max_unavailable = resolve(
                &ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
                NODES.len() as i64,
                true,
            )
            .max(1);
            let pods = s.owned_by(&PODS, &key.0, &uid);
            let is_old =
                |p: &Value| p["metadata"]["labels"][CONTROLLER_REVISION_HASH] != hash.as_str();
            // Old pods that are not available go at once; the others
            // only as far as maxUnavailable allows.
            let mut unavailable = pods.iter().filter(|p| !pod_ready(p)).count() as i64;
            for p in pods.iter().filter(|p| is_old(p) && !pod_ready(p)) {
                replace(self, s, p);
            }
            for p in pods.iter().filter(|p| is_old(p) && pod_ready(p)) {
                if unavailable >= max_unavailable {
                    break;
                }
                replace(self, s, p);
                unavailable += 1;
            }
        }
        let live: BTreeSet<String> = s
            .owned_by(&PODS, &key.0, &uid)
            .iter()
            .filter_map(|p| {
                p["metadata"]["labels"][CONTROLLER_REVISION_HASH]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        let mut old: Vec<Value> = s
            .owned_by(&CONTROLLERREVISIONS, &key.0, &uid)
            .into_iter()
            .filter(|r| r["metadata"]["name"] != cur["metadata"]["name"])
            .collect();
        old.sort_by_key(revision_number);
        let limit = int(&ds["spec"]["revisionHistoryLimit"], 10).max(0) as usize;
        let mut to_kill = old.len().saturating_sub(limit);
        for r in old {
            if to_kill == 0 {
                break;
            }
            if live.contains(
                r["metadata"]["labels"][CONTROLLER_REVISION_HASH]
                    .as_str()
                    .unwrap_or(""),
            ) {
                continue;
            }
            self.remove(s, &CONTROLLERREVISIONS, &key_of(&r));
            to_kill -= 1;
        }
    }

    fn daemonset_status(&self, s: &mut State, key: &Key) {
        let Some(mut ds) = s.object(&DAEMONSETS, key).cloned() else {
            return;
        };
        let uid = ds["metadata"]["uid"].clone();
        let data = revision_data(&ds["spec"]["template"]);
        let hash = s
            .owned_by(&CONTROLLERREVISIONS, &key.0, &uid)
            .into_iter()
            .find(|r| holds(r, &data))
            .and_then(|r| {
                r["metadata"]["labels"][CONTROLLER_REVISION_HASH]
                    .as_str()
                    .map(str::to_owned)
            });
        let pods = s.owned_by(&PODS, &key.0, &uid);
        let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
        let updated = pods
            .iter()
            .filter(|p| {
                hash.is_some()
                    && p["metadata"]["labels"][CONTROLLER_REVISION_HASH].as_str() == hash.as_deref()
            })
            .count();
        let scheduled = NODES
            .iter()
            .filter(|n| pods.iter().any(|p| p["spec"]["nodeName"] == **n))
            .count();
        let desired = NODES.len() as i64;
        let mut status = json!({
            "observedGeneration": ds["metadata"]["generation"],
            "desiredNumberScheduled": desired, "currentNumberScheduled": scheduled, "numberMisscheduled": 0,
            "numberReady": ready, "numberAvailable": ready, "updatedNumberScheduled": updated
        });
        if desired > ready {
            status["numberUnavailable"] = (desired - ready).into();
        }
        ds["status"] = status;
        self.store_if_changed(s, &DAEMONSETS, ds);
    }

    // ---- Pods ----

    /// The kubelet's view of a pod: Pending while its containers start,
    /// then Running and ready — or, for a "bad" image, Running but never
    /// ready, in CrashLoopBackOff with a growing restart count.
    fn kubelet(&self, s: &mut State, key: &Key, now: Instant) {
        let Some(mut pod) = s.object(&PODS, key).cloned() else {
            return;
        };
        let started = s
            .pods
            .entry(key.clone())
            .or_insert(PodLife { started: now })
            .started;
        let age = now.duration_since(started);
        let bad = never_ready(&pod);
        let up = age >= READY_AFTER;
        let ready = up && !bad;
        let restarts = if bad {
            (age.as_millis() / READY_AFTER.as_millis()) as i64
        } else {
            0
        };
        let created = pod["metadata"]["creationTimestamp"].clone();
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let names: Vec<String> = pod["spec"]["containers"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let statuses: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|c| {
                let name = c["name"].as_str().unwrap_or("");
                let image = c["image"].as_str().unwrap_or("");
                let mut st = json!({"name": name, "image": image, "imageID": "", "ready": ready,
                                    "restartCount": restarts, "started": ready});
                st["state"] = if ready {
                    json!({"running": {"startedAt": created}})
                } else if bad && up {
                    st["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error",
                                                            "startedAt": created, "finishedAt": created}});
                    json!({"waiting": {"reason": "CrashLoopBackOff",
                                       "message": format!("back-off 10s restarting failed container={name} pod={}_{}({uid})", key.1, key.0)}})
                } else {
                    json!({"waiting": {"reason": "ContainerCreating"}})
                };
                st
            })
            .collect();
        let condition = |kind: &str, ok: bool| {
            let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" },
                               "lastProbeTime": null, "lastTransitionTime": created});
            if !ok && matches!(kind, "Ready" | "ContainersReady") {
                c["reason"] = "ContainersNotReady".into();
                c["message"] =
                    format!("containers with unready status: [{}]", names.join(" ")).into();
            }
            c
        };
        let node = pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or(NODES[0])
            .to_owned();
        let node_index = NODES.iter().position(|n| *n == node).unwrap_or(0);
        let host = fnv1_32(uid.as_bytes());
        pod["status"] = json!({
            "phase": if up { "Running" } else { "Pending" },
            "conditions": [condition("PodReadyToStartContainers", up), condition("Initialized", true),
                           condition("Ready", ready), condition("ContainersReady", ready),
                           condition("PodScheduled", true)],
            "hostIP": format!("10.0.0.{}", node_index + 1),
            "podIP": format!("10.244.{}.{}", node_index + 1, host % 250 + 2),
            "startTime": created, "qosClass": "BestEffort", "containerStatuses": statuses
        });
        let before = s
            .object(&PODS, key)
            .map(|p| int(&p["status"]["containerStatuses"][0]["restartCount"], 0));
        let pod = self.store_if_changed(s, &PODS, pod);
        if bad && up && before != Some(restarts) {
            let container = names.first().cloned().unwrap_or_default();
            self.record(
                s,
                &pod,
                "Warning",
                "BackOff",
                format!(
                    "Back-off restarting failed container {container} in pod {}_{}({uid})",
                    key.1, key.0
                ),
                "kubelet",
            );
        }
    }

    // ---- The application side ----

    /// The ready pods serving a workload (a Deployment, StatefulSet or
    /// DaemonSet of that name), the newest first.
    fn serving_pods(&self, s: &State, namespace: &str, name: &str) -> Vec<Value> {
        let key = (namespace.to_owned(), name.to_owned());
        let mut pods = if let Some(d) = s.object(&DEPLOYMENTS, &key) {
            s.owned_by(&REPLICASETS, namespace, &d["metadata"]["uid"])
                .iter()
                .flat_map(|rs| s.owned_by(&PODS, namespace, &rs["metadata"]["uid"]))
                .collect()
        } else if let Some(w) = s
            .object(&STATEFULSETS, &key)
            .or_else(|| s.object(&DAEMONSETS, &key))
        {
            s.owned_by(&PODS, namespace, &w["metadata"]["uid"])
        } else {
            Vec::new()
        };
        pods.retain(pod_ready);
        pods.sort_by_key(|p| std::cmp::Reverse(s.pods.get(&key_of(p)).map(|l| l.started)));
        pods
    }

    fn serve_traffic(&self, s: &mut State) {
        let workloads: Vec<Key> = [&DEPLOYMENTS, &STATEFULSETS, &DAEMONSETS]
            .into_iter()
            .flat_map(|k| keys(s, k))
            .collect();
        for k in workloads {
            let mut pods = self.serving_pods(s, &k.0, &k.1);
            if pods.is_empty() {
                continue;
            }
            pods.sort_by(|a, b| {
                a["metadata"]["name"]
                    .to_string()
                    .cmp(&b["metadata"]["name"].to_string())
            });
            let tick = s.ticks as usize;
            let (mut ok, mut errors) = (0, 0);
            // Five requests a tick, round robin over the ready pods;
            // "degraded" pods fail two in five of theirs.
            for i in 0..5 {
                let pod = &pods[(tick * 5 + i) % pods.len()];
                let image = images(pod).into_iter().next().unwrap_or_default();
                if degraded(&image) && i < 2 {
                    errors += 1;
                } else {
                    ok += 1;
                }
            }
            let t = s.traffic.entry(k).or_default();
            t.0 += ok;
            t.1 += errors;
        }
    }

    /// The image whose pods answer a workload's traffic: the newest ready
    /// pods' (so the old image until a rollout's new pods are ready).
    pub fn serving_image(&self, namespace: &str, name: &str) -> Option<String> {
        let s = self.lock().ok()?;
        self.serving_pods(&s, namespace, name)
            .first()
            .and_then(|p| images(p).into_iter().next())
    }

    /// A workload's request counters, as its pods would export them.
    pub fn traffic(&self, namespace: &str, name: &str) -> (u64, u64) {
        self.lock()
            .ok()
            .and_then(|s| {
                s.traffic
                    .get(&(namespace.to_owned(), name.to_owned()))
                    .copied()
            })
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::CHANGE_CAUSE;

    /// Runs the controllers, as the simulator does, until `done` holds.
    fn settle(c: &Cluster, done: impl Fn(&Cluster) -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            c.tick();
            if done(c) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the cluster did not settle in 10 s");
    }

    fn get(c: &Cluster, resource: &str, name: &str) -> Value {
        c.get(resource, "shop", name).unwrap()
    }

    fn rolled_out(resource: &'static str, name: &'static str) -> impl Fn(&Cluster) -> bool {
        move |c| {
            let o = get(c, resource, name);
            let st = &o["status"];
            st["observedGeneration"] == o["metadata"]["generation"]
                && match resource {
                    "deployments" => st["conditions"][1]["reason"] == "NewReplicaSetAvailable",
                    "statefulsets" => {
                        st["currentRevision"] == st["updateRevision"]
                            && st["readyReplicas"] == o["spec"]["replicas"]
                    }
                    _ => st["updatedNumberScheduled"] == 3 && st["numberAvailable"] == 3,
                }
        }
    }

    fn revisions(c: &Cluster, selector: &str) -> Vec<(i64, String)> {
        let mut r: Vec<(i64, String)> = c
            .list("controllerrevisions", "shop", Some(selector), None)
            .0
            .iter()
            .map(|cr| {
                (
                    revision_number(cr),
                    images(&revision_template(cr))[0].clone(),
                )
            })
            .collect();
        r.sort();
        r
    }

    #[test]
    fn traffic_follows_the_image_that_serves_it() {
        let c = Cluster::default();
        c.create_deployment("shop", "web", "img:v1", 2, 600);
        assert_eq!(c.serving_image("shop", "web"), None, "not ready yet");
        settle(&c, |c| c.serving_image("shop", "web").is_some());
        assert_eq!(c.serving_image("shop", "web").as_deref(), Some("img:v1"));
        c.set_image("deployment", "shop", "web", "img:bad").unwrap();
        std::thread::sleep(READY_AFTER + Duration::from_millis(20));
        c.tick();
        c.tick();
        assert_eq!(
            c.serving_image("shop", "web").as_deref(),
            Some("img:v1"),
            "the old pods keep answering"
        );
        c.set_image("deployment", "shop", "web", "img:degraded")
            .unwrap();
        settle(&c, |c| {
            c.serving_image("shop", "web").as_deref() == Some("img:degraded")
        });
        let before = c.traffic("shop", "web");
        c.tick();
        c.tick();
        let after = c.traffic("shop", "web");
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (6, 4),
            "degraded pods fail 40%"
        );
    }

    #[test]
    fn the_controller_observes_a_spec_change_on_its_next_tick() {
        let c = Cluster::default();
        c.create_deployment("shop", "web", "img:v1", 2, 600);
        settle(&c, rolled_out("deployments", "web"));
        let d = c.set_image("deploy", "shop", "web", "img:v2").unwrap();
        assert_eq!(d["metadata"]["generation"], 2);
        assert_eq!(
            d["status"]["observedGeneration"], 1,
            "the status is the previous rollout's until the controller runs"
        );
        assert_eq!(
            d["status"]["conditions"][1]["reason"], "NewReplicaSetAvailable",
            "stale, as on a cluster"
        );
        assert_eq!(c.list("replicasets", "shop", None, None).0.len(), 1);
        c.tick();
        let d = get(&c, "deployments", "web");
        assert_eq!(d["status"]["observedGeneration"], 2);
        assert_eq!(d["metadata"]["annotations"][REVISION], "2");
        assert_eq!(c.list("replicasets", "shop", None, None).0.len(), 2);
    }

    #[test]
    fn a_new_template_gets_the_next_revision_and_an_old_one_is_reused_with_its_history() {
        let c = Cluster::default();
        c.create_deployment("shop", "web", "img:v1", 2, 600);
        let revs = |c: &Cluster| {
            let mut r: Vec<(i64, String, String)> = c
                .list("replicasets", "shop", Some("app=web"), None)
                .0
                .iter()
                .map(|rs| {
                    (
                        revision_of(rs),
                        images(&rs["spec"]["template"])[0].clone(),
                        rs["metadata"]["annotations"][REVISION_HISTORY]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                    )
                })
                .collect();
            r.sort();
            r
        };
        let s = |a: &str| a.to_owned();
        for (image, want) in [
            (
                "img:v2",
                vec![(1, s("img:v1"), s("")), (2, s("img:v2"), s(""))],
            ),
            (
                "img:v1",
                vec![(2, s("img:v2"), s("")), (3, s("img:v1"), s("1"))],
            ),
            (
                "img:v2",
                vec![(3, s("img:v1"), s("1")), (4, s("img:v2"), s("2"))],
            ),
            (
                "img:v1",
                vec![(4, s("img:v2"), s("2")), (5, s("img:v1"), s("1,3"))],
            ),
        ] {
            settle(&c, rolled_out("deployments", "web"));
            c.set_image_with_cause(
                "deploy",
                "shop",
                "web",
                image,
                Some(&format!("ship {image}")),
            )
            .unwrap();
            settle(&c, rolled_out("deployments", "web"));
            assert_eq!(revs(&c), want, "after {image}");
        }
        let d = get(&c, "deployments", "web");
        assert_eq!(d["metadata"]["annotations"][REVISION], "5");
        let rs = c
            .list("replicasets", "shop", None, None)
            .0
            .into_iter()
            .find(|rs| revision_of(rs) == 5)
            .unwrap();
        assert_eq!(rs["metadata"]["annotations"][CHANGE_CAUSE], "ship img:v1");
        assert_eq!(rs["spec"]["replicas"], 2);
        let events = c.list("events", "shop", None, None).0;
        assert!(
            events.iter().any(|e| e["reason"] == "ScalingReplicaSet"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Scaled up replica set web-")),
            "{events:?}"
        );
    }

    #[test]
    fn a_bad_image_never_becomes_available_and_passes_its_deadline() {
        let c = Cluster::default();
        c.create_deployment("shop", "web", "img:bad", 2, 0);
        settle(&c, |c| {
            get(c, "deployments", "web")["status"]["conditions"][1]["reason"]
                == "ProgressDeadlineExceeded"
        });
        let d = get(&c, "deployments", "web");
        assert_eq!(d["status"]["availableReplicas"], 0);
        assert_eq!(
            d["status"]["conditions"][1]["message"],
            format!(
                "ReplicaSet \"{}\" has timed out progressing.",
                c.list("replicasets", "shop", None, None).0[0]["metadata"]["name"]
                    .as_str()
                    .unwrap()
            )
        );
        settle(&c, |c| {
            c.list("pods", "shop", Some("app=web"), None)
                .0
                .iter()
                .all(|p| p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(2))
        });
        let pod = &c.list("pods", "shop", Some("app=web"), None).0[0];
        assert_eq!(pod["status"]["phase"], "Running");
        assert_eq!(
            pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );
        assert!(!pod_ready(pod));
        assert!(pod["metadata"]["labels"][HASH_LABEL].is_string(), "{pod}");
    }

    #[test]
    fn a_statefulset_rolls_pods_from_the_highest_ordinal_and_reuses_revisions_on_rollback() {
        let c = Cluster::default();
        c.create_statefulset("shop", "db", "img:v1", 3).unwrap();
        settle(&c, rolled_out("statefulsets", "db"));
        let sts = get(&c, "statefulsets", "db");
        let first = sts["status"]["currentRevision"]
            .as_str()
            .unwrap()
            .to_owned();
        let cr = get(&c, "controllerrevisions", &first);
        assert_eq!(cr["revision"], 1);
        assert_eq!(cr["metadata"]["labels"]["app"], "db");
        assert_eq!(
            cr["metadata"]["labels"][STS_REVISION_HASH],
            first.trim_start_matches("db-")
        );
        assert_eq!(cr["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            cr["data"].to_string(),
            revision_data(&sts["spec"]["template"]),
            "the data is the template as a replace patch"
        );
        let pod = get(&c, "pods", "db-2");
        assert_eq!(
            pod["metadata"]["labels"][CONTROLLER_REVISION_HASH],
            first.as_str()
        );
        assert_eq!(
            pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            "db-2"
        );

        c.set_image("sts", "shop", "db", "img:v2").unwrap();
        c.tick();
        c.tick();
        let sts = get(&c, "statefulsets", "db");
        let second = sts["status"]["updateRevision"].as_str().unwrap().to_owned();
        assert_ne!(second, first);
        assert_eq!(sts["status"]["currentRevision"], first.as_str());
        assert_eq!(
            get(&c, "pods", "db-2")["metadata"]["labels"][CONTROLLER_REVISION_HASH],
            second.as_str(),
            "the highest ordinal goes first"
        );
        assert_eq!(
            get(&c, "pods", "db-0")["metadata"]["labels"][CONTROLLER_REVISION_HASH],
            first.as_str()
        );
        settle(&c, rolled_out("statefulsets", "db"));
        assert_eq!(
            revisions(&c, "app=db"),
            [(1, "img:v1".into()), (2, "img:v2".into())]
        );
        let sts = get(&c, "statefulsets", "db");
        assert_eq!(sts["status"]["currentRevision"], second.as_str());
        assert_eq!(sts["status"]["updatedReplicas"], 3);
        assert_eq!(sts["status"]["currentReplicas"], 3);

        c.set_image("sts", "shop", "db", "img:v1").unwrap();
        settle(&c, rolled_out("statefulsets", "db"));
        assert_eq!(
            revisions(&c, "app=db"),
            [(2, "img:v2".into()), (3, "img:v1".into())],
            "the equal revision is renumbered, not duplicated"
        );
        assert_eq!(
            get(&c, "statefulsets", "db")["status"]["currentRevision"],
            first.as_str()
        );

        // A partition keeps the lower ordinals at the current revision.
        c.patch(
            &STATEFULSETS,
            "shop",
            "db",
            "application/merge-patch+json",
            br#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}"#,
            false,
        )
        .unwrap();
        c.set_image("sts", "shop", "db", "img:v3").unwrap();
        settle(&c, |c| {
            get(c, "statefulsets", "db")["status"]["updatedReplicas"] == 1
        });
        for _ in 0..40 {
            c.tick();
        }
        let sts = get(&c, "statefulsets", "db");
        assert_eq!(sts["status"]["updatedReplicas"], 1);
        assert_ne!(
            sts["status"]["currentRevision"],
            sts["status"]["updateRevision"]
        );
    }

    #[test]
    fn a_statefulset_stuck_on_a_broken_pod_needs_that_pod_deleted_after_a_rollback() {
        let c = Cluster::default();
        c.create_statefulset("shop", "db", "img:v1", 2).unwrap();
        settle(&c, rolled_out("statefulsets", "db"));
        c.set_image("sts", "shop", "db", "img:bad").unwrap();
        settle(&c, |c| {
            get(c, "pods", "db-1")["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "CrashLoopBackOff"
        });
        c.set_image("sts", "shop", "db", "img:v1").unwrap();
        for _ in 0..20 {
            c.tick();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            images(&get(&c, "pods", "db-1"))[0],
            "img:bad",
            "OrderedReady waits for the broken pod, as the real controller does"
        );
        c.delete(&PODS, "shop", "db-1", false).unwrap();
        settle(&c, rolled_out("statefulsets", "db"));
        assert_eq!(images(&get(&c, "pods", "db-1"))[0], "img:v1");
    }

    #[test]
    fn a_daemonset_runs_a_pod_per_node_and_rolls_back_through_its_revisions() {
        let c = Cluster::default();
        c.create_daemonset("shop", "agent", "img:v1").unwrap();
        settle(&c, rolled_out("daemonsets", "agent"));
        let pods = c.list("pods", "shop", Some("app=agent"), None).0;
        assert_eq!(pods.len(), NODES.len());
        let ds = get(&c, "daemonsets", "agent");
        assert_eq!(ds["status"]["desiredNumberScheduled"], 3);
        assert_eq!(ds["status"]["numberReady"], 3);

        c.set_image("ds", "shop", "agent", "img:bad").unwrap();
        settle(&c, |c| {
            let st = &get(c, "daemonsets", "agent")["status"];
            st["updatedNumberScheduled"] == 1 && st["numberUnavailable"] == 1
        });
        for _ in 0..20 {
            c.tick();
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = &get(&c, "daemonsets", "agent")["status"];
        assert_eq!(
            (
                st["updatedNumberScheduled"].as_i64(),
                st["numberAvailable"].as_i64()
            ),
            (Some(1), Some(2)),
            "maxUnavailable 1 holds the rollout at the broken pod"
        );
        assert_eq!(
            revisions(&c, "app=agent"),
            [(1, "img:v1".into()), (2, "img:bad".into())]
        );

        c.set_image("ds", "shop", "agent", "img:v1").unwrap();
        settle(&c, rolled_out("daemonsets", "agent"));
        assert_eq!(
            revisions(&c, "app=agent"),
            [(2, "img:bad".into()), (3, "img:v1".into())]
        );
        let cr = c
            .list("controllerrevisions", "shop", Some("app=agent"), None)
            .0;
        assert!(
            cr.iter()
                .all(|r| r["metadata"]["labels"][CONTROLLER_REVISION_HASH].is_string())
        );
    }

    #[test]
    fn revision_history_limits_prune_the_oldest() {
        let c = Cluster::default();
        c.create_statefulset("shop", "db", "img:v0", 1).unwrap();
        c.patch(
            &STATEFULSETS,
            "shop",
            "db",
            "application/merge-patch+json",
            br#"{"spec":{"revisionHistoryLimit":2}}"#,
            false,
        )
        .unwrap();
        c.create_deployment("shop", "web", "img:v0", 1, 600);
        c.patch_deployment(
            "shop",
            "web",
            "application/merge-patch+json",
            br#"{"spec":{"revisionHistoryLimit":2}}"#,
            false,
        )
        .unwrap();
        for i in 1..=5 {
            settle(&c, rolled_out("statefulsets", "db"));
            settle(&c, rolled_out("deployments", "web"));
            c.set_image("sts", "shop", "db", &format!("img:v{i}"))
                .unwrap();
            c.set_image("deploy", "shop", "web", &format!("img:v{i}"))
                .unwrap();
        }
        settle(&c, rolled_out("statefulsets", "db"));
        settle(&c, rolled_out("deployments", "web"));
        assert_eq!(
            revisions(&c, "app=db"),
            [
                (4, "img:v3".into()),
                (5, "img:v4".into()),
                (6, "img:v5".into())
            ]
        );
        let mut rs: Vec<i64> = c
            .list("replicasets", "shop", Some("app=web"), None)
            .0
            .iter()
            .map(revision_of)
            .collect();
        rs.sort();
        assert_eq!(rs, [4, 5, 6]);
    }

    #[test]
    fn every_object_served_decodes_into_its_kubernetes_type() {
        use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coord, core::v1 as core};
        fn decodes<T: serde::de::DeserializeOwned>(items: &[Value]) -> usize {
            for o in items {
                if let Err(e) = T::deserialize(o) {
                    panic!("{e}: {o}");
                }
            }
            items.len()
        }
        let c = Cluster::default();
        c.create_deployment("shop", "web", "img:v1", 2, 600);
        c.create_statefulset("shop", "db", "img:bad", 2).unwrap();
        c.create_daemonset("shop", "agent", "img:v1").unwrap();
        c.create(
            &crate::resources::LEASES,
            "shop",
            json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                   "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 0}}),
            false,
        )
        .unwrap();
        settle(&c, |c| {
            c.list("pods", "shop", Some("app=db"), None)
                .0
                .first()
                .is_some_and(|p| {
                    p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)
                })
        });
        c.set_image("deploy", "shop", "web", "img:v2").unwrap();
        c.tick();
        let all = |r: &str| c.list(r, "shop", None, None).0;
        assert!(decodes::<apps::Deployment>(&all("deployments")) > 0);
        assert!(decodes::<apps::ReplicaSet>(&all("replicasets")) > 1);
        assert!(decodes::<apps::StatefulSet>(&all("statefulsets")) > 0);
        assert!(decodes::<apps::DaemonSet>(&all("daemonsets")) > 0);
        assert!(decodes::<apps::ControllerRevision>(&all("controllerrevisions")) > 1);
        assert!(decodes::<core::Pod>(&all("pods")) > 5);
        assert!(decodes::<core::Event>(&all("events")) > 3);
        assert!(decodes::<coord::Lease>(&all("leases")) > 0);
    }
}
