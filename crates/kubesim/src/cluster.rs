//! The simulated cluster's store: every object, its resourceVersion and
//! generation, and the API verbs on it as an API server applies them —
//! admission (defaults, validation, server-owned fields), optimistic
//! concurrency, dry-run — plus the bounded event history that watches
//! resume from. The controllers that make objects move live in
//! `controller`; both write through the same `store`, so every change is
//! seen by watches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::resources::{self, DAEMONSETS, DEPLOYMENTS, Kind, REPLICASETS, STATEFULSETS};
use crate::selector::{FieldSelector, LabelSelector};

/// How long a good new pod takes to become ready.
pub const READY_AFTER: Duration = Duration::from_millis(300);

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// The label a Deployment's ReplicaSets and pods carry.
pub const HASH_LABEL: &str = "pod-template-hash";
/// The label on StatefulSet and DaemonSet pods naming their revision (for
/// a StatefulSet the ControllerRevision's name, for a DaemonSet its hash),
/// and on a DaemonSet's ControllerRevisions.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// The label on a StatefulSet's ControllerRevisions.
pub const STS_REVISION_HASH: &str = "controller.kubernetes.io/hash";

/// How many changes the event history keeps for resuming watches; older
/// resourceVersions are answered with 410 Gone.
pub const HISTORY_LIMIT: usize = 4096;

/// A change, for watches.
#[derive(Debug, Clone)]
pub struct Event {
    pub resource: &'static str,
    pub namespace: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    pub object: Value,
    pub resource_version: u64,
}

pub(crate) type Key = (String, String);

/// What the simulator knows of a pod beyond its object.
pub(crate) struct PodLife {
    pub started: Instant,
}

#[derive(Default)]
pub(crate) struct State {
    pub resource_version: u64,
    pub uid: u64,
    pub objects: BTreeMap<&'static str, BTreeMap<Key, Value>>,
    /// When each Deployment's current rollout began (its progress deadline
    /// counts from there).
    pub rollouts: BTreeMap<Key, Instant>,
    pub pods: BTreeMap<Key, PodLife>,
    /// Requests each workload has answered: (ok, errors).
    pub traffic: BTreeMap<Key, (u64, u64)>,
    pub ticks: u64,
    pub history: VecDeque<Event>,
    /// The newest resourceVersion no longer in `history`.
    pub history_floor: u64,
}

impl State {
    pub fn map(&self, kind: &Kind) -> Option<&BTreeMap<Key, Value>> {
        self.objects.get(kind.resource)
    }

    pub fn object(&self, kind: &Kind, key: &Key) -> Option<&Value> {
        self.map(kind).and_then(|m| m.get(key))
    }

    /// Objects of `kind` in `namespace` whose controller is `uid`.
    pub fn owned_by(&self, kind: &Kind, namespace: &str, uid: &Value) -> Vec<Value> {
        self.map(kind)
            .map(|m| {
                m.iter()
                    .filter(|((ns, _), o)| ns == namespace && controller_uid(o) == Some(uid))
                    .map(|(_, o)| o.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn next_uid(&mut self, prefix: u16) -> String {
        self.uid += 1;
        format!("00000000-0000-0000-{prefix:04}-{:012}", self.uid)
    }
}

/// The uid of an object's controller, from its owner references.
pub fn controller_uid(o: &Value) -> Option<&Value> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .map(|r| &r["uid"])
}

pub fn key_of(o: &Value) -> Key {
    (
        o["metadata"]["namespace"].as_str().unwrap_or("").to_owned(),
        o["metadata"]["name"].as_str().unwrap_or("").to_owned(),
    )
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
    /// Each distinct resource request, as the API server's authorizer
    /// sees it: what a client needs RBAC for.
    pub audit: Mutex<std::collections::BTreeSet<Access>>,
}

/// One resource request in RBAC's terms (the API server's `RequestInfo`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`.
    pub verb: String,
    /// The API group; "" for the core group.
    pub group: String,
    /// The resource, with `/subresource` when there is one.
    pub resource: String,
    pub namespace: Option<String>,
}

impl Access {
    /// What an API server's request-info resolver makes of a request;
    /// None for discovery and other non-resource paths.
    pub fn of(method: &str, path: &str, query: &str) -> Option<Access> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", "v1", rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            _ => (None, rest),
        };
        let (resource, name, sub) = match rest {
            [r] => (*r, None, None),
            [r, n] => (*r, Some(*n), None),
            [r, n, sub] => (*r, Some(*n), Some(*sub)),
            _ => return None,
        };
        let watch = query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        let verb = match (method, name) {
            ("GET", _) if watch => "watch",
            ("GET", None) => "list",
            ("GET", Some(_)) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", None) => "deletecollection",
            ("DELETE", Some(_)) => "delete",
            _ => return None,
        };
        Some(Access {
            verb: verb.into(),
            group: group.into(),
            resource: match sub {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.into(),
            },
            namespace,
        })
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            events: broadcast::channel(HISTORY_LIMIT).0,
            faults: Mutex::default(),
            audit: Mutex::default(),
        }
    }
}

