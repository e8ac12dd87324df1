//! Leader election through a `coordination.k8s.io/v1` Lease, with
//! client-go's rules: the holder renews every `lease_duration / 3`; a
//! standby takes the Lease over once it has seen no renewal for a whole
//! `lease_duration` (judged by its own clock, from when it saw the record
//! change, so that clock skew between replicas does not matter); a holder
//! that cannot renew within two thirds of the duration steps down before
//! anyone can take over; and a holder that stops releases the Lease so a
//! standby need not wait. Only the holder evaluates and acts.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Control;
use crate::config::LeaderElection;
use crate::rollback::kubernetes::{self, ApiFailure};

/// Who this daemon is, as the Lease records it: the pod's name where the
/// Downward API gives it, else host and process.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(super::supervisor::hostname);
    format!("{host}_{}", std::process::id())
}

/// The Lease as last seen, and when (on our clock) it last changed.
struct Observed {
    lease: Lease,
    changed_at: Instant,
}

pub struct Elector {
    pub settings: LeaderElection,
    pub identity: String,
    pub connector: Arc<kubernetes::Connector>,
    pub control: mpsc::Sender<Control>,
}

fn holder(l: &Lease) -> &str {
    l.spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("")
}

/// A write of the Lease: held if it went through; lost to another replica
/// on a conflict (it created or renewed it first).
fn wrote(
    observed: &mut Option<Observed>,
    what: &str,
    result: Result<Lease, kube::Error>,
) -> Result<bool, ApiFailure> {
    match result {
        Ok(lease) => {
            *observed = Some(Observed {
                lease,
                changed_at: Instant::now(),
            });
            Ok(true)
        }
        Err(e) => match kubernetes::classify(what, &e) {
            f if f.is_conflict() => Ok(false),
            f => Err(f),
        },
    }
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

impl Elector {
    fn duration_secs(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration_secs()),
            acquire_time: Some(acquired.unwrap_or_else(now_micro)),
            renew_time: Some(now_micro()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Runs until `stop`; tells the supervisor each time leadership is
    /// gained or lost, and releases the Lease on the way out.
    pub async fn run(self, stop: CancellationToken) {
        let retry = (self.settings.lease_duration / 3).max(Duration::from_millis(200));
        let renew_deadline = self.settings.lease_duration * 2 / 3;
        let mut observed: Option<Observed> = None;
        let mut leading = false;
        let mut last_renewal = Instant::now();
        let mut last_error: Option<String> = None;
        loop {
            let attempt = Instant::now();
            // A round never outlasts the renew deadline: a holder whose API
            // calls hang stops acting before a standby may take over.
            let budget = if leading {
                renew_deadline.saturating_sub(last_renewal.elapsed())
            } else {
                renew_deadline
            };
            let round = tokio::time::timeout(budget, self.round(&mut observed)).await;
            let outcome = match round {
                Ok(Ok(held)) => {
                    last_error = None;
                    if held {
                        // From when the request left: the Lease says so.
                        last_renewal = attempt;
                    }
                    Ok(held)
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!(
                    "no answer within {}",
                    humantime::format_duration(budget)
                )),
            };
            let held = match outcome {
                Ok(held) => held,
                Err(e) => {
                    if last_error.as_deref() != Some(e.as_str()) {
                        warn!(error = %e, lease = %self.settings.lease, "leader election: the Lease cannot be read or written");
                        last_error = Some(e);
                    }
                    // A holder keeps leading until its renew deadline.
                    leading && last_renewal.elapsed() < renew_deadline
                }
            };
            if held != leading {
                leading = held;
                if leading {
                    info!(identity = %self.identity, lease = %self.settings.lease, namespace = %self.settings.namespace, "became the leader");
                } else {
                    warn!(identity = %self.identity, lease = %self.settings.lease, holder = %observed.as_ref().map(|o| holder(&o.lease)).unwrap_or(""), "lost the leadership; standing by");
                }
                if self
                    .control
                    .send(Control::Leadership { leader: leading })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(retry) => {}
            }
        }
        if leading
            && let Some(api) = &self
                .connector
                .client(None)
                .await
                .ok()
                .map(|c| Api::<Lease>::namespaced(c, &self.settings.namespace))
        {
            self.release(api, observed).await;
        }
    }

    /// Connects (once) and runs one round.
    async fn round(&self, observed: &mut Option<Observed>) -> Result<bool, String> {
        let client = self
            .connector
            .client(None)
            .await
            .map_err(|e| format!("cannot reach Kubernetes: {e}"))?;
        let api = Api::<Lease>::namespaced(client, &self.settings.namespace);
        self.try_acquire_or_renew(&api, observed)
            .await
            .map_err(|e| e.to_string())
    }

    /// One round of client-go's `tryAcquireOrRenew`; true if we hold it.
    async fn try_acquire_or_renew(
        &self,
        api: &Api<Lease>,
        observed: &mut Option<Observed>,
    ) -> Result<bool, ApiFailure> {
        let name = &self.settings.lease;
        let timeout = self.connector.request_timeout();
        let current =
            match kubernetes::retry("get the Lease", timeout, timeout, || api.get_opt(name)).await?
            {
                Some(l) => l,
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(self.settings.namespace.clone()),
                            ..Default::default()
                        },
                        spec: Some(self.spec(0, None)),
                    };
                    let created = api.create(&PostParams::default(), &lease).await;
                    return wrote(observed, "create the Lease", created);
                }
            };
        let changed = observed
            .as_ref()
            .is_none_or(|o| o.lease.spec != current.spec);
        if changed {
            *observed = Some(Observed {
                lease: current.clone(),
                changed_at: Instant::now(),
            });
        }
        let seen = observed
            .as_ref()
            .map(|o| o.changed_at)
            .unwrap_or_else(Instant::now);
        let spec = current.spec.clone().unwrap_or_default();
        let holder_now = spec.holder_identity.clone().unwrap_or_default();
        let duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(self.duration_secs())).unwrap_or(1),
        );
        let mine = holder_now == self.identity;
        if !mine && !holder_now.is_empty() && seen.elapsed() < duration {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        let mut next = current.clone();
        next.spec = Some(self.spec(transitions, acquired));
        // The resourceVersion in `next` makes this a compare-and-swap: of
        // two standbys taking over at once, one gets a conflict.
        let replaced = api.replace(name, &PostParams::default(), &next).await;
        wrote(observed, "update the Lease", replaced)
    }

    /// Gives the Lease up at shutdown, so a standby takes over at once.
    async fn release(&self, api: &Api<Lease>, observed: Option<Observed>) {
        let Some(o) = observed else { return };
        if holder(&o.lease) != self.identity {
            return;
        }
        let mut next = o.lease;
        if let Some(spec) = next.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(now_micro());
        }
        let timeout = self.connector.request_timeout();
        match tokio::time::timeout(
            timeout,
            api.replace(&self.settings.lease, &PostParams::default(), &next),
        )
        .await
        {
            Ok(Ok(_)) => info!(lease = %self.settings.lease, "released the leadership"),
            Ok(Err(e)) => {
                warn!(error = %e, "could not release the Lease; a standby takes over when it expires")
            }
            Err(_) => {
                warn!("could not release the Lease in time; a standby takes over when it expires")
            }
        }
    }
}
