//! The three patch types the API server accepts, applied to JSON objects:
//! JSON patch (RFC 6902), merge patch (RFC 7386) and the subset of
//! strategic merge that kubectl sends (lists of named items merged by name,
//! `$setElementOrder`, `null` deletes).

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

/// Lists that strategic merge merges by the `name` of their items.
const MERGE_BY_NAME: &[&str] = &[
    "containers",
    "initContainers",
    "env",
    "volumes",
    "volumeMounts",
    "ports",
    "imagePullSecrets",
];

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
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(d) = doc else { return };
    for (key, value) in p {
        if key.starts_with("$setElementOrder/") || key.starts_with("$retainKeys") {
            continue;
        }
        if value.is_null() {
            d.remove(key);
            continue;
        }
        match (MERGE_BY_NAME.contains(&key.as_str()), value, d.get_mut(key)) {
            (true, Value::Array(items), Some(Value::Array(existing))) => {
                for item in items {
                    let name = item.get("name");
                    match existing
                        .iter_mut()
                        .find(|e| name.is_some() && e.get("name") == name)
                    {
                        Some(e) => strategic(e, item),
                        None => existing.push(item.clone()),
                    }
                }
                if let Some(Value::Array(order)) = p.get(&format!("$setElementOrder/{key}")) {
                    let rank = |v: &Value| {
                        order
                            .iter()
                            .position(|o| o.get("name") == v.get("name"))
                            .unwrap_or(usize::MAX)
                    };
                    existing.sort_by_key(rank);
                }
            }
            (_, Value::Object(_), Some(target)) if target.is_object() => strategic(target, value),
            _ => {
                d.insert(key.clone(), value.clone());
            }
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
