//! kubectl's rules over a workload and its history, as pure functions:
//! which revision is current, which one `rollout undo` goes back to, the
//! patch that does it, and what `rollout status` says. Ported from
//! kubectl's `polymorphichelpers` (rollback, rollout status, history) so
//! that rollbackd acts exactly as an operator with kubectl would, plus the
//! safety kubectl lacks (a `resourceVersion` precondition, kept
//! annotations, a record of the rollback).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::config::WorkloadKind;
use crate::engine::Millis;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
pub const HASH_LABEL: &str = "pod-template-hash";
/// rollbackd's record of a rollback on the workload it patched (README, "Kubernetes targets").
pub const ROLLBACK_ANNOTATION: &str = "rollbackd.io/rollback";

/// Annotations of a Deployment that belong to the Deployment, not to a
/// revision: kubectl's `annotationsToSkip`.
const DEPLOYMENT_OWN: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// A watched workload as read from the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    DaemonSet(DaemonSet),
}

/// One entry of a workload's history: a ReplicaSet or a ControllerRevision.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub number: i64,
    /// The ReplicaSet's or ControllerRevision's name.
    pub name: String,
    pub created: Option<Millis>,
    /// The pod template, without the `pod-template-hash` label.
    pub template: Option<PodTemplateSpec>,
    /// The same as the API server sent it: what an undo restores, so that
    /// fields this build does not know are not dropped on the way back.
    pub raw_template: Option<Value>,
    pub change_cause: Option<String>,
    /// Every annotation of the entry (a ReplicaSet carries the
    /// Deployment's annotations of the time it was made).
    pub annotations: BTreeMap<String, String>,
    /// It held an earlier number: the template came back to it (a
    /// rollback, by anyone).
    pub reused: bool,
}

impl HistoryEntry {
    pub fn images(&self) -> Vec<String> {
        images(self.template.as_ref())
    }
}

