//! `rollbackd demo`: the whole loop on a laptop, with no cluster and no
//! network. It starts the project's Kubernetes API simulator and the real
//! daemon in this process, with an embedded configuration; deploys a good
//! version, then one whose pods crash-loop; and narrates what rollbackd sees
//! and does, from the daemon's own `/status` and journal and the simulated
//! API server's changes, until the rollback is verified.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kubesim::Simulator;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Exit, Global};
use crate::clock::now_ms;
use crate::config::{self, LogFormat, Redactor};
use crate::telemetry::{Overrides, Telemetry};

const NAMESPACE: &str = "shop";
const NAME: &str = "web";
/// The whole story takes some 15 s; this bounds a broken one.
const LIMIT: Duration = Duration::from_secs(60);

const MAIN: &str = r#"# rollbackd demo: the main file
[daemon]
watches = ["watches.d"]
state_dir = "state"
listen = "127.0.0.1:LISTEN_PORT"
shutdown_timeout = "5s"

[kubernetes]
kubeconfig = "kubeconfig"     # the simulated cluster
request_timeout = "2s"

[notifiers.demo]
type = "webhook"              # printed by the demo as it arrives
url = "http://NOTIFY_ADDR/events"

[defaults]
notify = ["demo"]
"#;

const WATCH: &str = r#"# rollbackd demo: one watch
[[watch]]
name = "shop-web"
target = { kind = "deployment", namespace = "shop", name = "web" }
interval = "500ms"
failure_threshold = 3
arm_window = "10m"
cooldown = "10m"
rollout_timeout = "1m"
verify_for = "3s"

[[watch.health]]
url = "http://SIM_ADDR/app/shop/web/health"
timeout = "400ms"
"#;

/// Narration, with the time since the demo began.
struct Narrator {
    start: Instant,
}

impl Narrator {
    fn say(&self, what: &str) {
        let t = self.start.elapsed().as_secs_f64();
        println!("{t:>6.1}s  {what}");
    }

    fn detail(&self, what: &str) {
        println!("         {what}");
    }
}

pub fn demo(global: &Global) -> Exit {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rollbackd-demo")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Exit::Failure;
        }
    };
    let dir = match tempfile::Builder::new().prefix("rollbackd-demo-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot make a scratch directory: {e}");
            return Exit::Failure;
        }
    };
    let exit = runtime.block_on(story(global, dir.path()));
    // The daemon's tasks end with the runtime, before the scratch goes.
    runtime.shutdown_timeout(Duration::from_secs(2));
    exit
}

async fn story(global: &Global, dir: &Path) -> Exit {
    let n = Narrator {
        start: Instant::now(),
    };
    match tell(global, dir, &n).await {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("error: the demo failed: {e}");
            Exit::Failure
        }
    }
}

/// The webhook receiver: prints each notification as it arrives.
async fn receive_notifications(
    n_start: Instant,
) -> std::io::Result<(std::net::SocketAddr, tokio::sync::mpsc::Receiver<Value>)> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    let _ = tx.send(v).await;
                }
                "ok"
            }
        }),
    );
    let _ = n_start;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, rx))
}

