//! The whole loop on Kubernetes, end to end: the real binary watches
//! workloads on the project's API simulator, rolls them back as `kubectl
//! rollout undo` would, and the real `kubectl` then shows the history a
//! kubectl undo would have left.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kubesim::Simulator;

use crate::support::{self, Daemon, Prometheus, journal, wait_until};

struct Lab {
    sim: Simulator,
    dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

const NS: &str = "shop";

impl Lab {
    fn new() -> Lab {
        let (sim, rt) = support::simulator();
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

    /// The main file and one watch on deployment `name`; `extra` goes into
    /// the watch table, `checks` after its health check.
    fn configure(&self, name: &str, extra: &str) {
        self.configure_with(name, extra, "", "")
    }

    fn configure_with(&self, name: &str, extra: &str, main_extra: &str, checks: &str) {
        self.configure_kind("deployment", name, extra, main_extra, checks)
    }

    fn configure_kind(&self, kind: &str, name: &str, extra: &str, main_extra: &str, checks: &str) {
        let mut settings: Vec<String> = [
            ("interval", "\"200ms\""),
            ("failure_threshold", "3"),
            ("verify_for", "\"1s\""),
            ("rollout_timeout", "\"20s\""),
            ("cooldown", "\"1h\""),
        ]
        .iter()
        .filter(|(k, _)| !extra.lines().any(|l| l.starts_with(&format!("{k} "))))
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
        settings.push(extra.to_owned());
        let settings = settings.join("\n");
        let main = format!(
            "[daemon]\nwatches = [\"watches.d\"]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:0\"\nshutdown_timeout = \"5s\"\n\
             [kubernetes]\nkubeconfig = \"kubeconfig\"\nrequest_timeout = \"2s\"\n\
             [notifiers.log]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n[defaults]\nnotify = [\"log\"]\n{main_extra}",
        );
        std::fs::write(self.path("rollbackd.toml"), main).unwrap();
        std::fs::write(
            self.path(&format!("watches.d/{name}.toml")),
            format!(
                r#"[[watch]]
name = "{name}"
target = {{ kind = "{kind}", namespace = "{NS}", name = "{name}" }}
{settings}

[[watch.health]]
url = "http://{addr}/app/{NS}/{name}/health"
timeout = "150ms"
{checks}
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

    /// Every API call is refused with `code` (503 or 429) for `span`: a
    /// counted fault alone would last as long as the client takes to use
    /// it up, which is forever for a client that backs off.
    fn refuse(&self, code: u16, span: Duration) {
        {
            let mut f = self.sim.cluster.faults.lock().unwrap();
            match code {
                503 => f.unavailable = u32::MAX,
                429 => f.throttled = u32::MAX,
                _ => panic!("the simulator refuses with 503 or 429, not {code}"),
            }
        }
        std::thread::sleep(span);
        let mut f = self.sim.cluster.faults.lock().unwrap();
        f.unavailable = 0;
        f.throttled = 0;
    }

    /// Waits up to `within` for the first `rollback_finished` and returns
    /// it; fails with the journal and `d`'s log.
    fn first_finished(&self, d: &Daemon, within: Duration) -> serde_json::Value {
        assert!(
            wait_until(within, || !finished(&self.state()).is_empty()),
            "no rollback finished within {within:?}: {:#?}\n{}",
            events(&self.state()),
            d.logs().join("\n")
        );
        finished(&self.state()).swap_remove(0)
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
        self.image_of("deployments", name)
    }

    fn image_of(&self, resource: &str, name: &str) -> String {
        let d = self.sim.cluster.get(resource, NS, name).unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `kubectl rollout history`: its text, and its revision rows.
    fn history(&self, workload: &str) -> (String, Vec<String>) {
        let text = self.kubectl(&["rollout", "history", workload, "-n", NS]);
        let rows = text
            .lines()
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        (text, rows)
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
    let f = lab.first_finished(&d, Duration::from_secs(30));
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
    let (history, rows) = lab.history("deployment/web");
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

fn count(state: &Path, event: &str) -> usize {
    events(state).iter().filter(|e| e["event"] == event).count()
}

#[test]
fn degraded_images_are_rolled_back_on_the_metric_alone() {
    // A Deployment and a StatefulSet, ready but failing two requests in five.
    let lab = Lab::new();
    lab.sim
        .cluster
        .create_deployment(NS, "api", "api:v1", 3, 30);
    lab.sim
        .cluster
        .create_statefulset(NS, "db", "db:v1", 2)
        .unwrap();
    let api_metrics = format!("/app/{NS}/api/metrics");
    let db_metrics = format!("/app/{NS}/db/metrics");
    let prom = Prometheus::scraping(&[
        ("api", lab.sim.addr, &api_metrics),
        ("db", lab.sim.addr, &db_metrics),
    ]);
    let main_extra = format!(
        "[prometheus.default]\nurl = \"{}\"\ntimeout = \"900ms\"\n",
        prom.url()
    );
    let ratio = |w: &str| {
        format!(
            r#"[[watch.prometheus]]
name = "error-ratio"
query = 'sum(rate(http_requests_total{{namespace="shop",deployment="{w}",status="500"}}[3s])) / sum(rate(http_requests_total{{namespace="shop",deployment="{w}"}}[3s]))'
max = 0.1
"#
        )
    };
    let settings = "interval = \"1s\"\nfailure_threshold = 4\nverify_for = \"10s\"";
    lab.configure_with("api", settings, &main_extra, &ratio("api"));
    lab.configure_kind("statefulset", "db", settings, &main_extra, &ratio("db"));
    // The first scrape lands some 6 s after Prometheus starts.
    assert!(
        wait_until(Duration::from_secs(30), || ["api", "db"].iter().all(|w| {
            prom.value(&format!(
                "sum(rate(http_requests_total{{deployment=\"{w}\"}}[3s]))"
            ))
            .is_some_and(|v| v > 0.0)
        })),
        "Prometheus scrapes the simulated applications"
    );
    let d = lab.start();
    lab.set_image("api", "api:v2-degraded", "deploy v2");
    lab.sim
        .cluster
        .set_image_with_cause(
            "statefulset",
            NS,
            "db",
            "db:v2-degraded",
            Some("deploy db v2"),
        )
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || finished(&lab.state()).len()
            == 2),
        "both rollbacks finish: {:#?}\n{}",
        events(&lab.state()),
        d.logs().join("\n")
    );
    for f in finished(&lab.state()) {
        assert_eq!(f["outcome"], "recovered", "{f}\n{}", d.logs().join("\n"));
    }
    assert_eq!(lab.image("api"), "api:v1");
    assert_eq!(lab.image_of("statefulsets", "db"), "db:v1");
    for w in ["api", "db"] {
        let started = events(&lab.state())
            .into_iter()
            .find(|e| e["event"] == "rollback_started" && e["watch"] == w)
            .unwrap();
        let checks = started["checks"].as_array().unwrap();
        let failing: Vec<&str> = checks
            .iter()
            .filter(|c| c["result"] == "fail")
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            failing,
            ["error-ratio"],
            "{w}: the metric alone: {checks:#?}"
        );
        let ratio = checks.iter().find(|c| c["name"] == "error-ratio").unwrap()["value"]
            .as_f64()
            .unwrap();
        assert!(ratio > 0.1, "{w}: {ratio}");
    }
    // The StatefulSet went back through its ControllerRevisions: revision 1
    // renumbered to 3, as kubectl's undo leaves it.
    let (history, rows) = lab.history("statefulset/db");
    assert_eq!(rows.len(), 2, "{history}");
    assert!(
        rows[0].starts_with("2 ") && rows[0].contains("deploy db v2"),
        "{history}"
    );
    assert!(rows[1].starts_with("3 "), "{history}");
}

#[test]
fn a_crash_looping_daemonset_goes_back_through_its_controller_revisions() {
    let lab = Lab::new();
    lab.sim
        .cluster
        .create_daemonset(NS, "agent", "agent:v1")
        .unwrap();
    lab.configure_kind("daemonset", "agent", "rollout_timeout = \"2s\"", "", "");
    let d = lab.start();
    lab.sim
        .cluster
        .set_image_with_cause(
            "daemonset",
            NS,
            "agent",
            "agent:v2-bad",
            Some("deploy agent v2"),
        )
        .unwrap();
    let f = lab.first_finished(&d, Duration::from_secs(30));
    assert_eq!(f["outcome"], "recovered", "{f}\n{}", d.logs().join("\n"));
    assert_eq!(lab.image_of("daemonsets", "agent"), "agent:v1");
    let (history, rows) = lab.history("daemonset/agent");
    assert_eq!(rows.len(), 2, "{history}");
    assert!(
        rows[0].starts_with("2 ") && rows[0].contains("deploy agent v2"),
        "{history}"
    );
    assert!(
        rows[1].starts_with("3 "),
        "revision 1 renumbered: {history}"
    );
}

#[test]
fn a_deploy_landing_between_the_decision_and_the_patch_is_not_clobbered() {
    // Landing before the undo's history is read, then between that read
    // and the patch (the resourceVersion precondition's case).
    for (delay, log) in [
        (1000, "the target moved on before the undo"),
        (1750, "spec changed between the re-read and the patch"),
    ] {
        deploy_lands_during_the_undo(delay, log);
    }
}

fn deploy_lands_during_the_undo(delay_ms: u64, log: &str) {
    let lab = Lab::new();
    lab.sim.cluster.create_deployment(NS, "web", "web:v1", 3, 1);
    lab.configure("web", "");
    let d = lab.start();
    lab.set_image("web", "web:v2-bad", "deploy v2");
    // Every API answer now takes 700 ms: the undo's read (answered at
    // ~0.7 s after it starts, its history at ~1.4 s) and its patch (~2.1 s)
    // are far enough apart for a deploy to land in between.
    lab.sim.cluster.faults.lock().unwrap().latency = Duration::from_millis(700);
    assert!(
        wait_until(Duration::from_secs(30), || count(
            &lab.state(),
            "rollback_started"
        ) > 0),
        "{:#?}",
        events(&lab.state())
    );
    std::thread::sleep(Duration::from_millis(delay_ms));
    lab.set_image("web", "web:v3", "deploy v3");
    let f = lab.first_finished(&d, Duration::from_secs(20));
    lab.sim.cluster.faults.lock().unwrap().latency = Duration::ZERO;
    assert_eq!(f["outcome"], "conflict", "{f}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.image("web"), "web:v3", "the concurrent deploy stands");
    assert_eq!(count(&lab.state(), "rollback_applied"), 0);
    let armed = events(&lab.state())
        .into_iter()
        .rfind(|e| e["event"] == "armed")
        .unwrap();
    assert_eq!(
        armed["revision"]["id"], "3",
        "the new deploy is watched afresh"
    );
    assert!(d.find_log(log).is_some(), "{log}: {}", d.logs().join("\n"));
}

#[test]
fn api_errors_latency_and_dropped_watches_cause_no_wrong_or_double_action() {
    let lab = Lab::new();
    lab.sim.cluster.create_deployment(NS, "web", "web:v1", 3, 1);
    lab.configure("web", "");
    {
        let mut f = lab.sim.cluster.faults.lock().unwrap();
        f.watch_lifetime = Some(Duration::from_millis(700));
        f.latency = Duration::from_millis(100);
    }
    let d = lab.start();
    assert!(
        wait_until(
            Duration::from_secs(10),
            || d.status()["watches"][0]["revision"] == "1"
        ),
        "the daemon has read the target: {}",
        d.logs().join("\n")
    );
    // A good rollout under faults is never rolled back: the API server
    // answers every call with 503 for two seconds, then recovers.
    lab.set_image("web", "web:v2", "deploy v2");
    lab.refuse(503, Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        count(&lab.state(), "rollback_started"),
        0,
        "{:#?}",
        events(&lab.state())
    );
    // A bad one is rolled back once, while the API server keeps answering
    // bursts of 503 and 429: 300 ms of refusals every 1.5 s.
    lab.set_image("web", "web:v3-bad", "deploy v3");
    let mut bursts = 0;
    while finished(&lab.state()).is_empty() && bursts < 30 {
        lab.refuse(
            if bursts % 2 == 0 { 503 } else { 429 },
            Duration::from_millis(300),
        );
        bursts += 1;
        std::thread::sleep(Duration::from_millis(1200));
    }
    assert!(
        !finished(&lab.state()).is_empty(),
        "the rollback finished during the bursts: {:#?}\n{}",
        events(&lab.state()),
        d.logs().join("\n")
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&lab.state(), "rollback_started"), 1);
    assert_eq!(count(&lab.state(), "rollback_finished"), 1);
    assert_eq!(
        finished(&lab.state())[0]["outcome"],
        "recovered",
        "{}",
        d.logs().join("\n")
    );
    assert_eq!(lab.image("web"), "web:v2");
}

#[test]
fn kill_9_during_the_rollout_wait_resumes_without_a_second_patch() {
    let lab = Lab::new();
    lab.sim.cluster.create_deployment(NS, "web", "web:v1", 3, 1);
    lab.configure("web", "");
    let mut d = lab.start();
    lab.set_image("web", "web:v2-bad", "deploy v2");
    // Slow answers keep the daemon in its rollout wait long enough to die there.
    assert!(wait_until(Duration::from_secs(20), || count(
        &lab.state(),
        "rollback_started"
    ) > 0));
    lab.sim.cluster.faults.lock().unwrap().latency = Duration::from_millis(300);
    assert!(
        wait_until(Duration::from_secs(20), || count(
            &lab.state(),
            "rollback_applied"
        ) > 0),
        "{:#?}",
        events(&lab.state())
    );
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5));
    let generation = |lab: &Lab| {
        lab.sim.cluster.get("deployments", NS, "web").unwrap()["metadata"]["generation"]
            .as_i64()
            .unwrap()
    };
    let before = generation(&lab);
    lab.sim.cluster.faults.lock().unwrap().latency = Duration::ZERO;
    let d = lab.start();
    lab.first_finished(&d, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        count(&lab.state(), "rollback_started"),
        1,
        "{:#?}\n{}",
        events(&lab.state()),
        d.logs().join("\n")
    );
    assert_eq!(
        count(&lab.state(), "rollback_resumed"),
        1,
        "{:#?}",
        events(&lab.state())
    );
    assert_eq!(count(&lab.state(), "rollback_finished"), 1);
    assert_eq!(finished(&lab.state())[0]["outcome"], "recovered");
    assert_eq!(generation(&lab), before, "no second patch");
    assert_eq!(lab.image("web"), "web:v1");
}

#[test]
fn with_leader_election_only_the_lease_holder_acts_and_a_standby_takes_over() {
    let lab = Lab::new();
    lab.sim.cluster.create_deployment(NS, "web", "web:v1", 3, 1);
    lab.configure_with("web", "", "", "");
    // Both replicas read the same files; each has its own state directory.
    let main = std::fs::read_to_string(lab.path("rollbackd.toml")).unwrap().replace(
        "request_timeout = \"2s\"\n",
        "request_timeout = \"2s\"\nleader_election = { lease = \"rollbackd\", namespace = \"ops\", lease_duration = \"2s\" }\n",
    );
    std::fs::write(lab.path("rollbackd.toml"), &main).unwrap();
    std::fs::write(
        lab.path("b.toml"),
        main.replace("state_dir = \"state\"", "state_dir = \"state-b\""),
    )
    .unwrap();
    let mut a = lab.start();
    assert!(
        wait_until(Duration::from_secs(10), || a
            .find_log("became the leader")
            .is_some()),
        "{}",
        a.logs().join("\n")
    );
    let b = Daemon::start(&lab.path("b.toml"), &[]);
    assert!(wait_until(Duration::from_secs(10), || b.get("/readyz").0 == 200));
    assert!(
        b.get("/readyz").1.contains("standby"),
        "{}",
        b.get("/readyz").1
    );
    assert!(
        a.get("/readyz").1.contains("leader"),
        "{}",
        a.get("/readyz").1
    );
    assert_eq!(b.metric("rollbackd_leader"), Some(0.0));
    assert_eq!(a.metric("rollbackd_leader"), Some(1.0));
    assert_eq!(b.status()["leader"], false);

    lab.set_image("web", "web:v2-bad", "deploy v2");
    lab.first_finished(&a, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&lab.state(), "rollback_started"), 1);
    assert_eq!(
        count(&lab.path("state-b"), "rollback_started"),
        0,
        "the standby never acts"
    );

    // The leader dies without releasing the Lease: the standby takes over
    // within the lease duration (plus one retry period).
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(5));
    let killed = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || b
            .find_log("became the leader")
            .is_some()),
        "{}",
        b.logs().join("\n")
    );
    let takeover = killed.elapsed();
    eprintln!("the standby took over {takeover:?} after the leader was killed");
    assert!(
        takeover < Duration::from_secs(5),
        "took over after {takeover:?}"
    );
    assert_eq!(b.metric("rollbackd_leader"), Some(1.0));
    // The rolled-back revision is the restored one, not a new rollout: the
    // new leader does not act on it; a new bad deploy it rolls back.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&lab.path("state-b"), "rollback_started"), 0);
    lab.set_image("web", "web:v3-bad", "deploy v3");
    assert!(
        wait_until(Duration::from_secs(30), || !finished(&lab.path("state-b"))
            .is_empty()),
        "{}",
        b.logs().join("\n")
    );
    assert_eq!(finished(&lab.path("state-b"))[0]["outcome"], "recovered");
    assert_eq!(lab.image("web"), "web:v1");
}

