//! The incident report: one Markdown file per rollback in
//! `STATE_DIR/reports/ROLLBACK_ID.md`, written when the rollback starts and
//! rewritten as it proceeds, with the timeline from the journal, the
//! evidence, the revisions before and after, and what to do next.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::render;
use super::{Event, ReportRef};

pub const DIR: &str = "reports";

/// Where a rollback's report lives. Rollback ids are `WATCH-MILLIS` and
/// watch names are `[A-Za-z0-9._-]`; anything else is replaced anyway.
pub fn path(state_dir: &Path, rollback_id: &str) -> PathBuf {
    let safe: String = rollback_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.');
    state_dir.join(DIR).join(format!("{safe}.md"))
}

/// A table cell: one line, no column breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\r', '\n'], " ")
}

fn ts_of(v: &Value) -> String {
    v["ts"].as_str().map(str::to_owned).unwrap_or_default()
}

/// What one journal line says, in a few words.
fn what(v: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(o) = v["outcome"].as_str() {
        parts.push(format!("outcome {o}"));
    }
    if let Some(t) = v["to_revision"].as_str() {
        parts.push(format!("to revision {t}"));
    }
    if v["event"] == "command_output" {
        parts.push(format!(
            "exit {}{} in {} ms",
            v["exit_code"],
            if v["timed_out"] == true {
                " (timed out)"
            } else {
                ""
            },
            v["duration_ms"]
        ));
        for stream in ["stdout", "stderr"] {
            if let Some(s) = v[stream].as_str().map(str::trim).filter(|s| !s.is_empty()) {
                parts.push(format!("{stream}: {}", render::clip(s, 200)));
            }
        }
    }
    if let Some(r) = v["reason"].as_str() {
        parts.push(render::clip(r, 300));
    }
    parts.join("; ")
}

/// The report as Markdown. `timeline` holds the journal lines of this
/// rollback, oldest first.
pub fn render(e: &Event, timeline: &[Value]) -> String {
    let mut md = String::new();
    let w = e.watch.as_deref().unwrap_or("rollbackd");
    let _ = writeln!(md, "# Incident report: {}\n", render::headline(e));
    let _ = writeln!(md, "| | |\n|---|---|");
    for (k, v) in render::facts(e) {
        let _ = writeln!(md, "| {k} | {} |", cell(&v));
    }
    let _ = writeln!(
        md,
        "| Status | {} ({}) |",
        e.kind.as_str(),
        render::time(e.ts)
    );
    if let Some(r) = &e.reason {
        let _ = writeln!(md, "\n## Why\n\n{r}");
    }
    let _ = writeln!(md, "\n## Evidence\n");
    if e.checks.is_empty() {
        let _ = writeln!(md, "No failing check was recorded with this event.");
    } else {
        let _ = writeln!(
            md,
            "| check | kind | result | value | threshold | series |\n|---|---|---|---|---|---|"
        );
        for c in &e.checks {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&c.name),
                cell(&c.kind),
                cell(&c.result),
                c.value
                    .map(crate::engine::fmt_value)
                    .unwrap_or_else(|| "—".into()),
                cell(&c.threshold),
                cell(&render::labels(c))
            );
        }
        md.push('\n');
        for c in &e.checks {
            let _ = writeln!(md, "- {}", render::evidence(c));
            if !c.detail.is_empty() {
                let _ = writeln!(md, "  - detail: {}", cell(&c.detail));
            }
            if let Some(q) = &c.query {
                let _ = writeln!(
                    md,
                    "  - query: `{}`",
                    q.split_whitespace().collect::<Vec<_>>().join(" ")
                );
            }
            if let Some(g) = &c.graph_url {
                let _ = writeln!(md, "  - [Prometheus graph]({g})");
            }
        }
    }
    let _ = writeln!(md, "\n## Revisions\n");
    let images = |i: &Option<Vec<String>>| match i {
        Some(v) if !v.is_empty() => v.join(", "),
        _ => "not known for this target".into(),
    };
    let _ = writeln!(md, "| | revision | images |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| before (rolled away from) | {} | {} |",
        cell(e.from_revision.as_deref().unwrap_or("—")),
        cell(&images(&e.from_images))
    );
    let _ = writeln!(
        md,
        "| after (restored) | {} | {} |",
        cell(
            e.to_revision
                .as_deref()
                .unwrap_or("the previous revision (not known yet)")
        ),
        cell(&images(&e.to_images))
    );
    let _ = writeln!(md, "\n## Timeline (UTC)\n");
    let _ = writeln!(md, "| time | event | detail |\n|---|---|---|");
    if let Some(since) = e.timings.revision_since {
        let _ = writeln!(
            md,
            "| {} | revision {} appeared | |",
            render::time(since),
            cell(e.from_revision.as_deref().unwrap_or("?"))
        );
    }
    for v in timeline {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            cell(&ts_of(v)),
            cell(v["event"].as_str().unwrap_or("?")),
            cell(&what(v))
        );
    }
    let _ = writeln!(md, "\n## What you can do next\n");
    for s in render::next_steps(e) {
        let _ = writeln!(md, "- {s}");
    }
    let _ = writeln!(
        md,
        "\n---\nWritten by rollbackd on {} for watch {w}; rewritten as the rollback proceeds.",
        e.host
    );
    md
}

