use super::*;
use serde_json::json;

/// Deployment web at `generation`, its controller having observed
/// `observed`, with `status`.
fn deployment(generation: i64, observed: i64, status: Value) -> Deployment {
    let mut s = status;
    s["observedGeneration"] = observed.into();
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "d-1", "generation": generation,
                     "resourceVersion": "42",
                     "annotations": {REVISION: "2", CHANGE_CAUSE: "deploy v2", "team": "shop"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "web:v2"}]}}},
        "status": s
    }))
    .unwrap()
}

fn dep(generation: i64, observed: i64, status: Value) -> Object {
    Object::Deployment(deployment(generation, observed, status))
}

fn rs(name: &str, rev: &str, image: &str, created: &str, extra: Value) -> Value {
    let mut annotations = json!({REVISION: rev});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            annotations[k] = v;
        }
    }
    json!({
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created,
                     "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                          "uid": "d-1", "controller": true}]},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web", HASH_LABEL: name}},
                              "spec": {"containers": [{"name": "web", "image": image,
                                                       "aFieldOfANewerKubernetes": {"on": true}}]}}}
    })
}

fn complete() -> Value {
    json!({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "readyReplicas": 3})
}

#[test]
fn deployment_status_follows_kubectl_rule_by_rule() {
    let cases = [
        (
            dep(3, 2, complete()),
            RolloutStatus::Waiting("Waiting for deployment spec update to be observed...".into()),
        ),
        (
            dep(2, 2, json!({"replicas": 3, "updatedReplicas": 1, "availableReplicas": 3})),
            RolloutStatus::Waiting("Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...".into()),
        ),
        (
            dep(2, 2, json!({"replicas": 4, "updatedReplicas": 3, "availableReplicas": 3})),
            RolloutStatus::Waiting("Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...".into()),
        ),
        (
            dep(2, 2, json!({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2})),
            RolloutStatus::Waiting("Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...".into()),
        ),
        (
            dep(2, 2, json!({"replicas": 4, "updatedReplicas": 1, "availableReplicas": 3,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]})),
            RolloutStatus::DeadlineExceeded("deployment \"web\" exceeded its progress deadline".into()),
        ),
        (
            dep(2, 2, complete()),
            RolloutStatus::Complete("deployment \"web\" successfully rolled out".into()),
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(obj.rollout_status(), want);
    }
}

#[test]
fn a_stale_deadline_is_not_read_before_the_spec_is_observed() {
    // Right after an undo the status still speaks of the bad rollout.
    let obj = dep(
        3,
        2,
        json!({"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
    );
    assert!(matches!(obj.rollout_status(), RolloutStatus::Waiting(_)));
    assert_eq!(obj.current(&[]), None);
}

fn sts(spec_extra: Value, status: Value) -> Object {
    let mut spec = json!({"replicas": 3, "selector": {"matchLabels": {"app": "db"}},
                          "template": {"metadata": {"labels": {"app": "db"}},
                                       "spec": {"containers": [{"name": "db", "image": "db:v1"}]}}});
    if let Value::Object(m) = spec_extra {
        for (k, v) in m {
            spec[k] = v;
        }
    }
    Object::StatefulSet(
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "shop", "uid": "s-1", "generation": 2},
            "spec": spec, "status": status
        }))
        .unwrap(),
    )
}

#[test]
fn statefulset_status_follows_kubectl() {
    let s = |ready, updated, cur: &str, upd: &str| {
        json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": ready, "updatedReplicas": updated,
               "currentReplicas": 3, "currentRevision": cur, "updateRevision": upd})
    };
    assert_eq!(
        sts(json!({}), json!({"observedGeneration": 1})).rollout_status(),
        RolloutStatus::Waiting("Waiting for statefulset spec update to be observed...".into())
    );
    assert_eq!(
        sts(json!({}), s(1, 1, "db-a", "db-b")).rollout_status(),
        RolloutStatus::Waiting("Waiting for 2 pods to be ready...".into())
    );
    assert_eq!(
        sts(json!({}), s(3, 1, "db-a", "db-b")).rollout_status(),
        RolloutStatus::Waiting(
            "waiting for statefulset rolling update to complete 1 pods at revision db-b...".into()
        )
    );
    assert_eq!(
        sts(json!({}), s(3, 3, "db-b", "db-b")).rollout_status(),
        RolloutStatus::Complete(
            "statefulset rolling update complete 3 pods at revision db-b...".into()
        )
    );
    let partitioned =
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}});
    assert_eq!(
        sts(partitioned.clone(), s(3, 1, "db-a", "db-b")).rollout_status(),
        RolloutStatus::Waiting(
            "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated..."
                .into()
        )
    );
    assert_eq!(
        sts(partitioned, s(3, 2, "db-a", "db-b")).rollout_status(),
        RolloutStatus::Complete(
            "partitioned roll out complete: 2 new pods have been updated...".into()
        )
    );
    assert!(matches!(
        sts(
            json!({"updateStrategy": {"type": "OnDelete"}}),
            s(3, 3, "a", "a")
        )
        .rollout_status(),
        RolloutStatus::Unsupported(_)
    ));
}

