//! `rollbackd run`: loads the configuration (refusing to start on an invalid
//! one), installs the logger and runs the daemon until it is told to stop.

use super::{Exit, Global};
use crate::config::{self, Redactor};
use crate::daemon;
use crate::telemetry::Telemetry;
use tokio_util::sync::CancellationToken;

pub fn run(global: &Global) -> Exit {
    if let Some(level) = &global.log_level
        && let Some((message, hint)) = config::log_level_problem(level)
    {
        eprintln!("error: --log-level: {message} ({hint})");
        return Exit::Usage;
    }
    let cfg = match config::load(&global.config) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{}", errors.render());
            eprintln!("{}: {errors}; not starting", global.config.display());
            return Exit::Usage;
        }
    };
    let redactor = Redactor::default();
    redactor.add(&cfg.secrets);
    let telemetry = match Telemetry::init(
        cfg.daemon.log_format,
        &cfg.daemon.log_level,
        global.overrides(),
        redactor.clone(),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    for w in &cfg.warnings {
        tracing::warn!(warning = %w, "configuration warning");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rollbackd")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Exit::Failure;
        }
    };
    let logging = daemon::Logging {
        telemetry,
        redactor: redactor.clone(),
    };
    let served = runtime.block_on(async {
        let listener = daemon::bind(cfg.daemon.listen).await?;
        daemon::run(cfg, listener, CancellationToken::new(), logging).await
    });
    match served {
        Ok(()) => Exit::Success,
        Err(e) => {
            let msg = redactor.redact(&e.to_string());
            tracing::error!(error = %msg, "rollbackd failed");
            Exit::Failure
        }
    }
}
