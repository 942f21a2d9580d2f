//! Test harness: real `redis-server` / PostgreSQL processes on free loopback ports (alone, as a
//! Redis Cluster, or a master + replica under three sentinels), a fault-injecting
//! TCP proxy, a real OpenID provider under node (`oidc`), and polling helpers. See DESIGN / reliability.md §8.1.
//!
//! Everything here spawns *processes*, never touches the shared `127.0.0.1:6379` / `:5432`, and cleans
//! up on `Drop`. Each spawned server also gets a tiny `sh` watchdog that tears the server down if the
//! test process dies without running destructors (SIGKILL, abort, `process::exit`).
//!
//! The sync APIs (`RedisServer`, `PgCluster`) block the calling thread for short periods (spawn, wait
//! for readiness); that is fine inside `#[tokio::test]`, but do not send a *sync* request through an
//! in-process [`proxy::TcpProxy`] from a current-thread runtime (the proxy could not run): use the
//! async helpers (e.g. [`redis::command_async`]) or a multi-thread runtime for that.
#![allow(dead_code)]

pub mod docker;
pub mod oidc;
pub mod ports;
pub mod postgres;
pub mod proxy;
pub mod redis;
pub mod redis_cluster;
pub mod sentinel;

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Poll interval of [`eventually`] and [`eventually_blocking`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `f` every 20 ms until it returns `Some(value)`; panics with `what` and the elapsed time if
/// `deadline` passes first. `f` is always called at least once.
pub async fn eventually<F, Fut, T>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() >= deadline {
            panic!(
                "eventually: timed out after {:?} (deadline {deadline:?}) waiting for: {what}",
                start.elapsed()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Blocking twin of [`eventually`] (uses `std::thread::sleep`; don't use it on a runtime thread
/// whose tasks `f` depends on).
pub fn eventually_blocking<F, T>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Option<T>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= deadline {
            panic!(
                "eventually_blocking: timed out after {:?} (deadline {deadline:?}) waiting for: {what}",
                start.elapsed()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

// ---------------------------------------------------------------------------------------------
// Shared process helpers (crate-internal to the harness).
// ---------------------------------------------------------------------------------------------

/// Whether the test process runs as root (`id -u` == 0). Cached.
pub fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// Finds an executable named `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `apt-get install -y <package>` (with an `apt-get update` retry). Returns whether it succeeded.
/// Only attempted when running as root.
pub(crate) fn apt_install(package: &str) -> bool {
    if !running_as_root() || find_on_path("apt-get").is_none() {
        return false;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if install() {
        return true;
    }
    let _ = Command::new("apt-get")
        .args(["update", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    install()
}

/// Sends `sig` (e.g. "STOP", "CONT", "KILL", "INT", "QUIT") to `pids` with `kill(1)` (the test crate
/// forbids `unsafe`, so no `libc::kill`). Returns whether `kill` exited successfully.
pub fn signal(pids: &[u32], sig: &str) -> bool {
    if pids.is_empty() {
        return true;
    }
    Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(|p| p.to_string()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(proc_stat_fields(&stat).first(), Some(&"Z") | Some(&"X")),
        Err(_) => false,
    }
}

/// Fields of `/proc/PID/stat` after the `(comm)` field: [state, ppid, ...].
fn proc_stat_fields(stat: &str) -> Vec<&str> {
    match stat.rfind(')') {
        Some(i) => stat[i + 1..].split_whitespace().collect(),
        None => Vec::new(),
    }
}

/// Direct children of `pid`, found by scanning `/proc`.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        if proc_stat_fields(&stat)
            .get(1)
            .and_then(|p| p.parse::<u32>().ok())
            == Some(pid)
        {
            out.push(child);
        }
    }
    out
}

/// Waits for `child` to exit for at most `timeout`; returns whether it exited (and was reaped).
pub(crate) fn wait_child_timeout(child: &mut Child, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            Err(_) => return false,
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a command with piped stdout/stderr and a wall-clock timeout (the child is killed on
/// timeout). `Err` describes spawn failure or timeout; a non-zero exit is returned as `Ok(output)`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot spawn {cmd:?}: {e}"))?;
    let out_reader = child.stdout.take().map(spawn_reader);
    let err_reader = child.stderr.take().map(spawn_reader);
    let exited = wait_child_timeout(&mut child, timeout);
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    let collect = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let stdout = collect(out_reader);
    let stderr = collect(err_reader);
    if !exited {
        return Err(format!(
            "{cmd:?} timed out after {timeout:?}; stderr: {}",
            String::from_utf8_lossy(&stderr).trim()
        ));
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for {cmd:?}: {e}"))?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// The last `lines` lines of a (log) file, for panic messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// A watchdog `sh` process that runs `cleanup_script` when the test process dies.
///
/// Its stdin is a pipe whose write end only this process holds (std pipes are close-on-exec, so no
/// other child inherits it); when the test process exits for any reason the pipe closes, `read`
/// returns and the cleanup runs. On a normal `Drop` the watchdog is killed first (before the owner
/// does its own orderly cleanup), so it never acts on a reused pid.
pub(crate) struct Watchdog {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// `script` runs under `sh -c` with `"$@"` = `args`, after stdin reaches EOF.
    pub(crate) fn spawn(script: &str, args: &[&str]) -> Option<Watchdog> {
        let full = format!("read _unused; {script}");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(full)
            .arg("rtconfig-test-watchdog")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take();
        Some(Watchdog {
            child,
            _stdin: stdin,
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Kill before closing stdin so the cleanup script never runs on an orderly drop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
