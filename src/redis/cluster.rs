//! Redis Cluster without the all-or-nothing reconnect: one plain (centralized) connection per
//! primary node, commands routed by the namespace's hash slot, the slot table refreshed from
//! any node that answers.
//!
//! Why (fred 10.1, read in its source): a clustered `fred` client treats the cluster as one
//! connection. When one node's socket fails, `router::commands::process_reconnect` runs
//! `reconnect_with_policy` → `Router::connect` → `clustered::sync`, which reads `CLUSTER SLOTS`
//! and connects to every primary with `try_join_all`: while the dead primary is still listed
//! (until the cluster fails over) the whole sync fails and is retried, and during the retries
//! the router task does not take new commands. So one node down stalls every command, for every
//! slot, until failover. `ClusterDiscoveryPolicy`, `max_command_attempts` and
//! `cluster_cache_update_delay` do not change that. [`ClusterClients`] avoids it: a node's
//! failure only affects the commands routed to that node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::ClientLike;
use fred::prelude::Config;
use fred::types::cluster::ClusterRouting;
use fred::types::config::{Server, ServerConfig};
use fred::types::{ClusterHash, CustomCommand, Value as RedisValue};
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use super::{builder_from_config, ConnectOptions, RedisError};

/// How often the slot table is re-read when nothing has failed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// How long one node may take to answer `CLUSTER SLOTS` before the next is asked.
const SLOTS_TIMEOUT: Duration = Duration::from_millis(500);

/// A slot table: `(start, end, primary)` per slot range.
pub type SlotRanges = Vec<(u16, u16, Server)>;

/// The hash slot of a key (`{tag}` aware).
pub fn slot_of(key: &str) -> u16 {
    fred::util::redis_keyslot(key.as_bytes())
}

/// The primary that owns `slot` in `ranges` (`(start, end, primary)`), if any.
pub fn owner_in(ranges: &[(u16, u16, Server)], slot: u16) -> Option<&Server> {
    ranges
        .iter()
        .find(|(start, end, _)| *start <= slot && slot <= *end)
        .map(|(_, _, s)| s)
}

