//! The packaging, for real: the Dockerfile and docker-compose.yml on a private Docker daemon
//! (`harness::docker`), plus the static checks (hadolint, the Compose specification).
//! `scripts/test -- docker` runs these alone.
//!
//! The compose test builds the images locally (no image can be pulled here): the Debian base
//! from debootstrap, the stand-ins for postgres and redis (`docker/standins`, used through
//! `docker/compose.test.yml`), the demo app, and the Dockerfile's runtime stage with the
//! `rtconfig` binary this test run built (`BINARY=prebuilt`; no Rust build in a container).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::docker::{docker_tests_can_run, repo, run, tool, try_run, Daemon};
use crate::harness::eventually;
use crate::harness::ports::free_port;
use crate::support::Sse;

const BIN: &str = env!("CARGO_BIN_EXE_rtconfig");
const RTCONFIG_IMAGE: &str = "rtconfig:it";
const DEMO_IMAGE: &str = "rtconfig-demo:it";
const WAIT: Duration = Duration::from_secs(60);

#[test]
fn docker_files_are_hadolint_clean() {
    for file in [
        "Dockerfile",
        "demo/Dockerfile",
        "docker/standins/postgres/Dockerfile",
        "docker/standins/redis/Dockerfile",
    ] {
        run(
            Command::new(tool("hadolint")).arg(repo().join(file)),
            &format!("hadolint {file}"),
            Duration::from_secs(60),
        );
    }
}

#[test]
fn docker_compose_files_follow_the_compose_spec() {
    run(
        Command::new(tool("check-jsonschema"))
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(repo().join("docker-compose.yml"))
            .arg(repo().join("docker/compose.test.yml")),
        "check-jsonschema --builtin-schema vendor.compose-spec",
        Duration::from_secs(120),
    );
}

#[test]
fn docker_env_example_lists_every_compose_variable() {
    let compose = std::fs::read_to_string(repo().join("docker-compose.yml")).expect("compose");
    let example = std::fs::read_to_string(repo().join(".env.example")).expect(".env.example");
    // `NAME=value`, or `#NAME=value` for a setting whose default is computed.
    let documented: Vec<&str> = example
        .lines()
        .map(|l| l.strip_prefix('#').unwrap_or(l))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    // `${NAME:-default}` and `${NAME}` (not `$${NAME}`: escaped for the container's shell).
    let re = regex::Regex::new(r"(^|[^$])\$\{([A-Z_][A-Z0-9_]*)").expect("regex");
    let mut missing: Vec<String> = re
        .captures_iter(&compose)
        .map(|c| c[2].to_owned())
        .filter(|v| !documented.contains(&v.as_str()))
        .collect();
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), ".env.example lacks {missing:?}");
}

/// A compose project on the private daemon; `down -v` on drop if the test did not get there.
struct Project<'a> {
    daemon: &'a Daemon,
    name: String,
    env_file: PathBuf,
    down: bool,
}

