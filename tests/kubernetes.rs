//! The whole loop on Kubernetes, end to end: the real binary watches
//! workloads on the project's API simulator, rolls them back as `kubectl
//! rollout undo` would, and the real `kubectl` then shows the history a
//! kubectl undo would have left.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rollbackd::sim::Simulator;
use support::{Daemon, journal, wait_until};

struct Lab {
    sim: Simulator,
    dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

const NS: &str = "shop";

impl Lab {
    fn new() -> Lab {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt.block_on(Simulator::start()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig()).unwrap();
        std::fs::create_dir(dir.path().join("watches.d")).unwrap();
        Lab { sim, dir, _rt: rt }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    /// The main file and one watch on deployment `name`.
    fn configure(&self, name: &str, extra: &str) {
        std::fs::write(
            self.path("rollbackd.toml"),
            "[daemon]\nwatches = [\"watches.d\"]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:0\"\nshutdown_timeout = \"5s\"\n\
             [kubernetes]\nkubeconfig = \"kubeconfig\"\nrequest_timeout = \"2s\"\n\
             [notifiers.log]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n[defaults]\nnotify = [\"log\"]\n",
        )
        .unwrap();
        std::fs::write(
            self.path(&format!("watches.d/{name}.toml")),
            format!(
                r#"[[watch]]
name = "{name}"
target = {{ kind = "deployment", namespace = "{NS}", name = "{name}" }}
interval = "200ms"
failure_threshold = 3
verify_for = "1s"
rollout_timeout = "20s"
cooldown = "1h"
{extra}

[[watch.health]]
url = "http://{addr}/app/{NS}/{name}/health"
timeout = "150ms"
"#,
                addr = self.sim.addr
            ),
        )
        .unwrap();
    }

    fn start(&self) -> Daemon {
        let d = Daemon::start(&self.path("rollbackd.toml"), &[]);
        assert!(
            d.find_log("rollbackd started").is_some(),
            "daemon started: {}",
            d.logs().join("\n")
        );
        assert!(
            wait_until(Duration::from_secs(10), || d.get("/readyz").0 == 200),
            "daemon ready: {:?}",
            d.logs()
        );
        d
    }

    fn set_image(&self, name: &str, image: &str, cause: &str) {
        let body = serde_json::json!({
            "metadata": {"annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}
        });
        self.sim
            .cluster
            .patch_deployment(
                NS,
                name,
                "application/strategic-merge-patch+json",
                body.to_string().as_bytes(),
                false,
            )
            .unwrap();
    }

    fn image(&self, name: &str) -> String {
        let d = self.sim.cluster.get("deployments", NS, name).unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.path("kubeconfig"))
            .env("KUBECACHEDIR", self.path("kcache"))
            .env("HOME", self.dir.path())
            .output()
            .expect("kubectl must be installed (.ci/run installs it)");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn events(state: &Path) -> Vec<serde_json::Value> {
    journal(state)
}

fn finished(state: &Path) -> Vec<serde_json::Value> {
    events(state)
        .into_iter()
        .filter(|e| e["event"] == "rollback_finished")
        .collect()
}

#[test]
fn a_crash_looping_image_is_rolled_back_on_the_rollout_check_alone() {
    let lab = Lab::new();
    lab.sim.cluster.create_deployment(NS, "web", "web:v1", 3, 2);
    lab.configure("web", "");
    let d = lab.start();
    lab.set_image("web", "web:v2", "deploy v2");
    assert!(
        wait_until(Duration::from_secs(10), || lab
            .sim
            .cluster
            .serving_image(NS, "web")
            .as_deref()
            == Some("web:v2")),
        "v2 rolls out"
    );
    lab.set_image("web", "web:v3-bad", "deploy v3");
    assert!(
        wait_until(Duration::from_secs(30), || !finished(&lab.state())
            .is_empty()),
        "the rollback finishes: {:#?}\n{}",
        events(&lab.state()),
        d.logs().join("\n")
    );
    let f = &finished(&lab.state())[0];
    assert_eq!(f["outcome"], "recovered", "{f}\n{}", d.logs().join("\n"));
    assert_eq!(f["from_revision"], "3");
    assert_eq!(lab.image("web"), "web:v2");
    let started: Vec<_> = events(&lab.state())
        .into_iter()
        .filter(|e| e["event"] == "rollback_started")
        .collect();
    assert_eq!(started.len(), 1);
    let evidence = started[0]["checks"].to_string();
    assert!(
        evidence.contains("rollout") && evidence.contains("exceeded its progress deadline"),
        "the rollout check is the evidence: {evidence}"
    );
    // The history is what a kubectl undo leaves: revision 2 renumbered to
    // 4 with its change-cause back.
    let history = lab.kubectl(&["rollout", "history", "deployment/web", "-n", NS]);
    let rows: Vec<&str> = history
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 3, "{history}");
    assert!(rows[0].starts_with("1 "), "{history}");
    assert!(
        rows[1].starts_with("3 ") && rows[1].contains("deploy v3"),
        "{history}"
    );
    assert!(
        rows[2].starts_with("4 ") && rows[2].contains("deploy v2"),
        "{history}"
    );
    let annotations = lab.kubectl(&[
        "get",
        "deployment",
        "web",
        "-n",
        NS,
        "-o",
        "jsonpath={.metadata.annotations}",
    ]);
    let a: serde_json::Value = serde_json::from_str(&annotations).unwrap();
    let mark: serde_json::Value =
        serde_json::from_str(a["rollbackd.io/rollback"].as_str().unwrap()).unwrap();
    assert_eq!(mark["from"], "3");
    assert_eq!(mark["to"], "4");
    assert_eq!(mark["trigger"], "auto");
    assert_eq!(mark["rollback_id"], f["rollback_id"]);
    assert_eq!(a["kubernetes.io/change-cause"], "deploy v2");
}
