//! The simulator's HTTP API: what kubectl and kube clients ask of an API
//! server — version, discovery (aggregated v2 and the legacy documents),
//! and for every resource in `resources`: get, list (with label and field
//! selectors, and as a `Table` for kubectl's printing), watch (resumable
//! from a resourceVersion, with bookmarks, 410 Gone when too old), create,
//! update, patch (JSON, merge, strategic merge), delete, `dryRun=All`, and
//! the `scale` and `status` subresources. Errors are `Status` objects.
//! Also the application side: each workload's health and metrics.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::cluster::{Cluster, Event};
use crate::error::ApiError;
use crate::resources::{self, Kind};
use crate::selector::{FieldSelector, LabelSelector};
use crate::table;

const DISCOVERY: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

type Params = Path<HashMap<String, String>>;
type QueryMap = Query<HashMap<String, String>>;

pub fn router(cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api", get(core_discovery))
        .route("/api/v1", get(core_resources))
        .route("/apis", get(apis_discovery))
        .route("/apis/{group}", get(group_document))
        .route("/apis/{group}/{version}", get(group_resources))
        .route("/api/v1/namespaces/{ns}", get(namespace))
        .route("/api/v1/{resource}", get(all_namespaces))
        .route("/apis/{group}/{version}/{resource}", get(all_namespaces))
        .route("/api/v1/namespaces/{ns}/{resource}", any(collection))
        .route(
            "/apis/{group}/{version}/namespaces/{ns}/{resource}",
            any(collection),
        )
        .route("/api/v1/namespaces/{ns}/{resource}/{name}", any(item))
        .route(
            "/apis/{group}/{version}/namespaces/{ns}/{resource}/{name}",
            any(item),
        )
        .route(
            "/api/v1/namespaces/{ns}/{resource}/{name}/{sub}",
            any(subresource),
        )
        .route(
            "/apis/{group}/{version}/namespaces/{ns}/{resource}/{name}/{sub}",
            any(subresource),
        )
        .route("/app/{ns}/{name}/health", get(app_health))
        .route("/app/{ns}/{name}/metrics", get(app_metrics))
        .layer(axum::middleware::from_fn_with_state(
            cluster.clone(),
            faults,
        ))
        .fallback(|| async { error(not_served()) })
        .with_state(cluster)
}

fn not_served() -> ApiError {
    ApiError {
        code: 404,
        reason: "NotFound",
        message: "the server could not find the requested resource".into(),
    }
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

fn answer(r: Result<Value, ApiError>, created: bool) -> Response {
    match r {
        Ok(v) if created => json_response(StatusCode::CREATED, &v),
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error(e),
    }
}

/// Records each API request in the cluster's audit and injects the
/// configured faults into it (neither touches the application side, which
/// stands for the workloads themselves).
async fn faults(
    State(c): State<Arc<Cluster>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.uri().path().starts_with("/app/") {
        return next.run(req).await;
    }
    let uri = req.uri();
    if let Some(a) =
        crate::cluster::Access::of(req.method().as_str(), uri.path(), uri.query().unwrap_or(""))
        && let Ok(mut audit) = c.audit.lock()
    {
        audit.insert(a);
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

fn wants(headers: &HeaderMap, what: &str) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(what))
}

fn aggregated(items: Value) -> Response {
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, DISCOVERY)],
        body.to_string(),
    )
        .into_response()
}

