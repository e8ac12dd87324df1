//! The wording every channel shares, as pure functions of an [`Event`]: a
//! headline an on-call engineer can triage from a phone, the facts, the
//! evidence, what to do next, and the whole as plain text.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use super::{Check, Event, Kind};
use crate::engine::{Outcome, Trigger, fmt_value};

/// `2026-11-21T10:05:10Z`.
pub fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        .to_string()
}

/// `1m 35s`, to the second (to the millisecond under a second).
pub fn duration(ms: u64) -> String {
    let d = if ms >= 1000 {
        Duration::from_secs(ms / 1000)
    } else {
        Duration::from_millis(ms)
    };
    humantime::format_duration(d).to_string()
}

/// At most `max` characters, the cut marked with `…`.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `{pod="web-1", zone="a"}`, or nothing.
pub fn labels(c: &Check) -> String {
    if c.labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// One check's evidence in a few words: `error-ratio 0.31 > 0.05`.
pub fn evidence(c: &Check) -> String {
    if c.result == "inconclusive" {
        return format!("{}: {}", c.name, clip(first_line(&c.detail), 80));
    }
    if let Some(v) = c.value
        && c.kind == "prometheus"
    {
        let value = fmt_value(v);
        for clause in c.threshold.split(", ") {
            let Some((op, limit)) = clause.split_once(' ') else {
                continue;
            };
            let bound = limit.trim_end_matches('x').parse::<f64>().ok();
            match (op, bound) {
                ("max", Some(b)) if v > b => return format!("{} {value} > {limit}", c.name),
                ("min", Some(b)) if v < b => return format!("{} {value} < {limit}", c.name),
                ("max_increase", Some(_)) => {
                    return format!("{} {value} > {limit} its baseline", c.name);
                }
                ("min_decrease", Some(_)) => {
                    return format!("{} {value} < {limit} its baseline", c.name);
                }
                _ => {}
            }
        }
        if v.is_nan() {
            return format!("{} NaN", c.name);
        }
    }
    if !c.detail.is_empty() {
        // Health details go on with latency, body and URL: a subject needs
        // only what failed.
        let mut short = c.detail.split(" from ").next().unwrap_or(&c.detail);
        short = short.split("; ").next().unwrap_or(short);
        if short.starts_with("status ") {
            short = short.split(" in ").next().unwrap_or(short);
        }
        return format!("{}: {}", c.name, clip(first_line(short), 80));
    }
    match c.value {
        Some(v) => format!("{} {} ({})", c.name, fmt_value(v), c.threshold),
        None => format!("{} ({})", c.name, c.result),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The first failing check, and how many more there are.
fn evidence_summary(e: &Event) -> Option<String> {
    let first = e.checks.first()?;
    let more = e.checks.len() - 1;
    Some(if more == 0 {
        evidence(first)
    } else {
        format!("{} (+{more} more)", evidence(first))
    })
}

fn watch(e: &Event) -> &str {
    e.watch.as_deref().unwrap_or("rollbackd")
}

fn with_evidence(head: String, e: &Event) -> String {
    match evidence_summary(e) {
        Some(ev) => format!("{head}: {ev}"),
        None => match &e.reason {
            Some(r) => format!("{head}: {}", first_line(r)),
            None => head,
        },
    }
}

/// One line that says what happened and why:
/// `shop-web rolled back: error-ratio 0.31 > 0.05`.
pub fn headline(e: &Event) -> String {
    let w = watch(e);
    match e.kind {
        Kind::RollbackStarted => with_evidence(format!("{w} is rolling back"), e),
        Kind::RollbackFinished => match e.outcome {
            Some(Outcome::Recovered) | None => with_evidence(format!("{w} rolled back"), e),
            Some(Outcome::Conflict) => {
                format!("{w} rollback stopped: a concurrent deploy changed the target")
            }
            Some(o) => with_evidence(
                format!("{w} rolled back but did NOT recover ({})", o.as_str()),
                e,
            ),
        },
        Kind::Escalated => format!(
            "{w} escalated, a person must act: {}",
            // The first clause: the rest ("no further automatic action…")
            // is in the body.
            first_line(e.reason.as_deref().unwrap_or("automatic action stopped"))
                .split("; ")
                .next()
                .unwrap_or("")
        ),
        Kind::WatchBlind => format!(
            "{w} is blind: {}",
            first_line(e.reason.as_deref().unwrap_or("its checks cannot decide"))
        ),
        Kind::WouldRollBack => with_evidence(format!("{w} would roll back (dry run)"), e),
        Kind::ManualRollback => with_evidence(format!("{w} rolled back by hand"), e),
        Kind::ConfigRejected => format!(
            "configuration rejected on {}: {} error{}",
            e.host,
            e.errors.len(),
            if e.errors.len() == 1 { "" } else { "s" }
        ),
        Kind::Test => format!("test message from rollbackd on {}", e.host),
    }
}

/// The email subject: `[rollbackd] shop-web rolled back: error-ratio 0.31 > 0.05`.
pub fn subject(e: &Event) -> String {
    let one_line = headline(e).replace(['\r', '\n'], " ");
    clip(&format!("[rollbackd] {one_line}"), 140)
}

/// Is this event good news, bad news, or a person's job?
pub fn severity(e: &Event) -> &'static str {
    match (e.kind, e.outcome) {
        (Kind::Test, _) => "info",
        (Kind::RollbackFinished | Kind::ManualRollback, Some(Outcome::Recovered)) => "resolved",
        (Kind::RollbackFinished, Some(Outcome::Conflict)) => "warning",
        (Kind::RollbackFinished, _) | (Kind::Escalated, _) => "critical",
        _ => "warning",
    }
}

/// The facts, labelled, in reading order; absent ones are left out.
pub fn facts(e: &Event) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    if let Some(w) = &e.watch {
        f.push(("Watch", w.clone()));
    }
    if let Some(t) = &e.target {
        f.push(("Target", t.clone()));
    }
    f.push(("Host", e.host.clone()));
    match (&e.from_revision, &e.to_revision) {
        (Some(from), Some(to)) => f.push(("Revision", format!("{from} → {to}"))),
        (Some(from), None) if e.rollback_id.is_some() => {
            f.push(("Revision", format!("{from} → previous")))
        }
        (Some(from), None) => f.push(("Revision", from.clone())),
        (None, Some(to)) => f.push(("Revision", format!("→ {to}"))),
        (None, None) => {}
    }
    match (&e.from_images, &e.to_images) {
        (Some(from), Some(to)) => {
            f.push(("Images", format!("{} → {}", from.join(", "), to.join(", "))))
        }
        (Some(from), None) => f.push(("Images", from.join(", "))),
        (None, Some(to)) => f.push(("Images", format!("→ {}", to.join(", ")))),
        (None, None) => {}
    }
    if let Some(o) = e.outcome {
        f.push(("Outcome", o.as_str().to_owned()));
    }
    if let Some(t) = e.trigger {
        let t = match t {
            Trigger::Auto => "automatic",
            Trigger::Manual => "manual",
        };
        f.push((
            "Trigger",
            if e.dry_run {
                format!("{t} (dry run)")
            } else {
                t.to_owned()
            },
        ));
    }
    if let Some(op) = &e.operator {
        f.push(("Operator", op.clone()));
    }
    if let Some(since) = e.timings.revision_since
        && e.kind != Kind::ConfigRejected
    {
        let age = e.ts.saturating_sub(since);
        f.push((
            "Revision age",
            format!("{} (since {})", duration(age), time(since)),
        ));
    }
    match (e.timings.started_at, e.timings.finished_at) {
        (Some(s), Some(fin)) => f.push((
            "Took",
            format!(
                "{} ({} → {})",
                duration(fin.saturating_sub(s)),
                time(s),
                time(fin)
            ),
        )),
        (Some(s), None) => f.push(("Started", time(s))),
        _ => f.push(("At", time(e.ts))),
    }
    if let Some(id) = &e.rollback_id {
        f.push(("Rollback", id.clone()));
    }
    f
}

/// `kubectl` names the workload as `deployment/web -n shop`.
fn kubectl_target(e: &Event) -> Option<String> {
    if !matches!(
        e.target_kind.as_deref(),
        Some("deployment" | "statefulset" | "daemonset")
    ) {
        return None;
    }
    let t = e.target.as_deref()?;
    let mut parts = t.splitn(3, '/');
    let (kind, ns, name) = (parts.next()?, parts.next()?, parts.next()?);
    Some(format!("{kind}/{name} -n {ns}"))
}

/// The state directory, from the report's path (`STATE/reports/X.md`).
fn state_dir(e: &Event) -> Option<String> {
    let p = std::path::Path::new(&e.report.as_ref()?.path);
    Some(p.parent()?.parent()?.display().to_string())
}

/// What the reader can do now, as sentences and exact commands.
pub fn next_steps(e: &Event) -> Vec<String> {
    let mut s = Vec::new();
    let w = watch(e);
    let k = kubectl_target(e);
    match e.kind {
        Kind::Test => return s,
        Kind::ConfigRejected => {
            s.push("Fix the errors above; the last good configuration keeps running until then. Validate with `rollbackd check -c MAIN_FILE` before saving.".into());
            return s;
        }
        Kind::WatchBlind => {
            s.push(format!(
                "The checks of {w} cannot decide, so it cannot protect the service. Prove its sources answer: `rollbackd check --online`."
            ));
            s.push(format!(
                "See its last evaluation: `curl -s http://LISTEN/status` (watch {w})."
            ));
            return s;
        }
        _ => {}
    }
    let recovered = matches!(e.outcome, Some(Outcome::Recovered));
    match e.kind {
        Kind::RollbackStarted => s.push(format!(
            "Nothing yet: rollbackd is rolling back and will report the outcome. Follow it with `curl -s http://LISTEN/status` (watch {w})."
        )),
        Kind::WouldRollBack => s.push(match &k {
            Some(k) => format!(
                "Dry run: nothing was changed. Roll back by hand if the evidence convinces you: `kubectl rollout undo {k}`."
            ),
            None => format!(
                "Dry run: nothing was changed. Roll back by hand, with the watch's rollback command, if the evidence convinces you (watch {w})."
            ),
        }),
        _ if recovered => s.push(format!(
            "The service recovered on the previous revision. Revision {} is remembered as bad and is never rolled back to automatically: fix it and deploy a new revision.",
            e.from_revision.as_deref().unwrap_or("?")
        )),
        _ => s.push(format!(
            "rollbackd takes no further automatic action on {w} until a new revision appears: look at the service now."
        )),
    }
    if let Some(k) = &k {
        s.push(format!("Rollout state: `kubectl rollout status {k}`"));
        s.push(format!("Revisions: `kubectl rollout history {k}`"));
        if recovered && let Some(from) = &e.from_revision {
            s.push(format!(
                "To go back to the revision that was rolled away from, deliberately: `kubectl rollout undo {k} --to-revision={from}`"
            ));
        }
    } else if let (Some(dir), Some(id)) = (state_dir(e), &e.rollback_id) {
        s.push(format!(
            "The rollback command's output and every step: `grep '\"{id}\"' {dir}/journal.jsonl`"
        ));
    }
    if !recovered && e.kind != Kind::RollbackStarted && e.kind != Kind::WouldRollBack {
        if let Some(k) = &k {
            s.push(format!(
                "Roll back further by hand: `kubectl rollout undo {k} --to-revision=N` (N from the history above)"
            ));
        }
        s.push(format!(
            "Once fixed, clear the escalation: `curl -X POST -H \"Authorization: Bearer $TOKEN\" http://LISTEN/watches/{w}/reset`"
        ));
    }
    s
}

/// A check as a few plain lines: what, the value against its threshold,
/// its labels, the detail, the query and its graph.
pub fn check_lines(c: &Check) -> Vec<String> {
    let mut l = Vec::new();
    let value = c.value.map(fmt_value).unwrap_or_else(|| "no value".into());
    l.push(format!(
        "{} ({}, {}): {value}, threshold {} {}",
        c.name,
        c.kind,
        c.result,
        if c.threshold.is_empty() {
            "none"
        } else {
            &c.threshold
        },
        labels(c)
    ));
    if !c.detail.is_empty() {
        l.push(c.detail.clone());
    }
    if let Some(q) = &c.query {
        l.push(format!(
            "query: {}",
            q.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    if let Some(g) = &c.graph_url {
        l.push(format!("graph: {g}"));
    }
    l.into_iter().map(|s| s.trim_end().to_owned()).collect()
}

/// The whole event as plain text: the email's text part, and what the
/// other channels abbreviate.
pub fn text(e: &Event, report_attached: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", headline(e));
    if e.kind == Kind::Test {
        if let Some(r) = &e.reason {
            let _ = writeln!(out, "{r}\n");
        }
    } else if let Some(r) = &e.reason {
        let _ = writeln!(out, "Why: {r}\n");
    }
    let facts = facts(e);
    let width = facts
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    for (k, v) in &facts {
        let _ = writeln!(out, "{:<width$} {v}", format!("{k}:"));
    }
    if !e.checks.is_empty() {
        let title = if e.kind == Kind::WatchBlind {
            "Checks that could not decide"
        } else {
            "Failing checks"
        };
        let _ = writeln!(out, "\n{title}:");
        for c in &e.checks {
            for (i, line) in check_lines(c).iter().enumerate() {
                let lead = if i == 0 { "  - " } else { "    " };
                let _ = writeln!(out, "{lead}{line}");
            }
        }
    }
    if !e.errors.is_empty() {
        let _ = writeln!(out, "\nErrors:");
        for err in &e.errors {
            let _ = writeln!(out, "  {err}");
        }
    }
    if let Some(r) = &e.report {
        let _ = writeln!(
            out,
            "\nIncident report: {}{}",
            r.path,
            if report_attached { " (attached)" } else { "" }
        );
    }
    let steps = next_steps(e);
    if !steps.is_empty() {
        let _ = writeln!(out, "\nWhat you can do next:");
        for s in steps {
            let _ = writeln!(out, "  - {s}");
        }
    }
    let _ = write!(
        out,
        "\n-- \nrollbackd on {} · {} · event {}\n",
        e.host,
        e.kind.as_str(),
        e.id
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn subjects_can_be_triaged_from_a_phone() {
        let cases = [
            (
                fixtures::finished(Outcome::Recovered),
                "[rollbackd] shop-web rolled back: error-ratio 0.31 > 0.05 (+1 more)",
            ),
            (
                fixtures::started(),
                "[rollbackd] shop-web is rolling back: error-ratio 0.31 > 0.05 (+1 more)",
            ),
            (
                fixtures::finished(Outcome::VerifyFailed),
                "[rollbackd] shop-web rolled back but did NOT recover (verify_failed): error-ratio 0.31 > 0.05 (+1 more)",
            ),
            (
                fixtures::escalated(),
                "[rollbackd] shop-web escalated, a person must act: the restored revision did not recover",
            ),
            (
                fixtures::blind(),
                "[rollbackd] shop-web is blind: 3 consecutive evaluations could not decide",
            ),
            (
                fixtures::would(),
                "[rollbackd] shop-web would roll back (dry run): error-ratio 0.31 > 0.05 (+1 more)",
            ),
            (
                fixtures::rejected(),
                "[rollbackd] configuration rejected on ops-1: 2 errors",
            ),
            (
                fixtures::test(),
                "[rollbackd] test message from rollbackd on ops-1",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(subject(&e), want);
        }
    }

    #[test]
    fn evidence_reads_like_the_comparison_that_failed() {
        let c = |kind: &str, value: Option<f64>, threshold: &str, detail: &str| Check {
            kind: kind.into(),
            name: "x".into(),
            result: "fail".into(),
            value,
            threshold: threshold.into(),
            labels: Default::default(),
            detail: detail.into(),
            query: None,
            graph_url: None,
        };
        assert_eq!(
            evidence(&c("prometheus", Some(0.31), "max 0.05", "")),
            "x 0.31 > 0.05"
        );
        assert_eq!(
            evidence(&c("prometheus", Some(2.0), "max 5, min 3", "")),
            "x 2 < 3"
        );
        assert_eq!(
            evidence(&c("prometheus", Some(9.0), "max_increase 2x", "")),
            "x 9 > 2x its baseline"
        );
        assert_eq!(
            evidence(&c(
                "health",
                Some(503.0),
                "status 2xx",
                "status 503 in 3ms from http://h/"
            )),
            "x: status 503"
        );
        assert_eq!(evidence(&c("alert", None, "", "")), "x (fail)");
    }

    #[test]
    fn long_subjects_are_clipped_and_single_line() {
        let mut e = fixtures::escalated();
        e.reason = Some(format!("{}\nsecond line", "y".repeat(300)));
        let s = subject(&e);
        assert_eq!(s.chars().count(), 140);
        assert!(s.ends_with('…'));
        assert!(!s.contains('\n'));
    }

    #[test]
    fn kubernetes_targets_get_kubectl_commands_and_command_targets_the_journal() {
        let e = fixtures::finished(Outcome::Recovered);
        let steps = next_steps(&e).join("\n");
        assert!(
            steps.contains("`kubectl rollout history deployment/web -n shop`"),
            "{steps}"
        );
        assert!(steps.contains("--to-revision=7"), "{steps}");
        let mut e = fixtures::finished(Outcome::Error);
        e.target = Some("command /usr/local/bin/deploy".into());
        e.target_kind = Some("command".into());
        let steps = next_steps(&e).join("\n");
        assert!(
            steps.contains(&format!(
                "`grep '\"shop-web-{}\"' /var/lib/rollbackd/journal.jsonl`",
                fixtures::T0
            )),
            "{steps}"
        );
        assert!(steps.contains("/watches/shop-web/reset"), "{steps}");
    }
}
