//! `rollbackd check`: validates the configuration like `nginx -t`, printing
//! every error (and warning) as `FILE:LINE:COLUMN: message`, then a summary.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Exit, Global};
use crate::config::{self, Config, Target};

pub fn check(global: &Global) -> Exit {
    match config::load(&global.config) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("{w}");
            }
            print!("{}", cfg.secrets.redact(&summary(&cfg)));
            Exit::Success
        }
        Err(errors) => {
            eprint!("{}", errors.render());
            eprintln!("{}: {errors}", global.config.display());
            Exit::Usage
        }
    }
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// What the configuration holds, at a glance.
pub fn summary(cfg: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: configuration is valid", cfg.main_file.display());
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &cfg.watches {
        *kinds.entry(w.target.kind()).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(
        out,
        "  watches:   {}{} in {}",
        cfg.watches.len(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        },
        plural(cfg.files.len(), "file"),
    );
    let (h, p, a) = cfg.watches.iter().fold((0, 0, 0), |(h, p, a), w| {
        (
            h + w.health.len(),
            p + w.prometheus.len(),
            a + w.alerts.len(),
        )
    });
    let _ = writeln!(
        out,
        "  checks:    {} ({h} health, {p} prometheus, {a} alert)",
        h + p + a
    );
    let sources: Vec<&str> = cfg.prometheus.keys().map(String::as_str).collect();
    let _ = writeln!(
        out,
        "  sources:   {}",
        if sources.is_empty() {
            "none".into()
        } else {
            sources.join(", ")
        }
    );
    let notifiers: Vec<String> = cfg
        .notifiers
        .iter()
        .map(|(n, k)| format!("{n} ({})", k.kind()))
        .collect();
    let _ = writeln!(
        out,
        "  notifiers: {}",
        if notifiers.is_empty() {
            "none".into()
        } else {
            notifiers.join(", ")
        }
    );
    let width = cfg.watches.iter().map(|w| w.name.len()).max().unwrap_or(0);
    for w in &cfg.watches {
        let target = match &w.target {
            Target::Kubernetes(k) => format!("{}/{} in {}", k.kind.as_str(), k.name, k.namespace),
            Target::Command(c) => format!(
                "command {}",
                c.rollback.first().map(String::as_str).unwrap_or("")
            ),
        };
        let s = &w.settings;
        let _ = writeln!(
            out,
            "  {:width$}  {target}; every {}, rolls back after {} failing evaluations{}; {}; notify {}",
            w.name,
            humantime::format_duration(s.interval),
            s.failure_threshold,
            if s.dry_run { " (dry run)" } else { "" },
            plural(w.check_count(), "check"),
            if s.notify.is_empty() {
                "nobody".into()
            } else {
                s.notify.join(", ")
            },
        );
    }
    out
}
