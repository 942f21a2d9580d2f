//! Relay leadership: of all admin replicas sharing a ledger, exactly one runs the relay.
//!
//! [`run`] owns the loop: acquire leadership → run a fresh [`Relay`] with the lease's fencing
//! `term` until the lease is lost (or shutdown) → stop it → retry every second. Each term gets
//! its own relay (and Redis client); the write path's kick and the write gate are shared across
//! terms.
//!
//! - PostgreSQL ([`PgElection`]): `pg_try_advisory_lock` on a dedicated connection that also
//!   `LISTEN`s for the `NOTIFY` every commit sends, so writes on other replicas wake the leader.
//!   The term comes from a counter row in PostgreSQL (above every earlier term). The lease is
//!   lost when that connection ends or stops answering its heartbeat (PostgreSQL down or paused,
//!   the session terminated): the relay stops; once PostgreSQL notices, the lock is free for the
//!   next leader; a leader whose process is frozen is cut off by PostgreSQL after 5 s of silence
//!   (`idle_session_timeout`). A paused ex-leader that wakes up cannot write: Redis refuses a
//!   lower term.
//! - Embedded ([`SoleLeader`]): one admin per data dir (a lock file), so it always leads; its
//!   term is the clock in milliseconds, which orders its restarts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use crate::admin::write::WriteGate;
use crate::ledger::postgres::{timed_out, PgLedger, COMMIT_CHANNEL, LEADER_LOCK};
use crate::ledger::LedgerError;
use crate::metrics::RelayMetrics;
use crate::relay::{Relay, RelayError};
use crate::shutdown::Shutdown;
use crate::telemetry::Chain;

/// How often a follower tries to become the leader, and the leader checks its connection.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stopping relay may take to finish its round.
const RELAY_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// PostgreSQL ends the leader's session when it has been silent this long (its heartbeat runs
/// every second), so a frozen leader — SIGSTOP, a VM pause — gives the lock up. A stopped
/// process's kernel still answers TCP keepalives, so nothing else would.
const LEADER_SILENCE_TIMEOUT: Duration = Duration::from_secs(5);

/// Leadership held until dropped (or lost).
pub struct Lease {
    pub term: u64,
    lost: Pin<Box<dyn Future<Output = ()> + Send>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Lease {
    /// A lease that is never lost.
    fn forever(term: u64) -> Lease {
        Lease {
            term,
            lost: Box::pin(std::future::pending()),
            tasks: Vec::new(),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Closing the dedicated connection releases the lock.
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A way to become the one relay leader.
#[async_trait]
pub trait Election: Send + Sync + 'static {
    /// Tries once: `Some(lease)` when this process now leads. While it leads, `wake` is
    /// notified when another replica commits.
    async fn try_acquire(&self, wake: Arc<Notify>) -> Result<Option<Lease>, LedgerError>;
}

/// The embedded ledger's single admin: always the leader.
#[derive(Debug, Default)]
pub struct SoleLeader {
    last: AtomicU64,
}

#[async_trait]
impl Election for SoleLeader {
    async fn try_acquire(&self, _wake: Arc<Notify>) -> Result<Option<Lease>, LedgerError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let prev = self.last.fetch_max(now, Ordering::SeqCst);
        let term = if now > prev {
            now
        } else {
            self.last.fetch_add(1, Ordering::SeqCst) + 1
        };
        Ok(Some(Lease::forever(term)))
    }
}

/// Leadership through `pg_try_advisory_lock` on a dedicated connection.
pub struct PgElection {
    ledger: Arc<PgLedger>,
}

impl PgElection {
    pub fn new(ledger: Arc<PgLedger>) -> PgElection {
        PgElection { ledger }
    }
}

fn pg_unavailable(what: &'static str, e: tokio_postgres::Error) -> LedgerError {
    crate::ledger::postgres::failed(what)(e)
}

#[async_trait]
impl Election for PgElection {
    async fn try_acquire(&self, wake: Arc<Notify>) -> Result<Option<Lease>, LedgerError> {
        let settings = self.ledger.settings();
        let timeout = settings.op_timeout;
        let config = settings.connect_config("rtconfig-leader", Some(timeout))?;
        let tls = settings.tls()?;
        let (client, mut connection) =
            match tokio::time::timeout(settings.connect_timeout + timeout, config.connect(tls))
                .await
            {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => return Err(pg_unavailable("open the leader connection", e)),
                Err(_) => {
                    return Err(timed_out(
                        "open the leader connection",
                        settings.connect_timeout + timeout,
                    ))
                }
            };
        // Drives the connection: notifications wake the relay; its end means the lease is lost.
        let (ended_tx, mut ended) = oneshot::channel::<()>();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %Chain(&e), "leader connection failed");
                        break;
                    }
                }
            }
            let _ = ended_tx.send(());
        });
        let guard = AbortOnDrop(Some(driver));
        let locked = tokio::time::timeout(
            timeout,
            client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]),
        )
        .await
        .map_err(|_| timed_out("take the leader lock", timeout))?
        .map_err(|e| pg_unavailable("take the leader lock", e))?
        .get::<_, bool>(0);
        if !locked {
            return Ok(None);
        }
        tokio::time::timeout(
            timeout,
            client.batch_execute(&format!("LISTEN {COMMIT_CHANNEL}")),
        )
        .await
        .map_err(|_| timed_out("listen for commits", timeout))?
        .map_err(|e| pg_unavailable("listen for commits", e))?;
        // `idle_session_timeout` exists from PostgreSQL 14 on; older servers keep the lock of a
        // frozen leader until its connection breaks.
        let silence = format!(
            "SET idle_session_timeout = {}",
            LEADER_SILENCE_TIMEOUT.as_millis()
        );
        if let Ok(Err(e)) = tokio::time::timeout(timeout, client.batch_execute(&silence)).await {
            tracing::debug!(error = %Chain(&e), "idle_session_timeout is not supported; a frozen leader keeps the lock until its connection breaks");
        }
        let term = self.ledger.next_term().await?;
        // Heartbeat: a connection that stops answering (PostgreSQL paused, a partition) ends the
        // lease as surely as one that closes.
        let (lost_tx, lost_rx) = oneshot::channel::<()>();
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(RETRY_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut ended => break,
                    _ = tick.tick() => {
                        match tokio::time::timeout(timeout, client.simple_query("SELECT 1")).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::warn!(error = %Chain(&e), "the relay leader's connection failed");
                                break;
                            }
                            Err(_) => {
                                tracing::warn!(?timeout, "the relay leader's connection stopped answering");
                                break;
                            }
                        }
                    }
                }
            }
            drop(client);
            let _ = lost_tx.send(());
        });
        let driver = guard.take();
        Ok(Some(Lease {
            term,
            lost: Box::pin(async move {
                let _ = lost_rx.await;
            }),
            tasks: driver.into_iter().chain([heartbeat]).collect(),
        }))
    }
}