/// An apps/v1 workload of `kind` whose pods run one container of `image`,
/// selected by `app: NAME`; `spec` adds the kind's own fields.
fn one_container(kind: &str, namespace: &str, name: &str, image: &str, mut spec: Value) -> Value {
    spec["selector"] = json!({"matchLabels": {"app": name}});
    spec["template"] = json!({"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": name, "image": image}]}});
    json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": spec,
    })
}

/// "degraded" images are ready but fail 40% of their requests.
pub fn degraded(image: &str) -> bool {
    image.contains("degraded")
}

pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A template as the controller compares it: without the hash labels, and
/// without the `null`s and `{}`s a client's round trip adds.
pub fn normalize(template: &Value) -> Value {
    fn strip(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => {
                let out: Map<String, Value> = m
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

/// The names the API server generates (`generateName`, pod and
/// ReplicaSet suffixes) use this alphabet, which has no vowels so that no
/// words are spelled.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `rand.SafeEncodeString`: each byte mapped into the safe alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE[b as usize % SAFE.len()] as char)
        .collect()
}

/// FNV-1, 32 bits, as Go's `hash/fnv.New32`.
pub fn fnv1_32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(*b);
    }
    h
}

/// A StatefulSet ControllerRevision's hash: FNV-1 over its data and the
/// collision count, as `history.HashControllerRevision` computes it.
pub fn sts_revision_hash(data: &str, collision_count: i64) -> String {
    let mut bytes = data.as_bytes().to_vec();
    bytes.extend_from_slice(collision_count.to_string().as_bytes());
    safe_encode(&fnv1_32(&bytes).to_string())
}

/// A template's hash, in the form the controllers put in names and labels.
pub(crate) fn template_hash(template: &Value) -> String {
    safe_encode(&fnv1_32(normalize(template).to_string().as_bytes()).to_string())
}

pub(crate) fn revision_of(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn images(template: &Value) -> Vec<String> {
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

/// The server's defaults for a pod spec, as a v1.32 API server applies
/// them (the ones that show in `kubectl get -o yaml`).
fn default_pod_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("securityContext", json!({})),
        ("schedulerName", json!("default-scheduler")),
    ] {
        if m.get(k).is_none_or(Value::is_null) {
            m.insert(k.to_owned(), v);
        }
    }
    for list in ["containers", "initContainers"] {
        for c in m
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .map(|a| a.iter_mut())
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            let last = image.rsplit('/').next().unwrap_or("");
            let pull = if image.contains('@')
                || last.split_once(':').is_some_and(|(_, t)| t != "latest")
            {
                "IfNotPresent"
            } else {
                "Always"
            };
            for (k, v) in [
                ("imagePullPolicy", json!(pull)),
                ("terminationMessagePath", json!("/dev/termination-log")),
                ("terminationMessagePolicy", json!("File")),
                ("resources", json!({})),
            ] {
                if c.get(k).is_none_or(Value::is_null) {
                    c.insert(k.to_owned(), v);
                }
            }
            for p in c
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .map(|a| a.iter_mut())
                .into_iter()
                .flatten()
            {
                if p.get("protocol").is_none() {
                    p["protocol"] = json!("TCP");
                }
            }
        }
    }
}

/// Drops `null`s, and the empty maps Go's `omitempty` drops, so that a
/// stored template is what a Go client's decode and re-encode gives back:
/// the ControllerRevision `data` is compared to that byte for byte.
fn canonical(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, v| {
                !(v.is_null()
                    || (matches!(k.as_str(), "labels" | "annotations" | "nodeSelector")
                        && v.as_object().is_some_and(Map::is_empty))
                    || v.as_array().is_some_and(Vec::is_empty)
                    || v.as_str() == Some(""))
            });
            m.values_mut().for_each(canonical);
        }
        Value::Array(a) => a.iter_mut().for_each(canonical),
        _ => {}
    }
}

/// A pod template as the API server stores it: defaulted, and with the
/// `creationTimestamp: null` a v1.32 server writes into every template.
pub(crate) fn canonical_template(template: &mut Value) {
    if !template.is_object() {
        return;
    }
    canonical(template);
    if !template["spec"].is_object() {
        template["spec"] = json!({});
    }
    default_pod_spec(&mut template["spec"]);
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    template["metadata"]["creationTimestamp"] = Value::Null;
}

fn set_default(v: &mut Value, pointer: &str, default: Value) {
    let mut parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = v;
    for p in parts {
        if !cur[p].is_object() {
            cur[p] = json!({});
        }
        cur = &mut cur[p];
    }
    if cur.get(last).is_none_or(Value::is_null) {
        cur[last] = default;
    }
}

