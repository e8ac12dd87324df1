//! The resources the simulator serves, described once: their group,
//! version, kind, short names and verbs feed discovery, URL resolution and
//! list kinds alike, so that what kubectl discovers is what is served. Also
//! the label and field selectors that lists and watches filter by.

use serde_json::{Value, json};

use super::cluster::ApiError;

/// One served resource.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// The plural resource name in URLs (`deployments`).
    pub resource: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    /// Writes to the main resource leave `status` alone; the controllers
    /// (and the `status` subresource) own it.
    pub status_subresource: bool,
    pub scale_subresource: bool,
    /// Spec changes bump `metadata.generation`.
    pub has_generation: bool,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name errors use: `deployments.apps`, `pods`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    pub fn verbs(&self) -> &'static [&'static str] {
        if self.namespaced {
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ][..]
        } else {
            &["get", "list", "watch"][..]
        }
    }
}

const ALL: &[&str] = &["all"];

pub const PODS: Kind = Kind {
    resource: "pods",
    singular: "pod",
    kind: "Pod",
    group: "",
    version: "v1",
    short_names: &["po"],
    categories: ALL,
    namespaced: true,
    status_subresource: true,
    scale_subresource: false,
    has_generation: false,
};
pub const EVENTS: Kind = Kind {
    resource: "events",
    singular: "event",
    kind: "Event",
    group: "",
    version: "v1",
    short_names: &["ev"],
    categories: &[],
    namespaced: true,
    status_subresource: false,
    scale_subresource: false,
    has_generation: false,
};
pub const NAMESPACES: Kind = Kind {
    resource: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    group: "",
    version: "v1",
    short_names: &["ns"],
    categories: &[],
    namespaced: false,
    status_subresource: false,
    scale_subresource: false,
    has_generation: false,
};
pub const DEPLOYMENTS: Kind = Kind {
    resource: "deployments",
    singular: "deployment",
    kind: "Deployment",
    group: "apps",
    version: "v1",
    short_names: &["deploy"],
    categories: ALL,
    namespaced: true,
    status_subresource: true,
    scale_subresource: true,
    has_generation: true,
};
pub const REPLICASETS: Kind = Kind {
    resource: "replicasets",
    singular: "replicaset",
    kind: "ReplicaSet",
    group: "apps",
    version: "v1",
    short_names: &["rs"],
    categories: ALL,
    namespaced: true,
    status_subresource: true,
    scale_subresource: true,
    has_generation: true,
};
pub const STATEFULSETS: Kind = Kind {
    resource: "statefulsets",
    singular: "statefulset",
    kind: "StatefulSet",
    group: "apps",
    version: "v1",
    short_names: &["sts"],
    categories: ALL,
    namespaced: true,
    status_subresource: true,
    scale_subresource: true,
    has_generation: true,
};
pub const DAEMONSETS: Kind = Kind {
    resource: "daemonsets",
    singular: "daemonset",
    kind: "DaemonSet",
    group: "apps",
    version: "v1",
    short_names: &["ds"],
    categories: ALL,
    namespaced: true,
    status_subresource: true,
    scale_subresource: false,
    has_generation: true,
};
pub const CONTROLLERREVISIONS: Kind = Kind {
    resource: "controllerrevisions",
    singular: "controllerrevision",
    kind: "ControllerRevision",
    group: "apps",
    version: "v1",
    short_names: &[],
    categories: &[],
    namespaced: true,
    status_subresource: false,
    scale_subresource: false,
    has_generation: false,
};
pub const LEASES: Kind = Kind {
    resource: "leases",
    singular: "lease",
    kind: "Lease",
    group: "coordination.k8s.io",
    version: "v1",
    short_names: &[],
    categories: &[],
    namespaced: true,
    status_subresource: false,
    scale_subresource: false,
    has_generation: false,
};

/// Every served resource, in discovery order.
pub const KINDS: &[&Kind] = &[
    &PODS,
    &EVENTS,
    &NAMESPACES,
    &DEPLOYMENTS,
    &REPLICASETS,
    &STATEFULSETS,
    &DAEMONSETS,
    &CONTROLLERREVISIONS,
    &LEASES,
];

/// The groups besides core, with their one version each.
pub const GROUPS: &[&str] = &["apps", "coordination.k8s.io"];

/// The resource served at `group/version/resource`.
pub fn lookup(group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.group == group && k.version == version && k.resource == resource)
}

/// The resource named by its plural (`deployments`), as the cluster's
/// helpers take it.
pub fn by_resource(resource: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| k.resource == resource)
}

