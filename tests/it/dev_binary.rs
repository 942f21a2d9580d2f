//! The real `rtconfig` binary: `check`, `health`, and `dev` with a graceful SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::ports::free_port;
use crate::harness::{eventually, run_with_timeout, signal, wait_child_timeout};
use crate::support::{demo_schema_dir, send, Sse, WITHIN};

const BIN: &str = env!("CARGO_BIN_EXE_rtconfig");

fn rtconfig(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("RTCONFIG_") {
            cmd.env_remove(k);
        }
    }
    run_with_timeout(&mut cmd, Duration::from_secs(20)).expect("rtconfig ran")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_accepts_the_demo_schema_with_exit_0() {
    let out = rtconfig(&[
        "check",
        "--schema-dir",
        demo_schema_dir().to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("1 namespace(s)"), "{text}");
    assert!(text.contains("8 key(s)"), "{text}");
}

#[test]
fn check_lists_every_problem_with_file_and_key_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("shop.toml"),
        r#"namespace = "shop"

[[group]]
name = "Main"
keys = ["COUNT", "COLOR", "9BAD"]

[keys.COUNT]
type = "int"
default = 500
max = 100

[keys.COLOR]
type = "colour"
default = "red"

[keys.9BAD]
type = "bool"
default = true

[keys.ORPHAN]
type = "string"
default = "x"
"#,
    )
    .expect("write");
    std::fs::write(dir.path().join("broken.toml"), "namespace = \n").expect("write");
    let out = rtconfig(&["check", "--schema-dir", dir.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(64), "stdout: {}", stdout(&out));
    let text = stderr(&out);
    for (file, key) in [
        ("shop.toml", Some("COUNT")),
        ("shop.toml", Some("COLOR")),
        ("shop.toml", Some("9BAD")),
        ("shop.toml", Some("ORPHAN")),
        ("broken.toml", None),
    ] {
        let found = text.lines().any(|line| {
            line.contains(file) && key.is_none_or(|k| line.contains(&format!("key {k}")))
        });
        assert!(found, "no problem reported for {file} {key:?}:\n{text}");
    }
    assert!(text.contains("problem(s) found"), "{text}");

    let missing = rtconfig(&["check", "--schema-dir", "/nonexistent/rtconfig-schema"]);
    assert_eq!(missing.status.code(), Some(64));
    assert!(stderr(&missing).contains("/nonexistent/rtconfig-schema"));
}

/// A `rtconfig dev` child process on free ports, killed on drop.
struct DevProcess {
    child: Child,
    read: String,
    probe: String,
    admin: String,
    _data: tempfile::TempDir,
}

