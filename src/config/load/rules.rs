//! The rules that need more than one table, in one pass over everything
//! read: a `notify` names a declared `[notifiers.NAME]`, a check's `source`
//! a declared `[prometheus.NAME]`, the checks of a watch have distinct
//! names, and a watch's name and Kubernetes target are nobody else's across
//! all files. The readers only record what these rules need
//! ([`Reference`], [`WatchTable`]).
//!
//! The rules depend on each other as they did inside the readers: a check
//! with an unknown source is invalid, so it takes part in no name
//! comparison, and its watch, being invalid, claims no target.
//!
//! A rule's diagnostic is filed at the [`Found`] of what it is about, as if
//! it had been reported while that was read: the order diagnostics are
//! found in decides which file's are listed first and the order of those at
//! one place, and checking after reading must not change what
//! `rollbackd check` prints.

use std::collections::{BTreeMap, BTreeSet};

use super::watch::{SourceRef, WatchTable};
use crate::config::diag::{Diagnostic, Location, Severity, did_you_mean};
use crate::config::reader::{Found, one_of};
use crate::config::{Target, Watch, WorkloadKind};

/// A name that one table uses for another table, where it is written.
pub(super) struct Reference {
    pub name: String,
    pub at: Location,
    pub found: Found,
}

/// The names of the named tables, valid or not: a reference to a table
/// whose own reading failed is not a second error.
pub(super) struct Declared<'a> {
    pub notifiers: &'a BTreeSet<String>,
    pub sources: &'a BTreeSet<String>,
}

/// What the rules leave: the valid watches, in the order read, where each
/// name was first defined, and the rules' diagnostics.
pub(super) struct Ruled {
    pub watches: Vec<Watch>,
    pub origins: BTreeMap<String, Location>,
    pub diagnostics: Vec<(Found, Diagnostic)>,
}

/// Applies every cross-table rule to `[defaults]`' `notify` and to the
/// watches, which are in the order read (the main file's first).
pub(super) fn check(
    declared: &Declared<'_>,
    defaults_notify: &[Reference],
    watches: Vec<WatchTable>,
) -> Ruled {
    let mut out = Findings::default();
    notify_refs(&mut out, defaults_notify, declared.notifiers);
    let mut watched = Watched::default();
    for w in watches {
        watch_rules(&mut out, declared, &mut watched, w);
    }
    Ruled {
        watches: watched.watches,
        origins: watched.origins,
        diagnostics: out.0,
    }
}

#[derive(Default)]
struct Findings(Vec<(Found, Diagnostic)>);

impl Findings {
    fn push(
        &mut self,
        found: Found,
        at: &Location,
        severity: Severity,
        message: String,
        hint: Option<String>,
    ) {
        self.0.push((
            found,
            Diagnostic {
                location: at.clone(),
                severity,
                message,
                hint,
            },
        ));
    }

    fn error(&mut self, found: Found, at: &Location, message: String, hint: Option<String>) {
        self.push(found, at, Severity::Error, message, hint);
    }
}

/// The watches kept so far, across files.
#[derive(Default)]
struct Watched {
    watches: Vec<Watch>,
    /// Claimed even by invalid watches, so that a duplicate is reported
    /// together with the other errors.
    origins: BTreeMap<String, Location>,
    /// Kubernetes targets already watched, with the watch that has them.
    targets: BTreeMap<(WorkloadKind, String, String, Option<String>), String>,
}