async fn core_discovery(headers: HeaderMap) -> Response {
    if wants(&headers, "as=APIGroupDiscoveryList") {
        return aggregated(
            json!([{"metadata": {"creationTimestamp": null}, "versions": resources::aggregated_resources("")}]),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
    )
}

fn group_json(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({"name": group, "versions": [gv], "preferredVersion": gv})
}

async fn apis_discovery(headers: HeaderMap) -> Response {
    if wants(&headers, "as=APIGroupDiscoveryList") {
        let items: Vec<Value> = resources::GROUPS
            .iter()
            .map(|g| json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": resources::aggregated_resources(g)}))
            .collect();
        return aggregated(Value::Array(items));
    }
    let groups: Vec<Value> = resources::GROUPS.iter().map(|g| group_json(g)).collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

async fn core_resources() -> Response {
    json_response(StatusCode::OK, &resources::resource_list(""))
}

async fn group_document(Path(group): Path<String>) -> Response {
    if !resources::GROUPS.contains(&group.as_str()) {
        return error(not_served());
    }
    let mut g = group_json(&group);
    g["kind"] = "APIGroup".into();
    g["apiVersion"] = "v1".into();
    json_response(StatusCode::OK, &g)
}

async fn group_resources(Path((group, version)): Path<(String, String)>) -> Response {
    if !resources::GROUPS.contains(&group.as_str()) || version != "v1" {
        return error(not_served());
    }
    json_response(StatusCode::OK, &resources::resource_list(&group))
}

/// Every namespace exists: kubectl asks after a NotFound, to tell a
/// missing object from a missing namespace.
async fn namespace(Path(ns): Path<String>) -> Response {
    json_response(StatusCode::OK, &namespace_object(&ns))
}

fn namespace_object(ns: &str) -> Value {
    json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns, "uid": format!("ns-{ns}"),
           "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"kubernetes.io/metadata.name": ns}},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

/// The resource a request names, from its path.
fn kind_of(p: &HashMap<String, String>) -> Result<&'static Kind, ApiError> {
    let group = p.get("group").map_or("", String::as_str);
    let version = p.get("version").map_or("v1", String::as_str);
    let resource = p.get("resource").map_or("", String::as_str);
    resources::lookup(group, version, resource)
        .filter(|k| k.namespaced)
        .ok_or_else(not_served)
}

fn dry_run(q: &HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dry run value: {other:?}; supported values: \"All\""
        ))),
    }
}

fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body could not be decoded as JSON: {e}"
        ))
    })
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn as_table(headers: &HeaderMap) -> bool {
    wants(headers, "as=Table")
}

async fn all_namespaces(
    State(c): State<Arc<Cluster>>,
    Path(p): Params,
    Query(q): QueryMap,
    headers: HeaderMap,
) -> Response {
    let group = p.get("group").map_or("", String::as_str);
    let version = p.get("version").map_or("v1", String::as_str);
    let resource = p.get("resource").map_or("", String::as_str);
    if group.is_empty() && resource == "namespaces" {
        let mut names: Vec<String> = vec!["default".into(), "kube-system".into()];
        for k in resources::KINDS {
            if let Ok((items, _)) = c.list_objects(
                k,
                None,
                &LabelSelector::default(),
                &FieldSelector::default(),
            ) {
                names.extend(
                    items
                        .iter()
                        .filter_map(|o| o["metadata"]["namespace"].as_str().map(str::to_owned)),
                );
            }
        }
        names.sort();
        names.dedup();
        let items: Vec<Value> = names.iter().map(|n| namespace_object(n)).collect();
        if as_table(&headers) {
            return json_response(
                StatusCode::OK,
                &table::table(&resources::NAMESPACES, &items, None, ""),
            );
        }
        return json_response(
            StatusCode::OK,
            &json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": c.resource_version().to_string()}, "items": items}),
        );
    }
    match resources::lookup(group, version, resource).filter(|k| k.namespaced) {
        Some(kind) => list_or_watch(&c, kind, None, &q, &headers),
        None => error(not_served()),
    }
}

async fn collection(
    State(c): State<Arc<Cluster>>,
    method: Method,
    Path(p): Params,
    Query(q): QueryMap,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = match kind_of(&p) {
        Ok(k) => k,
        Err(e) => return error(e),
    };
    let ns = p.get("ns").cloned().unwrap_or_default();
    match method {
        Method::GET => list_or_watch(&c, kind, Some(&ns), &q, &headers),
        Method::POST => answer(
            dry_run(&q)
                .and_then(|dry| Ok((dry, body_json(&body)?)))
                .and_then(|(dry, v)| c.create(kind, &ns, v, dry)),
            true,
        ),
        _ => method_not_allowed(&method),
    }
}

fn method_not_allowed(method: &Method) -> Response {
    error(ApiError {
        code: 405,
        reason: "MethodNotAllowed",
        message: format!(
            "the server does not allow this method on the requested resource ({method})"
        ),
    })
}

