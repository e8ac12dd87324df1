//! Notifications end to end: the real binary rolls back a command target
//! and tells a real SMTP server (aiosmtpd, STARTTLS or implicit TLS, with
//! AUTH), a Slack-compatible receiver that rejects what Slack rejects, and a
//! webhook receiver that verifies the HMAC signature. Outages, a wrong
//! password and `kill -9` lose nothing and send nothing twice; no secret
//! appears in a log line, report, outbox file or `/status`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::receivers::{self, Smtp, mail_header};
use crate::support::{self, Daemon, HealthServer, free_port, wait_until, watch_status};

const SLACK_SECRET: &str = "slack-secret-AAAA";
const HOOK_SECRET: &str = "hook-url-secret-BBBB";
const HMAC_KEY: &str = "hmac-key-secret-CCCC";
const SMTP_PASSWORD: &str = "smtp-pass-secret-DDDD";
const SMTP_USER: &str = "rollbackd";

fn assert_clean(what: &str, text: &str) {
    for s in [SLACK_SECRET, HOOK_SECRET, HMAC_KEY, SMTP_PASSWORD] {
        assert!(!text.contains(s), "{what} leaks {s}:\n{text}");
    }
}

/// A host without Kubernetes: a VERSION file, a deploy "tool" over it, and
/// a health endpoint that fails while v2 is deployed.
struct Host {
    dir: tempfile::TempDir,
    _health: HealthServer,
    slack_port: u16,
    hook_port: u16,
    smtp_port: u16,
}

