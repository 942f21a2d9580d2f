//! Everything that knows Redis: key names ([`keys`]), Lua scripts ([`scripts`]), wire formats
//! ([`wire`]: what the scripts return and the keys hold, typed and decoded in one place), and how
//! clients are set up (this module).
//!
//! Client setup follows DESIGN §9 and `reference/ecosystem.md`: fred never reconnects without a
//! `ReconnectPolicy` (while still reporting "connected"), so every client gets an unbounded
//! exponential policy, a command timeout, an unresponsive-connection check (a SIGSTOPped Redis
//! accepts TCP and never answers), and a large Pub/Sub broadcast buffer whose `Lagged` errors
//! the sync loop treats as "resync now". The first connection may fail: the sidecar must start
//! (from its disk snapshot) while Redis is down, so `fail_fast` is off.

pub mod cluster;
pub mod keys;
pub mod scripts;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};
use fred::types::config::UnresponsiveConfig;
use fred::types::Value as RedisValue;

pub use keys::Keys;
pub use wire::{
    ApplyOutcome, Heartbeat, Hint, HintPayload, Image, Item, LogEntry, Meta, SwapOutcome, SyncRead,
    WireError, META_FIELDS,
};

/// How long any one Redis command may take before it counts as failed.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries kept in the change log (`MAXLEN ~`).
pub const LOG_MAXLEN: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis URL: {0}")]
    Url(String),
    #[error("redis: {0}")]
    Command(#[from] fred::error::Error),
    #[error("the Redis Cluster node {0} that serves this namespace's slot is not connected")]
    NodeDown(String),
    #[error("unexpected reply from Redis: {0}")]
    Reply(#[from] WireError),
}

/// How change hints travel on a namespace's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSub {
    /// `PUBLISH` / `SUBSCRIBE` (one server, Sentinel, a cluster before Redis 7: the cluster
    /// bus copies each message to every node).
    Plain,
    /// `SPUBLISH` / `SSUBSCRIBE` (Redis Cluster, Redis ≥ 7): the hint stays on the shard that
    /// owns the channel's slot — the namespace's own node.
    Sharded,
}

impl PubSub {
    /// Sharded on a cluster node that runs Redis 7 or later; plain otherwise (and while the
    /// node's version is not known yet: a sidecar keeps its plain subscription too, so a plain
    /// hint still arrives).
    pub fn choose(clustered: bool, server_major: Option<u64>) -> PubSub {
        match (clustered, server_major) {
            (true, Some(major)) if major >= 7 => PubSub::Sharded,
            _ => PubSub::Plain,
        }
    }

    /// The command the relay's scripts publish with.
    pub fn command(self) -> &'static str {
        match self {
            PubSub::Plain => "PUBLISH",
            PubSub::Sharded => "SPUBLISH",
        }
    }
}

/// Connection tuning shared by every client.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub command_timeout: Duration,
    /// A connection with a command pending longer than this is closed and reconnected.
    pub unresponsive_after: Duration,
    pub max_reconnect_delay: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            unresponsive_after: Duration::from_secs(3),
            // Short: the relay rebuilds and sidecars verify as soon as Redis accepts again.
            max_reconnect_delay: Duration::from_millis(500),
        }
    }
}

/// `redis://`, `rediss://` (TLS), `redis-sentinel://`, `redis-cluster://` URLs.
pub fn builder(url: &str, opts: &ConnectOptions) -> Result<Builder, RedisError> {
    const SCHEMES: [&str; 6] = [
        "redis://",
        "rediss://",
        "redis-sentinel://",
        "rediss-sentinel://",
        "redis-cluster://",
        "rediss-cluster://",
    ];
    if !SCHEMES.iter().any(|s| url.starts_with(s)) {
        return Err(RedisError::Url(format!(
            "the URL must start with one of {}",
            SCHEMES.join(", ")
        )));
    }
    let config = Config::from_url(url).map_err(|e| RedisError::Url(e.details().to_string()))?;
    Ok(builder_from_config(config, opts))
}