/// The journal lines of one rollback.
pub fn timeline(state_dir: &Path, rollback_id: &str) -> Vec<Value> {
    match crate::store::journal::Journal::read(state_dir) {
        Ok((lines, _)) => lines
            .iter()
            .filter(|l| l.rollback_id() == Some(rollback_id))
            .map(crate::store::journal::Line::to_value)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Writes (or rewrites) the report of `e`'s rollback atomically and returns
/// where it is, with its text. `None` for events without a rollback.
pub fn write(state_dir: &Path, e: &Event) -> Option<std::io::Result<ReportRef>> {
    let id = e.rollback_id.as_deref()?;
    if !e.kind.has_report() {
        return None;
    }
    let path = path(state_dir, id);
    let markdown = render(e, &timeline(state_dir, id));
    Some(
        write_atomic(&path, markdown.as_bytes()).map(|()| ReportRef {
            path: path.display().to_string(),
            markdown,
        }),
    )
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("md.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use crate::engine::Outcome;

    fn timeline() -> Vec<Value> {
        let id = format!("shop-web-{}", fixtures::T0);
        vec![
            serde_json::json!({"ts": "2026-11-21T10:05:09.900Z", "event": "decided", "rollback_id": id, "reason": "error-ratio 0.31 (threshold max 0.05)"}),
            serde_json::json!({"ts": "2026-11-21T10:05:10.000Z", "event": "rollback_started", "rollback_id": id, "from_revision": "7"}),
            serde_json::json!({"ts": "2026-11-21T10:05:12.000Z", "event": "command_output", "rollback_id": id, "exit_code": 0, "timed_out": false, "duration_ms": 1800, "stdout": "deployed v1\n", "stderr": ""}),
            serde_json::json!({"ts": "2026-11-21T10:06:45.000Z", "event": "rollback_finished", "rollback_id": id, "outcome": "recovered", "to_revision": "6"}),
        ]
    }

    #[test]
    fn snapshot_of_a_recovered_rollback() {
        let md = render(&fixtures::finished(Outcome::Recovered), &timeline());
        super::super::snapshot::assert_snapshot("report-recovered.md", &md);
    }

    #[test]
    fn report_files_are_named_by_rollback_and_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = fixtures::started();
        e.report = None;
        let first = write(dir.path(), &e).unwrap().unwrap();
        assert!(
            first
                .path
                .ends_with(&format!("reports/shop-web-{}.md", fixtures::T0))
        );
        let fin = fixtures::finished(Outcome::Recovered);
        let second = write(dir.path(), &fin).unwrap().unwrap();
        assert_eq!(first.path, second.path);
        let on_disk = std::fs::read_to_string(&second.path).unwrap();
        assert!(on_disk.contains("| Outcome | recovered |"), "{on_disk}");
        assert!(write(dir.path(), &fixtures::blind()).is_none());
        assert_eq!(
            path(dir.path(), "../../etc/passwd"),
            dir.path().join("reports/_.._etc_passwd.md")
        );
    }
}
