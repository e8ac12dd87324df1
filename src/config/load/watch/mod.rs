//! The `[[watch]]` tables (README, "Configuration", `[[watch]]`) of the main
//! file and the watch files: a watch's name, its settings over the ones it
//! inherits, its target and its checks, each in a submodule.
//!
//! What a watch needs from elsewhere — that its notifiers and Prometheus
//! sources exist, that its name and target are nobody else's — is recorded
//! in the [`WatchTable`] and checked by the rules once every file is read.

mod alert;
mod health;
mod prometheus;
mod target;

use std::ops::Range;

use toml::de::DeTable;

use super::defaults::{Inherited, SettingsRead, read_settings};
use super::rules::Reference;
use crate::config::diag::Location;
use crate::config::reader::{Ctx, Found, Table, Value};
use crate::config::{OnError, Target, Watch};

/// One `[[watch]]` as read, before the rules.
pub(super) struct WatchTable {
    /// `None` when the name is missing or invalid (and reported).
    pub name: Option<String>,
    pub at: Location,
    /// Where the reading of the table ended: problems of the watch as a
    /// whole (a name or target taken before) are found there.
    pub done: Found,
    pub notify: Vec<Reference>,
    /// Every check table, in the order written.
    pub checks: Vec<CheckTable>,
    /// The watch, when its own tables are valid.
    pub watch: Option<Watch>,
}

/// One `[[watch.health]]`, `[[watch.prometheus]]` or `[[watch.alert]]` as
/// read: what the rules need to know of it.
pub(super) struct CheckTable {
    /// `None` when the check is invalid by its own table (and reported).
    pub name: Option<String>,
    pub at: Location,
    /// Where the reading of the table ended.
    pub done: Found,
    /// The `[prometheus.NAME]` a `[[watch.prometheus]]` queries.
    pub source: Option<SourceRef>,
}

/// A check's `source`, or the `"default"` it means when it names none.
pub(super) struct SourceRef {
    pub to: Reference,
    /// False when the check names no source: `to` is then `"default"`,
    /// located at the check's table.
    pub written: bool,
}

/// Reads a `watch` array of tables, in the order written.
pub(super) fn read_watch_array(
    cx: &mut Ctx<'_>,
    v: &Value<'_>,
    inherited: &Inherited,
) -> Vec<WatchTable> {
    cx.tables("watch", v)
        .into_iter()
        .map(|(table, span)| read_watch(cx, table, span, inherited))
        .collect()
}

fn valid_watch_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn read_watch(
    cx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    inherited: &Inherited,
) -> WatchTable {
    let at = cx.loc(&span);
    let mut t = Table::new(table, span, "[[watch]]".into());
    let name = t.require(cx, "name").and_then(|v| {
        let s = cx.nonempty_string("name", v)?;
        if !valid_watch_name(&s) {
            cx.error(&v.span(), format!("\"name\": \"{s}\" must be 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"));
            return None;
        }
        Some(s)
    });
    if let Some(n) = &name {
        t.what = format!("watch \"{n}\"");
    }
    let target = t
        .require(cx, "target")
        .and_then(|v| target::read_target(cx, v));
    let SettingsRead {
        settings,
        interval_ok: own_interval_ok,
        notify,
    } = read_settings(cx, &mut t, &inherited.settings);
    let interval_known = own_interval_ok && (t.peek("interval").is_some() || inherited.interval_ok);
    if let (Some(Target::Command(_)), Some(v)) = (&target, t.peek("rollout_check")) {
        cx.error(
            &v.span(),
            "\"rollout_check\" applies only to Kubernetes targets",
        );
    }

    let mut checks = Vec::new();
    // Whether every check table is valid by itself.
    let mut ok = true;
    let mut health = Vec::new();
    if let Some(v) = t.get("health") {
        let items = cx.tables("watch.health", v);
        let n = items.len();
        for (i, (ht, hspan)) in items.into_iter().enumerate() {
            let at = cx.loc(&hspan);
            let h = health::read_health(cx, ht, hspan, (i, n), &settings, interval_known);
            checks.push(CheckTable {
                name: h.as_ref().map(|h| h.name.clone()),
                at,
                done: cx.found(),
                source: None,
            });
            match h {
                Some(h) => health.push(h),
                None => ok = false,
            }
        }
    }
    let mut prometheus = Vec::new();
    if let Some(v) = t.get("prometheus") {
        for (pt, pspan) in cx.tables("watch.prometheus", v) {
            let at = cx.loc(&pspan);
            let (p, source) = prometheus::read_prometheus_check(cx, pt, pspan);
            checks.push(CheckTable {
                name: p.as_ref().map(|p| p.name.clone()),
                at,
                done: cx.found(),
                source,
            });
            match p {
                Some(p) => prometheus.push(p),
                None => ok = false,
            }
        }
    }
    let mut alerts = Vec::new();
    if let Some(v) = t.get("alert") {
        let items = cx.tables("watch.alert", v);
        let n = items.len();
        for (i, (alt, aspan)) in items.into_iter().enumerate() {
            let at = cx.loc(&aspan);
            let a = alert::read_alert(cx, alt, aspan, i, n);
            checks.push(CheckTable {
                name: a.as_ref().map(|a| a.name.clone()),
                at,
                done: cx.found(),
                source: None,
            });
            match a {
                Some(a) => alerts.push(a),
                None => ok = false,
            }
        }
    }
    let span = t.span.clone();
    let what = t.what.clone();
    t.finish(cx);

    // A check table with errors is a check all the same: only a watch with
    // none written is told that it has none.
    let has_check_tables = !checks.is_empty();
    let watch = target.and_then(|target| {
        let has_rollout_check = matches!(target, Target::Kubernetes(_)) && settings.rollout_check;
        if !has_check_tables && !has_rollout_check {
            cx.error_hint(
                &span,
                format!("{what} has no checks"),
                Some("add a [[watch.health]], [[watch.prometheus]] or [[watch.alert]]".into()),
            );
            return None;
        }
        if settings.verify_for < settings.interval {
            cx.warn(
                &span,
                format!(
                    "{what}: verify_for ({}) is shorter than interval ({}); a rollback may end \"unverified\" before a single evaluation",
                    humantime::format_duration(settings.verify_for),
                    humantime::format_duration(settings.interval)
                ),
            );
        }
        if settings.notify.is_empty() {
            cx.warn(
                &span,
                format!("{what} notifies nobody (set \"notify\" here or in [defaults])"),
            );
        }
        ok.then_some(Watch {
            name: name.clone()?,
            target,
            settings,
            health,
            prometheus,
            alerts,
        })
    });
    WatchTable {
        name,
        at,
        done: cx.found(),
        notify,
        checks,
        watch,
    }
}

fn on_error(cx: &mut Ctx<'_>, t: &mut Table<'_, '_>, default: OnError) -> Option<OnError> {
    match t.get("on_error") {
        Some(v) => cx.choice(
            "on_error",
            v,
            &[
                ("fail", OnError::Fail),
                ("inconclusive", OnError::Inconclusive),
            ],
        ),
        None => Some(default),
    }
}
