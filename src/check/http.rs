//! HTTP health checks: GET the URL and judge the status, the latency and
//! the body.

use std::time::{Duration, Instant};

use crate::config::{HealthCheck, OnError};
use crate::engine::{CheckResult, Verdict};

/// How much of a body is read: enough for `body_contains` on a health page.
const BODY_LIMIT: usize = 64 * 1024;
/// How much of a body a report shows.
const EXCERPT: usize = 160;

/// What the endpoint answered, before judging.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Answered {
        status: u16,
        latency: Duration,
        body: String,
    },
    Timeout {
        after: Duration,
    },
    Error(String),
}

pub fn threshold_text(check: &HealthCheck) -> String {
    let mut t = match check.expect_status.as_slice() {
        [] => "status 2xx".to_owned(),
        [one] => format!("status {one}"),
        many => format!(
            "status in {}",
            many.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    if let Some(l) = check.max_latency {
        t.push_str(&format!(", latency <= {}", humantime::format_duration(l)));
    }
    if let Some(b) = &check.body_contains {
        t.push_str(&format!(", body contains {b:?}"));
    }
    t
}

fn excerpt(body: &str) -> String {
    let flat: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() > EXCERPT {
        format!("{}…", flat.chars().take(EXCERPT).collect::<String>())
    } else {
        flat.to_owned()
    }
}

/// Judges what was observed (pure).
pub fn judge(check: &HealthCheck, observed: &Observed) -> CheckResult {
    let mut r = CheckResult {
        kind: "health".into(),
        name: check.name.clone(),
        result: Verdict::Pass,
        value: None,
        threshold: threshold_text(check),
        labels: Default::default(),
        detail: String::new(),
    };
    let on_error = match check.on_error {
        OnError::Fail => Verdict::Fail,
        OnError::Inconclusive => Verdict::Inconclusive,
    };
    match observed {
        Observed::Timeout { after } => {
            r.result = on_error;
            r.detail = format!("no answer within {}", humantime::format_duration(*after));
        }
        Observed::Error(e) => {
            r.result = on_error;
            r.detail = e.clone();
        }
        Observed::Answered {
            status,
            latency,
            body,
        } => {
            r.value = Some(f64::from(*status));
            let status_ok = if check.expect_status.is_empty() {
                (200..300).contains(status)
            } else {
                check.expect_status.contains(status)
            };
            let ms = latency.as_millis();
            if !status_ok {
                r.result = Verdict::Fail;
                r.detail = format!("status {status} in {ms}ms; body: {}", excerpt(body));
            } else if let Some(max) = check.max_latency
                && *latency > max
            {
                r.result = Verdict::Fail;
                r.value = Some(latency.as_secs_f64());
                r.detail = format!(
                    "answered {status} in {ms}ms, slower than {}",
                    humantime::format_duration(max)
                );
            } else if let Some(want) = &check.body_contains
                && !body.contains(want.as_str())
            {
                r.result = Verdict::Fail;
                r.detail = format!(
                    "status {status}, but the body does not contain {want:?}: {}",
                    excerpt(body)
                );
            } else {
                r.detail = format!("status {status} in {ms}ms");
            }
        }
    }
    r
}

/// Performs the request.
pub async fn observe(client: &reqwest::Client, check: &HealthCheck) -> Observed {
    let started = Instant::now();
    let mut req = client.get(&check.url).timeout(check.timeout);
    for (k, v) in &check.headers {
        req = req.header(k, v.expose());
    }
    let fail = |e: reqwest::Error| {
        if e.is_timeout() {
            Observed::Timeout {
                after: check.timeout,
            }
        } else {
            // The URL may carry a token: it stays out of the message.
            Observed::Error(super::error_chain(&e.without_url()))
        }
    };
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while body.len() < BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return fail(e),
        }
    }
    body.truncate(BODY_LIMIT);
    Observed::Answered {
        status,
        latency: started.elapsed(),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn run(client: &reqwest::Client, check: &HealthCheck) -> CheckResult {
    judge(check, &observe(client, check).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheck {
        HealthCheck {
            name: "health".into(),
            url: "http://127.0.0.1:1/".into(),
            expect_status: vec![],
            timeout: Duration::from_secs(2),
            max_latency: Some(Duration::from_millis(750)),
            body_contains: Some("ok".into()),
            headers: Default::default(),
            ca_file: None,
            on_error: OnError::Fail,
        }
    }

    fn answered(status: u16, ms: u64, body: &str) -> Observed {
        Observed::Answered {
            status,
            latency: Duration::from_millis(ms),
            body: body.into(),
        }
    }

    #[test]
    fn judges_status_latency_and_body() {
        let cases = [
            (answered(200, 10, "ok"), Verdict::Pass, "status 200 in 10ms"),
            (
                answered(204, 10, "all ok"),
                Verdict::Pass,
                "status 204 in 10ms",
            ),
            (
                answered(500, 10, "boom\ntrace"),
                Verdict::Fail,
                "status 500 in 10ms; body: boom trace",
            ),
            (
                answered(301, 10, "ok"),
                Verdict::Fail,
                "status 301 in 10ms; body: ok",
            ),
            (
                answered(200, 900, "ok"),
                Verdict::Fail,
                "answered 200 in 900ms, slower than 750ms",
            ),
            (
                answered(200, 10, "degraded"),
                Verdict::Fail,
                "status 200, but the body does not contain \"ok\": degraded",
            ),
            (
                Observed::Timeout {
                    after: Duration::from_secs(2),
                },
                Verdict::Fail,
                "no answer within 2s",
            ),
            (
                Observed::Error("connection refused".into()),
                Verdict::Fail,
                "connection refused",
            ),
        ];
        for (observed, verdict, detail) in cases {
            let r = judge(&check(), &observed);
            assert_eq!(
                (r.result, r.detail.as_str()),
                (verdict, detail),
                "{observed:?}"
            );
        }
    }

    #[test]
    fn expected_statuses_replace_any_2xx() {
        let mut c = check();
        c.expect_status = vec![200, 503];
        c.body_contains = None;
        assert_eq!(judge(&c, &answered(503, 1, "")).result, Verdict::Pass);
        assert_eq!(judge(&c, &answered(204, 1, "")).result, Verdict::Fail);
        assert_eq!(threshold_text(&c), "status in 200,503, latency <= 750ms");
    }

    #[test]
    fn on_error_inconclusive_makes_unreachable_endpoints_inconclusive() {
        let mut c = check();
        c.on_error = OnError::Inconclusive;
        assert_eq!(
            judge(&c, &Observed::Error("refused".into())).result,
            Verdict::Inconclusive
        );
        assert_eq!(
            judge(&c, &answered(500, 1, "")).result,
            Verdict::Fail,
            "an answer is judged as usual"
        );
    }

    #[test]
    fn a_long_body_is_cut_in_the_report() {
        let r = judge(&check(), &answered(500, 1, &"x".repeat(1000)));
        assert!(r.detail.ends_with("x…"), "{}", r.detail);
        assert!(r.detail.len() < 300);
    }
}
