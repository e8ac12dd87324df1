//! The three patch types the API server accepts, applied to JSON objects:
//! JSON patch (RFC 6902), merge patch (RFC 7386) and the subset of
//! strategic merge that kubectl and the controllers send (lists merged by
//! their merge key, `$setElementOrder`, `null` deletes, and the `$patch`
//! directives `replace` — how a ControllerRevision restores a template —
//! and `delete`).

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the patch is not valid JSON: {0}")]
    Json(String),
    #[error("the JSON patch does not apply: {0}")]
    Apply(String),
    #[error("unsupported patch type {0:?}")]
    Type(String),
}

/// The lists strategic merge merges item by item, with the field that
/// identifies an item (the `patchMergeKey` of the Kubernetes types).
const MERGE_KEYS: &[(&str, &str)] = &[
    ("containers", "name"),
    ("initContainers", "name"),
    ("ephemeralContainers", "name"),
    ("env", "name"),
    ("volumes", "name"),
    ("volumeMounts", "mountPath"),
    ("volumeDevices", "devicePath"),
    ("ports", "containerPort"),
    ("imagePullSecrets", "name"),
    ("ownerReferences", "uid"),
    ("conditions", "type"),
    ("hostAliases", "ip"),
];

fn merge_key(list: &str) -> Option<&'static str> {
    MERGE_KEYS.iter().find(|(l, _)| *l == list).map(|(_, k)| *k)
}

/// Drops `null`s: what a replaced part holds once decoded.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !v.is_null() && k.as_str() != "$patch")
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

pub fn apply(doc: &mut Value, content_type: &str, body: &[u8]) -> Result<(), PatchError> {
    let patch: Value = serde_json::from_slice(body).map_err(|e| PatchError::Json(e.to_string()))?;
    let kind = content_type.split(';').next().unwrap_or("").trim();
    match kind {
        "application/json-patch+json" => {
            let ops: json_patch::Patch =
                serde_json::from_value(patch).map_err(|e| PatchError::Json(e.to_string()))?;
            json_patch::patch(doc, &ops).map_err(|e| PatchError::Apply(e.to_string()))
        }
        "application/merge-patch+json" => {
            json_patch::merge(doc, &patch);
            Ok(())
        }
        "application/strategic-merge-patch+json" => {
            strategic(doc, &patch);
            Ok(())
        }
        other => Err(PatchError::Type(other.to_owned())),
    }
}

fn strategic(doc: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *doc = patch.clone();
        return;
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *doc = without_nulls(patch);
            return;
        }
        Some("delete") => {
            *doc = Value::Null;
            return;
        }
        _ => {}
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(d) = doc else { return };
    for (key, value) in p {
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            d.remove(key);
            continue;
        }
        match (merge_key(key), value, d.get_mut(key)) {
            (Some(mk), Value::Array(items), Some(Value::Array(existing))) => {
                for item in items {
                    let id = item.get(mk);
                    let found = existing
                        .iter()
                        .position(|e| id.is_some() && e.get(mk) == id);
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (found, delete) {
                        (Some(i), true) => {
                            existing.remove(i);
                        }
                        (None, true) => {}
                        (Some(i), false) => strategic(&mut existing[i], item),
                        (None, false) => existing.push(without_nulls(item)),
                    }
                }
                if let Some(Value::Array(order)) = p.get(&format!("$setElementOrder/{key}")) {
                    let rank = |v: &Value| {
                        order
                            .iter()
                            .position(|o| o.get(mk) == v.get(mk))
                            .unwrap_or(usize::MAX)
                    };
                    existing.sort_by_key(rank);
                }
            }
            (_, Value::Object(_), Some(target)) if target.is_object() => {
                strategic(target, value);
                if target.is_null() {
                    d.remove(key);
                }
            }
            _ => {
                let mut v = value.clone();
                strategic_new(&mut v);
                if !v.is_null() {
                    d.insert(key.clone(), v);
                }
            }
        }
    }
}

/// A part of the patch with nothing under it yet: its directives still
/// apply, to nothing.
fn strategic_new(v: &mut Value) {
    if v.is_object() {
        let patch = v.clone();
        *v = Value::Null;
        strategic(v, &patch);
        if let Value::Object(m) = v {
            m.retain(|k, _| !k.starts_with('$'));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_updates_a_container_by_name_and_keeps_the_others() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "img:v1"}, {"name": "side", "image": "s:1"}
        ]}}}});
        let p = br#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"},{"name":"side"}],"containers":[{"image":"img:v2","name":"web"}]}}}}"#;
        apply(&mut d, "application/strategic-merge-patch+json", p).unwrap();
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "img:v2"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][1]["image"],
            "s:1"
        );
        apply(
            &mut d,
            "application/strategic-merge-patch+json",
            br#"{"spec":{"paused":true}}"#,
        )
        .unwrap();
        assert_eq!(d["spec"]["paused"], true);
        apply(
            &mut d,
            "application/strategic-merge-patch+json",
            br#"{"spec":{"paused":null}}"#,
        )
        .unwrap();
        assert!(d["spec"].get("paused").is_none());
    }

    #[test]
    fn a_replace_directive_replaces_the_whole_part_as_a_revision_restores_it() {
        let mut d = json!({"spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web", "extra": "x"}},
                          "spec": {"containers": [{"name": "web", "image": "img:v2"}, {"name": "side", "image": "s"}]}}}});
        let p = br#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"app":"web"}},"spec":{"containers":[{"image":"img:v1","name":"web","resources":{}}]}}}}"#;
        apply(&mut d, "application/strategic-merge-patch+json", p).unwrap();
        assert_eq!(
            d,
            json!({"spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "web", "image": "img:v1", "resources": {}}]}}}})
        );
        let p = br#"{"spec":{"template":{"spec":{"containers":[{"name":"web","$patch":"delete"}]}}},"metadata":{"$patch":"delete"}}"#;
        apply(&mut d, "application/strategic-merge-patch+json", p).unwrap();
        assert_eq!(d["spec"]["template"]["spec"]["containers"], json!([]));
    }

    #[test]
    fn json_and_merge_patches_apply() {
        let mut d = json!({"spec": {"replicas": 1, "template": {"x": 1}}, "metadata": {"annotations": {"a": "1"}}});
        apply(
            &mut d,
            "application/json-patch+json",
            br#"[{"op":"replace","path":"/spec/template","value":{"y":2}}]"#,
        )
        .unwrap();
        assert_eq!(d["spec"]["template"], json!({"y": 2}));
        apply(
            &mut d,
            "application/merge-patch+json",
            br#"{"spec":{"replicas":3}}"#,
        )
        .unwrap();
        assert_eq!(d["spec"]["replicas"], 3);
        assert!(
            apply(
                &mut d,
                "application/json-patch+json",
                br#"[{"op":"replace","path":"/nope/x","value":1}]"#
            )
            .is_err()
        );
        assert!(apply(&mut d, "text/plain", b"{}").is_err());
    }
}