pub fn images(t: Option<&PodTemplateSpec>) -> Vec<String> {
    t.and_then(|t| t.spec.as_ref())
        .map(|s| {
            s.containers
                .iter()
                .map(|c| c.image.clone().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

fn millis(meta: &ObjectMeta) -> Option<Millis> {
    meta.creation_timestamp
        .as_ref()
        .and_then(|t| u64::try_from(t.0.as_millisecond()).ok())
}

fn without_hash(t: Option<&PodTemplateSpec>) -> Option<PodTemplateSpec> {
    let mut t = t?.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    Some(t)
}

fn owned_by(meta: &ObjectMeta, uid: Option<&str>) -> bool {
    let Some(uid) = uid else { return false };
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Marks entries that are older than an entry with a lower number: they
/// were made earlier and renumbered when their template came back.
fn mark_reused(entries: &mut [HistoryEntry]) {
    entries.sort_by_key(|e| e.number);
    for i in 0..entries.len() {
        let older_than_a_predecessor = match entries[i].created {
            Some(c) => entries[..i]
                .iter()
                .any(|p| p.created.is_some_and(|pc| pc > c)),
            None => false,
        };
        if older_than_a_predecessor {
            entries[i].reused = true;
        }
    }
}

/// The raw template without the `pod-template-hash` label.
fn raw_without_hash(t: Option<&Value>) -> Option<Value> {
    let mut t = t?.clone();
    if let Some(labels) = t
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    Some(t)
}

/// The Deployment's history: the ReplicaSets it controls (as the API
/// server sent them), by revision.
pub fn replicaset_history(d: &Deployment, sets: &[Value]) -> Vec<HistoryEntry> {
    let uid = d.metadata.uid.as_deref();
    let mut out: Vec<HistoryEntry> = sets
        .iter()
        .filter_map(|raw| {
            let rs: ReplicaSet = serde_json::from_value(raw.clone()).ok()?;
            owned_by(&rs.metadata, uid).then_some((rs, raw))
        })
        .filter_map(|(rs, raw)| {
            let a = rs.metadata.annotations.clone().unwrap_or_default();
            let number = a.get(REVISION)?.parse::<i64>().ok()?;
            Some(HistoryEntry {
                number,
                name: rs.metadata.name.clone().unwrap_or_default(),
                created: millis(&rs.metadata),
                raw_template: raw_without_hash(raw.get("spec").and_then(|s| s.get("template"))),
                template: without_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref())),
                change_cause: a.get(CHANGE_CAUSE).cloned(),
                reused: a.contains_key(REVISION_HISTORY),
                annotations: a.into_iter().collect(),
            })
        })
        .collect();
    mark_reused(&mut out);
    out
}

/// A StatefulSet's or DaemonSet's history: its ControllerRevisions.
pub fn controller_revision_history(
    uid: Option<&str>,
    revs: &[ControllerRevision],
) -> Vec<HistoryEntry> {
    let mut out: Vec<HistoryEntry> = revs
        .iter()
        .filter(|r| owned_by(&r.metadata, uid))
        .map(|r| {
            let a = r.metadata.annotations.clone().unwrap_or_default();
            HistoryEntry {
                number: r.revision,
                name: r.metadata.name.clone().unwrap_or_default(),
                created: millis(&r.metadata),
                template: revision_template(r),
                raw_template: r
                    .data
                    .as_ref()
                    .and_then(|d| d.0.get("spec")?.get("template").cloned()),
                change_cause: a.get(CHANGE_CAUSE).cloned(),
                annotations: a.into_iter().collect(),
                reused: false,
            }
        })
        .collect();
    mark_reused(&mut out);
    out
}

/// The pod template a ControllerRevision holds: its data is the strategic
/// merge patch `{"spec":{"template":{..., "$patch":"replace"}}}`.
pub fn revision_template(r: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = r.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// What `kubectl rollout status` says of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutStatus {
    Complete(String),
    Waiting(String),
    /// `ProgressDeadlineExceeded`: a Deployment that gave up.
    DeadlineExceeded(String),
    /// kubectl cannot tell (an `OnDelete` strategy).
    Unsupported(String),
}

impl RolloutStatus {
    pub fn message(&self) -> &str {
        match self {
            RolloutStatus::Complete(m)
            | RolloutStatus::Waiting(m)
            | RolloutStatus::DeadlineExceeded(m)
            | RolloutStatus::Unsupported(m) => m,
        }
    }
}

/// Replica counts as `kubectl rollout status` weighs them, for a progress
/// bar: how many pods the rollout wants, and how many of them run the new
/// template, are ready and are available.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub desired: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
}

impl Object {
    /// The replica counts of the rollout, from the spec and the status.
    pub fn counts(&self) -> Counts {
        match self {
            Object::Deployment(d) => {
                let st = d.status.clone().unwrap_or_default();
                Counts {
                    desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    updated: st.updated_replicas.unwrap_or(0),
                    ready: st.ready_replicas.unwrap_or(0),
                    available: st.available_replicas.unwrap_or(0),
                }
            }
            Object::StatefulSet(s) => {
                let st = s.status.clone().unwrap_or_default();
                Counts {
                    desired: s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    updated: st.updated_replicas.unwrap_or(0),
                    ready: st.ready_replicas.unwrap_or(0),
                    available: st.available_replicas.unwrap_or(0),
                }
            }
            Object::DaemonSet(d) => {
                let st = d.status.clone().unwrap_or_default();
                Counts {
                    desired: st.desired_number_scheduled,
                    updated: st.updated_number_scheduled.unwrap_or(0),
                    ready: st.number_ready,
                    available: st.number_available.unwrap_or(0),
                }
            }
        }
    }

    pub fn kind(&self) -> WorkloadKind {
        match self {
            Object::Deployment(_) => WorkloadKind::Deployment,
            Object::StatefulSet(_) => WorkloadKind::StatefulSet,
            Object::DaemonSet(_) => WorkloadKind::DaemonSet,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Deployment(d) => &d.metadata,
            Object::StatefulSet(s) => &s.metadata,
            Object::DaemonSet(d) => &d.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or("")
    }

    pub fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Object::Deployment(d) => d.spec.as_ref().map(|s| &s.template),
            Object::StatefulSet(s) => s.spec.as_ref().map(|s| &s.template),
            Object::DaemonSet(d) => d.spec.as_ref().map(|s| &s.template),
        }
    }

    pub fn paused(&self) -> bool {
        match self {
            Object::Deployment(d) => d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false),
            _ => false,
        }
    }

    pub fn observed_generation(&self) -> Option<i64> {
        match self {
            Object::Deployment(d) => d.status.as_ref().and_then(|s| s.observed_generation),
            Object::StatefulSet(s) => s.status.as_ref().and_then(|s| s.observed_generation),
            Object::DaemonSet(d) => d.status.as_ref().and_then(|s| s.observed_generation),
        }
    }

    /// The controller has seen the current spec: its status, and the
    /// revision numbers it assigns, are about this spec and not the last.
    pub fn observed(&self) -> bool {
        let generation = self.meta().generation.unwrap_or(0);
        self.observed_generation()
            .is_some_and(|o| o > 0 && generation <= o)
    }

    /// The history entry the workload runs now, once the controller has
    /// observed its spec. Before that a restored template would still
    /// show its old number, which is no revision anyone will see again.
    pub fn current<'a>(&self, history: &'a [HistoryEntry]) -> Option<&'a HistoryEntry> {
        if !self.observed() {
            return None;
        }
        match self {
            Object::Deployment(d) => {
                let n: i64 = d
                    .metadata
                    .annotations
                    .as_ref()?
                    .get(REVISION)?
                    .parse()
                    .ok()?;
                history.iter().find(|e| e.number == n)
            }
            Object::StatefulSet(s) => {
                let name = s.status.as_ref()?.update_revision.as_deref()?;
                history.iter().find(|e| e.name == name)
            }
            // Its controller gives the current template the highest number
            // (renumbering a reused one), and says nothing else: comparing
            // templates would trip over defaulting and unknown fields.
            Object::DaemonSet(_) => history.iter().max_by_key(|e| e.number),
        }
    }

    /// When a Deployment's `Progressing` condition last said
    /// `ProgressDeadlineExceeded`; the condition outlives the rollout it was
    /// about until the controller sees progress.
    pub fn deadline_exceeded_at(&self) -> Option<jiff::Timestamp> {
        let Object::Deployment(d) = self else {
            return None;
        };
        d.status
            .as_ref()?
            .conditions
            .iter()
            .flatten()
            .find(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
            .and_then(|c| {
                c.last_update_time
                    .as_ref()
                    .or(c.last_transition_time.as_ref())
            })
            .map(|t| t.0)
    }

    /// kubectl's `rollout status`, rule for rule (`rollout_status.go`).
    pub fn rollout_status(&self) -> RolloutStatus {
        use RolloutStatus::*;
        let generation = self.meta().generation.unwrap_or(0);
        match self {
            Object::Deployment(d) => {
                let name = self.name();
                let Some(st) = d.status.as_ref().filter(|_| self.observed()) else {
                    return Waiting("Waiting for deployment spec update to be observed...".into());
                };
                let timed_out = st.conditions.iter().flatten().any(|c| {
                    c.type_ == "Progressing"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                });
                if timed_out {
                    return DeadlineExceeded(format!(
                        "deployment {name:?} exceeded its progress deadline"
                    ));
                }
                let updated = st.updated_replicas.unwrap_or(0);
                let replicas = st.replicas.unwrap_or(0);
                let available = st.available_replicas.unwrap_or(0);
                if let Some(want) = d.spec.as_ref().and_then(|s| s.replicas)
                    && updated < want
                {
                    return Waiting(format!(
                        "Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated..."
                    ));
                }
                if replicas > updated {
                    return Waiting(format!(
                        "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
                        replicas - updated
                    ));
                }
                if available < updated {
                    return Waiting(format!(
                        "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
                    ));
                }
                Complete(format!("deployment {name:?} successfully rolled out"))
            }
            Object::DaemonSet(ds) => {
                let name = self.name();
                let strategy = ds
                    .spec
                    .as_ref()
                    .and_then(|s| s.update_strategy.as_ref())
                    .and_then(|u| u.type_.as_deref())
                    .unwrap_or("RollingUpdate");
                if strategy != "RollingUpdate" {
                    return Unsupported(
                        "rollout status is only available for RollingUpdate strategy type".into(),
                    );
                }
                let Some(st) = ds.status.as_ref().filter(|_| self.observed()) else {
                    return Waiting("Waiting for daemon set spec update to be observed...".into());
                };
                let desired = st.desired_number_scheduled;
                let updated = st.updated_number_scheduled.unwrap_or(0);
                let available = st.number_available.unwrap_or(0);
                if updated < desired {
                    return Waiting(format!(
                        "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
                    ));
                }
                if available < desired {
                    return Waiting(format!(
                        "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
                    ));
                }
                Complete(format!("daemon set {name:?} successfully rolled out"))
            }
            Object::StatefulSet(sts) => {
                let spec = sts.spec.as_ref();
                let strategy = spec.and_then(|s| s.update_strategy.as_ref());
                if strategy
                    .and_then(|u| u.type_.as_deref())
                    .unwrap_or("RollingUpdate")
                    != "RollingUpdate"
                {
                    return Unsupported(
                        "rollout status is only available for RollingUpdate strategy type".into(),
                    );
                }
                let st = sts.status.as_ref();
                let observed = st.and_then(|s| s.observed_generation).unwrap_or(0);
                let Some(st) = st.filter(|_| observed != 0 && generation <= observed) else {
                    return Waiting("Waiting for statefulset spec update to be observed...".into());
                };
                let replicas = spec.and_then(|s| s.replicas);
                let ready = st.ready_replicas.unwrap_or(0);
                if let Some(want) = replicas
                    && ready < want
                {
                    return Waiting(format!("Waiting for {} pods to be ready...", want - ready));
                }
                let updated = st.updated_replicas.unwrap_or(0);
                if let Some(ru) = strategy.and_then(|u| u.rolling_update.as_ref()) {
                    if let (Some(want), Some(partition)) = (replicas, ru.partition)
                        && updated < want - partition
                    {
                        return Waiting(format!(
                            "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                            want - partition
                        ));
                    }
                    return Complete(format!(
                        "partitioned roll out complete: {updated} new pods have been updated..."
                    ));
                }
                let update = st.update_revision.clone().unwrap_or_default();
                let current = st.current_revision.clone().unwrap_or_default();
                if update != current {
                    return Waiting(format!(
                        "waiting for statefulset rolling update to complete {updated} pods at revision {update}..."
                    ));
                }
                Complete(format!(
                    "statefulset rolling update complete {} pods at revision {current}...",
                    st.current_replicas.unwrap_or(0)
                ))
            }
        }
    }
}

