//! A reader over the spanned TOML tree that records every problem instead of
//! stopping at the first, knows each table's keys (so unknown keys are
//! reported with a did-you-mean hint), expands `${ENV}` references and reads
//! `*_file` secrets.
//!
//! serde's derive stops at the first error and loses positions; an operator
//! fixing a config under pressure needs every error, located, in one run.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::{Diagnostic, Location, Severity, SourceFile, did_you_mean};
use super::secret::{MIN_REDACTABLE_LEN, Secret, SecretSet};

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// Looks up environment variables; injected so that tests need not mutate
/// the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What a string value is, for `${ENV}` handling: substitutions into secrets
/// and URLs (tokens in query strings are common) are registered as secrets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sensitivity {
    Plain,
    Secret,
}

/// A place in the order diagnostics were found in: the number found before.
/// A check made after reading files its diagnostic at the `Found` of what it
/// is about, as if it had been reported while that was read (see
/// `load::rules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Found(pub(crate) usize);

/// The reading context of one file: where errors go and where secrets are kept.
pub(crate) struct Ctx<'s> {
    pub file: &'s SourceFile,
    pub base_dir: &'s Path,
    pub env: EnvLookup<'s>,
    pub diags: &'s mut Vec<Diagnostic>,
    pub secrets: &'s mut SecretSet,
}

