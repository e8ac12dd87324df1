//! The whole loop, end to end, on a host without Kubernetes: the real
//! binary watches a real HTTP health endpoint and rolls back through a real
//! deploy command. The "deploy tool" here is a shell one-liner over a
//! VERSION file, and the endpoint fails while VERSION says "v2".

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{self, Daemon, HealthServer, line_count, wait_until, watch_status};

struct Host {
    dir: tempfile::TempDir,
    server: HealthServer,
}

impl Host {
    /// A host running `version`, whose health endpoint follows `status_of`.
    fn new(version: &str, status_of: fn(&str, u64) -> u16) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("VERSION"), format!("{version}\n")).unwrap();
        let version_file = dir.path().join("VERSION");
        let n = std::sync::atomic::AtomicU64::new(0);
        let server = HealthServer::start(move || {
            let v = std::fs::read_to_string(&version_file).unwrap_or_default();
            status_of(
                v.trim(),
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            )
        });
        std::fs::create_dir(dir.path().join("watches.d")).unwrap();
        Host { dir, server }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn deploy(&self, version: &str) {
        std::fs::write(self.path("VERSION"), format!("{version}\n")).unwrap();
    }

    /// Writes the configuration: one command watch over this host.
    fn configure(&self, interval: &str, threshold: u32, extra: &str) {
        let d = self.dir.path().display();
        std::fs::write(
            self.path("rollbackd.toml"),
            "[daemon]\nwatches = [\"watches.d\"]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:0\"\nshutdown_timeout = \"5s\"\n\
                 [notifiers.log]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n[defaults]\nnotify = [\"log\"]\n",
        )
        .unwrap();
        let rollback = format!(
            "date +%s%N >> {d}/ROLLBACKS; echo \"$ROLLBACKD_WATCH|$ROLLBACKD_FROM_VERSION|$ROLLBACKD_REASON\" >> {d}/ROLLBACK.log; {extra_cmd}echo v1 > {d}/VERSION; echo deployed v1",
            extra_cmd = if extra.contains("slow-rollback") {
                "sleep 2; "
            } else {
                ""
            }
        );
        let mut extra = extra.replace("slow-rollback", "");
        if !extra.contains("cooldown") {
            extra.push_str("\ncooldown = \"1h\"");
        }
        std::fs::write(
            self.path("watches.d/billing.toml"),
            format!(
                r#"[[watch]]
name = "billing"
interval = "{interval}"
failure_threshold = {threshold}
verify_for = "1s"
{extra}
target = {{ kind = "command", current = ["/bin/cat", "{d}/VERSION"], rollback = ["/bin/sh", "-c", '{rollback}'], timeout = "30s" }}

[[watch.health]]
url = "{url}"
timeout = "90ms"
"#,
                url = self.server.url()
            ),
        )
        .unwrap();
    }

    fn start(&self) -> Daemon {
        let d = Daemon::start(&self.path("rollbackd.toml"), &[]);
        assert!(d.addr.is_some(), "{}", d.logs().join("\n"));
        d
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    fn rollbacks(&self) -> Vec<u128> {
        support::timestamps(&self.path("ROLLBACKS"))
    }
}

fn bad_v2(version: &str, _: u64) -> u16 {
    if version == "v2" { 500 } else { 200 }
}

fn wait_for_revision(d: &Daemon, rev: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || watch_status(d)["revision"]
            == rev),
        "revision {rev} never observed; logs:\n{}",
        d.logs().join("\n")
    );
}

