//! Webhooks: the event as a JSON document of a versioned schema
//! (`rollbackd.event/v1`), POSTed with the configured headers and, with
//! `hmac_secret`, signed: `X-Rollbackd-Signature: sha256=HEX`, the
//! HMAC-SHA256 of the raw body under the secret, so that the receiver can
//! prove the sender and that the body was not altered. `id` is the same on
//! every retry of one notification: receivers deduplicate on it.

use serde_json::{Value, json};

use super::render;
use super::{Event, SendError};
use crate::config::WebhookNotifier;

pub const SIGNATURE_HEADER: &str = "X-Rollbackd-Signature";
pub const ID_HEADER: &str = "X-Rollbackd-Id";
pub const EVENT_HEADER: &str = "X-Rollbackd-Event";

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms),
    )
    .to_string()
}

/// The JSON document a webhook receives. Fields that do not apply are null.
pub fn document(e: &Event, notification_id: &str) -> Value {
    let t = &e.timings;
    let checks: Vec<Value> = e
        .checks
        .iter()
        .map(|c| {
            json!({
                "kind": c.kind, "name": c.name, "result": c.result,
                "value": c.value.filter(|v| v.is_finite()), "threshold": c.threshold,
                "labels": c.labels, "detail": c.detail,
                "query": c.query, "graph_url": c.graph_url,
            })
        })
        .collect();
    json!({
        "schema": super::SCHEMA,
        "id": notification_id,
        "event_id": e.id,
        "event": e.kind.as_str(),
        "ts": rfc3339_ms(e.ts),
        "host": e.host,
        "watch": e.watch,
        "target": e.target,
        "target_kind": e.target_kind,
        "rollback_id": e.rollback_id,
        "from_revision": e.from_revision,
        "to_revision": e.to_revision,
        "from_images": e.from_images,
        "to_images": e.to_images,
        "trigger": e.trigger,
        "operator": e.operator,
        "outcome": e.outcome,
        "dry_run": e.dry_run,
        "reason": e.reason,
        "summary": render::headline(e),
        "severity": render::severity(e),
        "checks": checks,
        "errors": e.errors,
        "timings": {
            "revision_since": t.revision_since.map(rfc3339_ms),
            "started_at": t.started_at.map(rfc3339_ms),
            "finished_at": t.finished_at.map(rfc3339_ms),
            "duration_ms": t.started_at.zip(t.finished_at).map(|(s, f)| f.saturating_sub(s)),
        },
        "report": e.report.as_ref().map(|r| json!({ "path": r.path, "markdown": r.markdown })),
    })
}

/// `sha256=HEX` of the HMAC-SHA256 of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub async fn send(
    n: &WebhookNotifier,
    notification_id: &str,
    e: &Event,
    http: &reqwest::Client,
) -> Result<String, SendError> {
    let body = serde_json::to_vec(&document(e, notification_id))
        .map_err(|err| SendError(format!("cannot encode the event: {err}")))?;
    let mut req = http.post(n.url.expose()).timeout(n.timeout);
    for (k, v) in &n.headers {
        req = req.header(k.as_str(), v.expose());
    }
    req = req
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(ID_HEADER, notification_id)
        .header(EVENT_HEADER, e.kind.as_str());
    if let Some(key) = &n.hmac_secret {
        req = req.header(SIGNATURE_HEADER, signature(key.expose().as_bytes(), &body));
    }
    let resp = req.body(body).send().await.map_err(super::http_error)?;
    super::http_answer(resp).await
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_document_has_every_field_of_the_schema_null_where_it_does_not_apply() {
        let d = document(&fixtures::rejected(), "n-1");
        for key in [
            "schema",
            "id",
            "event",
            "ts",
            "host",
            "watch",
            "target",
            "rollback_id",
            "from_revision",
            "to_revision",
            "trigger",
            "outcome",
            "checks",
            "report",
        ] {
            assert!(d.get(key).is_some(), "{key} missing");
        }
        assert_eq!(d["schema"], "rollbackd.event/v1");
        assert_eq!(d["id"], "n-1");
        assert_eq!(d["event"], "config_rejected");
        assert!(d["watch"].is_null());
        assert!(d["report"].is_null());
        assert_eq!(d["errors"].as_array().unwrap().len(), 2);
        assert!(!d.to_string().contains("tok-secret-1234"));
    }

    #[test]
    fn snapshot_of_a_started_rollback() {
        let d = document(
            &fixtures::started(),
            &format!("{}-0a1b2c3d-audit", fixtures::T0),
        );
        super::super::snapshot::assert_snapshot(
            "webhook-rollback-started.json",
            &serde_json::to_string_pretty(&d).unwrap(),
        );
    }
}