impl Project<'_> {
    fn compose(&self) -> Command {
        let mut cmd = self.daemon.docker();
        cmd.arg("compose")
            .arg("--project-directory")
            .arg(repo())
            .arg("-f")
            .arg(repo().join("docker-compose.yml"))
            .arg("-f")
            .arg(repo().join("docker/compose.test.yml"))
            .arg("--env-file")
            .arg(&self.env_file)
            .args(["-p", &self.name]);
        cmd
    }

    fn run(&self, args: &[&str], timeout: Duration) -> String {
        let out = run(
            self.compose().args(args),
            &format!("docker compose {}", args.join(" ")),
            timeout,
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logs(&self) -> String {
        try_run(
            self.compose().args(["logs", "--no-color", "--tail", "40"]),
            Duration::from_secs(30),
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
    }

    fn down(&mut self) {
        self.down = true;
        self.run(
            &["down", "-v", "--remove-orphans", "--timeout", "10"],
            Duration::from_secs(120),
        );
    }
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        if !self.down {
            if std::thread::panicking() {
                eprintln!("--- compose logs ---\n{}", self.logs());
            }
            let _ = try_run(
                self.compose()
                    .args(["down", "-v", "--remove-orphans", "--timeout", "5"]),
                Duration::from_secs(120),
            );
        }
    }
}

/// The build context of the runtime stage: the binary under test (debug info stripped, which
/// keeps the image small and the build quick) and the schema dir.
fn runtime_context(dir: &Path) {
    let bin = dir.join("rtconfig");
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(BIN)
        .arg(&bin)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(BIN, &bin).expect("copy the rtconfig binary");
    }
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("mkdir config");
    for entry in std::fs::read_dir(repo().join("config")).expect("config/") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, config.join(path.file_name().expect("name"))).expect("copy");
        }
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let resp = client.get(url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_compose_runs_the_demo_through_its_sidecar() {
    if !docker_tests_can_run("docker_compose_runs_the_demo_through_its_sidecar") {
        return;
    }
    let daemon = Daemon::start();
    daemon.ensure_base_image();
    let root = repo();
    daemon.build(
        "rtconfig-standin/postgres:15",
        &root.join("docker/standins/postgres"),
        None,
        &[],
    );
    daemon.build(
        "rtconfig-standin/redis:7",
        &root.join("docker/standins/redis"),
        None,
        &[],
    );
    daemon.build(DEMO_IMAGE, &root.join("demo"), None, &[]);
    let ctx = tempfile::tempdir().expect("tempdir");
    runtime_context(ctx.path());
    daemon.build(
        RTCONFIG_IMAGE,
        ctx.path(),
        Some(&root.join("Dockerfile")),
        &[("BINARY", "prebuilt"), ("GIT_REVISION", "docker-test")],
    );
    // Rebuilt tags leave their old images dangling: keep the data-root small.
    let _ = try_run(
        daemon.docker().args(["image", "prune", "-f"]),
        Duration::from_secs(60),
    );
    // The image: non-root, `rtconfig health` as its health check, the schema where documented.
    let inspect = run(
        daemon.docker().args([
            "image",
            "inspect",
            "--format",
            "{{json .Config}}|{{.Size}}",
            RTCONFIG_IMAGE,
        ]),
        "docker image inspect",
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&inspect.stdout);
    let (config, size) = text.trim().split_once('|').expect("config|size");
    let config: Value = serde_json::from_str(config).expect("image config");
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Healthcheck"]["Test"][1], "rtconfig");
    assert_eq!(
        config["Env"].as_array().map(|e| e
            .iter()
            .any(|v| v == "RTCONFIG_SCHEMA_DIR=/etc/rtconfig/schema")),
        Some(true)
    );
    assert_eq!(
        config["Labels"]["org.opencontainers.image.revision"],
        "docker-test"
    );
    eprintln!("docker test: image {RTCONFIG_IMAGE} (debug binary) is {size} bytes");

    let (admin_port, demo_port) = (free_port(), free_port());
    let env_dir = tempfile::tempdir().expect("tempdir");
    let env_file = env_dir.path().join("test.env");
    std::fs::write(
        &env_file,
        format!(
            "RTCONFIG_IMAGE={RTCONFIG_IMAGE}\nDEMO_IMAGE={DEMO_IMAGE}\n\
             ADMIN_PORT={admin_port}\nDEMO_PORT={demo_port}\n\
             DEMO_SIDECAR_PROBE_PORT={}\nPOSTGRES_PORT={}\nREDIS_PORT={}\n\
             ADMIN_PUBLIC_URL=http://localhost:{admin_port}\nSIDECAR_RESYNC_INTERVAL=0.5\n",
            free_port(),
            free_port(),
            free_port()
        ),
    )
    .expect("env file");
    let mut project = Project {
        daemon: &daemon,
        name: format!("rtconfig-it-{}", std::process::id()),
        env_file,
        down: false,
    };
    project.run(
        &["up", "-d", "--wait", "--wait-timeout", "180"],
        Duration::from_secs(240),
    );

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let demo = format!("http://127.0.0.1:{demo_port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let state_url = format!("{demo}/api/state");

    // 1. The demo page shows the schema's defaults, read through the sidecar.
    let state = eventually(WAIT, "the demo app has the sidecar's state", || {
        get_json(&client, &state_url)
    })
    .await;
    assert_eq!(state["values"]["SITE_NAME"], "Config Manager", "{state}");
    assert_eq!(state["values"]["ITEMS_PER_PAGE"], 5, "{state}");
    assert_eq!(state["source"], "redis", "{state}");
    let page = client
        .get(format!("{demo}/"))
        .send()
        .await
        .expect("demo page")
        .text()
        .await
        .expect("page body");
    assert!(
        page.contains("Config Manager") && page.contains("EventSource"),
        "{page}"
    );

    // The demo sidecar is connected as its least-privilege Redis user.
    let clients = project.run(
        &["exec", "-T", "redis", "redis-cli", "client", "list"],
        Duration::from_secs(30),
    );
    assert!(clients.contains("user=sidecar-demo"), "{clients}");

    // 2. A change through the admin API reaches the page, live over the demo's SSE stream.
    let token = project.run(
        &[
            "exec",
            "-T",
            "admin",
            "cat",
            "/run/secrets/rtconfig/admin_token",
        ],
        Duration::from_secs(30),
    );
    let authed = crate::support::client_with_token(token.trim());
    let mut events = Sse::open(client.get(format!("{demo}/events"))).await;
    let first = events.expect_event("state").await.json();
    assert_eq!(first["values"]["SITE_NAME"], "Config Manager");
    let resp = authed
        .patch(format!("{admin}/api/v1/namespaces/demo/configs"))
        .json(&json!({
            "changes": {"SITE_NAME": "Shipped in Docker", "MAINTENANCE_MODE": true},
            "comment": "docker test"
        }))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    let live = loop {
        let e = events.expect_event("state").await.json();
        if e["values"]["SITE_NAME"] == "Shipped in Docker" {
            break e;
        }
    };
    assert_eq!(live["values"]["MAINTENANCE_MODE"], true);
    assert_eq!(
        live["history"][0]["changes"]["SITE_NAME"],
        "Shipped in Docker"
    );
    // 2b. The same through the web UI's forms (the admin serves it at `/`): an editor, made
    //     with `rtconfig user add` in the admin container (the first admin's role needs a
    //     second factor before it may sign in), signs in on the sign-in form, edits a value on
    //     the configs page, reviews and commits; the demo page shows it, live.
    let password = "a long editor passphrase for docker";
    project.run(
        &[
            "exec",
            "-T",
            "admin",
            "sh",
            "-c",
            &format!(
                "printf '%s' '{password}' | rtconfig user add ui-editor --role editor:demo --password-stdin"
            ),
        ],
        Duration::from_secs(60),
    );
    let browser = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let signin = browser
        .post(format!("{admin}/signin"))
        .header("origin", &admin)
        .form(&[("username", "ui-editor"), ("password", password)])
        .send()
        .await
        .expect("sign in");
    if signin.status().as_u16() != 303 {
        let status = signin.status();
        let body = signin.text().await.unwrap_or_default();
        let alert = body
            .split("role=\"alert\"")
            .nth(1)
            .map(|s| s.chars().take(300).collect::<String>());
        panic!("sign-in answered {status}: {alert:?}");
    }
    let cookie = signin
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()
                .filter(|c| c.starts_with("__Host-rtconfig="))
        })
        .expect("the session cookie")
        .to_owned();
    let page = |path: &str| {
        browser
            .get(format!("{admin}{path}"))
            .header("cookie", &cookie)
            .send()
    };
    let configs = page("/namespaces/demo").await.expect("configs page");
    assert_eq!(configs.status().as_u16(), 200);
    let configs = configs.text().await.expect("configs html");
    assert!(
        configs.contains("<label for="),
        "the configs page has labelled inputs"
    );
    let csrf = crate::support::hidden_inputs(&configs)
        .into_iter()
        .find(|(n, _)| n == "csrf_token")
        .expect("the page's CSRF token")
        .1;
    let post = |path: &str, fields: Vec<(String, String)>| {
        browser
            .post(format!("{admin}{path}"))
            .header("cookie", &cookie)
            .header("origin", &admin)
            .form(&fields)
            .send()
    };
    let review = post(
        "/namespaces/demo/review",
        vec![
            ("csrf_token".into(), csrf.clone()),
            ("v.SITE_NAME".into(), "Edited in the web UI".into()),
        ],
    )
    .await
    .expect("review");
    assert_eq!(review.status().as_u16(), 200);
    let review = review.text().await.expect("review html");
    assert!(
        review.contains("Edited in the web UI"),
        "the diff shows the new value"
    );
    let mut fields = crate::support::hidden_inputs(&review);
    fields.push(("comment".into(), "from the web UI in Docker".into()));
    let commit = post("/namespaces/demo/commit", fields)
        .await
        .expect("commit");
    assert_eq!(
        commit.status().as_u16(),
        303,
        "committed, then the configs page"
    );
    loop {
        let e = events.expect_event("state").await.json();
        if e["values"]["SITE_NAME"] == "Edited in the web UI" {
            break;
        }
    }
    let resp = authed
        .patch(format!("{admin}/api/v1/namespaces/demo/configs"))
        .json(&json!({"changes": {"SITE_NAME": "Shipped in Docker"}, "comment": "back"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);

    // 3. Redis stopped: the sidecar keeps serving its snapshot (stale); a write made meanwhile
    //    arrives once Redis is back.
    project.run(&["stop", "redis"], Duration::from_secs(60));
    let stale = eventually(WAIT, "the sidecar reports stale without Redis", || async {
        let s = get_json(&client, &state_url).await?;
        (s["stale"] == true).then_some(s)
    })
    .await;
    assert_eq!(stale["values"]["SITE_NAME"], "Shipped in Docker", "{stale}");
    let resp = authed
        .put(format!(
            "{admin}/api/v1/namespaces/demo/configs/WELCOME_MESSAGE"
        ))
        .json(&json!({"value": "written while redis was down", "comment": "outage"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    project.run(&["start", "redis"], Duration::from_secs(60));
    let caught_up = eventually(
        WAIT,
        "the sidecar catches up after Redis returns",
        || async {
            let s = get_json(&client, &state_url).await?;
            (s["values"]["WELCOME_MESSAGE"] == "written while redis was down"
                && s["stale"] == false)
                .then_some(s)
        },
    )
    .await;
    assert_eq!(caught_up["values"]["SITE_NAME"], "Shipped in Docker");

    // 4. The containers run as 65532 on a read-only root filesystem.
    let uid = project.run(
        &["exec", "-T", "admin", "id", "-u"],
        Duration::from_secs(30),
    );
    assert_eq!(uid.trim(), "65532");
    let ro = project.run(
        &[
            "exec",
            "-T",
            "demo-sidecar",
            "sh",
            "-c",
            "touch /x 2>&1 || true",
        ],
        Duration::from_secs(30),
    );
    assert!(ro.contains("Read-only file system"), "{ro}");
    let version = project.run(
        &["exec", "-T", "admin", "rtconfig", "--version"],
        Duration::from_secs(30),
    );
    // The prebuilt binary keeps the revision it was built from (the GIT_REVISION build
    // argument reaches only the Rust stage and the image label).
    let host = Command::new(BIN)
        .arg("--version")
        .output()
        .expect("--version");
    assert_eq!(version.trim(), String::from_utf8_lossy(&host.stdout).trim());
    assert!(version.contains("(rev "), "{version}");

    // 5. `down -v` leaves nothing behind.
    let name = project.name.clone();
    project.down();
    let label = format!("label=com.docker.compose.project={name}");
    for what in [
        vec!["ps", "-a", "-q", "--filter", &label],
        vec!["volume", "ls", "-q", "--filter", &label],
        vec!["network", "ls", "-q", "--filter", &label],
    ] {
        let out = run(
            daemon.docker().args(&what),
            "docker ls",
            Duration::from_secs(30),
        );
        let left = String::from_utf8_lossy(&out.stdout);
        assert!(left.trim().is_empty(), "{what:?} after down -v: {left}");
    }
}
