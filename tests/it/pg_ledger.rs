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
        "3",
        "V1 (ledger), V2 (auth) and V3 (history)"
    );
    // The command does the same.
    let (code, out) = run_binary(&["admin", "migrate", "--database-url", &url]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("up to date"), "{out}");
    let (_, fresh) = fresh_db(pg);
    let (code, out) = run_binary(&["admin", "migrate", "--database-url", &fresh]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("applied 3 migration(s): V1__ledger, V2__auth, V3__history"),
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