/// The defaults the API server fills into a new or updated object.
fn apply_defaults(kind: &Kind, o: &mut Value) {
    match kind.resource {
        "deployments" => {
            set_default(o, "/spec/replicas", json!(1));
            set_default(o, "/spec/revisionHistoryLimit", json!(10));
            set_default(o, "/spec/progressDeadlineSeconds", json!(600));
            set_default(o, "/spec/strategy/type", json!("RollingUpdate"));
            if o["spec"]["strategy"]["type"] == "RollingUpdate" {
                set_default(o, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
                set_default(
                    o,
                    "/spec/strategy/rollingUpdate/maxUnavailable",
                    json!("25%"),
                );
            }
        }
        "replicasets" => set_default(o, "/spec/replicas", json!(1)),
        "statefulsets" => {
            set_default(o, "/spec/replicas", json!(1));
            set_default(o, "/spec/revisionHistoryLimit", json!(10));
            set_default(o, "/spec/podManagementPolicy", json!("OrderedReady"));
            set_default(o, "/spec/updateStrategy/type", json!("RollingUpdate"));
            if o["spec"]["updateStrategy"]["type"] == "RollingUpdate" {
                set_default(o, "/spec/updateStrategy/rollingUpdate/partition", json!(0));
            }
            set_default(
                o,
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
        }
        "daemonsets" => {
            set_default(o, "/spec/revisionHistoryLimit", json!(10));
            set_default(o, "/spec/updateStrategy/type", json!("RollingUpdate"));
            if o["spec"]["updateStrategy"]["type"] == "RollingUpdate" {
                set_default(
                    o,
                    "/spec/updateStrategy/rollingUpdate/maxUnavailable",
                    json!(1),
                );
                set_default(o, "/spec/updateStrategy/rollingUpdate/maxSurge", json!(0));
            }
        }
        "pods" => default_pod_spec(&mut o["spec"]),
        "events" => {
            set_default(o, "/type", json!("Normal"));
            set_default(o, "/count", json!(1));
        }
        _ => {}
    }
    if o["spec"]["template"].is_object() {
        canonical_template(&mut o["spec"]["template"]);
    }
}

/// Checks an object as the kind's strategy would, naming each bad field.
fn validate(kind: &Kind, o: &Value, old: Option<&Value>) -> Vec<String> {
    let mut errors = Vec::new();
    let name = o["metadata"]["name"].as_str().unwrap_or("");
    if name.is_empty() {
        errors.push("metadata.name: Required value: name or generateName is required".into());
    } else if name.len() > 253
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        || name.starts_with(['-', '.'])
        || name.ends_with(['-', '.'])
    {
        errors.push(format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ));
    }
    let containers = |pointer: &str, errors: &mut Vec<String>| {
        let path = pointer.trim_start_matches('/').replace('/', ".");
        match o.pointer(pointer).and_then(Value::as_array) {
            Some(cs) if !cs.is_empty() => {
                for (i, c) in cs.iter().enumerate() {
                    for field in ["name", "image"] {
                        if c[field].as_str().is_none_or(str::is_empty) {
                            errors.push(format!("{path}[{i}].{field}: Required value"));
                        }
                    }
                }
            }
            _ => errors.push(format!("{path}: Required value")),
        }
    };
    match kind.resource {
        "deployments" | "replicasets" | "statefulsets" | "daemonsets" => {
            let selector = &o["spec"]["selector"];
            let empty = selector["matchLabels"]
                .as_object()
                .is_none_or(Map::is_empty)
                && selector["matchExpressions"]
                    .as_array()
                    .is_none_or(Vec::is_empty);
            if empty {
                errors.push("spec.selector: Required value".into());
            } else if !LabelSelector::from_spec(selector)
                .matches(&o["spec"]["template"]["metadata"]["labels"])
            {
                errors.push(format!(
                    "spec.template.metadata.labels: Invalid value: {}: `selector` does not match template `labels`",
                    o["spec"]["template"]["metadata"]["labels"]
                ));
            }
            if let Some(old) = old
                && kind.resource != "replicasets"
                && old["spec"]["selector"] != *selector
            {
                errors.push(format!(
                    "spec.selector: Invalid value: {selector}: field is immutable"
                ));
            }
            if o["spec"]["replicas"].as_i64().is_some_and(|r| r < 0) {
                errors.push(format!(
                    "spec.replicas: Invalid value: {}: must be greater than or equal to 0",
                    o["spec"]["replicas"]
                ));
            }
            containers("/spec/template/spec/containers", &mut errors);
        }
        "pods" => containers("/spec/containers", &mut errors),
        "events" if o["involvedObject"].as_object().is_none() => {
            errors.push("involvedObject: Required value".into());
        }
        _ => {}
    }
    errors
}

/// Decodes into the matching Kubernetes type, as the API server's decoder
/// would: a field of the wrong type is a 400.
fn check_types(kind: &Kind, o: &Value) -> Result<(), ApiError> {
    use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coord, core::v1 as core};
    fn decode<T: serde::de::DeserializeOwned>(o: &Value) -> Result<(), ApiError> {
        T::deserialize(o)
            .map(drop)
            .map_err(|e| ApiError::bad_request(format!("the object could not be decoded: {e}")))
    }
    match kind.resource {
        "deployments" => decode::<apps::Deployment>(o),
        "replicasets" => decode::<apps::ReplicaSet>(o),
        "statefulsets" => decode::<apps::StatefulSet>(o),
        "daemonsets" => decode::<apps::DaemonSet>(o),
        "controllerrevisions" => decode::<apps::ControllerRevision>(o),
        "pods" => decode::<core::Pod>(o),
        "events" => decode::<core::Event>(o),
        "leases" => decode::<coord::Lease>(o),
        _ => Ok(()),
    }
}

