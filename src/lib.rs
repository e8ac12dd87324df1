//! rollbackd watches services right after they are deployed and rolls them
//! back when they go bad.
//!
//! # Layout
//!
//! - [`engine`]: the pure decision core, one state machine per watch: no
//!   I/O, no clock (the README's "How it decides" as unit tests).
//! - [`check`]: the adapters that observe: HTTP health, Prometheus,
//!   Alertmanager alerts.
//! - [`rollback`]: the adapters that act: Kubernetes undo and rollout status
//!   with kubectl's rules, command targets.
//! - [`clock`]: wall-clock time for the adapters and the supervisor.
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
//! - [`cli`]: the command line (`run`, `check`, `notify-test`, `demo`), one
//!   module per subcommand.
//!
//! Data flows one way: configuration, then the scheduler, checks and the
//! decision engine, then the effects (rollback, notification, journal).
//!
//! The project's Kubernetes API simulator, which the tests and
//! `rollbackd demo` run against, is a crate of its own: [`kubesim`]
//! (`crates/kubesim`).

pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod notify;
pub mod rollback;
pub mod store;
pub mod telemetry;
