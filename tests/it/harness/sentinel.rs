//! Redis Sentinel per test: a master and a replica ([`RedisServer`]s) watched by one or three
//! `redis-server --sentinel` processes on free ports, with short timeouts so a failover takes
//! a few seconds (`down-after-milliseconds` 1000, quorum 2 of 3). [`SentinelGroup::master_port`]
//! asks a sentinel which node is the master now; [`SentinelGroup::failover`] runs `SENTINEL
//! FAILOVER` and [`SentinelGroup::wait_master_other_than`] waits for a promotion (after a
//! graceful failover or a killed master).
//!
//! Each sentinel rewrites its own config file (in its temporary directory) and gets a watchdog
//! like every harness process, so it never outlives the test process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::ports::free_port;
use super::redis::{command, redis_server_binary, RedisServer};
use super::Watchdog;

/// The service name every sentinel watches.
pub const SERVICE: &str = "mymaster";
/// `sentinel down-after-milliseconds`: how long a master may not answer before it counts as
/// down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// One `redis-server --sentinel` process, killed on drop.
pub struct Sentinel {
    child: Child,
    port: u16,
    watchdog: Option<Watchdog>,
    _dir: TempDir,
}

impl Sentinel {
    /// A sentinel on a free port watching the master at `master_port` with `quorum`; waits
    /// until it answers `PING`.
    pub fn start(master_port: u16, quorum: u32) -> Sentinel {
        let dir = tempfile::Builder::new()
            .prefix("rtconfig-sentinel-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        let down = DOWN_AFTER.as_millis();
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {master_port} {quorum}\n\
                 sentinel down-after-milliseconds {SERVICE} {down}\n\
                 sentinel failover-timeout {SERVICE} 4000\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                dir = dir.path().display()
            ),
        )
        .expect("sentinel.conf");
        let log = std::fs::File::create(dir.path().join("sentinel.log")).expect("sentinel log");
        let child = Command::new(redis_server_binary())
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("sentinel starts");
        let pid = child.id().to_string();
        let watchdog = Watchdog::spawn("kill -KILL \"$1\" 2>/dev/null", &[&pid]);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        super::eventually_blocking(Duration::from_secs(10), "sentinel answers", || {
            command(addr, None, &["PING"], Duration::from_millis(200)).ok()
        });
        Sentinel {
            child,
            port,
            watchdog,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The sentinel's log, for panic messages.
    pub fn log_path(&self) -> PathBuf {
        self._dir.path().join("sentinel.log")
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        drop(self.watchdog.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A master, one replica and three sentinels (quorum 2).
pub struct SentinelGroup {
    /// `[first master, its replica]`; which one is master now: [`Self::master_port`].
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<Sentinel>,
}

impl SentinelGroup {
    /// Starts the master, a replica in sync with it, and three sentinels that see both (and
    /// each other), so a failover can start at once.
    pub fn start() -> SentinelGroup {
        // No diskless-sync delay (5 s by default): a replica (re)syncs at once.
        const SYNC_NOW: [&str; 2] = ["--repl-diskless-sync-delay", "0"];
        let master = RedisServer::start_with_args(&SYNC_NOW);
        let master_port = master.port().to_string();
        let replica = RedisServer::start_with_args(&[
            SYNC_NOW[0],
            SYNC_NOW[1],
            "--replicaof",
            "127.0.0.1",
            &master_port,
        ]);
        super::eventually_blocking(Duration::from_secs(10), "the replica is in sync", || {
            let info = replica.try_cmd(&["INFO", "replication"]).ok()?;
            info.contains("master_link_status:up").then_some(())
        });
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(master.port(), 2)).collect();
        let group = SentinelGroup {
            nodes: vec![master, replica],
            sentinels,
        };
        // Sentinels learn replicas and each other through the master's hello channel.
        super::eventually_blocking(
            Duration::from_secs(15),
            "every sentinel knows the replica and the two other sentinels",
            || {
                group
                    .sentinels
                    .iter()
                    .all(|s| {
                        let info = command(
                            s.addr(),
                            None,
                            &["SENTINEL", "MASTER", SERVICE],
                            Duration::from_millis(500),
                        )
                        .unwrap_or_default();
                        field(&info, "num-slaves") == Some("1")
                            && field(&info, "num-other-sentinels") == Some("2")
                    })
                    .then_some(())
            },
        );
        group
    }

    /// `redis-sentinel://` naming all three sentinels.
    pub fn url(&self) -> String {
        let mut url = format!(
            "redis-sentinel://127.0.0.1:{}?sentinelServiceName={SERVICE}",
            self.sentinels[0].port()
        );
        for s in &self.sentinels[1..] {
            url.push_str(&format!("&node=127.0.0.1:{}", s.port()));
        }
        url
    }

    /// The master's port as the first sentinel that answers sees it.
    pub fn master_port(&self) -> u16 {
        for s in &self.sentinels {
            if let Ok(reply) = command(
                s.addr(),
                None,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE],
                Duration::from_millis(500),
            ) {
                if let Some(port) = reply.lines().nth(1).and_then(|p| p.parse().ok()) {
                    return port;
                }
            }
        }
        panic!("no sentinel names the master");
    }

    /// The node on `port`.
    pub fn by_port(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// `SENTINEL FAILOVER`: a graceful promotion of the replica (the old master becomes its
    /// replica; Sentinel closes the clients of both so they reconnect).
    pub fn failover(&self) {
        let reply = command(
            self.sentinels[0].addr(),
            None,
            &["SENTINEL", "FAILOVER", SERVICE],
            Duration::from_secs(2),
        )
        .unwrap_or_else(|e| panic!("SENTINEL FAILOVER failed: {e}"));
        assert_eq!(reply, "OK", "SENTINEL FAILOVER answered {reply:?}");
    }

    /// Waits until every sentinel names a master other than `old`, and that node says it is a
    /// master; returns how long it took.
    pub fn wait_master_other_than(&self, old: u16, deadline: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let ports: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|s| {
                    command(
                        s.addr(),
                        None,
                        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE],
                        Duration::from_millis(500),
                    )
                    .ok()
                    .and_then(|r| r.lines().nth(1).and_then(|p| p.parse().ok()))
                })
                .collect();
            if let Some(Some(new)) = ports.first() {
                let agreed = ports.iter().all(|p| *p == Some(*new));
                let promoted = *new != old
                    && self
                        .by_port(*new)
                        .try_cmd(&["ROLE"])
                        .is_ok_and(|r| r.starts_with("master"));
                if agreed && promoted {
                    return started.elapsed();
                }
            }
            assert!(
                started.elapsed() < deadline,
                "no failover away from port {old} within {deadline:?}; sentinels say {ports:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The value after `name` in a flattened `SENTINEL MASTER` reply (name and value alternate).
fn field<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = reply.lines();
    while let Some(l) = lines.next() {
        if l == name {
            return lines.next();
        }
    }
    None
}

#[test]
fn sentinel_master_fields_are_read_by_name() {
    let reply = "name\nmymaster\nip\n127.0.0.1\nnum-slaves\n1\nnum-other-sentinels\n2";
    assert_eq!(field(reply, "num-slaves"), Some("1"));
    assert_eq!(field(reply, "num-other-sentinels"), Some("2"));
    assert_eq!(field(reply, "ip"), Some("127.0.0.1"));
    assert_eq!(field(reply, "quorum"), None);
}