fn watch_rules(out: &mut Findings, declared: &Declared<'_>, watched: &mut Watched, w: WatchTable) {
    notify_refs(out, &w.notify, declared.notifiers);
    let mut ok = true;
    let mut check_names: BTreeMap<&str, &Location> = BTreeMap::new();
    for c in &w.checks {
        let source_ok = c
            .source
            .as_ref()
            .is_none_or(|s| source_ref(out, s, declared.sources));
        let Some(name) = c.name.as_deref().filter(|_| source_ok) else {
            ok = false;
            continue;
        };
        if let Some(first) = check_names.get(name) {
            out.error(
                c.done,
                &c.at,
                format!(
                    "two checks of this watch are named \"{name}\" (the first at line {}); give each a distinct \"name\"",
                    first.line
                ),
                None,
            );
            ok = false;
        } else {
            check_names.insert(name, &c.at);
        }
    }

    if let Some(name) = &w.name {
        if let Some(first) = watched.origins.get(name) {
            out.error(
                w.done,
                &w.at,
                format!("watch \"{name}\" is defined twice; it is already defined at {first}"),
                None,
            );
            return;
        }
        watched.origins.insert(name.clone(), w.at.clone());
    }
    let Some(watch) = w.watch.filter(|_| ok) else {
        return;
    };
    if let Target::Kubernetes(k) = &watch.target {
        let key = (
            k.kind,
            k.namespace.clone(),
            k.name.clone(),
            k.context.clone(),
        );
        if let Some(other) = watched.targets.get(&key) {
            out.error(
                w.done,
                &w.at,
                format!(
                    "watch \"{}\": {} is already watched by \"{other}\" (defined at {})",
                    watch.name, watch.target, watched.origins[other]
                ),
                Some("put all checks of one target in one watch, so that only one of them can roll it back".into()),
            );
            return;
        }
        watched.targets.insert(key, watch.name.clone());
    }
    watched.watches.push(watch);
}

fn notify_refs(out: &mut Findings, names: &[Reference], known: &BTreeSet<String>) {
    for (i, r) in names.iter().enumerate() {
        let name = &r.name;
        if !known.contains(name) {
            let hint = did_you_mean(name, known.iter().map(String::as_str)).or_else(|| {
                if known.is_empty() {
                    Some("no [notifiers.NAME] is configured".into())
                } else {
                    Some(format!("configured: {}", quoted_list(known)))
                }
            });
            out.error(r.found, &r.at, format!("unknown notifier \"{name}\""), hint);
        } else if names[..i].iter().any(|earlier| earlier.name == *name) {
            out.push(
                r.found,
                &r.at,
                Severity::Warning,
                format!("notifier \"{name}\" is listed twice"),
                None,
            );
        }
    }
}

/// Whether a check's source is declared; reports it when not.
fn source_ref(out: &mut Findings, s: &SourceRef, sources: &BTreeSet<String>) -> bool {
    let name = &s.to.name;
    if sources.contains(name) {
        return true;
    }
    if !s.written {
        let message = if sources.is_empty() {
            "this check needs a Prometheus server, but no [prometheus.NAME] is configured"
        } else {
            "this check names no \"source\" and there is no [prometheus.default]"
        };
        let hint = if sources.is_empty() {
            "add [prometheus.default] with its url".to_owned()
        } else {
            format!("set \"source\" to one of {}", quoted_list(sources))
        };
        out.error(s.to.found, &s.to.at, message.into(), Some(hint));
        return false;
    }
    let hint = did_you_mean(name, sources.iter().map(String::as_str)).or_else(|| {
        Some(if sources.is_empty() {
            "add a [prometheus.default] table with its url".into()
        } else {
            format!("configured: {}", quoted_list(sources))
        })
    });
    out.error(
        s.to.found,
        &s.to.at,
        format!("unknown Prometheus source \"{name}\""),
        hint,
    );
    false
}

fn quoted_list(names: &BTreeSet<String>) -> String {
    one_of(&names.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>())
}

/// Places each of the rules' diagnostics among the readers' `found` ones at
/// its [`Found`]; those of one place keep the order the rules made them in.
pub(super) fn file_among(
    found: Vec<Diagnostic>,
    mut ruled: Vec<(Found, Diagnostic)>,
) -> Vec<Diagnostic> {
    ruled.sort_by_key(|(at, _)| *at);
    let mut ruled = ruled.into_iter().peekable();
    let mut out = Vec::with_capacity(found.len() + ruled.len());
    for (i, d) in found.into_iter().enumerate() {
        while let Some((_, r)) = ruled.next_if(|(at, _)| at.0 <= i) {
            out.push(r);
        }
        out.push(d);
    }
    out.extend(ruled.map(|(_, r)| r));
    out
}
