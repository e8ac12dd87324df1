//! The adapters that observe: HTTP health endpoints ([`http`]), Prometheus
//! queries ([`prometheus`]) and firing Alertmanager alerts ([`alert`]). Each
//! turns what it saw into an [`engine::CheckResult`](crate::engine::CheckResult);
//! none of them decides anything. [`evaluate()`] runs a watch's checks
//! together, for the daemon and the operator's commands alike.

pub mod alert;
pub mod evaluate;
pub mod http;
pub mod prometheus;

pub use evaluate::{Baselines, Checking, Connections, evaluate};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An error and its causes in one line, e.g. "error sending request:
/// client error (Connect): tcp connect error: Connection refused".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the CA file {}: {error}", path.display())]
    CaFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the CA file {} holds no usable certificate: {error}", path.display())]
    Certificate {
        path: PathBuf,
        error: reqwest::Error,
    },
    #[error("cannot build an HTTP client: {0}")]
    Build(reqwest::Error),
}

/// HTTP clients, one per CA bundle, so that connections are pooled across
/// every check that trusts the same roots.
#[derive(Default, Clone)]
pub struct Clients {
    by_ca: HashMap<Option<PathBuf>, reqwest::Client>,
}

impl Clients {
    /// A client already built for this CA bundle.
    pub fn by_ca_file(&self, ca_file: Option<&Path>) -> Option<reqwest::Client> {
        self.by_ca.get(&ca_file.map(Path::to_path_buf)).cloned()
    }

    pub fn get(&mut self, ca_file: Option<&Path>) -> Result<reqwest::Client, ClientError> {
        let key = ca_file.map(Path::to_path_buf);
        if let Some(c) = self.by_ca.get(&key) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("rollbackd/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::limited(5));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|error| ClientError::CaFile {
                path: path.to_path_buf(),
                error,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                ClientError::Certificate {
                    path: path.to_path_buf(),
                    error,
                }
            })?;
            b = b.tls_certs_only(certs);
        }
        let client = b.build().map_err(ClientError::Build)?;
        self.by_ca.insert(key, client.clone());
        Ok(client)
    }
}
