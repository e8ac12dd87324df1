//! Secrets given through `${ENV}` or `*_file` never appear in `check` output,
//! error messages, log lines (at any level), `/status` or `/metrics`.

use std::time::Duration;

use crate::support::{self, Daemon, Scratch, wait_until};

const SLACK_URL: &str = "https://hooks.slack.test/services/T1/B1/slack-secret-AAAA";
const PROM_TOKEN: &str = "prom-bearer-secret-BBBB";
const WEB_TOKEN: &str = "web-header-secret-CCCC";
const HEALTH_KEY: &str = "health-query-secret-DDDD";
const SMTP_PASSWORD: &str = "smtp-file-secret-EEEE";
const HMAC: &str = "hmac-file-secret-FFFF";
const CONTROL: &str = "control-token-secret-GGGG";
const URL_PASSWORD: &str = "url-pass-secret-HHHH";
/// Quotes, a backslash, a percent sign and non-ASCII: escaping must not
/// hide it from the scrubber.
const ODD: &str = "Qzx\"sec\\ret-é%IIII";
const DEPLOY_TOKEN: &str = "deploy-argv-secret-JJJJ";

const ALL: &[&str] = &[
    "slack-secret-AAAA",
    PROM_TOKEN,
    WEB_TOKEN,
    HEALTH_KEY,
    SMTP_PASSWORD,
    HMAC,
    CONTROL,
    URL_PASSWORD,
    "Qzx",
    "ret-",
    "IIII",
    DEPLOY_TOKEN,
];

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SLACK_URL", SLACK_URL),
        ("PROM_TOKEN", PROM_TOKEN),
        ("WEB_TOKEN", WEB_TOKEN),
        ("HEALTH_KEY", HEALTH_KEY),
        ("ODD", ODD),
        ("DEPLOY_TOKEN", DEPLOY_TOKEN),
    ]
}

fn assert_clean(what: &str, text: &str) {
    for secret in ALL {
        assert!(!text.contains(secret), "{what} leaks {secret}:\n{text}");
    }
}

fn scratch() -> Scratch {
    let s = Scratch::new("");
    std::fs::write(s.path("smtp-password"), format!("{SMTP_PASSWORD}\n")).unwrap();
    std::fs::write(s.path("hmac"), HMAC).unwrap();
    std::fs::write(s.path("control-token"), CONTROL).unwrap();
    let main = format!(
        r#"[daemon]
watches = ["watches.d"]
state_dir = "state"
listen = "127.0.0.1:0"
control_token_file = "control-token"

[defaults]
interval = "1s"
notify = ["slack", "mail", "hook"]

[prometheus.default]
url = "http://rollbackd:{URL_PASSWORD}@127.0.0.1:9/"
bearer_token = "${{PROM_TOKEN}}"

[notifiers.slack]
type = "slack"
webhook_url = "${{SLACK_URL}}"

[notifiers.mail]
type = "email"
smtp_host = "127.0.0.1"
username = "rollbackd"
password_file = "smtp-password"
from = "rollbackd@example.com"
to = ["oncall@example.com"]

[notifiers.hook]
type = "webhook"
url = "http://127.0.0.1:9/hook"
hmac_secret_file = "hmac"
headers = {{ Authorization = "Bearer ${{WEB_TOKEN}}" }}
"#
    );
    std::fs::write(s.main(), main).unwrap();
    s.write_watch(
        "web.toml",
        r#"[[watch]]
name = "web"
target = { kind = "deployment", namespace = "shop", name = "web" }
[[watch.health]]
url = "http://127.0.0.1:9/health?key=${HEALTH_KEY}"
headers = { Authorization = "Bearer ${WEB_TOKEN}" }
[[watch.prometheus]]
name = "errors"
query = "up"
max = 1

[[watch]]
name = "billing"
target = { kind = "command", rollback = ["/usr/local/bin/deploy", "--token", "${DEPLOY_TOKEN}", "rollback"] }
[[watch.health]]
url = "http://127.0.0.1:9/health?odd=${ODD}"
headers = { X-Odd = "${ODD}" }
"#,
    );
    s
}

/// A broken variant whose errors sit right on secret values.
fn break_it(s: &Scratch) {
    std::fs::write(s.path("slack-url"), format!("not a url {SLACK_URL}")).unwrap();
    let main = std::fs::read_to_string(s.main()).unwrap().replace(
        "webhook_url = \"${SLACK_URL}\"",
        "webhook_url_file = \"slack-url\"",
    );
    std::fs::write(s.main(), main).unwrap();
    s.write_watch(
        "web.toml",
        &std::fs::read_to_string(s.path("watches.d/web.toml"))
            .unwrap()
            .replace(
                "url = \"http://127.0.0.1:9/health?key=${HEALTH_KEY}\"",
                "url = \"ftp://x/${HEALTH_KEY}\"",
            )
            .replace("{ Authorization = ", "{ \"Bad Header\" = "),
    );
}

#[test]
fn check_output_and_its_errors_hold_no_secret() {
    let s = scratch();
    let mut cmd = support::command(&["check", "-c", s.main().to_str().unwrap()]);
    cmd.envs(env());
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("configuration is valid"));
    assert_clean("check output", &format!("{stdout}{stderr}"));

    break_it(&s);
    let mut cmd = support::command(&["check", "-c", s.main().to_str().unwrap()]);
    cmd.envs(env());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("\"webhook_url\" is not an http:// or https:// URL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"url\" must be an http:// or https:// URL, not ftp://"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"Bad Header\" is not a valid header name"),
        "{stderr}"
    );
    assert_clean("check errors", &stderr);
}

#[test]
fn logs_status_metrics_and_reload_errors_hold_no_secret() {
    let s = scratch();
    let mut cmd = support::command(&[
        "run",
        "-c",
        s.main().to_str().unwrap(),
        "--log-level",
        "trace",
    ]);
    cmd.envs(env()).env("ROLLBACKD_LOG_FORMAT", "json");
    let mut d = Daemon::spawn(cmd);
    assert!(d.addr.is_some(), "{}", d.logs().join("\n"));

    let (_, status) = d.get("/status");
    assert!(
        status.contains("http://127.0.0.1:9/health?key=[REDACTED]"),
        "{status}"
    );
    assert_clean("/status", &status);
    let (_, metrics) = d.get("/metrics");
    assert_clean("/metrics", &metrics);

    break_it(&s);
    assert!(
        wait_until(Duration::from_secs(5), || d
            .find_log("configuration rejected")
            .is_some()),
        "{}",
        d.logs().join("\n")
    );
    let (_, status) = d.get("/status");
    assert!(status.contains("not a valid header name"), "{status}");
    assert_clean("/status after a rejected reload", &status);

    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
    let logs = d.logs().join("\n");
    assert!(
        logs.contains("\"level\":\"TRACE\"") || logs.contains("\"level\":\"DEBUG\""),
        "logs ran at trace"
    );
    assert_clean("logs", &logs);
}
