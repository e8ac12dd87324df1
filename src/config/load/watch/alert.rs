//! The `[[watch.alert]]` tables (README, "Configuration", `[[watch]]`): the
//! labels of Alertmanager alerts whose firing fails the check.

use std::ops::Range;

use toml::de::DeTable;

use crate::config::AlertCheck;
use crate::config::reader::{Ctx, Sensitivity, Table};

/// Reads the `index`-th of `count` alert checks; `None` when it is invalid
/// (and reported).
pub(super) fn read_alert(
    cx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    index: usize,
    count: usize,
) -> Option<AlertCheck> {
    let mut t = Table::new(table, span, "[[watch.alert]]".into());
    let labels = t.require(cx, "labels").and_then(|v| {
        let m = cx.string_map("labels", v, Sensitivity::Plain)?;
        if m.is_empty() {
            cx.error(
                &v.span(),
                "\"labels\" must name at least one label (an empty set would match every alert)",
            );
            return None;
        }
        Some(m)
    });
    let name = match t.get("name") {
        Some(v) => cx.nonempty_string("name", v),
        None => Some(match labels.as_ref().and_then(|l| l.get("alertname")) {
            Some(a) if count == 1 => a.clone(),
            Some(a) => format!("{a}-{}", index + 1),
            None if count == 1 => "alert".into(),
            None => format!("alert-{}", index + 1),
        }),
    };
    t.finish(cx);
    Some(AlertCheck {
        name: name?,
        labels: labels?,
    })
}
