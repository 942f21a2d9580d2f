//! A real PostgreSQL cluster per test (or one shared per process), started with `initdb` +
//! `postgres` on `127.0.0.1:<free port>` with trust authentication.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tempfile::TempDir;

use super::{
    child_pids, find_on_path, log_tail, ports::free_port, run_with_timeout, running_as_root,
    signal, wait_child_timeout, Watchdog,
};

/// Env var naming the directory holding `initdb`, `postgres`, `pg_isready` and `psql`.
pub const PG_BIN_ENV: &str = "RTCONFIG_TEST_PG_BIN";

/// How long `start`/`restart` wait for `pg_isready` to succeed.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default timeout of [`PgCluster::psql`].
pub const PSQL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a shutdown may take before the harness escalates (INT → QUIT → KILL).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Server options. Build with `PgOptions { fsync: true, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `-c fsync=on|off`. Default off (speed); turn on for crash-durability tests.
    pub fsync: bool,
    /// `-c max_connections=N`. Default 100.
    pub max_connections: u32,
    /// Extra `-c name=value` settings, applied last.
    pub settings: Vec<(String, String)>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            fsync: false,
            max_connections: 100,
            settings: Vec::new(),
        }
    }
}

/// Paths of the PostgreSQL binaries the harness uses.
#[derive(Debug, Clone)]
pub struct PgBins {
    pub initdb: PathBuf,
    pub postgres: PathBuf,
    pub pg_isready: PathBuf,
    pub psql: PathBuf,
}

/// A PostgreSQL cluster in its own temporary directory: data in `<dir>/data`, unix socket in
/// `<dir>`, server log in `<dir>/postgres.<n>.log`. As root, `initdb` and `postgres` run via
/// `setpriv`/`runuser` as `postgres` in a directory owned by `postgres`. Fast-stopped (SIGINT) on drop.
///
/// All methods take `&self` (state is behind a mutex).
pub struct PgCluster {
    port: u16,
    bins: PgBins,
    as_postgres_user: bool,
    options: PgOptions,
    db_counter: AtomicU32,
    state: Mutex<State>,
    // Declared last: removed after the server is gone.
    dir: TempDir,
}

struct State {
    /// The spawned process: the postmaster itself, or a `runuser` wrapping it (root, no `setpriv`).
    child: Option<Child>,
    postmaster: Option<u32>,
    paused: Vec<u32>,
    generation: u32,
    watchdog: Option<Watchdog>,
}

enum SpawnError {
    AddrInUse(String),
    Other(String),
}

impl PgCluster {
    /// `initdb` + start with default options (fsync off); waits until it accepts connections.
    pub fn start() -> PgCluster {
        PgCluster::start_with(PgOptions::default())
    }

    /// `initdb` + start with `options`; waits until it accepts connections.
    pub fn start_with(options: PgOptions) -> PgCluster {
        let bins = pg_bins();
        let as_postgres_user = running_as_root();
        // As root the directory must be reachable by `postgres`: use /tmp, not a private $TMPDIR.
        let builder_dir = if as_postgres_user {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = match tempfile::Builder::new()
            .prefix("rtconfig-pg-")
            .tempdir_in(&builder_dir)
        {
            Ok(d) => d,
            Err(e) => panic!("PgCluster: cannot create a temporary directory: {e}"),
        };
        let cluster = PgCluster {
            port: 0,
            bins,
            as_postgres_user,
            options,
            db_counter: AtomicU32::new(0),
            state: Mutex::new(State {
                child: None,
                postmaster: None,
                paused: Vec::new(),
                generation: 0,
                watchdog: None,
            }),
            dir,
        };
        cluster.initdb();
        let dir_str = cluster.dir.path().to_string_lossy().into_owned();
        let mut cluster = cluster;
        {
            let mut st = cluster.state.lock();
            st.watchdog = Watchdog::spawn(
                "if read p w < \"$1/harness.pid\"; then \
                 kill -CONT $p $w; pkill -CONT -P $p; kill -QUIT $p; i=0; \
                 while kill -0 $p && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); kill -CONT $w; done; \
                 pkill -KILL -P $p; kill -KILL $p $w; fi 2>/dev/null; rm -rf \"$1\"",
                &[&dir_str],
            );
        }
        let mut last_err = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            let mut st = cluster.state.lock();
            match cluster.spawn_and_wait(&mut st) {
                Ok(()) => {
                    drop(st);
                    return cluster;
                }
                Err(SpawnError::AddrInUse(msg)) => last_err = msg,
                Err(SpawnError::Other(msg)) => {
                    drop(st);
                    panic!("{msg}")
                }
            }
        }
        panic!("PgCluster: could not bind a free port after 5 attempts; last error:\n{last_err}");
    }

    /// The TCP port (stable across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The cluster's temporary directory (also the unix-socket directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory (`<dir>/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The options the cluster was started with.
    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    /// The binaries in use.
    pub fn bins(&self) -> &PgBins {
        &self.bins
    }

    /// Pid of the running postmaster, if any.
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.state.lock().postmaster
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
        !self.state.lock().paused.is_empty()
    }

    /// A fresh, uniquely named database (`rt_<pid>_<n>`); returns its name.
    pub fn create_database(&self) -> String {
        let n = self.db_counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("rt_{}_{n}", std::process::id());
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        name
    }

    /// Runs `sql` with `psql -X -q -A -t -v ON_ERROR_STOP=1` in `db` and returns stdout without the
    /// trailing newline (`select 1` → `"1"`; rows on separate lines, columns separated by `|`).
    /// Panics on error or after 30 s.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        match self.try_psql(db, sql, PSQL_TIMEOUT) {
            Ok(s) => s,
            Err(e) => panic!(
                "psql on port {} db {db:?} failed: {e}\nSQL: {sql}\n--- server log tail ---\n{}",
                self.port,
                self.log_tail(20)
            ),
        }
    }

    /// Like [`psql`](Self::psql) with a timeout (also used as `PGCONNECT_TIMEOUT`, min 2 s), returning
    /// errors instead of panicking: `Err` holds psql's stderr or the timeout.
    pub fn try_psql(&self, db: &str, sql: &str, timeout: Duration) -> Result<String, String> {
        let port = self.port.to_string();
        let mut cmd = Command::new(&self.bins.psql);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGCONNECT_TIMEOUT", timeout.as_secs().max(2).to_string())
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE");
        let out = run_with_timeout(&mut cmd, timeout)?;
        if out.status.success() {
            let s = String::from_utf8_lossy(&out.stdout);
            Ok(s.strip_suffix('\n').unwrap_or(&s).to_string())
        } else {
            Err(format!(
                "psql exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `pg_terminate_backend` on every other session connected to `db`; returns how many.
    pub fn terminate_backends(&self, db: &str) -> usize {
        let out = self.psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{}' AND pid <> pg_backend_pid()",
                db.replace('\'', "''")
            ),
        );
        out.trim().parse().unwrap_or(0)
    }

    /// `SIGSTOP` the postmaster and then all its children (backends, checkpointer, ...): TCP
    /// connects still succeed (kernel backlog) but nothing answers.
    pub fn pause(&self) {
        let mut st = self.state.lock();
        if !st.paused.is_empty() {
            return;
        }
        let Some(pm) = st.postmaster else {
            panic!(
                "PgCluster::pause: cluster on port {} is not running",
                self.port
            );
        };
        assert!(
            signal(&[pm], "STOP"),
            "PgCluster::pause: kill -STOP {pm} failed"
        );
        let children = child_pids(pm);
        signal(&children, "STOP");
        st.paused.push(pm);
        st.paused.extend(children);
    }

    /// `SIGCONT` everything [`pause`](Self::pause) stopped (children first); no-op if not paused.
    pub fn resume(&self) {
        let mut st = self.state.lock();
        Self::resume_locked(&mut st);
    }

    /// Immediate shutdown (`SIGQUIT` to the postmaster, like `pg_ctl stop -m immediate`): no
    /// checkpoint, crash recovery on the next start. Waits until the server is gone.
    pub fn kill_immediate(&self) {
        let mut st = self.state.lock();
        self.stop_locked(&mut st, "QUIT");
    }

    /// Fast shutdown (`SIGINT`, like `pg_ctl stop -m fast`). Waits until the server is gone.
    pub fn stop(&self) {
        let mut st = self.state.lock();
        self.stop_locked(&mut st, "INT");
    }

    /// Starts the server again on the same data directory and port (fast-stopping it first if it
    /// runs) and waits until it accepts connections. Retries while the port is briefly busy.
    pub fn restart(&self) {
        let mut st = self.state.lock();
        self.stop_locked(&mut st, "INT");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait(&mut st) {
                Ok(()) => return,
                Err(SpawnError::AddrInUse(msg)) => {
                    if Instant::now() >= deadline {
                        panic!(
                            "PgCluster::restart: port {} stayed busy for {READY_TIMEOUT:?}:\n{msg}",
                            self.port
                        );
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(SpawnError::Other(msg)) => panic!("{msg}"),
            }
        }
    }

    /// The last `lines` lines of the current server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let generation = self.state.lock().generation;
        log_tail(&self.log_path(generation), lines)
    }

    fn log_path(&self, generation: u32) -> PathBuf {
        self.dir.path().join(format!("postgres.{generation}.log"))
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("harness.pid")
    }

    /// A command running `bin`, as the `postgres` user when we are root: via `setpriv` (which
    /// execs, so the spawned pid *is* the server) when available, else `runuser -u postgres --`
    /// (which forks and waits, and stops itself when its child is stopped: see `wrapper_cont`).
    fn server_command(&self, bin: &Path) -> Command {
        if !self.as_postgres_user {
            return Command::new(bin);
        }
        let mut c = if find_on_path("setpriv").is_some() {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ]);
            c
        } else {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]);
            c
        };
        c.arg(bin);
        c
    }

    fn initdb(&self) {
        if self.as_postgres_user {
            let out = run_with_timeout(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres")
                    .arg(self.dir.path()),
                Duration::from_secs(30),
            );
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => panic!(
                    "PgCluster: running as root requires a `postgres` user to own the cluster, but \
                     `chown -R postgres {}` failed: {}",
                    self.dir.path().display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => panic!("PgCluster: chown failed: {e}"),
            }
        }
        let data = self.data_dir();
        let mut cmd = self.server_command(&self.bins.initdb);
        cmd.arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .current_dir(self.dir.path());
        match run_with_timeout(&mut cmd, Duration::from_secs(120)) {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "PgCluster: initdb failed ({}):\n{}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("PgCluster: initdb failed: {e}"),
        }
    }

    fn spawn_and_wait(&self, st: &mut State) -> Result<(), SpawnError> {
        st.generation += 1;
        let log_path = self.log_path(st.generation);
        let log = std::fs::File::create(&log_path).map_err(|e| {
            SpawnError::Other(format!(
                "PgCluster: cannot create {}: {e}",
                log_path.display()
            ))
        })?;
        let log2 = log
            .try_clone()
            .map_err(|e| SpawnError::Other(format!("PgCluster: cannot dup log fd: {e}")))?;
        let mut cmd = self.server_command(&self.bins.postgres);
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("port={}", self.port)])
            .args([
                "-c",
                if self.options.fsync {
                    "fsync=on"
                } else {
                    "fsync=off"
                },
            ])
            .args([
                "-c",
                &format!("max_connections={}", self.options.max_connections),
            ]);
        for (k, v) in &self.options.settings {
            cmd.args(["-c", &format!("{k}={v}")]);
        }
        let mut child = cmd
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| {
                SpawnError::Other(format!(
                    "PgCluster: cannot spawn {}: {e}",
                    self.bins.postgres.display()
                ))
            })?;
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = log_tail(&log_path, 30);
                let msg = format!(
                    "PgCluster: postgres on port {} exited during startup ({status}); log tail:\n{tail}",
                    self.port
                );
                return Err(if tail.contains("Address already in use") {
                    SpawnError::AddrInUse(msg)
                } else {
                    SpawnError::Other(msg)
                });
            }
            if self.is_ready() {
                let pm = read_postmaster_pid(&self.data_dir()).unwrap_or_else(|| child.id());
                let _ = std::fs::write(self.pid_file(), format!("{pm} {}\n", child.id()));
                st.child = Some(child);
                st.postmaster = Some(pm);
                st.paused.clear();
                return Ok(());
            }
            if start.elapsed() >= READY_TIMEOUT {
                let pm = read_postmaster_pid(&self.data_dir());
                signal(&pm.into_iter().collect::<Vec<_>>(), "QUIT");
                if !wait_child_timeout(&mut child, STOP_TIMEOUT) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(SpawnError::Other(format!(
                    "PgCluster: postgres on port {} not ready within {READY_TIMEOUT:?}; log tail:\n{}",
                    self.port,
                    log_tail(&log_path, 30)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_ready(&self) -> bool {
        let port = self.port.to_string();
        let mut cmd = Command::new(&self.bins.pg_isready);
        cmd.args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-t", "2"]);
        matches!(run_with_timeout(&mut cmd, Duration::from_secs(5)), Ok(o) if o.status.success())
    }

    fn resume_locked(st: &mut State) {
        if st.paused.is_empty() {
            return;
        }
        // Children first, then the postmaster (the first entry).
        let mut pids: Vec<u32> = st.paused.drain(..).collect();
        let pm = pids.remove(0);
        signal(&pids, "CONT");
        signal(&[pm], "CONT");
        // Anything forked in a race with pause() gets continued too.
        signal(&child_pids(pm), "CONT");
        Self::wrapper_cont(st.child.as_ref(), pm);
    }

    /// `runuser` (unlike `setpriv`) stays in between and stops itself when the postmaster is
    /// stopped; it must be continued too or it could never reap the server and exit.
    fn wrapper_cont(child: Option<&Child>, pm: u32) {
        if let Some(c) = child {
            if c.id() != pm {
                signal(&[c.id()], "CONT");
            }
        }
    }

    /// Waits for the spawned process to exit, continuing a `runuser` wrapper meanwhile.
    fn wait_server_exit(child: &mut Child, pm: u32, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            Self::wrapper_cont(Some(child), pm);
            let slice = timeout
                .saturating_sub(start.elapsed())
                .min(Duration::from_millis(250));
            if wait_child_timeout(child, slice) {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
        }
    }

    /// Signals the postmaster (`INT` fast, `QUIT` immediate), waits, escalates if needed.
    fn stop_locked(&self, st: &mut State, sig: &str) {
        Self::resume_locked(st);
        let Some(mut child) = st.child.take() else {
            st.postmaster = None;
            return;
        };
        let pm = st.postmaster.take().unwrap_or_else(|| child.id());
        signal(&[pm], sig);
        if !Self::wait_server_exit(&mut child, pm, STOP_TIMEOUT) {
            signal(&[pm], "QUIT");
            if !Self::wait_server_exit(&mut child, pm, Duration::from_secs(5)) {
                let children = child_pids(pm);
                signal(&[pm], "KILL");
                signal(&children, "KILL");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_file(self.pid_file());
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        // Watchdog first, so it can never act on a reused pid.
        drop(st.watchdog.take());
        self.stop_locked(&mut st, "INT");
    }
}

impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .field("options", &self.options)
            .finish()
    }
}

/// One cluster per test process, started lazily on first use (fsync off) and shared by every test
/// that calls this; give each test its own database with [`PgCluster::create_database`]. It is never
/// dropped: its watchdog stops it and removes its directory when the test process exits. Don't
/// pause/kill/restart the shared cluster; use a private [`PgCluster`] for fault tests.
pub fn shared_cluster() -> &'static PgCluster {
    static SHARED: OnceLock<PgCluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        PgCluster::start_with(PgOptions {
            max_connections: 200,
            ..PgOptions::default()
        })
    })
}

