//! The `[kubernetes]` table (README, "Configuration", `[kubernetes]`): how
//! to reach the API server, and the Lease of leader election.

use std::time::Duration;

use super::values::dns_name;
use crate::config::reader::{Ctx, Value};
use crate::config::{KubernetesSettings, LeaderElection};

/// `None` when the table is invalid (and reported); absent, it is the
/// built-in connection.
pub(super) fn read_kubernetes(
    cx: &mut Ctx<'_>,
    v: Option<&Value<'_>>,
) -> Option<KubernetesSettings> {
    let mut k = KubernetesSettings {
        kubeconfig: None,
        context: None,
        request_timeout: Duration::from_secs(30),
        leader_election: None,
    };
    let Some(v) = v else { return Some(k) };
    let mut t = cx.table("kubernetes", v, "[kubernetes]")?;
    let mut ok = true;
    if let Some(v) = t.get("kubeconfig") {
        k.kubeconfig = cx.path("kubeconfig", v);
        ok &= k.kubeconfig.is_some();
    }
    if let Some(v) = t.get("context") {
        k.context = cx.nonempty_string("context", v);
        ok &= k.context.is_some();
    }
    if let Some(v) = t.get("request_timeout") {
        match cx.duration_min("request_timeout", v, Duration::from_millis(100)) {
            Some(d) => k.request_timeout = d,
            None => ok = false,
        }
    }
    if let Some(v) = t.get("leader_election") {
        k.leader_election = read_leader_election(cx, v);
        ok &= k.leader_election.is_some();
    }
    t.finish(cx);
    ok.then_some(k)
}

fn read_leader_election(cx: &mut Ctx<'_>, v: &Value<'_>) -> Option<LeaderElection> {
    let mut t = cx.table("leader_election", v, "leader_election")?;
    let lease = t
        .require(cx, "lease")
        .and_then(|v| dns_name(cx, "lease", v, 253));
    let namespace = t
        .require(cx, "namespace")
        .and_then(|v| dns_name(cx, "namespace", v, 63));
    let lease_duration = match t.get("lease_duration") {
        Some(v) => cx.duration_min("lease_duration", v, Duration::from_secs(1)),
        None => Some(Duration::from_secs(15)),
    };
    t.finish(cx);
    Some(LeaderElection {
        lease: lease?,
        namespace: namespace?,
        lease_duration: lease_duration?,
    })
}
