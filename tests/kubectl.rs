//! The Kubernetes API simulator's fidelity, proven with the real `kubectl`:
//! what kubectl prints against it is what it prints against a cluster.

use std::process::Command;

use rollbackd::sim::Simulator;

struct Lab {
    sim: Simulator,
    dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl Lab {
    fn new() -> Lab {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt.block_on(Simulator::start()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig()).unwrap();
        sim.cluster
            .create_deployment("shop", "web", "img:v1", 3, 600);
        Lab { sim, dir, _rt: rt }
    }

    /// Runs kubectl with a fresh cache and home of its own.
    fn kubectl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .output()
            .expect("kubectl is installed (it ships on this machine image)");
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

    fn image(&self) -> String {
        let d = self.sim.cluster.get("deployments", "shop", "web").unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned()
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
    let status = lab.ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=20s",
    ]);
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
    lab.ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=20s",
    ]);

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
    lab.ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=20s",
    ]);
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
