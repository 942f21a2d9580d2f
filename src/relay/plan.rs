//! The relay's decisions (DESIGN §4, "Relay/reconciler"), as plain functions without I/O.
//!
//! - [`plan`]: what a namespace needs, from the ledger's state and Redis's `meta`;
//! - [`plan_adopt`]: whether a full read of Redis is an image an empty ledger may adopt;
//! - [`after_apply`]: what an `APPLY` outcome means for the replay;
//! - [`redis_ahead`]: a complete image of ours ahead of the ledger (a restored ledger), shared
//!   with the admin's start-up check;
//! - [`is_silent`]: a heartbeat to prune from the fleet hash.
//!
//! The rules, in order: another deployment's Redis is never written (alarm); a newer leader's
//! term fences this relay; an empty ledger takes over a complete image of ours (adopt) instead
//! of wiping it; a complete image of ours ahead of the ledger is never overwritten
//! (`ledger_behind` until an operator bumps the epoch); a Redis that is not a complete image of
//! ours at the ledger's epoch (empty, flushed, incomplete, evicted, other epoch) is rebuilt; a
//! Redis behind in the same epoch is replayed; otherwise anti-entropy compares (on its tick) or
//! nothing is done.

use chrono::{DateTime, Utc};

use crate::content_hash::ContentHash;
use crate::ledger::NamespaceState;
use crate::redis::{ApplyOutcome, Heartbeat, Image, Meta};

/// A heartbeat's interval when it does not say (sidecars before `interval_ms`).
const DEFAULT_HEARTBEAT_INTERVAL_MS: i64 = 5000;
/// Heartbeats silent for this many of their intervals are pruned.
const SILENT_INTERVALS: i64 = 10;

/// What the relay knows when it decides for one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State<'a> {
    pub cluster_id: &'a str,
    /// This leader's fencing term.
    pub term: u64,
    pub ledger: NamespaceState,
    /// An empty ledger may still adopt the image (once per round: after an adoption that did
    /// not happen, the round goes on without it).
    pub may_adopt: bool,
    /// This is the anti-entropy tick.
    pub anti_entropy: bool,
}

/// What a namespace needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Another deployment's data: never written; raise the alarm.
    Foreign { redis_cluster_id: String },
    /// A newer leader has written: stop writing here.
    Fenced { redis_term: u64 },
    /// The ledger is empty and Redis holds a complete image of ours: read it and adopt it, then
    /// decide again with the adopted state.
    Adopt,
    /// Redis is ahead of the ledger (a restored ledger): refuse writes, never overwrite.
    LedgerBehind,
    /// Write the ledger's image into temp keys and swap it in.
    Rebuild,
    /// Apply the ledger's changesets after `from` one by one; Redis's image has content hash
    /// `hash` (each changeset moves it by its own keys).
    Replay { from: u64, hash: ContentHash },
    /// Compare every item with the ledger (anti-entropy); Redis is at `at`.
    Check { at: u64 },
    /// Redis is level with the ledger at `at`.
    Nothing { at: u64 },
}

impl Action {
    /// Whether Redis and the ledger agree enough for writes to go on (the `ledger_behind` mark
    /// is lifted).
    pub(crate) fn is_level(&self) -> bool {
        matches!(
            self,
            Action::Rebuild | Action::Replay { .. } | Action::Check { .. } | Action::Nothing { .. }
        )
    }
}

/// Decides what a namespace needs.
pub(crate) fn plan(state: &State<'_>, meta: &Meta) -> Action {
    if let Some(c) = &meta.cluster_id {
        if c != state.cluster_id {
            return Action::Foreign {
                redis_cluster_id: c.clone(),
            };
        }
    }
    if meta.term > state.term {
        return Action::Fenced {
            redis_term: meta.term,
        };
    }
    let (epoch, version) = (meta.epoch.unwrap_or(0), meta.version.unwrap_or(0));
    let ours = meta.cluster_id.is_some() && meta.complete;
    let ledger = state.ledger;
    if ours && state.may_adopt && ledger.version == 0 && version > 0 && epoch >= ledger.epoch {
        return Action::Adopt;
    }
    if redis_ahead(state.cluster_id, meta, ledger) {
        return Action::LedgerBehind;
    }
    // An image written before content hashes is rebuilt once, so `meta` and the hints carry
    // the hash sidecars compare.
    let hash = match meta.content_hash {
        Some(hash) if ours && epoch == ledger.epoch => hash,
        _ => return Action::Rebuild,
    };
    if version < ledger.version {
        Action::Replay {
            from: version,
            hash,
        }
    } else if state.anti_entropy {
        Action::Check { at: version }
    } else {
        Action::Nothing { at: version }
    }
}