impl DevProcess {
    fn spawn(schema_dir: &Path, extra: &[&str]) -> DevProcess {
        let data = tempfile::tempdir().expect("tempdir");
        let [read, admin, probe] =
            [free_port(), free_port(), free_port()].map(|p| format!("127.0.0.1:{p}"));
        let mut cmd = Command::new(BIN);
        cmd.arg("dev")
            .args(["--schema-dir", schema_dir.to_str().expect("utf-8")])
            .args(["--data-dir", data.path().join("d").to_str().expect("utf-8")])
            .args([
                "--listen",
                &read,
                "--admin-listen",
                &admin,
                "--probe-listen",
                &probe,
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn rtconfig dev");
        DevProcess {
            child,
            read: format!("http://{read}"),
            probe: format!("http://{probe}"),
            admin: format!("http://{admin}"),
            _data: data,
        }
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        let url = format!("{}/readyz", self.probe);
        eventually(Duration::from_secs(10), "rtconfig dev ready", || async {
            match client.get(&url).send().await {
                Ok(r) if r.status() == 200 => Some(()),
                _ => None,
            }
        })
        .await;
    }

    /// The admin API token `dev` wrote to `<data-dir>/dev-token` at its first start.
    fn token(&self) -> String {
        std::fs::read_to_string(self._data.path().join("d").join("dev-token"))
            .expect("dev wrote <data-dir>/dev-token")
            .trim()
            .to_owned()
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_reads_and_writes_and_exits_0_on_sigterm_with_a_stream_open() {
    let mut dev = DevProcess::spawn(&demo_schema_dir(), &[]);
    let client = reqwest::Client::new();
    dev.wait_ready(&client).await;

    let write = send(
        client
            .patch(format!("{}/api/v1/namespaces/demo/configs", dev.admin))
            .bearer_auth(dev.token())
            .json(&json!({"changes": {"SITE_NAME": "From the binary"}})),
    )
    .await
    .expect_status(200);
    assert_eq!(write.json()["version"], 1);
    let raw = send(client.get(format!("{}/v1/configs/SITE_NAME?format=raw", dev.read)))
        .await
        .expect_status(200);
    assert_eq!(raw.text(), "From the binary");

    let mut sse = Sse::open(client.get(format!("{}/v1/watch", dev.read))).await;
    sse.expect_event("snapshot").await;

    assert!(signal(&[dev.child.id()], "TERM"), "SIGTERM sent");
    assert_eq!(
        sse.next().await,
        None,
        "the open stream is closed on SIGTERM"
    );
    let child = &mut dev.child;
    let exited = tokio::task::block_in_place(|| wait_child_timeout(child, WITHIN));
    assert!(exited, "dev exits within {WITHIN:?} of SIGTERM");
    let status = dev.child.wait().expect("status");
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");

    let mut out = String::new();
    if let Some(mut s) = dev.child.stdout.take() {
        std::io::Read::read_to_string(&mut s, &mut out).expect("stdout");
    }
    assert!(
        out.contains(&dev.read.replace("http://", "")),
        "prints the URLs:\n{out}"
    );
    assert!(out.contains("/api/v1/namespaces"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_0_on_sigint_after_answering_an_open_long_poll() {
    let mut dev = DevProcess::spawn(&demo_schema_dir(), &[]);
    let client = reqwest::Client::new();
    dev.wait_ready(&client).await;
    let poll = tokio::spawn(send(
        client.get(format!("{}/v1/configs?index=1-0&wait=60s", dev.read)),
    ));
    let status_url = format!("{}/status", dev.probe);
    eventually(WITHIN, "the long-poll is open", || async {
        let status = send(client.get(&status_url)).await.json();
        (status["watchers"] == 1).then_some(())
    })
    .await;

    assert!(signal(&[dev.child.id()], "INT"), "SIGINT sent");
    let answered = tokio::time::timeout(WITHIN, poll)
        .await
        .expect("the long-poll is answered on shutdown")
        .expect("task")
        .expect_status(200);
    assert_eq!(answered.json()["version"], 0, "with the current state");
    let child = &mut dev.child;
    let exited = tokio::task::block_in_place(|| wait_child_timeout(child, WITHIN));
    assert!(exited, "dev exits within {WITHIN:?} of SIGINT");
    assert_eq!(dev.child.wait().expect("status").code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_0_on_2xx_and_1_otherwise() {
    let dev = DevProcess::spawn(&demo_schema_dir(), &[]);
    let client = reqwest::Client::new();
    dev.wait_ready(&client).await;
    let probe = dev.probe.clone();
    let run = move |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            rtconfig(&args)
        })
    };
    let ok = run(vec!["health".into(), format!("{probe}/readyz")])
        .await
        .expect("task");
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let not_found = run(vec!["health".into(), format!("{probe}/nope")])
        .await
        .expect("task");
    assert_eq!(not_found.status.code(), Some(1));
    assert!(stderr(&not_found).contains("404"));
    let closed = format!("http://127.0.0.1:{}/healthz", free_port());
    let refused = run(vec![
        "health".into(),
        closed,
        "--timeout".into(),
        "1".into(),
    ])
    .await
    .expect("task");
    assert_eq!(refused.status.code(), Some(1));
    let invalid = run(vec!["health".into(), "not a url".into()])
        .await
        .expect("task");
    assert_eq!(invalid.status.code(), Some(64));
}

#[test]
fn dev_refuses_a_bad_schema_dir_with_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("demo.toml"),
        "namespace = \"demo\"\n[keys.A]\ntype = \"int\"\ndefault = \"x\"\n",
    )
    .expect("write");
    let data = tempfile::tempdir().expect("tempdir");
    let ports = [free_port(), free_port(), free_port()].map(|p| format!("127.0.0.1:{p}"));
    let out = rtconfig(&[
        "dev",
        "--schema-dir",
        dir.path().to_str().expect("utf-8"),
        "--data-dir",
        data.path().to_str().expect("utf-8"),
        "--listen",
        &ports[0],
        "--admin-listen",
        &ports[1],
        "--probe-listen",
        &ports[2],
    ]);
    assert_eq!(out.status.code(), Some(64), "stdout: {}", stdout(&out));
    assert!(stderr(&out).contains("demo.toml"), "{}", stderr(&out));
    assert!(stderr(&out).contains("key A"), "{}", stderr(&out));
}

#[test]
fn health_refuses_a_non_url_with_exit_64() {
    for url in ["notaurl", "ftp://127.0.0.1:1/readyz"] {
        let out = rtconfig(&["health", url]);
        assert_eq!(out.status.code(), Some(64), "{url}: {}", stderr(&out));
        assert!(stderr(&out).contains("http://"), "{}", stderr(&out));
    }
}

#[test]
fn bad_settings_are_all_reported_at_once_with_exit_64() {
    let out = rtconfig(&[
        "admin",
        "--admin-token",
        "short",
        "--redis-url",
        "http://127.0.0.1:6379",
        "--relay-interval",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let text = stderr(&out);
    for want in [
        "needs a ledger",
        "--admin-token must be at least 16",
        "invalid --redis-url",
        "--relay-interval must be above zero",
        "4 problem(s)",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let out = rtconfig(&["dev", "--listen", "0.0.0.0:0", "--namespace", " "]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("--allow-non-loopback"), "{text}");
    assert!(text.contains("--namespace must not be empty"), "{text}");
    let out = rtconfig(&["dev", "--drain-timeout", "-1"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("--drain-timeout"), "{}", stderr(&out));
}

#[test]
fn a_missing_schema_dir_suggests_the_flag() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = rtconfig(&[
        "dev",
        "--schema-dir",
        "/nonexistent/rtconfig-schema",
        "--data-dir",
        data.path().to_str().expect("utf-8"),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--probe-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("/nonexistent/rtconfig-schema"), "{text}");
    assert!(text.contains("pass --schema-dir"), "{text}");
    assert_eq!(text.lines().count(), 1, "printed once:\n{text}");
}

#[test]
fn a_port_in_use_names_the_flag_and_is_printed_once() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("addr").to_string();
    let data = tempfile::tempdir().expect("tempdir");
    let out = rtconfig(&[
        "dev",
        "--schema-dir",
        demo_schema_dir().to_str().expect("utf-8"),
        "--data-dir",
        data.path().to_str().expect("utf-8"),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        &addr,
        "--probe-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains(&format!("{addr} is in use")) && text.contains("pass another --admin-listen"),
        "{text}"
    );
    assert_eq!(
        text.matches("pass another").count(),
        1,
        "printed once:\n{text}"
    );
    drop(held);
}

#[test]
fn check_on_a_missing_schema_dir_suggests_the_flag() {
    let out = rtconfig(&["check", "--schema-dir", "/nonexistent/rtconfig-schema"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("/nonexistent/rtconfig-schema"), "{text}");
    assert!(text.contains("pass --schema-dir"), "{text}");
    assert!(!text.contains("os error"), "{text}");
}

#[test]
fn dev_refuses_non_loopback_admin_and_probe_addresses_and_short_tokens() {
    let data = tempfile::tempdir().expect("tempdir");
    let schema = demo_schema_dir();
    let base = [
        "dev",
        "--schema-dir",
        schema.to_str().expect("utf-8"),
        "--data-dir",
        data.path().to_str().expect("utf-8"),
    ];
    let admin = format!("0.0.0.0:{}", free_port());
    let probe = format!("0.0.0.0:{}", free_port());
    for (extra, flag) in [
        (vec!["--admin-listen", admin.as_str()], "--admin-listen"),
        (vec!["--probe-listen", probe.as_str()], "--probe-listen"),
        (
            vec!["--admin-token", "abc"],
            "--admin-token must be at least 16",
        ),
    ] {
        let args = [&base[..], &extra].concat();
        let out = rtconfig(&args);
        assert_eq!(out.status.code(), Some(64), "{extra:?}: {}", stderr(&out));
        let text = stderr(&out);
        assert!(text.contains(flag), "{extra:?}: {text}");
        assert!(stdout(&out).is_empty(), "no banner: {}", stdout(&out));
    }
    let out = rtconfig(&[&base[..], &["--admin-listen", admin.as_str()]].concat());
    assert!(
        stderr(&out).contains("--allow-non-loopback"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_reads_its_admin_token_from_a_file_and_takes_a_lower_case_scheme() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "from-a-file-0123456789\n").expect("token");
    let mut dev = DevProcess::spawn(
        &demo_schema_dir(),
        &["--admin-token-file", token_file.to_str().expect("utf-8")],
    );
    let client = reqwest::Client::new();
    dev.wait_ready(&client).await;
    let url = format!("{}/api/v1/namespaces", dev.admin);
    send(
        client
            .get(&url)
            .header("authorization", "bearer from-a-file-0123456789"),
    )
    .await
    .expect_status(200);
    send(
        client
            .get(&url)
            .header("authorization", "Bearer from-a-file"),
    )
    .await
    .expect_error(401, "unauthorized");
    send(client.get(&url))
        .await
        .expect_error(401, "unauthorized");
    let _ = dev.child.kill();
    let _ = dev.child.wait();
    let mut out = String::new();
    if let Some(mut s) = dev.child.stdout.take() {
        std::io::Read::read_to_string(&mut s, &mut out).expect("stdout");
    }
    assert!(out.contains("(or --admin-token)"), "{out}");
    assert!(
        !out.contains("from-a-file"),
        "the token is never printed: {out}"
    );
}

#[test]
fn a_secret_and_its_file_together_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, "0123456789abcdef\n").expect("token");
    let out = rtconfig(&[
        "admin",
        "--data-dir",
        dir.path().join("d").to_str().expect("utf-8"),
        "--redis-url",
        "redis://127.0.0.1:1",
        "--admin-token",
        "0123456789abcdef",
        "--admin-token-file",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("give --admin-token (RTCONFIG_ADMIN_TOKEN) or --admin-token-file"),
        "{}",
        stderr(&out)
    );
}
