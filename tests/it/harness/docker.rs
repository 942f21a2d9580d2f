//! A private Docker daemon for the packaging tests (`docker_*`), and the tools around it.
//!
//! `scripts/docker-tools` (run by `scripts/test`) installs what is needed into
//! `~/.cache/rtconfig-test` (or `$RTCONFIG_TEST_CACHE`): Debian's `dockerd`, the Compose v2 and
//! buildx plugins from trixie, the PyPI validators, and a debootstrapped Debian root filesystem.
//! [`Daemon::start`] runs `dockerd` with its own data-root, exec-root and socket under
//! `target/docker-test/` (persistent, so base images and build layers are made once), with
//! `iptables`, IP forwarding and the default bridge off: it creates no iptables chain and no
//! `docker0` link on the machine (Compose's own networks are removed by `compose down`; builds
//! use the host network to reach the Debian mirror; published ports go through docker-proxy).
//! It is stopped by its pid on drop. A lock file keeps two test runs off one data-root.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::running_as_root;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `~/.cache/rtconfig-test`, or `$RTCONFIG_TEST_CACHE`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RTCONFIG_TEST_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/rtconfig-test")
}

/// A tool installed by `scripts/docker-tools` (the PyPI ones live in the cache's virtualenv).
pub fn tool(name: &str) -> PathBuf {
    let venv = cache_dir().join("venv/bin").join(name);
    if venv.exists() {
        return venv;
    }
    match super::find_on_path(name) {
        Some(p) => p,
        None => panic!("{name} is not installed: run scripts/docker-tools (scripts/test does)"),
    }
}

/// Runs `cmd` with a deadline; panics (with stdout and stderr) unless it succeeds.
pub fn run(cmd: &mut Command, what: &str, timeout: Duration) -> Output {
    let out = try_run(cmd, timeout).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` with a deadline, returning its output whatever the exit status.
pub fn try_run(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    super::run_with_timeout(cmd.stdin(Stdio::null()), timeout)
}

/// Whether the Docker tests can run here. Not root (a private dockerd needs it): says so loudly
/// and returns false, or panics when `CI` is set, so CI never passes without them.
pub fn docker_tests_can_run(test: &str) -> bool {
    if running_as_root() {
        return true;
    }
    let msg = format!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !! {test}: SKIPPED — a private Docker daemon needs root; run as root\n\
         !! (CI=true turns this skip into a failure)\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("{msg}");
    }
    eprintln!("{msg}");
    false
}

/// A running private `dockerd`.
pub struct Daemon {
    child: Option<Child>,
    root: PathBuf,
    config: PathBuf,
    _lock: File,
}

impl Daemon {
    /// Starts `dockerd` under `target/docker-test/` and waits until it answers (≤ 60 s).
    pub fn start() -> Daemon {
        let root = repo().join("target/docker-test");
        let (data, exec, config) = (root.join("data"), root.join("exec"), root.join("config"));
        for d in [&data, &exec, &config] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        let lock = File::create(root.join("lock")).expect("lock file");
        lock.lock().expect("lock target/docker-test");
        // The CLI finds Compose and buildx in $DOCKER_CONFIG/cli-plugins.
        let plugins = cache_dir().join("docker/cli-plugins");
        assert!(
            plugins.join("docker-compose").exists() && plugins.join("docker-buildx").exists(),
            "docker-compose / docker-buildx missing in {}: run scripts/docker-tools",
            plugins.display()
        );
        let link = config.join("cli-plugins");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&plugins, &link).expect("symlink cli-plugins");
        let socket = root.join("docker.sock");
        let pidfile = root.join("docker.pid");
        // A daemon a crashed run left behind (its pid file): stop it first.
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            if let Ok(pid) = pid.trim().parse::<u32>() {
                if Path::new(&format!("/proc/{pid}")).exists() {
                    super::signal(&[pid], "TERM");
                    wait_gone(pid, Duration::from_secs(20));
                }
            }
        }
        let _ = std::fs::remove_file(&socket);
        let daemon_json = serde_json::json!({
            "data-root": data,
            "exec-root": exec,
            "pidfile": pidfile,
            "hosts": [format!("unix://{}", socket.display())],
            "iptables": false,
            "ip6tables": false,
            "ip-forward": false,
            "ip-masq": false,
            "bridge": "none",
            "storage-driver": "overlay2",
            "default-address-pools": [{"base": "10.213.0.0/16", "size": 24}],
            "features": {"buildkit": true},
        });
        let json_path = root.join("daemon.json");
        std::fs::write(&json_path, daemon_json.to_string()).expect("daemon.json");
        let log = File::create(root.join("dockerd.log")).expect("dockerd.log");
        let child = Command::new(tool("dockerd"))
            .arg("--config-file")
            .arg(&json_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("dockerd starts (apt-get install docker.io, or scripts/docker-tools)");
        let daemon = Daemon {
            child: Some(child),
            root,
            config,
            _lock: lock,
        };
        let started = Instant::now();
        loop {
            let ok = try_run(
                daemon
                    .docker()
                    .args(["version", "--format", "{{.Server.Version}}"]),
                Duration::from_secs(10),
            )
            .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "dockerd did not answer within 60 s; its log:\n{}",
                super::log_tail(&daemon.root.join("dockerd.log"), 30)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        daemon
    }

    /// `docker` against this daemon (the CLI on PATH; Compose and buildx from the cache).
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(tool("docker"));
        cmd.env(
            "DOCKER_HOST",
            format!("unix://{}", self.root.join("docker.sock").display()),
        )
        .env("DOCKER_CONFIG", &self.config)
        .env("DOCKER_BUILDKIT", "1")
        .env_remove("DOCKER_CONTEXT");
        cmd
    }

    /// Whether the daemon has an image of this name.
    pub fn has_image(&self, name: &str) -> bool {
        try_run(
            self.docker()
                .args(["image", "inspect", "--format", "{{.Id}}", name]),
            Duration::from_secs(30),
        )
        .is_ok_and(|o| o.status.success())
    }

    /// The local Debian base (`debian:bookworm-slim`): imported once from the debootstrapped
    /// root filesystem, since no image can be pulled.
    pub fn ensure_base_image(&self) {
        const BASE: &str = "debian:bookworm-slim";
        if self.has_image(BASE) {
            return;
        }
        let tar = cache_dir().join("rootfs/bookworm.tar");
        assert!(
            tar.exists(),
            "{} missing: run scripts/docker-tools",
            tar.display()
        );
        run(
            self.docker().arg("import").arg(&tar).arg(BASE),
            "docker import of the Debian base",
            Duration::from_secs(180),
        );
    }

    /// `docker build` of `context` (with `dockerfile`, default `context/Dockerfile`), tagged
    /// `tag`; RUN steps use the host network (the daemon has no NAT).
    pub fn build(
        &self,
        tag: &str,
        context: &Path,
        dockerfile: Option<&Path>,
        args: &[(&str, &str)],
    ) {
        let mut cmd = self.docker();
        cmd.args([
            "buildx",
            "build",
            "--progress",
            "plain",
            "--load",
            "--network",
            "host",
        ])
        .args(["-t", tag]);
        if let Some(f) = dockerfile {
            cmd.arg("-f").arg(f);
        }
        for (k, v) in args {
            cmd.args(["--build-arg", &format!("{k}={v}")]);
        }
        cmd.arg(context);
        run(
            &mut cmd,
            &format!("docker build {tag}"),
            Duration::from_secs(600),
        );
    }
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::signal(&[child.id()], "TERM");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}