/// Why an undo cannot go ahead, as kubectl would put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Paused(String),
    NoPrevious(String),
    NotFound(String),
    /// kubectl's "skipped rollback": the template already is that revision.
    AlreadyMatches(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::Paused(m)
            | Refusal::NoPrevious(m)
            | Refusal::NotFound(m)
            | Refusal::AlreadyMatches(m) => m,
        }
    }
}

/// The undo to send: where it goes and the patch that gets it there.
#[derive(Debug, Clone, PartialEq)]
pub struct Undo {
    pub to: HistoryEntry,
    pub patch: UndoPatch,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UndoPatch {
    /// A JSON patch (RFC 6902), as kubectl sends for Deployments.
    Json(Value),
    /// A strategic merge patch, as kubectl sends for StatefulSets and DaemonSets.
    Strategic(Value),
}

/// rollbackd's record on the patched workload (README, "Kubernetes targets").
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mark {
    pub rollback_id: String,
    pub from: String,
    pub to: String,
    pub trigger: String,
    pub reason: String,
    pub at: String,
    /// Who asked, for a manual rollback (`user@host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
}

impl Mark {
    pub fn of(obj: &Object) -> Option<Mark> {
        let a = obj.meta().annotations.as_ref()?.get(ROLLBACK_ANNOTATION)?;
        serde_json::from_str(a).ok()
    }
}

/// Chooses the revision to go back to as kubectl does: an explicit
/// revision, or else the second-highest. Unlike kubectl, a revision already
/// rolled away from once (`avoid`) is passed over for the next older one.
pub fn choose<'a>(
    kind: WorkloadKind,
    name: &str,
    history: &'a [HistoryEntry],
    to_revision: Option<i64>,
    avoid: &[String],
) -> Result<&'a HistoryEntry, Refusal> {
    if let Some(n) = to_revision {
        return history.iter().find(|e| e.number == n).ok_or_else(|| {
            Refusal::NotFound(format!("unable to find specified revision {n} in history"))
        });
    }
    let mut sorted: Vec<&HistoryEntry> = history.iter().collect();
    sorted.sort_by_key(|e| std::cmp::Reverse(e.number));
    if sorted.len() < 2 {
        return Err(Refusal::NoPrevious(match kind {
            WorkloadKind::Deployment => format!("no rollout history found for deployment {name:?}"),
            _ => "no last revision to roll back to".into(),
        }));
    }
    // A ReplicaSet renumbered since it was rolled away from still carries
    // its old number in `revision-history`: the same bad template.
    let bad = |e: &HistoryEntry| {
        avoid.contains(&e.number.to_string())
            || e.annotations
                .get(REVISION_HISTORY)
                .is_some_and(|h| h.split(',').any(|n| avoid.iter().any(|a| a == n.trim())))
    };
    sorted[1..]
        .iter()
        .copied()
        .find(|e| !bad(e))
        .ok_or_else(|| {
            Refusal::NoPrevious(format!(
                "every earlier revision of {name:?} was already rolled away from once ({})",
                avoid.join(", ")
            ))
        })
}

