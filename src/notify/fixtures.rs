//! Events for the rendering tests: a rollback of `shop-web` from revision 7
//! to 6 because its error ratio was 0.31 against a maximum of 0.05.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Context, Event, Kind, ReportRef, Timings};
use crate::config::{
    HttpAuth, KubernetesTarget, OnError, OnNoData, PrometheusCheck, PrometheusSource, Redactor,
    SecretSet, Target, Watch, WatchSettings, WorkloadKind,
};
use crate::engine::{CheckResult, EventKind, Origin, Outcome, Record, Revision, Trigger, Verdict};

/// 2026-11-21T10:05:10Z
pub const T0: u64 = 1_795_255_510_000;

pub fn watch() -> Watch {
    let check = |name: &str, query: &str, max: f64| PrometheusCheck {
        name: name.into(),
        query: query.into(),
        source: "default".into(),
        min: None,
        max: Some(max),
        max_increase: None,
        min_decrease: None,
        on_no_data: OnNoData::Inconclusive,
        on_error: OnError::Inconclusive,
    };
    Watch {
        name: "shop-web".into(),
        target: Target::Kubernetes(KubernetesTarget {
            kind: WorkloadKind::Deployment,
            namespace: "shop".into(),
            name: "web".into(),
            context: None,
        }),
        settings: WatchSettings::default(),
        health: Vec::new(),
        prometheus: vec![
            check(
                "error-ratio",
                "sum(rate(http_requests_total{deployment=\"web\",status=~\"5..\"}[1m]))\n/ sum(rate(http_requests_total{deployment=\"web\"}[1m]))\n",
                0.05,
            ),
            check(
                "p95-latency",
                "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{deployment=\"web\"}[1m])))",
                1.0,
            ),
        ],
        alerts: Vec::new(),
    }
}

pub fn sources() -> BTreeMap<String, PrometheusSource> {
    BTreeMap::from([(
        "default".to_owned(),
        PrometheusSource {
            url: "http://prometheus.monitoring:9090".into(),
            timeout: Duration::from_secs(10),
            auth: HttpAuth::None,
            headers: BTreeMap::new(),
            ca_file: None,
        },
    )])
}

pub fn redactor() -> Redactor {
    let r = Redactor::default();
    let mut s = SecretSet::default();
    s.insert("tok-secret-1234");
    r.add(&s);
    r
}

fn checks() -> Vec<CheckResult> {
    vec![
        CheckResult {
            kind: "prometheus".into(),
            name: "error-ratio".into(),
            result: Verdict::Fail,
            value: Some(0.31),
            threshold: "max 0.05".into(),
            labels: BTreeMap::from([("pod".to_owned(), "web-7c9f-abcde".to_owned())]),
            detail: "0.31 > max 0.05".into(),
        },
        CheckResult {
            kind: "health".into(),
            name: "health".into(),
            result: Verdict::Fail,
            value: Some(503.0),
            threshold: "status 2xx".into(),
            labels: BTreeMap::new(),
            detail: "status 503 in 12ms from http://web.shop.svc:8080/healthz?key=tok-secret-1234"
                .into(),
        },
        CheckResult {
            kind: "prometheus".into(),
            name: "p95-latency".into(),
            result: Verdict::Pass,
            value: Some(0.2),
            threshold: "max 1".into(),
            labels: BTreeMap::new(),
            detail: String::new(),
        },
    ]
}

pub fn record(event: EventKind, ts: u64) -> Record {
    Record {
        ts,
        event,
        watch: "shop-web".into(),
        rollback_id: Some(format!("shop-web-{T0}")),
        from_revision: Some("7".into()),
        to_revision: None,
        trigger: Some(Trigger::Auto),
        outcome: None,
        reason: Some(
            "error-ratio 0.31 (threshold max 0.05) {pod=\"web-7c9f-abcde\"} (3 consecutive failing evaluations)"
                .into(),
        ),
        operator: None,
        revision: Some(Revision {
            id: "7".into(),
            since: T0 - 240_000,
            origin: Origin::Rollout,
            definite: false,
        }),
        checks: checks(),
    }
}

