//! Stand-ins for the services notifications go to, strict where the real
//! ones are: a Slack-compatible incoming webhook that rejects what Slack
//! rejects, a webhook receiver that verifies the HMAC signature, and a real
//! SMTP server (aiosmtpd) with STARTTLS or implicit TLS and AUTH. Each can
//! be stopped and started again on the same port, as an outage would.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    pub answer: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

type Handler = dyn Fn(&[(String, String)], &[u8]) -> (u16, String) + Send + Sync;

/// A small HTTP/1.1 server on a fixed loopback port, answering every
/// request with what `handler` says; stopped (the port closed) on drop.
pub struct Server {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(port: u16, handler: Arc<Handler>) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver's port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopping) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let Some((headers, body)) = read_request(&mut stream) else {
                    continue;
                };
                let (status, answer) = handler(&headers, &body);
                seen.lock().unwrap().push(Received {
                    headers,
                    body,
                    status,
                    answer: answer.clone(),
                });
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Server {
            port,
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The requests answered with 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Header names and values, in order.
type Headers = Vec<(String, String)>;

fn read_request(stream: &mut std::net::TcpStream) -> Option<(Headers, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let headers: Vec<(String, String)> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some((headers, buf[end + 4..end + 4 + len].to_vec()));
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// What Slack answers to an incoming-webhook payload: `Ok(())` for
/// `200 ok`, otherwise the error string of its `400` answer.
pub fn slack_verdict(body: &[u8]) -> Result<(), &'static str> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "invalid_payload")?;
    let obj = v.as_object().ok_or("invalid_payload")?;
    let text = obj.get("text").and_then(Value::as_str).unwrap_or("");
    if text.trim().is_empty() {
        return Err("no_text");
    }
    if text.chars().count() > 40_000 {
        return Err("msg_too_long");
    }
    let Some(blocks) = obj.get("blocks") else {
        return Ok(());
    };
    let blocks = blocks.as_array().ok_or("invalid_blocks")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err("invalid_blocks");
    }
    let text_obj = |t: &Value, max: usize, plain_only: bool| -> Result<(), &'static str> {
        let kind = t["type"].as_str().ok_or("invalid_blocks")?;
        if kind != "plain_text" && (plain_only || kind != "mrkdwn") {
            return Err("invalid_blocks");
        }
        let s = t["text"].as_str().ok_or("invalid_blocks")?;
        let n = s.chars().count();
        if n == 0 || n > max {
            return Err("invalid_blocks");
        }
        Ok(())
    };
    for b in blocks {
        if b["block_id"].as_str().is_some_and(|id| id.len() > 255) {
            return Err("invalid_blocks");
        }
        match b["type"].as_str().ok_or("invalid_blocks")? {
            "header" => text_obj(&b["text"], 150, true)?,
            "section" => {
                let text = b.get("text");
                let fields = b.get("fields");
                if text.is_none() && fields.is_none() {
                    return Err("invalid_blocks");
                }
                if let Some(t) = text {
                    text_obj(t, 3000, false)?;
                }
                if let Some(f) = fields {
                    let f = f.as_array().ok_or("invalid_blocks")?;
                    if f.is_empty() || f.len() > 10 {
                        return Err("invalid_blocks");
                    }
                    for x in f {
                        text_obj(x, 2000, false)?;
                    }
                }
            }
            "context" => {
                let el = b["elements"].as_array().ok_or("invalid_blocks")?;
                if el.is_empty() || el.len() > 10 {
                    return Err("invalid_blocks");
                }
                for x in el {
                    text_obj(x, 3000, false)?;
                }
            }
            "divider" => {}
            _ => return Err("invalid_blocks"),
        }
    }
    Ok(())
}

/// A Slack-compatible incoming webhook on `port` (0: any).
pub fn slack(port: u16) -> Server {
    Server::start(
        port,
        Arc::new(|_, body| match slack_verdict(body) {
            Ok(()) => (200, "ok".into()),
            Err(e) => (400, e.into()),
        }),
    )
}

