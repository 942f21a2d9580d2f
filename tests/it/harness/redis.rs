//! A real `redis-server` per test, plus a tiny RESP client (sync and async) for assertions and
//! fault primitives.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{log_tail, ports::free_port, signal, Watchdog};

/// Env var overriding the `redis-server` binary.
pub const REDIS_SERVER_ENV: &str = "RTCONFIG_TEST_REDIS_SERVER";

/// How long `start`/`restart` wait for the server to answer `PING`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Default timeout of [`RedisServer::cmd`] / [`RedisServer::try_cmd`].
pub const CMD_TIMEOUT: Duration = Duration::from_secs(5);

/// A `redis-server` child process on `127.0.0.1:<free port>` in its own temporary directory.
///
/// Started with `--save "" --appendonly no --maxmemory-policy noeviction --enable-debug-command
/// local`, so a restart comes back empty unless extra args (e.g. `--appendonly yes`) say otherwise;
/// extra args are kept across restarts. Killed (after `SIGCONT` if paused) on drop.
///
/// All methods take `&self` (state is behind a mutex) so a server can be shared with a nemesis task.
pub struct RedisServer {
    port: u16,
    binary: PathBuf,
    extra_args: Vec<String>,
    state: Mutex<State>,
    // Declared last: dropped after the process is gone.
    dir: TempDir,
}

struct State {
    child: Option<Child>,
    paused: bool,
    generation: u32,
    watchdog: Option<Watchdog>,
}

enum SpawnError {
    AddrInUse(String),
    Other(String),
}

