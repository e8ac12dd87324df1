//! Load benchmark: N watches (default 2,000), each with one HTTP health
//! check and one Prometheus check, at a 10 s interval, against a local
//! health server and a real Prometheus. Runs twice, with every watch asking
//! the same query (coalesced) and with a distinct query per watch, and
//! reports per run: evaluation lag p50/p99 (from the daemon's histogram),
//! daemon CPU (% of one core) and resident memory, and Prometheus requests
//! per interval.
//!
//!     cargo bench --bench load -- [--watches N] [--interval SECS] [--intervals K]
//!
//! `cargo test` builds this file but runs nothing: it is a benchmark.

// The integration tests' helpers; the benchmark needs only a few of them.
#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use support::{Daemon, Exporter, HealthServer, Prometheus, wait_until};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The bucket bound under which `q` of the observations fall.
fn quantile(metrics: &str, name: &str, q: f64) -> String {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for l in metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
    {
        let le = l
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("");
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        let n: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        buckets.push((le, n));
    }
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    match buckets.iter().find(|(_, n)| *n >= total * q) {
        Some((le, _)) if le.is_finite() => format!("<= {:.1} ms", le * 1000.0),
        _ => "> 60 s".into(),
    }
}

fn run(
    mode: &str,
    watches: u64,
    interval: u64,
    intervals: u64,
    prometheus: &Prometheus,
    health: &HealthServer,
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("watches.d")).unwrap();
    std::fs::write(
        dir.path().join("rollbackd.toml"),
        format!(
            "[daemon]\nwatches = [\"watches.d\"]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:0\"\nlog_level = \"info\"\n\
             [notifiers.log]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n[defaults]\nnotify = [\"log\"]\ninterval = \"{interval}s\"\n\
             [prometheus.default]\nurl = \"{}\"\n",
            prometheus.url()
        ),
    )
    .unwrap();
    let mut text = String::new();
    for i in 0..watches {
        let query = match mode {
            "coalesced" => "sum(rate(http_requests_total{status=\"500\"}[1m])) / sum(rate(http_requests_total[1m]))".to_owned(),
            _ => format!("sum(rate(http_requests_total{{status=\"500\"}}[1m])) / sum(rate(http_requests_total[1m])) + 0 * {i}"),
        };
        text.push_str(&format!(
            "[[watch]]\nname = \"w{i}\"\ntarget = {{ kind = \"command\", rollback = [\"/bin/true\"] }}\n\
             [[watch.health]]\nurl = \"{}\"\ntimeout = \"2s\"\n[[watch.prometheus]]\nname = \"errors\"\nquery = '{query}'\nmax = 0.05\n",
            health.url()
        ));
    }
    std::fs::write(dir.path().join("watches.d/load.toml"), text).unwrap();
    let started = Instant::now();
    let d = Daemon::start(&dir.path().join("rollbackd.toml"), &[]);
    let ready = started.elapsed();
    let pid = d.pid();
    // One interval of warm-up: every watch has run once.
    std::thread::sleep(Duration::from_secs(interval));
    let q0 = d
        .metric("rollbackd_prometheus_queries_total")
        .unwrap_or(0.0);
    let e0 = d
        .metric("rollbackd_evaluations_total{result=\"pass\"}")
        .unwrap_or(0.0)
        + d.metric("rollbackd_evaluations_total{result=\"inconclusive\"}")
            .unwrap_or(0.0)
        + d.metric("rollbackd_evaluations_total{result=\"fail\"}")
            .unwrap_or(0.0);
    let c0 = cpu_seconds(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(interval * intervals));
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(pid) - c0) / wall * 100.0;
    let q1 = d
        .metric("rollbackd_prometheus_queries_total")
        .unwrap_or(0.0);
    let e1 = d
        .metric("rollbackd_evaluations_total{result=\"pass\"}")
        .unwrap_or(0.0)
        + d.metric("rollbackd_evaluations_total{result=\"inconclusive\"}")
            .unwrap_or(0.0)
        + d.metric("rollbackd_evaluations_total{result=\"fail\"}")
            .unwrap_or(0.0);
    let (_, metrics) = d.get("/metrics");
    println!(
        "{mode:>10}: {watches} watches every {interval}s | start to ready {:.0} ms | evaluations/interval {:.0} | \
         Prometheus requests/interval {:.0} | lag p50 {} p99 {} | CPU {:.1}% of one core | RSS {:.1} MiB",
        ready.as_secs_f64() * 1000.0,
        (e1 - e0) / intervals as f64,
        (q1 - q0) / intervals as f64,
        quantile(&metrics, "rollbackd_evaluation_lag_seconds", 0.5),
        quantile(&metrics, "rollbackd_evaluation_lag_seconds", 0.99),
        cpu,
        rss_mib(pid),
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("load benchmark: run it with `cargo bench --bench load`");
        return;
    }
    let watches = arg("--watches", 2000);
    let interval = arg("--interval", 10);
    let intervals = arg("--intervals", 3);
    let health = HealthServer::start(|| 200);
    let exporter = Exporter::start(1, || false);
    let prometheus = Prometheus::start(&[("load", exporter.addr)]);
    assert!(wait_until(Duration::from_secs(40), || prometheus
        .value("sum(rate(http_requests_total[1m]))")
        .is_some()));
    println!(
        "machine: {} cores; {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("model name"))
            .unwrap_or("")
            .trim()
    );
    for mode in ["coalesced", "distinct"] {
        run(mode, watches, interval, intervals, &prometheus, &health);
    }
}