async fn item(
    State(c): State<Arc<Cluster>>,
    method: Method,
    Path(p): Params,
    Query(q): QueryMap,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = match kind_of(&p) {
        Ok(k) => k,
        Err(e) => return error(e),
    };
    let ns = p.get("ns").cloned().unwrap_or_default();
    let name = p.get("name").cloned().unwrap_or_default();
    let dry = match dry_run(&q) {
        Ok(d) => d,
        Err(e) => return error(e),
    };
    match method {
        Method::GET => match c.read(kind, &ns, &name) {
            Ok(o) if as_table(&headers) => json_response(
                StatusCode::OK,
                &table::table(
                    kind,
                    &[o],
                    None,
                    q.get("includeObject").map_or("", String::as_str),
                ),
            ),
            r => answer(r, false),
        },
        Method::PUT => answer(
            body_json(&body).and_then(|v| c.update(kind, &ns, &name, v, dry)),
            false,
        ),
        Method::PATCH => answer(
            c.patch(kind, &ns, &name, &content_type(&headers), &body, dry),
            false,
        ),
        Method::DELETE => answer(c.delete(kind, &ns, &name, dry), false),
        _ => method_not_allowed(&method),
    }
}

fn scale_of(o: &Value) -> Value {
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
           "metadata": {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"], "uid": o["metadata"]["uid"],
                        "resourceVersion": o["metadata"]["resourceVersion"],
                        "creationTimestamp": o["metadata"]["creationTimestamp"]},
           "spec": {"replicas": o["spec"]["replicas"]},
           "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0),
                      "selector": LabelSelector::from_spec(&o["spec"]["selector"]).to_query()}})
}

async fn subresource(
    State(c): State<Arc<Cluster>>,
    method: Method,
    Path(p): Params,
    Query(q): QueryMap,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = match kind_of(&p) {
        Ok(k) => k,
        Err(e) => return error(e),
    };
    let ns = p.get("ns").cloned().unwrap_or_default();
    let name = p.get("name").cloned().unwrap_or_default();
    let sub = p.get("sub").map_or("", String::as_str);
    let dry = match dry_run(&q) {
        Ok(d) => d,
        Err(e) => return error(e),
    };
    match sub {
        "scale" if kind.scale_subresource => {
            let replicas = |scale: &Value| {
                scale["spec"]["replicas"].as_i64().ok_or_else(|| {
                    ApiError::invalid(kind, &name, &["spec.replicas: Required value".into()])
                })
            };
            let r = match method {
                Method::GET => c.read(kind, &ns, &name),
                Method::PUT => body_json(&body).and_then(|s| {
                    let expected = s["metadata"]["resourceVersion"].as_str().map(str::to_owned);
                    c.scale(kind, &ns, &name, replicas(&s)?, expected.as_deref(), dry)
                }),
                Method::PATCH => c.read(kind, &ns, &name).and_then(|o| {
                    let mut scale = scale_of(&o);
                    crate::patch::apply(&mut scale, &content_type(&headers), &body)
                        .map_err(|e| ApiError::invalid(kind, &name, &[e.to_string()]))?;
                    let expected = scale["metadata"]["resourceVersion"]
                        .as_str()
                        .map(str::to_owned);
                    c.scale(
                        kind,
                        &ns,
                        &name,
                        replicas(&scale)?,
                        expected.as_deref(),
                        dry,
                    )
                }),
                _ => return method_not_allowed(&method),
            };
            answer(r.map(|o| scale_of(&o)), false)
        }
        "status" if kind.status_subresource => match method {
            Method::GET => answer(c.read(kind, &ns, &name), false),
            Method::PUT => answer(c.write_status(kind, &ns, &name, None, &body, dry), false),
            Method::PATCH => answer(
                c.write_status(kind, &ns, &name, Some(&content_type(&headers)), &body, dry),
                false,
            ),
            _ => method_not_allowed(&method),
        },
        _ => error(not_served()),
    }
}

