//! `journal.jsonl`: one JSON object per line, appended and fsync'd before
//! the action it announces, so that a crash at any point leaves a record of
//! every decision that was acted on. Its lines are one typed [`Line`],
//! written and read only here (their fields are listed in the README's
//! "State directory" section).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::rfc3339_millis;
use crate::config::Redactor;
use crate::engine::{EventKind, JournalSummary, Millis, Record};

pub const FILE: &str = "journal.jsonl";

pub struct Journal {
    path: PathBuf,
    file: File,
}

/// What reading the journal found wrong; the readable lines are still used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub line: usize,
    pub problem: String,
}

impl Journal {
    /// Opens (creating) the journal. A last line cut short by a crash is
    /// ended with a newline, so the next record starts on a line of its own.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                tracing::warn!(path = %path.display(), "the journal's last line was cut short (a crash while writing?); it is kept as it is and skipped when read");
                file.write_all(b"\n")?;
                file.sync_data()?;
            }
        }
        Ok(Self { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line, scrubbed of secrets, and waits until it is on
    /// disk. Returns the line as written (without its newline), for those
    /// following the watch.
    pub fn append(&mut self, line: &Line, redactor: &Redactor) -> std::io::Result<String> {
        let mut v = line.to_value();
        redactor.redact_json(&mut v);
        let mut text = serde_json::to_string(&v).map_err(std::io::Error::other)?;
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        text.pop();
        Ok(text)
    }

    /// Every readable line, oldest first, and what could not be read.
    pub fn read(dir: &Path) -> std::io::Result<(Vec<Line>, Vec<Damage>)> {
        let file = match File::open(dir.join(FILE)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()));
            }
            Err(e) => return Err(e),
        };
        let mut lines = Vec::new();
        let mut damage = Vec::new();
        for (i, bytes) in BufReader::new(file).split(b'\n').enumerate() {
            let bytes = bytes?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let read = serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(Line::from_value);
            match read {
                Ok(l) => lines.push(l),
                Err(problem) => damage.push(Damage {
                    line: i + 1,
                    problem,
                }),
            }
        }
        Ok((lines, damage))
    }
}

/// What the journal says of each watch: its rollbacks started and never
/// finished, and the revisions rolled away from.
pub fn summaries(lines: &[Line]) -> BTreeMap<String, JournalSummary> {
    let mut out: BTreeMap<String, JournalSummary> = BTreeMap::new();
    for l in lines {
        let Entry::Engine(r) = &l.entry else { continue };
        let view = out.entry(l.watch.clone()).or_default();
        match (r.event, &r.rollback_id, &r.from_revision) {
            (EventKind::RollbackStarted, Some(id), Some(from)) => {
                view.open = Some((id.clone(), from.clone()))
            }
            (EventKind::RollbackApplied, _, Some(from)) => {
                view.bad.insert(from.clone());
            }
            (EventKind::RollbackFinished, Some(id), _)
                if view.open.as_ref().is_some_and(|o| &o.0 == id) =>
            {
                view.open = None
            }
            _ => {}
        }
    }
    out
}

