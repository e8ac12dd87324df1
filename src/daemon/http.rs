//! The HTTP endpoint on `daemon.listen`: probes, metrics and status.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Shared;

/// `/healthz` fails once the supervisor has not ticked for this long.
const STALL: Duration = Duration::from_secs(10);

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .fallback(not_found)
        .with_state(shared)
}

pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
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

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
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

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if s.ready.load(std::sync::atomic::Ordering::Acquire) {
        text(StatusCode::OK, "ready\n".into())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no configuration loaded\n".into(),
        )
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.redactor.redact(&s.metrics.encode()),
    )
        .into_response()
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
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

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "not found; try /healthz, /readyz, /metrics or /status\n".into(),
    )
}