/// A complete image of ours at a higher epoch, or at the same epoch and a higher version, than
/// the ledger: the ledger was restored from an older backup (or is empty under a live Redis).
pub(crate) fn redis_ahead(cluster_id: &str, meta: &Meta, ledger: NamespaceState) -> bool {
    let ours = meta.cluster_id.as_deref() == Some(cluster_id) && meta.complete;
    let (epoch, version) = (meta.epoch.unwrap_or(0), meta.version.unwrap_or(0));
    ours && (epoch > ledger.epoch || (epoch == ledger.epoch && version > ledger.version))
}

/// Whether a full read may be adopted by an empty ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adoption {
    /// Adopt the image's items at this epoch and version.
    Adopt { epoch: u64, version: u64 },
    /// Not a complete image of ours (any more): nothing to adopt.
    NotOurs,
    /// An item is not a valid envelope at or below the image's version.
    Damaged,
    /// Fewer or more items than `meta.count`.
    MissingItems,
}

pub(crate) fn plan_adopt(cluster_id: &str, image: &Image) -> Adoption {
    let meta = &image.meta;
    let (Some(epoch), Some(version)) = (meta.epoch, meta.version) else {
        return Adoption::NotOurs;
    };
    if meta.cluster_id.as_deref() != Some(cluster_id) || !meta.complete {
        return Adoption::NotOurs;
    }
    if image.bad_items > 0 {
        return Adoption::Damaged;
    }
    if meta.count.is_some_and(|c| c != image.items.len() as u64) {
        return Adoption::MissingItems;
    }
    Adoption::Adopt { epoch, version }
}

/// What the replay does after one `APPLY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterApply {
    /// Applied: count it and go on.
    Applied,
    /// Already there: go on.
    Skip,
    /// Cannot apply in order (a gap, no image, another epoch): rebuild instead.
    Rebuild,
    /// Refused (foreign, fenced): stop replaying; the next round decides again.
    Stop,
}

pub(crate) fn after_apply(outcome: ApplyOutcome) -> AfterApply {
    match outcome {
        ApplyOutcome::Ok => AfterApply::Applied,
        ApplyOutcome::Dup => AfterApply::Skip,
        ApplyOutcome::Gap | ApplyOutcome::NotReady | ApplyOutcome::Epoch => AfterApply::Rebuild,
        ApplyOutcome::Foreign | ApplyOutcome::Fenced => AfterApply::Stop,
    }
}