fn build(r: &Record, timings: Timings) -> Event {
    let w = watch();
    let s = sources();
    let red = redactor();
    let mut e = Event::from_record(
        r,
        &Context {
            host: "ops-1",
            watch: Some(&w),
            sources: &s,
            timings,
            redactor: &red,
            images: None,
        },
    )
    .expect("a notified event");
    e.id = format!("{}-0a1b2c3d", r.ts);
    e
}

pub fn report_ref() -> ReportRef {
    ReportRef {
        path: format!("/var/lib/rollbackd/reports/shop-web-{T0}.md"),
        markdown: "# shop-web rolled back\n\n(the report)\n".into(),
    }
}

pub fn started() -> Event {
    let mut e = build(
        &record(EventKind::RollbackStarted, T0),
        Timings {
            started_at: Some(T0),
            ..Timings::default()
        },
    );
    e.report = Some(report_ref());
    e
}

pub fn finished(outcome: Outcome) -> Event {
    let mut r = record(EventKind::RollbackFinished, T0 + 95_000);
    r.to_revision = Some("6".into());
    r.outcome = Some(outcome);
    if outcome != Outcome::Recovered {
        r.reason = Some("2 consecutive failing evaluations while verifying".into());
    }
    let mut e = build(
        &r,
        Timings {
            started_at: Some(T0),
            finished_at: Some(T0 + 95_000),
            ..Timings::default()
        },
    );
    e.report = Some(report_ref());
    e
}

pub fn escalated() -> Event {
    let mut r = record(EventKind::Escalated, T0 + 95_001);
    r.from_revision = None;
    r.trigger = None;
    r.reason = Some("the restored revision did not recover; no further automatic action until a new revision appears".into());
    build(&r, Timings::default())
}

pub fn blind() -> Event {
    let mut r = record(EventKind::WatchBlind, T0);
    r.rollback_id = None;
    r.from_revision = None;
    r.trigger = None;
    r.reason = Some("3 consecutive evaluations could not decide".into());
    for c in &mut r.checks {
        c.result = Verdict::Inconclusive;
        c.value = None;
        c.detail = "Prometheus unreachable: connection refused".into();
        c.labels.clear();
    }
    build(&r, Timings::default())
}

pub fn would() -> Event {
    let mut r = record(EventKind::WouldRollBack, T0);
    r.reason = Some(
        "dry run: would roll back; error-ratio 0.31 (threshold max 0.05) (3 consecutive failing evaluations)".into(),
    );
    build(&r, Timings::default())
}

pub fn rejected() -> Event {
    let mut e = Event::config_rejected(
        T0,
        "ops-1",
        "file change",
        &[
            "/etc/rollbackd/watches.d/web.toml:4:1: unknown key \"failure_treshold\" in watch \"web\" (did you mean \"failure_threshold\"?)".into(),
            "/etc/rollbackd/rollbackd.toml:12:7: \"webhook_url\" is not an http:// or https:// URL (value tok-secret-1234)".into(),
        ],
        &redactor(),
    );
    e.id = format!("{T0}-0a1b2c3d");
    e
}

pub fn test() -> Event {
    let mut e = Event::test(T0, "ops-1");
    e.id = format!("{T0}-0a1b2c3d");
    e
}

/// Every kind of event, for tests that must hold for all of them.
pub fn all() -> Vec<Event> {
    let mut v = vec![started(), escalated(), blind(), would(), rejected(), test()];
    for o in [
        Outcome::Recovered,
        Outcome::RolloutFailed,
        Outcome::VerifyFailed,
        Outcome::Unverified,
        Outcome::Conflict,
        Outcome::Error,
    ] {
        v.push(finished(o));
    }
    let mut manual = finished(Outcome::Recovered);
    manual.kind = Kind::ManualRollback;
    manual.trigger = Some(Trigger::Manual);
    v.push(manual);
    v
}
