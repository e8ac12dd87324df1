//! Prometheus checks against a real Prometheus (the Debian package) that
//! scrapes test exporters whose error rate each test controls. One
//! Prometheus serves the whole module: its first scrape takes ~6 s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::support::{self, Daemon, Exporter, Prometheus, wait_until};

type VersionFile = Arc<Mutex<Option<PathBuf>>>;

struct Lab {
    prometheus: Prometheus,
    /// Per scenario: the VERSION file whose "v2" makes its exporter fail.
    versions: HashMap<&'static str, VersionFile>,
}

const SCENARIOS: [(&str, u64); 3] = [("rollback", 5), ("relative", 15), ("steady", 0)];

fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let mut versions = HashMap::new();
        let mut targets = Vec::new();
        for (name, errors) in SCENARIOS {
            let file: VersionFile = Arc::default();
            let f = file.clone();
            let exporter = Exporter::start(errors, move || {
                f.lock()
                    .unwrap()
                    .as_ref()
                    .is_some_and(|p| std::fs::read_to_string(p).unwrap_or_default().trim() == "v2")
            });
            versions.insert(name, file);
            targets.push((name, exporter.addr));
        }
        let prometheus = Prometheus::start(&targets);
        let scraped = wait_until(Duration::from_secs(40), || {
            prometheus.value("count(rate(http_requests_total{status=\"200\"}[3s]) > 0)")
                == Some(3.0)
        });
        assert!(
            scraped,
            "Prometheus did not scrape the exporters within 40 s"
        );
        Lab {
            prometheus,
            versions,
        }
    })
}

/// A host running VERSION v1 with a command deploy tool.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new(scenario: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("VERSION"), "v1\n").unwrap();
        std::fs::create_dir(dir.path().join("watches.d")).unwrap();
        *lab().versions[scenario].lock().unwrap() = Some(dir.path().join("VERSION"));
        Host { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn command_target(&self, marker: &str) -> String {
        let d = self.dir.path().display();
        format!(
            r#"target = {{ kind = "command", current = ["/bin/cat", "{d}/VERSION"], rollback = ["/bin/sh", "-c", 'date +%s%N >> {d}/{marker}; echo v1 > {d}/VERSION'] }}"#
        )
    }

    fn start(&self, sources: &str, watches: &str) -> Daemon {
        std::fs::write(
            self.path("rollbackd.toml"),
            format!(
                "[daemon]\nwatches = [\"watches.d\"]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:0\"\n\
                 [notifiers.log]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n[defaults]\nnotify = [\"log\"]\n\
                 [prometheus.default]\nurl = \"{}\"\ntimeout = \"2s\"\n{sources}",
                lab().prometheus.url()
            ),
        )
        .unwrap();
        std::fs::write(self.path("watches.d/w.toml"), watches).unwrap();
        let mut cmd = support::command(&[
            "run",
            "-c",
            self.path("rollbackd.toml").to_str().unwrap(),
            "--log-level",
            "info,rollbackd=debug",
        ]);
        cmd.env("ROLLBACKD_LOG_FORMAT", "json");
        let d = Daemon::spawn(cmd);
        assert!(d.addr.is_some(), "{}", d.logs().join("\n"));
        d
    }

    fn deploy(&self, v: &str) {
        std::fs::write(self.path("VERSION"), format!("{v}\n")).unwrap();
    }

    fn marker_lines(&self, marker: &str) -> usize {
        support::line_count(&self.path(marker))
    }
}

fn watch<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["watches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap()
}