#[test]
fn without_a_reachable_api_server_a_replica_with_leader_election_stands_by() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kubeconfig"),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:9\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: u\ncurrent-context: gone\nusers:\n- name: u\n  user:\n    token: t\n",
    )
    .unwrap();
    let main = dir.path().join("rollbackd.toml");
    std::fs::write(
        &main,
        "[daemon]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:0\"\n[kubernetes]\nkubeconfig = \"kubeconfig\"\nrequest_timeout = \"1s\"\nleader_election = { lease = \"rollbackd\", namespace = \"ops\", lease_duration = \"3s\" }\n",
    )
    .unwrap();
    let d = Daemon::start(&main, &[]);
    assert!(wait_until(Duration::from_secs(10), || d.get("/readyz").0 == 200));
    let (_, body) = d.get("/readyz");
    assert!(
        body.contains("standby") && body.contains("ops/rollbackd"),
        "{body}"
    );
    assert_eq!(d.metric("rollbackd_leader"), Some(0.0));
    assert!(
        wait_until(Duration::from_secs(10), || d
            .find_log("the Lease cannot be read or written")
            .is_some()),
        "{}",
        d.logs().join("\n")
    );
    assert_eq!(d.status()["leader"], false);
}

#[test]
fn dry_run_proves_the_undo_with_the_api_servers_dry_run_and_changes_nothing() {
    let lab = Lab::new();
    lab.sim.cluster.create_deployment(NS, "web", "web:v1", 3, 1);
    lab.configure("web", "dry_run = true");
    let d = lab.start();
    lab.set_image("web", "web:v2-bad", "deploy v2");
    assert!(
        wait_until(Duration::from_secs(20), || count(
            &lab.state(),
            "would_roll_back"
        ) > 0),
        "{:#?}\n{}",
        events(&lab.state()),
        d.logs().join("\n")
    );
    let generation =
        lab.sim.cluster.get("deployments", NS, "web").unwrap()["metadata"]["generation"].clone();
    std::thread::sleep(Duration::from_secs(2));
    let w = events(&lab.state())
        .into_iter()
        .find(|e| e["event"] == "would_roll_back")
        .unwrap();
    assert_eq!(w["from_revision"], "2");
    assert_eq!(w["to_revision"], "1", "the revision it would restore");
    assert!(
        w["reason"]
            .as_str()
            .unwrap()
            .starts_with("dry run: would roll back"),
        "{w}"
    );
    let after = lab.sim.cluster.get("deployments", NS, "web").unwrap();
    assert_eq!(
        after["metadata"]["generation"], generation,
        "nothing changed"
    );
    assert_eq!(lab.image("web"), "web:v2-bad");
    assert!(after["metadata"]["annotations"]["rollbackd.io/rollback"].is_null());
    assert_eq!(count(&lab.state(), "rollback_started"), 0);
    assert_eq!(count(&lab.state(), "would_roll_back"), 1, "said once");
}

