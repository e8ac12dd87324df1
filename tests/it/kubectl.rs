//! The Kubernetes API simulator's fidelity, proven with the real `kubectl`:
//! what kubectl prints against it is what it prints against a cluster.

use std::process::Command;

use kubesim::Simulator;

use crate::support;

struct Lab {
    sim: Simulator,
    dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl Lab {
    fn new() -> Lab {
        let (sim, rt) = support::simulator();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig()).unwrap();
        sim.cluster
            .create_deployment("shop", "web", "img:v1", 3, 600);
        Lab { sim, dir, _rt: rt }
    }

    /// Runs kubectl with a fresh cache and home of its own.
    fn kubectl(&self, args: &[&str]) -> (i32, String, String) {
        self.kubectl_in(args, "")
    }

    /// Runs kubectl with `stdin` as its input (`-f -`).
    fn kubectl_in(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl is installed (it ships on this machine image)");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.kubectl(args);
        assert_eq!(code, 0, "kubectl {args:?}: {err}");
        out
    }

    /// `kubectl rollout status RESOURCE` in shop, which must succeed
    /// within 20 s; its output.
    fn rolled_out(&self, resource: &str) -> String {
        self.ok(&["rollout", "status", resource, "-n", "shop", "--timeout=20s"])
    }

    fn image(&self) -> String {
        self.image_of("deployments", "web")
    }

    fn image_of(&self, resource: &str, name: &str) -> String {
        let o = self.sim.cluster.get(resource, "shop", name).unwrap();
        o["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-n", "shop", "-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

#[test]
fn set_image_rollout_status_history_and_undo_behave_as_on_a_cluster() {
    let lab = Lab::new();
    let json = lab.ok(&["get", "deployment", "web", "-n", "shop", "-o", "json"]);
    let d: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(d["metadata"]["name"], "web");

    assert_eq!(
        lab.ok(&["set", "image", "deployment/web", "web=img:v2", "-n", "shop"]),
        "deployment.apps/web image updated\n"
    );
    lab.ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=ship v2",
        "-n",
        "shop",
    ]);
    let status = lab.rolled_out("deployment/web");
    assert!(
        status.ends_with("deployment \"web\" successfully rolled out\n"),
        "{status}"
    );

    assert_eq!(
        lab.ok(&["rollout", "history", "deployment/web", "-n", "shop"]),
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         ship v2\n\n"
    );
    let rev2 = lab.ok(&[
        "rollout",
        "history",
        "deployment/web",
        "-n",
        "shop",
        "--revision=2",
    ]);
    assert!(
        rev2.starts_with("deployment.apps/web with revision #2\nPod Template:\n"),
        "{rev2}"
    );
    assert!(rev2.contains("Image:\timg:v2"), "{rev2}");

    assert_eq!(
        lab.ok(&["rollout", "undo", "deployment/web", "-n", "shop"]),
        "deployment.apps/web rolled back\n"
    );
    assert_eq!(lab.image(), "img:v1");
    // Revision 1's ReplicaSet is reused and renumbered 3; its change-cause is back.
    assert_eq!(
        lab.ok(&["rollout", "history", "deployment/web", "-n", "shop"]),
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n2         ship v2\n3         <none>\n\n"
    );
    lab.rolled_out("deployment/web");

    assert_eq!(
        lab.ok(&[
            "rollout",
            "undo",
            "deployment/web",
            "-n",
            "shop",
            "--to-revision=2"
        ]),
        "deployment.apps/web rolled back\n"
    );
    assert_eq!(lab.image(), "img:v2");
    let d = lab.sim.cluster.get("deployments", "shop", "web").unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["kubernetes.io/change-cause"], "ship v2",
        "the revision's change-cause is restored"
    );

    // Undoing to the revision already running is skipped, as kubectl says.
    // The revision annotation is the controller's: wait for it to run.
    lab.rolled_out("deployment/web");
    let current = lab.sim.cluster.get("deployments", "shop", "web").unwrap()["metadata"]["annotations"]
        ["deployment.kubernetes.io/revision"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        lab.ok(&[
            "rollout",
            "undo",
            "deployment/web",
            "-n",
            "shop",
            &format!("--to-revision={current}")
        ]),
        format!(
            "deployment.apps/web skipped rollback (current template already matches revision {current})\n"
        )
    );

