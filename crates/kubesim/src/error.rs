//! The errors of the API verbs, as an API server reports them: an HTTP
//! code, a machine-readable reason and kubectl's wording, rendered as a
//! `Status` object. Shared by the store, the selectors and the HTTP surface.

use serde_json::{Value, json};

use crate::resources::Kind;

/// An API error, rendered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn not_found(kind: &str, name: &str) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: format!("{kind} \"{name}\" not found"),
        }
    }

    pub fn bad_request(message: String) -> Self {
        Self {
            code: 400,
            reason: "BadRequest",
            message,
        }
    }

    pub fn conflict(kind: &Kind, name: &str) -> Self {
        Self {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                kind.qualified()
            ),
        }
    }

    pub fn already_exists(kind: &Kind, name: &str) -> Self {
        Self {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", kind.qualified()),
        }
    }

    /// A 422, worded as the API server words field errors.
    pub fn invalid(kind: &Kind, name: &str, errors: &[String]) -> Self {
        let what = if kind.group.is_empty() {
            kind.kind.to_owned()
        } else {
            format!("{}.{}", kind.kind, kind.group)
        };
        let list = if errors.len() == 1 {
            errors[0].clone()
        } else {
            format!("[{}]", errors.join(", "))
        };
        Self {
            code: 422,
            reason: "Invalid",
            message: format!("{what} \"{name}\" is invalid: {list}"),
        }
    }

    pub fn gone(requested: u64, oldest: u64) -> Self {
        Self {
            code: 410,
            reason: "Expired",
            message: format!("too old resource version: {requested} ({oldest})"),
        }
    }

    pub fn internal() -> Self {
        Self {
            code: 500,
            reason: "InternalError",
            message: "the simulator's state is unavailable".into(),
        }
    }

    pub fn status(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code})
    }
}
