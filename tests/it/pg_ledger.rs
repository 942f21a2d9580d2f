//! The PostgreSQL ledger on a real server: the shared conformance suite, append-only history,
//! migrations, cluster identity.

use std::sync::Arc;

use rtconfig::ledger::conformance;
use rtconfig::ledger::postgres::{migrate, PgLedger, PgSettings};
use rtconfig::ledger::{Ledger, LedgerError};

use crate::harness::postgres::shared_cluster;
use crate::pg_stack::{fresh_db, run_binary, sql};

#[tokio::test]
async fn the_postgres_ledger_passes_the_conformance_suite() {
    let pg = shared_cluster();
    conformance::run(|| async {
        let (_, url) = fresh_db(pg);
        let ledger = PgLedger::open("default", PgSettings::new(&url))
            .await
            .expect("open");
        Arc::new(ledger) as Arc<dyn Ledger>
    })
    .await;
}

#[tokio::test]
async fn history_is_append_only() {
    let pg = shared_cluster();
    let (db, url) = fresh_db(pg);
    let ledger = PgLedger::open("default", PgSettings::new(&url))
        .await
        .expect("open");
    ledger.ensure_namespace("demo").await.expect("ns");
    ledger
        .commit(rtconfig::ledger::CommitRequest {
            namespace: "demo".into(),
            changes: vec![("A".into(), Some(serde_json::json!(1)))],
            meta: conformance::meta("alice", "first"),
            ..Default::default()
        })
        .await
        .expect("commit");
    for tampering in [
        "UPDATE rtconfig_changesets SET actor = 'mallory'",
        "DELETE FROM rtconfig_changesets",
        "TRUNCATE rtconfig_changesets CASCADE",
        "UPDATE rtconfig_history SET new = '2'",
        "DELETE FROM rtconfig_history",
        "TRUNCATE rtconfig_history",
    ] {
        let err = pg
            .try_psql(&db, tampering, std::time::Duration::from_secs(10))
            .expect_err(tampering);
        assert!(err.contains("append-only"), "{tampering}: {err}");
    }
    assert_eq!(
        sql(
            pg,
            &db,
            "SELECT actor || ':' || (SELECT count(*) FROM rtconfig_history) FROM rtconfig_changesets"
        ),
        "alice:1"
    );
}

#[tokio::test]
async fn migrations_run_once_even_when_replicas_start_together() {
    let pg = shared_cluster();
    let (db, url) = fresh_db(pg);
    let settings = PgSettings::new(&url);
    let runs = (0..4).map(|_| {
        let s = settings.clone();
        tokio::spawn(async move { migrate(&s).await.expect("migrate") })
    });
    let applied: Vec<Vec<String>> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    assert_eq!(
        applied.iter().filter(|a| !a.is_empty()).count(),
        1,
        "exactly one replica applies the migrations: {applied:?}"
    );
    assert!(migrate(&settings).await.expect("again").is_empty());
    assert_eq!(
        sql(pg, &db, "SELECT count(*) FROM rtconfig_schema_history"),
        "5",
        "V1 (ledger), V2 (auth), V3 (history), V4 (no-op idempotency keys) and V5 (commit path)"
    );
    // The command does the same.
    let (code, out) = run_binary(&["admin", "migrate", "--database-url", &url]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("up to date"), "{out}");
    let (_, fresh) = fresh_db(pg);
    let (code, out) = run_binary(&["admin", "migrate", "--database-url", &fresh]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "applied 5 migration(s): V1__ledger, V2__auth, V3__history, V4__idempotent_noop, V5__commit_path"
        ),
        "{out}"
    );
}

#[tokio::test]
async fn a_database_of_another_cluster_is_refused() {
    let pg = shared_cluster();
    let (_, url) = fresh_db(pg);
    drop(
        PgLedger::open("prod", PgSettings::new(&url))
            .await
            .expect("open as prod"),
    );
    match PgLedger::open("staging", PgSettings::new(&url)).await {
        Err(LedgerError::ForeignCluster { expected, found }) => {
            assert_eq!((expected.as_str(), found.as_str()), ("staging", "prod"));
        }
        other => panic!("expected ForeignCluster, got {other:?}"),
    }
    let again = PgLedger::open("prod", PgSettings::new(&url))
        .await
        .expect("reopen as prod");
    let first = PgLedger::open("prod", PgSettings::new(&url))
        .await
        .expect("a second replica");
    assert_eq!(
        again.mask_key(),
        first.mask_key(),
        "every replica fingerprints secrets with the same key"
    );
}

