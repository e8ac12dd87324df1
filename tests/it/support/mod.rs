//! Drives the real `rollbackd` binary for end-to-end tests: starts it on a
//! free port, collects its JSON log lines, and talks HTTP to it.

pub mod receivers;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rollbackd");

/// The project's Kubernetes API simulator, served by a runtime of its own
/// that the caller keeps alive as long as the simulator.
pub fn simulator() -> (kubesim::Simulator, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(kubesim::Simulator::start()).unwrap();
    (sim, rt)
}

/// A `rollbackd run` process.
pub struct Daemon {
    child: Child,
    pub addr: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
}

/// A command for the binary with a clean, predictable environment.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("ROLLBACKD_CONFIG")
        .env_remove("ROLLBACKD_LOG_LEVEL")
        .env_remove("ROLLBACKD_LOG_FORMAT")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env("RUST_BACKTRACE", "0");
    cmd
}

impl Daemon {
    /// Starts `rollbackd run -c CONFIG` with JSON logs and waits until it
    /// says it started (or exited).
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = command(&["run", "-c", config.to_str().unwrap()]);
        cmd.env("ROLLBACKD_LOG_FORMAT", "json");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd)
    }

    pub fn spawn(mut cmd: Command) -> Daemon {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start rollbackd");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut d = Daemon {
            child,
            addr: None,
            logs,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(addr) = d
                .find_log("rollbackd started")
                .and_then(|l| field(&l, "addr"))
            {
                d.addr = Some(addr.parse().expect("addr field"));
                return d;
            }
            if d.child.try_wait().unwrap().is_some() {
                return d;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "rollbackd did not start in 20 s; logs:\n{}",
            d.logs().join("\n")
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn find_log(&self, needle: &str) -> Option<String> {
        self.logs().into_iter().find(|l| l.contains(needle))
    }

    pub fn count_logs(&self, needle: &str) -> usize {
        self.logs().iter().filter(|l| l.contains(needle)).count()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr.expect("daemon is listening"), path)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -s {sig} failed");
    }

    /// Waits for the process to exit, killing it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// A metric's value from `/metrics` (the first sample line starting with `series`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, body) = self.get("/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status is JSON")
    }

    pub fn watch_names(&self) -> Vec<String> {
        self.status()["watches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A string field of a JSON log line.
pub fn field(line: &str, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get(name).and_then(|f| f.as_str()).map(str::to_owned)
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a `Connection: close` response: the status code and the body.
fn read_response(mut s: TcpStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let code = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(s)
}

/// A scratch configuration: a main file, a `watches.d` directory and a state
/// directory, in a temporary directory removed at drop.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

pub const COMMAND_WATCH: &str = r#"
[[watch]]
name = "NAME"
target = { kind = "command", rollback = ["/bin/true"] }
[[watch.health]]
url = "http://127.0.0.1:9/health"
timeout = "1s"
"#;

impl Scratch {
    pub fn new(daemon_extra: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let s = Scratch { dir };
        std::fs::create_dir(s.path("watches.d")).unwrap();
        s.write_main(daemon_extra);
        s
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn main(&self) -> PathBuf {
        self.path("rollbackd.toml")
    }

    pub fn write_main(&self, daemon_extra: &str) {
        let text = format!(
            "[daemon]\nwatches = [\"watches.d\"]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:0\"\nshutdown_timeout = \"5s\"\n{daemon_extra}\n\n[defaults]\ninterval = \"1s\"\nnotify = [\"audit\"]\n\n[notifiers.audit]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/audit\"\n"
        );
        std::fs::write(self.main(), text).unwrap();
    }

    /// Writes a watch file atomically (write, then rename), as config
    /// management tools do.
    pub fn write_watch(&self, file: &str, text: &str) {
        let tmp = self.path(&format!("watches.d/.{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(&format!("watches.d/{file}"))).unwrap();
    }

    pub fn command_watch(name: &str) -> String {
        COMMAND_WATCH.replace("NAME", name)
    }
}

/// A tiny HTTP server for health endpoints: every request is answered with
/// the status `status()` returns at that moment, and counted.
pub struct HealthServer {
    pub addr: SocketAddr,
    pub hits: Arc<std::sync::atomic::AtomicU64>,
}

impl HealthServer {
    pub fn start(status: impl Fn() -> u16 + Send + Sync + 'static) -> HealthServer {
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = hits.clone();
        let addr = serve(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let code = status();
            (code, if code < 400 { "ok" } else { "failing" }.to_owned())
        });
        HealthServer { addr, hits }
    }

    pub fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }
}

/// The records of a state directory's journal.
pub fn journal(state_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state_dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn events(state_dir: &Path) -> Vec<String> {
    journal(state_dir)
        .iter()
        .map(|r| r["event"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// The first watch in the daemon's `/status`.
pub fn watch_status(d: &Daemon) -> serde_json::Value {
    d.status()["watches"][0].clone()
}

/// How many lines a file has (none if it does not exist): how many times
/// a command that appends a line to it ran.
pub fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

/// The `date +%s%N` stamps a command appended to a file, one a line, in
/// the clock of [`epoch_nanos`].
pub fn timestamps(path: &Path) -> Vec<u128> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Nanoseconds since the epoch, the same clock as `date +%s%N`.
pub fn epoch_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A free port on loopback (bound and released: good enough for peers that
/// cannot be told to pick their own).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a peer program that dies with the test process: a shell holds its
/// stdin, and when the test process exits, the pipe closes and the shell
/// kills the peer. No peer outlives its tests.
pub fn spawn_peer(program: &str, args: &[String]) -> Peer {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: the tests need the real one (.ci/run installs it with apt-get)"
    );
    Command::new("sh")
        .arg("-c")
        .arg("\"$@\" >/dev/null 2>&1 & p=$!; cat >/dev/null; kill $p 2>/dev/null; wait $p")
        .arg("peer")
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Peer)
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
}

/// A running peer; dropping it stops it.
pub struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        // Closing stdin makes the holding shell kill the peer.
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Percent-encodes a query string value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.1 POST of a JSON body; returns the status and the body.
pub fn http_post(
    addr: SocketAddr,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .unwrap();
    read_response(s)
}

/// An application that counts requests by status, exposed for Prometheus:
/// 100 good requests a second, plus `errors_per_tick` failed ones every
/// 100 ms while `bad()` holds.
pub struct Exporter {
    pub addr: SocketAddr,
}

impl Exporter {
    pub fn start(errors_per_tick: u64, bad: impl Fn() -> bool + Send + Sync + 'static) -> Exporter {
        use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (o, e) = (ok.clone(), errors.clone());
        std::thread::spawn(move || {
            loop {
                o.fetch_add(10, SeqCst);
                if bad() {
                    e.fetch_add(errors_per_tick, SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let server = serve(move || {
            let text = format!(
                "# TYPE http_requests_total counter\nhttp_requests_total{{status=\"200\"}} {}\nhttp_requests_total{{status=\"500\"}} {}\n",
                ok.load(SeqCst),
                errors.load(SeqCst)
            );
            (200, text)
        });
        Exporter { addr: server }
    }
}

/// Serves every request, on any path, with the status and body `answer`
/// gives at that moment.
fn serve(answer: impl Fn() -> (u16, String) + Send + Sync + 'static) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let (code, body) = answer();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

/// A real Prometheus scraping `targets` (name -> address) every second,
/// each target labelled `scenario="NAME"`.
pub struct Prometheus {
    pub addr: SocketAddr,
    _peer: Peer,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(targets: &[(&str, SocketAddr)]) -> Prometheus {
        let jobs: Vec<(&str, SocketAddr, &str)> =
            targets.iter().map(|(n, a)| (*n, *a, "/metrics")).collect();
        Self::scraping(&jobs)
    }

    /// Scrapes each (name, address, metrics path) as its own job.
    pub fn scraping(jobs: &[(&str, SocketAddr, &str)]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let mut config = String::from(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n",
        );
        for (i, (name, addr, path)) in jobs.iter().enumerate() {
            config.push_str(&format!(
                "  - job_name: app{i}\n    metrics_path: \"{path}\"\n    static_configs:\n      - targets: [\"{addr}\"]\n        labels: {{scenario: \"{name}\"}}\n"
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let port = free_port();
        let peer = spawn_peer(
            "prometheus",
            &[
                format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--storage.tsdb.retention.time=1h".into(),
                "--log.level=warn".into(),
            ],
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let ready = wait_until(Duration::from_secs(30), || {
            TcpStream::connect(addr).is_ok() && http_get(addr, "/-/ready").0 == 200
        });
        assert!(ready, "Prometheus did not become ready");
        Prometheus {
            addr,
            _peer: peer,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first value of an instant query, if any.
    pub fn value(&self, query: &str) -> Option<f64> {
        let (_, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", urlencode(query)),
        );
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

/// An HTTP server that records every request (head and body) and answers
/// each with `status` and `body`: a stand-in for what a test wants to see
/// sent, where the real peer cannot show it (its own credentials check).
pub struct Recorder {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub fn start(status: u16, body: &'static str) -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break;
                            }
                        }
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).into_owned());
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Recorder { addr, requests }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}