#[test]
fn a_paused_deployment_or_one_without_history_is_escalated_not_touched() {
    let lab = Lab::new();
    // Paused mid-rollout, as `kubectl rollout pause` leaves it.
    lab.sim.cluster.create_deployment(NS, "web", "web:v1", 3, 1);
    lab.set_image("web", "web:v2-bad", "deploy v2");
    std::thread::sleep(Duration::from_millis(300));
    lab.sim
        .cluster
        .patch_deployment(
            NS,
            "web",
            "application/merge-patch+json",
            br#"{"spec":{"paused":true}}"#,
            false,
        )
        .unwrap();
    // A first deploy that fails: there is nothing to go back to.
    lab.sim
        .cluster
        .create_deployment(NS, "api", "api:v1-bad", 3, 1);
    lab.configure("web", "arm = \"always\"\nrollout_timeout = \"2s\"");
    lab.configure("api", "");
    let d = lab.start();
    let escalated = |w: &str| {
        events(&lab.state())
            .into_iter()
            .find(|e| e["event"] == "escalated" && e["watch"] == w)
    };
    assert!(
        wait_until(Duration::from_secs(20), || escalated("web").is_some()
            && escalated("api").is_some()),
        "{:#?}\n{}",
        events(&lab.state()),
        d.logs().join("\n")
    );
    let web = escalated("web").unwrap();
    assert!(web["reason"].as_str().unwrap().contains("paused"), "{web}");
    let api = escalated("api").unwrap();
    assert!(
        api["reason"]
            .as_str()
            .unwrap()
            .contains("no earlier revision"),
        "{api}"
    );
    assert_eq!(count(&lab.state(), "rollback_started"), 0);
    assert_eq!(lab.image("web"), "web:v2-bad");
}

