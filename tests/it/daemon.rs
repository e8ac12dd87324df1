//! End-to-end tests of `rollbackd run`: the real binary, its HTTP endpoint,
//! hot reload through file events and SIGHUP, signals, the state directory
//! lock and the systemd notify protocol.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::support::{self, Daemon, Scratch, wait_until};

fn started(s: &Scratch) -> Daemon {
    let d = Daemon::start(&s.main(), &[]);
    assert!(
        d.addr.is_some(),
        "rollbackd did not start:\n{}",
        d.logs().join("\n")
    );
    d
}

#[test]
fn serves_probes_metrics_and_status_once_started() {
    let s = Scratch::new("");
    s.write_watch("web.toml", &Scratch::command_watch("web"));
    let d = started(&s);

    assert_eq!(d.get("/healthz"), (200, "ok\n".into()));
    assert_eq!(d.get("/readyz"), (200, "ready\n".into()));
    assert_eq!(d.get("/nope").0, 404);

    let (code, metrics) = d.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("rollbackd_build_info{version=\"0.1.0\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rollbackd_watches_configured 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rollbackd_config_reloads_total{result=\"failure\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );

    let status = d.status();
    assert_eq!(status["version"], "0.1.0");
    assert_eq!(status["leader"], true);
    let w = &status["watches"][0];
    assert_eq!(w["name"], "web");
    assert_eq!(w["target"]["kind"], "command");
    assert_eq!(w["checks"][0]["kind"], "health");
    assert_eq!(w["checks"][0]["subject"], "http://127.0.0.1:9/health");
    assert!(
        w["defined_at"]
            .as_str()
            .unwrap()
            .ends_with("watches.d/web.toml:2:1"),
        "{w}"
    );
}

#[test]
fn a_new_watch_file_is_served_within_two_seconds() {
    let s = Scratch::new("");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let d = started(&s);
    assert_eq!(d.watch_names(), ["a"]);

    let written = Instant::now();
    s.write_watch("b.toml", &Scratch::command_watch("b"));
    assert!(
        wait_until(Duration::from_secs(2), || d.watch_names() == ["a", "b"]),
        "b not served 2 s after it was written; logs:\n{}",
        d.logs().join("\n")
    );
    eprintln!("new watch file applied after {:?}", written.elapsed());
    let line = d.find_log("configuration reloaded").expect("reload logged");
    assert_eq!(support::field(&line, "added").as_deref(), Some("b"));
    assert_eq!(
        support::field(&line, "cause").as_deref(),
        Some("file change")
    );
}

#[test]
fn an_invalid_change_is_rejected_whole_and_a_fix_is_applied() {
    let s = Scratch::new("");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let d = started(&s);

    // One good new watch and one typo in the same change: neither applies.
    s.write_watch("b.toml", &Scratch::command_watch("b"));
    let broken = Scratch::command_watch("a")
        .replace("[[watch.health]]", "failure_treshold = 2\n[[watch.health]]");
    s.write_watch("a.toml", &broken);
    assert!(
        wait_until(Duration::from_secs(5), || d
            .metric("rollbackd_config_reloads_total{result=\"failure\"}")
            .is_some_and(|n| n >= 1.0)),
        "rejection not counted; logs:\n{}",
        d.logs().join("\n")
    );
    assert_eq!(
        d.watch_names(),
        ["a"],
        "the last good configuration keeps running"
    );
    assert_eq!(
        d.metric("rollbackd_config_last_reload_successful"),
        Some(0.0)
    );
    let error = d.find_log("configuration error").expect("error logged");
    let message = support::field(&error, "error").unwrap();
    assert!(
        message.ends_with(r#"watches.d/a.toml:5:1: unknown key "failure_treshold" in watch "a" (did you mean "failure_threshold"?)"#),
        "{message}"
    );
    assert_eq!(
        d.get("/readyz").0,
        200,
        "still ready on the last good configuration"
    );
    let status = d.status();
    assert_eq!(status["last_reload"]["result"], "failure");
    assert!(
        status["last_reload"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("failure_treshold")
    );

    s.write_watch("a.toml", &Scratch::command_watch("a"));
    assert!(
        wait_until(Duration::from_secs(5), || d.watch_names() == ["a", "b"]),
        "fix not applied; logs:\n{}",
        d.logs().join("\n")
    );
    assert_eq!(
        d.metric("rollbackd_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(
        d.metric("rollbackd_config_last_reload_success_timestamp_seconds")
            .unwrap()
            > 1.7e9
    );
}

#[test]
fn sighup_reloads_through_the_same_path() {
    let s = Scratch::new("");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let d = started(&s);
    let before = d
        .metric("rollbackd_config_reloads_total{result=\"success\"}")
        .unwrap();
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(5), || d
            .metric("rollbackd_config_reloads_total{result=\"success\"}")
            .is_some_and(|n| n > before)),
        "SIGHUP did not reload; logs:\n{}",
        d.logs().join("\n")
    );
    assert_eq!(d.status()["last_reload"]["cause"], "SIGHUP");
}

#[test]
fn an_unchanged_watch_is_kept_when_its_file_is_rewritten_reordered_and_recommented() {
    let s = Scratch::new("");
    let a = Scratch::command_watch("a");
    let b = Scratch::command_watch("b");
    s.write_watch("ab.toml", &format!("{a}{b}"));
    let d = started(&s);
    s.write_watch(
        "ab.toml",
        &format!("# reordered\n{b}\n# and commented\n{a}"),
    );
    s.write_watch("c.toml", &Scratch::command_watch("c"));
    assert!(wait_until(Duration::from_secs(5), || d.watch_names().len() == 3));
    // `/status` shows the new configuration a moment before the line is logged.
    assert!(wait_until(Duration::from_secs(5), || d
        .find_log("configuration reloaded")
        .is_some()));
    let line = d.find_log("configuration reloaded").unwrap();
    assert_eq!(support::field(&line, "changed").as_deref(), Some(""));
    assert_eq!(support::field(&line, "added").as_deref(), Some("c"));
}

#[test]
fn a_change_of_listen_address_is_refused_not_half_applied() {
    let s = Scratch::new("");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let d = started(&s);
    // One edit that changes listen and adds a watch: neither applies.
    let text = std::fs::read_to_string(s.main())
        .unwrap()
        .replace("127.0.0.1:0", "127.0.0.1:1");
    std::fs::write(s.main(), format!("{text}\n{}", Scratch::command_watch("b"))).unwrap();
    assert!(wait_until(Duration::from_secs(5), || d
        .find_log("daemon.listen changed")
        .is_some()));
    assert_eq!(d.status()["last_reload"]["result"], "failure");
    assert_eq!(d.watch_names(), ["a"], "the new watch was not half-applied");
    assert_eq!(d.get("/readyz").0, 200);
}

#[test]
fn sigterm_exits_zero_promptly() {
    let s = Scratch::new("");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let mut d = started(&s);
    let sent = Instant::now();
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(10)).expect("exited");
    let took = sent.elapsed();
    eprintln!("SIGTERM to exit: {took:?}");
    // Nothing is in flight: the exit is immediate, 3 s is slack for a busy machine.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(status.code(), Some(0), "logs:\n{}", d.logs().join("\n"));
    assert!(d.find_log("rollbackd stopped").is_some());
}

#[test]
fn a_second_signal_exits_at_once_while_a_request_holds_the_shutdown() {
    let s = Scratch::new("");
    std::fs::write(
        s.main(),
        std::fs::read_to_string(s.main())
            .unwrap()
            .replace("\"5s\"", "\"60s\""),
    )
    .unwrap();
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let mut d = started(&s);
    // A request that never finishes keeps the graceful shutdown waiting.
    let mut held = std::net::TcpStream::connect(d.addr.unwrap()).unwrap();
    std::io::Write::write_all(&mut held, b"GET /status HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    d.signal("TERM");
    assert!(
        d.wait_exit(Duration::from_millis(500)).is_none(),
        "the first signal waits for the request"
    );
    d.signal("TERM");
    let status = d
        .wait_exit(Duration::from_secs(5))
        .expect("second signal exits");
    assert_eq!(status.code(), Some(130));
    assert!(d.find_log("second signal").is_some());
}

#[test]
fn a_second_daemon_on_the_same_state_dir_refuses_to_start() {
    let s = Scratch::new("");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let _first = started(&s);
    let mut second = Daemon::start(&s.main(), &[]);
    let status = second
        .wait_exit(Duration::from_secs(10))
        .expect("second daemon exits");
    assert_eq!(status.code(), Some(1));
    let line = second.find_log("rollbackd failed").expect("failure logged");
    let msg = support::field(&line, "error").unwrap();
    assert!(
        msg.contains("is locked by another rollbackd (pid "),
        "{msg}"
    );
}

#[test]
fn an_invalid_configuration_refuses_to_start_with_every_error() {
    let s = Scratch::new("log_formt = \"json\"");
    s.write_watch("a.toml", "[[watch]]\nname = \"a\"\n");
    let out = support::command(&["run", "-c", s.main().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("rollbackd.toml:6:1: unknown key \"log_formt\" in [daemon]"),
        "{err}"
    );
    assert!(
        err.contains("watches.d/a.toml:1:1: watch \"a\" is missing the required key \"target\""),
        "{err}"
    );
    assert!(
        err.contains("2 configuration errors; not starting"),
        "{err}"
    );
}

#[test]
fn log_level_changes_apply_on_reload() {
    let s = Scratch::new("log_level = \"info\"");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let d = started(&s);
    s.write_main("log_level = \"warn\"");
    s.write_watch("b.toml", &Scratch::command_watch("b"));
    assert!(wait_until(Duration::from_secs(5), || d.watch_names().len() == 2));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        d.count_logs("configuration reloaded"),
        0,
        "info is off at warn"
    );

    s.write_main("log_level = \"debug\"");
    assert!(wait_until(Duration::from_secs(5), || d
        .find_log("log_level=debug")
        .is_some()));
    // A reload that changes nothing is logged at debug only.
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(5), || d
            .find_log("\"level\":\"DEBUG\"")
            .is_some()),
        "debug lines after switching to debug; logs:\n{}",
        d.logs().join("\n")
    );
}