/// One line of the journal: when, about which watch and target, on which
/// host, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub ts: Millis,
    pub watch: String,
    pub target: Option<String>,
    pub host: String,
    pub entry: Entry,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A step of the engine: decisions, rollbacks, outcomes.
    Engine(Record),
    /// What a rollback command printed.
    CommandOutput(CommandOutput),
    /// What a Kubernetes undo restored.
    UndoPatch(UndoPatch),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandOutput {
    #[serde(default)]
    pub rollback_id: Option<String>,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UndoPatch {
    pub rollback_id: String,
    pub restored_revision: Option<i64>,
    pub from_images: Vec<String>,
    pub to_images: Vec<String>,
}

const COMMAND_OUTPUT: &str = "command_output";
const UNDO_PATCH: &str = "undo_patch";

impl Line {
    /// The rollback this line belongs to, if any.
    pub fn rollback_id(&self) -> Option<&str> {
        match &self.entry {
            Entry::Engine(r) => r.rollback_id.as_deref(),
            Entry::CommandOutput(c) => c.rollback_id.as_deref(),
            Entry::UndoPatch(u) => Some(&u.rollback_id),
        }
    }

    /// The line as it is written: one flat JSON object with `event`.
    pub fn to_value(&self) -> Value {
        let mut v = match &self.entry {
            Entry::Engine(r) => serde_json::to_value(r),
            Entry::CommandOutput(c) => serde_json::to_value(c),
            Entry::UndoPatch(u) => serde_json::to_value(u),
        }
        .unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            match &self.entry {
                Entry::Engine(_) => None,
                Entry::CommandOutput(_) => obj.insert("event".into(), COMMAND_OUTPUT.into()),
                Entry::UndoPatch(_) => obj.insert("event".into(), UNDO_PATCH.into()),
            };
            let ts = SystemTime::UNIX_EPOCH + Duration::from_millis(self.ts);
            obj.insert("ts".into(), rfc3339_millis(ts).into());
            obj.insert("watch".into(), self.watch.clone().into());
            obj.insert("target".into(), self.target.clone().into());
            obj.insert("host".into(), self.host.clone().into());
        }
        v
    }

    pub fn from_value(mut v: Value) -> Result<Line, String> {
        let obj = v.as_object_mut().ok_or("not a JSON object")?;
        let text = |obj: &serde_json::Map<String, Value>, key: &str| {
            obj.get(key).and_then(Value::as_str).map(str::to_owned)
        };
        let ts = text(obj, "ts").ok_or("no ts")?;
        let ts = humantime::parse_rfc3339_weak(&ts)
            .map_err(|e| format!("ts {ts:?}: {e}"))?
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0);
        let watch = text(obj, "watch").ok_or("no watch")?;
        let target = text(obj, "target");
        let host = text(obj, "host").unwrap_or_default();
        let event = text(obj, "event").ok_or("no event")?;
        obj.insert("ts".into(), ts.into());
        let entry = match event.as_str() {
            COMMAND_OUTPUT => serde_json::from_value(v).map(Entry::CommandOutput),
            UNDO_PATCH => serde_json::from_value(v).map(Entry::UndoPatch),
            _ => serde_json::from_value(v).map(Entry::Engine),
        }
        .map_err(|e| format!("{event}: {e}"))?;
        Ok(Line {
            ts,
            watch,
            target,
            host,
            entry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: Millis, event: EventKind, rollback_id: Option<&str>, from: Option<&str>) -> Line {
        Line {
            ts,
            watch: "a".into(),
            target: Some("deployment/shop/web".into()),
            host: "ops-1".into(),
            entry: Entry::Engine(Record {
                ts,
                event,
                watch: "a".into(),
                rollback_id: rollback_id.map(str::to_owned),
                from_revision: from.map(str::to_owned),
                to_revision: None,
                trigger: None,
                outcome: None,
                reason: None,
                revision: None,
                operator: None,
                checks: Vec::new(),
            }),
        }
    }

    fn text(l: &Line) -> String {
        serde_json::to_string(&l.to_value()).unwrap()
    }

    #[test]
    fn records_are_appended_one_per_line_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let redactor = Redactor::default();
        let armed = line(1_000, EventKind::Armed, None, None);
        let started = line(2_000, EventKind::RollbackStarted, Some("a-2000"), Some("7"));
        let output = Line {
            entry: Entry::CommandOutput(CommandOutput {
                rollback_id: Some("a-2000".into()),
                exit_code: Some(0),
                timed_out: false,
                duration_ms: 12,
                stdout: "done\n".into(),
                stderr: String::new(),
            }),
            ..armed.clone()
        };
        let patch = Line {
            entry: Entry::UndoPatch(UndoPatch {
                rollback_id: "a-2000".into(),
                restored_revision: Some(6),
                from_images: vec!["web:2".into()],
                to_images: vec!["web:1".into()],
            }),
            ..armed.clone()
        };
        for l in [&armed, &started, &output, &patch] {
            j.append(l, &redactor).unwrap();
        }
        let (lines, damage) = Journal::read(dir.path()).unwrap();
        assert!(damage.is_empty(), "{damage:?}");
        assert_eq!(lines, [armed, started, output, patch]);
        let raw = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(
            raw.lines()
                .nth(1)
                .unwrap()
                .contains(r#""ts":"1970-01-01T00:00:02.000Z""#),
            "{raw}"
        );
        assert!(
            raw.lines()
                .nth(2)
                .unwrap()
                .contains(r#""event":"command_output""#),
            "{raw}"
        );
    }

    #[test]
    fn a_truncated_last_line_is_survived_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let first = text(&line(1_000, EventKind::Armed, None, None));
        std::fs::write(
            dir.path().join(FILE),
            format!("{first}\n{{\"event\":\"rollb"),
        )
        .unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(
            &line(2_000, EventKind::Reset, None, None),
            &Redactor::default(),
        )
        .unwrap();
        let (lines, damage) = Journal::read(dir.path()).unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(matches!(&lines[1].entry, Entry::Engine(r) if r.event == EventKind::Reset));
        assert_eq!(damage.len(), 1);
        assert_eq!(damage[0].line, 2);
    }

    #[test]
    fn garbage_lines_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let good = text(&line(1_000, EventKind::Armed, None, None));
        std::fs::write(
            dir.path().join(FILE),
            format!("\u{0}\u{1}binary\n[1,2]\n{good}\n\n{{\"event\":\"armed\"}}\n"),
        )
        .unwrap();
        let (lines, damage) = Journal::read(dir.path()).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            damage.iter().map(|d| d.line).collect::<Vec<_>>(),
            [1, 2, 5],
            "a line without ts or watch is damage too"
        );
    }

    #[test]
    fn the_summary_names_open_rollbacks_and_revisions_rolled_away_from() {
        let lines = [
            line(1, EventKind::RollbackStarted, Some("a-1"), Some("7")),
            line(2, EventKind::RollbackApplied, Some("a-1"), Some("7")),
            line(3, EventKind::RollbackFinished, Some("a-1"), Some("7")),
            line(4, EventKind::RollbackStarted, Some("a-4"), Some("9")),
        ];
        let s = summaries(&lines);
        assert_eq!(s["a"].open, Some(("a-4".into(), "9".into())));
        assert_eq!(s["a"].bad, ["7".to_owned()].into());
    }
}
