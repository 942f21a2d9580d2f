//! Holes a black-box attack found, each with its regression test (issue 8, item 13), and the
//! hardening of the admin (item 11): the bearer scheme, the `Host` check against DNS
//! rebinding, secrets whose equality must not leak, the security headers, and TLS.

use std::time::Duration;

use reqwest::header::HOST;
use serde_json::{json, Value};

use crate::support::{send, Dev, Resp};

const TOKEN: &str = "0123456789abcdef-token";

#[tokio::test]
async fn a_lower_or_upper_case_bearer_scheme_is_accepted() {
    let dev = Dev::start_with(None, |s| s.admin_token = Some(TOKEN.into())).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = send(
            dev.client
                .get(dev.ns_url("/configs"))
                .header("authorization", format!("{scheme} {TOKEN}")),
        )
        .await;
        assert_eq!(resp.status, 200, "{scheme}: {}", resp.text());
    }
    for bad in [
        format!("Basic {TOKEN}"),
        format!("Bearer {TOKEN} extra"),
        format!("Bearer{TOKEN}"),
        "Bearer".to_owned(),
    ] {
        let resp = send(
            dev.client
                .get(dev.ns_url("/configs"))
                .header("authorization", &bad),
        )
        .await;
        resp.expect_error(401, "unauthorized");
    }
}

/// `GET url` with `Host: host`.
async fn get_host(dev: &Dev, url: &str, host: &str) -> Resp {
    send(dev.client.get(url).header(HOST, host)).await
}

#[tokio::test]
async fn a_dns_rebinding_host_is_refused_by_the_admin_the_read_api_and_the_probes() {
    let dev = Dev::start_with_secret().await;
    dev.write(json!({"DB_PASSWORD": "hunter2"})).await;
    let evil = "rebind.evil.example";
    let urls = [
        dev.ns_url("/configs"),
        format!("{}/healthz", dev.admin),
        dev.read_url("/v1/configs/DB_PASSWORD"),
        dev.read_url("/v1/configs/DB_PASSWORD?format=raw"),
        dev.read_url("/v1/configs"),
        dev.read_url("/"),
        format!("{}/metrics", dev.probe),
    ];
    for url in &urls {
        let resp = get_host(&dev, url, &format!("{evil}:80")).await;
        let error = resp.expect_error(421, "host_not_allowed");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("--allowed-host")),
            "{url}: {error}"
        );
        assert!(!resp.text().contains("hunter2"), "{url} leaks the secret");
    }
    // The admin's 421 carries a request id and the security headers, like every admin error.
    let resp = get_host(&dev, &dev.ns_url("/configs"), evil).await;
    assert!(resp.json()["error"]["request_id"].is_string());
    assert_eq!(resp.header("x-frame-options"), Some("DENY"));
    // The names a developer uses keep working, on any port.
    for host in ["localhost", "localhost:9", "127.0.0.1", "LOCALHOST:1234"] {
        for url in &urls {
            assert_eq!(get_host(&dev, url, host).await.status, 200, "{url} {host}");
        }
    }
    let raw = get_host(
        &dev,
        &dev.read_url("/v1/configs/DB_PASSWORD?format=raw"),
        "localhost",
    )
    .await
    .expect_status(200);
    assert_eq!(raw.text(), "hunter2");
}

#[tokio::test]
async fn allowed_hosts_extend_what_a_listener_answers() {
    let dev = Dev::start_with(None, |s| {
        s.allowed_hosts = vec!["config.example.com".into(), "10.9.9.9".into()]
    })
    .await;
    for url in [
        dev.ns_url("/configs"),
        dev.read_url("/v1/configs/SITE_NAME"),
        format!("{}/readyz", dev.probe),
    ] {
        for host in ["config.example.com", "Config.Example.COM:8443", "10.9.9.9"] {
            assert_eq!(get_host(&dev, &url, host).await.status, 200, "{url} {host}");
        }
        get_host(&dev, &url, "other.example.com")
            .await
            .expect_error(421, "host_not_allowed");
    }
}

