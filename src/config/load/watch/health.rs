//! The `[[watch.health]]` tables (README, "Configuration", `[[watch]]`):
//! HTTP checks, whose timeout is bounded by the watch's interval.

use std::ops::Range;
use std::time::Duration;

use toml::de::DeTable;

use super::on_error;
use crate::config::load::values::{http_url, optional, read_headers, readable_file};
use crate::config::reader::{Ctx, Sensitivity, Table};
use crate::config::{HealthCheck, OnError, WatchSettings};

/// Reads the `index`-th of `count` health checks; `None` when it is invalid
/// (and reported). `settings` are the watch's, `[defaults]` applied;
/// `interval_known` is false when its interval was invalid.
pub(super) fn read_health(
    cx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    (index, count): (usize, usize),
    settings: &WatchSettings,
    interval_known: bool,
) -> Option<HealthCheck> {
    let mut t = Table::new(table, span, "[[watch.health]]".into());
    let name = match t.get("name") {
        Some(v) => cx.nonempty_string("name", v),
        None if count == 1 => Some("health".into()),
        None => Some(format!("health-{}", index + 1)),
    };
    let url = t.require(cx, "url").and_then(|v| {
        let s = cx.string_as("url", v, Sensitivity::Secret)?;
        http_url(cx, "url", &s, &v.span()).then_some(s)
    });
    let expect_status = optional(&mut t, "expect_status", |v| {
        let Some(items) = v.get_ref().as_array() else {
            cx.error(
                &v.span(),
                "\"expect_status\" must be an array of HTTP status codes, like [200, 204]",
            );
            return None;
        };
        if items.is_empty() {
            cx.error(
                &v.span(),
                "\"expect_status\" must list at least one status (leave it out to accept any 2xx)",
            );
            return None;
        }
        let codes: Vec<Option<u16>> = items
            .iter()
            .map(|i| cx.int("expect_status", i, 100, 599).map(|n| n as u16))
            .collect();
        codes.into_iter().collect::<Option<Vec<u16>>>()
    });
    let timeout_v = t.get("timeout");
    let timeout = match timeout_v {
        Some(v) => cx.duration_min("timeout", v, Duration::from_millis(1)),
        None => Some(settings.interval.min(Duration::from_secs(5))),
    };
    if let (Some(v), Some(d)) = (timeout_v, timeout)
        && interval_known
        && d > settings.interval
    {
        cx.error(
            &v.span(),
            format!(
                "\"timeout\" ({}) is longer than the watch's interval ({})",
                humantime::format_duration(d),
                humantime::format_duration(settings.interval)
            ),
        );
    }
    let max_latency = optional(&mut t, "max_latency", |v| {
        let d = cx.duration_min("max_latency", v, Duration::from_millis(1))?;
        if timeout.is_some_and(|to| d > to) {
            cx.error(
                &v.span(),
                "\"max_latency\" is longer than \"timeout\", so it can never fail",
            );
            return None;
        }
        Some(d)
    });
    let body_contains = optional(&mut t, "body_contains", |v| {
        let s = cx.string_as("body_contains", v, Sensitivity::Secret)?;
        if s.is_empty() {
            cx.error(&v.span(), "\"body_contains\" must not be empty");
            return None;
        }
        Some(s)
    });
    let headers = optional(&mut t, "headers", |v| read_headers(cx, v));
    let ca_file = optional(&mut t, "ca_file", |v| readable_file(cx, "ca_file", v));
    let on_error = on_error(cx, &mut t, OnError::Fail);
    t.finish(cx);
    Some(HealthCheck {
        name: name?,
        url: url?,
        expect_status: expect_status.ok()?.unwrap_or_default(),
        timeout: timeout?,
        max_latency: max_latency.ok()?,
        body_contains: body_contains.ok()?,
        headers: headers.ok()?.unwrap_or_default(),
        ca_file: ca_file.ok()?,
        on_error: on_error?,
    })
}