/// The object a Go client gets back for `Table` requests' rows.
pub fn partial_metadata(o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
}

/// What a watch starts with: the events it must send first, and the live
/// ones after them.
pub struct Watch {
    pub backlog: Vec<Event>,
    pub live: broadcast::Receiver<Event>,
    /// The resourceVersion the watch starts at.
    pub resource_version: u64,
}

impl Cluster {
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State>, ApiError> {
        self.state.lock().map_err(|_| ApiError::internal())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn resource_version(&self) -> u64 {
        self.state.lock().map(|s| s.resource_version).unwrap_or(0)
    }

    fn emit(&self, s: &mut State, kind: &'static Kind, event: &'static str, object: &Value) {
        let e = Event {
            resource: kind.resource,
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            kind: event,
            object: object.clone(),
            resource_version: s.resource_version,
        };
        s.history.push_back(e.clone());
        while s.history.len() > HISTORY_LIMIT {
            if let Some(old) = s.history.pop_front() {
                s.history_floor = old.resource_version;
            }
        }
        let _ = self.events.send(e);
    }

    /// Writes an object as is (the caller has admitted it), with the next
    /// resourceVersion and, for kinds that have one, the generation its
    /// spec change calls for; tells the watches.
    pub(crate) fn store(&self, s: &mut State, kind: &'static Kind, mut obj: Value) -> Value {
        let key = key_of(&obj);
        let old = s.object(kind, &key);
        if kind.has_generation {
            let generation = match old {
                Some(old) => {
                    let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                    if old["spec"] == obj["spec"] { g } else { g + 1 }
                }
                None => 1,
            };
            obj["metadata"]["generation"] = generation.into();
        }
        let event = if old.is_some() { "MODIFIED" } else { "ADDED" };
        s.resource_version += 1;
        obj["metadata"]["resourceVersion"] = s.resource_version.to_string().into();
        s.objects
            .entry(kind.resource)
            .or_default()
            .insert(key, obj.clone());
        self.emit(s, kind, event, &obj);
        obj
    }

    /// Stores `obj` only if it differs from what is stored, so that a
    /// controller that finds nothing to do sends no events.
    pub(crate) fn store_if_changed(&self, s: &mut State, kind: &'static Kind, obj: Value) -> Value {
        let key = key_of(&obj);
        if let Some(old) = s.object(kind, &key) {
            let mut a = old.clone();
            let mut b = obj.clone();
            for v in [&mut a, &mut b] {
                if let Some(m) = v["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                    m.remove("generation");
                }
            }
            if a == b {
                return old.clone();
            }
        }
        self.store(s, kind, obj)
    }

    /// Removes an object and, as the garbage collector would, everything
    /// it controls.
    pub(crate) fn remove(&self, s: &mut State, kind: &'static Kind, key: &Key) -> Option<Value> {
        let mut obj = s.objects.get_mut(kind.resource)?.remove(key)?;
        s.resource_version += 1;
        obj["metadata"]["resourceVersion"] = s.resource_version.to_string().into();
        if kind.resource == "pods" {
            s.pods.remove(key);
        }
        self.emit(s, kind, "DELETED", &obj);
        let uid = obj["metadata"]["uid"].clone();
        for dependent in resources::KINDS {
            for o in s.owned_by(dependent, &key.0, &uid) {
                self.remove(s, dependent, &key_of(&o));
            }
        }
        Some(obj)
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let kind = resources::by_resource(resource)?;
        let s = self.state.lock().ok()?;
        s.object(kind, &(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Objects of a namespace matching a label selector and, optionally, a
    /// name. A selector that does not parse matches nothing.
    pub fn list(
        &self,
        resource: &str,
        namespace: &str,
        selector: Option<&str>,
        name: Option<&str>,
    ) -> (Vec<Value>, u64) {
        let (Some(kind), Ok(labels)) = (
            resources::by_resource(resource),
            LabelSelector::parse(selector.unwrap_or("")),
        ) else {
            return (Vec::new(), self.resource_version());
        };
        let fields = name
            .map(|n| FieldSelector::parse(&format!("metadata.name={n}")))
            .transpose()
            .ok()
            .flatten()
            .unwrap_or_default();
        self.list_objects(kind, Some(namespace), &labels, &fields)
            .unwrap_or_default()
    }

    /// A list, as the API serves it: the matching objects and the
    /// resourceVersion it is current at.
    pub fn list_objects(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let s = self.lock()?;
        let items = s
            .map(kind)
            .map(|m| {
                m.iter()
                    .filter(|((ns, _), o)| {
                        namespace.is_none_or(|n| n == ns)
                            && labels.matches(&o["metadata"]["labels"])
                            && fields.matches(o)
                    })
                    .map(|(_, o)| o.clone())
                    .collect()
            })
            .unwrap_or_default();
        Ok((items, s.resource_version))
    }

    pub fn read(&self, kind: &Kind, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let s = self.lock()?;
        s.object(kind, &(namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))
    }

    /// What an API write makes of `new`: server-owned fields kept from
    /// `old` (or set, on create), defaults, validation.
    fn admit(
        &self,
        s: &mut State,
        kind: &'static Kind,
        namespace: &str,
        old: Option<&Value>,
        mut new: Value,
    ) -> Result<Value, ApiError> {
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object".into(),
            ));
        }
        let api_version = kind.api_version();
        if let Some(v) = new["apiVersion"].as_str()
            && v != api_version
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
        if let Some(k) = new["kind"].as_str()
            && k != kind.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                kind.kind
            )));
        }
        new["apiVersion"] = api_version.into();
        new["kind"] = kind.kind.into();
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        match new["metadata"]["namespace"].as_str() {
            Some(ns) if !ns.is_empty() && ns != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
            _ => new["metadata"]["namespace"] = namespace.into(),
        }
        check_types(kind, &new)?;
        let meta = new["metadata"]
            .as_object_mut()
            .ok_or_else(ApiError::internal)?;
        meta.remove("resourceVersion");
        meta.remove("generation");
        match old {
            Some(old) => {
                for field in ["uid", "creationTimestamp", "generation"] {
                    match old["metadata"].get(field) {
                        Some(v) => meta.insert(field.to_owned(), v.clone()),
                        None => meta.remove(field),
                    };
                }
                if kind.status_subresource {
                    match old.get("status") {
                        Some(st) => new["status"] = st.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
            }
            None => {
                if meta
                    .get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                    && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
                {
                    let suffix = safe_encode(&format!("{}{}", s.uid, s.resource_version));
                    let name = format!("{prefix}{}", &suffix[..suffix.len().min(5)]);
                    meta.insert("name".into(), name.into());
                }
                let uid = s.next_uid(0);
                meta.insert("uid".into(), uid.into());
                meta.insert("creationTimestamp".into(), now_rfc3339().into());
                if kind.status_subresource {
                    new["status"] = if kind.resource == "pods" {
                        json!({"phase": "Pending", "qosClass": "BestEffort"})
                    } else {
                        json!({})
                    };
                }
            }
        }
        apply_defaults(kind, &mut new);
        let name = new["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let errors = validate(kind, &new, old);
        if !errors.is_empty() {
            return Err(ApiError::invalid(kind, &name, &errors));
        }
        if kind.has_generation {
            let generation = match old {
                Some(old) => {
                    let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                    if old["spec"] == new["spec"] { g } else { g + 1 }
                }
                None => 1,
            };
            new["metadata"]["generation"] = generation.into();
        }
        Ok(new)
    }

    /// POST: a new object. With `dry_run`, only what it would be.
    pub fn create(
        &self,
        kind: &'static Kind,
        namespace: &str,
        body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut s = self.lock()?;
        let new = self.admit(&mut s, kind, namespace, None, body)?;
        let key = key_of(&new);
        if s.object(kind, &key).is_some() {
            return Err(ApiError::already_exists(kind, &key.1));
        }
        if dry_run {
            return Ok(new);
        }
        if kind.resource == "pods" {
            s.pods.insert(
                key.clone(),
                PodLife {
                    started: Instant::now(),
                },
            );
        }
        Ok(self.store(&mut s, kind, new))
    }

    /// PUT: replaces an object. A `metadata.resourceVersion` in the body
    /// that is not the stored one is a conflict; none means "whatever is
    /// stored", as the API server allows.
    pub fn update(
        &self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut s = self.lock()?;
        let key = (namespace.to_owned(), name.to_owned());
        let current = s
            .object(kind, &key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))?;
        if let Some(n) = body["metadata"]["name"].as_str()
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let wanted = &body["metadata"]["resourceVersion"];
        if wanted.as_str().is_some_and(|rv| !rv.is_empty())
            && *wanted != current["metadata"]["resourceVersion"]
        {
            return Err(ApiError::conflict(kind, name));
        }
        let mut body = body;
        body["metadata"]["name"] = name.into();
        let new = self.admit(&mut s, kind, namespace, Some(&current), body)?;
        self.finish_write(&mut s, kind, current, new, dry_run)
    }

    fn finish_write(
        &self,
        s: &mut State,
        kind: &'static Kind,
        current: Value,
        mut new: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if dry_run {
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            return Ok(new);
        }
        Ok(self.store(s, kind, new))
    }

    /// PATCH (JSON, merge or strategic merge). A `metadata.resourceVersion`
    /// in the result that differs from the stored one is a conflict, as on
    /// a real API server.
    pub fn patch(
        &self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        content_type: &str,
        body: &[u8],
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut s = self.lock()?;
        let key = (namespace.to_owned(), name.to_owned());
        let current = s
            .object(kind, &key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))?;
        let mut next = current.clone();
        crate::patch::apply(&mut next, content_type, body).map_err(|e| match e {
            crate::patch::PatchError::Type(t) => ApiError {
                code: 415,
                reason: "UnsupportedMediaType",
                message: format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {t:?})"),
            },
            other => ApiError {
                code: 422,
                reason: "Invalid",
                message: other.to_string(),
            },
        })?;
        if next["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
            return Err(ApiError::conflict(kind, name));
        }
        if next["metadata"]["name"] != current["metadata"]["name"] {
            return Err(ApiError::invalid(
                kind,
                name,
                &["metadata.name: Invalid value: the name of an object cannot change".into()],
            ));
        }
        let new = self.admit(&mut s, kind, namespace, Some(&current), next)?;
        self.finish_write(&mut s, kind, current, new, dry_run)
    }

    /// Applies a patch to a Deployment (or, with `dry_run`, only says what
    /// it would become).
    pub fn patch_deployment(
        &self,
        namespace: &str,
        name: &str,
        content_type: &str,
        body: &[u8],
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.patch(&DEPLOYMENTS, namespace, name, content_type, body, dry_run)
    }

    /// Changes a Deployment's annotations as many times as the watch
    /// history holds events, so that every earlier resourceVersion is too
    /// old to resume a watch from (410 Gone).
    pub fn expire_watch_history(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        for i in 0..HISTORY_LIMIT {
            let body = format!(r#"{{"metadata":{{"annotations":{{"n":"{i}"}}}}}}"#);
            self.patch_deployment(
                namespace,
                name,
                "application/merge-patch+json",
                body.as_bytes(),
                false,
            )?;
        }
        Ok(())
    }

    /// DELETE: the object, as it was last; what it controls goes with it.
    pub fn delete(
        &self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut s = self.lock()?;
        let key = (namespace.to_owned(), name.to_owned());
        if dry_run {
            return s
                .object(kind, &key)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&kind.qualified(), name));
        }
        self.remove(&mut s, kind, &key)
            .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))
    }

    /// The `status` subresource: writes that change nothing but status.
    pub fn write_status(
        &self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        content_type: Option<&str>,
        body: &[u8],
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut s = self.lock()?;
        let key = (namespace.to_owned(), name.to_owned());
        let current = s
            .object(kind, &key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))?;
        let incoming = match content_type {
            Some(ct) => {
                let mut next = current.clone();
                crate::patch::apply(&mut next, ct, body).map_err(|e| ApiError {
                    code: 422,
                    reason: "Invalid",
                    message: e.to_string(),
                })?;
                next
            }
            None => serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?,
        };
        let wanted = &incoming["metadata"]["resourceVersion"];
        if wanted.as_str().is_some_and(|rv| !rv.is_empty())
            && *wanted != current["metadata"]["resourceVersion"]
        {
            return Err(ApiError::conflict(kind, name));
        }
        let mut new = current.clone();
        new["status"] = incoming["status"].clone();
        check_types(kind, &new)?;
        self.finish_write(&mut s, kind, current, new, dry_run)
    }

    /// Sets `spec.replicas` through the scale subresource; `expected` is
    /// the resourceVersion a PUT of the Scale carried, if any.
    pub fn scale(
        &self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        replicas: i64,
        expected: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut s = self.lock()?;
        let key = (namespace.to_owned(), name.to_owned());
        let current = s
            .object(kind, &key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))?;
        if expected.is_some_and(|rv| !rv.is_empty() && current["metadata"]["resourceVersion"] != rv)
        {
            return Err(ApiError::conflict(kind, name));
        }
        let mut next = current.clone();
        next["spec"]["replicas"] = replicas.into();
        let new = self.admit(&mut s, kind, namespace, Some(&current), next)?;
        self.finish_write(&mut s, kind, current, new, dry_run)
    }

    /// Starts a watch of `kind`: from `since` (replaying the history after
    /// it, or 410 Gone if that is no longer kept), or, without one, from
    /// the current state as synthetic ADDED events, as the API server does
    /// for a watch without a resourceVersion (or with "0").
    pub fn watch(
        &self,
        kind: &'static Kind,
        namespace: Option<&str>,
        since: Option<u64>,
    ) -> Result<Watch, ApiError> {
        let s = self.lock()?;
        // Subscribed under the lock: no change can fall between the
        // backlog and the live events.
        let live = self.events.subscribe();
        let backlog = match since {
            Some(rv) if rv < s.history_floor => {
                return Err(ApiError::gone(rv, s.history_floor + 1));
            }
            Some(rv) => s
                .history
                .iter()
                .filter(|e| e.resource_version > rv && e.resource == kind.resource)
                .cloned()
                .collect(),
            None => s
                .map(kind)
                .map(|m| {
                    m.iter()
                        .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
                        .map(|((ns, _), o)| Event {
                            resource: kind.resource,
                            namespace: ns.clone(),
                            kind: "ADDED",
                            object: o.clone(),
                            resource_version: o["metadata"]["resourceVersion"]
                                .as_str()
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        Ok(Watch {
            backlog,
            live,
            resource_version: s.resource_version,
        })
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
        let spec =
            json!({"replicas": replicas, "progressDeadlineSeconds": progress_deadline_seconds});
        let d = one_container("Deployment", namespace, name, image, spec);
        self.create(&DEPLOYMENTS, namespace, d, false)
            .unwrap_or(Value::Null)
    }

    /// Creates a StatefulSet with one container (rolling updates,
    /// partition 0, ordered pod management: the defaults).
    pub fn create_statefulset(
        &self,
        namespace: &str,
        name: &str,
        image: &str,
        replicas: i64,
    ) -> Result<Value, ApiError> {
        let spec = json!({"replicas": replicas, "serviceName": name});
        let sts = one_container("StatefulSet", namespace, name, image, spec);
        self.create(&STATEFULSETS, namespace, sts, false)
    }

    /// Creates a DaemonSet with one container; it runs one pod on each of
    /// the simulated nodes.
    pub fn create_daemonset(
        &self,
        namespace: &str,
        name: &str,
        image: &str,
    ) -> Result<Value, ApiError> {
        let ds = one_container("DaemonSet", namespace, name, image, json!({}));
        self.create(&DAEMONSETS, namespace, ds, false)
    }

    /// Sets the first container's image of a Deployment, StatefulSet or
    /// DaemonSet (named by kind, resource or short name), as `kubectl set
    /// image` does: a strategic merge patch.
    pub fn set_image(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        image: &str,
    ) -> Result<Value, ApiError> {
        self.set_image_with_cause(kind, namespace, name, image, None)
    }

    /// `set_image`, also recording `change_cause` in
    /// `kubernetes.io/change-cause` as `--record` did.
    pub fn set_image_with_cause(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        image: &str,
        change_cause: Option<&str>,
    ) -> Result<Value, ApiError> {
        let k = workload_kind(kind).ok_or_else(|| ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("the server doesn't have a resource type \"{kind}\""),
        })?;
        let current = self.read(k, namespace, name)?;
        let container = current["spec"]["template"]["spec"]["containers"][0]["name"]
            .as_str()
            .unwrap_or(name)
            .to_owned();
        let mut patch = json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}});
        if let Some(cause) = change_cause {
            patch["metadata"] = json!({"annotations": {CHANGE_CAUSE: cause}});
        }
        self.patch(
            k,
            namespace,
            name,
            "application/strategic-merge-patch+json",
            patch.to_string().as_bytes(),
            false,
        )
    }
}

