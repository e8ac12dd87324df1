//! Alert checks against a real Alertmanager (the Debian package) delivering
//! to the daemon's `/alertmanager` webhook: a firing matching alert rolls the
//! target back; its resolution clears the check.

use std::time::Duration;

use crate::support::{self, Daemon, http_post, spawn_peer, wait_until};

fn rfc3339(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = std::time::UNIX_EPOCH + Duration::from_secs((now + offset_secs) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn alert_json(starts_at: &str, ends_at: &str) -> String {
    format!(
        r#"[{{"labels":{{"alertname":"HighErrorRate","deployment":"web","severity":"page"}},"annotations":{{"summary":"errors"}},"startsAt":"{starts_at}","endsAt":"{ends_at}"}}]"#
    )
}

#[test]
fn a_firing_alert_rolls_back_and_its_resolution_clears_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let d_path = dir.path().display().to_string();
    std::fs::write(dir.path().join("VERSION"), "v1\n").unwrap();
    std::fs::create_dir(dir.path().join("watches.d")).unwrap();
    let am_port = support::free_port();
    let resolve = format!(
        "curl -s -o /dev/null -XPOST -H \"Content-Type: application/json\" http://127.0.0.1:{am_port}/api/v2/alerts --data-binary @{d_path}/resolved.json"
    );
    std::fs::write(
        dir.path().join("rollbackd.toml"),
        "[daemon]\nwatches = [\"watches.d\"]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:0\"\n[notifiers.log]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n[defaults]\nnotify = [\"log\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("watches.d/web.toml"),
        format!(
            r#"[[watch]]
name = "web"
interval = "200ms"
failure_threshold = 3
verify_for = "4s"
target = {{ kind = "command", current = ["/bin/cat", "{d_path}/VERSION"], rollback = ["/bin/sh", "-c", 'echo v1 > {d_path}/VERSION; date >> {d_path}/ROLLBACKS; {resolve}'] }}
[[watch.alert]]
labels = {{ alertname = "HighErrorRate", deployment = "web" }}
"#
        ),
    )
    .unwrap();
    let d = Daemon::start(&dir.path().join("rollbackd.toml"), &[]);
    let addr = d.addr.expect("started");

    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  receiver: rollbackd\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: rollbackd\n    webhook_configs:\n      - url: http://{addr}/alertmanager\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("am-data")).unwrap();
    let _am = spawn_peer(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}/alertmanager.yml", d_path),
            format!("--storage.path={}/am-data", d_path),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
            "--log.level=warn".into(),
        ],
    );
    let am: std::net::SocketAddr = format!("127.0.0.1:{am_port}").parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(am)
            .is_ok()
            && support::http_get(am, "/-/ready").0 == 200),
        "Alertmanager did not become ready"
    );

    let watch = |d: &Daemon| d.status()["watches"][0].clone();
    assert!(wait_until(
        Duration::from_secs(10),
        || watch(&d)["revision"] == "v1"
    ));
    std::fs::write(dir.path().join("VERSION"), "v2\n").unwrap();
    assert!(wait_until(Duration::from_secs(10), || watch(&d)["state"] == "armed"));
    // The alert begins after the deploy, as one caused by it would (times
    // are whole seconds: wait out the one the deploy happened in).
    std::thread::sleep(Duration::from_millis(1100));
    let started = rfc3339(0);
    // What the rollback command will post: the same alert, ended.
    std::fs::write(
        dir.path().join("resolved.json"),
        alert_json(&started, &started),
    )
    .unwrap();
    let (code, body) = http_post(
        am,
        "/api/v2/alerts",
        &alert_json(&started, &rfc3339(300)),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        wait_until(Duration::from_secs(15), || std::fs::read_to_string(
            dir.path().join("ROLLBACKS")
        )
        .is_ok()),
        "no rollback; logs:\n{}",
        d.logs().join("\n")
    );
    let started = support::journal(&dir.path().join("state"))
        .into_iter()
        .find(|r| r["event"] == "rollback_started")
        .unwrap();
    assert_eq!(started["checks"][0]["kind"], "alert");
    assert_eq!(
        started["checks"][0]["labels"]["severity"], "page",
        "the firing alert's labels are the evidence"
    );

    // The command resolved the alert in Alertmanager, which tells the daemon.
    assert!(
        wait_until(
            Duration::from_secs(20),
            || watch(&d)["last_rollback"]["outcome"] == "recovered"
        ),
        "{}\n{}",
        d.get("/status").1,
        d.logs().join("\n")
    );
    let w = watch(&d);
    assert_eq!(w["last_evaluation"]["checks"][0]["result"], "pass");
    assert_eq!(d.metric("rollbackd_alerts_firing"), Some(0.0));
    assert!(dir.path().join("state/alerts.json").exists());
}
