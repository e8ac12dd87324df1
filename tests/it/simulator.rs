//! The simulator's own surfaces beyond kubectl: the application side that
//! health checks and Prometheus read, fault injection, and what kube-rs
//! clients rely on (a watcher across dropped watches, leader election's
//! Lease calls, 410 Gone and bookmarks).

use std::time::{Duration, Instant};

use kubesim::Simulator;

use crate::support::{http_get, simulator as start, wait_until};

#[test]
fn the_application_side_follows_the_image_that_serves_traffic() {
    let (sim, _rt) = start();
    sim.cluster
        .create_deployment("shop", "web", "img:v1", 2, 600);
    assert!(wait_until(Duration::from_secs(5), || http_get(
        sim.addr,
        "/app/shop/web/health"
    )
    .0 == 200));
    assert_eq!(http_get(sim.addr, "/app/shop/web/health").1, "ok img:v1\n");
    let body =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"img:degraded"}]}}}}"#;
    sim.cluster
        .patch_deployment(
            "shop",
            "web",
            "application/strategic-merge-patch+json",
            body.as_bytes(),
            false,
        )
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || http_get(
        sim.addr,
        "/app/shop/web/health"
    )
    .1
    .contains("degraded")));
    let errors = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.contains("status=\"500\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let first = errors(&http_get(sim.addr, "/app/shop/web/metrics").1);
    std::thread::sleep(Duration::from_millis(300));
    let (code, metrics) = http_get(sim.addr, "/app/shop/web/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics
            .contains("http_requests_total{namespace=\"shop\",deployment=\"web\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        errors(&metrics) > first,
        "degraded pods answer with errors: {metrics}"
    );
    assert_eq!(
        http_get(sim.addr, "/app/shop/web/health").0,
        200,
        "ready: health checks pass, only the metric shows it"
    );
}

#[test]
fn faults_are_injected_as_configured() {
    let (sim, _rt) = start();
    sim.cluster
        .create_deployment("shop", "web", "img:v1", 1, 600);
    let path = "/apis/apps/v1/namespaces/shop/deployments/web";
    sim.cluster.faults.lock().unwrap().unavailable = 1;
    let (code, body) = http_get(sim.addr, path);
    assert_eq!(code, 503);
    assert!(body.contains("\"reason\":\"ServiceUnavailable\""), "{body}");
    assert_eq!(http_get(sim.addr, path).0, 200, "one fault, then healthy");
    sim.cluster.faults.lock().unwrap().throttled = 1;
    assert_eq!(http_get(sim.addr, path).0, 429);
    sim.cluster.faults.lock().unwrap().latency = Duration::from_millis(300);
    let t = Instant::now();
    assert_eq!(http_get(sim.addr, path).0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        http_get(sim.addr, "/app/shop/web/metrics").0,
        200,
        "workloads are not faulted"
    );
}

fn client(sim: &Simulator) -> kube::Client {
    let url = format!("http://{}", sim.addr).parse().unwrap();
    kube::Client::try_from(kube::Config::new(url)).unwrap()
}

/// A kube-runtime watcher relists and rewatches when its watch is dropped,
/// and sees every later change.
#[test]
fn a_kube_watcher_follows_deployments_across_dropped_watches() {
    use futures_util::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::runtime::{WatchStreamExt, watcher};

    let (sim, rt) = start();
    let _in_runtime = rt.enter();
    sim.cluster.faults.lock().unwrap().watch_lifetime = Some(Duration::from_millis(200));
    let api: kube::Api<Deployment> = kube::Api::namespaced(client(&sim), "shop");
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        // With backoff, as the daemon's observer: without it a watcher
        // whose client is gone (the runtime shutting down at the end of
        // the test) fails at once, forever, and never yields.
        let mut stream = watcher(api, watcher::Config::default())
            .backoff(rollbackd::rollback::kubernetes::Backoff::watches())
            .applied_objects()
            .boxed();
        while let Some(d) = stream.next().await {
            let Ok(d) = d else { continue };
            let image = d
                .spec
                .and_then(|s| s.template.spec)
                .map(|s| s.containers[0].image.clone());
            let revision = d
                .metadata
                .annotations
                .and_then(|a| a.get("deployment.kubernetes.io/revision").cloned());
            if tx.send((image.flatten(), revision)).is_err() {
                return;
            }
        }
    });
    sim.cluster
        .create_deployment("shop", "web", "img:v1", 2, 600);
    let seen = |want: &str, revision: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(got) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if got == (Some(want.to_owned()), Some(revision.to_owned())) {
                return true;
            }
        }
        false
    };
    assert!(seen("img:v1", "1"));
    // Several watches end meanwhile; the watcher resumes from the last
    // resourceVersion it saw (or relists).
    std::thread::sleep(Duration::from_millis(700));
    sim.cluster
        .set_image("deployment", "shop", "web", "img:v2")
        .unwrap();
    assert!(
        seen("img:v2", "2"),
        "a change after dropped watches arrives"
    );
    std::thread::sleep(Duration::from_millis(450));
    sim.cluster
        .set_image("deployment", "shop", "web", "img:v3")
        .unwrap();
    assert!(seen("img:v3", "3"));
}