#[tokio::test]
async fn a_secret_written_with_its_own_value_is_still_a_change() {
    let dev = Dev::start_with_secret().await;
    let first = dev
        .patch(json!({"DB_PASSWORD": "hunter2"}))
        .await
        .expect_status(200);
    assert_eq!(first.json()["version"], 1);
    // The right guess and a wrong one get answers of the same shape: a new version, one change.
    for (guess, version) in [("hunter2", 2), ("hunter3", 3), ("hunter3", 4)] {
        let body = dev
            .patch(json!({"DB_PASSWORD": guess}))
            .await
            .expect_status(200)
            .json();
        assert_eq!(body["version"], version, "{guess}: {body}");
        let changes = body["changes"].as_array().expect("changes");
        assert_eq!(changes.len(), 1, "{guess}: {body}");
        assert_eq!(changes[0]["key"], "DB_PASSWORD");
        assert_eq!(changes[0]["new"]["masked"], true);
        assert!(!body.to_string().contains(guess));
    }
    // PUT is the same write path.
    let put = send(
        dev.client
            .put(dev.ns_url("/configs/DB_PASSWORD"))
            .json(&json!({"value": "hunter3"})),
    )
    .await
    .expect_status(200)
    .json();
    assert_eq!(put["version"], 5);
    assert_eq!(put["changes"].as_array().map(Vec::len), Some(1));
    // Not for ordinary keys: the same value is still no change.
    dev.write(json!({"SITE_NAME": "Acme"})).await;
    let same = dev
        .patch(json!({"SITE_NAME": "Acme"}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(same["changes"], json!([]));
    assert_eq!(same["version"], 6);
    let history = dev.history("?key=DB_PASSWORD").await;
    assert_eq!(history["changesets"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn a_dry_run_import_says_a_secret_will_be_replaced_whether_or_not_it_is_equal() {
    let dev = Dev::start_with_secret().await;
    dev.write(json!({"DB_PASSWORD": "hunter2", "SITE_NAME": "Acme"}))
        .await;
    let dry_run = |values: Value| {
        let dev = &dev;
        async move {
            send(
                dev.client
                    .post(dev.ns_url("/import?dry_run=true"))
                    .json(&json!({ "values": values })),
            )
            .await
            .expect_status(200)
            .json()
        }
    };
    let right = dry_run(json!({"DB_PASSWORD": "hunter2"})).await;
    let wrong = dry_run(json!({"DB_PASSWORD": "guess1"})).await;
    assert_eq!(right, wrong, "the right guess and a wrong one look alike");
    let entry = &right["changes"][0];
    assert_eq!(
        right["changes"].as_array().map(Vec::len),
        Some(1),
        "{right}"
    );
    assert_eq!(entry["key"], "DB_PASSWORD");
    assert_eq!(entry["secret"], true);
    assert_eq!(entry["action"], "replace");
    assert!(
        entry.get("new").is_none(),
        "no fingerprint of the new value: {entry}"
    );
    assert_eq!(entry["old"]["masked"], true);
    // Ordinary keys keep their diff: no entry when equal, old and new when not.
    let plain = dry_run(json!({"SITE_NAME": "Acme"})).await;
    assert_eq!(plain["changes"], json!([]));
    let plain = dry_run(json!({"SITE_NAME": "Other"})).await;
    assert_eq!(plain["changes"][0]["new"], "Other");
    assert_eq!(dev.admin_version().await, 1, "a dry run writes nothing");
}

/// Asserts the headers every admin response carries; `tls`: also HSTS.
#[track_caller]
fn assert_security_headers(resp: &Resp, what: &str, tls: bool) {
    for (name, want) in [
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(resp.header(name), Some(want), "{what}: {name}");
    }
    let hsts = resp.header("strict-transport-security");
    if tls {
        assert_eq!(hsts, Some("max-age=31536000"), "{what}: HSTS over TLS");
    } else {
        assert_eq!(hsts, None, "{what}: no HSTS over plain HTTP");
    }
}

#[tokio::test]
async fn every_admin_response_carries_the_security_headers() {
    let dev = Dev::start_with(None, |s| s.admin_token = Some(TOKEN.into())).await;
    let c = &dev.client;
    let cases = [
        (
            "api 200",
            c.get(dev.ns_url("/configs")).bearer_auth(TOKEN),
            200,
        ),
        ("api 401", dev.anon.get(dev.ns_url("/configs")), 401),
        (
            "api 404",
            c.get(dev.api_url("/namespaces/nope/configs"))
                .bearer_auth(TOKEN),
            404,
        ),
        (
            "api 405",
            c.post(dev.ns_url("/configs")).bearer_auth(TOKEN),
            405,
        ),
        ("unknown path", c.get(format!("{}/nope", dev.admin)), 404),
        ("openapi", c.get(dev.api_url("/openapi.yaml")), 200),
        ("healthz", c.get(format!("{}/healthz", dev.admin)), 200),
        ("readyz", c.get(format!("{}/readyz", dev.admin)), 200),
        ("metrics", c.get(format!("{}/metrics", dev.admin)), 200),
        (
            "421",
            c.get(format!("{}/healthz", dev.admin))
                .header(HOST, "evil.example"),
            421,
        ),
    ];
    for (what, rb, status) in cases {
        let resp = send(rb).await;
        assert_eq!(resp.status, status, "{what}: {}", resp.text());
        assert_security_headers(&resp, what, false);
    }
    // The web UI's pages (here the sign-in page at `/`) carry the page CSP (scripts and styles
    // from this origin, never inline) and `same-origin` referrers, so a form post sends its
    // `Origin`; the other headers are the API's.
    let page = send(c.get(format!("{}/", dev.admin))).await;
    assert_eq!(page.status, 200, "index: {}", page.text());
    for (name, want) in [
        ("content-security-policy", rtconfig::ui::PAGE_CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(page.header(name), Some(want), "index: {name}");
    }
    assert_eq!(page.header("strict-transport-security"), None);
}

/// A test CA and a certificate it signed for `localhost` and `127.0.0.1`, written as PEM files.
struct TestCerts {
    ca_pem: String,
    dir: tempfile::TempDir,
}

impl TestCerts {
    fn new() -> TestCerts {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rtconfig test CA");
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("leaf params")
            .signed_by(&leaf_key, &ca)
            .expect("leaf");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).expect("cert");
        std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).expect("key");
        TestCerts {
            ca_pem: ca.pem(),
            dir,
        }
    }

    fn files(&self) -> rtconfig::http::tls::TlsFiles {
        rtconfig::http::tls::TlsFiles {
            cert: self.dir.path().join("cert.pem"),
            key: self.dir.path().join("key.pem"),
        }
    }

    /// A client that trusts only the test CA.
    fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca pem");
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }
}

#[tokio::test]
async fn the_admin_serves_https_with_hsts_and_tells_plain_http_to_use_https() {
    let certs = TestCerts::new();
    let dev = Dev::start_with(None, |s| {
        s.tls = Some(certs.files());
        s.admin_token = Some(TOKEN.into());
    })
    .await;
    let https = dev.admin.replace("http://", "https://");
    let tls_client = certs.client();
    let resp = send(
        tls_client
            .get(format!("{https}/api/v1/namespaces"))
            .bearer_auth(TOKEN),
    )
    .await
    .expect_status(200);
    assert_security_headers(&resp, "https api", true);
    assert!(resp.json()["namespaces"].is_array());
    // The name in the certificate works as well as the IP; a write goes through.
    let port = https.rsplit(':').next().expect("port");
    let write = send(
        tls_client
            .patch(format!(
                "https://localhost:{port}/api/v1/namespaces/demo/configs"
            ))
            .bearer_auth(TOKEN)
            .json(&json!({"changes": {"SITE_NAME": "over TLS"}})),
    )
    .await
    .expect_status(200);
    assert_security_headers(&write, "https write", true);
    assert_eq!(dev.sidecar_values().await["SITE_NAME"], "over TLS");
    // Errors over TLS carry HSTS too.
    let unauthorized = send(tls_client.get(format!("{https}/api/v1/namespaces"))).await;
    unauthorized.expect_error(401, "unauthorized");
    assert_security_headers(&unauthorized, "https 401", true);

    // Plain HTTP to the TLS port: a clear 400, then the connection is closed.
    let plain = send(dev.client.get(format!("{}/healthz", dev.admin))).await;
    plain.expect_error(400, "tls_required");
    assert!(plain.text().contains("https://"), "{}", plain.text());
    // A client that does not trust the certificate cannot connect.
    let untrusting = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .build()
        .expect("client");
    assert!(untrusting
        .get(format!("{https}/healthz"))
        .send()
        .await
        .is_err());
    // The TLS admin still answers after the failed handshakes.
    send(tls_client.get(format!("{https}/healthz")))
        .await
        .expect_status(200);
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start_naming_the_flag_and_the_file() {
    let certs = TestCerts::new();
    let files = certs.files();
    let junk = certs.dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("junk");
    let other_key = certs.dir.path().join("other-key.pem");
    std::fs::write(
        &other_key,
        rcgen::KeyPair::generate().expect("key").serialize_pem(),
    )
    .expect("other key");
    let missing = certs.dir.path().join("missing.pem");
    let cases = [
        (
            missing.clone(),
            files.key.clone(),
            "--tls-cert",
            "no such file",
        ),
        (
            files.cert.clone(),
            missing.clone(),
            "--tls-key",
            "no such file",
        ),
        (
            junk.clone(),
            files.key.clone(),
            "--tls-cert",
            "holds no certificate",
        ),
        (
            files.cert.clone(),
            junk.clone(),
            "--tls-key",
            "holds no private key",
        ),
        (
            files.cert.clone(),
            other_key.clone(),
            "--tls-key",
            "does not belong",
        ),
    ];
    for (cert, key, flag, why) in cases {
        let data = tempfile::tempdir().expect("tempdir");
        let mut s = rtconfig::app::DevSettings::for_tests(
            crate::support::demo_schema_dir(),
            data.path().join("d"),
        );
        s.tls = Some(rtconfig::http::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
        let err = rtconfig::app::start_dev(s).await.err().expect("refused");
        let text = rtconfig::telemetry::Chain(&err).to_string();
        assert_eq!(err.exit_code(), 64, "{text}");
        assert!(text.contains(flag), "{text}");
        assert!(text.contains(why), "{text}");
        let named = if flag == "--tls-cert" && why != "does not belong" {
            &cert
        } else {
            &key
        };
        assert!(text.contains(named.to_str().expect("utf-8")), "{text}");
        assert!(!text.contains("os error"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_an_https_admin_trusting_its_ca() {
    let certs = TestCerts::new();
    let dev = Dev::start_with(None, |s| s.tls = Some(certs.files())).await;
    let ca = certs.dir.path().join("ca.pem");
    std::fs::write(&ca, &certs.ca_pem).expect("ca");
    let https = format!("{}/healthz", dev.admin.replace("http://", "https://"));
    let health = |extra: Vec<String>| {
        let https = https.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rtconfig"));
            cmd.arg("health")
                .arg(&https)
                .args(extra)
                .env_remove("RUST_LOG");
            for (k, _) in std::env::vars() {
                if k.starts_with("RTCONFIG_") {
                    cmd.env_remove(k);
                }
            }
            crate::harness::run_with_timeout(&mut cmd, Duration::from_secs(20)).expect("ran")
        })
    };
    let ok = health(vec!["--ca-cert".into(), ca.to_str().expect("utf-8").into()])
        .await
        .expect("task");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let untrusted = health(vec![]).await.expect("task");
    assert_eq!(
        untrusted.status.code(),
        Some(1),
        "an unknown CA is no answer"
    );
    let missing = health(vec!["--ca-cert".into(), "/nonexistent/ca.pem".into()])
        .await
        .expect("task");
    assert_eq!(missing.status.code(), Some(64));
    let text = String::from_utf8_lossy(&missing.stderr);
    assert!(text.contains("--ca-cert /nonexistent/ca.pem"), "{text}");
}
