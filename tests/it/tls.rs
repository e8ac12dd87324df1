//! Health checks over TLS: a private CA given as `ca_file` is trusted, and
//! the same endpoint without it fails on the certificate, as it must.

use std::time::Duration;

use crate::support::{self, Daemon, spawn_peer, wait_until};

#[test]
fn a_ca_file_makes_a_private_certificate_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A private CA, and a server certificate it signed.
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl is installed");
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
        d.join("leaf.ext"),
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
    std::fs::write(d.join("healthz"), "ok").unwrap();
    let port = support::free_port();
    let server = format!(
        "import http.server, ssl, os\nos.chdir({:?})\ns = http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler)\n\
         c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\nc.load_cert_chain('cert.pem', 'key.pem')\ns.socket = c.wrap_socket(s.socket, server_side=True)\ns.serve_forever()\n",
        d.display().to_string()
    );
    let _https = spawn_peer("python3", &["-c".into(), server]);
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));

    std::fs::write(
        d.join("rollbackd.toml"),
        format!(
            r#"[daemon]
state_dir = "state"
listen = "127.0.0.1:0"
[notifiers.log]
type = "webhook"
url = "http://127.0.0.1:9/"
[defaults]
notify = ["log"]
interval = "300ms"

[[watch]]
name = "trusted"
target = {{ kind = "command", rollback = ["/bin/true"] }}
[[watch.health]]
url = "https://localhost:{port}/healthz"
ca_file = "ca.pem"
body_contains = "ok"

[[watch]]
name = "untrusted"
target = {{ kind = "command", rollback = ["/bin/true"] }}
[[watch.health]]
url = "https://localhost:{port}/healthz"
"#
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&d.join("rollbackd.toml"), &[]);
    let result = |name: &str| {
        let s = daemon.status();
        let w = s["watches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .unwrap()
            .clone();
        w["last_evaluation"]["checks"][0].clone()
    };
    assert!(
        wait_until(Duration::from_secs(10), || result("trusted")["result"]
            == "pass"
            && result("untrusted")["result"] == "fail"),
        "trusted: {}\nuntrusted: {}",
        result("trusted"),
        result("untrusted")
    );
    let detail = result("untrusted")["detail"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(
        detail.contains("certificate")
            || detail.contains("unknownissuer")
            || detail.contains("invalid peer"),
        "{detail}"
    );
}
