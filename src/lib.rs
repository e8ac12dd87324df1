//! rollbackd watches services right after they are deployed and rolls them
//! back when they go bad.
//!
//! # Layout
//!
//! - [`config`]: the TOML files read into a validated [`config::Config`]
//!   (every error located as `FILE:LINE:COLUMN`), secrets kept out of sight,
//!   and the pure diff a reload acts on.
//! - [`daemon`]: the long-running process: the supervisor that owns the live
//!   configuration, the reload pipeline (file events and SIGHUP through one
//!   path), signals, the HTTP endpoint, metrics and systemd notification.
//! - [`notify`]: events people hear about, rendered for Slack, email and
//!   webhooks, the incident reports, and the durable outbox that delivers
//!   them.
//! - [`store`]: the state directory and its lock.
//! - [`telemetry`]: logging through `tracing`, text or JSON, with secrets
//!   scrubbed from every line.
//! - [`cli`]: the command line (`run`, `check`), one module per subcommand.
//!
//! Data flows one way: configuration, then the scheduler, checks and the
//! decision engine, then the effects (rollback, notification, journal).

pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod notify;
pub mod rollback;
pub mod sim;
pub mod store;
pub mod telemetry;
