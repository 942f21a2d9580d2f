//! A real Redis Cluster per test: 3 primaries + 3 replicas (`redis-server --cluster-enabled
//! yes`, each a [`RedisServer`] on a free port), joined with `redis-cli --cluster create`, with a
//! short `cluster-node-timeout` so a failover takes seconds. Helpers find the primary that owns
//! a key's slot (`CLUSTER KEYSLOT`, `CLUSTER NODES`) and kill or `SIGSTOP` a node by pid
//! ([`RedisServer::kill`] / [`RedisServer::pause`]).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::redis::{redis_server_binary, RedisServer};

/// `cluster-node-timeout` of the harness's clusters.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    pub port: u16,
    pub primary: bool,
    pub failed: bool,
    /// Slot ranges `(start, end)` served (primaries only).
    pub slots: Vec<(u16, u16)>,
}

/// Parses `CLUSTER NODES` (`<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link>
/// <slot>…`).
pub fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags = f[2];
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(NodeLine {
                port,
                primary: flags.contains("master"),
                failed: flags.contains("fail") && !flags.contains("fail?"),
                slots,
            })
        })
        .collect()
}

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

fn redis_cli() -> PathBuf {
    let server = redis_server_binary();
    let sibling = server.with_file_name("redis-cli");
    if sibling.exists() {
        sibling
    } else {
        PathBuf::from("redis-cli")
    }
}

impl RedisCluster {
    /// Six nodes, three primaries with one replica each, every slot covered; waits until every
    /// node says `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let timeout = NODE_TIMEOUT.as_millis().to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            timeout.as_str(),
            // Fail over even when the replica lost touch with its primary for a moment.
            "--cluster-replica-validity-factor",
            "0",
        ];
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| RedisServer::start_with_args(&args))
            .collect();
        let mut cmd = Command::new(redis_cli());
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port()));
        }
        cmd.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = cmd.output().expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok(Duration::from_secs(20));
        cluster
    }

    /// `redis-cluster://` URL naming every node as a seed.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.nodes[0].port());
        for (i, n) in self.nodes.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", n.port()));
        }
        url
    }

    /// `CLUSTER NODES` as seen by a live, unpaused node.
    pub fn topology(&self) -> Vec<NodeLine> {
        for n in self
            .nodes
            .iter()
            .filter(|n| n.is_running() && !n.is_paused())
        {
            if let Ok(text) = n.try_cmd(&["CLUSTER", "NODES"]) {
                return parse_nodes(&text);
            }
        }
        panic!("no cluster node answers CLUSTER NODES");
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn keyslot(&self, key: &str) -> u16 {
        let n = self
            .nodes
            .iter()
            .find(|n| n.is_running() && !n.is_paused())
            .expect("a live node");
        n.cmd(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("a slot number")
    }

    /// The node that serves `slot` as a primary now.
    pub fn owner_of_slot(&self, slot: u16) -> &RedisServer {
        let port = self
            .topology()
            .into_iter()
            .find(|l| {
                l.primary && !l.failed && l.slots.iter().any(|(a, b)| *a <= slot && slot <= *b)
            })
            .map(|l| l.port)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"));
        self.by_port(port)
    }

    /// The primary that owns `key`'s slot.
    pub fn owner_of(&self, key: &str) -> &RedisServer {
        self.owner_of_slot(self.keyslot(key))
    }

    /// The live primaries.
    pub fn primaries(&self) -> Vec<&RedisServer> {
        self.topology()
            .into_iter()
            .filter(|l| l.primary && !l.failed && !l.slots.is_empty())
            .map(|l| self.by_port(l.port))
            .collect()
    }

    pub fn by_port(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// Waits until every live node reports `cluster_state:ok` and `key`'s slot is served by a
    /// primary other than `not`; returns how long it took.
    pub fn wait_failover(&self, key: &str, not: u16, deadline: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let slot = self.keyslot(key);
            let moved = self.topology().iter().any(|l| {
                l.primary
                    && !l.failed
                    && l.port != not
                    && l.slots.iter().any(|(a, b)| *a <= slot && slot <= *b)
            });
            if moved && self.all_ok() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < deadline,
                "slot {slot} did not fail over from port {not} within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn all_ok(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.is_running() && !n.is_paused())
            .all(|n| {
                n.try_cmd(&["CLUSTER", "INFO"])
                    .is_ok_and(|t| t.contains("cluster_state:ok"))
            })
    }

    fn wait_ok(&self, deadline: Duration) {
        let started = Instant::now();
        while !self.all_ok() {
            assert!(
                started.elapsed() < deadline,
                "the cluster did not reach cluster_state:ok within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn cluster_nodes_lines_are_parsed() {
    let text = "07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected\n\
                67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922\n\
                292f 127.0.0.1:30003@40003 master,fail - 0 0 3 disconnected 10923-16383 [1->-abc]\n\
                e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 7000\n";
    let nodes = parse_nodes(text);
    assert_eq!(nodes.len(), 4);
    assert_eq!(
        nodes[0],
        NodeLine {
            port: 30004,
            primary: false,
            failed: false,
            slots: vec![]
        }
    );
    assert_eq!(nodes[1].slots, vec![(5461, 10922)]);
    assert!(nodes[2].failed && nodes[2].primary);
    assert_eq!(nodes[3].slots, vec![(0, 5460), (7000, 7000)]);
}