impl RedisServer {
    /// Starts a server with the default configuration and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        RedisServer::start_with_args(&[])
    }

    /// Starts a server with extra command-line configuration appended after the defaults (later
    /// options win), e.g. `&["--user", "relay", "on", ">pw", "~*", "+@all"]` or
    /// `&["--appendonly", "yes"]`. The extra args are reused by [`restart`](Self::restart).
    pub fn start_with_args(extra_args: &[&str]) -> RedisServer {
        let binary = redis_server_binary();
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let server = RedisServer {
                port,
                binary: binary.clone(),
                extra_args: extra_args.clone(),
                state: Mutex::new(State {
                    child: None,
                    paused: false,
                    generation: 0,
                    watchdog: None,
                }),
                dir: match tempfile::Builder::new().prefix("rtconfig-redis-").tempdir() {
                    Ok(d) => d,
                    Err(e) => panic!("RedisServer: cannot create a temporary directory: {e}"),
                },
            };
            let mut st = server.state.lock();
            st.watchdog = Watchdog::spawn(
                "p=$(cat \"$1\" 2>/dev/null); if [ -n \"$p\" ]; then kill -CONT \"$p\"; \
                 kill -KILL \"$p\"; fi 2>/dev/null; sleep 0.3; rm -rf \"$2\"",
                &[
                    &server.pid_file().to_string_lossy(),
                    &server.dir.path().to_string_lossy(),
                ],
            );
            match server.spawn_and_wait(&mut st) {
                Ok(()) => {
                    drop(st);
                    return server;
                }
                Err(SpawnError::AddrInUse(msg)) => last_err = msg,
                Err(SpawnError::Other(msg)) => {
                    drop(st);
                    panic!("{msg}")
                }
            }
        }
        panic!("RedisServer: could not bind a free port after 5 attempts; last error:\n{last_err}");
    }

    /// The TCP port (stable across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's working directory (`--dir`, logs, RDB/AOF files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Pid of the running server process, if any.
    pub fn pid(&self) -> Option<u32> {
        self.state.lock().child.as_ref().map(|c| c.id())
    }

    /// Whether the server process is alive (possibly paused).
    pub fn is_running(&self) -> bool {
        let mut st = self.state.lock();
        match st.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether [`pause`](Self::pause) is in effect.
    pub fn is_paused(&self) -> bool {
        self.state.lock().paused
    }

    /// `SIGSTOP`: the kernel still accepts TCP connections, but nothing is answered.
    pub fn pause(&self) {
        let mut st = self.state.lock();
        let Some(pid) = st.child.as_ref().map(|c| c.id()) else {
            panic!(
                "RedisServer::pause: server on port {} is not running",
                self.port
            );
        };
        if !st.paused {
            assert!(
                signal(&[pid], "STOP"),
                "RedisServer::pause: kill -STOP {pid} failed"
            );
            st.paused = true;
        }
    }

    /// `SIGCONT` after [`pause`](Self::pause); a no-op when not paused.
    pub fn resume(&self) {
        let mut st = self.state.lock();
        if st.paused {
            if let Some(pid) = st.child.as_ref().map(|c| c.id()) {
                assert!(
                    signal(&[pid], "CONT"),
                    "RedisServer::resume: kill -CONT {pid} failed"
                );
            }
            st.paused = false;
        }
    }

    /// `SIGKILL` and reap. A no-op when not running.
    pub fn kill(&self) {
        let mut st = self.state.lock();
        self.kill_locked(&mut st);
    }

    /// Starts the server again on the same port and directory (killing it first if it runs) and
    /// waits until it answers `PING`. With the default args it comes back empty. Retries for a few
    /// seconds if the port is briefly busy.
    pub fn restart(&self) {
        let mut st = self.state.lock();
        self.kill_locked(&mut st);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait(&mut st) {
                Ok(()) => return,
                Err(SpawnError::AddrInUse(msg)) => {
                    if Instant::now() >= deadline {
                        panic!(
                            "RedisServer::restart: port {} stayed busy for {READY_TIMEOUT:?}:\n{msg}",
                            self.port
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(SpawnError::Other(msg)) => panic!("{msg}"),
            }
        }
    }

    /// `FLUSHALL` (panics on failure).
    pub fn flushall(&self) {
        let reply = self.cmd(&["FLUSHALL"]);
        assert_eq!(
            reply, "OK",
            "FLUSHALL on port {} answered {reply:?}",
            self.port
        );
    }

    /// Runs one command (as the `default` user) and returns the reply as text (see [`command`]).
    /// Panics on an error reply, I/O error or a 5 s timeout.
    pub fn cmd(&self, args: &[&str]) -> String {
        match self.try_cmd(args) {
            Ok(s) => s,
            Err(e) => panic!(
                "redis command {args:?} on port {} failed: {e}\n--- log tail ---\n{}",
                self.port,
                self.log_tail(20)
            ),
        }
    }

    /// Like [`cmd`](Self::cmd) but returns errors.
    pub fn try_cmd(&self, args: &[&str]) -> Result<String, RespError> {
        command(self.addr(), None, args, CMD_TIMEOUT)
    }

    /// Whether the server answers `PING` with `PONG` within `timeout`.
    pub fn ping(&self, timeout: Duration) -> bool {
        matches!(command(self.addr(), None, &["PING"], timeout), Ok(ref s) if s == "PONG")
    }

    /// The last `lines` lines of the current server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let generation = self.state.lock().generation;
        log_tail(&self.log_path(generation), lines)
    }

    fn log_path(&self, generation: u32) -> PathBuf {
        self.dir.path().join(format!("redis.{generation}.log"))
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("harness.pid")
    }

    fn kill_locked(&self, st: &mut State) {
        if let Some(mut child) = st.child.take() {
            if st.paused {
                signal(&[child.id()], "CONT");
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        st.paused = false;
        let _ = std::fs::remove_file(self.pid_file());
    }

    fn spawn_and_wait(&self, st: &mut State) -> Result<(), SpawnError> {
        st.generation += 1;
        let log_path = self.log_path(st.generation);
        let log = std::fs::File::create(&log_path).map_err(|e| {
            SpawnError::Other(format!(
                "RedisServer: cannot create {}: {e}",
                log_path.display()
            ))
        })?;
        let log2 = log
            .try_clone()
            .map_err(|e| SpawnError::Other(format!("RedisServer: cannot dup log fd: {e}")))?;
        let port = self.port.to_string();
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mut child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &port, "--dir", &dir])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", "noeviction"])
            .args(["--enable-debug-command", "local"])
            .args(["--daemonize", "no", "--loglevel", "notice"])
            .args(&self.extra_args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| {
                SpawnError::Other(format!(
                    "RedisServer: cannot spawn {}: {e}",
                    self.binary.display()
                ))
            })?;
        let _ = std::fs::write(self.pid_file(), child.id().to_string());
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let _ = std::fs::remove_file(self.pid_file());
                let tail = log_tail(&log_path, 30);
                let msg = format!(
                    "RedisServer: redis-server on port {} exited during startup ({status}); log tail:\n{tail}",
                    self.port
                );
                return Err(if tail.contains("Address already in use") {
                    SpawnError::AddrInUse(msg)
                } else {
                    SpawnError::Other(msg)
                });
            }
            if self.ping(Duration::from_millis(500)) {
                st.child = Some(child);
                st.paused = false;
                return Ok(());
            }
            if start.elapsed() >= READY_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(self.pid_file());
                return Err(SpawnError::Other(format!(
                    "RedisServer: redis-server on port {} did not answer PING within {READY_TIMEOUT:?}; log tail:\n{}",
                    self.port,
                    log_tail(&log_path, 30)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        // Watchdog first, so it can never act on a reused pid.
        drop(st.watchdog.take());
        self.kill_locked(&mut st);
    }
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// The `redis-server` binary: `$RTCONFIG_TEST_REDIS_SERVER`, else `PATH`, else installed once with
/// `apt-get install -y redis-server` (root only); panics with a clear message otherwise.
pub fn redis_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(REDIS_SERVER_ENV) {
        return PathBuf::from(p);
    }
    if let Some(p) = super::find_on_path("redis-server") {
        return p;
    }
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        eprintln!("harness: redis-server not on PATH; trying `apt-get install -y redis-server`");
        super::apt_install("redis-server");
    });
    match super::find_on_path("redis-server") {
        Some(p) => p,
        None => panic!(
            "harness: `redis-server` not found on PATH and `apt-get install -y redis-server` did not \
             provide it; install Redis (>= 7) or set {REDIS_SERVER_ENV}=/path/to/redis-server"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Minimal RESP2 client.
// ---------------------------------------------------------------------------------------------

/// Failure of a raw RESP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// Connect/read/write failure, timeout, closed connection or unparsable reply.
    Io(String),
    /// The server answered with an error reply (`-ERR ...`); the text is without the `-`.
    Server(String),
}

impl RespError {
    /// Whether this is an I/O-level failure (timeout, refused, reset, EOF).
    pub fn is_io(&self) -> bool {
        matches!(self, RespError::Io(_))
    }
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Io(e) => write!(f, "I/O error: {e}"),
            RespError::Server(e) => write!(f, "server error reply: {e}"),
        }
    }
}

impl std::error::Error for RespError {}

/// Sends one command over a fresh connection (optionally `AUTH user pass` first) and returns the
/// reply as text: simple strings and bulk strings as-is, integers in decimal, nil as `(nil)`,
/// arrays as their elements joined with `\n` (nested arrays flattened). `timeout` bounds the
/// connect and each read/write.
pub fn command(
    addr: SocketAddr,
    auth: Option<(&str, &str)>,
    args: &[&str],
    timeout: Duration,
) -> Result<String, RespError> {
    let io = |e: std::io::Error| RespError::Io(e.to_string());
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    if let Some((user, pass)) = auth {
        stream
            .write_all(&encode(&["AUTH", user, pass]))
            .map_err(io)?;
        read_reply_sync(&mut stream, &mut buf)?;
    }
    stream.write_all(&encode(args)).map_err(io)?;
    read_reply_sync(&mut stream, &mut buf)
}

/// Async twin of [`command`] (tokio); `timeout` bounds the whole exchange. Use this for requests
/// that go through an in-process [`super::proxy::TcpProxy`].
pub async fn command_async(
    addr: SocketAddr,
    auth: Option<(&str, &str)>,
    args: &[&str],
    timeout: Duration,
) -> Result<String, RespError> {
    let exchange = async {
        let io = |e: std::io::Error| RespError::Io(e.to_string());
        let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
        let _ = stream.set_nodelay(true);
        let mut buf = Vec::new();
        if let Some((user, pass)) = auth {
            stream
                .write_all(&encode(&["AUTH", user, pass]))
                .await
                .map_err(io)?;
            read_reply_async(&mut stream, &mut buf).await?;
        }
        stream.write_all(&encode(args)).await.map_err(io)?;
        read_reply_async(&mut stream, &mut buf).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(RespError::Io(format!("timed out after {timeout:?}"))),
    }
}

/// `PING` via [`command_async`]; true iff the reply is `PONG` within `timeout`.
pub async fn ping_async(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(command_async(addr, None, &["PING"], timeout).await, Ok(ref s) if s == "PONG")
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply_sync(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<String, RespError> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(r) = take_reply(buf)? {
            return r;
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|e| RespError::Io(e.to_string()))?;
        if n == 0 {
            return Err(RespError::Io("connection closed by peer".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn read_reply_async(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Result<String, RespError> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(r) = take_reply(buf)? {
            return r;
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| RespError::Io(e.to_string()))?;
        if n == 0 {
            return Err(RespError::Io("connection closed by peer".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

enum Value {
    Text(String),
    Nil,
    Error(String),
    Array(Vec<Value>),
}

impl Value {
    fn flatten_into(self, out: &mut Vec<String>) {
        match self {
            Value::Text(s) => out.push(s),
            Value::Nil => out.push("(nil)".into()),
            Value::Error(e) => out.push(format!("(error) {e}")),
            Value::Array(items) => items.into_iter().for_each(|v| v.flatten_into(out)),
        }
    }
}

/// If `buf` holds a complete reply, removes it and returns it as `Some(result)`.
fn take_reply(buf: &mut Vec<u8>) -> Result<Option<Result<String, RespError>>, RespError> {
    match parse(buf, 0)? {
        None => Ok(None),
        Some((value, used)) => {
            buf.drain(..used);
            Ok(Some(match value {
                Value::Error(e) => Err(RespError::Server(e)),
                v => {
                    let mut parts = Vec::new();
                    v.flatten_into(&mut parts);
                    Ok(parts.join("\n"))
                }
            }))
        }
    }
}

/// Parses one RESP2 value at `pos`; `Ok(None)` if incomplete.
fn parse(buf: &[u8], pos: usize) -> Result<Option<(Value, usize)>, RespError> {
    let Some(rel) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&buf[pos + 1..pos + rel]).into_owned();
    let next = pos + rel + 2;
    let bad = |what: &str| RespError::Io(format!("bad RESP {what}: {line:?}"));
    match kind {
        b'+' => Ok(Some((Value::Text(line), next))),
        b'-' => Ok(Some((Value::Error(line), next))),
        b':' => Ok(Some((Value::Text(line), next))),
        b'$' => {
            let len: i64 = line.parse().map_err(|_| bad("bulk length"))?;
            if len < 0 {
                return Ok(Some((Value::Nil, next)));
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            let s = String::from_utf8_lossy(&buf[next..end]).into_owned();
            Ok(Some((Value::Text(s), end + 2)))
        }
        b'*' => {
            let len: i64 = line.parse().map_err(|_| bad("array length"))?;
            if len < 0 {
                return Ok(Some((Value::Nil, next)));
            }
            let mut items = Vec::new();
            let mut at = next;
            for _ in 0..len {
                match parse(buf, at)? {
                    None => return Ok(None),
                    Some((v, n)) => {
                        items.push(v);
                        at = n;
                    }
                }
            }
            Ok(Some((Value::Array(items), at)))
        }
        other => Err(RespError::Io(format!(
            "unsupported RESP type byte {:?}",
            other as char
        ))),
    }
}
