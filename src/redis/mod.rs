//! Everything that knows Redis: key names ([`keys`]), Lua scripts ([`scripts`]), wire formats
//! (this module), and how clients are set up ([`connect`]).
//!
//! Client setup follows DESIGN §9 and `reference/ecosystem.md`: fred never reconnects without a
//! `ReconnectPolicy` (while still reporting "connected"), so every client gets an unbounded
//! exponential policy, a command timeout, an unresponsive-connection check (a SIGSTOPped Redis
//! accepts TCP and never answers), and a large Pub/Sub broadcast buffer whose `Lagged` errors
//! the sync loop treats as "resync now". The first connection may fail: the sidecar must start
//! (from its disk snapshot) while Redis is down, so `fail_fast` is off.

pub mod keys;
pub mod scripts;

use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};
use fred::types::config::UnresponsiveConfig;
use fred::types::Value as RedisValue;
use serde_json::Value;

pub use keys::Keys;

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
    #[error("unexpected reply from Redis: {0}")]
    Reply(String),
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
            max_reconnect_delay: Duration::from_secs(2),
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
    let mut config = Config::from_url(url).map_err(|e| RedisError::Url(e.details().to_string()))?;
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
    Ok(builder)
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

/// The fields of `meta` the scripts return, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub cluster_id: Option<String>,
    pub epoch: Option<u64>,
    pub version: Option<u64>,
    pub complete: bool,
    pub relay_at: Option<f64>,
    pub count: Option<u64>,
    pub generation: u64,
    pub schema_hash: Option<String>,
    /// How often the relay refreshes `relay_at` (written by the relay; absent before its first
    /// round).
    pub relay_interval_ms: Option<u64>,
}

impl Meta {
    /// From `SYNC_READ`/`FULL_READ`'s first element.
    pub fn parse(v: &RedisValue) -> Result<Meta, RedisError> {
        let f = fields(v, 9)?;
        Ok(Meta {
            cluster_id: f[0].clone(),
            epoch: parse_num(&f[1], "epoch")?,
            version: parse_num(&f[2], "version")?,
            complete: f[3].as_deref() == Some("1"),
            relay_at: match &f[4] {
                Some(s) => Some(
                    s.parse()
                        .map_err(|_| RedisError::Reply(format!("relay_at {s:?}")))?,
                ),
                None => None,
            },
            count: parse_num(&f[5], "count")?,
            generation: parse_num(&f[6], "generation")?.unwrap_or(0),
            schema_hash: f[7].clone(),
            relay_interval_ms: parse_num(&f[8], "relay_interval_ms")?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.cluster_id.is_none()
    }
}

/// The relay's view of meta (`RELAY_TICK`'s reply).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelayMeta {
    pub cluster_id: Option<String>,
    pub epoch: Option<u64>,
    pub version: Option<u64>,
    pub complete: bool,
    pub term: u64,
    pub generation: u64,
    pub count: Option<u64>,
}

impl RelayMeta {
    pub fn parse(v: &RedisValue) -> Result<RelayMeta, RedisError> {
        let f = fields(v, 7)?;
        Ok(RelayMeta {
            cluster_id: f[0].clone(),
            epoch: parse_num(&f[1], "epoch")?,
            version: parse_num(&f[2], "version")?,
            complete: f[3].as_deref() == Some("1"),
            term: parse_num(&f[4], "term")?.unwrap_or(0),
            generation: parse_num(&f[5], "generation")?.unwrap_or(0),
            count: parse_num(&f[6], "count")?,
        })
    }
}

/// An array reply of `n` bulk strings or nils.
pub fn fields(v: &RedisValue, n: usize) -> Result<Vec<Option<String>>, RedisError> {
    let RedisValue::Array(items) = v else {
        return Err(RedisError::Reply(format!("expected an array, got {v:?}")));
    };
    if items.len() != n {
        return Err(RedisError::Reply(format!(
            "expected {n} fields, got {}",
            items.len()
        )));
    }
    items.iter().map(text).collect()
}

/// A bulk string, integer or nil as text.
pub fn text(v: &RedisValue) -> Result<Option<String>, RedisError> {
    match v {
        RedisValue::Null => Ok(None),
        RedisValue::String(s) => Ok(Some(s.to_string())),
        RedisValue::Bytes(b) => String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| RedisError::Reply("non-UTF-8 bulk string".into())),
        RedisValue::Integer(i) => Ok(Some(i.to_string())),
        other => Err(RedisError::Reply(format!(
            "expected a string, got {other:?}"
        ))),
    }
}

fn parse_num(s: &Option<String>, what: &str) -> Result<Option<u64>, RedisError> {
    match s {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| RedisError::Reply(format!("{what} is not a number: {s:?}"))),
    }
}

/// An item's stored form: `{"value": …, "version": v}`.
pub fn encode_item(value: &Value, version: u64) -> String {
    serde_json::json!({"value": value, "version": version}).to_string()
}

/// Parses an item; `None` when it is not a valid envelope (poisoned content).
pub fn decode_item(text: &str) -> Option<(Value, u64)> {
    let v: Value = serde_json::from_str(text).ok()?;
    let version = v.get("version")?.as_u64()?;
    let value = v.get("value")?.clone();
    Some((value, version))
}

/// A change message: `"<epoch>:<version>"`.
pub fn parse_message(text: &str) -> Option<(u64, u64)> {
    let (e, v) = text.split_once(':')?;
    Some((e.parse().ok()?, v.parse().ok()?))
}

/// A log entry: `(version, epoch, changes)`; `changes` maps keys to a value or `null` (reset).
pub fn parse_log_entry(v: &RedisValue) -> Option<(u64, u64, serde_json::Map<String, Value>)> {
    let RedisValue::Array(parts) = v else {
        return None;
    };
    let [id, fields] = parts.as_slice() else {
        return None;
    };
    let id = text(id).ok()??;
    let version: u64 = id.strip_suffix("-0")?.parse().ok()?;
    let RedisValue::Array(kv) = fields else {
        return None;
    };
    let mut epoch = None;
    let mut changes = None;
    for pair in kv.chunks(2) {
        let [k, v] = pair else { return None };
        match text(k).ok()??.as_str() {
            "epoch" => epoch = text(v).ok()??.parse().ok(),
            "changes" => changes = serde_json::from_str(&text(v).ok()??).ok(),
            _ => {}
        }
    }
    Some((version, epoch?, changes?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_poison_is_rejected() {
        let text = encode_item(&serde_json::json!({"a": [1, 2.5]}), 7);
        assert_eq!(
            decode_item(&text),
            Some((serde_json::json!({"a": [1, 2.5]}), 7))
        );
        for bad in [
            "",
            "x",
            "{}",
            "{\"value\":1}",
            "{\"value\":1,\"version\":-1}",
            "[1]",
        ] {
            assert_eq!(decode_item(bad), None, "{bad}");
        }
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

    #[test]
    fn messages_carry_epoch_and_version() {
        assert_eq!(parse_message("2:41"), Some((2, 41)));
        for bad in ["", "41", "a:b", "1:", ":1", "1:2:3"] {
            assert_eq!(parse_message(bad), None, "{bad}");
        }
    }
}
