//! rollbackd watches services right after they are deployed and rolls them
//! back when they go bad.
//!
//! # Layout
//!
//! - [`engine`]: the pure decision core, one state machine per watch: no
//!   I/O, no clock (SPEC §4 as unit tests).
//! - [`check`]: the adapters that observe: HTTP health, Prometheus,
//!   Alertmanager alerts.
//! - [`rollback`]: the adapters that act: Kubernetes undo and rollout status
//!   with kubectl's rules, command targets.
//! - [`sim`]: the project's Kubernetes API simulator, for the tests and
//!   `rollbackd demo`.
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

pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod notify;
pub mod rollback;
pub mod sim;
pub mod store;
pub mod telemetry;
