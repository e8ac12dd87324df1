//! The `[prometheus.NAME]` tables (README, "Configuration",
//! `[prometheus.NAME]`): the Prometheus servers that `[[watch.prometheus]]`
//! checks query, with their authentication.

use std::time::Duration;

use super::values::{http_url, optional, read_headers, readable_file};
use crate::config::reader::{Ctx, Sensitivity, Value};
use crate::config::{HttpAuth, PrometheusSource};

/// Reads one `[prometheus.NAME]`; `None` when it is invalid (and reported).
pub(super) fn read_prometheus(
    cx: &mut Ctx<'_>,
    name: &str,
    v: &Value<'_>,
) -> Option<PrometheusSource> {
    let mut t = cx.table(name, v, format!("[prometheus.{name}]"))?;
    let url = t.require(cx, "url").and_then(|v| {
        let s = cx.string_as("url", v, Sensitivity::Secret)?;
        http_url(cx, "url", &s, &v.span()).then_some(s)
    });
    let timeout = match t.get("timeout") {
        Some(v) => cx.duration_min("timeout", v, Duration::from_millis(10)),
        None => Some(Duration::from_secs(10)),
    };
    let bearer = cx.secret(&mut t, "bearer_token", "bearer_token_file");
    let basic = t.get("basic_auth").and_then(|v| {
        let mut b = cx.table("basic_auth", v, "basic_auth")?;
        let username = b
            .require(cx, "username")
            .and_then(|v| cx.nonempty_string("username", v));
        let password = cx.secret(&mut b, "password", "password_file");
        if password.is_none() && b.peek("password").is_none() && b.peek("password_file").is_none() {
            cx.error(
                &b.span,
                "basic_auth is missing \"password\" or \"password_file\"",
            );
        }
        b.finish(cx);
        Some((username?, password?))
    });
    let auth = match (bearer, basic) {
        (Some(_), Some(_)) => {
            cx.error(
                &t.span,
                format!("[prometheus.{name}] sets both a bearer token and basic_auth; choose one"),
            );
            HttpAuth::None
        }
        (Some(b), None) => HttpAuth::Bearer(b),
        (None, Some((username, password))) => HttpAuth::Basic { username, password },
        (None, None) => HttpAuth::None,
    };
    let headers = optional(&mut t, "headers", |v| read_headers(cx, v));
    let ca_file = optional(&mut t, "ca_file", |v| readable_file(cx, "ca_file", v));
    t.finish(cx);
    Some(PrometheusSource {
        url: url?,
        timeout: timeout?,
        auth,
        headers: headers.ok()?.unwrap_or_default(),
        ca_file: ca_file.ok()?,
    })
}
