//! Ended sessions do not pile up: every [`PURGE_INTERVAL`] the admin deletes the sessions whose
//! absolute or idle end has passed (`AuthStore::purge_sessions`). Several admin replicas on one
//! PostgreSQL each run it; the `DELETE` is idempotent. A failure is logged and retried at the
//! next round (an ended session is refused by the guard anyway: purging only frees space).

use std::sync::Arc;
use std::time::Duration;

use super::store::AuthStore;
use crate::shutdown::Shutdown;
use crate::telemetry::Chain;

/// How often ended sessions are purged.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(300);

/// Purges ended sessions every `interval` (the first round right away) until `shutdown`.
pub async fn purge_ended_sessions(
    store: Arc<dyn AuthStore>,
    idle_timeout: Duration,
    interval: Duration,
    shutdown: Shutdown,
) {
    let idle = chrono::Duration::from_std(idle_timeout).unwrap_or(chrono::Duration::MAX);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => {}
        }
        let now = chrono::Utc::now();
        let idle_before = now.checked_sub_signed(idle).unwrap_or(now);
        match store.purge_sessions(now, idle_before).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "ended sessions purged"),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "cannot purge ended sessions; retrying at the next round")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::conformance::{new_user, session};
    use crate::auth::embedded::EmbeddedAuthStore;

    #[tokio::test]
    async fn ended_sessions_are_purged_and_the_task_stops_on_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn AuthStore> =
            Arc::new(EmbeddedAuthStore::open(dir.path()).expect("open"));
        let user = store
            .create_user(new_user("alice", &["viewer"]))
            .await
            .expect("user");
        let now = chrono::Utc::now();
        let mut idle = session(&user.id, "idle", now - chrono::Duration::hours(2));
        idle.last_seen_at = now - chrono::Duration::hours(1);
        store.create_session(idle).await.expect("idle session");
        store
            .create_session(session(&user.id, "live", now))
            .await
            .expect("live session");
        let shutdown = Shutdown::new();
        let task = tokio::spawn(purge_ended_sessions(
            store.clone(),
            Duration::from_secs(1800),
            Duration::from_millis(20),
            shutdown.clone(),
        ));
        crate::auth::conformance::eventually_none(&*store, "idle").await;
        assert!(store.session("live").await.expect("read").is_some());
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops on shutdown")
            .expect("task");
    }
}