/// A builder for `config` with this module's tuning (see the module doc).
pub fn builder_from_config(mut config: Config, opts: &ConnectOptions) -> Builder {
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    let command_timeout = opts.command_timeout;
    let unresponsive = opts.unresponsive_after;
    builder
        .with_connection_config(|c| {
            c.connection_timeout = command_timeout;
            c.internal_command_timeout = command_timeout;
            c.max_command_attempts = 2;
            c.unresponsive = UnresponsiveConfig {
                max_timeout: Some(unresponsive),
                interval: (unresponsive / 3).max(Duration::from_millis(100)),
            };
        })
        .with_performance_config(|p| {
            p.default_command_timeout = command_timeout;
            // Lagged already means "resync now", so a big buffer buys nothing; each slot is
            // preallocated per client (4096 cost ~5.9 MiB per sync loop, 256 about 0.5 MiB).
            p.broadcast_channel_capacity = 256;
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            50,
            opts.max_reconnect_delay.as_millis().min(u32::MAX as u128) as u32,
            2,
        ));
    builder
}

fn check_scheme(url: &str) -> Result<(), RedisError> {
    builder(url, &ConnectOptions::default()).map(|_| ())
}

/// The clients of one process to one Redis deployment: a single client (one server, or
/// Sentinel), or for Redis Cluster one connection per primary routed by slot
/// ([`cluster::ClusterClients`]: one node's failure only stalls its own slots).
#[derive(Clone)]
pub enum Redis {
    Single(Client),
    Cluster(Arc<cluster::ClusterClients>),
}

impl Redis {
    /// Builds the clients for `url`; nothing connects before [`start`](Self::start).
    pub fn new(url: &str, opts: &ConnectOptions) -> Result<Redis, RedisError> {
        check_scheme(url)?;
        let config = Config::from_url(url).map_err(|e| RedisError::Url(e.details().to_string()))?;
        if config.server.is_clustered() {
            Ok(Redis::Cluster(Arc::new(cluster::ClusterClients::new(
                config,
                opts.clone(),
            ))))
        } else {
            Ok(Redis::Single(builder_from_config(config, opts).build()?))
        }
    }

    /// Starts connecting in the background (and, on a cluster, keeping the slot table fresh).
    pub fn start(&self) {
        match self {
            Redis::Single(c) => start(c),
            Redis::Cluster(c) => {
                tokio::spawn(cluster::ClusterClients::keep_fresh(Arc::downgrade(c)));
            }
        }
    }

    /// The client that serves `key` (any key of a namespace: they share its slot).
    pub fn client_for(&self, key: &str) -> Result<Client, RedisError> {
        match self {
            Redis::Single(c) => Ok(c.clone()),
            Redis::Cluster(c) => c.client_for(key),
        }
    }

    /// On a cluster, the node serving `key`'s slot when its connection is down (a killed node;
    /// a frozen one once the unresponsive check closed it); `None` otherwise and off a cluster.
    pub fn node_down(&self, key: &str) -> Option<String> {
        match self {
            Redis::Single(_) => None,
            Redis::Cluster(c) => {
                let client = c.client_for(key).ok()?;
                (!client.is_connected()).then(|| {
                    c.owner_of(key)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "?".into())
                })
            }
        }
    }

    /// How hints on `key`'s channel are published ([`PubSub::choose`]): sharded on a cluster
    /// whose node for that slot runs Redis ≥ 7 (its version as read at connect; while that
    /// node's connection is new, another node's).
    pub fn pubsub_for(&self, key: &str) -> PubSub {
        match self {
            Redis::Single(_) => PubSub::Plain,
            Redis::Cluster(c) => PubSub::choose(true, c.server_major(key)),
        }
    }

    /// Says a command failed: on a cluster the slot table is read again at once.
    pub fn command_failed(&self) {
        if let Redis::Cluster(c) = self {
            c.refresh_soon();
        }
    }

    /// A Pub/Sub client for `key`'s channel (not started): on a cluster, a plain connection to
    /// the node that owns the slot, and that node; otherwise one from `url` (the sidecar's
    /// subscriber URL may differ from its command URL).
    pub fn subscriber_for(
        &self,
        key: &str,
        url: &str,
        opts: &ConnectOptions,
    ) -> Result<(Option<fred::types::config::Server>, SubscriberClient), RedisError> {
        match self {
            Redis::Single(_) => Ok((None, subscriber_client(url, opts)?)),
            Redis::Cluster(c) => {
                let (server, client) = c.subscriber_for(key)?;
                Ok((Some(server), client))
            }
        }
    }

    /// On a cluster, the slot table's changes (a subscriber follows its slot's owner).
    /// The single client's reconnections (Redis accepting connections again); `None` on a
    /// cluster, whose clients re-read the slot table every second and after a failed command.
    pub fn reconnect_rx(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<fred::types::config::Server>> {
        match self {
            Redis::Single(c) => Some(fred::interfaces::EventInterface::reconnect_rx(c)),
            Redis::Cluster(_) => None,
        }
    }

    pub fn watch_ranges(&self) -> Option<tokio::sync::watch::Receiver<cluster::SlotRanges>> {
        match self {
            Redis::Single(_) => None,
            Redis::Cluster(c) => Some(c.watch_ranges()),
        }
    }

    /// On a cluster, the node that owns `key`'s slot as last seen.
    pub fn owner_of(&self, key: &str) -> Option<fred::types::config::Server> {
        match self {
            Redis::Single(_) => None,
            Redis::Cluster(c) => c.owner_of(key),
        }
    }

    /// Closes every connection.
    pub async fn quit(&self) {
        match self {
            Redis::Single(c) => {
                let _ = c.quit().await;
            }
            Redis::Cluster(c) => c.quit().await,
        }
    }
}

