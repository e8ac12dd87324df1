//! Server-side printing: the `Table` answers kubectl asks for (`Accept:
//! application/json;as=Table;g=meta.k8s.io;v=v1`) so that `kubectl get`
//! prints the columns a cluster prints — READY, STATUS, RESTARTS for
//! pods, UP-TO-DATE for Deployments, HOLDER for Leases.

use serde_json::{Value, json};

use crate::cluster::partial_metadata;
use crate::resources::Kind;
use crate::selector::LabelSelector;

/// kubectl's short ages (`duration.HumanDuration`): 45s, 3m20s, 5h, 2d.
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else {
        format!("{d}d")
    }
}

fn age(t: &Value) -> String {
    let Some(ts) = t.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    human_age(jiff::Timestamp::now().duration_since(ts).as_secs())
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

fn containers(template_spec: &Value, field: &str) -> String {
    template_spec["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| text(&c[field]))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A pod's STATUS column: the phase, or why its containers wait.
fn pod_status(p: &Value) -> String {
    let waiting = p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| c["state"]["waiting"]["reason"].as_str());
    waiting
        .map(str::to_owned)
        .unwrap_or_else(|| text(&p["status"]["phase"]))
}

/// (name, type, priority) of each column.
fn columns(kind: &Kind) -> Vec<(&'static str, &'static str, u8)> {
    match kind.resource {
        "pods" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "deployments" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "replicasets" => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "statefulsets" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        "daemonsets" => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "controllerrevisions" => vec![
            ("Name", "string", 0),
            ("Controller", "string", 0),
            ("Revision", "integer", 0),
            ("Age", "string", 0),
        ],
        "leases" => vec![
            ("Name", "string", 0),
            ("Holder", "string", 0),
            ("Age", "string", 0),
        ],
        "events" => vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Subobject", "string", 1),
            ("Source", "string", 1),
            ("Message", "string", 0),
            ("First Seen", "string", 1),
            ("Count", "string", 1),
            ("Name", "string", 1),
        ],
        "namespaces" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Age", "string", 0),
        ],
        _ => vec![("Name", "string", 0), ("Age", "string", 0)],
    }
}

fn cells(kind: &Kind, o: &Value) -> Vec<Value> {
    let name = json!(o["metadata"]["name"]);
    let created = age(&o["metadata"]["creationTimestamp"]);
    let st = &o["status"];
    let spec = &o["spec"];
    let tspec = &spec["template"]["spec"];
    let selector = || LabelSelector::from_spec(&spec["selector"]).to_query();
    match kind.resource {
        "pods" => {
            let statuses = st["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = spec["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|c| int(&c["restartCount"])).sum();
            let none = || json!("<none>");
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                json!(created),
                st.get("podIP").cloned().unwrap_or_else(none),
                spec.get("nodeName").cloned().unwrap_or_else(none),
                none(),
                none(),
            ]
        }
        "deployments" => vec![
            name,
            json!(format!(
                "{}/{}",
                int(&st["readyReplicas"]),
                int(&spec["replicas"])
            )),
            json!(int(&st["updatedReplicas"])),
            json!(int(&st["availableReplicas"])),
            json!(created),
            json!(containers(tspec, "name")),
            json!(containers(tspec, "image")),
            json!(selector()),
        ],
        "replicasets" => vec![
            name,
            json!(int(&spec["replicas"])),
            json!(int(&st["replicas"])),
            json!(int(&st["readyReplicas"])),
            json!(created),
            json!(containers(tspec, "name")),
            json!(containers(tspec, "image")),
            json!(selector()),
        ],
        "statefulsets" => vec![
            name,
            json!(format!(
                "{}/{}",
                int(&st["readyReplicas"]),
                int(&spec["replicas"])
            )),
            json!(created),
            json!(containers(tspec, "name")),
            json!(containers(tspec, "image")),
        ],
        "daemonsets" => {
            let node_selector = tspec["nodeSelector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(int(&st["desiredNumberScheduled"])),
                json!(int(&st["currentNumberScheduled"])),
                json!(int(&st["numberReady"])),
                json!(int(&st["updatedNumberScheduled"])),
                json!(int(&st["numberAvailable"])),
                json!(node_selector),
                json!(created),
                json!(containers(tspec, "name")),
                json!(containers(tspec, "image")),
                json!(selector()),
            ]
        }
        "controllerrevisions" => {
            let controller = o["metadata"]["ownerReferences"]
                .as_array()
                .and_then(|rs| rs.iter().find(|r| r["controller"] == true))
                .map(|r| {
                    let group = text(&r["apiVersion"]);
                    let group = group.split_once('/').map_or("", |(g, _)| g).to_owned();
                    format!(
                        "{}.{group}/{}",
                        text(&r["kind"]).to_lowercase(),
                        text(&r["name"])
                    )
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(controller),
                json!(int(&o["revision"])),
                json!(created),
            ]
        }
        "leases" => vec![
            name,
            json!(spec["holderIdentity"].as_str().unwrap_or("")),
            json!(created),
        ],
        "events" => {
            let involved = &o["involvedObject"];
            vec![
                json!(age(&o["lastTimestamp"])),
                o["type"].clone(),
                o["reason"].clone(),
                json!(format!(
                    "{}/{}",
                    text(&involved["kind"]).to_lowercase(),
                    text(&involved["name"])
                )),
                json!(text(&involved["fieldPath"])),
                json!(text(&o["source"]["component"])),
                o["message"].clone(),
                json!(age(&o["firstTimestamp"])),
                json!(int(&o["count"]).to_string()),
                name,
            ]
        }
        "namespaces" => vec![name, json!("Active"), json!(created)],
        _ => vec![name, json!(created)],
    }
}

/// The `Table` for a list (or one object) of `kind`. `include` is the
/// request's `includeObject`: `None`, `Object` or (the default) metadata.
pub fn table(kind: &Kind, items: &[Value], resource_version: Option<u64>, include: &str) -> Value {
    let definitions: Vec<Value> = columns(kind)
        .into_iter()
        .map(|(name, kind, priority)| {
            json!({"name": name, "type": kind, "format": if name == "Name" { "name" } else { "" },
                   "description": "", "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => partial_metadata(o),
            };
            json!({"cells": cells(kind, o), "object": object})
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = rv.to_string().into();
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
           "columnDefinitions": definitions, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        for (s, want) in [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (4 * 3600 + 60, "4h1m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (20 * 86400, "20d"),
        ] {
            assert_eq!(human_age(s), want, "{s}");
        }
    }
}