/// Aborts a task unless taken (early returns while acquiring close the connection).
struct AbortOnDrop(Option<JoinHandle<()>>);

impl AbortOnDrop {
    fn take(mut self) -> Option<JoinHandle<()>> {
        self.0.take()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

/// Runs a relay (built by `make_relay` for each term) only while this process leads, until
/// shutdown. `namespaces` are un-gated when a term ends: the next leader decides again.
pub async fn run<F>(
    election: Arc<dyn Election>,
    make_relay: F,
    wake: Arc<Notify>,
    gate: Arc<WriteGate>,
    namespaces: Vec<String>,
    metrics: RelayMetrics,
    shutdown: Shutdown,
) where
    F: Fn(u64) -> Result<Relay, RelayError> + Send + Sync + 'static,
{
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut failing = false;
    loop {
        let lease = tokio::select! {
            r = election.try_acquire(wake.clone()) => r,
            () = &mut stop => return,
        };
        if failing && lease.is_ok() {
            tracing::info!("contending for relay leadership again");
        }
        match lease {
            Ok(Some(lease)) => {
                failing = false;
                lead(lease, &make_relay, &gate, &namespaces, &metrics, &shutdown).await;
                if shutdown.is_triggered() {
                    return;
                }
            }
            Ok(None) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %Chain(&e), "cannot contend for relay leadership; retrying every second");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY_INTERVAL) => {}
            () = &mut stop => return,
        }
    }
}

/// One term: the relay runs until the lease is lost or shutdown.
async fn lead<F>(
    mut lease: Lease,
    make_relay: &F,
    gate: &WriteGate,
    namespaces: &[String],
    metrics: &RelayMetrics,
    shutdown: &Shutdown,
) where
    F: Fn(u64) -> Result<Relay, RelayError>,
{
    let relay = match make_relay(lease.term) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %Chain(&e), "cannot build the relay");
            return;
        }
    };
    tracing::info!(term = lease.term, "this admin is now the relay leader");
    metrics.leader.set(1);
    metrics
        .term
        .set(i64::try_from(lease.term).unwrap_or(i64::MAX));
    let term_stop = Shutdown::new();
    let mut task = tokio::spawn(relay.run(term_stop.clone()));
    let stopping = shutdown.wait();
    let finished = tokio::select! {
        () = &mut lease.lost => {
            tracing::warn!(term = lease.term, "lost relay leadership; the relay stops");
            false
        }
        () = stopping => false,
        _ = &mut task => true,
    };
    term_stop.trigger();
    if !finished
        && tokio::time::timeout(RELAY_STOP_TIMEOUT, &mut task)
            .await
            .is_err()
    {
        task.abort();
    }
    metrics.leader.set(0);
    for ns in namespaces {
        gate.set_ledger_behind(ns, false);
    }
    // Dropping the lease closes the dedicated connection: the lock is free for the next leader.
    drop(lease);
}
