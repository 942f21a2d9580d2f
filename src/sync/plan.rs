//! The sync loop's decisions (DESIGN §4, "Sidecar sync"), as plain functions without I/O: given
//! what the sidecar holds ([`State`]) and what Redis answered, what to do.
//!
//! - [`plan`]: a round, from `SYNC_READ` — in sync, catch up from the log, full fetch, or keep
//!   what is served (not confirmed, or refused: stale at once); and whether the relay is down;
//! - [`plan_image`]: after a full read (`FULL_READ`) — apply, or refuse an incomplete or older
//!   image;
//! - [`plan_hint`]: a Pub/Sub hint — apply its inlined changeset (exactly the next version,
//!   checked against the hint's content hash), newer (resync), the position served (a
//!   rebuild's `PUBLISH`: resync to verify), older (nothing), or invalid (resync).
//!
//! The rules, in order: another `cluster_id` is refused (never applied, stale at once); no
//! `cluster_id` (empty, flushed) or not `complete` is not confirmed; no data yet or a higher
//! epoch needs a whole image; a lower epoch is refused; a lower version within the epoch is never
//! applied (not confirmed: the relay replays); the same version is in sync unless `generation`
//! moved (anti-entropy repaired Redis: refetch); a higher version is caught up from the log when
//! the log covers the gap exactly, else fetched whole.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::content_hash::ContentHash;
use crate::redis::{Hint, Image, Meta, SyncRead};
use crate::snapshot::Position;

/// The relay refreshes `relay_at` every `relay_interval_ms`; this many missed beats mean it is
/// down.
const RELAY_MISSED_BEATS: f64 = 3.0;
/// The relay's interval when `meta` does not say (a relay from before `relay_interval_ms`).
const DEFAULT_RELAY_INTERVAL_MS: u64 = 1000;

/// What the sync loop holds when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State<'a> {
    /// This deployment's `--cluster-id`.
    pub cluster_id: &'a str,
    /// The position of the values served; `None` until a snapshot from Redis or disk is loaded.
    pub position: Option<Position>,
    /// The content hash of the values served (`None` with `position`).
    pub hash: Option<ContentHash>,
}

/// Why what Redis holds is not taken (`/status` `cause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// No `meta` (empty or flushed Redis, before the relay's rebuild).
    RedisEmpty,
    /// Not a complete image (a rebuild in progress, evicted or half-written keys).
    RedisIncomplete,
    /// Another deployment's data.
    ForeignRedis,
    /// A lower epoch than the one served.
    RedisOlderEpoch,
    /// A lower version than the one served, in the same epoch.
    RedisBehind,
}

impl Cause {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cause::RedisEmpty => "redis_empty",
            Cause::RedisIncomplete => "redis_incomplete",
            Cause::ForeignRedis => "foreign_redis",
            Cause::RedisOlderEpoch => "redis_older_epoch",
            Cause::RedisBehind => "redis_behind",
        }
    }
}

/// Keep serving what is served, and say why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Not confirmed: the state ages into stale after twice the resync interval.
    NotConfirmed(Cause),
    /// Must never be applied: the state is stale at once.
    Refused(Cause),
}

impl Keep {
    pub(crate) fn cause(self) -> Cause {
        match self {
            Keep::NotConfirmed(c) | Keep::Refused(c) => c,
        }
    }
}

/// Why a round needs the whole image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FetchReason {
    /// Nothing loaded yet.
    NoData,
    /// Redis moved to a higher epoch (a rebuild after `reconcile --force`).
    NewerEpoch,
    /// Same version, another `generation`: anti-entropy repaired Redis.
    Generation,
    /// The log does not cover the gap exactly (trimmed, another epoch's entries, a hole).
    LogGap,
    /// A log entry could not be decoded.
    LogDamaged,
    /// Same position, other content: `meta.content_hash` is not the served values' hash (a
    /// snapshot ahead of a ledger restored from a backup, or a catch-up that did not add up).
    ContentHash,
}