/// The nodes to ask for the slot table, in order: the primaries last seen, then the seeds from
/// the URL, each once.
pub fn probe_order(primaries: &[Server], seeds: &[Server]) -> Vec<Server> {
    let mut out: Vec<Server> = Vec::with_capacity(primaries.len() + seeds.len());
    for s in primaries.iter().chain(seeds) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// One connection per primary, routed by slot; see the module doc.
pub struct ClusterClients {
    base: Config,
    opts: ConnectOptions,
    seeds: Vec<Server>,
    nodes: Mutex<HashMap<Server, Client>>,
    /// `(start, end, primary)` per slot range, from the last `CLUSTER SLOTS` that answered.
    ranges: watch::Sender<SlotRanges>,
    refresh_now: Arc<Notify>,
}

impl ClusterClients {
    /// From a `redis-cluster://` configuration (its hosts are the seeds). Connects nothing yet.
    pub fn new(base: Config, opts: ConnectOptions) -> ClusterClients {
        let seeds = base.server.hosts();
        ClusterClients {
            base,
            opts,
            seeds,
            nodes: Mutex::new(HashMap::new()),
            ranges: watch::channel(Vec::new()).0,
            refresh_now: Arc::new(Notify::new()),
        }
    }

    /// The configuration of a plain connection to `server` (credentials and TLS kept).
    pub fn node_config(&self, server: &Server) -> Config {
        let mut config = self.base.clone();
        config.server = ServerConfig::Centralized {
            server: server.clone(),
        };
        config
    }

    /// The owner of `key`'s slot as last seen; a seed before the first table arrives.
    pub fn owner_of(&self, key: &str) -> Option<Server> {
        let slot = slot_of(key);
        owner_in(&self.ranges.borrow(), slot)
            .cloned()
            .or_else(|| self.seeds.first().cloned())
    }

    /// Changes of the slot table (for a subscriber that must follow its slot's owner).
    pub fn watch_ranges(&self) -> watch::Receiver<SlotRanges> {
        self.ranges.subscribe()
    }

    /// The connection to the node that owns `key`'s slot (connecting in the background).
    pub fn client_for(&self, key: &str) -> Result<Client, RedisError> {
        let server = self
            .owner_of(key)
            .ok_or_else(|| RedisError::Url("the cluster URL names no node".into()))?;
        self.node(&server)
    }

    /// A Pub/Sub connection to the node that owns `key`'s slot, and that node (not started).
    pub fn subscriber_for(&self, key: &str) -> Result<(Server, SubscriberClient), RedisError> {
        let server = self
            .owner_of(key)
            .ok_or_else(|| RedisError::Url("the cluster URL names no node".into()))?;
        let client =
            builder_from_config(self.node_config(&server), &self.opts).build_subscriber_client()?;
        Ok((server, client))
    }

    /// The major Redis version of the node serving `key`'s slot, as read when it connected;
    /// while that connection is new, any other node's (a cluster runs one version outside an
    /// upgrade).
    pub fn server_major(&self, key: &str) -> Option<u64> {
        let own = self
            .client_for(key)
            .ok()
            .and_then(|c| c.server_version())
            .map(|v| v.major);
        own.or_else(|| {
            self.nodes
                .lock()
                .values()
                .find_map(|c| c.server_version().map(|v| v.major))
        })
    }

    fn node(&self, server: &Server) -> Result<Client, RedisError> {
        let mut nodes = self.nodes.lock();
        if let Some(c) = nodes.get(server) {
            return Ok(c.clone());
        }
        let client = builder_from_config(self.node_config(server), &self.opts).build()?;
        super::start(&client);
        nodes.insert(server.clone(), client.clone());
        Ok(client)
    }

    /// Asks for a refresh of the slot table now (after a command failed).
    pub fn refresh_soon(&self) {
        self.refresh_now.notify_one();
    }

    /// Reads `CLUSTER SLOTS` from the first node that answers and publishes the table when it
    /// changed; drops the connections of nodes that own no slot any more.
    pub async fn refresh(&self) -> Result<(), RedisError> {
        let primaries: Vec<Server> = {
            let r = self.ranges.borrow();
            let mut p: Vec<Server> = r.iter().map(|(_, _, s)| s.clone()).collect();
            p.dedup();
            p
        };
        let mut last = None;
        for server in probe_order(&primaries, &self.seeds) {
            let client = self.node(&server)?;
            let command = CustomCommand::new_static("CLUSTER", ClusterHash::FirstKey, false);
            let ask = client.custom::<RedisValue, _>(command, vec!["SLOTS"]);
            match tokio::time::timeout(SLOTS_TIMEOUT, ask).await {
                Ok(Ok(value)) => {
                    let routing = ClusterRouting::from_cluster_slots(value, server.host.clone())?;
                    let ranges: Vec<(u16, u16, Server)> = routing
                        .slots()
                        .iter()
                        .map(|r| (r.start, r.end, r.primary.clone()))
                        .collect();
                    let changed = self.ranges.send_if_modified(|old| {
                        if *old == ranges {
                            false
                        } else {
                            *old = ranges.clone();
                            true
                        }
                    });
                    if changed {
                        tracing::info!(
                            primaries = routing.unique_primary_nodes().len(),
                            from = %server,
                            "redis cluster slot table changed"
                        );
                        self.drop_unused(&ranges);
                    }
                    return Ok(());
                }
                Ok(Err(e)) => last = Some(RedisError::from(e)),
                Err(_) => {
                    last = Some(RedisError::Url(format!(
                        "{server} did not answer CLUSTER SLOTS"
                    )))
                }
            }
        }
        Err(last.unwrap_or_else(|| RedisError::Url("the cluster URL names no node".into())))
    }

    /// Closes the connections of nodes that are neither a primary nor a seed.
    fn drop_unused(&self, ranges: &[(u16, u16, Server)]) {
        let mut nodes = self.nodes.lock();
        let unused: Vec<Server> = nodes
            .keys()
            .filter(|s| !self.seeds.contains(s) && !ranges.iter().any(|(_, _, p)| p == *s))
            .cloned()
            .collect();
        for s in unused {
            if let Some(client) = nodes.remove(&s) {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(1), client.quit()).await;
                });
            }
        }
    }

    /// Keeps the slot table fresh: every [`REFRESH_INTERVAL`] and at once on
    /// [`refresh_soon`](Self::refresh_soon). Ends when the last other reference is dropped.
    pub async fn keep_fresh(this: std::sync::Weak<Self>) {
        let mut failing = false;
        loop {
            let Some(strong) = this.upgrade() else { return };
            match strong.refresh().await {
                Ok(()) => {
                    if failing {
                        tracing::info!("redis cluster slot table readable again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot read the redis cluster slot table from any node");
                    }
                    failing = true;
                }
            }
            let notify = strong.refresh_now.clone();
            drop(strong);
            tokio::select! {
                () = tokio::time::sleep(REFRESH_INTERVAL) => {}
                () = notify.notified() => {}
            }
        }
    }

    /// Closes every node connection.
    pub async fn quit(&self) {
        let clients: Vec<Client> = self.nodes.lock().drain().map(|(_, c)| c).collect();
        for c in clients {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.quit()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(port: u16) -> Server {
        Server::new("127.0.0.1", port)
    }

    #[test]
    fn a_namespace_hash_tag_decides_the_slot() {
        assert_eq!(slot_of("rtconfig:{a}:meta"), slot_of("rtconfig:{a}:items"));
        assert_eq!(slot_of("rtconfig:{a}:meta"), slot_of("a"));
        // Known value (redis-cli CLUSTER KEYSLOT foo = 12182).
        assert_eq!(slot_of("foo"), 12182);
    }

    #[test]
    fn owners_are_found_by_range() {
        let ranges = vec![(0, 5460, s(1)), (5461, 10922, s(2)), (10923, 16383, s(3))];
        for (slot, want) in [
            (0, Some(1)),
            (5460, Some(1)),
            (5461, Some(2)),
            (16383, Some(3)),
        ] {
            assert_eq!(owner_in(&ranges, slot).map(|s| s.port), want, "{slot}");
        }
        assert_eq!(owner_in(&[], 7), None);
        assert_eq!(owner_in(&ranges[..1], 9000), None);
    }

    #[test]
    fn the_slot_table_is_asked_of_known_primaries_first_then_seeds_once_each() {
        let order = probe_order(&[s(2), s(3)], &[s(1), s(2)]);
        let ports: Vec<u16> = order.iter().map(|s| s.port).collect();
        assert_eq!(ports, [2, 3, 1]);
        assert!(probe_order(&[], &[]).is_empty());
    }
}