/// tokio-postgres says only "db error"; the server's reason is its source, and it reaches the
/// operator: in the error chain and on the admin's stderr.
#[tokio::test]
async fn a_missing_database_is_reported_with_the_servers_reason() {
    let pg = shared_cluster();
    let url = pg.url("rtconfig_no_such_database");
    let e = PgLedger::open("default", PgSettings::new(&url))
        .await
        .expect_err("no such database");
    assert!(matches!(e, LedgerError::Unavailable(_)), "{e:?}");
    let chain = rtconfig::telemetry::Chain(&e).to_string();
    assert!(
        chain.contains("database \"rtconfig_no_such_database\" does not exist"),
        "{chain}"
    );
    let (code, out) = run_binary(&["admin", "migrate", "--database-url", &url]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("database \"rtconfig_no_such_database\" does not exist"),
        "{out}"
    );
}

/// The commit is optimistic first (read, then one write statement that applies only if the
/// namespace did not move) and takes the row lock after losing a race. Writers on two replicas
/// racing on one key without any expected version: every version once, in order, and each
/// change's `old` is exactly the `new` of the change before it (no stale read was committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replicas_commit_gap_free_with_a_true_old_value_for_every_change() {
    use rtconfig::ledger::CommitRequest;
    use serde_json::json;

    let pg = shared_cluster();
    let (db, url) = fresh_db(pg);
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let ledger = PgLedger::open("default", PgSettings::new(&url))
            .await
            .expect("open");
        replicas.push(Arc::new(ledger));
    }
    replicas[0].ensure_namespace("demo").await.expect("ns");
    const WRITERS: usize = 6;
    const EACH: usize = 12;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let ledger = replicas[w % 2].clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                let committed = ledger
                    .commit(CommitRequest {
                        namespace: "demo".into(),
                        changes: vec![
                            ("SHARED".into(), Some(json!(format!("w{w}-{n}")))),
                            (format!("OWN_{w}"), Some(json!(n))),
                        ],
                        meta: conformance::meta(&format!("writer-{w}"), "race"),
                        idempotency_key: Some(format!("{w}-{n}")),
                        fingerprint: format!("{w}-{n}"),
                        ..CommitRequest::default()
                    })
                    .await
                    .expect("commit");
                assert!(!committed.replayed);
                assert_eq!(committed.changes.len(), 2, "{committed:?}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let total = (WRITERS * EACH) as u64;
    let all = replicas[1]
        .changes_since("demo", 0, 10_000)
        .await
        .expect("history");
    let versions: Vec<u64> = all.iter().map(|c| c.version).collect();
    assert_eq!(versions, (1..=total).collect::<Vec<_>>(), "gap-free");
    let mut last_shared = None;
    let mut last_own = std::collections::HashMap::new();
    for cs in &all {
        for change in &cs.changes {
            let previous = if change.key == "SHARED" {
                &mut last_shared
            } else {
                last_own.entry(change.key.clone()).or_insert(None)
            };
            assert_eq!(
                change.old, *previous,
                "version {}: {} recorded a stale old value",
                cs.version, change.key
            );
            *previous = change.new.clone();
        }
    }
    let current = replicas[0].current("demo").await.expect("current");
    assert_eq!(current.state.version, total);
    assert_eq!(current.values["SHARED"].value, last_shared);
    assert_eq!(
        sql(pg, &db, "SELECT count(*) FROM rtconfig_idempotency_keys"),
        total.to_string()
    );
}

/// One request retried concurrently with one `Idempotency-Key` (e.g. by a client that timed
/// out, on two replicas): it commits once; every other attempt is answered with that outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_idempotency_key_commit_once() {
    use rtconfig::ledger::CommitRequest;
    use serde_json::json;

    let pg = shared_cluster();
    let (_, url) = fresh_db(pg);
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let ledger = PgLedger::open("default", PgSettings::new(&url))
            .await
            .expect("open");
        replicas.push(Arc::new(ledger));
    }
    replicas[0].ensure_namespace("demo").await.expect("ns");
    for round in 0..5 {
        let request = CommitRequest {
            namespace: "demo".into(),
            changes: vec![("SITE_NAME".into(), Some(json!(format!("round {round}"))))],
            meta: conformance::meta("alice", "retried"),
            idempotency_key: Some(format!("retry-{round}")),
            fingerprint: format!("fp-{round}"),
            ..CommitRequest::default()
        };
        let mut tasks = Vec::new();
        for n in 0..6 {
            let (ledger, request) = (replicas[n % 2].clone(), request.clone());
            tasks.push(tokio::spawn(async move { ledger.commit(request).await }));
        }
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.expect("task").expect("commit or replay"));
        }
        let first: Vec<_> = outcomes.iter().filter(|c| !c.replayed).collect();
        assert_eq!(first.len(), 1, "round {round}: {outcomes:?}");
        for c in &outcomes {
            assert_eq!(c.state.version, round + 1, "round {round}: {outcomes:?}");
            assert_eq!(c.changes, first[0].changes);
        }
    }
    let state = replicas[1].namespace_state("demo").await.expect("state");
    assert_eq!(state.version, 5);
}
