//! The simulator's HTTP API: what kubectl and kube clients ask of an API
//! server for Deployments and ReplicaSets — version, aggregated discovery,
//! get, list, watch, patch (JSON, merge, strategic merge, `dryRun`) and the
//! scale subresource. Errors are `Status` objects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::cluster::{ApiError, Cluster};

const DISCOVERY: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn router(cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api", get(core_discovery))
        .route("/api/v1/namespaces/{ns}", get(namespace))
        .route("/apis", get(apis_discovery))
        .route("/apis/apps/v1/namespaces/{ns}/{resource}", get(list))
        .route(
            "/apis/apps/v1/namespaces/{ns}/{resource}/{name}",
            get(get_one).patch(patch),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
            get(get_scale).patch(patch_scale).put(put_scale),
        )
        .route("/app/{ns}/{name}/health", get(app_health))
        .route("/app/{ns}/{name}/metrics", get(app_metrics))
        .layer(axum::middleware::from_fn_with_state(
            cluster.clone(),
            faults,
        ))
        .fallback(|| async {
            error(ApiError {
                code: 404,
                reason: "NotFound",
                message: "the server could not find the requested resource".into(),
            })
        })
        .with_state(cluster)
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error(e: ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

/// Injects the cluster's configured faults into API requests (never into
/// the application side, which stands for the workloads themselves).
async fn faults(
    State(c): State<Arc<Cluster>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.uri().path().starts_with("/app/") {
        return next.run(req).await;
    }
    let (latency, fault) = match c.faults.lock() {
        Ok(mut f) => {
            let fault = if f.unavailable > 0 {
                f.unavailable -= 1;
                Some(503)
            } else if f.throttled > 0 {
                f.throttled -= 1;
                Some(429)
            } else {
                None
            };
            (f.latency, fault)
        }
        Err(_) => (Duration::ZERO, None),
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(503) => error(ApiError {
            code: 503,
            reason: "ServiceUnavailable",
            message: "the server is currently unable to handle the request".into(),
        }),
        Some(_) => {
            let mut r = error(ApiError {
                code: 429,
                reason: "TooManyRequests",
                message: "too many requests, please try again later".into(),
            });
            r.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            r
        }
        None => next.run(req).await,
    }
}

/// A workload's health endpoint: answered by whichever pods serve traffic.
async fn app_health(
    State(c): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match c.serving_image(&ns, &name) {
        Some(image) => (StatusCode::OK, format!("ok {image}\n")).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no ready pods\n").into_response(),
    }
}

/// A workload's metrics, as its pods export them for Prometheus.
async fn app_metrics(
    State(c): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let (ok, errors) = c.traffic(&ns, &name);
    let body = format!(
        "# TYPE http_requests_total counter\nhttp_requests_total{{namespace=\"{ns}\",deployment=\"{name}\",status=\"200\"}} {ok}\nhttp_requests_total{{namespace=\"{ns}\",deployment=\"{name}\",status=\"500\"}} {errors}\n"
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"major": "1", "minor": "32", "gitVersion": "v1.32.4", "platform": "linux/amd64", "goVersion": "go1.23"}),
    )
}

async fn core_discovery() -> Response {
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "items": []});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, DISCOVERY)],
        body.to_string(),
    )
        .into_response()
}

/// Every namespace exists: kubectl asks after a NotFound, to tell a
/// missing object from a missing namespace.
async fn namespace(Path(ns): Path<String>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns}, "status": {"phase": "Active"}}),
    )
}

async fn apis_discovery() -> Response {
    let resource = |name: &str, singular: &str, kind: &str, short: &[&str], subresources: Value| {
        json!({"resource": name, "singularResource": singular, "responseKind": {"group": "apps", "version": "v1", "kind": kind},
               "scope": "Namespaced", "shortNames": short, "categories": ["all"],
               "verbs": ["get", "list", "watch", "patch", "update"], "subresources": subresources})
    };
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "items": [
        {"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": [
            resource("deployments", "deployment", "Deployment", &["deploy"], json!([
                {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]},
                {"subresource": "status", "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"}, "verbs": ["get", "patch", "update"]}])),
            resource("replicasets", "replicaset", "ReplicaSet", &["rs"], json!([]))
        ]}]}
    ]});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, DISCOVERY)],
        body.to_string(),
    )
        .into_response()
}

fn resource_name(resource: &str) -> Option<&'static str> {
    match resource {
        "deployments" => Some("deployments"),
        "replicasets" => Some("replicasets"),
        _ => None,
    }
}