/// What a round does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Redis is at the served position: confirm it.
    InSync,
    /// Apply the log's changes (merged in version order; `null` = back to the default) to the
    /// served values and move to `to`.
    CatchUp {
        to: Position,
        changes: BTreeMap<String, Value>,
        /// The version of the last log entry that changed each key of `changes` (the entry's
        /// own version: OFREP's per-key `metadata.version`).
        versions: BTreeMap<String, u64>,
    },
    /// Read the whole image (`FULL_READ`), then [`plan_image`].
    FullFetch(FetchReason),
    Keep(Keep),
}

/// A round's decision.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Round {
    pub action: Action,
    /// Whether the relay is down (`relay_at` older than three of its intervals by Redis's
    /// clock); `None` when `meta` was refused before the relay could be judged.
    pub relay_down: Option<bool>,
}

/// Decides a round from `SYNC_READ`'s reply.
pub(crate) fn plan(state: &State<'_>, read: &SyncRead) -> Round {
    let (epoch, version) = match accept(state.cluster_id, &read.meta) {
        Ok(at) => at,
        Err(keep) => {
            return Round {
                action: Action::Keep(keep),
                relay_down: None,
            }
        }
    };
    let relay_down = Some(relay_down(&read.meta, read.time));
    let generation = read.meta.generation;
    let action = match state.position {
        None => Action::FullFetch(FetchReason::NoData),
        Some(mine) if epoch > mine.epoch => Action::FullFetch(FetchReason::NewerEpoch),
        Some(mine) if epoch < mine.epoch => Action::Keep(Keep::Refused(Cause::RedisOlderEpoch)),
        Some(mine) if version < mine.version => {
            Action::Keep(Keep::NotConfirmed(Cause::RedisBehind))
        }
        Some(mine) if version == mine.version => {
            if generation != mine.generation {
                Action::FullFetch(FetchReason::Generation)
            } else if hash_differs(read.meta.content_hash, state.hash) {
                Action::FullFetch(FetchReason::ContentHash)
            } else {
                Action::InSync
            }
        }
        Some(mine) => {
            let to = Position {
                epoch,
                version,
                generation,
            };
            match catch_up(mine, to, read) {
                Ok((changes, versions)) => Action::CatchUp {
                    to,
                    changes,
                    versions,
                },
                Err(reason) => Action::FullFetch(reason),
            }
        }
    };
    Round { action, relay_down }
}

/// What a full read leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageAction {
    /// `meta` itself is refused (as in [`plan`]).
    Keep(Keep),
    /// The image does not hold `meta.count` items (evicted, half-written): never applied.
    Incomplete,
    /// Older than what is served (Redis went back between the reads): not applied.
    Behind,
    /// Build the snapshot from the image's items at this position.
    Apply(Position),
}

/// Decides what to do with a whole image.
pub(crate) fn plan_image(state: &State<'_>, image: &Image) -> ImageAction {
    let (epoch, version) = match accept(state.cluster_id, &image.meta) {
        Ok(at) => at,
        Err(keep) => return ImageAction::Keep(keep),
    };
    if image.meta.count != Some(image.fields as u64) {
        return ImageAction::Incomplete;
    }
    let position = Position {
        epoch,
        version,
        generation: image.meta.generation,
    };
    match state.position {
        Some(mine) if epoch < mine.epoch || (epoch == mine.epoch && version < mine.version) => {
            ImageAction::Behind
        }
        _ => ImageAction::Apply(position),
    }
}

/// What a Pub/Sub message means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HintAction {
    /// Ahead of what is served (or nothing is), or the same position with another content
    /// hash: resync.
    Newer,
    /// The next version with its changeset inlined: apply `changes` to the served values, move
    /// to `to`, and keep the result only if its content hash is `hash` ([`verify_applied`]);
    /// otherwise resync.
    Apply {
        to: Position,
        changes: BTreeMap<String, Value>,
        hash: ContentHash,
    },
    /// Exactly the position served, same generation and content hash: verify with one round.
    /// Only a rebuild's `SWAP` publishes a version again (Redis came back empty or was
    /// flushed, and the relay rebuilt it at the same version); otherwise the sidecar reached
    /// the version first (one extra `SYNC_READ`). Issue 11 item 7: without this, a fleet that
    /// never noticed the outage waited for its resync timer to prove the rebuilt image.
    Same,
    /// Behind what is served: nothing to do.
    Duplicate,
    /// Not a hint: resync (`decode_error`).
    Invalid,
}

