//! Wall-clock time, for the parts that observe and act. The engine never
//! reads a clock: its driver hands it `now`.

use std::time::SystemTime;

use crate::engine::Millis;

/// Milliseconds since the Unix epoch (0 on a clock set before it).
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// `2026-12-03T10:00:00Z`: seconds, for documents people read.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `2026-12-03T10:00:00.123Z`: milliseconds, for the journal.
pub fn rfc3339_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// [`rfc3339`] of a time in epoch milliseconds.
pub fn rfc3339_of(ms: Millis) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}
