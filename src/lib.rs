//! rollbackd watches services right after they are deployed and rolls them
//! back when they go bad.
//!
//! # Layout
//!
//! - [`engine`]: the pure decision core, one state machine per watch: no
//!   I/O, no clock, private state; every change is an input (every rule of
//!   the README's "How it decides" a unit test).
//! - [`runner`]: one watch driven end to end: its engine, its target's
//!   adapter, the journal, the memory and the outbox; effects in order,
//!   answers fed back. The daemon and the operator's commands are drivers
//!   of the same runner.
//! - [`check`]: the adapters that observe (HTTP health, Prometheus,
//!   Alertmanager alerts) and the one `evaluate()` that runs a watch's
//!   checks together.
//! - [`rollback`]: the adapters that act, behind one enum `Adapter`
//!   (command targets; Kubernetes Deployments, StatefulSets and DaemonSets
//!   with kubectl's rules): observe, re-read, undo, await the rollout,
//!   history, probe.
//! - [`api`]: the documents the daemon serves and its clients read
//!   (`/status`, control requests and answers).
//! - [`config`]: the TOML files read into a validated [`config::Config`]
//!   (every error located as `FILE:LINE:COLUMN`), secrets kept out of sight,
//!   and the pure diff a reload applies.
//! - [`daemon`]: the long-running process: the supervisor (one runner per
//!   watch, the reload pipeline with file events and SIGHUP through one
//!   path, leadership), signals, the HTTP endpoint and systemd notification.
//! - [`notify`]: events people hear about, rendered for Slack, email and
//!   webhooks, the incident reports, and the durable outbox that delivers
//!   them.
//! - [`store`]: the state directory: its lock, the typed journal, each
//!   watch's memory.
//! - [`metrics`]: the metrics, in OpenMetrics text at `/metrics`.
//! - [`clock`]: wall-clock time and its RFC 3339 forms, for the drivers
//!   and adapters (the engine is handed `now`).
//! - [`telemetry`]: logging through `tracing`, text or JSON, with secrets
//!   scrubbed from every line.
//! - [`cli`]: the command line: clap definitions, one thin module per
//!   subcommand (arguments in, exit code out).
//! - [`ops`]: what the operator's commands do (`status`, `history`,
//!   `rollback`, `verify`), as drivers of the same runner, adapters and
//!   documents as the daemon.
//!
//! Data flows one way: configuration, then the runner's checks and the
//! decision engine, then the effects (journal, notification, rollback),
//! whose answers go back into the engine.
//!
//! The project's Kubernetes API simulator, which the tests and
//! `rollbackd demo` run against, is a crate of its own: [`kubesim`]
//! (`crates/kubesim`).

pub mod api;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod rollback;
pub mod runner;
pub mod store;
pub mod telemetry;