/// A webhook receiver that accepts only bodies signed with `key`.
pub fn webhook(port: u16, key: &'static str) -> Server {
    Server::start(
        port,
        Arc::new(move |headers, body| {
            let sig = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-rollbackd-signature"))
                .map(|(_, v)| v.clone());
            match sig.as_deref().and_then(|s| s.strip_prefix("sha256=")) {
                Some(hex) if verify_hmac(key.as_bytes(), body, hex) => (200, "{}".into()),
                Some(_) => (401, "bad signature".into()),
                None => (401, "no signature".into()),
            }
        }),
    )
}

fn verify_hmac(key: &[u8], body: &[u8], hex: &str) -> bool {
    let Some(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::verify(&key, body, &tag).is_ok()
}

/// A private CA and a certificate for `localhost` / 127.0.0.1 it signed,
/// in `dir`: `ca.pem`, `cert.pem`, `key.pem`.
pub fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed (.ci/run installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=rollbackd test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
}

const SMTP_SERVER: &str = r#"
import asyncio, os, ssl, sys, time
from aiosmtpd.smtp import SMTP, AuthResult

port, mode, user, password, cert, key, out = sys.argv[1:8]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        name = os.path.join(out, "%d.eml" % time.time_ns())
        with open(name + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(name + ".tmp", name)
        return "250 2.0.0 Message accepted for delivery"

def authenticate(server, session, envelope, mechanism, data):
    ok = data.login == user.encode() and data.password == password.encode()
    return AuthResult(success=ok, handled=False)

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)

def factory():
    if mode == "starttls":
        return SMTP(Handler(), tls_context=ctx, require_starttls=True,
                    authenticator=authenticate, auth_required=True)
    # Implicit TLS: the socket is TLS already, which aiosmtpd cannot see;
    # it would not offer AUTH while auth_require_tls is set.
    return SMTP(Handler(), authenticator=authenticate, auth_required=True,
                auth_require_tls=False)

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
loop.run_until_complete(loop.create_server(
    factory, "127.0.0.1", int(port), ssl=ctx if mode == "tls" else None))
loop.run_forever()
"#;

/// The interpreter that has Debian's `python3-aiosmtpd`.
const PYTHON: &str = "/usr/bin/python3";

/// A real SMTP server (aiosmtpd) on `port`, in `mode` `starttls` or `tls`,
/// requiring AUTH as `user`/`password`, writing each message it accepts to
/// `maildir` as a `.eml` file. Fails the test if aiosmtpd is missing.
pub struct Smtp {
    pub maildir: PathBuf,
    _peer: super::Peer,
}

impl Smtp {
    pub fn start(
        port: u16,
        mode: &str,
        user: &str,
        password: &str,
        certs: &Path,
        maildir: &Path,
    ) -> Smtp {
        let has = std::process::Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            has,
            "aiosmtpd is not installed for {PYTHON}: the email tests need a real SMTP server (apt-get install python3-aiosmtpd; .ci/run does)"
        );
        std::fs::create_dir_all(maildir).unwrap();
        let script = certs.join("smtp_server.py");
        std::fs::write(&script, SMTP_SERVER).unwrap();
        let peer = super::spawn_peer(
            PYTHON,
            &[
                script.display().to_string(),
                port.to_string(),
                mode.into(),
                user.into(),
                password.into(),
                certs.join("cert.pem").display().to_string(),
                certs.join("key.pem").display().to_string(),
                maildir.display().to_string(),
            ],
        );
        let up = super::wait_until(Duration::from_secs(15), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "the SMTP server did not start on port {port}");
        Smtp {
            maildir: maildir.to_path_buf(),
            _peer: peer,
        }
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<String> {
        messages(&self.maildir)
    }
}

pub fn messages(maildir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(maildir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

/// A header of a raw message (unfolded), case-insensitively.
pub fn mail_header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}