/// A list (as JSON or as a `Table`), or a watch if the query asks for one.
fn list_or_watch(
    c: &Arc<Cluster>,
    kind: &'static Kind,
    ns: Option<&str>,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let selectors = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
        .and_then(|l| {
            Ok((
                l,
                FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))?,
            ))
        });
    let (labels, fields) = match selectors {
        Ok(s) => s,
        Err(e) => return error(e),
    };
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let since = match q.get("resourceVersion").map(String::as_str) {
            None | Some("" | "0") => None,
            Some(rv) => match rv.parse::<u64>() {
                Ok(rv) => Some(rv),
                Err(_) => {
                    return error(ApiError::bad_request(format!(
                        "invalid resource version: {rv:?}"
                    )));
                }
            },
        };
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1800u64);
        let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
        let spec = WatchSpec {
            kind,
            namespace: ns.map(str::to_owned),
            labels,
            fields,
            bookmarks: flag("allowWatchBookmarks"),
            initial_events: flag("sendInitialEvents"),
        };
        return watch(c.clone(), spec, since, Duration::from_secs(timeout));
    }
    let (items, rv) = match c.list_objects(kind, ns, &labels, &fields) {
        Ok(l) => l,
        Err(e) => return error(e),
    };
    if as_table(headers) {
        let include = q.get("includeObject").map_or("", String::as_str);
        return json_response(
            StatusCode::OK,
            &table::table(kind, &items, Some(rv), include),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(),
                "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
    )
}

struct WatchSpec {
    kind: &'static Kind,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    bookmarks: bool,
    initial_events: bool,
}

impl WatchSpec {
    fn matches(&self, e: &Event) -> bool {
        e.resource == self.kind.resource
            && self.namespace.as_deref().is_none_or(|n| n == e.namespace)
            && self.labels.matches(&e.object["metadata"]["labels"])
            && self.fields.matches(&e.object)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": self.kind.kind, "apiVersion": self.kind.api_version(), "metadata": metadata}}),
        )
    }
}

fn line(v: &Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

struct Watching {
    spec: WatchSpec,
    backlog: VecDeque<Event>,
    live: tokio::sync::broadcast::Receiver<Event>,
    /// The newest resourceVersion this watch has passed, matching or not:
    /// what a bookmark may promise.
    seen: u64,
    initial_end_pending: bool,
    deadline: tokio::time::Instant,
    next_bookmark: tokio::time::Instant,
}

/// A watch: one JSON event per line, until the client's timeout (or the
/// faults' `watch_lifetime`) ends it.
fn watch(c: Arc<Cluster>, spec: WatchSpec, since: Option<u64>, timeout: Duration) -> Response {
    let w = match c.watch(spec.kind, spec.namespace.as_deref(), since) {
        Ok(w) => w,
        Err(e) if e.code == 410 => {
            // As the API server does: the watch opens, then says why it
            // cannot go on.
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                line(&json!({"type": "ERROR", "object": e.status()})),
            )
                .into_response();
        }
        Err(e) => return error(e),
    };
    let lifetime = c.faults.lock().ok().and_then(|f| f.watch_lifetime);
    let now = tokio::time::Instant::now();
    let state = Watching {
        initial_end_pending: spec.initial_events && since.is_none(),
        seen: since.unwrap_or(w.resource_version),
        spec,
        backlog: w.backlog.into(),
        live: w.live,
        deadline: now + lifetime.map_or(timeout, |l| l.min(timeout)),
        next_bookmark: now + BOOKMARK_EVERY,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        while let Some(e) = st.backlog.pop_front() {
            st.seen = st.seen.max(e.resource_version);
            if st.spec.matches(&e) {
                let l = line(&json!({"type": e.kind, "object": e.object}));
                return Some((Ok::<_, std::io::Error>(l), st));
            }
        }
        if st.initial_end_pending {
            st.initial_end_pending = false;
            let b = st.spec.bookmark(st.seen, true);
            return Some((Ok(b), st));
        }
        loop {
            let wake = if st.spec.bookmarks {
                st.deadline.min(st.next_bookmark)
            } else {
                st.deadline
            };
            match tokio::time::timeout_at(wake, st.live.recv()).await {
                Ok(Ok(e)) => {
                    st.seen = st.seen.max(e.resource_version);
                    if st.spec.matches(&e) {
                        let l = line(&json!({"type": e.kind, "object": e.object}));
                        return Some((Ok(l), st));
                    }
                }
                // Events were lost to a slow reader: end the watch, as the
                // API server does, and let the client resume.
                Ok(Err(RecvError::Lagged(_) | RecvError::Closed)) => return None,
                Err(_) if tokio::time::Instant::now() >= st.deadline => return None,
                Err(_) => {
                    st.next_bookmark = tokio::time::Instant::now() + BOOKMARK_EVERY;
                    let b = st.spec.bookmark(st.seen, false);
                    return Some((Ok(b), st));
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