/// A command client, connecting in the background (never waits for Redis).
pub fn command_client(url: &str, opts: &ConnectOptions) -> Result<Client, RedisError> {
    let client = builder(url, opts)?.build()?;
    Ok(client)
}

/// A Pub/Sub client, connecting in the background.
pub fn subscriber_client(url: &str, opts: &ConnectOptions) -> Result<SubscriberClient, RedisError> {
    let client = builder(url, opts)?.build_subscriber_client()?;
    Ok(client)
}

/// Starts a client's connection task without waiting for it to connect.
pub fn start<C: ClientLike>(client: &C) {
    let _task = client.connect();
}

/// Runs a read-only script with `EVALSHA_RO`, so a Redis user with read-only access to the
/// namespace's keys may run it (plain `EVALSHA` needs write access to every key it names);
/// loads the script on `NOSCRIPT` (after a Redis restart) and retries once.
pub async fn eval_ro(
    client: &Client,
    script: &fred::types::scripts::Script,
    keys: &[&str],
    args: &[String],
) -> Result<RedisValue, RedisError> {
    use fred::interfaces::ClientLike as _;
    use fred::types::{ClusterHash, CustomCommand};
    let mut argv: Vec<String> = Vec::with_capacity(2 + keys.len() + args.len());
    argv.push(script.sha1().to_string());
    argv.push(keys.len().to_string());
    argv.extend(keys.iter().map(|k| (*k).to_owned()));
    argv.extend(args.iter().cloned());
    // The first key decides the cluster slot (all keys share the namespace's hash tag).
    let command = || CustomCommand::new_static("EVALSHA_RO", ClusterHash::Offset(2), false);
    match client
        .custom::<RedisValue, _>(command(), argv.clone())
        .await
    {
        Err(e) if e.details().starts_with("NOSCRIPT") => {
            script.load(client).await?;
            Ok(client.custom::<RedisValue, _>(command(), argv).await?)
        }
        other => Ok(other?),
    }
}

/// Reads `meta` with a plain `HMGET` of [`META_FIELDS`] (outside a script, where atomicity with
/// other keys does not matter).
pub async fn read_meta(client: &Client, keys: &Keys) -> Result<Meta, RedisError> {
    use fred::interfaces::HashesInterface as _;
    let reply: RedisValue = client
        .hmget(keys.meta.as_str(), META_FIELDS.to_vec())
        .await?;
    Ok(Meta::decode(&reply)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_sharded_only_on_a_cluster_node_of_redis_7_or_later() {
        // (clustered, the node's major version, mode)
        let rows = [
            (true, Some(7), PubSub::Sharded),
            (true, Some(8), PubSub::Sharded),
            (true, Some(6), PubSub::Plain),
            (true, None, PubSub::Plain),
            (false, Some(7), PubSub::Plain),
            (false, None, PubSub::Plain),
        ];
        for (clustered, major, want) in rows {
            assert_eq!(
                PubSub::choose(clustered, major),
                want,
                "{clustered} {major:?}"
            );
        }
        assert_eq!(PubSub::Sharded.command(), "SPUBLISH");
        assert_eq!(PubSub::Plain.command(), "PUBLISH");
    }

    #[test]
    fn only_redis_schemes_are_accepted() {
        let opts = ConnectOptions::default();
        for ok in [
            "redis://127.0.0.1:6379",
            "rediss://h:1",
            "redis-sentinel://h:1?sentinelServiceName=m",
        ] {
            assert!(builder(ok, &opts).is_ok(), "{ok}");
        }
        for bad in ["http://127.0.0.1:6379", "foo://h", "127.0.0.1:6379", ""] {
            assert!(
                matches!(builder(bad, &opts), Err(RedisError::Url(_))),
                "{bad}"
            );
        }
    }
}
