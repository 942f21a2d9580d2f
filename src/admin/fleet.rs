//! The fleet view: which sidecars serve a namespace, at which version, with which schema.
//!
//! In production the sidecars' heartbeats live in Redis (`rtconfig:{ns}:sidecars`); in `dev`
//! the fleet is the one in-process sidecar.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::snapshot::SnapshotStore;

/// One sidecar's last heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SidecarInfo {
    pub id: String,
    pub epoch: u64,
    pub version: u64,
    pub schema_hash: String,
    pub status: String,
    /// RFC 3339.
    pub seen_at: String,
}

/// Why the fleet cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The heartbeats' store (Redis) did not answer.
    #[error("the sidecars' heartbeats cannot be read")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

#[async_trait]
pub trait Fleet: Send + Sync + 'static {
    async fn sidecars(&self, namespace: &str) -> Result<Vec<SidecarInfo>, FleetError>;
}

/// `dev`: the in-process sidecar.
pub struct LocalFleet {
    pub store: Arc<SnapshotStore>,
}

#[async_trait]
impl Fleet for LocalFleet {
    async fn sidecars(&self, namespace: &str) -> Result<Vec<SidecarInfo>, FleetError> {
        let snap = self.store.load();
        if &*snap.namespace != namespace {
            return Ok(Vec::new());
        }
        Ok(vec![SidecarInfo {
            id: "dev-local".into(),
            epoch: snap.position.epoch,
            version: snap.position.version,
            schema_hash: snap.schema_hash.to_string(),
            status: if self.store.is_stale() { "stale" } else { "ok" }.into(),
            seen_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }])
    }
}
