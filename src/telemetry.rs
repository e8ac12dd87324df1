//! Logging through `tracing`: text or JSON on standard error, a level or
//! filter that a reload can change, and every line scrubbed of the secrets
//! the configuration holds before it is written.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::{LogFormat, Redactor};

/// What the command line (or its environment variables) fixed; a fixed
/// setting wins over the configuration file, on start and on every reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub format: Option<LogFormat>,
    pub level: Option<String>,
}

/// The installed logger, kept so that a reload can change format and level.
pub struct Telemetry {
    filter: reload::Handle<EnvFilter, Registry>,
    json: Arc<AtomicBool>,
    overrides: Overrides,
    applied: std::sync::Mutex<(LogFormat, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log level or filter \"{0}\"")]
    Filter(String),
    #[error("a logger is already installed")]
    AlreadyInstalled,
}

fn parse_filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(level)
        .map_err(|_| TelemetryError::Filter(level.to_owned()))
}

impl Telemetry {
    /// Installs the global logger. `format` and `level` come from the
    /// configuration file; `overrides` from the command line.
    pub fn init(
        format: LogFormat,
        level: &str,
        overrides: Overrides,
        redactor: Redactor,
    ) -> Result<Self, TelemetryError> {
        let (subscriber, telemetry) =
            Self::build(format, level, overrides, redactor, Sink::Stderr)?;
        subscriber
            .try_init()
            .map_err(|_| TelemetryError::AlreadyInstalled)?;
        Ok(telemetry)
    }

    fn build(
        format: LogFormat,
        level: &str,
        overrides: Overrides,
        redactor: Redactor,
        sink: Sink,
    ) -> Result<(impl tracing::Subscriber + Send + Sync + 'static, Self), TelemetryError> {
        let format = overrides.format.unwrap_or(format);
        let level = overrides.level.clone().unwrap_or_else(|| level.to_owned());
        let (filter, handle) = reload::Layer::new(parse_filter(&level)?);
        let json = Arc::new(AtomicBool::new(format == LogFormat::Json));
        let writer = RedactingWriter { redactor, sink };
        let (j1, j2) = (json.clone(), json.clone());
        let text = tracing_subscriber::fmt::layer()
            .with_writer(writer.clone())
            .with_target(false)
            .with_ansi(matches!(writer.sink, Sink::Stderr) && std::io::stderr().is_terminal())
            .with_filter(dynamic_filter_fn(move |_, _| !j1.load(Ordering::Relaxed)));
        let json_layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            // "target" is the watched workload in rollbackd's own fields.
            .with_target(false)
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(writer)
            .with_filter(dynamic_filter_fn(move |_, _| j2.load(Ordering::Relaxed)));
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(text)
            .with(json_layer);
        let telemetry = Self {
            filter: handle,
            json,
            overrides,
            applied: std::sync::Mutex::new((format, level)),
        };
        Ok((subscriber, telemetry))
    }

    /// Applies a reloaded configuration's format and level (unless the
    /// command line fixed them). Returns what changed, for the reload log.
    pub fn apply(&self, format: LogFormat, level: &str) -> Result<Vec<String>, TelemetryError> {
        let format = self.overrides.format.unwrap_or(format);
        let level = self.overrides.level.as_deref().unwrap_or(level);
        let mut changed = Vec::new();
        let Ok(mut applied) = self.applied.lock() else {
            return Ok(changed);
        };
        if applied.1 != level {
            let filter = parse_filter(level)?;
            // The handle only fails once the subscriber is gone (at exit).
            let _ = self.filter.reload(filter);
            changed.push(format!("log_level={level}"));
            applied.1 = level.to_owned();
        }
        if applied.0 != format {
            self.json
                .store(format == LogFormat::Json, Ordering::Relaxed);
            changed.push(format!("log_format={}", format.as_str()));
            applied.0 = format;
        }
        Ok(changed)
    }
}

/// Where log lines go: standard error, or memory for tests.
#[derive(Clone)]
enum Sink {
    Stderr,
    #[cfg_attr(not(test), allow(dead_code))]
    Memory(Arc<std::sync::Mutex<Vec<u8>>>),
}

/// Writes each log line after scrubbing secrets. The fmt layers format a
/// whole event into one writer, so the line is complete when it is scrubbed.
#[derive(Clone)]
struct RedactingWriter {
    redactor: Redactor,
    sink: Sink,
}

impl<'a> MakeWriter<'a> for RedactingWriter {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer {
            buf: Vec::with_capacity(256),
            redactor: self.redactor.clone(),
            sink: self.sink.clone(),
        }
    }
}

struct LineBuffer {
    buf: Vec<u8>,
    redactor: Redactor,
    sink: Sink,
}

impl Write for LineBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let clean = self.redactor.redact(&text);
        match &self.sink {
            // Nowhere to report a failed write to standard error.
            Sink::Stderr => {
                let _ = std::io::stderr().lock().write_all(clean.as_bytes());
            }
            Sink::Memory(m) => {
                if let Ok(mut m) = m.lock() {
                    m.extend_from_slice(clean.as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSet;

    const SECRET: &str = "s3cr\"et\\välue%/";

    fn capture(format: LogFormat, emit: impl FnOnce()) -> String {
        let redactor = Redactor::default();
        let mut set = SecretSet::default();
        set.insert(SECRET);
        redactor.add(&set);
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (sub, _t) = Telemetry::build(
            format,
            "trace",
            Overrides::default(),
            redactor,
            Sink::Memory(buf.clone()),
        )
        .unwrap();
        tracing::subscriber::with_default(sub, emit);
        String::from_utf8(buf.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn secrets_are_scrubbed_from_text_and_json_lines_in_every_form() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let out = capture(format, || {
                let url = format!(
                    "http://h/?k={}",
                    percent_encoding::utf8_percent_encode(
                        SECRET,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                );
                tracing::info!(shown = %SECRET, debugged = ?SECRET, %url, "message with {SECRET}");
                let span = tracing::info_span!("watch", token = %SECRET);
                span.in_scope(|| tracing::warn!("inside a span"));
            });
            assert!(out.matches("[REDACTED]").count() >= 4, "{format:?}: {out}");
            assert!(!out.contains("s3cr"), "{format:?} leaks: {out}");
            assert!(!out.contains("lue"), "{format:?} leaks: {out}");
        }
    }

    #[test]
    fn a_reload_switches_format_and_level() {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (sub, t) = Telemetry::build(
            LogFormat::Text,
            "info",
            Overrides::default(),
            Redactor::default(),
            Sink::Memory(buf.clone()),
        )
        .unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::debug!("hidden at info");
            assert_eq!(
                t.apply(LogFormat::Json, "debug").unwrap(),
                ["log_level=debug", "log_format=json"]
            );
            tracing::debug!("shown at debug");
        });
        let out = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(!out.contains("hidden at info"), "{out}");
        let line = out.lines().find(|l| l.contains("shown at debug")).unwrap();
        assert!(line.starts_with('{'), "JSON after the switch: {line}");
    }

    #[test]
    fn command_line_overrides_win_over_the_configuration() {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let o = Overrides {
            format: Some(LogFormat::Text),
            level: Some("warn".into()),
        };
        let (_sub, t) = Telemetry::build(
            LogFormat::Json,
            "debug",
            o,
            Redactor::default(),
            Sink::Memory(buf),
        )
        .unwrap();
        assert!(t.apply(LogFormat::Json, "trace").unwrap().is_empty());
    }
}
