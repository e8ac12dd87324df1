//! The `[[watch.prometheus]]` tables (README, "Configuration", `[[watch]]`):
//! PromQL queries and their thresholds. The `[prometheus.NAME]` a check
//! queries is another table's: the rules look it up.

use std::ops::Range;

use toml::de::DeTable;

use super::{SourceRef, on_error};
use crate::config::load::rules::Reference;
use crate::config::load::values::optional;
use crate::config::reader::{Ctx, Table};
use crate::config::{OnError, OnNoData, PrometheusCheck};

/// Reads one Prometheus check: the check, `None` when it is invalid by its
/// own table (and reported), and the source it queries when that is
/// readable.
pub(super) fn read_prometheus_check(
    cx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
) -> (Option<PrometheusCheck>, Option<SourceRef>) {
    let mut t = Table::new(table, span, "[[watch.prometheus]]".into());
    let name = t
        .require(cx, "name")
        .and_then(|v| cx.nonempty_string("name", v));
    if let Some(n) = &name {
        t.what = format!("prometheus check \"{n}\"");
    }
    let query = t
        .require(cx, "query")
        .and_then(|v| cx.nonempty_string("query", v))
        .map(|q| q.trim().to_owned());
    let written = t.peek("source").is_some();
    let source = match t.get("source") {
        Some(v) => cx.nonempty_string("source", v).map(|s| (s, v.span())),
        None => Some(("default".to_owned(), t.span.clone())),
    };
    let source = source.map(|(name, span)| SourceRef {
        to: Reference {
            name,
            at: cx.loc(&span),
            found: cx.found(),
        },
        written,
    });
    let mut num = |cx: &mut Ctx<'_>, key: &'static str| {
        optional(&mut t, key, |v| cx.float(key, v).map(|f| (f, v.span())))
    };
    let (min, max, inc, dec) = (
        num(cx, "min"),
        num(cx, "max"),
        num(cx, "max_increase"),
        num(cx, "min_decrease"),
    );
    // An unreadable threshold is already reported; keep going for the rest.
    let all_read = min.is_ok() && max.is_ok() && inc.is_ok() && dec.is_ok();
    let (min, max, inc, dec) = (
        min.ok().flatten(),
        max.ok().flatten(),
        inc.ok().flatten(),
        dec.ok().flatten(),
    );
    let mut ok = all_read;
    if all_read && min.is_none() && max.is_none() && inc.is_none() && dec.is_none() {
        cx.error(
            &t.span,
            format!(
                "{} has no threshold: set \"max\", \"min\", \"max_increase\" or \"min_decrease\"",
                t.what
            ),
        );
        ok = false;
    }
    if let (Some((lo, _)), Some((hi, span))) = (&min, &max)
        && lo > hi
    {
        cx.error(
            span,
            format!("\"max\" ({hi}) is below \"min\" ({lo}), so the check can never pass"),
        );
        ok = false;
    }
    if let Some((f, span)) = &inc
        && *f <= 1.0
    {
        cx.error(span, format!("\"max_increase\" is a factor over the baseline and must be above 1 (2.0 means twice the baseline), not {f}"));
        ok = false;
    }
    if let Some((f, span)) = &dec
        && !(*f > 0.0 && *f < 1.0)
    {
        cx.error(span, format!("\"min_decrease\" is a factor of the baseline and must be between 0 and 1 (0.5 means half the baseline), not {f}"));
        ok = false;
    }
    let on_no_data = match t.get("on_no_data") {
        Some(v) => cx.choice(
            "on_no_data",
            v,
            &[
                ("inconclusive", OnNoData::Inconclusive),
                ("fail", OnNoData::Fail),
                ("pass", OnNoData::Pass),
            ],
        ),
        None => Some(OnNoData::Inconclusive),
    };
    let on_error = on_error(cx, &mut t, OnError::Inconclusive);
    t.finish(cx);
    let check = match (ok, name, query, &source, on_no_data, on_error) {
        (true, Some(name), Some(query), Some(source), Some(on_no_data), Some(on_error)) => {
            Some(PrometheusCheck {
                name,
                query,
                source: source.to.name.clone(),
                min: min.map(|x| x.0),
                max: max.map(|x| x.0),
                max_increase: inc.map(|x| x.0),
                min_decrease: dec.map(|x| x.0),
                on_no_data,
                on_error,
            })
        }
        _ => None,
    };
    (check, source)
}