/// Leader election's calls: GET (404), POST, PUT with the resourceVersion
/// read, and a conflict for whoever writes with a stale one.
#[test]
fn leases_answer_leader_election_as_an_api_server_does() {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use kube::api::PostParams;

    let (sim, rt) = start();
    let _in_runtime = rt.enter();
    let api: kube::Api<Lease> = kube::Api::namespaced(client(&sim), "ops");
    rt.block_on(async {
        match api.get("rollbackd").await {
            Err(kube::Error::Api(s)) => assert!(s.is_not_found(), "{s:?}"),
            other => panic!("{other:?}"),
        }
        let mut lease = Lease::default();
        lease.metadata.name = Some("rollbackd".into());
        lease.spec = Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        });
        let created = api.create(&PostParams::default(), &lease).await.unwrap();
        match api.create(&PostParams::default(), &lease).await {
            Err(kube::Error::Api(s)) => assert!(s.is_already_exists(), "{s:?}"),
            other => panic!("{other:?}"),
        }
        let mut renewed = created.clone();
        renewed.spec.as_mut().unwrap().holder_identity = Some("b".into());
        let after = api
            .replace("rollbackd", &PostParams::default(), &renewed)
            .await
            .unwrap();
        assert_eq!(after.spec.unwrap().holder_identity.as_deref(), Some("b"));
        assert_ne!(
            after.metadata.resource_version,
            created.metadata.resource_version
        );
        match api
            .replace("rollbackd", &PostParams::default(), &renewed)
            .await
        {
            Err(kube::Error::Api(s)) => assert!(s.is_conflict(), "{s:?}"),
            other => panic!("{other:?}"),
        }
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let mut other = lease.clone();
        other.metadata.name = Some("other".into());
        api.create(&dry, &other).await.unwrap();
        assert!(
            api.get_opt("other").await.unwrap().is_none(),
            "a dry run stores nothing"
        );
    });
}

#[test]
fn a_watch_from_a_forgotten_resource_version_is_gone_and_bookmarks_are_sent() {
    let (sim, _rt) = start();
    sim.cluster
        .create_deployment("shop", "web", "img:v1", 1, 600);
    let path = "/apis/apps/v1/namespaces/shop/deployments?watch=1&timeoutSeconds=2&allowWatchBookmarks=true";
    let rv = sim.cluster.resource_version();
    let (code, body) = http_get(sim.addr, &format!("{path}&resourceVersion={rv}"));
    assert_eq!(code, 200);
    assert!(body.contains(r#""type":"BOOKMARK""#), "{body}");
    sim.cluster.expire_watch_history("shop", "web").unwrap();
    let (code, body) = http_get(sim.addr, &format!("{path}&resourceVersion={rv}"));
    assert_eq!(code, 200, "the watch opens, then says why it cannot go on");
    assert!(
        body.starts_with(r#"{"object":{"apiVersion":"v1","code":410"#),
        "{body}"
    );
    assert!(body.contains(r#""reason":"Expired""#), "{body}");
}
