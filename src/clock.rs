//! Wall-clock time, for the parts that observe and act. The engine never
//! reads a clock: the supervisor hands it `now`.

use std::time::SystemTime;

use crate::engine::Millis;

/// Milliseconds since the Unix epoch (0 on a clock set before it).
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