/// A stand-in for systemd's notify socket.
struct NotifySocket {
    sock: UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        NotifySocket {
            sock,
            _dir: dir,
            path,
        }
    }

    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .sock
            .recv(&mut buf)
            .expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The next message containing `needle`, skipping others.
    fn expect(&self, needle: &str) -> String {
        for _ in 0..50 {
            let m = self.next();
            if m.contains(needle) {
                return m;
            }
        }
        panic!("no notification with {needle}");
    }
}

#[test]
fn speaks_the_systemd_notify_protocol() {
    let s = Scratch::new("");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let sock = NotifySocket::new();
    let mut cmd = support::command(&["run", "-c", s.main().to_str().unwrap()]);
    cmd.env("ROLLBACKD_LOG_FORMAT", "json")
        .env("NOTIFY_SOCKET", &sock.path)
        .env("WATCHDOG_USEC", "200000");
    let mut d = Daemon::spawn(cmd);
    assert!(d.addr.is_some());

    let ready = sock.expect("READY=1");
    assert!(ready.contains("STATUS=watching 1 watches"), "{ready}");
    sock.expect("WATCHDOG=1");

    d.signal("HUP");
    let reloading = sock.expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    sock.expect("READY=1");

    d.signal("TERM");
    sock.expect("STOPPING=1");
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

/// Publishes files the way the kubelet updates a ConfigMap volume: a new
/// timestamped directory, then an atomic rename of the `..data` symlink;
/// the visible names are symlinks through `..data` and never change.
fn publish_configmap(dir: &std::path::Path, generation: u32, files: &[(&str, String)]) {
    use std::os::unix::fs::symlink;
    let stamp = format!("..2026_11_21_10_00_{generation:02}.000000001");
    std::fs::create_dir(dir.join(&stamp)).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(&stamp).join(name), text).unwrap();
    }
    symlink(&stamp, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (name, _) in files {
        if std::fs::symlink_metadata(dir.join(name)).is_err() {
            symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
}

#[test]
fn a_configmap_volume_update_is_applied() {
    let s = Scratch::new("");
    let dir = s.path("watches.d");
    publish_configmap(&dir, 1, &[("shop.toml", Scratch::command_watch("a"))]);
    let d = started(&s);
    assert_eq!(d.watch_names(), ["a"]);

    let both = format!(
        "{}{}",
        Scratch::command_watch("a"),
        Scratch::command_watch("b")
    );
    publish_configmap(&dir, 2, &[("shop.toml", both)]);
    assert!(
        wait_until(Duration::from_secs(2), || d.watch_names() == ["a", "b"]),
        "the ..data swap was not seen; logs:\n{}",
        d.logs().join("\n")
    );
}

#[test]
fn a_replaced_watch_directory_is_watched_anew() {
    let s = Scratch::new("");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let d = started(&s);
    let dir = s.path("watches.d");
    std::fs::rename(&dir, s.path("watches.old")).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.toml"), Scratch::command_watch("a")).unwrap();
    std::fs::write(dir.join("b.toml"), Scratch::command_watch("b")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || d.watch_names() == ["a", "b"]),
        "{}",
        d.logs().join("\n")
    );
    // The new directory itself is heard from, not just its parent.
    s.write_watch("c.toml", &Scratch::command_watch("c"));
    assert!(
        wait_until(Duration::from_secs(2), || d.watch_names()
            == ["a", "b", "c"]),
        "a file in the replaced directory was not seen; logs:\n{}",
        d.logs().join("\n")
    );
}

#[test]
fn an_editor_style_replacement_of_the_main_file_is_applied() {
    let s = Scratch::new("");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let d = started(&s);
    // Write a new file beside it and rename it over the original.
    let text = std::fs::read_to_string(s.main()).unwrap();
    let tmp = s.path(".rollbackd.toml.swp");
    std::fs::write(
        &tmp,
        format!("{text}\n{}", Scratch::command_watch("inline")),
    )
    .unwrap();
    std::fs::rename(&tmp, s.main()).unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || d.watch_names()
            == ["a", "inline"]),
        "{}",
        d.logs().join("\n")
    );
}

#[test]
fn a_zero_watchdog_timeout_is_ignored_not_fatal() {
    let s = Scratch::new("");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let sock = NotifySocket::new();
    let mut cmd = support::command(&["run", "-c", s.main().to_str().unwrap()]);
    cmd.env("ROLLBACKD_LOG_FORMAT", "json")
        .env("NOTIFY_SOCKET", &sock.path)
        .env("WATCHDOG_USEC", "0");
    let mut d = Daemon::spawn(cmd);
    sock.expect("READY=1");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.get("/healthz").0, 200, "{}", d.logs().join("\n"));
    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}
