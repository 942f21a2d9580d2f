//! The one behaviour suite every [`Ledger`] implementation must pass.
//!
//! `run(fresh)` calls `fresh()` for a new, empty ledger before each check. The embedded ledger
//! runs it in its unit tests; the PostgreSQL ledger runs it against a real server. A check
//! panics with a message naming the promise that broke.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{
    ChangeMeta, CommitRequest, CurrentValues, HistoryQuery, Ledger, LedgerError, NamespaceState,
    StoredValue,
};

const NS: &str = "demo";

/// A `ChangeMeta` with an actor and a comment.
pub fn meta(actor: &str, comment: &str) -> ChangeMeta {
    ChangeMeta {
        actor: actor.to_owned(),
        comment: comment.to_owned(),
        ..ChangeMeta::default()
    }
}

fn set(changes: &[(&str, Option<Value>)]) -> CommitRequest {
    CommitRequest {
        namespace: NS.into(),
        changes: changes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        meta: meta("alice", "test"),
        ..CommitRequest::default()
    }
}

/// Runs every check, each on a fresh ledger from `fresh`.
pub async fn run<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Ledger>>,
{
    new_namespaces_start_at_epoch_one_version_zero(fresh().await).await;
    commits_get_gap_free_versions_and_record_old_and_new(fresh().await).await;
    a_stale_expected_version_is_a_conflict_and_writes_nothing(fresh().await).await;
    expected_key_versions_only_conflict_on_those_keys(fresh().await).await;
    null_resets_a_key_to_its_default(fresh().await).await;
    a_write_that_changes_nothing_creates_no_version(fresh().await).await;
    always_write_keys_are_written_even_when_equal(fresh().await).await;
    idempotency_keys_replay_the_first_outcome(fresh().await).await;
    history_filters_and_pages_newest_first(fresh().await).await;
    history_filters_by_comment_text_and_time(fresh().await).await;
    defaults_in_effect_are_recorded_with_changes_from_and_to_the_default(fresh().await).await;
    changesets_and_states_can_be_looked_up_by_version(fresh().await).await;
    the_relay_feed_returns_changesets_in_order(fresh().await).await;
    unknown_namespaces_are_refused(fresh().await).await;
    concurrent_writers_lose_no_update_and_leave_no_gap(fresh().await).await;
    bumping_the_epoch_keeps_version_and_history(fresh().await).await;
    a_namespace_behind_redis_refuses_commits_until_lifted(fresh().await).await;
    an_empty_namespace_adopts_an_image_once(fresh().await).await;
}

async fn new_namespaces_start_at_epoch_one_version_zero(l: Arc<dyn Ledger>) {
    let state = l.ensure_namespace(NS).await.expect("ensure");
    assert_eq!(
        state,
        NamespaceState {
            epoch: 1,
            version: 0
        }
    );
    assert_eq!(
        l.ensure_namespace(NS).await.expect("ensure twice"),
        state,
        "ensure_namespace must be idempotent"
    );
    let current = l.current(NS).await.expect("current");
    assert!(current.values.is_empty());
    assert!(l.ping().await.is_ok());
    assert!(!l.cluster_id().is_empty());
}

async fn commits_get_gap_free_versions_and_record_old_and_new(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    let mut req = set(&[("A", Some(json!(1))), ("B", Some(json!("x")))]);
    req.meta = ChangeMeta {
        actor: "alice".into(),
        comment: "first".into(),
        request_id: "req-1".into(),
        token_id: Some("tok-1".into()),
        client_ip: Some("10.0.0.1".into()),
        user_agent: Some("curl/8".into()),
    };
    let first = l.commit(req.clone()).await.expect("commit 1");
    assert_eq!(
        first.state,
        NamespaceState {
            epoch: 1,
            version: 1
        }
    );
    assert_eq!(first.changes.len(), 2, "one changeset may change many keys");
    assert!(!first.replayed);
    let second = l
        .commit(set(&[("A", Some(json!(2)))]))
        .await
        .expect("commit 2");
    assert_eq!(second.state.version, 2, "versions are gap-free");
    assert_eq!(second.changes[0].old, Some(json!(1)));
    assert_eq!(second.changes[0].new, Some(json!(2)));
    let current = l.current(NS).await.expect("current");
    assert_eq!(current.state.version, 2);
    assert_eq!(
        current.values.get("A"),
        Some(&StoredValue {
            value: Some(json!(2)),
            version: 2
        })
    );
    assert_eq!(current.values.get("B").map(|s| s.version), Some(1));
    let cs = l
        .changeset(NS, 1)
        .await
        .expect("changeset")
        .expect("exists");
    assert_eq!(cs.meta, req.meta, "who, why, from where are kept");
    assert_eq!(cs.epoch, 1);
}

