//! The PostgreSQL auth store on a real server: the shared conformance suite (the same one the
//! embedded store passes), a reopen, the append-only audit table, and a store on the ledger's
//! pool.

use std::sync::Arc;

use rtconfig::auth::conformance;
use rtconfig::auth::postgres::PgAuthStore;
use rtconfig::auth::AuthStore;
use rtconfig::ledger::postgres::{PgLedger, PgSettings};

use crate::harness::postgres::shared_cluster;
use crate::pg_stack::fresh_db;

#[tokio::test]
async fn the_postgres_auth_store_passes_the_conformance_suite() {
    let pg = shared_cluster();
    conformance::run(|| async {
        let (_, url) = fresh_db(pg);
        let store = PgAuthStore::open(&PgSettings::new(&url))
            .await
            .expect("open");
        Arc::new(store) as Arc<dyn AuthStore>
    })
    .await;
}

#[tokio::test]
async fn a_reopened_postgres_auth_store_keeps_everything() {
    let pg = shared_cluster();
    let (_, url) = fresh_db(pg);
    conformance::reopen_keeps_everything(|| async {
        Arc::new(
            PgAuthStore::open(&PgSettings::new(&url))
                .await
                .expect("open"),
        ) as Arc<dyn AuthStore>
    })
    .await;
}

#[tokio::test]
async fn the_auth_store_runs_on_the_ledgers_pool_and_the_audit_log_is_append_only() {
    let pg = shared_cluster();
    let (db, url) = fresh_db(pg);
    let ledger = PgLedger::open("default", PgSettings::new(&url))
        .await
        .expect("the ledger migrates V1 and V2");
    let store = PgAuthStore::new(ledger.pool(), ledger.settings().op_timeout);
    store
        .create_user(conformance::new_user("alice", &["admin"]))
        .await
        .expect("create on the ledger's pool");
    assert!(store.has_admin().await.expect("has_admin"));
    store
        .append_audit(conformance::event("user_created", "cli"))
        .await
        .expect("audit");
    for tampering in [
        "UPDATE rtconfig_audit SET actor = 'mallory'",
        "DELETE FROM rtconfig_audit",
        "TRUNCATE rtconfig_audit",
    ] {
        let err = pg
            .try_psql(&db, tampering, std::time::Duration::from_secs(10))
            .expect_err(tampering);
        assert!(err.contains("append-only"), "{tampering}: {err}");
    }
    assert_eq!(
        pg.psql(&db, "SELECT actor FROM rtconfig_audit").trim(),
        "cli"
    );
}
