//! Secret values: a type that cannot be printed by accident, and the set of
//! every secret a configuration holds, used to scrub anything the daemon
//! writes (logs, `/status`, `check` output, error messages).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, RwLock};

/// Shown wherever a secret would have been printed.
pub const REDACTED: &str = "[REDACTED]";

/// A secret string. `Debug` never shows the value and there is no `Display`;
/// the value is reached only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that sends it (a header, a login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

/// What URL serializers leave unescaped in a query or path component.
const URL_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Values too short to be scrubbed without mangling ordinary text; a secret
/// that short is not a secret worth the name, and `check` warns about it.
pub const MIN_REDACTABLE_LEN: usize = 4;

/// Every secret value a configuration holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretSet {
    values: BTreeSet<String>,
}

impl SecretSet {
    /// Registers a secret in every form it may be printed in: as is, as a
    /// JSON string (JSON logs, `/status`), as Rust's `Debug` of a string
    /// (`?field` in logs), both, and percent-encoded (inside URLs).
    pub fn insert(&mut self, value: &str) {
        if value.len() < MIN_REDACTABLE_LEN {
            return;
        }
        let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let debug = format!("{value:?}");
        let debug = debug.trim_matches('"');
        let forms = [
            value.to_owned(),
            json(value).trim_matches('"').to_owned(),
            debug.to_owned(),
            // `?field` in a JSON log line: Debug, then JSON-escaped.
            json(debug).trim_matches('"').to_owned(),
            percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
            percent_encoding::utf8_percent_encode(value, URL_COMPONENT).to_string(),
        ];
        for f in forms {
            if f.len() >= MIN_REDACTABLE_LEN {
                self.values.insert(f);
            }
        }
    }

    pub fn extend(&mut self, other: &SecretSet) {
        self.values.extend(other.values.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret replaced by [`REDACTED`]. Longer secrets go
    /// first so that a secret containing another is scrubbed whole.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let mut values: Vec<&String> = self.values.iter().collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for v in values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        out
    }
}

/// The secrets of the configurations this process has loaded, shared with
/// the log writer. Secrets of replaced configurations stay in it: old values
/// may still sit in in-flight messages.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    inner: Arc<RwLock<SecretSet>>,
}

impl Redactor {
    pub fn add(&self, secrets: &SecretSet) {
        if let Ok(mut set) = self.inner.write() {
            set.extend(secrets);
        }
    }

    /// Scrubs every string of a JSON document before it is serialized, so
    /// that escaping (`"` as `\"`) cannot hide a secret from the match.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => *s = self.redact(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_json(v)),
            _ => {}
        }
    }

    pub fn redact(&self, text: &str) -> String {
        match self.inner.read() {
            Ok(set) if !set.is_empty() => set.redact(text),
            _ => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_value() {
        let s = Secret::new("hunter2-password");
        assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
        assert_eq!(s.expose(), "hunter2-password");
    }

    #[test]
    fn redacts_every_occurrence_and_longest_first() {
        let mut set = SecretSet::default();
        set.insert("abcd");
        set.insert("abcdef-long");
        assert_eq!(
            set.redact("x abcdef-long y abcd z abcd"),
            "x [REDACTED] y [REDACTED] z [REDACTED]"
        );
    }

    #[test]
    fn escaped_and_encoded_forms_are_scrubbed_too() {
        let mut set = SecretSet::default();
        let secret = "ab\"cd\\ef é%/";
        set.insert(secret);
        let json = serde_json::to_string(&serde_json::json!({ "v": secret })).unwrap();
        assert!(!set.redact(&json).contains("cd"), "{}", set.redact(&json));
        assert!(!set.redact(&format!("{secret:?}")).contains("cd"));
        let encoded =
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(
            set.redact(&format!("http://h/?k={encoded}")),
            "http://h/?k=[REDACTED]"
        );
    }

    #[test]
    fn very_short_values_are_not_scrubbed() {
        let mut set = SecretSet::default();
        set.insert("ab");
        assert!(set.is_empty());
    }
}