/// Decides what a Pub/Sub hint leads to. The inlined changeset is used only when the served
/// values are exactly one version behind in the hint's epoch and generation, the payload is
/// this cluster's, and the hint carries the resulting content hash; anything else (a gap,
/// another epoch, no payload, a payload that does not decode, another cluster id) falls back
/// to the log catch-up of a resync, as before.
pub(crate) fn plan_hint(state: &State<'_>, hint: Option<&Hint>) -> HintAction {
    let Some(h) = hint else {
        return HintAction::Invalid;
    };
    let Some(mine) = state.position else {
        return HintAction::Newer;
    };
    let (theirs, ours) = ((h.epoch, h.version), (mine.epoch, mine.version));
    if theirs < ours {
        return HintAction::Duplicate;
    }
    if theirs == ours {
        let moved =
            h.generation.is_some_and(|g| g != mine.generation) || hash_differs(h.hash, state.hash);
        return if moved {
            HintAction::Newer
        } else {
            HintAction::Same
        };
    }
    match (&h.payload, h.hash, h.generation, state.hash) {
        (Some(p), Some(hash), Some(generation), Some(_))
            if h.epoch == mine.epoch
                && h.version == mine.version + 1
                && generation == mine.generation
                && p.cluster_id == state.cluster_id =>
        {
            HintAction::Apply {
                to: Position {
                    epoch: h.epoch,
                    version: h.version,
                    generation,
                },
                changes: p
                    .changes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                hash,
            }
        }
        _ => HintAction::Newer,
    }
}

/// The content hash after applying `changes` to values whose hash is `before`; `old` gives a
/// key's stored value before the change (`None`: at its default).
pub(crate) fn hash_after_changes<V: std::borrow::Borrow<Value>>(
    before: ContentHash,
    changes: &BTreeMap<String, Value>,
    old: impl Fn(&str) -> Option<V>,
) -> ContentHash {
    let mut hash = before;
    for (key, new) in changes {
        if let Some(v) = old(key) {
            hash.remove(key, v.borrow());
        }
        hash.add(key, new);
    }
    hash
}

/// Whether values whose content hash is `got` may be kept where Redis (or the hint) says
/// `expected`: equal, or nothing to compare with (an image from before content hashes).
pub(crate) fn verify_applied(expected: Option<ContentHash>, got: ContentHash) -> bool {
    expected.is_none_or(|e| e == got)
}

/// Both hashes known and different.
fn hash_differs(theirs: Option<ContentHash>, ours: Option<ContentHash>) -> bool {
    matches!((theirs, ours), (Some(t), Some(o)) if t != o)
}

/// The `after` argument of `SYNC_READ`: log entries after the served version, or none (`-1`)
/// when nothing is loaded (a full fetch follows anyway).
pub(crate) fn log_after(state: &State<'_>) -> i64 {
    match state.position {
        Some(p) => i64::try_from(p.version).unwrap_or(i64::MAX),
        None => -1,
    }
}

/// `meta` that may be applied: ours, complete, with an epoch and a version.
fn accept(cluster_id: &str, meta: &Meta) -> Result<(u64, u64), Keep> {
    match (&meta.cluster_id, meta.epoch, meta.version) {
        (None, _, _) => Err(Keep::NotConfirmed(Cause::RedisEmpty)),
        (Some(c), _, _) if c != cluster_id => Err(Keep::Refused(Cause::ForeignRedis)),
        (Some(_), Some(epoch), Some(version)) if meta.complete => Ok((epoch, version)),
        (Some(_), _, _) => Err(Keep::NotConfirmed(Cause::RedisIncomplete)),
    }
}

/// `relay_at` older than three relay intervals by Redis's own clock (no skew with ours); a
/// missing beat or clock counts as down.
fn relay_down(meta: &Meta, now: Option<f64>) -> bool {
    match (now, meta.relay_at) {
        (Some(now), Some(at)) => {
            let interval_ms = meta.relay_interval_ms.unwrap_or(DEFAULT_RELAY_INTERVAL_MS);
            now - at > RELAY_MISSED_BEATS * interval_ms as f64 / 1e3
        }
        _ => true,
    }
}