fn read_postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Locates the PostgreSQL binaries: `$RTCONFIG_TEST_PG_BIN`, else `pg_config --bindir`, else the
/// newest `/usr/lib/postgresql/*/bin`, else `PATH`; installs `postgresql` with apt-get once (root
/// only) if `initdb`/`postgres` are missing; panics with a clear message otherwise. Cached.
pub fn pg_bins() -> PgBins {
    static BINS: OnceLock<PgBins> = OnceLock::new();
    static INSTALL: Once = Once::new();
    if let Some(b) = BINS.get() {
        return b.clone();
    }
    let found = locate_pg_bins().or_else(|| {
        INSTALL.call_once(|| {
            eprintln!("harness: PostgreSQL server binaries not found; trying `apt-get install -y postgresql`");
            super::apt_install("postgresql");
        });
        locate_pg_bins()
    });
    match found {
        Some(b) => BINS.get_or_init(|| b).clone(),
        None => panic!(
            "harness: PostgreSQL binaries (initdb, postgres, pg_isready, psql) not found via \
             ${PG_BIN_ENV}, `pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH, and \
             `apt-get install -y postgresql` did not provide them; install PostgreSQL or set \
             {PG_BIN_ENV}=/path/to/bin"
        ),
    }
}

fn locate_pg_bins() -> Option<PgBins> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os(PG_BIN_ENV) {
        candidates.push(PathBuf::from(d));
    }
    if find_on_path("pg_config").is_some() {
        if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
            if o.status.success() {
                candidates.push(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versions.into_iter().map(|(_, p)| p));
    }
    if let Some(initdb) = find_on_path("initdb") {
        if let Ok(real) = std::fs::canonicalize(initdb) {
            if let Some(parent) = real.parent() {
                candidates.push(parent.to_path_buf());
            }
        }
    }
    let dir = candidates
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())?;
    let tool = |name: &str| {
        let p = dir.join(name);
        if p.is_file() {
            Some(p)
        } else {
            find_on_path(name)
        }
    };
    Some(PgBins {
        initdb: dir.join("initdb"),
        postgres: dir.join("postgres"),
        pg_isready: tool("pg_isready")?,
        psql: tool("psql")?,
    })
}