    let (code, _, err) = lab.kubectl(&[
        "rollout",
        "undo",
        "deployment/web",
        "-n",
        "shop",
        "--to-revision=9",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: unable to find specified revision 9 in history\n"
    );
}

#[test]
fn a_rollout_that_never_becomes_ready_exceeds_its_progress_deadline() {
    let lab = Lab::new();
    lab.rolled_out("deployment/web");
    lab.sim
        .cluster
        .patch_deployment(
            "shop",
            "web",
            "application/merge-patch+json",
            br#"{"spec":{"progressDeadlineSeconds":1}}"#,
            false,
        )
        .unwrap();
    lab.ok(&[
        "set",
        "image",
        "deployment/web",
        "web=img:bad",
        "-n",
        "shop",
    ]);
    let (code, out, err) = lab.kubectl(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=20s",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("Waiting for deployment \"web\" rollout to finish"),
        "{out}"
    );
    assert_eq!(
        err,
        "error: deployment \"web\" exceeded its progress deadline\n"
    );
}

#[test]
fn pause_resume_and_scale_behave_as_on_a_cluster() {
    let lab = Lab::new();
    lab.ok(&["set", "image", "deployment/web", "web=img:v2", "-n", "shop"]);
    assert_eq!(
        lab.ok(&["rollout", "pause", "deployment/web", "-n", "shop"]),
        "deployment.apps/web paused\n"
    );
    let (code, _, err) = lab.kubectl(&["rollout", "undo", "deployment/web", "-n", "shop"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("you cannot rollback a paused deployment; resume it first"),
        "{err}"
    );
    assert_eq!(
        lab.ok(&["rollout", "resume", "deployment/web", "-n", "shop"]),
        "deployment.apps/web resumed\n"
    );
    let (code, _, err) = lab.kubectl(&["rollout", "resume", "deployment/web", "-n", "shop"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not paused"), "{err}");
    assert_eq!(
        lab.ok(&["scale", "deployment/web", "--replicas=5", "-n", "shop"]),
        "deployment.apps/web scaled\n"
    );
    let d = lab.sim.cluster.get("deployments", "shop", "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 5);
    let (code, _, err) = lab.kubectl(&["get", "deployment", "nope", "-n", "shop"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Error from server (NotFound): deployments.apps \"nope\" not found\n"
    );
}

/// StatefulSets roll back through their ControllerRevisions: kubectl lists
/// them and sends one's data back as a strategic merge patch.
#[test]
fn statefulset_set_image_status_history_and_undo_behave_as_on_a_cluster() {
    let lab = Lab::new();
    lab.sim
        .cluster
        .create_statefulset("shop", "db", "img:v1", 3)
        .unwrap();
    let first = lab.rolled_out("sts/db");
    assert!(
        first.contains("Waiting for 3 pods to be ready...\n"),
        "{first}"
    );
    assert!(
        first.ends_with("partitioned roll out complete: 3 new pods have been updated...\n"),
        "{first}"
    );
    assert_eq!(
        lab.ok(&["set", "image", "sts/db", "db=img:v2", "-n", "shop"]),
        "statefulset.apps/db image updated\n"
    );
    let rolling = lab.rolled_out("sts/db");
    assert!(
        rolling.contains(
            "Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated...\n"
        ),
        "{rolling}"
    );
    assert_eq!(
        lab.ok(&["rollout", "history", "sts/db", "-n", "shop"]),
        "statefulset.apps/db \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    );
    let rev1 = lab.ok(&["rollout", "history", "sts/db", "-n", "shop", "--revision=1"]);
    assert!(
        rev1.starts_with(
            "statefulset.apps/db with revision #1\nPod Template:\n  Labels:\tapp=db\n"
        ),
        "{rev1}"
    );
    assert!(rev1.contains("Image:\timg:v1"), "{rev1}");

    let revisions = lab.json(&["get", "controllerrevisions", "-l", "app=db"]);
    let items = revisions["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for cr in items {
        assert_eq!(cr["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        assert_eq!(cr["metadata"]["ownerReferences"][0]["controller"], true);
        let name = cr["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            format!(
                "db-{}",
                cr["metadata"]["labels"]["controller.kubernetes.io/hash"]
                    .as_str()
                    .unwrap()
            ),
            name
        );
        assert_eq!(cr["data"]["spec"]["template"]["$patch"], "replace");
    }

    assert_eq!(
        lab.ok(&["rollout", "undo", "sts/db", "-n", "shop"]),
        "statefulset.apps/db rolled back\n"
    );
    assert_eq!(lab.image_of("statefulsets", "db"), "img:v1");
    lab.rolled_out("sts/db");
    // Revision 1 is reused and renumbered 3, as the controller's history does.
    assert_eq!(
        lab.ok(&["rollout", "history", "sts/db", "-n", "shop"]),
        "statefulset.apps/db \nREVISION  CHANGE-CAUSE\n2         <none>\n3         <none>\n\n"
    );
    let pods = lab.json(&["get", "pods", "-l", "app=db"]);
    let current = lab.json(&["get", "sts", "db"])["status"]["currentRevision"].clone();
    for p in pods["items"].as_array().unwrap() {
        assert_eq!(p["metadata"]["labels"]["controller-revision-hash"], current);
    }

    // kubectl compares the revision's bytes with the template it encodes.
    assert_eq!(
        lab.ok(&["rollout", "undo", "sts/db", "-n", "shop", "--to-revision=3"]),
        "statefulset.apps/db skipped rollback (current template already matches revision 3)\n"
    );
    assert_eq!(
        lab.ok(&["rollout", "undo", "sts/db", "-n", "shop", "--to-revision=2"]),
        "statefulset.apps/db rolled back\n"
    );
    assert_eq!(lab.image_of("statefulsets", "db"), "img:v2");
    let (code, _, err) =
        lab.kubectl(&["rollout", "undo", "sts/db", "-n", "shop", "--to-revision=9"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: unable to find specified revision 9 in history\n"
    );
    lab.rolled_out("sts/db");
    assert_eq!(
        lab.ok(&["scale", "sts/db", "--replicas=2", "-n", "shop"]),
        "statefulset.apps/db scaled\n"
    );
    let done = lab.rolled_out("sts/db");
    assert!(
        done.ends_with("partitioned roll out complete: 2 new pods have been updated...\n"),
        "{done}"
    );
}

/// A StatefulSet or DaemonSet has no progress deadline: a rollout whose
/// pods never become ready runs into kubectl's own timeout.
#[test]
fn statefulset_and_daemonset_rollouts_of_a_bad_image_time_out() {
    let lab = Lab::new();
    lab.sim
        .cluster
        .create_statefulset("shop", "db", "img:v1", 2)
        .unwrap();
    lab.sim
        .cluster
        .create_daemonset("shop", "agent", "img:v1")
        .unwrap();
    lab.rolled_out("sts/db");
    lab.rolled_out("ds/agent");
    lab.ok(&["set", "image", "sts/db", "db=img:bad", "-n", "shop"]);
    lab.ok(&["set", "image", "ds/agent", "agent=img:bad", "-n", "shop"]);
    let (code, out, err) =
        lab.kubectl(&["rollout", "status", "sts/db", "-n", "shop", "--timeout=2s"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("Waiting for 1 pods to be ready...\n"), "{out}");
    assert_eq!(err, "error: timed out waiting for the condition\n");
    let (code, out, err) = lab.kubectl(&[
        "rollout",
        "status",
        "ds/agent",
        "-n",
        "shop",
        "--timeout=2s",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("Waiting for daemon set \"agent\" rollout to finish: 1 out of 3 new pods have been updated...\n"),
        "{out}"
    );
    assert_eq!(err, "error: timed out waiting for the condition\n");
    let pods = lab.ok(&["get", "pods", "-n", "shop", "-l", "app=db"]);
    let broken = pods.lines().find(|l| l.starts_with("db-1 ")).unwrap();
    assert!(broken.contains(" 0/1     CrashLoopBackOff "), "{pods}");

    // The DaemonSet heals on undo: its broken pod is replaced at once.
    assert_eq!(
        lab.ok(&["rollout", "undo", "ds/agent", "-n", "shop"]),
        "daemonset.apps/agent rolled back\n"
    );
    let healed = lab.rolled_out("ds/agent");
    assert!(
        healed.ends_with("daemon set \"agent\" successfully rolled out\n"),
        "{healed}"
    );
}

#[test]
fn daemonset_set_image_status_history_and_undo_behave_as_on_a_cluster() {
    let lab = Lab::new();
    lab.sim
        .cluster
        .create_daemonset("shop", "agent", "img:v1")
        .unwrap();
    assert!(
        lab.rolled_out("ds/agent")
            .ends_with("daemon set \"agent\" successfully rolled out\n")
    );
    // A DaemonSet's revision keeps the annotations it had when it was made.
    lab.ok(&[
        "annotate",
        "ds/agent",
        "kubernetes.io/change-cause=ship v2",
        "-n",
        "shop",
    ]);
    assert_eq!(
        lab.ok(&["set", "image", "ds/agent", "agent=img:v2", "-n", "shop"]),
        "daemonset.apps/agent image updated\n"
    );
    let rolling = lab.rolled_out("ds/agent");
    assert!(
        rolling.contains("Waiting for daemon set \"agent\" rollout to finish: 1 out of 3 new pods have been updated...\n"),
        "{rolling}"
    );
    assert_eq!(
        lab.ok(&["rollout", "history", "ds/agent", "-n", "shop"]),
        "daemonset.apps/agent \nREVISION  CHANGE-CAUSE\n1         <none>\n2         ship v2\n\n"
    );
    let rev2 = lab.ok(&[
        "rollout",
        "history",
        "ds/agent",
        "-n",
        "shop",
        "--revision=2",
    ]);
    assert!(
        rev2.starts_with("daemonset.apps/agent with revision #2\nPod Template:\n"),
        "{rev2}"
    );
    assert!(rev2.contains("Image:\timg:v2"), "{rev2}");
    let pods = lab.json(&["get", "pods", "-l", "app=agent"]);
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 3, "one per node");
    let nodes: std::collections::BTreeSet<_> = pods
        .iter()
        .map(|p| p["spec"]["nodeName"].to_string())
        .collect();
    assert_eq!(nodes.len(), 3);
    assert!(
        pods.iter()
            .all(|p| p["metadata"]["labels"]["controller-revision-hash"].is_string())
    );

    assert_eq!(
        lab.ok(&["rollout", "undo", "ds/agent", "-n", "shop"]),
        "daemonset.apps/agent rolled back\n"
    );
    assert_eq!(lab.image_of("daemonsets", "agent"), "img:v1");
    lab.rolled_out("ds/agent");
    assert_eq!(
        lab.ok(&["rollout", "history", "ds/agent", "-n", "shop"]),
        "daemonset.apps/agent \nREVISION  CHANGE-CAUSE\n2         ship v2\n3         <none>\n\n"
    );
    assert_eq!(
        lab.ok(&[
            "rollout",
            "undo",
            "ds/agent",
            "-n",
            "shop",
            "--to-revision=3"
        ]),
        "daemonset.apps/agent skipped rollback (current template already matches revision 3)\n"
    );
    assert_eq!(
        lab.ok(&[
            "rollout",
            "undo",
            "ds/agent",
            "-n",
            "shop",
            "--to-revision=2"
        ]),
        "daemonset.apps/agent rolled back\n"
    );
    assert_eq!(lab.image_of("daemonsets", "agent"), "img:v2");
}

#[test]
fn an_undo_leaves_the_revision_history_on_the_reused_replicaset() {
    let lab = Lab::new();
    lab.rolled_out("deployment/web");
    lab.ok(&["set", "image", "deployment/web", "web=img:v2", "-n", "shop"]);
    lab.rolled_out("deployment/web");
    lab.ok(&["rollout", "undo", "deployment/web", "-n", "shop"]);
    lab.rolled_out("deployment/web");
    lab.ok(&["rollout", "undo", "deployment/web", "-n", "shop"]);
    lab.rolled_out("deployment/web");
    let rss = lab.json(&["get", "rs", "-l", "app=web"]);
    let mut seen: Vec<(String, String)> = rss["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            let a = &rs["metadata"]["annotations"];
            (
                a["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                a["deployment.kubernetes.io/revision-history"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [("3".into(), "1".into()), ("4".into(), "2".into())]);
    let events = lab.ok(&[
        "get",
        "events",
        "-n",
        "shop",
        "--field-selector",
        "involvedObject.kind=Deployment",
    ]);
    assert!(
        events.starts_with("LAST SEEN   TYPE     REASON              OBJECT           MESSAGE\n"),
        "{events}"
    );
    assert!(
        events.contains("ScalingReplicaSet   deployment/web   Scaled up replica set web-"),
        "{events}"
    );
}

#[test]
fn get_pods_prints_the_columns_a_cluster_prints() {
    let lab = Lab::new();
    lab.rolled_out("deployment/web");
    let out = lab.ok(&["get", "pods", "-n", "shop"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("NAME  "), "{out}");
    assert!(header.contains("READY   STATUS    RESTARTS   AGE"), "{out}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{out}");
    for row in rows {
        assert!(row.starts_with("web-"), "{out}");
        assert!(row.contains("1/1     Running   0 "), "{out}");
    }
    let wide = lab.ok(&["get", "po", "-n", "shop", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("IP    "), "{wide}");
    let pods = lab.json(&["get", "pods", "-l", "app=web"]);
    let rs = lab.json(&["get", "rs", "-l", "app=web"]);
    let rs = &rs["items"][0];
    for p in pods["items"].as_array().unwrap() {
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["uid"],
            rs["metadata"]["uid"]
        );
        assert_eq!(
            p["metadata"]["labels"]["pod-template-hash"],
            rs["metadata"]["labels"]["pod-template-hash"]
        );
        assert_eq!(
            p["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()["status"],
            "True"
        );
    }
    let (code, _, err) = lab.kubectl(&["get", "pods", "-n", "shop", "-l", "app in web"]);
    assert_eq!(code, 1);
    assert!(err.contains("unable to parse requirement"), "{err}");
}

/// What leader election does: create a Lease, renew it with its
/// resourceVersion, and lose to whoever wrote last. (`--validate=false`:
/// the simulator serves no OpenAPI documents for kubectl to validate by.)
#[test]
fn leases_are_created_listed_and_replaced_with_conflicts() {
    let lab = Lab::new();
    let lease = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: rollbackd\n  namespace: shop\nspec:\n  holderIdentity: node-a\n  leaseDurationSeconds: 15\n";
    let (code, out, err) = lab.kubectl_in(&["create", "--validate=false", "-f", "-"], lease);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "lease.coordination.k8s.io/rollbackd created\n", "")
    );
    let (code, _, err) = lab.kubectl_in(&["create", "--validate=false", "-f", "-"], lease);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Error from server (AlreadyExists): error when creating \"STDIN\": leases.coordination.k8s.io \"rollbackd\" already exists\n"
    );
    let out = lab.ok(&["get", "leases", "-n", "shop"]);
    assert!(
        out.starts_with("NAME        HOLDER   AGE\nrollbackd   node-a   "),
        "{out}"
    );
    let got = lab.json(&["get", "lease", "rollbackd"]);
    let stale = got["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let renewed = lease.replace("node-a", "node-b").replace(
        "namespace: shop\n",
        &format!("namespace: shop\n  resourceVersion: \"{stale}\"\n"),
    );
    let (code, out, err) = lab.kubectl_in(&["replace", "--validate=false", "-f", "-"], &renewed);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "lease.coordination.k8s.io/rollbackd replaced\n", "")
    );
    let (code, _, err) = lab.kubectl_in(&["replace", "--validate=false", "-f", "-"], &renewed);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on leases.coordination.k8s.io \"rollbackd\": the object has been modified; please apply your changes to the latest version and try again\n"
    );
    let (code, out, _) = lab.kubectl_in(
        &["create", "--validate=false", "--dry-run=server", "-f", "-"],
        &lease.replace("rollbackd", "other"),
    );
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "lease.coordination.k8s.io/other created (server dry run)\n"
        )
    );
    assert!(lab.sim.cluster.get("leases", "shop", "other").is_none());
}