#[test]
fn a_failing_health_endpoint_is_rolled_back_within_the_detection_bound_and_recovers() {
    let host = Host::new("v1", bad_v2);
    host.configure("200ms", 3, "");
    let d = host.start();
    wait_for_revision(&d, "v1");
    assert_eq!(
        watch_status(&d)["state"],
        "baked",
        "first seen after a start: age unknown, not armed"
    );

    let deployed = support::epoch_nanos();
    host.deploy("v2");
    assert!(
        wait_until(Duration::from_secs(10), || !host.rollbacks().is_empty()),
        "{}",
        d.logs().join("\n")
    );
    let took = Duration::from_nanos((host.rollbacks()[0] - deployed) as u64);
    eprintln!("failure visible to rollback command started: {took:?} (bound: 3 x 200ms + 1s)");
    assert!(
        took <= Duration::from_millis(3 * 200 + 1000),
        "took {took:?}"
    );

    assert!(
        wait_until(
            Duration::from_secs(10),
            || watch_status(&d)["last_rollback"]["outcome"] == "recovered"
        ),
        "{}",
        d.logs().join("\n")
    );
    let w = watch_status(&d);
    assert_eq!(w["state"], "recovered");
    assert_eq!(w["revision"], "v1");
    assert_eq!(w["last_rollback"]["from_revision"], "v2");
    assert_eq!(w["last_evaluation"]["result"], "pass");

    let log = std::fs::read_to_string(host.path("ROLLBACK.log")).unwrap();
    assert!(log.starts_with("billing|v2|health "), "{log}");
    assert!(
        log.contains("status 500"),
        "the reason names the evidence: {log}"
    );

    let events = support::events(&host.state());
    let order = [
        "armed",
        "decided",
        "rollback_started",
        "command_output",
        "rollback_applied",
        "verifying",
        "rollback_finished",
    ];
    let mut at = 0;
    for e in order {
        at += events[at..]
            .iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e} missing after {at} in {events:?}"));
    }
    let journal = support::journal(&host.state());
    let started = journal
        .iter()
        .find(|r| r["event"] == "rollback_started")
        .unwrap();
    assert_eq!(started["from_revision"], "v2");
    assert_eq!(started["trigger"], "auto");
    assert_eq!(
        started["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .split(" in ")
            .next(),
        Some("status 500")
    );
    let output = journal
        .iter()
        .find(|r| r["event"] == "command_output")
        .unwrap();
    assert_eq!(output["exit_code"], 0);
    assert_eq!(output["stdout"], "deployed v1\n");
    let finished = journal
        .iter()
        .find(|r| r["event"] == "rollback_finished")
        .unwrap();
    assert_eq!(finished["outcome"], "recovered");
    assert!(
        d.metric("rollbackd_rollbacks_total{trigger=\"auto\",outcome=\"recovered\"}") == Some(1.0),
        "{}",
        d.get("/metrics").1
    );
}

#[test]
fn a_flapping_endpoint_is_not_rolled_back() {
    // v2 alternates 500 and 200 on every request.
    let host = Host::new("v1", |v, n| if v == "v2" && n % 2 == 0 { 500 } else { 200 });
    host.configure("100ms", 3, "");
    let d = host.start();
    wait_for_revision(&d, "v1");
    host.deploy("v2");
    wait_for_revision(&d, "v2");
    std::thread::sleep(Duration::from_secs(3));
    assert!(host.rollbacks().is_empty(), "{}", d.logs().join("\n"));
    assert!(host.server.hits.load(std::sync::atomic::Ordering::SeqCst) > 20);
    assert!(watch_status(&d)["streak"].as_u64().unwrap() <= 1);
}

#[test]
fn a_version_that_is_not_armed_is_not_rolled_back() {
    // Already failing when the daemon starts: its age is unknown.
    let host = Host::new("v2", bad_v2);
    host.configure("100ms", 3, "");
    let d = host.start();
    assert!(wait_until(
        Duration::from_secs(10),
        || watch_status(&d)["streak"].as_u64().unwrap_or(0) >= 6
    ));
    assert!(host.rollbacks().is_empty());
    assert_eq!(watch_status(&d)["state"], "failing");
    assert!(support::events(&host.state()).contains(&"not_armed".to_owned()));
}

#[test]
fn the_same_bad_version_is_never_rolled_back_twice_even_across_kill_9() {
    let host = Host::new("v1", bad_v2);
    // A short cooldown: only the memory of the bad revision can stop a
    // second rollback.
    host.configure("100ms", 3, "cooldown = \"1s\"");
    let mut d = host.start();
    wait_for_revision(&d, "v1");
    host.deploy("v2");
    assert!(wait_until(
        Duration::from_secs(10),
        || watch_status(&d)["last_rollback"]["outcome"] == "recovered"
    ));

    // A good v3 ships; the daemon is killed; then the bad v2 is shipped again.
    host.deploy("v3");
    wait_for_revision(&d, "v3");
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let d = host.start();
    wait_for_revision(&d, "v3");
    // Let the new loop see v3 itself, so that v2 is a rollout it watched.
    std::thread::sleep(Duration::from_millis(500));
    host.deploy("v2");
    assert!(
        wait_until(Duration::from_secs(10), || watch_status(&d)["state"]
            == "escalated"),
        "{}\n{}\n{:?}",
        d.logs().join("\n"),
        d.get("/status").1,
        support::events(&host.state())
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(host.rollbacks().len(), 1, "{}", d.logs().join("\n"));
    let w = watch_status(&d);
    assert_eq!(w["revision"], "v2");
    let escalated = support::journal(&host.state())
        .into_iter()
        .rfind(|r| r["event"] == "escalated")
        .unwrap();
    assert!(
        escalated["reason"]
            .as_str()
            .unwrap()
            .contains("already rolled back once"),
        "{escalated}"
    );
}

#[test]
fn a_rollback_the_journal_started_is_resumed_even_if_the_memory_is_lost() {
    let host = Host::new("v1", bad_v2);
    host.configure("100ms", 3, "slow-rollback");
    let mut d = host.start();
    wait_for_revision(&d, "v1");
    host.deploy("v2");
    assert!(wait_until(Duration::from_secs(10), || host
        .rollbacks()
        .len()
        == 1));
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5)).unwrap();
    // As if the crash came before the memory was saved.
    std::fs::remove_file(host.state().join("watches/billing.json")).unwrap();
    let d = host.start();
    assert!(
        wait_until(
            Duration::from_secs(15),
            || watch_status(&d)["last_rollback"]["outcome"] == "recovered"
        ),
        "{}",
        d.logs().join("\n")
    );
    assert_eq!(host.rollbacks().len(), 1, "the rollback command ran once");
    assert!(
        d.find_log("the journal shows a rollback started and not finished")
            .is_some()
    );
}

