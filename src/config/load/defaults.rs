//! The `[defaults]` table (README, "Configuration", "`[defaults]` and
//! per-watch settings"): the watch settings every `[[watch]]` inherits, and
//! the reader of those keys, which a `[[watch]]` shares to override them.

use super::rules::Reference;
use super::values::MIN_INTERVAL;
use crate::config::reader::{Ctx, Table, Value};
use crate::config::{Arm, WatchSettings};

/// What every watch inherits from `[defaults]`: a watch's settings are read
/// over these, as `[defaults]` is read over the built-in defaults.
pub(super) struct Inherited {
    pub settings: WatchSettings,
    /// False when `[defaults]` or its `interval` was invalid (and reported):
    /// a check's timeout is then not compared with an interval that is
    /// not the one the operator meant.
    pub interval_ok: bool,
}

/// `[defaults]` as read.
pub(super) struct DefaultsTable {
    pub inherited: Inherited,
    /// Its `notify` names, for the rules to find among the notifiers.
    pub notify: Vec<Reference>,
}

pub(super) fn read_defaults(cx: &mut Ctx<'_>, v: Option<&Value<'_>>) -> DefaultsTable {
    let Some(v) = v else {
        return DefaultsTable {
            inherited: Inherited {
                settings: WatchSettings::default(),
                interval_ok: true,
            },
            notify: Vec::new(),
        };
    };
    match cx.table("defaults", v, "[defaults]") {
        Some(mut t) => {
            let read = read_settings(cx, &mut t, &WatchSettings::default());
            t.finish(cx);
            DefaultsTable {
                inherited: Inherited {
                    settings: read.settings,
                    interval_ok: read.interval_ok,
                },
                notify: read.notify,
            }
        }
        None => DefaultsTable {
            inherited: Inherited {
                settings: WatchSettings::default(),
                interval_ok: false,
            },
            notify: Vec::new(),
        },
    }
}

/// The keys of [`WatchSettings`] as read from one table.
pub(super) struct SettingsRead {
    pub settings: WatchSettings,
    /// Whether `interval` is this table's own valid value (or not set here);
    /// checks compared with an invalid interval would report nonsense.
    pub interval_ok: bool,
    /// The names in this table's `notify`, where they are written.
    pub notify: Vec<Reference>,
}

/// Reads the keys of [`WatchSettings`] from `t` over `base`; a key that is
/// invalid (and reported) keeps the value of `base`.
pub(super) fn read_settings(
    cx: &mut Ctx<'_>,
    t: &mut Table<'_, '_>,
    base: &WatchSettings,
) -> SettingsRead {
    let mut s = base.clone();
    let mut interval_ok = true;
    if let Some(v) = t.get("interval") {
        match cx.duration_min("interval", v, MIN_INTERVAL) {
            Some(d) => s.interval = d,
            None => interval_ok = false,
        }
    }
    if let Some(v) = t.get("failure_threshold") {
        s.failure_threshold = cx
            .int("failure_threshold", v, 1, 1000)
            .map_or(s.failure_threshold, |n| n as u32);
    }
    if let Some(v) = t.get("arm") {
        s.arm = cx
            .choice(
                "arm",
                v,
                &[
                    ("after-rollout", Arm::AfterRollout),
                    ("always", Arm::Always),
                ],
            )
            .unwrap_or(s.arm);
    }
    for (key, slot) in [
        ("arm_window", &mut s.arm_window),
        ("cooldown", &mut s.cooldown),
        ("rollout_timeout", &mut s.rollout_timeout),
        ("verify_for", &mut s.verify_for),
    ] {
        if let Some(v) = t.get(key)
            && let Some(d) = cx.duration(key, v)
        {
            *slot = d;
        }
    }
    if let Some(v) = t.peek("arm_window")
        && s.arm == Arm::AfterRollout
        && s.arm_window.is_zero()
    {
        cx.error(
            &v.span(),
            "\"arm_window\" must be longer than 0 (with arm = \"always\" no window is needed)",
        );
    }
    if let Some(v) = t.peek("rollout_timeout")
        && s.rollout_timeout < MIN_INTERVAL
    {
        cx.error(&v.span(), "\"rollout_timeout\" must be at least 10ms");
    }
    let mut notify = Vec::new();
    if let Some(v) = t.get("notify")
        && let Some(list) = cx.string_list("notify", v)
    {
        let found = cx.found();
        notify = list
            .iter()
            .map(|(name, span)| Reference {
                name: name.clone(),
                at: cx.loc(span),
                found,
            })
            .collect();
        s.notify = list.into_iter().map(|(n, _)| n).collect();
    }
    if let Some(v) = t.get("dry_run") {
        s.dry_run = cx.bool("dry_run", v).unwrap_or(s.dry_run);
    }
    if let Some(v) = t.get("rollout_check") {
        s.rollout_check = cx.bool("rollout_check", v).unwrap_or(s.rollout_check);
    }
    SettingsRead {
        settings: s,
        interval_ok,
        notify,
    }
}