/// Whether a heartbeat (the text in the fleet hash) is silent for more than 10 of its own
/// intervals at `now`; a beat that cannot be read counts as silent.
pub(crate) fn is_silent(beat: &str, now: DateTime<Utc>) -> bool {
    let Ok(beat) = Heartbeat::decode(beat) else {
        return true;
    };
    let interval_ms = beat
        .interval_ms
        .and_then(|i| i64::try_from(i).ok())
        .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL_MS);
    match DateTime::parse_from_rfc3339(&beat.seen_at) {
        Ok(seen) => {
            (now - seen.with_timezone(&Utc)).num_milliseconds()
                > SILENT_INTERVALS.saturating_mul(interval_ms)
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::redis::Item;

    const US: &str = "prod";
    const TERM: u64 = 7;

    fn ledger(epoch: u64, version: u64) -> NamespaceState {
        NamespaceState { epoch, version }
    }

    fn state(ledger: NamespaceState) -> State<'static> {
        State {
            cluster_id: US,
            term: TERM,
            ledger,
            may_adopt: true,
            anti_entropy: false,
        }
    }

    fn ours(epoch: u64, version: u64) -> Meta {
        Meta {
            cluster_id: Some(US.into()),
            epoch: Some(epoch),
            version: Some(version),
            complete: true,
            count: Some(2),
            term: TERM,
            content_hash: Some(HASH),
            ..Meta::default()
        }
    }

    const HASH: ContentHash = ContentHash(7);

    #[test]
    fn every_namespace_gets_one_action() {
        let foreign = Meta {
            cluster_id: Some("staging".into()),
            ..ours(1, 5)
        };
        let foreign_and_newer_term = Meta {
            term: TERM + 1,
            ..foreign.clone()
        };
        let fenced = Meta {
            term: TERM + 1,
            ..ours(1, 5)
        };
        let older_term = Meta {
            term: TERM - 1,
            ..ours(1, 5)
        };
        let incomplete = Meta {
            complete: false,
            ..ours(1, 5)
        };
        let half_meta = Meta {
            cluster_id: None,
            ..ours(1, 5)
        };
        let rows: Vec<(&str, NamespaceState, Meta, Action)> = vec![
            (
                "foreign Redis",
                ledger(1, 5),
                foreign,
                Action::Foreign {
                    redis_cluster_id: "staging".into(),
                },
            ),
            (
                "foreign wins over the term",
                ledger(1, 5),
                foreign_and_newer_term,
                Action::Foreign {
                    redis_cluster_id: "staging".into(),
                },
            ),
            (
                "paused ex-leader: a newer term wrote",
                ledger(1, 9),
                fenced,
                Action::Fenced {
                    redis_term: TERM + 1,
                },
            ),
            (
                "an older leader's term is taken over",
                ledger(1, 5),
                older_term,
                Action::Nothing { at: 5 },
            ),
            (
                "empty ledger under a complete image of ours",
                ledger(1, 0),
                ours(1, 40),
                Action::Adopt,
            ),
            (
                "empty ledger under an image of a higher epoch",
                ledger(1, 0),
                ours(3, 40),
                Action::Adopt,
            ),
            (
                "restored ledger: Redis ahead in the same epoch",
                ledger(1, 5),
                ours(1, 9),
                Action::LedgerBehind,
            ),
            (
                "restored ledger: Redis at a higher epoch",
                ledger(1, 50),
                ours(2, 3),
                Action::LedgerBehind,
            ),
            (
                "flushed Redis",
                ledger(1, 5),
                Meta::default(),
                Action::Rebuild,
            ),
            (
                "flushed Redis, empty ledger",
                ledger(1, 0),
                Meta::default(),
                Action::Rebuild,
            ),
            (
                "incomplete image (a rebuild that died, eviction)",
                ledger(1, 5),
                incomplete,
                Action::Rebuild,
            ),
            (
                "meta without cluster_id",
                ledger(1, 5),
                half_meta,
                Action::Rebuild,
            ),
            (
                "after reconcile --force: Redis at the older epoch",
                ledger(2, 9),
                ours(1, 9),
                Action::Rebuild,
            ),
            (
                "Redis behind (lost APPLY, failover to a lagging replica)",
                ledger(1, 9),
                ours(1, 5),
                Action::Replay {
                    from: 5,
                    hash: HASH,
                },
            ),
            (
                "Redis complete at version 0, ledger ahead",
                ledger(1, 3),
                ours(1, 0),
                Action::Replay {
                    from: 0,
                    hash: HASH,
                },
            ),
            ("level", ledger(1, 5), ours(1, 5), Action::Nothing { at: 5 }),
            (
                "level, but written before content hashes: rebuilt once to carry one",
                ledger(1, 5),
                Meta {
                    content_hash: None,
                    ..ours(1, 5)
                },
                Action::Rebuild,
            ),
            (
                "behind, and written before content hashes",
                ledger(1, 9),
                Meta {
                    content_hash: None,
                    ..ours(1, 5)
                },
                Action::Rebuild,
            ),
            (
                "both empty and complete",
                ledger(1, 0),
                ours(1, 0),
                Action::Nothing { at: 0 },
            ),
        ];
        for (name, ledger, meta, action) in rows {
            assert_eq!(plan(&state(ledger), &meta), action, "{name}");
        }
    }

    #[test]
    fn adoption_is_tried_once_and_anti_entropy_only_on_its_tick() {
        let after_failed_adopt = State {
            may_adopt: false,
            ..state(ledger(1, 0))
        };
        assert_eq!(
            plan(&after_failed_adopt, &ours(1, 40)),
            Action::LedgerBehind,
            "an image that could not be adopted is still never wiped"
        );
        let tick = State {
            anti_entropy: true,
            ..state(ledger(1, 5))
        };
        assert_eq!(plan(&tick, &ours(1, 5)), Action::Check { at: 5 });
        // A round that needs more does that instead of comparing.
        assert_eq!(
            plan(&tick, &ours(1, 3)),
            Action::Replay {
                from: 3,
                hash: HASH
            }
        );
        assert_eq!(plan(&tick, &Meta::default()), Action::Rebuild);
        // Only level actions lift the ledger_behind mark.
        for (action, level) in [
            (Action::Rebuild, true),
            (
                Action::Replay {
                    from: 1,
                    hash: HASH,
                },
                true,
            ),
            (Action::Check { at: 1 }, true),
            (Action::Nothing { at: 1 }, true),
            (Action::Adopt, false),
            (Action::LedgerBehind, false),
            (Action::Fenced { redis_term: 9 }, false),
            (
                Action::Foreign {
                    redis_cluster_id: "x".into(),
                },
                false,
            ),
        ] {
            assert_eq!(action.is_level(), level, "{action:?}");
        }
    }

    #[test]
    fn the_start_up_check_and_the_relay_agree_on_redis_ahead() {
        let rows: Vec<(&str, Meta, NamespaceState, bool)> = vec![
            ("same version", ours(1, 5), ledger(1, 5), false),
            ("higher version", ours(1, 6), ledger(1, 5), true),
            ("higher epoch", ours(2, 1), ledger(1, 5), true),
            ("lower epoch", ours(1, 90), ledger(2, 1), false),
            ("behind", ours(1, 4), ledger(1, 5), false),
            ("empty ledger", ours(1, 4), ledger(1, 0), true),
            (
                "incomplete",
                Meta {
                    complete: false,
                    ..ours(1, 9)
                },
                ledger(1, 5),
                false,
            ),
            (
                "foreign",
                Meta {
                    cluster_id: Some("staging".into()),
                    ..ours(1, 9)
                },
                ledger(1, 5),
                false,
            ),
            ("flushed", Meta::default(), ledger(1, 5), false),
        ];
        for (name, meta, ledger, ahead) in rows {
            assert_eq!(redis_ahead(US, &meta, ledger), ahead, "{name}");
        }
    }

    fn image(meta: Meta, items: usize, bad_items: usize) -> Image {
        let items: BTreeMap<String, Item> = (0..items)
            .map(|i| {
                (
                    format!("K{i}"),
                    Item {
                        value: json!(i),
                        version: 1,
                    },
                )
            })
            .collect();
        Image {
            fields: items.len() + bad_items,
            meta,
            items,
            bad_items,
        }
    }

    #[test]
    fn only_a_whole_image_of_ours_is_adopted() {
        let rows: Vec<(&str, Image, Adoption)> = vec![
            (
                "whole",
                image(ours(2, 40), 2, 0),
                Adoption::Adopt {
                    epoch: 2,
                    version: 40,
                },
            ),
            (
                "no count: the items are all there is",
                image(
                    Meta {
                        count: None,
                        ..ours(1, 40)
                    },
                    3,
                    0,
                ),
                Adoption::Adopt {
                    epoch: 1,
                    version: 40,
                },
            ),
            (
                "flushed between the reads",
                image(Meta::default(), 0, 0),
                Adoption::NotOurs,
            ),
            (
                "a rebuild started between the reads",
                image(
                    Meta {
                        complete: false,
                        ..ours(1, 40)
                    },
                    2,
                    0,
                ),
                Adoption::NotOurs,
            ),
            (
                "foreign",
                image(
                    Meta {
                        cluster_id: Some("staging".into()),
                        ..ours(1, 40)
                    },
                    2,
                    0,
                ),
                Adoption::NotOurs,
            ),
            (
                "a poisoned item",
                image(ours(1, 40), 1, 1),
                Adoption::Damaged,
            ),
            (
                "eviction: an item missing",
                image(ours(1, 40), 1, 0),
                Adoption::MissingItems,
            ),
        ];
        for (name, image, adoption) in rows {
            assert_eq!(plan_adopt(US, &image), adoption, "{name}");
        }
    }

    #[test]
    fn apply_outcomes_drive_the_replay() {
        let rows = [
            (ApplyOutcome::Ok, AfterApply::Applied),
            (ApplyOutcome::Dup, AfterApply::Skip),
            (ApplyOutcome::Gap, AfterApply::Rebuild),
            (ApplyOutcome::NotReady, AfterApply::Rebuild),
            (ApplyOutcome::Epoch, AfterApply::Rebuild),
            (ApplyOutcome::Foreign, AfterApply::Stop),
            (ApplyOutcome::Fenced, AfterApply::Stop),
        ];
        for (outcome, then) in rows {
            assert_eq!(after_apply(outcome), then, "{outcome}");
        }
    }

    #[test]
    fn silent_heartbeats_are_pruned_after_ten_of_their_intervals() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let beat = |seen_at: &str, interval_ms: Option<u64>| {
            Heartbeat {
                version: 1,
                epoch: 1,
                schema_hash: "h".into(),
                status: "ok".into(),
                seen_at: seen_at.into(),
                interval_ms,
                ..Heartbeat::default()
            }
            .encode()
            .expect("encode")
        };
        let rows: Vec<(&str, String, bool)> = vec![
            ("fresh", beat("2026-01-01T00:00:59.000Z", Some(1000)), false),
            (
                "9 s silent at 1 s",
                beat("2026-01-01T00:00:51.000Z", Some(1000)),
                false,
            ),
            (
                "11 s silent at 1 s",
                beat("2026-01-01T00:00:49.000Z", Some(1000)),
                true,
            ),
            (
                "40 s silent at 5 s (default)",
                beat("2026-01-01T00:00:20.000Z", None),
                false,
            ),
            (
                "51 s silent at 5 s (default)",
                beat("2026-01-01T00:00:09.000Z", None),
                true,
            ),
            ("unreadable time", beat("yesterday", Some(1000)), true),
            ("not a heartbeat", "{\"seen_at\":1}".into(), true),
            ("not JSON", "x".into(), true),
        ];
        for (name, text, silent) in rows {
            assert_eq!(is_silent(&text, now), silent, "{name}");
        }
    }
}