#[test]
fn kill_9_during_the_rollback_resumes_without_running_it_again() {
    let host = Host::new("v1", bad_v2);
    host.configure("100ms", 3, "slow-rollback");
    let mut d = host.start();
    wait_for_revision(&d, "v1");
    host.deploy("v2");
    assert!(wait_until(Duration::from_secs(10), || host
        .rollbacks()
        .len()
        == 1));
    // The command sleeps 2 s before deploying v1: kill the daemon now.
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5)).unwrap();
    let d = host.start();
    assert!(
        wait_until(
            Duration::from_secs(15),
            || watch_status(&d)["last_rollback"]["outcome"] == "recovered"
        ),
        "{}",
        d.logs().join("\n")
    );
    assert_eq!(host.rollbacks().len(), 1, "the rollback command ran once");
    let events = support::events(&host.state());
    assert_eq!(
        events.iter().filter(|e| *e == "rollback_started").count(),
        1,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| *e == "rollback_finished").count(),
        1,
        "{events:?}"
    );
    assert!(
        events.contains(&"rollback_resumed".to_owned()),
        "{events:?}"
    );
    assert_eq!(line_count(&host.path("ROLLBACK.log")), 1);
}

#[test]
fn a_watch_file_edited_mid_streak_keeps_its_streak() {
    let host = Host::new("v2", bad_v2);
    host.configure("150ms", 50, "");
    let d = host.start();
    assert!(wait_until(
        Duration::from_secs(10),
        || watch_status(&d)["streak"].as_u64().unwrap_or(0) >= 3
    ));
    let before = watch_status(&d)["streak"].as_u64().unwrap();
    let file = host.path("watches.d/billing.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("# edited by config management\n{text}")).unwrap();
    assert!(wait_until(
        Duration::from_secs(5),
        || d.status()["last_reload"]["result"] == "success"
    ));
    std::thread::sleep(Duration::from_millis(400));
    let after = watch_status(&d)["streak"].as_u64().unwrap();
    assert!(after > before, "streak {before} became {after}");

    // A real change starts a fresh streak.
    std::fs::write(
        &file,
        text.replace("failure_threshold = 50", "failure_threshold = 40"),
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || d
        .find_log("\"changed\":\"billing\"")
        .is_some()));
    let fresh = watch_status(&d)["streak"].as_u64().unwrap();
    assert!(
        fresh < after,
        "streak {after} was not restarted: {fresh}\n{}\n{}",
        d.logs().join("\n"),
        d.get("/status").1
    );
}

#[test]
fn a_current_command_that_prints_something_new_every_time_is_called_out_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rollbackd.toml"),
        r#"[daemon]
state_dir = "state"
listen = "127.0.0.1:0"
[notifiers.log]
type = "webhook"
url = "http://127.0.0.1:9/"
[defaults]
notify = ["log"]

[[watch]]
name = "clocky"
interval = "100ms"
verify_for = "1s"
target = { kind = "command", current = ["/bin/date", "+%s%N"], rollback = ["/bin/true"] }
[[watch.alert]]
labels = { alertname = "Never" }
"#,
    )
    .unwrap();
    let d = Daemon::start(&dir.path().join("rollbackd.toml"), &[]);
    let needle = "printed a different version on every poll";
    assert!(
        wait_until(Duration::from_secs(5), || d.find_log(needle).is_some()),
        "{}",
        d.logs().join("\n")
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(d.count_logs(needle), 1, "said once");
}
