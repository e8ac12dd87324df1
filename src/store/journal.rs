//! `journal.jsonl`: one JSON object per line, appended and fsync'd before
//! the action it announces, so that a crash at any point leaves a record of
//! every decision that was acted on.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

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

    /// Appends one record and waits until it is on disk.
    pub fn append(&mut self, record: &Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }

    /// Every readable record, oldest first, and what could not be read.
    pub fn read(dir: &Path) -> std::io::Result<(Vec<Value>, Vec<Damage>)> {
        let file = match File::open(dir.join(FILE)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()));
            }
            Err(e) => return Err(e),
        };
        let mut records = Vec::new();
        let mut damage = Vec::new();
        for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Value>(&line) {
                Ok(v) if v.is_object() => records.push(v),
                Ok(_) => damage.push(Damage {
                    line: i + 1,
                    problem: "not a JSON object".into(),
                }),
                Err(e) => damage.push(Damage {
                    line: i + 1,
                    problem: e.to_string(),
                }),
            }
        }
        Ok((records, damage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_are_appended_one_per_line_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(&json!({"event": "armed", "watch": "a"})).unwrap();
        j.append(&json!({"event": "rollback_started", "watch": "a"}))
            .unwrap();
        let (records, damage) = Journal::read(dir.path()).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1]["event"], "rollback_started");
        assert!(damage.is_empty());
    }

    #[test]
    fn a_truncated_last_line_is_survived_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "{\"event\":\"armed\"}\n{\"event\":\"rollb",
        )
        .unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(&json!({"event": "reset"})).unwrap();
        let (records, damage) = Journal::read(dir.path()).unwrap();
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[1]["event"], "reset");
        assert_eq!(damage.len(), 1);
        assert_eq!(damage[0].line, 2);
    }

    #[test]
    fn garbage_lines_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "\u{0}\u{1}binary\n[1,2]\n{\"event\":\"armed\"}\n\n",
        )
        .unwrap();
        let (records, damage) = Journal::read(dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(damage.iter().map(|d| d.line).collect::<Vec<_>>(), [1, 2]);
    }
}
