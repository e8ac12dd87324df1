//! Result parsing and threshold judging, on answers as Prometheus writes them.

use super::*;
use std::sync::Arc;
use std::time::Duration;

fn check(max: Option<f64>, min: Option<f64>) -> PrometheusCheck {
    PrometheusCheck {
        name: "error-ratio".into(),
        query: "q".into(),
        source: "default".into(),
        min,
        max,
        max_increase: None,
        min_decrease: None,
        on_no_data: OnNoData::Inconclusive,
        on_error: OnError::Inconclusive,
    }
}

fn vector(samples: &[(&str, &str)]) -> Vec<u8> {
    let items: Vec<String> = samples
        .iter()
        .map(|(pod, v)| format!(r#"{{"metric":{{"pod":"{pod}"}},"value":[1700000000.1,"{v}"]}}"#))
        .collect();
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        items.join(",")
    )
    .into_bytes()
}

fn answer(body: &[u8]) -> Answer {
    parse_response(200, body).unwrap()
}

#[test]
fn parses_every_result_type_and_special_value() {
    let a = answer(&vector(&[
        ("a", "0.5"),
        ("b", "NaN"),
        ("c", "+Inf"),
        ("d", "-Inf"),
    ]));
    let QueryResult::Vector(s) = a.result else {
        panic!()
    };
    assert_eq!(s[0].value, 0.5);
    assert_eq!(s[0].labels["pod"], "a");
    assert!(s[1].value.is_nan());
    assert_eq!(s[2].value, f64::INFINITY);
    assert_eq!(s[3].value, f64::NEG_INFINITY);

    let a =
        answer(br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3"]}}"#);
    assert_eq!(a.result, QueryResult::Scalar(3.0));
    let a = answer(
        br#"{"status":"success","data":{"resultType":"string","result":[1700000000,"hi"]}}"#,
    );
    assert_eq!(a.result, QueryResult::String("hi".into()));
    let a = answer(br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"x":"1"},"values":[[1,"1"],[2,"7"]]}]},"warnings":["partial"]}"#);
    let QueryResult::Matrix(s) = a.result else {
        panic!()
    };
    assert_eq!(s[0].value, 7.0, "the latest value of each series");
    assert_eq!(a.warnings, ["partial"]);
}

#[test]
fn errors_are_told_apart_by_what_they_mean() {
    let bad = parse_response(
        400,
        br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#,
    )
    .unwrap_err();
    assert!(bad.is_config_problem());
    assert_eq!(
        bad.to_string(),
        "the query is invalid (bad_data): parse error at char 5"
    );
    let exec = parse_response(
        422,
        br#"{"status":"error","errorType":"execution","error":"many-to-many"}"#,
    )
    .unwrap_err();
    assert!(exec.is_config_problem());
    let down = parse_response(502, b"<html>Bad Gateway</html>").unwrap_err();
    assert!(
        matches!(down, QueryError::Server { status: 502, .. }),
        "{down:?}"
    );
    assert!(!down.is_config_problem());
    let timeout = parse_response(
        503,
        br#"{"status":"error","errorType":"timeout","error":"query timed out"}"#,
    )
    .unwrap_err();
    assert_eq!(timeout, QueryError::Timeout);
    assert!(matches!(
        parse_response(200, b"{not json").unwrap_err(),
        QueryError::Malformed(_)
    ));
    assert!(matches!(
        parse_response(
            200,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"x"]}]}}"#
        )
        .unwrap_err(),
        QueryError::Malformed(_)
    ));
}

#[test]
fn a_vector_fails_if_any_series_violates_and_reports_the_worst() {
    let r = judge(
        &check(Some(0.05), None),
        &answer(&vector(&[("a", "0.01"), ("b", "0.31"), ("c", "0.2")])),
        None,
    );
    assert_eq!(r.result, Verdict::Fail);
    assert_eq!(r.value, Some(0.31));
    assert_eq!(r.labels["pod"], "b");
    assert_eq!(r.detail, "0.31 > max 0.05 (2 of 3 series)");
    assert_eq!(r.threshold, "max 0.05");
}

#[test]
fn thresholds_pass_and_fail_as_written() {
    let cases = [
        (Some(0.05), None, "0.05", Verdict::Pass),
        (Some(0.05), None, "0.050001", Verdict::Fail),
        (None, Some(10.0), "9.9", Verdict::Fail),
        (None, Some(10.0), "10", Verdict::Pass),
        (Some(1.0), Some(0.5), "0.7", Verdict::Pass),
        (Some(1.0), None, "+Inf", Verdict::Fail),
        (None, Some(0.0), "-Inf", Verdict::Fail),
    ];
    for (max, min, v, expected) in cases {
        let r = judge(&check(max, min), &answer(&vector(&[("a", v)])), None);
        assert_eq!(r.result, expected, "max {max:?} min {min:?} value {v}");
    }
}

