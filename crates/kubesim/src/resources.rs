//! The resources the simulator serves, described once: their group,
//! version, kind, short names and verbs feed discovery, URL resolution and
//! list kinds alike, so that what kubectl discovers is what is served.
//! Everything else in the simulator builds on these definitions; they
//! depend on nothing in it.

use serde_json::{Value, json};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_resolves_by_its_url() {
        for k in KINDS {
            assert_eq!(lookup(k.group, k.version, k.resource), Some(*k));
        }
        assert_eq!(lookup("apps", "v1", "pods"), None);
    }
}
