//! A watch's `target` (README, "Configuration", `[[watch]]`): a Kubernetes
//! workload or a command, whose `kind` decides its other keys.

use std::time::Duration;

use crate::config::load::values::{MIN_INTERVAL, dns_name, optional};
use crate::config::reader::{Ctx, Sensitivity, Value};
use crate::config::{CommandTarget, KubernetesTarget, Target, WorkloadKind};

/// `None` when the target is invalid (and reported).
pub(super) fn read_target(cx: &mut Ctx<'_>, v: &Value<'_>) -> Option<Target> {
    let mut t = cx.table("target", v, "the target")?;
    let kind = t.require(cx, "kind").and_then(|v| {
        cx.choice(
            "kind",
            v,
            &[
                ("deployment", Some(WorkloadKind::Deployment)),
                ("statefulset", Some(WorkloadKind::StatefulSet)),
                ("daemonset", Some(WorkloadKind::DaemonSet)),
                ("command", None),
            ],
        )
    });
    let Some(kind) = kind else {
        t.finish_any_variant(
            cx,
            &[
                "namespace",
                "name",
                "context",
                "rollback",
                "current",
                "timeout",
            ],
        );
        return None;
    };
    let target = match kind {
        Some(kind) => {
            t.what = format!("the {} target", kind.as_str());
            let namespace = t
                .require(cx, "namespace")
                .and_then(|v| dns_name(cx, "namespace", v, 63));
            let name = t
                .require(cx, "name")
                .and_then(|v| dns_name(cx, "name", v, 253));
            let context = optional(&mut t, "context", |v| cx.nonempty_string("context", v));
            t.finish(cx);
            Target::Kubernetes(KubernetesTarget {
                kind,
                namespace: namespace?,
                name: name?,
                context: context.ok()?,
            })
        }
        None => {
            t.what = "the command target".into();
            let argv = |cx: &mut Ctx<'_>, key: &str, v: &Value<'_>| -> Option<Vec<String>> {
                // Arguments often carry tokens (`--token ${DEPLOY_TOKEN}`).
                let list = cx.string_list_as(key, v, Sensitivity::Secret)?;
                if list.is_empty() || list[0].0.trim().is_empty() {
                    cx.error(&v.span(), format!("\"{key}\" must be a program and its arguments, like [\"/usr/local/bin/deploy\", \"rollback\", \"web\"]"));
                    return None;
                }
                Some(list.into_iter().map(|(s, _)| s).collect())
            };
            let rollback = t
                .require(cx, "rollback")
                .and_then(|v| argv(cx, "rollback", v));
            let current = optional(&mut t, "current", |v| argv(cx, "current", v));
            let timeout = match t.get("timeout") {
                Some(v) => cx.duration_min("timeout", v, MIN_INTERVAL),
                None => Some(Duration::from_secs(300)),
            };
            t.finish(cx);
            Target::Command(CommandTarget {
                rollback: rollback?,
                current: current.ok()?,
                timeout: timeout?,
            })
        }
    };
    Some(target)
}
