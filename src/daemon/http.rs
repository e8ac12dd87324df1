//! The HTTP endpoint on `daemon.listen`: probes, metrics, status, the
//! Alertmanager webhook and (with a control token) per-watch controls.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::DaemonState;
use super::supervisor::WatchCommand;
use crate::api::{ControlAnswer, WatchAction};

/// `/healthz` fails once the supervisor has not ticked for this long.
const STALL: Duration = Duration::from_secs(10);

/// Bodies larger than this are refused (the README's "HTTP endpoint").
pub const BODY_LIMIT: usize = 1024 * 1024;

pub fn router(shared: Arc<DaemonState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/alertmanager", post(alertmanager))
        .route("/watches/{name}/{action}", post(control))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

pub async fn serve(
    listener: TcpListener,
    shared: Arc<DaemonState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, serde_json::json!({ "error": message.into() }))
}

async fn healthz(State(s): State<Arc<DaemonState>>) -> Response {
    let age = s.heartbeat_age();
    if age <= STALL {
        text(StatusCode::OK, "ok\n".into())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("supervisor stalled: last tick {}s ago\n", age.as_secs()),
        )
    }
}

async fn readyz(State(s): State<Arc<DaemonState>>) -> Response {
    if s.ready.load(std::sync::atomic::Ordering::Acquire) {
        let role = match (&s.election, s.is_leader()) {
            (None, _) => String::new(),
            (Some((lease, me)), true) => format!("leader: {me} holds {lease}\n"),
            (Some((lease, me)), false) => format!("standby: {me} waits for {lease}\n"),
        };
        text(StatusCode::OK, format!("ready\n{role}"))
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no configuration loaded\n".into(),
        )
    }
}

async fn metrics(State(s): State<Arc<DaemonState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.redactor.redact(&s.metrics.encode()),
    )
        .into_response()
}

async fn status(State(s): State<Arc<DaemonState>>) -> Response {
    let rendered = serde_json::to_value(s.status()).and_then(|mut doc| {
        s.redactor.redact_json(&mut doc);
        serde_json::to_string_pretty(&doc)
    });
    match rendered {
        Ok(body) => (
            [(header::CONTENT_TYPE, "application/json")],
            s.redactor.redact(&body) + "\n",
        )
            .into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render status: {e}\n"),
        ),
    }
}

/// Every POST needs the bearer token when one is configured.
fn authorized(s: &DaemonState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let token = s.config.borrow().daemon.control_token.clone();
    let Some(token) = token else { return Ok(()) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "missing \"Authorization: Bearer TOKEN\"",
        ))),
        Some(g) if constant_time_eq(g.as_bytes(), token.expose().as_bytes()) => Ok(()),
        Some(_) => Err(Box::new(error(StatusCode::FORBIDDEN, "wrong bearer token"))),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn alertmanager(
    State(s): State<Arc<DaemonState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    match s.alerts.apply(&body, crate::clock::now_ms()) {
        Ok(applied) => {
            tracing::debug!(
                firing = applied.firing,
                resolved = applied.resolved,
                "alerts received"
            );
            json(
                StatusCode::OK,
                serde_json::json!({ "firing": applied.firing, "resolved": applied.resolved }),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "rejected an Alertmanager payload");
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
    }
}

async fn control(
    State(s): State<Arc<DaemonState>>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if s.config.borrow().daemon.control_token.is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "control endpoints are enabled by daemon.control_token_file",
        );
    }
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let action = match WatchAction::parse(&action) {
        Some(a) => a,
        None => {
            let other = action.as_str();
            return error(
                StatusCode::NOT_FOUND,
                format!("unknown action {other:?}; use pause, resume or reset"),
            );
        }
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if s.commands
        .send(WatchCommand {
            watch: name.clone(),
            action,
            reply,
        })
        .await
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match answer.await {
        Ok(Ok(state)) => json(
            StatusCode::OK,
            serde_json::to_value(ControlAnswer { watch: name, state }).unwrap_or_default(),
        ),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "not found; try /healthz, /readyz, /metrics or /status\n".into(),
    )
}
