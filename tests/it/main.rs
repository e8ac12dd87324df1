//! The integration tests, as one test binary: each area is a module (the
//! former `tests/NAME.rs` binaries), and `support` holds what they share.
//! One binary links kube, lettre, axum and the rest once instead of once
//! per area. Run an area with `cargo test --test it kubernetes::`.
//!
//! The modules' tests share one process and run in parallel threads, so
//! none of them may change process-wide state (environment variables, the
//! current directory, signal dispositions): every child process gets its
//! environment through its `Command`.

mod support;

mod alertmanager;
mod cli;
mod command_target;
mod config_corpus;
mod credentials;
mod daemon;
mod demo;
mod http_api;
mod kubectl;
mod kubernetes;
mod manifests;
mod notify;
mod prometheus;
mod readme;
mod secrets;
mod simulator;
mod tls;