async fn a_stale_expected_version_is_a_conflict_and_writes_nothing(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    l.commit(set(&[("A", Some(json!(1)))]))
        .await
        .expect("commit");
    let mut req = set(&[("A", Some(json!(9))), ("B", Some(json!(9)))]);
    req.expected_version = Some(0);
    match l.commit(req).await {
        Err(LedgerError::VersionConflict { expected, actual }) => {
            assert_eq!((expected, actual), (0, 1));
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
    let current = l.current(NS).await.expect("current");
    assert_eq!(current.state.version, 1, "a conflict writes nothing");
    assert!(!current.values.contains_key("B"));
    let mut req = set(&[("A", Some(json!(3)))]);
    req.expected_version = Some(1);
    assert_eq!(l.commit(req).await.expect("commit").state.version, 2);
}

async fn expected_key_versions_only_conflict_on_those_keys(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    l.commit(set(&[("A", Some(json!(1)))])).await.expect("v1");
    l.commit(set(&[("B", Some(json!(1)))])).await.expect("v2");
    // Operator 1 saw A at version 1: B changed since, but that does not matter to them.
    let mut req = set(&[("A", Some(json!(2)))]);
    req.expected_keys = BTreeMap::from([("A".to_owned(), 1)]);
    assert_eq!(l.commit(req).await.expect("v3").state.version, 3);
    // Operator 2 also saw A at version 1, but A changed at version 3.
    let mut req = set(&[("A", Some(json!(5)))]);
    req.expected_keys = BTreeMap::from([("A".to_owned(), 1)]);
    assert!(matches!(
        l.commit(req).await,
        Err(LedgerError::KeyConflict { ref key, expected: 1, actual: 3 }) if key == "A"
    ));
    // A key never written has version 0.
    let mut req = set(&[("C", Some(json!(1)))]);
    req.expected_keys = BTreeMap::from([("C".to_owned(), 0)]);
    assert_eq!(l.commit(req).await.expect("v4").state.version, 4);
}

async fn null_resets_a_key_to_its_default(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    l.commit(set(&[("A", Some(json!(1)))])).await.expect("set");
    let reset = l.commit(set(&[("A", None)])).await.expect("reset");
    assert_eq!(reset.changes[0].old, Some(json!(1)));
    assert_eq!(reset.changes[0].new, None);
    let current = l.current(NS).await.expect("current");
    assert_eq!(
        current.stored().count(),
        0,
        "a reset key has no stored value"
    );
    assert_eq!(current.values.get("A").map(|s| s.version), Some(2));
}

async fn a_write_that_changes_nothing_creates_no_version(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    l.commit(set(&[("A", Some(json!(1)))])).await.expect("set");
    let same = l.commit(set(&[("A", Some(json!(1)))])).await.expect("same");
    assert!(same.changes.is_empty());
    assert_eq!(same.state.version, 1);
    let reset_unset = l.commit(set(&[("Z", None)])).await.expect("reset unset");
    assert!(reset_unset.changes.is_empty());
    assert_eq!(l.namespace_state(NS).await.expect("state").version, 1);
}

async fn always_write_keys_are_written_even_when_equal(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    l.commit(set(&[("S", Some(json!("hunter2"))), ("A", Some(json!(1)))]))
        .await
        .expect("set");
    // The same values again, with S (a secret) marked: S is a change, A is not.
    let mut same = set(&[("S", Some(json!("hunter2"))), ("A", Some(json!(1)))]);
    same.always_write.insert("S".into());
    let committed = l.commit(same).await.expect("same secret");
    assert_eq!(
        committed.state.version, 2,
        "an always-write key equal to its stored value still makes a version"
    );
    assert_eq!(committed.changes.len(), 1, "{:?}", committed.changes);
    assert_eq!(committed.changes[0].key, "S");
    assert_eq!(committed.changes[0].old, Some(json!("hunter2")));
    assert_eq!(committed.changes[0].new, Some(json!("hunter2")));
    let current = l.current(NS).await.expect("current");
    assert_eq!(current.values.get("S").map(|s| s.version), Some(2));
    assert_eq!(current.values.get("A").map(|s| s.version), Some(1));
    let cs = l
        .changeset(NS, 2)
        .await
        .expect("changeset")
        .expect("exists");
    assert_eq!(cs.changes, committed.changes, "recorded in history too");
    // Unmarked, the same value is still a no-op.
    let plain = l
        .commit(set(&[("S", Some(json!("hunter2")))]))
        .await
        .expect("unmarked");
    assert!(plain.changes.is_empty());
    assert_eq!(l.namespace_state(NS).await.expect("state").version, 2);
}

async fn idempotency_keys_replay_the_first_outcome(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    let mut req = set(&[("A", Some(json!(1)))]);
    req.idempotency_key = Some("key-1".into());
    req.fingerprint = "fp-1".into();
    let first = l.commit(req.clone()).await.expect("first");
    l.commit(set(&[("A", Some(json!(2)))]))
        .await
        .expect("other write");
    let retry = l.commit(req.clone()).await.expect("retry");
    assert!(retry.replayed, "a retry is answered from the first outcome");
    assert_eq!(retry.state, first.state);
    assert_eq!(retry.changes, first.changes);
    assert_eq!(l.namespace_state(NS).await.expect("state").version, 2);
    req.fingerprint = "fp-2".into();
    assert!(matches!(
        l.commit(req).await,
        Err(LedgerError::IdempotencyKeyReused)
    ));
}

async fn history_filters_and_pages_newest_first(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    for i in 1..=5 {
        let mut req = set(&[("A", Some(json!(i)))]);
        if i % 2 == 0 {
            req.changes.push(("B".into(), Some(json!(i))));
            req.meta.actor = "bob".into();
        }
        l.commit(req).await.expect("commit");
    }
    let page = l
        .history(
            NS,
            &HistoryQuery {
                limit: 2,
                ..HistoryQuery::default()
            },
        )
        .await
        .expect("history");
    let versions: Vec<u64> = page.changesets.iter().map(|c| c.version).collect();
    assert_eq!(versions, [5, 4]);
    assert_eq!(page.next, Some(4));
    let page = l
        .history(
            NS,
            &HistoryQuery {
                before: page.next,
                limit: 2,
                ..HistoryQuery::default()
            },
        )
        .await
        .expect("page 2");
    let versions: Vec<u64> = page.changesets.iter().map(|c| c.version).collect();
    assert_eq!(versions, [3, 2]);
    let last = l
        .history(
            NS,
            &HistoryQuery {
                before: Some(2),
                limit: 2,
                ..HistoryQuery::default()
            },
        )
        .await
        .expect("page 3");
    assert_eq!(last.changesets.len(), 1);
    assert_eq!(last.next, None, "no next after the last page");

    let by_key = l
        .history(
            NS,
            &HistoryQuery {
                key: Some("B".into()),
                limit: 10,
                ..HistoryQuery::default()
            },
        )
        .await
        .expect("by key");
    let versions: Vec<u64> = by_key.changesets.iter().map(|c| c.version).collect();
    assert_eq!(versions, [4, 2]);
    assert!(by_key
        .changesets
        .iter()
        .all(|c| c.changes.iter().all(|ch| ch.key == "B")));
    let by_actor = l
        .history(
            NS,
            &HistoryQuery {
                actor: Some("alice".into()),
                limit: 10,
                ..HistoryQuery::default()
            },
        )
        .await
        .expect("by actor");
    let versions: Vec<u64> = by_actor.changesets.iter().map(|c| c.version).collect();
    assert_eq!(versions, [5, 3, 1]);
}

async fn history_filters_by_comment_text_and_time(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    let comments = [
        "Launch the shop",
        "fix typo",
        "100% off_sale",
        "LAUNCH day two",
        "rollback",
    ];
    let mut created = Vec::new();
    for (n, comment) in comments.iter().enumerate() {
        let mut req = set(&[("A", Some(json!(n)))]);
        req.meta.comment = (*comment).to_owned();
        if n == 3 {
            req.meta.actor = "bob".into();
        }
        let v = l.commit(req).await.expect("commit").state.version;
        let cs = l.changeset(NS, v).await.expect("read").expect("committed");
        created.push(cs.created_at);
        // Distinct timestamps, so time bounds fall between changesets.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let versions = |q: HistoryQuery| {
        let l = l.clone();
        async move {
            let page = l.history(NS, &q).await.expect("history");
            page.changesets
                .iter()
                .map(|c| c.version)
                .collect::<Vec<u64>>()
        }
    };
    let text = |t: &str| HistoryQuery {
        text: Some(t.to_owned()),
        limit: 10,
        ..HistoryQuery::default()
    };
    assert_eq!(versions(text("launch")).await, [4, 1], "text ignores case");
    assert_eq!(
        versions(text("100%")).await,
        [3],
        "% is taken literally, not as a wildcard"
    );
    assert_eq!(
        versions(text("o_f")).await,
        Vec::<u64>::new(),
        "_ is literal"
    );
    assert_eq!(versions(text("off_sale")).await, [3]);
    assert_eq!(
        versions(HistoryQuery {
            since: Some(created[1]),
            until: Some(created[3]),
            limit: 10,
            ..HistoryQuery::default()
        })
        .await,
        [3, 2],
        "since is inclusive, until exclusive"
    );
    assert_eq!(
        versions(HistoryQuery {
            text: Some("launch".into()),
            actor: Some("alice".into()),
            since: Some(created[0]),
            key: Some("A".into()),
            limit: 10,
            ..HistoryQuery::default()
        })
        .await,
        [1],
        "filters combine"
    );
    let page = l
        .history(
            NS,
            &HistoryQuery {
                since: Some(created[1]),
                limit: 2,
                ..HistoryQuery::default()
            },
        )
        .await
        .expect("page");
    assert_eq!(page.next, Some(4), "paging with a time filter");
    assert_eq!(
        versions(HistoryQuery {
            since: Some(created[1]),
            before: page.next,
            limit: 2,
            ..HistoryQuery::default()
        })
        .await,
        [3, 2]
    );
}

async fn defaults_in_effect_are_recorded_with_changes_from_and_to_the_default(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    let with_defaults = |changes: &[(&str, Option<Value>)]| {
        let mut req = set(changes);
        req.defaults = BTreeMap::from([
            ("A".to_owned(), json!("Config Manager")),
            ("B".to_owned(), json!(5)),
        ]);
        req
    };
    let first = l
        .commit(with_defaults(&[
            ("A", Some(json!("Shop"))),
            ("B", Some(json!(6))),
        ]))
        .await
        .expect("v1");
    assert_eq!(
        first.changes[0].default,
        Some(json!("Config Manager")),
        "a change from the default records it"
    );
    l.commit(with_defaults(&[("A", Some(json!("Store")))]))
        .await
        .expect("v2");
    l.commit(with_defaults(&[("B", None)])).await.expect("v3");
    let v2 = l.changeset(NS, 2).await.expect("v2").expect("exists");
    assert_eq!(
        v2.changes[0].default, None,
        "value to value: no default to record"
    );
    let v3 = l.changeset(NS, 3).await.expect("v3").expect("exists");
    assert_eq!(
        (v3.changes[0].new.clone(), v3.changes[0].default.clone()),
        (None, Some(json!(5))),
        "a reset records the default it went back to"
    );
    let history = l
        .history(
            NS,
            &HistoryQuery {
                limit: 10,
                ..HistoryQuery::default()
            },
        )
        .await
        .expect("history");
    let v1 = &history.changesets[2];
    assert_eq!(v1.version, 1);
    assert!(
        v1.changes.iter().all(|c| c.default.is_some()),
        "history carries the defaults too: {v1:?}"
    );
    let feed = l.changes_since(NS, 0, 10).await.expect("feed");
    assert_eq!(feed[2].changes, v3.changes, "and the relay feed");
    let mut retry = with_defaults(&[("A", None)]);
    retry.idempotency_key = Some("k".into());
    retry.fingerprint = "f".into();
    let once = l.commit(retry.clone()).await.expect("v4");
    let again = l.commit(retry).await.expect("replayed");
    assert!(again.replayed);
    assert_eq!(again.changes, once.changes, "a replay carries the default");
}

async fn changesets_and_states_can_be_looked_up_by_version(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    l.commit(set(&[("A", Some(json!(1))), ("B", Some(json!(1)))]))
        .await
        .expect("v1");
    l.commit(set(&[("A", Some(json!(2)))])).await.expect("v2");
    l.commit(set(&[("B", None)])).await.expect("v3");
    assert!(l.changeset(NS, 0).await.expect("v0").is_none());
    assert!(l.changeset(NS, 4).await.expect("v4").is_none());
    assert_eq!(
        l.changeset(NS, 2).await.expect("v2").map(|c| c.version),
        Some(2)
    );
    assert_eq!(
        l.state_at(NS, 1).await.expect("at 1"),
        BTreeMap::from([("A".to_owned(), json!(1)), ("B".to_owned(), json!(1))])
    );
    assert_eq!(
        l.state_at(NS, 3).await.expect("at 3"),
        BTreeMap::from([("A".to_owned(), json!(2))])
    );
    assert!(l.state_at(NS, 0).await.expect("at 0").is_empty());
    assert!(matches!(
        l.state_at(NS, 9).await,
        Err(LedgerError::NoSuchVersion(9))
    ));
}

async fn the_relay_feed_returns_changesets_in_order(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    for i in 1..=4 {
        l.commit(set(&[("A", Some(json!(i)))]))
            .await
            .expect("commit");
    }
    let feed = l.changes_since(NS, 1, 2).await.expect("feed");
    let versions: Vec<u64> = feed.iter().map(|c| c.version).collect();
    assert_eq!(versions, [2, 3]);
    assert!(l.changes_since(NS, 4, 10).await.expect("tail").is_empty());
}

async fn unknown_namespaces_are_refused(l: Arc<dyn Ledger>) {
    assert!(matches!(
        l.current("nope").await,
        Err(LedgerError::UnknownNamespace(_))
    ));
    let mut req = set(&[("A", Some(json!(1)))]);
    req.namespace = "nope".into();
    assert!(matches!(
        l.commit(req).await,
        Err(LedgerError::UnknownNamespace(_))
    ));
}

async fn concurrent_writers_lose_no_update_and_leave_no_gap(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    const WRITERS: u64 = 4;
    const EACH: u64 = 15;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..EACH {
                // Read-modify-write of one counter, guarded by expected_version.
                loop {
                    let current = l.current(NS).await.expect("current");
                    let n = current
                        .values
                        .get("COUNTER")
                        .and_then(|s| s.value.as_ref())
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    let mut req = set(&[("COUNTER", Some(json!(n + 1)))]);
                    req.meta.actor = format!("writer-{w}");
                    req.expected_version = Some(current.state.version);
                    match l.commit(req).await {
                        Ok(_) => break,
                        Err(LedgerError::VersionConflict { .. }) => conflicts += 1,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let current = l.current(NS).await.expect("current");
    assert_eq!(
        current.state.version,
        WRITERS * EACH,
        "one version per write"
    );
    assert_eq!(
        current.values["COUNTER"].value,
        Some(json!(WRITERS * EACH)),
        "no lost update"
    );
    let all = l
        .changes_since(NS, 0, 10_000)
        .await
        .expect("all changesets");
    let versions: Vec<u64> = all.iter().map(|c| c.version).collect();
    let expected: Vec<u64> = (1..=WRITERS * EACH).collect();
    assert_eq!(versions, expected, "versions are gap-free");
}

async fn bumping_the_epoch_keeps_version_and_history(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    l.commit(set(&[("A", Some(json!(1)))])).await.expect("v1");
    let bumped = l.bump_epoch(NS).await.expect("bump");
    assert_eq!(
        bumped,
        NamespaceState {
            epoch: 2,
            version: 1
        },
        "an epoch bump keeps the version"
    );
    assert_eq!(l.namespace_state(NS).await.expect("state"), bumped);
    let next = l.commit(set(&[("A", Some(json!(2)))])).await.expect("v2");
    assert_eq!(
        next.state,
        NamespaceState {
            epoch: 2,
            version: 2
        }
    );
    assert_eq!(
        l.changeset(NS, 1).await.expect("cs").map(|c| c.epoch),
        Some(1)
    );
    assert_eq!(
        l.changeset(NS, 2).await.expect("cs").map(|c| c.epoch),
        Some(2)
    );
    assert_eq!(l.current(NS).await.expect("current").state.epoch, 2);
    assert!(matches!(
        l.bump_epoch("nope").await,
        Err(LedgerError::UnknownNamespace(_))
    ));
}

async fn a_namespace_behind_redis_refuses_commits_until_lifted(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    let mut first = set(&[("A", Some(json!(1)))]);
    first.idempotency_key = Some("k1".into());
    first.fingerprint = "fp".into();
    l.commit(first.clone()).await.expect("v1");
    l.set_ledger_behind(NS, true).await.expect("mark behind");
    assert!(matches!(
        l.commit(set(&[("A", Some(json!(2)))])).await,
        Err(LedgerError::LedgerBehind(ref ns)) if ns == NS
    ));
    let replay = l.commit(first).await.expect("a retry is still answered");
    assert!(replay.replayed);
    assert_eq!(l.namespace_state(NS).await.expect("state").version, 1);
    l.set_ledger_behind(NS, false).await.expect("lift");
    assert_eq!(
        l.commit(set(&[("A", Some(json!(2)))]))
            .await
            .expect("v2")
            .state
            .version,
        2
    );
    l.set_ledger_behind(NS, true)
        .await
        .expect("mark behind again");
    l.bump_epoch(NS).await.expect("reconcile");
    assert_eq!(
        l.commit(set(&[("A", Some(json!(3)))]))
            .await
            .expect("an epoch bump lifts the mark")
            .state,
        NamespaceState {
            epoch: 2,
            version: 3
        }
    );
}

async fn an_empty_namespace_adopts_an_image_once(l: Arc<dyn Ledger>) {
    l.ensure_namespace(NS).await.expect("ensure");
    let image = CurrentValues {
        state: NamespaceState {
            epoch: 3,
            version: 7,
        },
        values: BTreeMap::from([
            (
                "A".to_owned(),
                StoredValue {
                    value: Some(json!(1)),
                    version: 5,
                },
            ),
            (
                "B".to_owned(),
                StoredValue {
                    value: Some(json!({"x": [1, 2]})),
                    version: 7,
                },
            ),
        ]),
    };
    assert!(l
        .adopt(NS, &image, meta("rtconfig", "adopted"))
        .await
        .expect("adopt"));
    assert_eq!(
        l.namespace_state(NS).await.expect("state"),
        image.state,
        "the image's epoch and version are kept"
    );
    let current = l.current(NS).await.expect("current");
    assert_eq!(current, image, "values and their versions are kept");
    let feed = l.changes_since(NS, 0, 10).await.expect("feed");
    assert_eq!(feed.len(), 1, "one changeset records the adopted image");
    assert_eq!(feed[0].version, 7);
    assert_eq!(feed[0].epoch, 3);
    assert_eq!(feed[0].meta.actor, "rtconfig");
    let mut keys: Vec<&str> = feed[0].changes.iter().map(|c| c.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["A", "B"]);
    assert!(feed[0].changes.iter().all(|c| c.old.is_none()));
    assert_eq!(
        l.state_at(NS, 7).await.expect("at 7"),
        BTreeMap::from([
            ("A".to_owned(), json!(1)),
            ("B".to_owned(), json!({"x": [1, 2]}))
        ])
    );
    assert!(
        matches!(l.state_at(NS, 6).await, Err(LedgerError::NoSuchVersion(6))),
        "versions before the adopted one have no history"
    );
    assert!(l.changeset(NS, 6).await.expect("cs 6").is_none());
    let page = l
        .history(
            NS,
            &HistoryQuery {
                limit: 10,
                ..HistoryQuery::default()
            },
        )
        .await
        .expect("history");
    assert_eq!(page.changesets.len(), 1);
    assert_eq!(page.next, None);

    let next = l.commit(set(&[("A", Some(json!(2)))])).await.expect("v8");
    assert_eq!(
        next.state,
        NamespaceState {
            epoch: 3,
            version: 8
        }
    );
    assert_eq!(next.changes[0].old, Some(json!(1)));
    assert!(
        !l.adopt(NS, &image, meta("rtconfig", "again"))
            .await
            .expect("adopt twice"),
        "a namespace with history never adopts"
    );
    assert_eq!(l.namespace_state(NS).await.expect("state").version, 8);

    // A namespace whose epoch an operator raised does not adopt an older epoch's image.
    l.ensure_namespace("other").await.expect("ensure other");
    l.bump_epoch("other").await.expect("bump");
    let mut old = image.clone();
    old.state.epoch = 1;
    assert!(!l
        .adopt("other", &old, meta("rtconfig", "old"))
        .await
        .expect("adopt old epoch"));
    assert_eq!(
        l.namespace_state("other").await.expect("state"),
        NamespaceState {
            epoch: 2,
            version: 0
        }
    );
}