#[test]
fn no_data_and_nan_follow_on_no_data() {
    for (policy, expected) in [
        (OnNoData::Inconclusive, Verdict::Inconclusive),
        (OnNoData::Fail, Verdict::Fail),
        (OnNoData::Pass, Verdict::Pass),
    ] {
        let mut c = check(Some(0.05), None);
        c.on_no_data = policy;
        assert_eq!(judge(&c, &answer(&vector(&[])), None).result, expected);
        assert_eq!(
            judge(&c, &answer(&vector(&[("a", "NaN")])), None).result,
            expected
        );
    }
    let r = judge(&check(Some(0.05), None), &answer(&vector(&[])), None);
    assert_eq!(
        r.detail,
        "the query returned no data (on_no_data = inconclusive)"
    );
    // NaN beside numbers: the numbers are judged.
    let r = judge(
        &check(Some(0.05), None),
        &answer(&vector(&[("a", "NaN"), ("b", "0.5")])),
        None,
    );
    assert_eq!(r.result, Verdict::Fail);
}

#[test]
fn relative_thresholds_compare_with_the_baseline_of_each_series() {
    let mut c = check(None, None);
    c.max_increase = Some(2.0);
    let base = vec![
        Sample {
            labels: [("pod".to_owned(), "a".to_owned())].into(),
            value: 0.1,
        },
        Sample {
            labels: [("pod".to_owned(), "b".to_owned())].into(),
            value: 0.5,
        },
    ];
    let r = judge(
        &c,
        &answer(&vector(&[("a", "0.3"), ("b", "0.6")])),
        Some(&base),
    );
    assert_eq!(r.result, Verdict::Fail);
    assert_eq!(r.labels["pod"], "a");
    assert_eq!(r.detail, "0.3 > 2x the baseline 0.1 (1 of 2 series)");
    let r = judge(
        &c,
        &answer(&vector(&[("a", "0.15"), ("b", "0.6")])),
        Some(&base),
    );
    assert_eq!(r.result, Verdict::Pass);
    let r = judge(&c, &answer(&vector(&[("a", "0.15")])), None);
    assert_eq!(
        r.result,
        Verdict::Inconclusive,
        "no baseline yet: {}",
        r.detail
    );

    let mut d = check(None, None);
    d.min_decrease = Some(0.5);
    let one = vec![Sample {
        labels: Labels::new(),
        value: 100.0,
    }];
    assert_eq!(
        judge(
            &d,
            &answer(br#"{"status":"success","data":{"resultType":"scalar","result":[1,"40"]}}"#),
            Some(&one)
        )
        .result,
        Verdict::Fail
    );
    assert_eq!(
        judge(
            &d,
            &answer(br#"{"status":"success","data":{"resultType":"scalar","result":[1,"60"]}}"#),
            Some(&one)
        )
        .result,
        Verdict::Pass
    );
}

#[test]
fn a_bad_query_is_never_a_failure_even_with_on_error_fail() {
    let mut c = check(Some(1.0), None);
    c.on_error = OnError::Fail;
    let bad = QueryError::BadQuery {
        error_type: "bad_data".into(),
        message: "x".into(),
    };
    assert_eq!(judge_error(&c, &bad).result, Verdict::Inconclusive);
    assert_eq!(judge_error(&c, &QueryError::Timeout).result, Verdict::Fail);
    c.on_error = OnError::Inconclusive;
    assert_eq!(
        judge_error(&c, &QueryError::Unreachable("refused".into())).result,
        Verdict::Inconclusive
    );
}

#[test]
fn a_string_result_is_inconclusive() {
    let r = judge(
        &check(Some(1.0), None),
        &answer(br#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#),
        None,
    );
    assert_eq!(r.result, Verdict::Inconclusive);
}

/// A stand-in Prometheus that counts the requests it answers.
fn counting_server() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let _ = stream.read(&mut buf);
                std::thread::sleep(std::time::Duration::from_millis(50));
                let body =
                    r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (url, count)
}

#[tokio::test]
async fn identical_queries_in_one_slot_are_sent_once_and_the_next_slot_asks_again() {
    let (url, count) = counting_server();
    let config = PrometheusSource {
        url,
        timeout: Duration::from_secs(5),
        auth: HttpAuth::None,
        headers: Default::default(),
        ca_file: None,
    };
    let source = Source::new("default", &config, reqwest::Client::new());
    let c = Coalescer::default();
    let permits = tokio::sync::Semaphore::new(4);
    // A long slot, so that the first batch surely falls in one.
    let slot = Duration::from_secs(3600);
    let batch =
        (0..10).map(|_| c.query(&source, "up", None, Duration::from_secs(5), slot, &permits));
    let answers = futures_util::future::join_all(batch).await;
    assert!(answers.iter().all(|a| a.is_ok()));
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "ten concurrent identical queries, one request"
    );
    assert_eq!(c.counts(), (1, 9));
    c.query(
        &source,
        "other",
        None,
        Duration::from_secs(5),
        slot,
        &permits,
    )
    .await
    .unwrap();
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "a different query is its own request"
    );
    // A 1 ms slot is over by the next call: asked again.
    c.query(
        &source,
        "up",
        None,
        Duration::from_secs(5),
        Duration::from_millis(1),
        &permits,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    c.query(
        &source,
        "up",
        None,
        Duration::from_secs(5),
        Duration::from_millis(1),
        &permits,
    )
    .await
    .unwrap();
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 4);
}
