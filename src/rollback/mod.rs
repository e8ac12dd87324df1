//! The adapters that act: they undo a rollout and report plainly what
//! happened; deciding whether to act is the engine's job.
//!
//! - [`command`]: hosts without Kubernetes, through the operator's own
//!   deploy tool (`current` to read the version, `rollback` to undo).
//! - [`kubernetes`]: Deployments, StatefulSets and DaemonSets, undone as
//!   `kubectl rollout undo` would and waited for as `kubectl rollout
//!   status` would.

pub mod command;
pub mod kubernetes;