/// The changes from `from` to `to` when the log holds exactly the versions in between, all of
/// `to`'s epoch, with the version that last changed each key.
#[allow(clippy::type_complexity)]
fn catch_up(
    from: Position,
    to: Position,
    read: &SyncRead,
) -> Result<(BTreeMap<String, Value>, BTreeMap<String, u64>), FetchReason> {
    let mut changes = BTreeMap::new();
    let mut versions = BTreeMap::new();
    let mut expected = from.version + 1;
    let mut past_the_end = false;
    for entry in &read.log {
        if entry.version != expected || entry.epoch != to.epoch {
            return Err(FetchReason::LogGap);
        }
        if entry.version > to.version {
            past_the_end = true;
            break;
        }
        for (key, value) in &entry.changes {
            changes.insert(key.clone(), value.clone());
            versions.insert(key.clone(), entry.version);
        }
        expected += 1;
    }
    // The damaged entry is where the log stopped; it matters unless every needed entry came first.
    if read.log_damaged && !past_the_end {
        return Err(FetchReason::LogDamaged);
    }
    if expected != to.version + 1 {
        return Err(FetchReason::LogGap);
    }
    Ok((changes, versions))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::redis::{Item, LogEntry};

    const US: &str = "prod";

    fn at(epoch: u64, version: u64) -> Option<Position> {
        Some(Position::new(epoch, version))
    }

    /// A complete image of ours, with the relay's beat one second old by Redis's clock.
    fn ours(epoch: u64, version: u64) -> Meta {
        Meta {
            cluster_id: Some(US.into()),
            epoch: Some(epoch),
            version: Some(version),
            complete: true,
            relay_at: Some(999.0),
            count: Some(2),
            relay_interval_ms: Some(1000),
            ..Meta::default()
        }
    }

    fn entry(epoch: u64, version: u64, changes: Value) -> LogEntry {
        let Value::Object(changes) = changes else {
            panic!("changes must be an object")
        };
        LogEntry {
            version,
            epoch,
            changes,
        }
    }

    fn read(meta: Meta, log: Vec<LogEntry>) -> SyncRead {
        SyncRead {
            meta,
            time: Some(1000.0),
            log,
            log_damaged: false,
        }
    }

    fn versions(of: &[(&str, u64)]) -> BTreeMap<String, u64> {
        of.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn changes(v: Value) -> BTreeMap<String, Value> {
        let Value::Object(m) = v else {
            panic!("an object")
        };
        m.into_iter().collect()
    }

    #[test]
    fn a_round_refuses_what_must_never_be_applied() {
        let flushed = Meta::default();
        let foreign = Meta {
            cluster_id: Some("staging".into()),
            ..ours(1, 9)
        };
        let rebuilding = Meta {
            complete: false,
            ..ours(1, 9)
        };
        let no_version = Meta {
            version: None,
            ..ours(1, 9)
        };
        let no_epoch = Meta {
            epoch: None,
            ..ours(1, 9)
        };
        let rows: Vec<(&str, Option<Position>, Meta, Keep)> = vec![
            (
                "flushed Redis, data served",
                at(1, 5),
                flushed.clone(),
                Keep::NotConfirmed(Cause::RedisEmpty),
            ),
            (
                "flushed Redis, nothing loaded",
                None,
                flushed,
                Keep::NotConfirmed(Cause::RedisEmpty),
            ),
            (
                "foreign Redis",
                at(1, 5),
                foreign.clone(),
                Keep::Refused(Cause::ForeignRedis),
            ),
            (
                "foreign Redis at cold start",
                None,
                foreign,
                Keep::Refused(Cause::ForeignRedis),
            ),
            (
                "a rebuild in progress (not complete)",
                at(1, 5),
                rebuilding,
                Keep::NotConfirmed(Cause::RedisIncomplete),
            ),
            (
                "complete without a version",
                at(1, 5),
                no_version,
                Keep::NotConfirmed(Cause::RedisIncomplete),
            ),
            (
                "complete without an epoch",
                None,
                no_epoch,
                Keep::NotConfirmed(Cause::RedisIncomplete),
            ),
            (
                "older epoch (Redis restored from an old backup)",
                at(2, 5),
                ours(1, 90),
                Keep::Refused(Cause::RedisOlderEpoch),
            ),
            (
                "Redis behind in our epoch (failover to a lagging replica)",
                at(1, 5),
                ours(1, 4),
                Keep::NotConfirmed(Cause::RedisBehind),
            ),
            (
                "Redis empty-but-ours at version 0 while we serve 5",
                at(1, 5),
                ours(1, 0),
                Keep::NotConfirmed(Cause::RedisBehind),
            ),
        ];
        for (name, position, meta, keep) in rows {
            let state = State {
                cluster_id: US,
                position,
                hash: None,
            };
            let round = plan(&state, &read(meta, vec![]));
            assert_eq!(round.action, Action::Keep(keep), "{name}");
            let judged = !matches!(
                keep.cause(),
                Cause::RedisEmpty | Cause::ForeignRedis | Cause::RedisIncomplete
            );
            assert_eq!(round.relay_down.is_some(), judged, "{name}");
        }
    }

    #[test]
    fn a_round_fetches_confirms_or_catches_up() {
        let repaired = Meta {
            generation: 1,
            ..ours(1, 5)
        };
        let rows: Vec<(&str, Option<Position>, SyncRead, Action)> = vec![
            (
                "nothing loaded yet",
                None,
                read(ours(1, 5), vec![]),
                Action::FullFetch(FetchReason::NoData),
            ),
            (
                "a higher epoch (after reconcile --force and a rebuild)",
                at(1, 50),
                read(ours(2, 3), vec![]),
                Action::FullFetch(FetchReason::NewerEpoch),
            ),
            (
                "same position",
                at(1, 5),
                read(ours(1, 5), vec![]),
                Action::InSync,
            ),
            (
                "same version, new generation (anti-entropy repaired Redis)",
                at(1, 5),
                read(repaired, vec![]),
                Action::FullFetch(FetchReason::Generation),
            ),
            (
                "one version ahead, the log has it",
                at(1, 5),
                read(ours(1, 6), vec![entry(1, 6, json!({"A": 1}))]),
                Action::CatchUp {
                    to: Position::new(1, 6),
                    changes: changes(json!({"A": 1})),
                    versions: versions(&[("A", 6)]),
                },
            ),
            (
                "lost messages: three versions ahead, merged in order, null resets",
                at(1, 5),
                read(
                    ours(1, 8),
                    vec![
                        entry(1, 6, json!({"A": 1, "B": 2})),
                        entry(1, 7, json!({"A": 3})),
                        entry(1, 8, json!({"B": null})),
                    ],
                ),
                Action::CatchUp {
                    to: Position::new(1, 8),
                    changes: changes(json!({"A": 3, "B": null})),
                    // Each key's last change: A at 7, B (reset) at 8.
                    versions: versions(&[("A", 7), ("B", 8)]),
                },
            ),
            (
                "the log was trimmed: it starts after our version",
                at(1, 5),
                read(
                    ours(1, 8),
                    vec![entry(1, 7, json!({})), entry(1, 8, json!({}))],
                ),
                Action::FullFetch(FetchReason::LogGap),
            ),
            (
                "a gap in the log",
                at(1, 5),
                read(
                    ours(1, 8),
                    vec![entry(1, 6, json!({})), entry(1, 8, json!({}))],
                ),
                Action::FullFetch(FetchReason::LogGap),
            ),
            (
                "the log ends before meta's version",
                at(1, 5),
                read(
                    ours(1, 8),
                    vec![entry(1, 6, json!({})), entry(1, 7, json!({}))],
                ),
                Action::FullFetch(FetchReason::LogGap),
            ),
            (
                "no log at all (more than CATCH_UP_MAX behind, or emptied)",
                at(1, 5),
                read(ours(1, 8), vec![]),
                Action::FullFetch(FetchReason::LogGap),
            ),
            (
                "an entry of another epoch",
                at(1, 5),
                read(ours(1, 6), vec![entry(2, 6, json!({}))]),
                Action::FullFetch(FetchReason::LogGap),
            ),
        ];
        for (name, position, read, action) in rows {
            let state = State {
                cluster_id: US,
                position,
                hash: None,
            };
            assert_eq!(plan(&state, &read).action, action, "{name}");
        }
    }

    #[test]
    fn a_damaged_log_entry_falls_back_to_a_full_fetch() {
        let state = State {
            cluster_id: US,
            position: at(1, 5),
            hash: None,
        };
        let mut damaged = read(ours(1, 7), vec![entry(1, 6, json!({"A": 1}))]);
        damaged.log_damaged = true;
        assert_eq!(
            plan(&state, &damaged).action,
            Action::FullFetch(FetchReason::LogDamaged)
        );
        // Damage after every needed entry (and one past meta's version) does not matter.
        let mut past = read(
            ours(1, 6),
            vec![entry(1, 6, json!({"A": 1})), entry(1, 7, json!({}))],
        );
        past.log_damaged = true;
        assert_eq!(
            plan(&state, &past).action,
            Action::CatchUp {
                to: Position::new(1, 6),
                changes: changes(json!({"A": 1})),
                versions: versions(&[("A", 6)]),
            }
        );
    }

    #[test]
    fn the_relay_is_down_after_three_of_its_own_intervals() {
        /// (name, relay_at, relay_interval_ms, Redis TIME, down)
        type Row = (&'static str, Option<f64>, Option<u64>, Option<f64>, bool);
        let rows: Vec<Row> = vec![
            ("beat 1 s ago", Some(999.0), Some(1000), Some(1000.0), false),
            (
                "beat exactly 3 intervals ago",
                Some(997.0),
                Some(1000),
                Some(1000.0),
                false,
            ),
            (
                "beat 3.1 s ago",
                Some(996.9),
                Some(1000),
                Some(1000.0),
                true,
            ),
            (
                "fast relay, 1.6 s silent",
                Some(998.4),
                Some(500),
                Some(1000.0),
                true,
            ),
            (
                "slow relay, 20 s silent",
                Some(980.0),
                Some(10_000),
                Some(1000.0),
                false,
            ),
            (
                "no interval: 1 s assumed",
                Some(996.0),
                None,
                Some(1000.0),
                true,
            ),
            ("no beat yet", None, Some(1000), Some(1000.0), true),
            ("no Redis clock", Some(999.0), Some(1000), None, true),
        ];
        let state = State {
            cluster_id: US,
            position: at(1, 5),
            hash: None,
        };
        for (name, relay_at, interval, time, down) in rows {
            let mut r = read(
                Meta {
                    relay_at,
                    relay_interval_ms: interval,
                    ..ours(1, 5)
                },
                vec![],
            );
            r.time = time;
            let round = plan(&state, &r);
            assert_eq!(round.relay_down, Some(down), "{name}");
            assert_eq!(round.action, Action::InSync, "{name}: values still apply");
        }
    }

    fn image(meta: Meta, items: usize) -> Image {
        Image {
            meta,
            items: (0..items)
                .map(|i| {
                    (
                        format!("K{i}"),
                        Item {
                            value: json!(i),
                            version: 1,
                        },
                    )
                })
                .collect(),
            bad_items: 0,
            fields: items,
        }
    }

    #[test]
    fn a_full_read_is_applied_only_whole_and_never_older() {
        let rebuilding = Meta {
            complete: false,
            ..ours(2, 1)
        };
        let foreign = Meta {
            cluster_id: Some("staging".into()),
            ..ours(1, 9)
        };
        let no_count = Meta {
            count: None,
            ..ours(1, 9)
        };
        let repaired = Meta {
            generation: 4,
            ..ours(1, 5)
        };
        let mut poisoned = image(ours(1, 9), 1);
        poisoned.bad_items = 1;
        poisoned.fields = 2;
        let rows: Vec<(&str, Option<Position>, Image, ImageAction)> = vec![
            (
                "cold start",
                None,
                image(ours(1, 9), 2),
                ImageAction::Apply(Position::new(1, 9)),
            ),
            (
                "newer version",
                at(1, 5),
                image(ours(1, 9), 2),
                ImageAction::Apply(Position::new(1, 9)),
            ),
            (
                "a rebuild between the reads moved Redis to a higher epoch",
                at(1, 5),
                image(ours(2, 1), 2),
                ImageAction::Apply(Position::new(2, 1)),
            ),
            (
                "a rebuild between the reads is still in progress",
                at(1, 5),
                image(rebuilding, 0),
                ImageAction::Keep(Keep::NotConfirmed(Cause::RedisIncomplete)),
            ),
            (
                "flushed between the reads",
                at(1, 5),
                image(Meta::default(), 0),
                ImageAction::Keep(Keep::NotConfirmed(Cause::RedisEmpty)),
            ),
            (
                "foreign",
                None,
                image(foreign, 2),
                ImageAction::Keep(Keep::Refused(Cause::ForeignRedis)),
            ),
            (
                "eviction: fewer items than meta.count",
                at(1, 5),
                image(ours(1, 9), 1),
                ImageAction::Incomplete,
            ),
            (
                "no count",
                at(1, 5),
                image(no_count, 2),
                ImageAction::Incomplete,
            ),
            (
                "poisoned items still count as fields",
                at(1, 5),
                poisoned,
                ImageAction::Apply(Position::new(1, 9)),
            ),
            (
                "went back within the epoch between the reads",
                at(1, 10),
                image(ours(1, 9), 2),
                ImageAction::Behind,
            ),
            (
                "an older epoch",
                at(2, 1),
                image(ours(1, 9), 2),
                ImageAction::Behind,
            ),
            (
                "same version, new generation",
                at(1, 5),
                image(repaired, 2),
                ImageAction::Apply(Position {
                    epoch: 1,
                    version: 5,
                    generation: 4,
                }),
            ),
        ];
        for (name, position, image, action) in rows {
            let state = State {
                cluster_id: US,
                position,
                hash: None,
            };
            assert_eq!(plan_image(&state, &image), action, "{name}");
        }
    }

    #[test]
    fn hints_resync_when_newer_unreadable_or_at_our_own_position() {
        let hint = |epoch, version| Hint::parse(&format!("{epoch}:{version}"));
        let rows: Vec<(&str, Option<Position>, Option<Hint>, HintAction)> = vec![
            ("nothing loaded", None, hint(1, 1), HintAction::Newer),
            ("newer version", at(1, 5), hint(1, 6), HintAction::Newer),
            (
                "newer epoch, lower version",
                at(1, 5),
                hint(2, 1),
                HintAction::Newer,
            ),
            (
                "the same (a rebuild's PUBLISH)",
                at(1, 5),
                hint(1, 5),
                HintAction::Same,
            ),
            ("older", at(1, 5), hint(1, 4), HintAction::Duplicate),
            ("older epoch", at(2, 1), hint(1, 9), HintAction::Duplicate),
            ("unparsable", at(1, 5), None, HintAction::Invalid),
            (
                "unparsable, nothing loaded",
                None,
                None,
                HintAction::Invalid,
            ),
        ];
        for (name, position, hint, action) in rows {
            let state = State {
                cluster_id: US,
                position,
                hash: None,
            };
            assert_eq!(plan_hint(&state, hint.as_ref()), action, "{name}");
        }
        let loaded = State {
            cluster_id: US,
            position: at(1, 5),
            hash: None,
        };
        assert_eq!(log_after(&loaded), 5);
        assert_eq!(
            log_after(&State {
                cluster_id: US,
                position: None,
                hash: None,
            }),
            -1
        );
    }

    /// The fault suite's cases as decisions: only exactly the next version of this cluster,
    /// epoch and generation, with a content hash, is applied from the hint; the loop then keeps
    /// the result only if the hash adds up.
    #[test]
    fn an_inlined_changeset_is_applied_only_exactly_one_version_behind() {
        const H: &str = "00000000000000aa";
        let p = |cluster: &str| format!(r#" {{"cluster_id":"{cluster}","changes":{{"S":"C"}}}}"#);
        let ours_payload = p(US);
        let msg = |head: &str, payload: &str| Hint::parse(&format!("{head}{payload}"));
        let apply = |version| HintAction::Apply {
            to: Position::new(1, version),
            changes: changes(json!({"S": "C"})),
            hash: ContentHash(0xaa),
        };
        let mine = Some(ContentHash(0x11));
        let rows: Vec<(&str, Option<Hint>, HintAction)> = vec![
            (
                "the next version",
                msg(&format!("1:6:0:{H}"), &ours_payload),
                apply(6),
            ),
            (
                "a lost message before it: a gap, so the log",
                msg(&format!("1:7:0:{H}"), &ours_payload),
                HintAction::Newer,
            ),
            (
                "duplicated (already applied)",
                msg(&format!("1:5:0:{H}"), &ours_payload),
                HintAction::Newer,
            ),
            (
                "duplicated, same hash: verified by a round",
                msg("1:5:0:0000000000000011", &ours_payload),
                HintAction::Same,
            ),
            (
                "out of order: the older one after the newer",
                msg(&format!("1:4:0:{H}"), &ours_payload),
                HintAction::Duplicate,
            ),
            (
                "an old epoch",
                msg(&format!("0:6:0:{H}"), &ours_payload),
                HintAction::Duplicate,
            ),
            (
                "a newer epoch: never from a hint",
                msg(&format!("2:6:0:{H}"), &ours_payload),
                HintAction::Newer,
            ),
            (
                "a foreign cluster id",
                msg(&format!("1:6:0:{H}"), &p("staging")),
                HintAction::Newer,
            ),
            (
                "another generation",
                msg(&format!("1:6:1:{H}"), &ours_payload),
                HintAction::Newer,
            ),
            (
                "no payload (too big)",
                msg(&format!("1:6:0:{H}"), ""),
                HintAction::Newer,
            ),
            (
                "a payload that does not decode",
                msg(&format!("1:6:0:{H}"), " {\"changes\":1}"),
                HintAction::Newer,
            ),
            ("the old two-field form", msg("1:6", ""), HintAction::Newer),
            (
                "a future format",
                msg(&format!("1:6:0:{H}:x"), &ours_payload),
                HintAction::Invalid,
            ),
        ];
        for (name, hint, action) in rows {
            let state = State {
                cluster_id: US,
                position: at(1, 5),
                hash: mine,
            };
            assert_eq!(plan_hint(&state, hint.as_ref()), action, "{name}");
        }
        // Without a hash of our own (a disk file from before hashes), never from a hint.
        let unhashed = State {
            cluster_id: US,
            position: at(1, 5),
            hash: None,
        };
        assert_eq!(
            plan_hint(
                &unhashed,
                msg(&format!("1:6:0:{H}"), &ours_payload).as_ref()
            ),
            HintAction::Newer
        );
    }

    #[test]
    fn an_applied_changeset_is_kept_only_when_the_hash_adds_up() {
        let (b, c, t) = (json!("B"), json!("C"), json!(5));
        let before = ContentHash::of([("S", &b), ("T", &t)]);
        let ch = changes(json!({"S": "C", "T": null, "U": 1}));
        let old = |k: &str| match k {
            "S" => Some(&b),
            "T" => Some(&t),
            _ => None,
        };
        let after = hash_after_changes(before, &ch, old);
        assert_eq!(after, ContentHash::of([("S", &c), ("U", &json!(1))]));
        assert!(verify_applied(Some(after), after));
        assert!(
            !verify_applied(Some(before), after),
            "a wrong hash falls back to the log"
        );
        assert!(verify_applied(None, after), "an image from before hashes");
    }

    #[test]
    fn same_position_other_content_is_fetched_whole() {
        let meta = Meta {
            content_hash: Some(ContentHash(0xc)),
            ..ours(1, 3)
        };
        let state = |hash| State {
            cluster_id: US,
            position: at(1, 3),
            hash,
        };
        let action = |hash| plan(&state(hash), &read(meta.clone(), vec![])).action;
        assert_eq!(
            action(Some(ContentHash(0xb))),
            Action::FullFetch(FetchReason::ContentHash),
            "a snapshot ahead of a restored ledger: S=B at v3 where the ledger has S=C"
        );
        assert_eq!(action(Some(ContentHash(0xc))), Action::InSync);
        assert_eq!(action(None), Action::InSync, "nothing to compare with");
    }
}
