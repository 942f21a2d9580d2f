//! `rtconfig dev`'s first start as a user sees it: the banner shows the `admin` user's
//! one-time password once, `<data-dir>/dev-token` (0600) holds an admin API token, later starts
//! show neither again, and a deleted dev-token is replaced (the old token stops working).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::eventually;
use crate::harness::ports::free_port;
use crate::support::demo_schema_dir;

/// A `rtconfig dev` child on `data_dir`, killed on drop, with its banner.
struct Started {
    child: Child,
    banner: String,
    admin: String,
    probe: String,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(data_dir: &Path) -> Started {
    let [read, admin, probe] =
        [free_port(), free_port(), free_port()].map(|p| format!("127.0.0.1:{p}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtconfig"))
        .arg("dev")
        .args(["--schema-dir", demo_schema_dir().to_str().expect("utf-8")])
        .args(["--data-dir", data_dir.to_str().expect("utf-8")])
        .args([
            "--listen",
            &read,
            "--admin-listen",
            &admin,
            "--probe-listen",
            &probe,
        ])
        .env("RUST_LOG", "info")
        .env("RTCONFIG_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rtconfig dev");
    let stdout = child.stdout.take().expect("stdout");
    let banner = tokio::task::spawn_blocking(move || {
        let mut banner = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read stdout");
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Stop with Ctrl-C") {
                break;
            }
        }
        banner
    });
    let banner = tokio::time::timeout(Duration::from_secs(60), banner)
        .await
        .expect("the banner within 60 s")
        .expect("task");
    Started {
        child,
        banner,
        admin: format!("http://{admin}"),
        probe: format!("http://{probe}"),
    }
}

fn password_in(banner: &str) -> Option<String> {
    let rest = banner.split("sign in as admin with password ").nth(1)?;
    Some(rest.split(';').next()?.to_owned())
}

async fn status(client: &reqwest::Client, url: &str, token: Option<&str>) -> u16 {
    let mut rb = client.get(url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    rb.send().await.expect("answer").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_shows_a_one_time_password_and_writes_the_dev_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let token_path = data.join("dev-token");

    let first = start(&data).await;
    let password = password_in(&first.banner).unwrap_or_else(|| panic!("{}", first.banner));
    assert!(password.len() >= 20, "a strong password: {password}");
    assert!(
        first
            .banner
            .contains("shown once; change it with `rtconfig user passwd admin`"),
        "{}",
        first.banner
    );
    let token = std::fs::read_to_string(&token_path)
        .expect("dev-token written")
        .trim()
        .to_owned();
    assert!(token.starts_with("rtc_"), "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "dev-token is owner-only");
    }
    eventually(Duration::from_secs(20), "dev ready", || async {
        (status(&client, &format!("{}/readyz", first.probe), None).await == 200).then_some(())
    })
    .await;
    let namespaces = format!("{}/api/v1/namespaces", first.admin);
    assert_eq!(
        status(&client, &namespaces, Some(&token)).await,
        200,
        "the dev token is an admin token"
    );
    assert_eq!(
        status(&client, &namespaces, None).await,
        401,
        "the admin API needs credentials"
    );
    let login = client
        .post(format!("{}/api/v1/session", first.admin))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(
        login.status().as_u16(),
        200,
        "the one-time password signs in"
    );
    let body: serde_json::Value = login.json().await.expect("json");
    assert_eq!(body["user"], "admin");
    drop(first);

    let second = start(&data).await;
    assert!(
        !second.banner.contains("password") && !second.banner.contains(&password),
        "a later start shows no password: {}",
        second.banner
    );
    assert!(!second.banner.contains("(new"), "{}", second.banner);
    assert_eq!(
        std::fs::read_to_string(&token_path).expect("kept").trim(),
        token,
        "the dev token is kept"
    );
    drop(second);

    std::fs::remove_file(&token_path).expect("delete dev-token");
    let third = start(&data).await;
    assert!(
        third
            .banner
            .contains("(new: the old file was missing or its token revoked)"),
        "{}",
        third.banner
    );
    assert!(password_in(&third.banner).is_none(), "{}", third.banner);
    let new_token = std::fs::read_to_string(&token_path)
        .expect("a new dev-token")
        .trim()
        .to_owned();
    assert_ne!(new_token, token);
    eventually(Duration::from_secs(20), "dev ready", || async {
        (status(&client, &format!("{}/readyz", third.probe), None).await == 200).then_some(())
    })
    .await;
    let namespaces = format!("{}/api/v1/namespaces", third.admin);
    assert_eq!(status(&client, &namespaces, Some(&new_token)).await, 200);
    assert_eq!(
        status(&client, &namespaces, Some(&token)).await,
        401,
        "the lost token was revoked"
    );
}
