//! `rediss://`: a real sidecar binary reads over TLS from a `redis-server` with `tls-port`,
//! trusting a private CA through `SSL_CERT_FILE` (rustls loads the system roots from there).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::ports::free_port;
use crate::harness::redis::RedisServer;
use crate::stack::{http, Stack};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 / localhost.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=rtconfig-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("san.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_reads_over_tls_with_a_private_ca() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let tls_port = free_port();
    let p = |f: &str| certs.path().join(f).display().to_string();
    let redis = RedisServer::start_with_args(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &p("server.crt"),
        "--tls-key-file",
        &p("server.key"),
        "--tls-ca-cert-file",
        &p("ca.crt"),
        "--tls-auth-clients",
        "no",
    ]);
    // The admin writes over plain TCP; the sidecar reads over TLS.
    let stack = Stack::start(&redis.url(), &[]).await;
    let v = stack.write(json!({"SITE_NAME": "over tls"})).await;
    let (listen, probe) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtconfig"))
        .args([
            "sidecar",
            "--namespace",
            "demo",
            "--schema-dir",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            "--redis-url",
            &format!("rediss://127.0.0.1:{tls_port}"),
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--probe-listen",
            &format!("127.0.0.1:{probe}"),
            "--resync-interval",
            "0.5",
        ])
        .env("SSL_CERT_FILE", p("ca.crt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sidecar binary starts");
    let client = http();
    let url = format!("http://127.0.0.1:{listen}/v1/configs/SITE_NAME");
    let body: Value = eventually(Duration::from_secs(15), "value read over TLS", || async {
        let v: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
        (v["source"] == json!("redis")).then_some(v)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(body["value"], json!("over tls"));
    assert_eq!(body["version"], json!(v));
    stack.stop().await;
}
