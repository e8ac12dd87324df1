//! Configuration diagnostics: every problem found in the files, located as
//! `FILE:LINE:COLUMN`, so that one `rollbackd check` run shows them all.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One configuration file's text, with a line index for turning byte offsets
/// into the line and column an editor shows.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: PathBuf, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            path,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (counted in characters, as editors do) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    pub fn location(&self, span: &Range<usize>) -> Location {
        let (line, column) = self.position(span.start);
        Location {
            file: self.path.clone(),
            line,
            column,
        }
    }
}

/// Where something was written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// A location for problems that concern a whole file (unreadable, missing).
    pub fn file(path: &Path) -> Self {
        Self {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in the configuration. Messages never contain secret values:
/// the code that builds them only quotes keys, names and non-secret values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Location,
    pub severity: Severity,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// The errors that made a configuration invalid, in file order.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} configuration error{}", self.errors.len(), if self.errors.len() == 1 { "" } else { "s" })]
pub struct ConfigErrors {
    pub errors: Vec<Diagnostic>,
}

impl ConfigErrors {
    /// Every error, one per line, as `FILE:LINE:COLUMN: message`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.errors {
            out.push_str(&d.to_string());
            out.push('\n');
        }
        out
    }
}

/// A "did you mean" hint: the closest candidate that is plausibly a typo.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let input_lower = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let mut score = strsim::normalized_damerau_levenshtein(&input_lower, c);
            // "warning" for "warn", "dry" for "dry_run": a prefix is a strong hint.
            let (short, long) = if c.len() < input_lower.len() {
                (c, input_lower.as_str())
            } else {
                (input_lower.as_str(), c)
            };
            if short.len() >= 3 && long.starts_with(short) {
                score = score.max(0.8);
            }
            // "smtp_pasword" for "password": the misspelt last word decides.
            if let Some((_, last)) = input_lower.rsplit_once('_')
                && last.len() >= 4
            {
                score = score.max(0.95 * strsim::normalized_damerau_levenshtein(last, c));
            }
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean \"{c}\"?"))
}

#[cfg(test)]
mod tests {
    //! Positions as editors count them, and the did-you-mean threshold.

    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let f = SourceFile::new("a.toml".into(), "ab\nçd = 1\n".into());
        assert_eq!(f.position(0), (1, 1));
        assert_eq!(f.position(1), (1, 2));
        assert_eq!(f.position(3), (2, 1));
        // 'ç' is two bytes but one column
        assert_eq!(f.position(5), (2, 2));
        assert_eq!(f.position(999), (3, 1));
    }

    #[test]
    fn suggests_the_closest_key_for_a_typo() {
        let keys = ["failure_threshold", "interval", "cooldown"];
        assert_eq!(
            did_you_mean("failure_treshold", keys).as_deref(),
            Some("did you mean \"failure_threshold\"?")
        );
        assert_eq!(did_you_mean("zzzzzz", keys), None);
        assert_eq!(
            did_you_mean("smtp_pasword", ["smtp_port", "password"]).as_deref(),
            Some("did you mean \"password\"?")
        );
        assert_eq!(
            did_you_mean("warning", ["warn", "info"]).as_deref(),
            Some("did you mean \"warn\"?")
        );
    }
}