/// A workload kind as people name it: `deployment`, `deploy`, `sts`,
/// `DaemonSet`, `daemonsets`.
pub fn workload_kind(name: &str) -> Option<&'static Kind> {
    let n = name.to_ascii_lowercase();
    [&DEPLOYMENTS, &STATEFULSETS, &DAEMONSETS, &REPLICASETS]
        .into_iter()
        .find(|k| {
            k.resource == n
                || k.singular == n
                || k.kind.eq_ignore_ascii_case(&n)
                || k.short_names.contains(&n.as_str())
        })
}

/// The strategic merge patch a StatefulSet or DaemonSet ControllerRevision
/// holds, exactly as the controllers' `getPatch` encodes it: the template
/// with `"$patch": "replace"`, keys sorted, no spaces.
pub fn revision_data(template: &Value) -> String {
    let mut t = template.clone();
    t["$patch"] = "replace".into();
    // serde_json's maps keep keys sorted, as Go's encoder of a map does.
    json!({"spec": {"template": t}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_as_the_authorizer_names_them() {
        fn a(m: &str, p: &str, q: &str) -> Option<String> {
            Access::of(m, p, q).map(|a| {
                let ns = a.namespace.unwrap_or_default();
                format!("{} {}/{} in {ns}", a.verb, a.group, a.resource)
            })
        }
        let deployments = "/apis/apps/v1/namespaces/shop/deployments";
        assert_eq!(
            a("GET", deployments, "").unwrap(),
            "list apps/deployments in shop"
        );
        assert_eq!(
            a("GET", deployments, "fieldSelector=x&watch=true").unwrap(),
            "watch apps/deployments in shop"
        );
        let web = "/apis/apps/v1/namespaces/shop/deployments/web";
        assert_eq!(a("GET", web, "").unwrap(), "get apps/deployments in shop");
        assert_eq!(
            a("PATCH", web, "dryRun=All").unwrap(),
            "patch apps/deployments in shop"
        );
        assert_eq!(
            a("PUT", &format!("{web}/scale"), "").unwrap(),
            "update apps/deployments/scale in shop"
        );
        assert_eq!(
            a("POST", "/api/v1/namespaces/ops/events", "").unwrap(),
            "create /events in ops"
        );
        assert_eq!(
            a("GET", "/api/v1/namespaces/ops", "").unwrap(),
            "get /namespaces in "
        );
        assert_eq!(
            a("GET", "/apis/apps/v1/deployments", "").unwrap(),
            "list apps/deployments in "
        );
        assert_eq!(a("GET", "/apis", ""), None);
        assert_eq!(a("GET", "/apis/apps/v1", ""), None);
        assert_eq!(a("GET", "/version", ""), None);
    }

    #[test]
    fn templates_compare_by_meaning() {
        let a = json!({"metadata": {"labels": {"app": "web"}, "creationTimestamp": null}, "spec": {"containers": [{"name": "web", "image": "x", "resources": {}}]}});
        let b = json!({"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}}, "spec": {"containers": [{"name": "web", "image": "x"}]}});
        assert_eq!(normalize(&a), normalize(&b));
    }

    #[test]
    fn fnv_and_safe_encoding_match_go() {
        // Go: fnv.New32() over "a" is 0x050c5d7e; SafeEncodeString maps
        // each byte of the decimal form into the vowel-free alphabet.
        assert_eq!(fnv1_32(b"a"), 0x050c_5d7e);
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        // A v1.33 cluster's StatefulSet revision (the controller's own
        // test data): its name is the hash of its data and collision count.
        let data = r#"{"spec":{"template":{"$patch":"replace","metadata":{"annotations":{"test":"value"},"creationTimestamp":null,"labels":{"app":"foo"}},"spec":{"containers":[{"image":"test","imagePullPolicy":"Always","name":"test","resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","schedulerName":"default-scheduler","securityContext":{},"terminationGracePeriodSeconds":30}}}}"#;
        assert_eq!(sts_revision_hash(data, 0), "c77f6d978");
    }

    #[test]
    fn revision_data_is_the_template_with_a_replace_directive_and_sorted_keys() {
        let mut t = json!({"metadata": {"labels": {"app": "foo"}}, "spec": {"containers": [{"name": "test", "image": "test:latest"}]}});
        canonical_template(&mut t);
        assert_eq!(
            revision_data(&t),
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"app":"foo"}},"spec":{"containers":[{"image":"test:latest","imagePullPolicy":"Always","name":"test","resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","schedulerName":"default-scheduler","securityContext":{},"terminationGracePeriodSeconds":30}}}}"#
        );
    }

    #[test]
    fn a_stale_resource_version_is_a_conflict_with_the_servers_message() {
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
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }

    #[test]
    fn create_update_and_delete_answer_as_the_api_server_does() {
        let c = Cluster::default();
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                           "metadata": {"name": "rollbackd"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
        let dry = c
            .create(&resources::LEASES, "ops", lease.clone(), true)
            .unwrap();
        assert_eq!(dry["metadata"]["namespace"], "ops");
        assert!(c.get("leases", "ops", "rollbackd").is_none(), "dry run");
        let created = c
            .create(&resources::LEASES, "ops", lease.clone(), false)
            .unwrap();
        let again = c
            .create(&resources::LEASES, "ops", lease, false)
            .unwrap_err();
        assert_eq!((again.code, again.reason), (409, "AlreadyExists"));
        assert_eq!(
            again.message,
            "leases.coordination.k8s.io \"rollbackd\" already exists"
        );

        let mut renewed = created.clone();
        renewed["spec"]["holderIdentity"] = "b".into();
        let updated = c
            .update(
                &resources::LEASES,
                "ops",
                "rollbackd",
                renewed.clone(),
                false,
            )
            .unwrap();
        assert_eq!(updated["spec"]["holderIdentity"], "b");
        assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
        let stale = c
            .update(&resources::LEASES, "ops", "rollbackd", renewed, false)
            .unwrap_err();
        assert_eq!(stale.code, 409);
        assert!(stale.message.starts_with(
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"rollbackd\""
        ));
        let missing = c
            .update(&resources::LEASES, "ops", "nope", json!({}), false)
            .unwrap_err();
        assert_eq!(missing.code, 404);

        let wrong = json!({"metadata": {"name": "x"}, "spec": {"leaseDurationSeconds": "long"}});
        assert_eq!(
            c.create(&resources::LEASES, "ops", wrong, false)
                .unwrap_err()
                .code,
            400
        );
        let invalid = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
                             "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "web"}]}}}});
        let e = c.create(&DEPLOYMENTS, "shop", invalid, false).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message
                .starts_with("Deployment.apps \"web\" is invalid: ["),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("spec.template.spec.containers[0].image: Required value")
        );

        c.delete(&resources::LEASES, "ops", "rollbackd", false)
            .unwrap();
        assert_eq!(
            c.delete(&resources::LEASES, "ops", "rollbackd", false)
                .unwrap_err()
                .code,
            404
        );
    }

    #[test]
    fn a_watch_resumes_from_its_resource_version_or_is_gone() {
        let c = Cluster::default();
        let d = c.create_deployment("shop", "web", "img:v1", 1, 600);
        let rv: u64 = d["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        c.set_image("deploy", "shop", "web", "img:v2").unwrap();
        let w = c.watch(&DEPLOYMENTS, Some("shop"), Some(rv)).unwrap();
        assert_eq!(w.backlog.len(), 1);
        assert_eq!(w.backlog[0].kind, "MODIFIED");
        let fresh = c.watch(&DEPLOYMENTS, Some("shop"), None).unwrap();
        assert_eq!(fresh.backlog.len(), 1);
        assert_eq!(fresh.backlog[0].kind, "ADDED");
        c.expire_watch_history("shop", "web").unwrap();
        let e = c.watch(&DEPLOYMENTS, Some("shop"), Some(rv)).err().unwrap();
        assert_eq!((e.code, e.reason), (410, "Expired"));
    }
}
