//! Credentials reach the servers they are for: a Prometheus source's bearer
//! token or basic auth and headers, and a health check's headers.

use std::time::Duration;

use crate::support::{Daemon, Recorder, wait_until};

const ANSWER: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.01"]}]}}"#;

#[test]
fn prometheus_and_health_requests_carry_their_credentials() {
    let bearer = Recorder::start(200, ANSWER);
    let basic = Recorder::start(200, ANSWER);
    let health = Recorder::start(200, "ok");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prom-password"), "b4sic-pass\n").unwrap();
    std::fs::write(
        dir.path().join("rollbackd.toml"),
        format!(
            r#"[daemon]
state_dir = "state"
listen = "127.0.0.1:0"
[notifiers.log]
type = "webhook"
url = "http://127.0.0.1:9/"
[defaults]
notify = ["log"]
interval = "200ms"
[prometheus.default]
url = "http://{}/prefix/"
bearer_token = "${{PROM_TOKEN}}"
headers = {{ X-Scope-OrgID = "shop" }}
[prometheus.basic]
url = "http://{}"
basic_auth = {{ username = "rollbackd", password_file = "prom-password" }}

[[watch]]
name = "web"
target = {{ kind = "command", rollback = ["/bin/true"] }}
[[watch.health]]
url = "http://{}/healthz?probe=1"
headers = {{ Authorization = "Bearer ${{WEB_TOKEN}}" }}
[[watch.prometheus]]
name = "errors"
query = 'sum(rate(errors_total[1m])) / sum(rate(requests_total[1m]))'
max = 0.05
[[watch.prometheus]]
name = "other"
source = "basic"
query = 'up'
max = 1
"#,
            bearer.addr, basic.addr, health.addr
        ),
    )
    .unwrap();
    let d = Daemon::start(
        &dir.path().join("rollbackd.toml"),
        &[
            ("PROM_TOKEN", "pr0m-bearer-token"),
            ("WEB_TOKEN", "w3b-header-token"),
        ],
    );
    assert!(d.addr.is_some(), "{}", d.logs().join("\n"));
    assert!(wait_until(Duration::from_secs(10), || !bearer
        .requests()
        .is_empty()
        && !basic.requests().is_empty()
        && !health.requests().is_empty()));

    let req = bearer.requests()[0].clone();
    let lower = req.to_lowercase();
    assert!(
        req.starts_with("POST /prefix/api/v1/query HTTP/1.1"),
        "{req}"
    );
    assert!(
        lower.contains("authorization: bearer pr0m-bearer-token"),
        "{req}"
    );
    assert!(lower.contains("x-scope-orgid: shop"), "{req}");
    assert!(
        lower.contains("content-type: application/x-www-form-urlencoded"),
        "{req}"
    );
    assert!(
        req.contains("query=sum%28rate%28errors_total%5B1m%5D%29%29"),
        "the query goes as a form: {req}"
    );
    assert!(req.contains("timeout="), "{req}");

    let req = basic.requests()[0].clone();
    // base64("rollbackd:b4sic-pass")
    assert!(
        req.to_lowercase().contains("authorization: basic "),
        "{req}"
    );
    assert!(req.contains("cm9sbGJhY2tkOmI0c2ljLXBhc3M="), "{req}");

    let req = health.requests()[0].clone();
    assert!(req.starts_with("GET /healthz?probe=1 HTTP/1.1"), "{req}");
    assert!(
        req.to_lowercase()
            .contains("authorization: bearer w3b-header-token"),
        "{req}"
    );

    assert!(wait_until(Duration::from_secs(5), || d.status()["watches"]
        [0]["last_evaluation"]["result"]
        == "pass"));
    let logs = d.logs().join("\n");
    for secret in ["pr0m-bearer-token", "b4sic-pass", "w3b-header-token"] {
        assert!(!logs.contains(secret) && !d.get("/status").1.contains(secret));
    }
}
