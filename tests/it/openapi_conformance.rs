//! `docs/openapi.yaml` against the servers, with schemathesis (PyPI; the venv
//! `target/openapi-venv` comes from `scripts/test`, pinned in `tests/openapi/requirements.txt`).
//! One fresh `rtconfig dev` (the demo schema plus a secret; a new data dir, so no throttling or
//! state from an earlier run) and three runs with `tests/openapi/schemathesis.toml`, each
//! authenticated with the dev token: the admin listener (tags `admin`, `auth`, `probes`), the
//! read listener (`sidecar`) and the probe listener (`/status`). Every check but
//! `positive_data_acceptance` is on (the config file says why); a failure prints schemathesis'
//! report with a `curl` to reproduce it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::Dev;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The schemathesis executable: `RTCONFIG_TEST_SCHEMATHESIS`, else the venv scripts/test makes.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("RTCONFIG_TEST_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    target.join("openapi-venv/bin/schemathesis")
}

/// Runs schemathesis on the operations `filters` select, against `base`.
async fn run(name: &str, base: &str, token: &str, filters: &[&str]) {
    let exe = schemathesis();
    assert!(
        exe.exists(),
        "{} is missing: run scripts/test (it makes the venv from tests/openapi/requirements.txt)",
        exe.display()
    );
    // Run in a temporary directory: schemathesis keeps a cache of earlier failures (replayed on
    // the next run) and hypothesis a database in the working directory; neither belongs in the
    // tree, and each run must draw the same cases from the seed alone.
    let work = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(&exe);
    cmd.current_dir(work.path())
        .arg("--no-color")
        .arg("--config-file")
        .arg(repo().join("tests/openapi/schemathesis.toml"))
        .arg("run")
        .arg(repo().join("docs/openapi.yaml"))
        .arg("--url")
        .arg(base)
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .args(filters);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis ({name}) found a difference between docs/openapi.yaml and the server ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The number of operations tested must be what the filters select: a run that tests
    // nothing (a renamed tag) must not pass silently.
    assert!(
        stdout.contains("Tested:") && !stdout.contains("Tested: 0"),
        "schemathesis ({name}) tested no operation:\n{stdout}"
    );
    print!("{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_both_servers() {
    let dev = Dev::start_with_secret().await;
    run(
        "admin",
        &dev.admin,
        &dev.token,
        &[
            "--include-tag",
            "admin",
            "--include-tag",
            "auth",
            "--include-tag",
            "probes",
            "--exclude-path",
            "/status",
        ],
    )
    .await;
    run(
        "sidecar",
        &dev.read,
        &dev.token,
        &["--include-tag", "sidecar"],
    )
    .await;
    run(
        "status",
        &dev.probe,
        &dev.token,
        &["--include-path", "/status"],
    )
    .await;
}