async fn tell(global: &Global, dir: &Path, n: &Narrator) -> Result<Exit, String> {
    let sim = Simulator::start()
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let cluster = sim.cluster.clone();
    let mut changes = cluster.subscribe();
    cluster.create_deployment(NAMESPACE, NAME, "shop/web:1.0", 3, 3);
    n.say(&format!(
        "a simulated Kubernetes API server is up at http://{} (no cluster, no network)",
        sim.addr
    ));
    n.detail("deployment shop/web: 3 replicas of shop/web:1.0, progressDeadlineSeconds 3");

    let (notify_addr, mut notifications) = receive_notifications(n.start)
        .await
        .map_err(|e| format!("cannot start the notification receiver: {e}"))?;
    // Bound here and handed to the daemon: the port cannot be taken in
    // between.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on loopback: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::fs::create_dir(dir.join("watches.d")).map_err(|e| e.to_string())?;
    let write = |p: PathBuf, text: String| {
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write(dir.join("kubeconfig"), sim.kubeconfig())?;
    write(
        dir.join("rollbackd.toml"),
        MAIN.replace("LISTEN_PORT", &port.to_string())
            .replace("NOTIFY_ADDR", &notify_addr.to_string()),
    )?;
    write(
        dir.join("watches.d/shop-web.toml"),
        WATCH.replace("SIM_ADDR", &sim.addr.to_string()),
    )?;
    let cfg = config::load(&dir.join("rollbackd.toml")).map_err(|e| e.render())?;
    let redactor = Redactor::default();
    redactor.add(&cfg.secrets);
    // The story is told here; the daemon's own log shows only errors
    // unless asked for more (`--log-level info`).
    let overrides = Overrides {
        format: global.overrides().format.or(Some(LogFormat::Text)),
        level: global.log_level.clone().or(Some("error".into())),
    };
    let telemetry = Telemetry::init(LogFormat::Text, "error", overrides, redactor.clone())
        .map_err(|e| e.to_string())?;
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(crate::daemon::run(
        cfg,
        listener,
        stop.clone(),
        crate::daemon::Logging {
            telemetry,
            redactor,
        },
    ));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let ready = async {
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    if !ready.await {
        return Err("the daemon did not become ready".into());
    }
    n.say(&format!(
        "rollbackd is running (status at {base}/status), watching shop-web:"
    ));
    n.detail("every 500ms: GET /app/shop/web/health, and the built-in rollout check");
    n.detail("3 failing evaluations in a row within 10m of a rollout -> undo, as `kubectl rollout undo` would");

    let journal = dir.join("state/journal.jsonl");
    let mut tail = Tail {
        path: journal,
        seen: 0,
    };
    let mut story = Story::default();
    let set_image = |image: &str, cause: &str| {
        cluster
            .set_image_with_cause("deployment", NAMESPACE, NAME, image, Some(cause))
            .map(|_| ())
            .map_err(|e| e.message)
    };

    tokio::time::sleep(Duration::from_millis(700)).await;
    n.say("deploying shop/web:1.1 (a good version): kubectl set image deployment/web web=shop/web:1.1");
    set_image("shop/web:1.1", "deploy 1.1")?;
    story.phase = Act::Good;
    let deadline = Instant::now() + LIMIT;
    let mut next_deploy: Option<Instant> = None;
    let outcome = loop {
        if Instant::now() > deadline {
            break None;
        }
        // /status dates evaluations to the second: the evaluation counter
        // says when there is a new one, and when (to the poll) it was made.
        let evaluations = match http.get(format!("{base}/metrics")).send().await {
            Ok(r) => r.text().await.map(|t| evaluation_count(&t)).unwrap_or(0),
            Err(_) => 0,
        };
        if evaluations > story.evaluations
            && let Ok(r) = http.get(format!("{base}/status")).send().await
            && let Ok(v) = r.json::<Value>().await
        {
            story.evaluations = evaluations;
            story.status(n, &v["watches"][0]);
        }
        for line in tail.lines() {
            if let Some(outcome) = story.journal(n, &line) {
                story.finished = Some((outcome, now_ms()));
            }
        }
        while let Ok(ev) = changes.try_recv() {
            story.api_change(n, &ev);
        }
        while let Ok(v) = notifications.try_recv() {
            story.notification(n, &v);
        }
        if story.phase == Act::Good && story.good_passes >= 3 && next_deploy.is_none() {
            next_deploy = Some(Instant::now());
            n.say("deploying shop/web:1.2-bad (its pods crash-loop): kubectl set image deployment/web web=shop/web:1.2-bad");
            set_image("shop/web:1.2-bad", "deploy 1.2")?;
            story.phase = Act::Bad;
        }
        if let Some((outcome, _)) = story.finished.clone() {
            // Let the last notifications arrive.
            tokio::time::sleep(Duration::from_millis(500)).await;
            while let Ok(v) = notifications.try_recv() {
                story.notification(n, &v);
            }
            break Some(outcome);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let history = rollout_history(&cluster);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), daemon).await;
    println!();
    match outcome {
        Some(o) if o == "recovered" => {
            println!("The bad release was rolled back and verified.");
            println!("kubectl rollout history deployment/web -n shop now shows:\n{history}");
            if let (Some(fail), Some(patch), Some((_, done))) =
                (story.first_fail, story.patched, story.finished.as_ref())
            {
                println!(
                    "From the first failing evaluation to the undo request: {} ms; from the undo to \"recovered\": {} ms.",
                    patch.saturating_sub(fail),
                    done.saturating_sub(patch)
                );
                if let Some(decided) = story.decided {
                    println!(
                        "From the decision to the undo request (re-read, journal, undo): {} ms.",
                        patch.saturating_sub(decided)
                    );
                }
            }
            println!(
                "Run it for real: rollbackd check -c /etc/rollbackd/rollbackd.toml && rollbackd run"
            );
            Ok(Exit::Success)
        }
        Some(o) => {
            println!("The rollback ended as {o:?}, not recovered.");
            Ok(Exit::Failure)
        }
        None => {
            println!(
                "The demo did not finish within {}.",
                humantime::format_duration(LIMIT)
            );
            Ok(Exit::Failure)
        }
    }
}

/// The evaluations the daemon has made, from its metrics.
fn evaluation_count(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("rollbackd_evaluations_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `kubectl rollout history`, as the simulated cluster would print it.
fn rollout_history(cluster: &kubesim::Cluster) -> String {
    let (sets, _) = cluster.list("replicasets", NAMESPACE, Some("app=web"), None);
    let mut rows: Vec<(i64, String, String)> = sets
        .iter()
        .filter_map(|rs| {
            let a = &rs["metadata"]["annotations"];
            let rev = a["deployment.kubernetes.io/revision"]
                .as_str()?
                .parse()
                .ok()?;
            let cause = a["kubernetes.io/change-cause"]
                .as_str()
                .unwrap_or("<none>")
                .to_owned();
            let image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            Some((rev, cause, image))
        })
        .collect();
    rows.sort();
    let mut out = String::from("  REVISION  CHANGE-CAUSE    IMAGE\n");
    for (rev, cause, image) in rows {
        out.push_str(&format!("  {rev:<9} {cause:<15} {image}\n"));
    }
    out
}

/// Reads the journal's new lines.
struct Tail {
    path: PathBuf,
    seen: usize,
}

impl Tail {
    fn lines(&mut self) -> Vec<Value> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        let lines: Vec<Value> = text
            .lines()
            .skip(self.seen)
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        self.seen += lines.len();
        lines
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Act {
    #[default]
    Before,
    Good,
    Bad,
}

#[derive(Default)]
struct Story {
    phase: Act,
    evaluations: u64,
    good_passes: u32,
    first_fail: Option<u64>,
    decided: Option<u64>,
    patched: Option<u64>,
    finished: Option<(String, u64)>,
    last_image: Option<String>,
    /// The API server's view of the undo (image, mark), held until the
    /// daemon's journal has told of the undo: the journal is read every
    /// 100 ms, the API server's events arrive at once.
    patch_news: Option<(String, String)>,
    undo_told: bool,
}

impl Story {
    fn status(&mut self, n: &Narrator, w: &Value) {
        let e = &w["last_evaluation"];
        let result = e["result"].as_str().unwrap_or("");
        let checks: Vec<String> = e["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let detail = c["detail"].as_str().unwrap_or("");
                format!(
                    "{} {}{}",
                    c["name"].as_str().unwrap_or(""),
                    c["result"].as_str().unwrap_or(""),
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(" ({detail})")
                    }
                )
            })
            .collect();
        match self.phase {
            Act::Good if result == "pass" => self.good_passes += 1,
            Act::Bad if result == "fail" => {
                if self.first_fail.is_none() {
                    self.first_fail = Some(now_ms());
                }
                n.say(&format!(
                    "evaluation FAILED (streak {}/{}): {}",
                    w["streak"],
                    w["failure_threshold"],
                    checks.join("; ")
                ));
            }
            Act::Bad if self.finished.is_none() => {
                n.say(&format!("evaluation {result}: {}", checks.join("; ")));
            }
            _ => {}
        }
    }

    fn api_change(&mut self, n: &Narrator, ev: &kubesim::cluster::Event) {
        if ev.resource != "deployments" || ev.kind != "MODIFIED" {
            return;
        }
        let d = &ev.object;
        let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let mark = d["metadata"]["annotations"]["rollbackd.io/rollback"].as_str();
        if self.last_image.as_deref() != Some(image.as_str()) {
            if let (Some(m), Act::Bad, None) = (mark, self.phase, self.patched) {
                self.patched = Some(now_ms());
                self.patch_news = Some((image.clone(), m.to_owned()));
                self.tell_patch(n);
            }
            self.last_image = Some(image);
        }
    }

    fn tell_patch(&mut self, n: &Narrator) {
        if !self.undo_told {
            return;
        }
        if let Some((image, mark)) = self.patch_news.take() {
            n.say(&format!(
                "API server: deployment/web patched back to {image} by rollbackd"
            ));
            n.detail(&format!("rollbackd.io/rollback = {mark}"));
        }
    }

    fn notification(&self, n: &Narrator, v: &Value) {
        n.say(&format!(
            "notification (webhook): {} {}{}",
            v["event"].as_str().unwrap_or("?"),
            v["watch"].as_str().unwrap_or(""),
            v["outcome"]
                .as_str()
                .map(|o| format!(" -> {o}"))
                .unwrap_or_default()
        ));
        // The incident report travels with the final notification.
        if v["event"] == "rollback_finished"
            && let Some(report) = v["report"]["markdown"].as_str()
        {
            n.detail("incident report (as emailed, and kept in the state directory's reports/):");
            for line in report.lines() {
                n.detail(&format!("| {line}"));
            }
        }
    }

    /// Narrates a journal line; returns the outcome of a finished rollback.
    fn journal(&mut self, n: &Narrator, e: &Value) -> Option<String> {
        let rev = e["revision"]["id"].as_str().unwrap_or("?");
        let reason = e["reason"].as_str().unwrap_or("");
        match e["event"].as_str()? {
            "armed" => n.say(&format!(
                "revision {rev} rolled out: the watch is armed (a rollback is allowed for 10m)"
            )),
            "revision_observed" => n.say(&format!(
                "revision {rev} is a rollback (a template that came back): it never arms"
            )),
            "decided" => {
                self.decided = e["ts"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .and_then(|t| u64::try_from(t.as_millisecond()).ok());
                n.say(&format!(
                    "threshold reached: re-reading deployment/web before acting ({reason})"
                ));
            }
            "rollback_started" => n.say(&format!(
                "rollback started: undoing revision {} (journaled first)",
                e["from_revision"].as_str().unwrap_or("?")
            )),
            "undo_patch" => {
                let to = e["to_images"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                n.say(&format!(
                    "undo: restoring revision {}'s template ({to}), as kubectl rollout undo would",
                    e["restored_revision"]
                ));
            }
            "rollback_applied" => {
                n.say(&format!("undo applied; the restored template is revision {}; waiting for the rollout as kubectl rollout status would", e["to_revision"].as_str().unwrap_or("?")));
                self.undo_told = true;
                self.tell_patch(n);
            }
            "verifying" => n.say("rollout complete; verifying that the checks recover (3s)"),
            "escalated" => n.say(&format!("escalated: {reason}")),
            "rollback_finished" => {
                let outcome = e["outcome"].as_str().unwrap_or("?").to_owned();
                n.say(&format!("rollback finished: {outcome}"));
                return Some(outcome);
            }
            _ => {}
        }
        None
    }
}