async fn get_one(
    State(c): State<Arc<Cluster>>,
    Path((ns, resource, name)): Path<(String, String, String)>,
) -> Response {
    let Some(r) = resource_name(&resource) else {
        return error(ApiError::not_found(&resource, &name));
    };
    match c.get(r, &ns, &name) {
        Some(o) => json_response(StatusCode::OK, &o),
        None => error(ApiError::not_found(&format!("{r}.apps"), &name)),
    }
}

async fn list(
    State(c): State<Arc<Cluster>>,
    Path((ns, resource)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(r) = resource_name(&resource) else {
        return error(ApiError::not_found(&resource, ""));
    };
    let name = q
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="))
        .map(str::to_owned);
    let selector = q.get("labelSelector").cloned();
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(300u64);
        return watch(c, r, ns, name, selector, Duration::from_secs(timeout));
    }
    let (items, rv) = c.list(r, &ns, selector.as_deref(), name.as_deref());
    let kind = if r == "deployments" {
        "DeploymentList"
    } else {
        "ReplicaSetList"
    };
    json_response(
        StatusCode::OK,
        &json!({"kind": kind, "apiVersion": "apps/v1", "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
    )
}

/// A watch: one JSON event per line, for as long as the client asked.
fn watch(
    c: Arc<Cluster>,
    resource: &'static str,
    ns: String,
    name: Option<String>,
    selector: Option<String>,
    timeout: Duration,
) -> Response {
    let rx = c.subscribe();
    // A dropped watch, when the faults say so: clients must re-watch.
    let lifetime = c.faults.lock().ok().and_then(|f| f.watch_lifetime);
    let deadline = tokio::time::Instant::now() + lifetime.map_or(timeout, |l| l.min(timeout));
    let wanted: Vec<(String, String)> = selector
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let stream = futures_util::stream::unfold(rx, move |mut rx| {
        let (ns, name, wanted) = (ns.clone(), name.clone(), wanted.clone());
        async move {
            loop {
                let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Ok(e)) => e,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                    _ => return None,
                };
                let o = &event.object;
                let matches = event.resource == resource
                    && event.namespace == ns
                    && name.as_deref().is_none_or(|n| o["metadata"]["name"] == n)
                    && wanted
                        .iter()
                        .all(|(k, v)| o["metadata"]["labels"][k].as_str() == Some(v.as_str()));
                if matches {
                    let line = format!("{}\n", json!({"type": event.kind, "object": o}));
                    return Some((Ok::<_, std::io::Error>(Bytes::from(line)), rx));
                }
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn patch(
    State(c): State<Arc<Cluster>>,
    Path((ns, resource, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if resource != "deployments" {
        return error(ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!("{resource} cannot be patched here"),
        });
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let dry_run = q.get("dryRun").is_some_and(|d| d == "All");
    match c.patch_deployment(&ns, &name, &content_type, &body, dry_run) {
        Ok(d) => json_response(StatusCode::OK, &d),
        Err(e) => error(e),
    }
}

fn scale_of(d: &Value) -> Value {
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
           "metadata": {"name": d["metadata"]["name"], "namespace": d["metadata"]["namespace"], "uid": d["metadata"]["uid"],
                        "resourceVersion": d["metadata"]["resourceVersion"]},
           "spec": {"replicas": d["spec"]["replicas"]},
           "status": {"replicas": d["status"]["replicas"], "selector": format!("app={}", d["metadata"]["name"].as_str().unwrap_or(""))}})
}

async fn get_scale(
    State(c): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match c.get("deployments", &ns, &name) {
        Some(d) => json_response(StatusCode::OK, &scale_of(&d)),
        None => error(ApiError::not_found("deployments.apps", &name)),
    }
}

fn set_replicas(c: &Cluster, ns: &str, name: &str, replicas: Option<i64>) -> Response {
    let Some(n) = replicas else {
        return error(ApiError {
            code: 422,
            reason: "Invalid",
            message: "spec.replicas is required".into(),
        });
    };
    let body = json!({"spec": {"replicas": n}}).to_string();
    match c.patch_deployment(
        ns,
        name,
        "application/merge-patch+json",
        body.as_bytes(),
        false,
    ) {
        Ok(d) => json_response(StatusCode::OK, &scale_of(&d)),
        Err(e) => error(e),
    }
}

async fn patch_scale(
    State(c): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    set_replicas(&c, &ns, &name, v["spec"]["replicas"].as_i64())
}

async fn put_scale(
    State(c): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(d) = c.get("deployments", &ns, &name)
        && v["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| d["metadata"]["resourceVersion"] != rv)
    {
        return error(ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been modified"
            ),
        });
    }
    set_replicas(&c, &ns, &name, v["spec"]["replicas"].as_i64())
}
