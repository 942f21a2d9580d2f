//! `dev`'s distribution: a committed changeset goes straight from the embedded ledger into the
//! in-process sidecar's snapshot, before the admin API answers (read-your-writes).
//!
//! This is the only writer of the snapshot in `dev`, as the sync loop is in a sidecar.

use std::sync::Arc;

use async_trait::async_trait;

use crate::admin::write::AfterCommit;
use crate::ledger::{Ledger, LedgerError, NamespaceState};
use crate::metrics::SnapshotMetrics;
use crate::schema::Schema;
use crate::snapshot::{Position, PublishError, Snapshot, SnapshotStore, Source};
use crate::telemetry::Chain;

/// Rebuilds and swaps the snapshot of one namespace from the ledger's current values.
pub struct LocalPublisher {
    pub ledger: Arc<dyn Ledger>,
    pub schema: Arc<Schema>,
    pub store: Arc<SnapshotStore>,
    pub metrics: SnapshotMetrics,
}

impl LocalPublisher {
    /// Publishes the ledger's current state. Concurrent calls are safe: the store only ever
    /// moves forward, so a slower, older rebuild is simply refused.
    pub async fn publish_current(&self) -> Result<(), LedgerError> {
        let current = self.ledger.current(&self.schema.namespace).await?;
        // The ledger knows each key's version, also of keys set back to their default.
        let snapshot = Snapshot::build_versioned(
            &self.schema,
            Position::new(current.state.epoch, current.state.version),
            Source::Local,
            current
                .values
                .iter()
                .map(|(k, v)| (k.as_str(), v.value.as_ref(), v.version)),
        );
        for r in snapshot.rejected() {
            tracing::warn!(key = %r.key, rule = r.rule, "stored value rejected by the schema; serving the default");
        }
        match self.store.publish(snapshot) {
            Ok(true) => {
                self.metrics.swaps.inc();
                self.metrics.observe_store(&self.store);
            }
            Ok(false) => {}
            Err(PublishError::Older { current, offered }) => {
                tracing::debug!(?current, ?offered, "a newer snapshot was published first");
            }
            Err(e) => tracing::error!(error = %e, "cannot publish snapshot"),
        }
        Ok(())
    }
}

#[async_trait]
impl AfterCommit for LocalPublisher {
    async fn committed(&self, namespace: &str, _state: NamespaceState) {
        if namespace != self.schema.namespace {
            return;
        }
        if let Err(e) = self.publish_current().await {
            tracing::error!(error = %Chain(&e), namespace, "cannot publish the committed changeset locally");
        }
    }
}