#[test]
fn a_rising_error_ratio_is_rolled_back_after_exactly_threshold_failing_evaluations_and_recovers() {
    let host = Host::new("rollback");
    let d = host.start(
        "",
        &format!(
            r#"[[watch]]
name = "checkout"
interval = "1s"
failure_threshold = 5
verify_for = "10s"
{}
[[watch.prometheus]]
name = "error-ratio"
query = 'sum(rate(http_requests_total{{scenario="rollback",status="500"}}[3s])) / sum(rate(http_requests_total{{scenario="rollback"}}[3s]))'
max = 0.05
"#,
            host.command_target("ROLLBACKS")
        ),
    );
    assert!(wait_until(Duration::from_secs(10), || watch(
        &d.status(),
        "checkout"
    )["revision"]
        == "v1"));
    host.deploy("v2");
    assert!(
        wait_until(Duration::from_secs(30), || host.marker_lines("ROLLBACKS")
            == 1),
        "{}",
        d.logs().join("\n")
    );

    // Exactly failure_threshold failing evaluations came before the undo.
    let logs = d.logs();
    let undo = logs
        .iter()
        .position(|l| l.contains("\"message\":\"rolling back\""))
        .unwrap();
    let fails = logs[..undo]
        .iter()
        .rev()
        .filter(|l| l.contains("\"message\":\"evaluated\""))
        .take_while(|l| l.contains("\"result\":\"fail\""))
        .count();
    assert_eq!(fails, 5, "{}", logs[..undo].join("\n"));

    assert!(
        wait_until(
            Duration::from_secs(30),
            || watch(&d.status(), "checkout")["last_rollback"]["outcome"] == "recovered"
        ),
        "{}",
        d.logs().join("\n")
    );
    let w = watch(&d.status(), "checkout").clone();
    assert_eq!(w["state"], "recovered");
    let started = support::journal(&host.path("state"))
        .into_iter()
        .find(|r| r["event"] == "rollback_started")
        .unwrap();
    let check = &started["checks"][0];
    assert_eq!(check["name"], "error-ratio");
    assert_eq!(check["threshold"], "max 0.05");
    assert!(check["value"].as_f64().unwrap() > 0.05, "{check}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(host.marker_lines("ROLLBACKS"), 1, "settled: one rollback");
}

#[test]
fn no_data_nan_a_stopped_prometheus_and_a_bad_query_never_roll_back() {
    let host = Host::new("steady");
    let stopped = Prometheus::start(&[]);
    let stopped_url = stopped.url();
    drop(stopped);
    let w = |name: &str, source: &str, query: &str| {
        format!(
            "[[watch]]\nname = \"{name}\"\narm = \"always\"\ninterval = \"300ms\"\nfailure_threshold = 3\n{}\n[[watch.prometheus]]\nname = \"q\"\nsource = \"{source}\"\nquery = '{query}'\nmax = 0.05\n",
            host.command_target(&format!("ROLLED-{name}"))
        )
        .replace("kind = \"command\"", &format!("kind = \"command\", timeout = \"5s\"{}", ""))
    };
    let watches = [
        w("empty", "default", "sum(rate(no_such_metric_total[3s]))"),
        w("nan", "default", "vector(0) / vector(0)"),
        w("stopped", "stopped", "vector(1)"),
        w("invalid", "default", "sum(rate(http_requests_total[3s]"),
    ]
    .join("\n");
    let d = host.start(
        &format!("[prometheus.stopped]\nurl = \"{stopped_url}\"\ntimeout = \"1s\"\n"),
        &watches,
    );
    std::thread::sleep(Duration::from_secs(4));
    let status = d.status();
    for name in ["empty", "nan", "stopped", "invalid"] {
        assert_eq!(
            host.marker_lines(&format!("ROLLED-{name}")),
            0,
            "{name} rolled back"
        );
        let w = watch(&status, name);
        assert_eq!(
            w["last_evaluation"]["result"], "inconclusive",
            "{name}: {w}"
        );
        assert_eq!(
            w["state"], "blind",
            "{name}: after 3 inconclusive evaluations the watch is blind"
        );
    }
    let detail = |n: &str| {
        watch(&status, n)["last_evaluation"]["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        detail("empty"),
        "the query returned no data (on_no_data = inconclusive)"
    );
    assert!(
        detail("nan").contains("NaN") || detail("nan").contains("no data"),
        "{}",
        detail("nan")
    );
    assert!(
        detail("stopped").starts_with("Prometheus is unreachable"),
        "{}",
        detail("stopped")
    );
    assert!(
        detail("invalid").starts_with("the query is invalid (bad_data)"),
        "{}",
        detail("invalid")
    );
    assert!(
        d.metric("rollbackd_check_config_errors_total{kind=\"prometheus\"}")
            .unwrap()
            >= 1.0
    );
    assert!(d.find_log("the Prometheus query is invalid").is_some());
    assert_eq!(
        d.count_logs("\"event\":\"watch_blind\""),
        4,
        "one blind warning per watch, not one per interval"
    );
}

#[test]
fn identical_queries_to_one_source_are_sent_once_per_interval() {
    let host = Host::new("steady");
    let query = "sum(rate(http_requests_total{scenario=\"steady\"}[3s]))";
    let watches: String = (0..5)
        .map(|i| {
            format!(
                "[[watch]]\nname = \"same-{i}\"\ninterval = \"500ms\"\n{}\n[[watch.prometheus]]\nname = \"rate\"\nquery = '{query}'\nmin = 1\n",
                host.command_target("ROLLED")
            )
        })
        .collect();
    let d = host.start("", &watches);
    std::thread::sleep(Duration::from_secs(4));
    let sent = d.metric("rollbackd_prometheus_queries_total").unwrap();
    let shared = d
        .metric("rollbackd_prometheus_queries_coalesced_total")
        .unwrap();
    let evaluations = d
        .metric("rollbackd_evaluations_total{result=\"pass\"}")
        .unwrap();
    eprintln!(
        "5 watches, same query: {evaluations} evaluations, {sent} queries sent, {shared} shared"
    );
    assert!(evaluations >= 20.0, "{evaluations}");
    assert!(
        sent <= evaluations / 4.0,
        "sent {sent} for {evaluations} evaluations"
    );
    assert!(shared >= sent * 3.0, "shared {shared}, sent {sent}");
}

#[test]
fn a_relative_threshold_compares_with_the_value_when_the_rollout_began() {
    let host = Host::new("relative");
    let d = host.start(
        "",
        &format!(
            r#"[[watch]]
name = "traffic"
interval = "1s"
failure_threshold = 3
verify_for = "8s"
{}
[[watch.prometheus]]
name = "request-rate"
query = 'sum(rate(http_requests_total{{scenario="relative"}}[3s]))'
max_increase = 2.0
"#,
            host.command_target("ROLLBACKS")
        ),
    );
    assert!(wait_until(Duration::from_secs(10), || watch(
        &d.status(),
        "traffic"
    )["revision"]
        == "v1"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        watch(&d.status(), "traffic")["last_evaluation"]["result"],
        "inconclusive",
        "no rollout yet: no baseline"
    );
    host.deploy("v2");
    assert!(
        wait_until(Duration::from_secs(30), || host.marker_lines("ROLLBACKS")
            == 1),
        "{}\n{}\n{:?}",
        d.get("/status").1,
        std::fs::read_to_string(host.path("state/watches/traffic.json")).unwrap_or_default(),
        lab()
            .prometheus
            .value("sum(rate(http_requests_total{scenario=\"relative\"}[3s]))")
    );
    let started = support::journal(&host.path("state"))
        .into_iter()
        .find(|r| r["event"] == "rollback_started")
        .unwrap();
    let detail = started["checks"][0]["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("x the baseline"), "{detail}");
    let memory: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(host.path("state/watches/traffic.json")).unwrap(),
    )
    .unwrap();
    let baseline = memory["baselines"]["request-rate"][1][0]["value"]
        .as_f64()
        .unwrap();
    assert!(
        (80.0..=120.0).contains(&baseline),
        "the baseline is the rate before the rollout (~100/s): {baseline}"
    );
}

#[test]
fn check_online_asks_prometheus_resolves_urls_and_finds_commands() {
    let host = Host::new("steady");
    std::fs::write(
        host.path("rollbackd.toml"),
        format!(
            "[daemon]\nwatches = [\"watches.d\"]\n[notifiers.log]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n[defaults]\nnotify = [\"log\"]\n\
             [prometheus.default]\nurl = \"{}\"\n[prometheus.dead]\nurl = \"http://127.0.0.1:{}\"\ntimeout = \"1s\"\n",
            lab().prometheus.url(),
            support::free_port()
        ),
    )
    .unwrap();
    std::fs::write(
        host.path("watches.d/w.toml"),
        r#"[[watch]]
name = "good"
target = { kind = "command", current = ["cat", "/dev/null"], rollback = ["/bin/true"] }
[[watch.prometheus]]
name = "rate"
query = 'sum(rate(http_requests_total{scenario="steady"}[3s]))'
min = 1
[[watch.health]]
url = "http://localhost:9/health"

[[watch]]
name = "bad"
target = { kind = "command", rollback = ["/nonexistent/deploy", "rollback"] }
[[watch.prometheus]]
name = "typo"
query = 'sum(rate(http_requests_total[3s]'
max = 1
[[watch.prometheus]]
name = "elsewhere"
source = "dead"
query = 'up'
max = 1
[[watch.health]]
url = "http://no-such-host.invalid/health"
"#,
    )
    .unwrap();
    let out = support::command(&[
        "check",
        "--online",
        "-c",
        host.path("rollbackd.toml").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    for line in [
        "  ok      prometheus source default: answers",
        "  ok      watch good prometheus check rate: parses; returns 1 series",
        "  ok      watch good health check health: localhost resolves to",
        "  ok      watch good current command: /usr/bin/cat is executable",
        "  FAILED  prometheus source dead: Prometheus is unreachable",
        "  FAILED  watch bad prometheus check typo: the query is invalid (bad_data)",
        "  FAILED  watch bad prometheus check elsewhere: cannot be checked: Prometheus is unreachable",
        "  FAILED  watch bad health check health: no-such-host.invalid does not resolve",
        "  FAILED  watch bad rollback command: /nonexistent/deploy does not exist",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(line)),
            "no line starting {line:?} in:\n{stdout}"
        );
    }
    assert!(stderr.ends_with("5 online checks failed\n"), "{stderr}");
}
