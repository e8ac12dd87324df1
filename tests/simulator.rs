//! The simulator's own surfaces beyond kubectl: the application side that
//! health checks and Prometheus read, and fault injection.

mod support;

use std::time::{Duration, Instant};

use rollbackd::sim::Simulator;
use support::{http_get, wait_until};

fn start() -> (Simulator, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(Simulator::start()).unwrap();
    (sim, rt)
}

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