impl Host {
    fn new(smtp_tls: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        std::fs::write(d.join("VERSION"), "v1\n").unwrap();
        let version = d.join("VERSION");
        let health = HealthServer::start(move || {
            if std::fs::read_to_string(&version).unwrap_or_default().trim() == "v2" {
                500
            } else {
                200
            }
        });
        std::fs::create_dir(d.join("watches.d")).unwrap();
        std::fs::create_dir(d.join("certs")).unwrap();
        receivers::make_certificates(&d.join("certs"));
        std::fs::write(d.join("smtp-password"), format!("{SMTP_PASSWORD}\n")).unwrap();
        std::fs::write(d.join("hmac"), HMAC_KEY).unwrap();
        let h = Host {
            dir,
            _health: health,
            slack_port: free_port(),
            hook_port: free_port(),
            smtp_port: free_port(),
        };
        h.configure(smtp_tls);
        h
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn configure(&self, smtp_tls: &str) {
        let d = self.dir.path().display();
        std::fs::write(
            self.path("rollbackd.toml"),
            format!(
                r##"[daemon]
watches = ["watches.d"]
state_dir = "{d}/state"
listen = "127.0.0.1:0"
shutdown_timeout = "5s"

[defaults]
notify = ["slack", "mail", "hook"]

[notifiers.slack]
type = "slack"
webhook_url = "${{SLACK_URL}}"
channel = "#ops"
username = "rollbackd"

[notifiers.mail]
type = "email"
smtp_host = "localhost"
smtp_port = {smtp}
tls = "{smtp_tls}"
username = "{SMTP_USER}"
password_file = "{d}/smtp-password"
ca_file = "{d}/certs/ca.pem"
from = "rollbackd <rollbackd@example.com>"
to = ["oncall@example.com", "sre@example.com"]
timeout = "5s"

[notifiers.hook]
type = "webhook"
url = "${{HOOK_URL}}"
hmac_secret_file = "{d}/hmac"
headers = {{ X-Team = "shop" }}
timeout = "5s"
"##,
                smtp = self.smtp_port,
            ),
        )
        .unwrap();
        let rollback =
            format!("date +%s%N >> {d}/ROLLBACKS; echo v1 > {d}/VERSION; echo deployed v1");
        std::fs::write(
            self.path("watches.d/billing.toml"),
            format!(
                r#"[[watch]]
name = "billing"
interval = "200ms"
failure_threshold = 3
verify_for = "1s"
cooldown = "1h"
target = {{ kind = "command", current = ["/bin/cat", "{d}/VERSION"], rollback = ["/bin/sh", "-c", '{rollback}'], timeout = "30s" }}

[[watch.health]]
url = "{url}"
timeout = "150ms"
"#,
                url = self._health.url()
            ),
        )
        .unwrap();
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "SLACK_URL".into(),
                format!(
                    "http://127.0.0.1:{}/services/T000/B000/{SLACK_SECRET}",
                    self.slack_port
                ),
            ),
            (
                "HOOK_URL".into(),
                format!(
                    "http://127.0.0.1:{}/hook?token={HOOK_SECRET}",
                    self.hook_port
                ),
            ),
        ]
    }

    fn start(&self) -> Daemon {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let d = Daemon::start(&self.path("rollbackd.toml"), &env);
        assert!(d.addr.is_some(), "{}", d.logs().join("\n"));
        d
    }

    fn notify_test(&self, names: &[&str]) -> (i32, String, String) {
        let mut args = vec!["notify-test", "-c"];
        let main = self.path("rollbackd.toml");
        args.push(main.to_str().unwrap());
        args.extend_from_slice(names);
        let mut cmd = support::command(&args);
        cmd.envs(self.env());
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn smtp(&self, mode: &str) -> Smtp {
        Smtp::start(
            self.smtp_port,
            mode,
            SMTP_USER,
            SMTP_PASSWORD,
            &self.path("certs"),
            &self.path("maildir"),
        )
    }

    fn deploy(&self, v: &str) {
        std::fs::write(self.path("VERSION"), format!("{v}\n")).unwrap();
    }

    fn rollbacks(&self) -> Vec<u128> {
        support::timestamps(&self.path("ROLLBACKS"))
    }

    fn outbox(&self) -> Vec<PathBuf> {
        files(&self.path("state/outbox"))
    }

    /// Every file the daemon wrote in its state directory, as text.
    fn state_text(&self) -> String {
        let mut all = String::new();
        for sub in ["", "outbox", "reports", "watches"] {
            for f in files(&self.path(&format!("state/{sub}"))) {
                all.push_str(&std::fs::read_to_string(&f).unwrap_or_default());
            }
        }
        all
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Deploys the bad v2 and waits for its rollback to recover; returns how
/// long from the deploy to the rollback command.
fn roll_back(host: &Host, d: &Daemon) -> Duration {
    assert!(
        wait_until(Duration::from_secs(10), || watch_status(d)["revision"]
            == "v1"),
        "{}",
        d.logs().join("\n")
    );
    let deployed = support::epoch_nanos();
    host.deploy("v2");
    assert!(
        wait_until(Duration::from_secs(10), || !host.rollbacks().is_empty()),
        "{}",
        d.logs().join("\n")
    );
    let took = Duration::from_nanos((host.rollbacks()[0] - deployed) as u64);
    assert!(
        wait_until(Duration::from_secs(15), || watch_status(d)["last_rollback"]
            ["outcome"]
            == "recovered"),
        "{}",
        d.logs().join("\n")
    );
    took
}

/// The `delay_ms` of every "notification delivered" log line.
fn delivery_delays(d: &Daemon) -> Vec<u64> {
    d.logs()
        .iter()
        .filter(|l| l.contains("notification delivered"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["delay_ms"].as_u64())
        .collect()
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn events_of(server: &receivers::Server) -> Vec<String> {
    server
        .accepted()
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn slack_headers(server: &receivers::Server) -> Vec<String> {
    server
        .accepted()
        .iter()
        .map(|r| {
            r.json()["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[test]
fn a_rollback_reaches_email_slack_and_the_webhook_with_its_evidence_and_report() {
    let host = Host::new("starttls");
    let smtp = host.smtp("starttls");
    let slack = receivers::slack(host.slack_port);
    let hook = receivers::webhook(host.hook_port, HMAC_KEY);
    let d = host.start();
    roll_back(&host, &d);

    assert!(
        wait_until(Duration::from_secs(15), || smtp.messages().len() >= 2
            && slack.accepted().len() >= 2
            && hook.accepted().len() >= 2),
        "mail {} slack {:?} hook {:?}\n{}",
        smtp.messages().len(),
        slack
            .received()
            .iter()
            .map(|r| (r.status, r.answer.clone()))
            .collect::<Vec<_>>(),
        hook.received()
            .iter()
            .map(|r| (r.status, r.answer.clone()))
            .collect::<Vec<_>>(),
        d.logs().join("\n")
    );
    std::thread::sleep(Duration::from_millis(500));

    // Slack: every payload accepted as Slack would, with the overrides.
    assert!(
        slack.received().iter().all(|r| r.status == 200),
        "{:?}",
        slack
            .received()
            .iter()
            .map(|r| r.answer.clone())
            .collect::<Vec<_>>()
    );
    let headers = slack_headers(&slack);
    assert_eq!(headers.len(), 2, "{headers:?}");
    assert!(
        headers[0].contains("billing is rolling back: health: status 500"),
        "{headers:?}"
    );
    assert!(
        headers[1].contains("billing rolled back: health: status 500"),
        "{headers:?}"
    );
    let first = slack.accepted()[0].json();
    assert_eq!(first["channel"], "#ops");
    assert_eq!(first["username"], "rollbackd");
    assert!(
        first["text"]
            .as_str()
            .unwrap()
            .starts_with("billing is rolling back")
    );

    // The webhook: signed, versioned, each with its own id.
    let docs: Vec<serde_json::Value> = hook.accepted().iter().map(|r| r.json()).collect();
    assert_eq!(events_of(&hook), ["rollback_started", "rollback_finished"]);
    let ids: BTreeSet<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    for (doc, req) in docs.iter().zip(hook.accepted()) {
        assert_eq!(doc["schema"], "rollbackd.event/v1");
        assert_eq!(doc["watch"], "billing");
        assert_eq!(doc["from_revision"], "v2");
        assert_eq!(doc["trigger"], "auto");
        assert_eq!(req.header("X-Team"), Some("shop"));
        assert_eq!(req.header("X-Rollbackd-Id"), doc["id"].as_str());
        assert!(
            doc["checks"][0]["detail"]
                .as_str()
                .unwrap()
                .starts_with("status 500")
        );
    }
    let finished = &docs[1];
    assert_eq!(finished["outcome"], "recovered");
    assert_eq!(finished["to_revision"], "v1");
    let report = finished["report"]["markdown"].as_str().unwrap();
    assert!(report.contains("## Timeline"), "{report}");
    assert!(report.contains("| command_output | exit 0"), "{report}");
    assert!(
        report.contains("| rollback_finished | outcome recovered"),
        "{report}"
    );

    // Email: multipart, threaded, with the report attached.
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2);
    let (started, done) = (&mails[0], &mails[1]);
    assert!(
        mail_header(started, "Subject")
            .unwrap()
            .starts_with("[rollbackd] billing is rolling back"),
        "{started}"
    );
    assert_eq!(
        mail_header(done, "Subject").unwrap(),
        "[rollbackd] billing rolled back: health: status 500"
    );
    let root = mail_header(started, "Message-ID").unwrap();
    assert!(root.starts_with("<rollback.billing-"), "{root}");
    assert_eq!(mail_header(done, "In-Reply-To").as_ref(), Some(&root));
    assert_eq!(mail_header(done, "References").as_ref(), Some(&root));
    assert_eq!(
        mail_header(done, "To").unwrap(),
        "oncall@example.com, sre@example.com"
    );
    for m in &mails {
        assert!(mail_header(m, "Date").is_some());
        assert!(
            mail_header(m, "Content-Type")
                .unwrap()
                .starts_with("multipart/mixed"),
            "{m}"
        );
        assert!(m.contains("Content-Type: multipart/alternative"), "{m}");
        assert!(m.contains("Content-Type: text/plain; charset=utf-8"), "{m}");
        assert!(m.contains("Content-Type: text/html; charset=utf-8"), "{m}");
        assert!(
            m.contains("Content-Type: text/markdown; charset=utf-8"),
            "{m}"
        );
        assert!(
            m.contains("Content-Disposition: attachment; filename=\"billing-"),
            "{m}"
        );
    }

    // The report on disk, and nothing left queued.
    let reports = files(&host.path("state/reports"));
    assert_eq!(reports.len(), 1, "{reports:?}");
    let md = std::fs::read_to_string(&reports[0]).unwrap();
    assert!(md.contains("| Outcome | recovered |"), "{md}");
    assert!(wait_until(Duration::from_secs(5), || host
        .outbox()
        .is_empty()));
    assert_eq!(d.metric("rollbackd_outbox_pending"), Some(0.0));
    assert_eq!(
        d.metric("rollbackd_notifications_total{kind=\"email\",result=\"sent\"}"),
        Some(2.0),
        "{}",
        d.get("/metrics").1
    );

    let delays = delivery_delays(&d);
    assert_eq!(delays.len(), 6, "{}", d.logs().join("\n"));
    eprintln!(
        "event to delivery, healthy receivers: median {} ms, max {} ms, all {delays:?}",
        median(delays.clone()),
        delays.iter().max().unwrap()
    );
    assert_clean("logs", &d.logs().join("\n"));
    assert_clean("state directory", &host.state_text());
}

#[test]
fn notify_test_over_implicit_tls_with_authentication_reports_each_notifier() {
    let host = Host::new("tls");
    let smtp = host.smtp("tls");
    let slack = receivers::slack(host.slack_port);
    let hook = receivers::webhook(host.hook_port, HMAC_KEY);
    let (code, out, err) = host.notify_test(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("  ok      hook (webhook): delivered; HTTP 200"),
        "{out}"
    );
    assert!(
        out.contains("  ok      mail (email): delivered; 250 2.0.0 Message accepted"),
        "{out}"
    );
    assert!(
        out.contains("  ok      slack (slack): delivered; HTTP 200: ok"),
        "{out}"
    );
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert!(
        mail_header(&mails[0], "Subject")
            .unwrap()
            .starts_with("[rollbackd] test message from rollbackd on "),
        "{}",
        mails[0]
    );
    assert!(mails[0].contains("multipart/alternative"));
    assert_eq!(events_of(&hook), ["test"]);
    assert_eq!(slack.accepted().len(), 1);

    // One named notifier, and an unknown one.
    let (code, out, _) = host.notify_test(&["slack"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, _, err) = host.notify_test(&["slak"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no notifier named \"slak\" (did you mean \"slack\"?)"),
        "{err}"
    );

    // A receiver that is down: exit 1, with the reason and no secret.
    drop(hook);
    let (code, out, err) = host.notify_test(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  FAILED  hook (webhook): cannot connect"),
        "{out}"
    );
    assert!(err.contains("1 of 3 notifiers failed"), "{err}");
    assert_clean("notify-test output", &format!("{out}{err}"));
}

#[test]
fn a_wrong_smtp_password_is_a_clear_error_and_the_email_stays_queued_until_fixed() {
    let host = Host::new("starttls");
    let smtp = host.smtp("starttls");
    let _slack = receivers::slack(host.slack_port);
    let _hook = receivers::webhook(host.hook_port, HMAC_KEY);
    std::fs::write(host.path("smtp-password"), "wrong-password-EEEE\n").unwrap();

    let (code, out, _) = host.notify_test(&["mail"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED  mail (email): localhost:")
            && out.contains("535")
            && out.contains("Authentication credentials invalid"),
        "{out}"
    );

    let d = host.start();
    roll_back(&host, &d);
    assert!(
        wait_until(Duration::from_secs(10), || host
            .outbox()
            .iter()
            .filter(|p| p.to_string_lossy().ends_with("-mail.json"))
            .count()
            == 2),
        "{:?}\n{}",
        host.outbox(),
        d.logs().join("\n")
    );
    let warning = d
        .find_log("notification not delivered; will retry")
        .expect("a warning for the failed email");
    assert!(warning.contains("535"), "{warning}");
    assert!(warning.contains("\"notifier\":\"mail\""), "{warning}");
    assert!(smtp.messages().is_empty());

    // The password is fixed; a reload picks it up and the queue drains.
    std::fs::write(host.path("smtp-password"), format!("{SMTP_PASSWORD}\n")).unwrap();
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(20), || smtp.messages().len() == 2),
        "{}",
        d.logs().join("\n")
    );
    assert!(wait_until(Duration::from_secs(5), || host
        .outbox()
        .is_empty()));
    assert!(
        d.metric("rollbackd_notifications_total{kind=\"email\",result=\"retried\"}")
            .unwrap_or(0.0)
            >= 2.0
    );
    let logs = d.logs().join("\n");
    assert!(
        !logs.contains("wrong-password-EEEE"),
        "the wrong password leaked"
    );
    assert_clean("logs", &logs);
}

#[test]
fn with_receivers_down_and_a_kill_9_every_notification_arrives_exactly_once() {
    let host = Host::new("starttls");
    let mut d = host.start();
    // Slack, SMTP and the webhook are all down during the rollback.
    let took = roll_back(&host, &d);
    eprintln!("bad deploy to rollback command with every receiver down: {took:?}");
    assert!(
        took <= Duration::from_millis(3 * 200 + 1000),
        "the rollback was delayed: {took:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || host.outbox().len() == 6),
        "{:?}",
        host.outbox()
    );
    assert!(
        wait_until(Duration::from_secs(5), || d
            .count_logs("notification not delivered")
            >= 3),
        "{}",
        d.logs().join("\n")
    );
    assert_eq!(d.metric("rollbackd_outbox_pending"), Some(6.0));
    let queued: BTreeSet<String> = host
        .outbox()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let state_before = host.state_text();
    assert_clean("state directory (outbox, reports, journal)", &state_before);
    assert!(state_before.contains("\"notifier\": \"slack\""));
    let logs_before = d.logs().join("\n");

    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5)).unwrap();
    let d = host.start();
    std::thread::sleep(Duration::from_millis(1500));
    let smtp = host.smtp("starttls");
    let slack = receivers::slack(host.slack_port);
    let hook = receivers::webhook(host.hook_port, HMAC_KEY);
    assert!(
        wait_until(Duration::from_secs(30), || smtp.messages().len() >= 2
            && slack.accepted().len() >= 2
            && hook.accepted().len() >= 2
            && host.outbox().is_empty()),
        "mail {} slack {} hook {} outbox {:?}\n{}",
        smtp.messages().len(),
        slack.accepted().len(),
        hook.accepted().len(),
        host.outbox(),
        d.logs().join("\n")
    );
    // Time for a duplicate to show up, if there were going to be one.
    std::thread::sleep(Duration::from_secs(3));
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2);
    let ids: BTreeSet<String> = mails
        .iter()
        .map(|m| mail_header(m, "Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(slack.received().iter().all(|r| r.status == 200));
    assert_eq!(slack.received().len(), 2);
    let mut headers = slack_headers(&slack);
    headers.sort();
    assert!(
        headers[0].contains("billing is rolling back"),
        "{headers:?}"
    );
    assert!(headers[1].contains("billing rolled back"), "{headers:?}");
    assert_eq!(hook.received().len(), 2);
    let mut events = events_of(&hook);
    events.sort();
    assert_eq!(events, ["rollback_finished", "rollback_started"]);
    let hook_ids: BTreeSet<String> = hook
        .accepted()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        hook_ids.is_subset(&queued),
        "{hook_ids:?} not in {queued:?}"
    );
    assert_eq!(host.rollbacks().len(), 1, "the rollback ran once");

    assert_clean("logs before the kill", &logs_before);
    assert_clean("logs after the restart", &d.logs().join("\n"));
    assert_clean("state directory", &host.state_text());
    assert_clean("/status", &d.get("/status").1);
}

#[test]
fn the_slack_stand_in_rejects_what_slack_rejects() {
    let slack = receivers::slack(0);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", slack.port).parse().unwrap();
    let post = |body: &str| support::http_post(addr, "/services/x", body, &[]);
    let section = |n: usize| {
        format!(
            r#"{{"type":"section","text":{{"type":"mrkdwn","text":"{}"}}}}"#,
            "x".repeat(n)
        )
    };
    let header = |n: usize| {
        format!(
            r#"{{"type":"header","text":{{"type":"plain_text","text":"{}"}}}}"#,
            "h".repeat(n)
        )
    };
    let with =
        |blocks: &[String]| format!(r#"{{"text":"fallback","blocks":[{}]}}"#, blocks.join(","));
    assert_eq!(
        post(&with(&[header(150), section(3000)])),
        (200, "ok".into())
    );
    assert_eq!(post(r#"{"blocks":[]}"#), (400, "no_text".into()));
    assert_eq!(post(r#"{"text":"","blocks":[]}"#), (400, "no_text".into()));
    assert_eq!(post(&with(&[header(151)])), (400, "invalid_blocks".into()));
    assert_eq!(
        post(&with(&[section(3001)])),
        (400, "invalid_blocks".into())
    );
    assert_eq!(
        post(&with(&vec![section(1); 51])),
        (400, "invalid_blocks".into())
    );
    assert_eq!(
        post(&with(&[
            r#"{"type":"banner","text":{"type":"mrkdwn","text":"x"}}"#.into()
        ])),
        (400, "invalid_blocks".into())
    );
    let fields: Vec<String> = (0..11)
        .map(|_| r#"{"type":"mrkdwn","text":"f"}"#.into())
        .collect();
    assert_eq!(
        post(&with(&[format!(
            r#"{{"type":"section","fields":[{}]}}"#,
            fields.join(",")
        )])),
        (400, "invalid_blocks".into())
    );
    assert_eq!(post("not json"), (400, "invalid_payload".into()));
}

#[test]
fn a_rejected_reload_is_notified_once_with_every_error() {
    let host = Host::new("starttls");
    let hook = receivers::webhook(host.hook_port, HMAC_KEY);
    let slack = receivers::slack(host.slack_port);
    let d = host.start();
    let file = host.path("watches.d/billing.toml");
    let good = std::fs::read_to_string(&file).unwrap();
    let bad = good.replace("failure_threshold = 3", "failure_treshold = 3");
    std::fs::write(&file, &bad).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || events_of(&hook)
            == ["config_rejected"]),
        "{:?}\n{}",
        events_of(&hook),
        d.logs().join("\n")
    );
    let doc = hook.accepted()[0].json();
    assert!(doc["watch"].is_null());
    let errors = doc["errors"].as_array().unwrap();
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .contains("billing.toml:4:1: unknown key \"failure_treshold\""),
        "{errors:?}"
    );
    // The same broken file saved again pages nobody a second time.
    std::fs::write(&file, &bad).unwrap();
    d.signal("HUP");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hook.accepted().len(), 1, "{:?}", events_of(&hook));
    assert!(slack.received().iter().all(|r| r.status == 200));
    assert_eq!(slack.accepted().len(), 1);
}