/// One version's resources, as aggregated discovery (v2) lists them.
pub fn aggregated_resources(group: &str) -> Value {
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.group == group)
        .map(|k| {
            let mut subresources = Vec::new();
            if k.status_subresource {
                subresources.push(json!({"subresource": "status",
                    "responseKind": {"group": k.group, "version": k.version, "kind": k.kind},
                    "verbs": ["get", "patch", "update"]}));
            }
            if k.scale_subresource {
                subresources.push(json!({"subresource": "scale",
                    "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                    "verbs": ["get", "patch", "update"]}));
            }
            json!({"resource": k.resource, "singularResource": k.singular,
                   "responseKind": {"group": k.group, "version": k.version, "kind": k.kind},
                   "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
                   "shortNames": k.short_names, "categories": k.categories,
                   "verbs": k.verbs(), "subresources": subresources})
        })
        .collect();
    json!([{"version": "v1", "resources": resources, "freshness": "Current"}])
}

/// One group version's resources, as legacy discovery (`APIResourceList`)
/// lists them.
pub fn resource_list(group: &str) -> Value {
    let mut resources = Vec::new();
    for k in KINDS.iter().filter(|k| k.group == group) {
        resources.push(
            json!({"name": k.resource, "singularName": k.singular, "namespaced": k.namespaced,
                              "kind": k.kind, "verbs": k.verbs(), "shortNames": k.short_names,
                              "categories": k.categories}),
        );
        if k.status_subresource {
            resources.push(json!({"name": format!("{}/status", k.resource), "singularName": "",
                                  "namespaced": k.namespaced, "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        }
        if k.scale_subresource {
            resources.push(json!({"name": format!("{}/scale", k.resource), "singularName": "",
                                  "namespaced": k.namespaced, "group": "autoscaling", "version": "v1",
                                  "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    let group_version = if group.is_empty() {
        "v1".to_owned()
    } else {
        format!("{group}/v1")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector (`app=web,tier!=db,env in (a,b),!legacy`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

/// Splits on the commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn bad_selector(s: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: invalid label selector {s:?}"
    ))
}

fn set_values(s: &str, rest: &str) -> Result<Vec<String>, ApiError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad_selector(s))?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let req = if let Some(key) = p.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_owned())
            } else if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = p.split_once("==") {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = p.split_once('=') {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, rest)) = p.split_once(" notin ") {
                Requirement::NotIn(k.trim().to_owned(), set_values(s, rest)?)
            } else if let Some((k, rest)) = p.split_once(" in ") {
                Requirement::In(k.trim().to_owned(), set_values(s, rest)?)
            } else if p.contains([' ', '(', ')']) {
                return Err(bad_selector(s));
            } else {
                Requirement::Exists(p.to_owned())
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// The selector of a workload's `spec.selector` (`matchLabels` and
    /// `matchExpressions`).
    pub fn from_spec(selector: &Value) -> Self {
        let mut reqs = Vec::new();
        if let Some(m) = selector["matchLabels"].as_object() {
            for (k, v) in m {
                reqs.push(Requirement::Equals(
                    k.clone(),
                    v.as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        for e in selector["matchExpressions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let key = e["key"].as_str().unwrap_or("").to_owned();
            let values: Vec<String> = e["values"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            reqs.push(match e["operator"].as_str() {
                Some("In") => Requirement::In(key, values),
                Some("NotIn") => Requirement::NotIn(key, values),
                Some("DoesNotExist") => Requirement::DoesNotExist(key),
                _ => Requirement::Exists(key),
            });
        }
        Self(reqs)
    }

    pub fn matches(&self, labels: &Value) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }

    /// The selector as the Scale subresource and kubectl print it.
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = self
            .0
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::NotEquals(k, v) => format!("{k}!={v}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        parts.sort();
        parts.join(",")
    }
}

/// A field selector: the fields every object has (`metadata.name`,
/// `metadata.namespace`), plus the few that kubectl uses on events
/// (`involvedObject.*`, `type`, `reason`) and pods (`spec.nodeName`,
/// `status.phase`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            let known = matches!(
                field,
                "metadata.name"
                    | "metadata.namespace"
                    | "type"
                    | "reason"
                    | "spec.nodeName"
                    | "status.phase"
            ) || field.starts_with("involvedObject.");
            if !known {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = object
                .pointer(&pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_of_every_form_match_as_on_a_server() {
        let labels = json!({"app": "web", "tier": "front", "env": "prod"});
        for (s, want) in [
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app!=web", false),
            ("env in (prod, staging)", true),
            ("env notin (prod)", false),
            ("tier", true),
            ("!legacy", true),
            ("!tier", false),
            ("app=db", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(s).unwrap().matches(&labels),
                want,
                "{s}"
            );
        }
        assert!(LabelSelector::parse("env in prod").is_err());
    }

    #[test]
    fn field_selectors_match_names_and_refuse_unknown_fields() {
        let o = json!({"metadata": {"name": "web", "namespace": "shop"}, "involvedObject": {"kind": "Deployment"}});
        assert!(
            FieldSelector::parse("metadata.name=web")
                .unwrap()
                .matches(&o)
        );
        assert!(
            FieldSelector::parse("involvedObject.kind=Deployment,metadata.name!=x")
                .unwrap()
                .matches(&o)
        );
        assert!(
            !FieldSelector::parse("metadata.name=db")
                .unwrap()
                .matches(&o)
        );
        assert_eq!(
            FieldSelector::parse("spec.replicas=1").unwrap_err().code,
            400
        );
    }

    #[test]
    fn every_kind_resolves_by_its_url() {
        for k in KINDS {
            assert_eq!(lookup(k.group, k.version, k.resource), Some(*k));
        }
        assert_eq!(lookup("apps", "v1", "pods"), None);
    }
}
