//! The `[daemon]` table (README, "Configuration", `[daemon]`): where the
//! watch files are, the state directory, the HTTP endpoint, logging and
//! shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::config::diag::{Location, did_you_mean};
use crate::config::reader::{Ctx, Value, resolve};
use crate::config::{DaemonSettings, LogFormat};

/// `[daemon]` as read.
pub(super) struct DaemonTable {
    pub settings: DaemonSettings,
    /// Where each of `settings.watches` is written, for the errors of
    /// expanding it into files.
    pub watches_at: Vec<Location>,
}

pub(super) fn read_daemon(cx: &mut Ctx<'_>, v: Option<&Value<'_>>) -> DaemonTable {
    let mut d = DaemonSettings {
        watches: Vec::new(),
        state_dir: PathBuf::from("/var/lib/rollbackd"),
        listen: SocketAddr::from(([127, 0, 0, 1], 9187)),
        log_format: LogFormat::Text,
        log_level: "info".into(),
        control_token: None,
        shutdown_timeout: Duration::from_secs(30),
        notify_max_age: Duration::from_secs(24 * 3600),
    };
    let Some(mut t) = v.and_then(|v| cx.table("daemon", v, "[daemon]")) else {
        return DaemonTable {
            settings: d,
            watches_at: Vec::new(),
        };
    };
    // Errors are recorded in `cx`; defaults stand in so that reading goes on.
    if let Some(list) = t.get("watches").and_then(|v| cx.string_list("watches", v)) {
        for (p, span) in list {
            if p.is_empty() {
                cx.error(&span, "\"watches\": a path must not be empty");
            } else {
                d.watches.push(resolve(cx.base_dir, Path::new(&p)));
            }
        }
    }
    // The n-th path read is placed at the n-th element written; an empty
    // element (an error of its own) shifts the places of those after it.
    let item_spans: Vec<_> = t
        .peek("watches")
        .and_then(|w| w.get_ref().as_array())
        .map(|a| a.iter().map(|i| i.span()).collect())
        .unwrap_or_default();
    let watches_at = (0..d.watches.len())
        .map(|i| cx.loc(item_spans.get(i).unwrap_or(&(0..0))))
        .collect();
    if let Some(p) = t.get("state_dir").and_then(|v| cx.path("state_dir", v)) {
        d.state_dir = p;
    }
    if let Some(v) = t.get("listen")
        && let Some(s) = cx.string("listen", v)
    {
        match SocketAddr::from_str(&s) {
            Ok(a) => d.listen = a,
            Err(_) => cx.error_hint(
                &v.span(),
                format!("\"listen\": \"{s}\" is not an address and port like \"127.0.0.1:9187\""),
                Some("write an IP address; host names are not resolved, and \"[::]:9187\" or \"0.0.0.0:9187\" listen everywhere".into()),
            ),
        }
    }
    if let Some(f) = t.get("log_format").and_then(|v| {
        cx.choice(
            "log_format",
            v,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        )
    }) {
        d.log_format = f;
    }
    if let Some(v) = t.get("log_level")
        && let Some(s) = cx.string("log_level", v)
    {
        match log_level_problem(&s) {
            None => d.log_level = s,
            Some((message, hint)) => cx.error_hint(&v.span(), message, Some(hint)),
        }
    }
    d.control_token = cx.secret(&mut t, "control_token", "control_token_file");
    for (key, slot) in [
        ("shutdown_timeout", &mut d.shutdown_timeout),
        ("notify_max_age", &mut d.notify_max_age),
    ] {
        if let Some(x) = t.get(key).and_then(|v| cx.duration(key, v)) {
            *slot = x;
        }
    }
    t.finish(cx);
    DaemonTable {
        settings: d,
        watches_at,
    }
}

/// Why a `log_level` is unusable, with a hint. A bare word is a target
/// filter to `EnvFilter`, so `"warning"` would silently log nothing: only
/// level names may stand alone.
pub fn log_level_problem(s: &str) -> Option<(String, String)> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let usage = "use error, warn, info, debug or trace, or a filter like \"info,rollbackd=debug\"";
    if tracing_subscriber::EnvFilter::builder().parse(s).is_err() {
        return Some((
            format!("\"log_level\": \"{s}\" is not a level or filter"),
            usage.into(),
        ));
    }
    let bare = s
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.contains('=') && !d.contains('['))
        .find(|d| !LEVELS.contains(&d.to_ascii_lowercase().as_str()))?;
    let hint = did_you_mean(bare, LEVELS)
        .unwrap_or_else(|| format!("{usage}; to filter by module write \"{bare}=debug\""));
    Some((format!("\"log_level\": \"{bare}\" is not a level"), hint))
}