#[test]
fn a_rollback_journaled_but_never_sent_is_not_sent_after_a_restart() {
    // The daemon died between journaling `rollback_started` and the patch:
    // the journal says a rollback is under way; the workload has no mark.
    let lab = Lab::new();
    lab.sim.cluster.create_deployment(NS, "web", "web:v1", 3, 1);
    let revision = |lab: &Lab| {
        lab.sim.cluster.get("deployments", NS, "web").unwrap()["metadata"]["annotations"]
            ["deployment.kubernetes.io/revision"]
            .clone()
    };
    assert!(wait_until(Duration::from_secs(5), || revision(&lab) == "1"));
    lab.set_image("web", "web:v2-bad", "deploy v2");
    assert!(wait_until(Duration::from_secs(5), || revision(&lab) == "2"));
    lab.configure("web", "");
    std::fs::create_dir_all(lab.state()).unwrap();
    std::fs::write(
        lab.state().join("journal.jsonl"),
        "{\"ts\":\"2026-11-21T10:00:00Z\",\"event\":\"rollback_started\",\"watch\":\"web\",\"rollback_id\":\"web-1\",\"from_revision\":\"2\",\"trigger\":\"auto\"}\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let d = lab.start();
    let f = lab.first_finished(&d, Duration::from_secs(15));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "not after rollout_timeout"
    );
    assert_eq!(f["rollback_id"], "web-1");
    assert_eq!(f["outcome"], "rollout_failed", "{f}");
    assert!(
        f["reason"].as_str().unwrap().contains("never applied"),
        "{f}"
    );
    // The escalation is journaled just after the rollback's end.
    assert!(
        wait_until(Duration::from_secs(5), || count(&lab.state(), "escalated")
            > 0),
        "{:#?}",
        events(&lab.state())
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        count(&lab.state(), "escalated"),
        1,
        "{:#?}\n{}",
        events(&lab.state()),
        d.logs().join("\n")
    );
    assert_eq!(lab.image("web"), "web:v2-bad", "a person decides");
    assert_eq!(count(&lab.state(), "rollback_started"), 1);
}

