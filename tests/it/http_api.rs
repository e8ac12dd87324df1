//! The HTTP endpoint's POST side: the Alertmanager webhook's validation and
//! limits, bearer-token authentication, and the per-watch controls.

use std::time::Duration;

use crate::support::{self, Daemon, Scratch, http_post};

fn payload(status: &str) -> String {
    format!(
        r#"{{"version":"4","status":"{status}","receiver":"r","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"","alerts":[{{"status":"{status}","labels":{{"alertname":"Down","deployment":"web"}},"annotations":{{}},"startsAt":"2026-11-21T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f1"}}]}}"#
    )
}

#[test]
fn the_alertmanager_webhook_validates_and_limits_its_input() {
    let s = Scratch::new("");
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let d = Daemon::start(&s.main(), &[]);
    let addr = d.addr.unwrap();

    assert_eq!(
        http_post(addr, "/alertmanager", &payload("firing"), &[]),
        (200, "{\"firing\":1,\"resolved\":0}\n".into())
    );
    assert!(support::wait_until(Duration::from_secs(3), || d
        .metric("rollbackd_alerts_firing")
        == Some(1.0)));
    assert_eq!(
        http_post(addr, "/alertmanager", &payload("resolved"), &[]).0,
        200
    );

    let (code, body) = http_post(addr, "/alertmanager", "{\"version\":", &[]);
    assert_eq!(code, 400);
    assert!(body.contains("malformed JSON"), "{body}");
    let (code, body) = http_post(
        addr,
        "/alertmanager",
        "{\"version\":\"3\",\"alerts\":[]}",
        &[],
    );
    assert_eq!(code, 400);
    assert!(body.contains("unsupported payload version"), "{body}");
    let big = format!(
        "{{\"version\":\"4\",\"alerts\":[],\"pad\":\"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    assert_eq!(
        http_post(addr, "/alertmanager", &big, &[]).0,
        413,
        "bodies over 1 MiB are refused"
    );
    assert_eq!(
        http_post(addr, "/watches/a/pause", "", &[]).0,
        404,
        "no control endpoints without a token"
    );
}

#[test]
fn with_a_control_token_every_post_needs_it_and_watches_can_be_paused() {
    let s = Scratch::new("control_token_file = \"token\"");
    std::fs::write(s.path("token"), "s3cret-control-token\n").unwrap();
    s.write_watch("a.toml", &Scratch::command_watch("a"));
    let d = Daemon::start(&s.main(), &[]);
    let addr = d.addr.unwrap();
    let auth = [("Authorization", "Bearer s3cret-control-token")];

    assert_eq!(
        http_post(addr, "/alertmanager", &payload("firing"), &[]).0,
        401
    );
    assert_eq!(
        http_post(
            addr,
            "/alertmanager",
            &payload("firing"),
            &[("Authorization", "Bearer nope")]
        )
        .0,
        403
    );
    assert_eq!(
        http_post(addr, "/alertmanager", &payload("firing"), &auth).0,
        200
    );

    assert_eq!(http_post(addr, "/watches/a/pause", "", &[]).0, 401);
    assert_eq!(
        http_post(addr, "/watches/a/pause", "", &auth),
        (200, "{\"state\":\"paused\",\"watch\":\"a\"}\n".into())
    );
    assert_eq!(d.status()["watches"][0]["state"], "paused");
    let (code, _) = http_post(addr, "/watches/a/resume", "", &auth);
    assert_eq!(code, 200);
    assert_ne!(d.status()["watches"][0]["state"], "paused");
    assert_eq!(http_post(addr, "/watches/a/reset", "", &auth).0, 200);
    let (code, body) = http_post(addr, "/watches/nope/pause", "", &auth);
    assert_eq!(code, 404);
    assert!(body.contains("no watch named \\\"nope\\\""), "{body}");
    assert_eq!(http_post(addr, "/watches/a/explode", "", &auth).0, 404);
    let journal = support::events(&s.path("state"));
    assert!(
        journal.contains(&"paused".to_owned()) && journal.contains(&"resumed".to_owned()),
        "{journal:?}"
    );
}
