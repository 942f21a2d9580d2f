//! The Python client's pytest suite (clients/python/tests) against this build's `rtconfig`
//! binary, in the venv scripts/test makes (target/pyvenv): get_config types, fallback while the
//! sidecar is away, watch(), the background thread (and fork), the Django `config` object, and
//! `rtconfig import-constance` on the django-constance peer project.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::run_with_timeout;

#[test]
fn python_client_pytest_suite_passes_against_the_real_sidecar() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/pyvenv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test (it makes the venv)",
        python.display()
    );
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(root.join("clients/python"))
        .env("RTCONFIG_BIN", env!("CARGO_BIN_EXE_rtconfig"))
        .env_remove("RTCONFIG_URL");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(240)).expect("pytest ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed"), "{stdout}");
    assert!(
        !stdout.contains("skipped"),
        "no test may be skipped: {stdout}"
    );
}