impl Ctx<'_> {
    pub fn loc(&self, span: &Range<usize>) -> Location {
        self.file.location(span)
    }

    /// Where the reading is now, in the order diagnostics are found in.
    pub fn found(&self) -> Found {
        Found(self.diags.len())
    }

    pub fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.push(span, Severity::Error, message.into(), None);
    }

    pub fn error_hint(
        &mut self,
        span: &Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(span, Severity::Error, message.into(), hint);
    }

    pub fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.push(span, Severity::Warning, message.into(), None);
    }

    fn push(
        &mut self,
        span: &Range<usize>,
        severity: Severity,
        message: String,
        hint: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            location: self.loc(span),
            severity,
            message,
            hint,
        });
    }

    /// Keeps a secret for redaction; one too short to scrub safely is
    /// warned about where it was written.
    pub fn register_secret(&mut self, value: &str, span: &Range<usize>) {
        if !value.is_empty() && value.len() < MIN_REDACTABLE_LEN {
            let message = format!(
                "this secret is shorter than {MIN_REDACTABLE_LEN} characters and cannot be redacted from logs"
            );
            let location = self.loc(span);
            let known = self
                .diags
                .iter()
                .any(|d| d.location == location && d.message == message);
            if !known {
                self.warn(span, message);
            }
        }
        self.secrets.insert(value);
    }

    fn type_error(&mut self, key: &str, v: &Value<'_>, expected: &str) {
        let found = v.get_ref().type_str();
        self.error(
            &v.span(),
            format!("\"{key}\" must be {expected}, not {}", article(found)),
        );
    }

    /// A string with `${ENV}` references expanded.
    pub fn string(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        self.string_as(key, v, Sensitivity::Plain)
    }

    pub fn string_as(&mut self, key: &str, v: &Value<'_>, sens: Sensitivity) -> Option<String> {
        let Some(raw) = v.get_ref().as_str() else {
            self.type_error(key, v, "a string");
            return None;
        };
        self.expand(key, raw, &v.span(), sens)
    }

    /// A string that must not be empty after expansion.
    pub fn nonempty_string(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        let s = self.string(key, v)?;
        if s.trim().is_empty() {
            self.error(&v.span(), format!("\"{key}\" must not be empty"));
            return None;
        }
        Some(s)
    }

    fn expand(
        &mut self,
        key: &str,
        raw: &str,
        span: &Range<usize>,
        sens: Sensitivity,
    ) -> Option<String> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        let mut ok = true;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(escaped) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = escaped;
            } else if let Some(inner) = after.strip_prefix("${") {
                let Some(end) = inner.find('}') else {
                    self.error(
                        span,
                        format!(
                            "\"{key}\": unterminated \"${{\" (write \"$${{\" for a literal \"${{\")"
                        ),
                    );
                    return None;
                };
                let name = &inner[..end];
                if !is_env_name(name) {
                    self.error(span, format!("\"{key}\": \"${{{name}}}\" is not a valid environment variable reference"));
                    ok = false;
                } else {
                    match (self.env)(name) {
                        Some(value) => {
                            if sens == Sensitivity::Secret {
                                self.register_secret(&value, span);
                            }
                            out.push_str(&value);
                        }
                        None => {
                            self.error(
                                span,
                                format!("\"{key}\": environment variable {name} is not set"),
                            );
                            ok = false;
                        }
                    }
                }
                rest = &inner[end + 1..];
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
        ok.then_some(out)
    }

    /// A secret given inline (`key`) or through its file twin (`key_file`),
    /// never both. `None` when absent or invalid (the caller decides whether
    /// absence is an error).
    pub fn secret(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        file_key: &'static str,
    ) -> Option<Secret> {
        let inline = t.get(key);
        let file = t.get(file_key);
        match (inline, file) {
            (Some(_), Some(f)) => {
                self.error(
                    &f.span(),
                    format!("set either \"{key}\" or \"{file_key}\", not both"),
                );
                None
            }
            (Some(v), None) => {
                let s = self.string_as(key, v, Sensitivity::Secret)?;
                if s.trim().is_empty() {
                    self.error(&v.span(), format!("\"{key}\" must not be blank"));
                    return None;
                }
                self.register_secret(&s, &v.span());
                Some(Secret::new(s))
            }
            (None, Some(f)) => {
                let path = self.path(file_key, f)?;
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let value = text.strip_suffix('\n').unwrap_or(&text);
                        let value = value.strip_suffix('\r').unwrap_or(value).to_owned();
                        if value.trim().is_empty() {
                            self.error(
                                &f.span(),
                                format!("\"{file_key}\": {} is empty or blank", path.display()),
                            );
                            return None;
                        }
                        self.register_secret(&value, &f.span());
                        Some(Secret::new(value))
                    }
                    Err(e) => {
                        self.error(
                            &f.span(),
                            format!(
                                "\"{file_key}\": cannot read {}: {}",
                                path.display(),
                                io_reason(&e)
                            ),
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    /// A path; relative paths are taken from the main file's directory.
    pub fn path(&mut self, key: &str, v: &Value<'_>) -> Option<PathBuf> {
        let s = self.nonempty_string(key, v)?;
        Some(resolve(self.base_dir, Path::new(&s)))
    }

    pub fn bool(&mut self, key: &str, v: &Value<'_>) -> Option<bool> {
        let b = v.get_ref().as_bool();
        if b.is_none() {
            self.type_error(key, v, "true or false");
        }
        b
    }

    pub fn int(&mut self, key: &str, v: &Value<'_>, min: i64, max: i64) -> Option<i64> {
        let Some(i) = v.get_ref().as_integer() else {
            self.type_error(key, v, "an integer");
            return None;
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    &v.span(),
                    format!("\"{key}\" must be between {min} and {max}"),
                );
                None
            }
        }
    }

    pub fn float(&mut self, key: &str, v: &Value<'_>) -> Option<f64> {
        let parsed = match v.get_ref() {
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            _ => {
                self.type_error(key, v, "a number");
                return None;
            }
        };
        match parsed {
            Some(f) if f.is_finite() => Some(f),
            _ => {
                self.error(&v.span(), format!("\"{key}\" must be a finite number"));
                None
            }
        }
    }

    pub fn duration(&mut self, key: &str, v: &Value<'_>) -> Option<Duration> {
        let Some(raw) = v.get_ref().as_str() else {
            self.type_error(key, v, "a duration string like \"15s\"");
            return None;
        };
        let s = self.expand(key, raw, &v.span(), Sensitivity::Plain)?;
        match humantime::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(_) => {
                self.error(&v.span(), format!("\"{key}\": invalid duration \"{s}\" (write a number and a unit, like \"750ms\", \"15s\", \"30m\" or \"1h\")"));
                None
            }
        }
    }

    /// A duration that must be at least `min`.
    pub fn duration_min(&mut self, key: &str, v: &Value<'_>, min: Duration) -> Option<Duration> {
        let d = self.duration(key, v)?;
        if d < min {
            self.error(
                &v.span(),
                format!(
                    "\"{key}\" must be at least {}",
                    humantime::format_duration(min)
                ),
            );
            return None;
        }
        Some(d)
    }

    /// One of a fixed set of words.
    pub fn choice<T: Copy>(
        &mut self,
        key: &str,
        v: &Value<'_>,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(key, v)?;
        if let Some((_, t)) = choices.iter().find(|(name, _)| *name == s) {
            return Some(*t);
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        self.error_hint(
            &v.span(),
            format!(
                "\"{key}\": unknown value \"{s}\", expected {}",
                one_of(&names)
            ),
            did_you_mean(&s, choices.iter().map(|(n, _)| *n)),
        );
        None
    }

    pub fn string_list(&mut self, key: &str, v: &Value<'_>) -> Option<Vec<(String, Range<usize>)>> {
        self.string_list_as(key, v, Sensitivity::Plain)
    }

    pub fn string_list_as(
        &mut self,
        key: &str,
        v: &Value<'_>,
        sens: Sensitivity,
    ) -> Option<Vec<(String, Range<usize>)>> {
        let Some(items) = v.get_ref().as_array() else {
            self.type_error(key, v, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items.iter() {
            match self.string_as(key, item, sens) {
                Some(s) => out.push((s, item.span())),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A table of string values (headers, labels).
    pub fn string_map(
        &mut self,
        key: &str,
        v: &Value<'_>,
        sens: Sensitivity,
    ) -> Option<BTreeMap<String, String>> {
        let Some(table) = v.get_ref().as_table() else {
            self.type_error(key, v, "a table of strings");
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, item) in table.iter() {
            let name = format!("{key}.{}", k.get_ref());
            match self.string_as(&name, item, sens) {
                Some(s) => {
                    if sens == Sensitivity::Secret {
                        self.register_secret(&s, &item.span());
                    }
                    out.insert(k.get_ref().to_string(), s);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A sub-table; a wrong type is reported.
    pub fn table<'d, 'i>(
        &mut self,
        key: &str,
        v: &'d Value<'i>,
        what: impl Into<String>,
    ) -> Option<Table<'d, 'i>> {
        match v.get_ref().as_table() {
            Some(entries) => Some(Table::new(entries, v.span(), what.into())),
            None => {
                self.type_error(key, v, "a table");
                None
            }
        }
    }

    /// An array of tables (`[[watch]]`, `[[watch.health]]`).
    pub fn tables<'d, 'i>(
        &mut self,
        key: &str,
        v: &'d Value<'i>,
    ) -> Vec<(&'d DeTable<'i>, Range<usize>)> {
        let Some(items) = v.get_ref().as_array() else {
            self.type_error(key, v, &format!("an array of tables, written [[{key}]]"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref().as_table() {
                Some(t) => out.push((t, item.span())),
                None => self.type_error(key, item, "a table"),
            }
        }
        out
    }
}

/// A table being read: remembers which keys were asked for, so that the
/// rest are reported as unknown, with the asked-for keys as suggestions.
pub(crate) struct Table<'d, 'i> {
    entries: &'d DeTable<'i>,
    pub span: Range<usize>,
    pub what: String,
    known: Vec<&'static str>,
}

impl<'d, 'i> Table<'d, 'i> {
    pub fn new(entries: &'d DeTable<'i>, span: Range<usize>, what: String) -> Self {
        Self {
            entries,
            span,
            what,
            known: Vec::new(),
        }
    }

    /// The value of `key`, marking the key as known.
    pub fn get(&mut self, key: &'static str) -> Option<&'d Value<'i>> {
        self.known.push(key);
        self.peek(key)
    }

    /// The value of `key` without marking it known.
    pub fn peek(&self, key: &str) -> Option<&'d Value<'i>> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    /// The value of a key that must be present.
    pub fn require(&mut self, cx: &mut Ctx<'_>, key: &'static str) -> Option<&'d Value<'i>> {
        let v = self.get(key);
        if v.is_none() {
            cx.error(
                &self.span,
                format!("{} is missing the required key \"{key}\"", self.what),
            );
        }
        v
    }

    /// Like [`Table::finish`] when the table's variant (its `kind` or
    /// `type`) is unknown: keys of any variant pass, the rest are reported.
    pub fn finish_any_variant(mut self, cx: &mut Ctx<'_>, keys: &[&'static str]) {
        self.known.extend_from_slice(keys);
        self.finish(cx);
    }

    /// Reports every key that no reader asked for.
    pub fn finish(self, cx: &mut Ctx<'_>) {
        for (k, _) in self.entries.iter() {
            let name = k.get_ref().as_ref();
            if !self.known.contains(&name) {
                cx.error_hint(
                    &k.span(),
                    format!("unknown key \"{name}\" in {}", self.what),
                    did_you_mean(name, self.known.iter().copied()),
                );
            }
        }
    }
}

pub(crate) fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn article(type_name: &str) -> String {
    match type_name {
        "integer" | "array" => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

pub(crate) fn one_of(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// The reason of an I/O error without the OS error number noise.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "no such file or directory".into(),
        PermissionDenied => "permission denied".into(),
        IsADirectory => "is a directory".into(),
        InvalidData => "not valid UTF-8".into(),
        _ => e.to_string(),
    }
}