#[test]
fn daemonset_status_follows_kubectl() {
    let ds = |observed, updated, available| {
        Object::DaemonSet(
            serde_json::from_value(json!({
                "metadata": {"name": "agent", "generation": 2},
                "spec": {"selector": {"matchLabels": {"app": "agent"}},
                         "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}},
                "status": {"observedGeneration": observed, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                           "numberMisscheduled": 0, "numberReady": available,
                           "updatedNumberScheduled": updated, "numberAvailable": available}
            }))
            .unwrap(),
        )
    };
    assert_eq!(
        ds(1, 3, 3).rollout_status(),
        RolloutStatus::Waiting("Waiting for daemon set spec update to be observed...".into())
    );
    assert_eq!(
        ds(2, 1, 3).rollout_status(),
        RolloutStatus::Waiting("Waiting for daemon set \"agent\" rollout to finish: 1 out of 3 new pods have been updated...".into())
    );
    assert_eq!(
        ds(2, 3, 2).rollout_status(),
        RolloutStatus::Waiting("Waiting for daemon set \"agent\" rollout to finish: 2 of 3 updated pods are available...".into())
    );
    assert_eq!(
        ds(2, 3, 3).rollout_status(),
        RolloutStatus::Complete("daemon set \"agent\" successfully rolled out".into())
    );
}

fn history() -> Vec<HistoryEntry> {
    let d = deployment(2, 2, complete());
    let mut foreign = rs(
        "other-1",
        "9",
        "other:v1",
        "2026-11-21T09:00:00Z",
        json!({}),
    );
    foreign["metadata"]["ownerReferences"][0]["uid"] = "someone-else".into();
    replicaset_history(
        &d,
        &[
            rs(
                "web-a",
                "1",
                "web:v1",
                "2026-11-21T10:00:00Z",
                json!({CHANGE_CAUSE: "deploy v1", "team": "shop"}),
            ),
            rs(
                "web-b",
                "2",
                "web:v2",
                "2026-11-21T10:05:00Z",
                json!({CHANGE_CAUSE: "deploy v2"}),
            ),
            foreign,
        ],
    )
}

#[test]
fn history_is_the_owned_sets_by_revision_without_the_hash_label() {
    let h = history();
    assert_eq!(h.iter().map(|e| e.number).collect::<Vec<_>>(), [1, 2]);
    let labels = h[0]
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert!(!labels.contains_key(HASH_LABEL));
    assert_eq!(h[0].images(), ["web:v1"]);
    assert_eq!(h[0].change_cause.as_deref(), Some("deploy v1"));
    assert!(!h[0].reused && !h[1].reused);
}

#[test]
fn a_renumbered_set_is_known_as_a_rollback() {
    let d = deployment(2, 2, complete());
    // By the controller's annotation ...
    let h = replicaset_history(
        &d,
        &[rs(
            "web-a",
            "3",
            "web:v1",
            "2026-11-21T10:00:00Z",
            json!({REVISION_HISTORY: "1"}),
        )],
    );
    assert!(h[0].reused);
    // ... and by age: made before a revision with a lower number.
    let h = replicaset_history(
        &d,
        &[
            rs("web-a", "3", "web:v1", "2026-11-21T10:00:00Z", json!({})),
            rs("web-b", "2", "web:v2", "2026-11-21T10:05:00Z", json!({})),
        ],
    );
    assert!(h[1].reused && !h[0].reused);
    let now = 1_800_000_000_000;
    let rev = crate::rollback::kubernetes::observe::revision_of(&h[1], now, false);
    assert_eq!(
        (rev.id.as_str(), rev.origin, rev.since),
        ("3", crate::engine::Origin::Rollback, now)
    );
    let rev = crate::rollback::kubernetes::observe::revision_of(&h[0], now, false);
    assert_eq!(rev.origin, crate::engine::Origin::Rollout);
    let created: jiff::Timestamp = "2026-11-21T10:05:00Z".parse().unwrap();
    assert_eq!(rev.since, created.as_millisecond() as u64);
    // Known as ours (by rollbackd's mark), a fresh-looking entry is a rollback too.
    let rev = crate::rollback::kubernetes::observe::revision_of(&h[0], now, true);
    assert_eq!(
        (rev.origin, rev.since),
        (crate::engine::Origin::Rollback, now)
    );
}

#[test]
fn the_current_revision_is_the_one_the_controller_observed() {
    let h = history();
    assert_eq!(dep(2, 2, complete()).current(&h).map(|e| e.number), Some(2));
    assert_eq!(dep(3, 2, complete()).current(&h), None);
}

#[test]
fn undo_goes_to_the_second_highest_revision_unless_told_otherwise() {
    let h = history();
    let k = WorkloadKind::Deployment;
    assert_eq!(choose(k, "web", &h, None, &[]).unwrap().number, 1);
    assert_eq!(choose(k, "web", &h, Some(2), &[]).unwrap().number, 2);
    assert_eq!(
        choose(k, "web", &h, Some(7), &[]),
        Err(Refusal::NotFound(
            "unable to find specified revision 7 in history".into()
        ))
    );
    assert_eq!(
        choose(k, "web", &h[..1], None, &[]),
        Err(Refusal::NoPrevious(
            "no rollout history found for deployment \"web\"".into()
        ))
    );
    assert_eq!(
        choose(WorkloadKind::StatefulSet, "db", &h[..1], None, &[]),
        Err(Refusal::NoPrevious(
            "no last revision to roll back to".into()
        ))
    );
    // Never back into a revision already rolled away from.
    assert!(matches!(
        choose(k, "web", &h, None, &["1".into()]),
        Err(Refusal::NoPrevious(_))
    ));
}

fn mark() -> Mark {
    Mark {
        rollback_id: "r-1".into(),
        from: "2".into(),
        to: "3".into(),
        trigger: "auto".into(),
        reason: "health failed".into(),
        at: "2026-11-21T10:10:00Z".into(),
        operator: None,
    }
}

#[test]
fn the_deployment_patch_restores_the_template_and_cause_and_keeps_other_annotations() {
    let undo = plan(&dep(2, 2, complete()), &history(), None, &[], &mark()).unwrap();
    assert_eq!(undo.to.number, 1);
    let UndoPatch::Json(ops) = undo.patch else {
        panic!("a JSON patch")
    };
    assert_eq!(ops[0]["op"], "replace");
    assert_eq!(ops[0]["path"], "/spec/template");
    assert_eq!(ops[0]["value"]["spec"]["containers"][0]["image"], "web:v1");
    assert_eq!(
        ops[0]["value"]["spec"]["containers"][0]["aFieldOfANewerKubernetes"],
        json!({"on": true}),
        "fields this build does not know are restored too"
    );
    assert!(
        ops[0]["value"]["metadata"]["labels"]
            .get(HASH_LABEL)
            .is_none()
    );
    assert_eq!(ops[1]["path"], "/metadata/annotations");
    let a = &ops[1]["value"];
    assert_eq!(a[CHANGE_CAUSE], "deploy v1");
    assert_eq!(a["team"], "shop", "kept");
    assert_eq!(a[REVISION], "2", "the Deployment's own");
    let m: Mark = serde_json::from_str(a[ROLLBACK_ANNOTATION].as_str().unwrap()).unwrap();
    assert_eq!(m, mark());
    assert_eq!(
        ops[2],
        json!({"op": "replace", "path": "/metadata/resourceVersion", "value": "42"})
    );
}

#[test]
fn a_cause_the_restored_revision_lacks_is_removed() {
    let d = deployment(2, 2, complete());
    let h = replicaset_history(
        &d,
        &[
            rs("web-a", "1", "web:v1", "2026-11-21T10:00:00Z", json!({})),
            rs(
                "web-b",
                "2",
                "web:v2",
                "2026-11-21T10:05:00Z",
                json!({CHANGE_CAUSE: "deploy v2"}),
            ),
        ],
    );
    let undo = plan(&Object::Deployment(d), &h, None, &[], &mark()).unwrap();
    let UndoPatch::Json(ops) = undo.patch else {
        panic!()
    };
    assert!(ops[1]["value"].get(CHANGE_CAUSE).is_none());
}

#[test]
fn paused_and_already_matching_are_refused_as_kubectl_refuses_them() {
    let mut d = deployment(2, 2, complete());
    d.spec.as_mut().unwrap().paused = Some(true);
    assert!(matches!(
        plan(&Object::Deployment(d), &history(), None, &[], &mark()),
        Err(Refusal::Paused(m)) if m.contains("resume it first")
    ));
    assert_eq!(
        plan(&dep(2, 2, complete()), &history(), Some(2), &[], &mark()),
        Err(Refusal::AlreadyMatches(
            "skipped rollback (current template already matches revision 2)".into()
        ))
    );
}

#[test]
fn statefulsets_go_back_through_their_controller_revisions() {
    let cr = |name: &str, n: i64, image: &str, created: &str| -> ControllerRevision {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created, "annotations": {CHANGE_CAUSE: format!("deploy {image}")},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "s-1", "controller": true}]},
            "revision": n,
            "data": {"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"app": "db"}},
                                           "spec": {"containers": [{"name": "db", "image": image, "aFieldOfANewerKubernetes": 1}]}}}}
        }))
        .unwrap()
    };
    let h = controller_revision_history(
        Some("s-1"),
        &[
            cr("db-b", 2, "db:v2", "2026-11-21T10:05:00Z"),
            cr("db-a", 1, "db:v1", "2026-11-21T10:00:00Z"),
        ],
    );
    assert_eq!(h.iter().map(|e| e.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(h[1].images(), ["db:v2"]);
    let mut obj = sts(
        json!({}),
        json!({"observedGeneration": 2, "updateRevision": "db-a", "currentRevision": "db-a"}),
    );
    if let Object::StatefulSet(s) = &mut obj {
        s.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("db:v2".into());
        s.status.as_mut().unwrap().update_revision = Some("db-b".into());
        s.metadata.resource_version = Some("7".into());
    }
    assert_eq!(obj.current(&h).map(|e| e.number), Some(2));
    let undo = plan(&obj, &h, None, &[], &mark()).unwrap();
    let UndoPatch::Strategic(p) = undo.patch else {
        panic!("a strategic merge patch")
    };
    assert_eq!(p["spec"]["template"]["$patch"], "replace");
    assert_eq!(
        p["spec"]["template"]["spec"]["containers"][0]["image"],
        "db:v1"
    );
    assert_eq!(p["metadata"]["resourceVersion"], "7");
    assert_eq!(p["metadata"]["annotations"][CHANGE_CAUSE], "deploy db:v1");
    assert!(p["metadata"]["annotations"][ROLLBACK_ANNOTATION].is_string());
    assert_eq!(
        p["spec"]["template"]["spec"]["containers"][0]["aFieldOfANewerKubernetes"], 1,
        "the revision's data as stored"
    );
}

#[test]
fn a_bad_template_renumbered_by_a_redeploy_is_still_avoided() {
    let d = deployment(2, 2, complete());
    // 2 was rolled away from; its template came back as 4 (revision-history
    // "2"); 3 is the good one restored then; 5 is a new bad rollout.
    let h = replicaset_history(
        &d,
        &[
            rs(
                "web-a",
                "3",
                "web:v1",
                "2026-11-21T10:00:00Z",
                json!({REVISION_HISTORY: "1"}),
            ),
            rs(
                "web-b",
                "4",
                "web:v2",
                "2026-11-21T10:05:00Z",
                json!({REVISION_HISTORY: "2"}),
            ),
            rs("web-c", "5", "web:v3", "2026-11-21T10:09:00Z", json!({})),
        ],
    );
    let k = WorkloadKind::Deployment;
    assert_eq!(
        choose(k, "web", &h, None, &[]).unwrap().number,
        4,
        "kubectl's choice"
    );
    assert_eq!(choose(k, "web", &h, None, &["2".into()]).unwrap().number, 3);
}