/// Plans the undo of `obj` to `to_revision` (or the previous revision),
/// with `mark` recorded on the workload and the precondition that it is
/// still at `resource_version`.
pub fn plan(
    obj: &Object,
    history: &[HistoryEntry],
    to_revision: Option<i64>,
    avoid: &[String],
    mark: &Mark,
) -> Result<Undo, Refusal> {
    let name = obj.name();
    if obj.paused() {
        return Err(Refusal::Paused(format!(
            "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/{name}' and try again"
        )));
    }
    let to = choose(obj.kind(), name, history, to_revision, avoid)?.clone();
    let current = without_hash(obj.template());
    if to.template.is_some() && to.template == current {
        return Err(Refusal::AlreadyMatches(format!(
            "skipped rollback (current template already matches revision {})",
            to.number
        )));
    }
    let Some(template) = to.template.clone() else {
        return Err(Refusal::NotFound(format!(
            "revision {} has no pod template",
            to.number
        )));
    };
    let rv = obj.meta().resource_version.clone().unwrap_or_default();
    let mark_json = serde_json::to_string(mark).unwrap_or_default();
    let patch = match obj {
        Object::Deployment(_) => {
            let mut annotations: BTreeMap<String, String> = obj
                .meta()
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            // The change-cause belongs to the revision: the bad one's goes.
            annotations.remove(CHANGE_CAUSE);
            for (k, v) in &to.annotations {
                if !DEPLOYMENT_OWN.contains(&k.as_str()) && k != ROLLBACK_ANNOTATION {
                    annotations.insert(k.clone(), v.clone());
                }
            }
            annotations.insert(ROLLBACK_ANNOTATION.into(), mark_json);
            let template = to
                .raw_template
                .clone()
                .unwrap_or_else(|| serde_json::to_value(&template).unwrap_or(Value::Null));
            UndoPatch::Json(json!([
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "add", "path": "/metadata/annotations", "value": annotations},
                {"op": "replace", "path": "/metadata/resourceVersion", "value": rv},
            ]))
        }
        Object::StatefulSet(_) | Object::DaemonSet(_) => {
            // The revision's data as stored, as kubectl sends it.
            let mut t = to
                .raw_template
                .clone()
                .unwrap_or_else(|| serde_json::to_value(&template).unwrap_or(Value::Null));
            t["$patch"] = "replace".into();
            let cause = to
                .change_cause
                .clone()
                .map(Value::from)
                .unwrap_or(Value::Null);
            UndoPatch::Strategic(json!({
                "metadata": {"resourceVersion": rv,
                             "annotations": {ROLLBACK_ANNOTATION: mark_json, CHANGE_CAUSE: cause}},
                "spec": {"template": t},
            }))
        }
    };
    Ok(Undo { to, patch })
}

#[cfg(test)]
mod tests;
