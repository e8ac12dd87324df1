//! Signals become messages: SIGHUP asks for the same reload a file change
//! does; the first SIGTERM or SIGINT starts a graceful shutdown, a second one
//! exits at once.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Control;

/// Exit status when a second signal cuts a graceful shutdown short.
pub const FORCED_EXIT: i32 = 130;

pub fn spawn(control: mpsc::Sender<Control>, shutdown: CancellationToken) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let name = match sig {
                    SIGHUP => "SIGHUP",
                    SIGINT => "SIGINT",
                    _ => "SIGTERM",
                };
                if sig == SIGHUP {
                    // A full queue already holds a reload that will read the files.
                    let _ = control.try_send(Control::Reload { cause: "SIGHUP" });
                } else if shutdown.is_cancelled() {
                    tracing::warn!(signal = name, "second signal, exiting at once");
                    std::process::exit(FORCED_EXIT);
                } else {
                    tracing::info!(signal = name, "shutting down");
                    shutdown.cancel();
                }
            }
        })?;
    Ok(())
}