#[test]
fn check_online_reads_each_target_and_proves_the_undo_allowed_by_a_dry_run() {
    let lab = Lab::new();
    lab.sim.cluster.create_deployment(NS, "web", "web:v1", 3, 1);
    let revision = || {
        lab.sim.cluster.get("deployments", NS, "web").unwrap()["metadata"]["annotations"]
            ["deployment.kubernetes.io/revision"]
            .clone()
    };
    assert!(wait_until(Duration::from_secs(10), || revision() == "1"));
    lab.set_image("web", "web:v2", "deploy v2");
    assert!(wait_until(Duration::from_secs(10), || revision() == "2"));
    lab.configure("web", "");
    std::fs::write(
        lab.path("watches.d/ghost.toml"),
        format!(
            "[[watch]]\nname = \"ghost\"\ntarget = {{ kind = \"deployment\", namespace = \"{NS}\", name = \"ghost\" }}\n\
             [[watch.health]]\nurl = \"http://{}/app/{NS}/ghost/health\"\n",
            lab.sim.addr
        ),
    )
    .unwrap();
    let main = std::fs::read_to_string(lab.path("rollbackd.toml")).unwrap().replace(
        "request_timeout = \"2s\"\n",
        "request_timeout = \"2s\"\nleader_election = { lease = \"rollbackd\", namespace = \"ops\" }\n",
    );
    std::fs::write(lab.path("rollbackd.toml"), main).unwrap();
    let generation =
        || lab.sim.cluster.get("deployments", NS, "web").unwrap()["metadata"]["generation"].clone();
    let before = generation();

    let out = support::command(&[
        "check",
        "--online",
        "-c",
        lab.path("rollbackd.toml").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the missing target fails: {stdout}"
    );
    let line = |needle: &str| {
        stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}: {stdout}"))
            .to_owned()
    };
    let web = line("target deployment/shop/web");
    assert!(
        web.starts_with("  ok ")
            && web.contains("at revision 2 (web:v2), 1 earlier revision;")
            && web.contains("may be patched (dry run)"),
        "{web}"
    );
    let ghost = line("target deployment/shop/ghost");
    assert!(
        ghost.starts_with("  FAILED ") && ghost.contains("not found"),
        "{ghost}"
    );
    let lease = line("leader election lease ops/rollbackd");
    assert!(lease.contains("does not exist yet"), "{lease}");
    assert_eq!(generation(), before, "the dry run changed nothing");
}
