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
        let format = overrides.format.unwrap_or(format);
        let level = overrides.level.clone().unwrap_or_else(|| level.to_owned());
        let (filter, handle) = reload::Layer::new(parse_filter(&level)?);
        let json = Arc::new(AtomicBool::new(format == LogFormat::Json));
        let writer = RedactingStderr { redactor };
        let (j1, j2) = (json.clone(), json.clone());
        let text = tracing_subscriber::fmt::layer()
            .with_writer(writer.clone())
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
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
        tracing_subscriber::registry()
            .with(filter)
            .with(text)
            .with(json_layer)
            .try_init()
            .map_err(|_| TelemetryError::AlreadyInstalled)?;
        Ok(Self {
            filter: handle,
            json,
            overrides,
            applied: std::sync::Mutex::new((format, level)),
        })
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

/// Writes each log line to standard error after scrubbing secrets. The fmt
/// layers format a whole event into one writer, so the line is complete by
/// the time it is scrubbed.
#[derive(Clone)]
struct RedactingStderr {
    redactor: Redactor,
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer {
            buf: Vec::with_capacity(256),
            redactor: self.redactor.clone(),
        }
    }
}

struct LineBuffer {
    buf: Vec<u8>,
    redactor: Redactor,
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
        // Nowhere to report a failed write to standard error.
        let _ = std::io::stderr().lock().write_all(clean.as_bytes());
    }
}
