//! The fleet view: which sidecars serve a namespace, at which version, with which schema, which
//! of them are stale and why, and how long the last change took to reach them.
//!
//! In production the sidecars' heartbeats live in Redis (`rtconfig:{ns}:sidecars`); in `dev`
//! the fleet is the one in-process sidecar. The judgement is [`assess`], a pure function of the
//! heartbeats, the ledger's state and the clock; [`view`] gathers its inputs, [`watch`] repeats
//! it for the admin events stream and yields only when the view [`changed`].
//!
//! A sidecar is judged on what it reports and on when it last reported:
//!
//! | problem | when |
//! |---|---|
//! | `heartbeat_old` | no heartbeat for more than [`LATE_INTERVALS`] of its own intervals (a dead or cut-off pod; the relay prunes it after 10) |
//! | `reports_stale` | its last heartbeat says its values are stale (with the cause from its `/status`) |
//! | `redis_disconnected` | its last heartbeat says its Redis connection is down |
//! | `old_version` | it serves an older (epoch, version) than the ledger's |
//! | `ahead_of_ledger` | it serves a newer one (a ledger restored from a backup) |
//! | `schema_drift` | its schema hash is not the admin's |
//!
//! **Propagation lag** of the last change: each sidecar reports `applied_at`, the time it first
//! served its current version (the build time of that snapshot, taken on the sidecar's clock
//! with millisecond resolution); the lag is `applied_at − created_at` of the changeset (the
//! ledger's commit time). So the figure's resolution is the clocks' (milliseconds, plus the skew
//! between the admin's and the pod's clocks; a negative difference is shown as 0), not the
//! heartbeat interval: the interval only bounds *when* the figure appears, and a sidecar beats
//! at once after a round that moved its version, so that is one Redis round trip after it
//! applied the change, and at most one interval. Sidecars that started after the change (they
//! loaded it, they did not receive it) and older sidecars without `applied_at` are counted but
//! not measured.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::write::ledger_error;
use super::AdminState;
use crate::http::ApiError;
use crate::snapshot::SnapshotStore;
use crate::telemetry::Chain;

/// How often an events stream with `?fleet=true` looks at the fleet.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// A heartbeat older than this many of the sidecar's own intervals is `heartbeat_old`.
pub const LATE_INTERVALS: u64 = 3;
/// The interval assumed for a heartbeat that does not carry one (the resync default).
pub const DEFAULT_INTERVAL_MS: u64 = 5000;

/// One sidecar's last heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SidecarInfo {
    pub id: String,
    pub epoch: u64,
    pub version: u64,
    pub schema_hash: String,
    /// `ok` or `stale`, as the sidecar reports it.
    pub status: String,
    /// RFC 3339: when the sidecar wrote this heartbeat.
    pub seen_at: String,
    /// The sidecar's heartbeat interval.
    pub interval_ms: Option<u64>,
    /// RFC 3339: when the sidecar first served this epoch and version.
    pub applied_at: Option<String>,
    /// RFC 3339: when the sidecar process started.
    pub started_at: Option<String>,
    /// Why the sidecar is not in sync, as its `/status` says.
    pub cause: Option<String>,
    /// Whether its Redis connections are up, as it sees them.
    pub redis_connected: Option<bool>,
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
        let stale = self.store.is_stale();
        Ok(vec![SidecarInfo {
            id: "dev-local".into(),
            epoch: snap.position.epoch,
            version: snap.position.version,
            schema_hash: snap.schema_hash.to_string(),
            status: if stale { "stale" } else { "ok" }.into(),
            seen_at: rfc3339(Utc::now()),
            interval_ms: None,
            // The in-process snapshot is built in the commit's `AfterCommit`.
            applied_at: Some(rfc3339(DateTime::<Utc>::from(snap.built_at))),
            started_at: None,
            cause: None,
            redis_connected: None,
        }])
    }
}

/// What a problem is called in the API (`problems[].code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    HeartbeatOld,
    ReportsStale,
    RedisDisconnected,
    OldVersion,
    AheadOfLedger,
    SchemaDrift,
}

impl ProblemCode {
    /// Whether this problem makes the sidecar count as stale.
    pub fn is_stale(self) -> bool {
        matches!(
            self,
            ProblemCode::HeartbeatOld | ProblemCode::ReportsStale | ProblemCode::RedisDisconnected
        )
    }
}

/// One reason a sidecar is not in sync, with a sentence for people.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub code: ProblemCode,
    pub message: String,
}

/// A sidecar's overall state: its most serious problem, or `in_sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SidecarState {
    InSync,
    Stale,
    OldVersion,
    AheadOfLedger,
    SchemaDrift,
}

impl SidecarState {
    fn of(problems: &[Problem]) -> SidecarState {
        let has = |c: ProblemCode| problems.iter().any(|p| p.code == c);
        if problems.iter().any(|p| p.code.is_stale()) {
            SidecarState::Stale
        } else if has(ProblemCode::OldVersion) {
            SidecarState::OldVersion
        } else if has(ProblemCode::AheadOfLedger) {
            SidecarState::AheadOfLedger
        } else if has(ProblemCode::SchemaDrift) {
            SidecarState::SchemaDrift
        } else {
            SidecarState::InSync
        }
    }
}

/// One sidecar as the fleet view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SidecarView {
    #[serde(flatten)]
    pub info: SidecarInfo,
    /// Milliseconds since `seen_at` (`null` when `seen_at` cannot be read).
    pub heartbeat_age_ms: Option<u64>,
    pub state: SidecarState,
    pub problems: Vec<Problem>,
    /// The propagation lag of the last change to this sidecar, when measured.
    pub lag_ms: Option<u64>,
}

/// Counts for the namespaces list. A sidecar can count in several columns (stale *and* on an
/// old version); `in_sync` ones have no problem at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub in_sync: usize,
    pub stale: usize,
    pub old_version: usize,
    pub schema_drift: usize,
}

/// The ledger's last changeset of a namespace: what propagation is measured for.
#[derive(Debug, Clone, PartialEq)]
pub struct LastChange {
    pub epoch: u64,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub actor: String,
}

/// Lag figures over the measured sidecars, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LagStats {
    pub min: u64,
    /// The lower median.
    pub p50: u64,
    pub max: u64,
}

/// How far the last change has travelled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Propagation {
    pub version: u64,
    pub committed_at: String,
    pub actor: String,
    /// Sidecars serving that version (or a later one).
    pub reached: usize,
    /// Sidecars still serving an older one.
    pub pending: usize,
    /// Of `reached`: sidecars that started after the change (not measured).
    pub joined_later: usize,
    /// Of `reached`: sidecars that do not report `applied_at` (not measured).
    pub unmeasured: usize,
    /// Over the measured sidecars; `max` is the lag of the whole fleet once `pending` is 0.
    pub lag_ms: Option<LagStats>,
    /// Since the commit, while some sidecar is still pending.
    pub pending_for_ms: Option<u64>,
}

/// `GET /api/v1/namespaces/{ns}/sidecars`, and the `fleet` event's data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetView {
    pub namespace: String,
    pub epoch: u64,
    pub version: u64,
    pub schema_hash: String,
    /// The admin's clock when the view was made (RFC 3339), for ages shown later.
    pub now: String,
    pub sidecars: Vec<SidecarView>,
    pub summary: Summary,
    /// `"<epoch>-<version>"` → number of sidecars.
    pub by_version: BTreeMap<String, usize>,
    /// Ids of sidecars on an older version than the ledger's.
    pub stragglers: Vec<String>,
    /// Ids of sidecars whose schema differs from the admin's.
    pub schema_drift: Vec<String>,
    /// The last change's propagation (`null` before the first change).
    pub propagation: Option<Propagation>,
}

/// What the sidecars are judged against.
#[derive(Debug, Clone)]
pub struct Reference<'a> {
    pub namespace: &'a str,
    pub epoch: u64,
    pub version: u64,
    pub schema_hash: &'a str,
    pub last_change: Option<LastChange>,
    pub now: DateTime<Utc>,
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `b − a` in whole milliseconds, 0 when negative (clock skew).
fn millis_between(a: DateTime<Utc>, b: DateTime<Utc>) -> u64 {
    u64::try_from((b - a).num_milliseconds()).unwrap_or(0)
}

/// A duration for people: `850 ms`, `4.2 s`, `3 min 5 s`, `2 h 10 min`.
pub fn human_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => {
            let tenths = ms / 100;
            if tenths.is_multiple_of(10) {
                format!("{} s", tenths / 10)
            } else {
                format!("{}.{} s", tenths / 10, tenths % 10)
            }
        }
        60_000..=3_599_999 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

fn short_hash(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// What a sidecar's `cause` means, for people.
fn cause_text(cause: &str) -> String {
    match cause {
        "liveness_failed" => "Redis stopped answering its liveness check".into(),
        "redis_unavailable" => "it cannot read Redis".into(),
        "relay_down" => "the admin's relay has stopped updating Redis".into(),
        "redis_empty" => "Redis holds no data for the namespace yet".into(),
        "redis_incomplete" => "Redis holds an incomplete image".into(),
        "foreign_redis" => "Redis holds another cluster's data".into(),
        "redis_older_epoch" => "Redis holds an older epoch".into(),
        "redis_behind" => "Redis is behind the version it serves".into(),
        other => format!("cause: {other}"),
    }
}

/// Every problem of one sidecar, most serious first, and its heartbeat's age.
pub fn problems(r: &Reference<'_>, s: &SidecarInfo) -> (Vec<Problem>, Option<u64>) {
    let mut out = Vec::new();
    let interval = s.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS).max(1);
    let age = parse_time(&s.seen_at).map(|seen| millis_between(seen, r.now));
    match age {
        Some(age) if age > LATE_INTERVALS.saturating_mul(interval) => out.push(Problem {
            code: ProblemCode::HeartbeatOld,
            message: format!(
                "no heartbeat for {} (it beats every {})",
                human_ms(age),
                human_ms(interval)
            ),
        }),
        Some(_) => {}
        None => out.push(Problem {
            code: ProblemCode::HeartbeatOld,
            message: format!("its heartbeat time {:?} cannot be read", s.seen_at),
        }),
    }
    if s.status == "stale" {
        out.push(Problem {
            code: ProblemCode::ReportsStale,
            message: match &s.cause {
                Some(c) => format!("it reports its values stale: {}", cause_text(c)),
                None => "it reports its values stale".into(),
            },
        });
    }
    if s.redis_connected == Some(false) {
        out.push(Problem {
            code: ProblemCode::RedisDisconnected,
            message: "it reports its Redis connection down".into(),
        });
    }
    let ours = (s.epoch, s.version);
    let ledger = (r.epoch, r.version);
    if ours < ledger {
        out.push(Problem {
            code: ProblemCode::OldVersion,
            message: if s.epoch == r.epoch {
                format!(
                    "it serves version {}, {} behind the ledger's {}",
                    s.version,
                    r.version - s.version,
                    r.version
                )
            } else {
                format!(
                    "it serves epoch {} version {}, the ledger is at epoch {} version {}",
                    s.epoch, s.version, r.epoch, r.version
                )
            },
        });
    } else if ours > ledger {
        out.push(Problem {
            code: ProblemCode::AheadOfLedger,
            message: format!(
                "it serves epoch {} version {}, ahead of the ledger's epoch {} version {}",
                s.epoch, s.version, r.epoch, r.version
            ),
        });
    }
    if s.schema_hash != r.schema_hash {
        out.push(Problem {
            code: ProblemCode::SchemaDrift,
            message: format!(
                "its schema ({}…) is not the admin's ({}…)",
                short_hash(&s.schema_hash),
                short_hash(r.schema_hash)
            ),
        });
    }
    (out, age)
}

/// How a sidecar stands to the last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Still on an older version.
    Pending,
    /// Serves it; lag in milliseconds.
    Measured(u64),
    /// Serves it, but started after the commit.
    JoinedLater,
    /// Serves it (or a later version), without the times to measure.
    Unmeasured,
}

/// Whether and how fast `s` received `change`.
pub fn arrival(change: &LastChange, s: &SidecarInfo) -> Arrival {
    let ours = (s.epoch, s.version);
    let theirs = (change.epoch, change.version);
    if ours < theirs {
        return Arrival::Pending;
    }
    if ours > theirs {
        // Its applied_at is a later version's.
        return Arrival::Unmeasured;
    }
    let started = s.started_at.as_deref().and_then(parse_time);
    let applied = s.applied_at.as_deref().and_then(parse_time);
    match (started, applied) {
        (Some(started), _) if started > change.created_at => Arrival::JoinedLater,
        (Some(_), Some(applied)) => Arrival::Measured(millis_between(change.created_at, applied)),
        // `dev`'s in-process sidecar reports no start: it lives as long as the admin.
        (None, Some(applied)) if s.id == "dev-local" => {
            Arrival::Measured(millis_between(change.created_at, applied))
        }
        _ => Arrival::Unmeasured,
    }
}

/// Min, lower median and max (`None` for no figures).
pub fn lag_stats(mut lags: Vec<u64>) -> Option<LagStats> {
    if lags.is_empty() {
        return None;
    }
    lags.sort_unstable();
    Some(LagStats {
        min: lags[0],
        p50: lags[(lags.len() - 1) / 2],
        max: lags[lags.len() - 1],
    })
}

/// The whole view: every sidecar judged, counted and measured.
pub fn assess(r: &Reference<'_>, sidecars: Vec<SidecarInfo>) -> FleetView {
    let mut summary = Summary::default();
    let mut by_version = BTreeMap::new();
    let mut stragglers = Vec::new();
    let mut drift = Vec::new();
    let mut lags = Vec::new();
    let (mut reached, mut pending, mut joined_later, mut unmeasured) = (0, 0, 0, 0);
    let mut views = Vec::with_capacity(sidecars.len());
    for info in sidecars {
        let (problems, age) = problems(r, &info);
        let has = |c: ProblemCode| problems.iter().any(|p| p.code == c);
        summary.total += 1;
        if problems.is_empty() {
            summary.in_sync += 1;
        }
        if problems.iter().any(|p| p.code.is_stale()) {
            summary.stale += 1;
        }
        if has(ProblemCode::OldVersion) {
            summary.old_version += 1;
            stragglers.push(info.id.clone());
        }
        if has(ProblemCode::SchemaDrift) {
            summary.schema_drift += 1;
            drift.push(info.id.clone());
        }
        *by_version
            .entry(format!("{}-{}", info.epoch, info.version))
            .or_default() += 1;
        let mut lag_ms = None;
        if let Some(change) = &r.last_change {
            match arrival(change, &info) {
                Arrival::Pending => pending += 1,
                Arrival::Measured(ms) => {
                    reached += 1;
                    lags.push(ms);
                    lag_ms = Some(ms);
                }
                Arrival::JoinedLater => {
                    reached += 1;
                    joined_later += 1;
                }
                Arrival::Unmeasured => {
                    reached += 1;
                    unmeasured += 1;
                }
            }
        }
        views.push(SidecarView {
            state: SidecarState::of(&problems),
            info,
            heartbeat_age_ms: age,
            problems,
            lag_ms,
        });
    }
    views.sort_by(|a, b| a.info.id.cmp(&b.info.id));
    stragglers.sort();
    drift.sort();
    let propagation = r.last_change.as_ref().map(|c| Propagation {
        version: c.version,
        committed_at: rfc3339(c.created_at),
        actor: c.actor.clone(),
        reached,
        pending,
        joined_later,
        unmeasured,
        lag_ms: lag_stats(lags),
        pending_for_ms: (pending > 0).then(|| millis_between(c.created_at, r.now)),
    });
    FleetView {
        namespace: r.namespace.to_owned(),
        epoch: r.epoch,
        version: r.version,
        schema_hash: r.schema_hash.to_owned(),
        now: rfc3339(r.now),
        sidecars: views,
        summary,
        by_version,
        stragglers,
        schema_drift: drift,
        propagation,
    }
}

/// Whether `next` says something `prev` did not: every field but the ones that only move
/// with the clock (`now`, heartbeat ages, `pending_for_ms`). A new heartbeat (`seen_at`) is a
/// change, so the page's "time since heartbeat" stays true.
pub fn changed(prev: &FleetView, next: &FleetView) -> bool {
    fn timeless(v: &FleetView) -> FleetView {
        let mut v = v.clone();
        v.now.clear();
        for s in &mut v.sidecars {
            s.heartbeat_age_ms = None;
            for p in &mut s.problems {
                if p.code == ProblemCode::HeartbeatOld {
                    p.message.clear();
                }
            }
        }
        if let Some(p) = &mut v.propagation {
            p.pending_for_ms = None;
        }
        v
    }
    timeless(prev) != timeless(next)
}

fn fleet_unavailable(e: &FleetError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "fleet_unavailable",
        format!("cannot read the fleet: {}", Chain(e)),
    )
}

/// The fleet view of `ns` now: the heartbeats, the ledger's state and last changeset.
pub async fn view(state: &AdminState, ns: &str) -> Result<FleetView, ApiError> {
    let schema = state.write.schema(ns)?.clone();
    let ledger = &state.write.ledger;
    let current = ledger.namespace_state(ns).await.map_err(ledger_error)?;
    let last_change = if current.version == 0 {
        None
    } else {
        ledger
            .changeset(ns, current.version)
            .await
            .map_err(ledger_error)?
            .map(|c| LastChange {
                epoch: c.epoch,
                version: c.version,
                created_at: c.created_at,
                actor: c.meta.actor,
            })
    };
    let sidecars = state
        .fleet
        .sidecars(ns)
        .await
        .map_err(|e| fleet_unavailable(&e))?;
    let reference = Reference {
        namespace: ns,
        epoch: current.epoch,
        version: current.version,
        schema_hash: &schema.hash,
        last_change,
        now: Utc::now(),
    };
    Ok(assess(&reference, sidecars))
}

/// How long the namespaces list waits for the heartbeats before it shows the list without them.
pub const SUMMARY_TIMEOUT: Duration = Duration::from_secs(1);

/// The namespaces list's fleet columns for `ns` at the ledger state `current` (one read of
/// the heartbeats, at most [`SUMMARY_TIMEOUT`]), or why they cannot be shown.
pub async fn summary(
    state: &AdminState,
    ns: &str,
    current: crate::ledger::NamespaceState,
) -> Result<Summary, ApiError> {
    let schema = state.write.schema(ns)?.clone();
    let sidecars = match tokio::time::timeout(SUMMARY_TIMEOUT, state.fleet.sidecars(ns)).await {
        Ok(read) => read.map_err(|e| fleet_unavailable(&e))?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "fleet_unavailable",
                format!(
                    "cannot read the fleet: no answer within {} s",
                    SUMMARY_TIMEOUT.as_secs()
                ),
            ))
        }
    };
    let reference = Reference {
        namespace: ns,
        epoch: current.epoch,
        version: current.version,
        schema_hash: &schema.hash,
        last_change: None,
        now: Utc::now(),
    };
    Ok(assess(&reference, sidecars).summary)
}

/// What [`watch`] yields.
#[derive(Debug, Clone)]
pub enum FleetUpdate {
    /// The view changed (the first one is always sent).
    View(Box<FleetView>),
    /// It cannot be read now (sent once per outage; the next view follows when it can).
    Unavailable(ApiError),
}

/// The fleet view of `ns`, checked every `every`, yielded when it [`changed`]: the admin events
/// stream's `fleet` events. One read of the heartbeats (one `HGETALL`) per check per stream.
pub fn watch(
    state: Arc<AdminState>,
    ns: String,
    every: Duration,
) -> impl Stream<Item = FleetUpdate> + Send + 'static {
    async_stream::stream! {
        let mut last: Option<FleetView> = None;
        let mut down = false;
        loop {
            match view(&state, &ns).await {
                Ok(v) => {
                    if down || last.as_ref().is_none_or(|l| changed(l, &v)) {
                        down = false;
                        last = Some(v.clone());
                        yield FleetUpdate::View(Box::new(v));
                    }
                }
                Err(e) => {
                    if !down {
                        down = true;
                        tracing::debug!(namespace = %ns, code = e.code, "fleet view unavailable");
                        yield FleetUpdate::Unavailable(e);
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).expect("time")
    }

    const NOW: &str = "2026-01-01T00:01:00.000Z";
    const COMMIT: &str = "2026-01-01T00:00:50.000Z";

    fn reference() -> Reference<'static> {
        Reference {
            namespace: "demo",
            epoch: 1,
            version: 10,
            schema_hash: "admin-hash-0123456789",
            last_change: Some(LastChange {
                epoch: 1,
                version: 10,
                created_at: t(COMMIT),
                actor: "alice".into(),
            }),
            now: t(NOW),
        }
    }

    /// A healthy sidecar at the last change, 120 ms after the commit.
    fn healthy(id: &str) -> SidecarInfo {
        SidecarInfo {
            id: id.into(),
            epoch: 1,
            version: 10,
            schema_hash: "admin-hash-0123456789".into(),
            status: "ok".into(),
            seen_at: "2026-01-01T00:00:59.000Z".into(),
            interval_ms: Some(5000),
            applied_at: Some("2026-01-01T00:00:50.120Z".into()),
            started_at: Some("2026-01-01T00:00:00.000Z".into()),
            cause: None,
            redis_connected: Some(true),
        }
    }

    fn codes(s: &SidecarInfo) -> Vec<ProblemCode> {
        problems(&reference(), s).0.iter().map(|p| p.code).collect()
    }

    #[test]
    fn each_problem_has_its_rule() {
        use ProblemCode::*;
        let base = healthy("a");
        let rows: Vec<(&str, SidecarInfo, Vec<ProblemCode>)> = vec![
            ("healthy", base.clone(), vec![]),
            (
                "beat 15 s ago at 5 s is on time (3 intervals)",
                SidecarInfo {
                    seen_at: "2026-01-01T00:00:45.000Z".into(),
                    ..base.clone()
                },
                vec![],
            ),
            (
                "beat 15.001 s ago at 5 s is late",
                SidecarInfo {
                    seen_at: "2026-01-01T00:00:44.999Z".into(),
                    ..base.clone()
                },
                vec![HeartbeatOld],
            ),
            (
                "no interval: 5 s assumed",
                SidecarInfo {
                    seen_at: "2026-01-01T00:00:44.000Z".into(),
                    interval_ms: None,
                    ..base.clone()
                },
                vec![HeartbeatOld],
            ),
            (
                "a 500 ms sidecar silent for 2 s",
                SidecarInfo {
                    seen_at: "2026-01-01T00:00:58.000Z".into(),
                    interval_ms: Some(500),
                    ..base.clone()
                },
                vec![HeartbeatOld],
            ),
            (
                "unreadable time",
                SidecarInfo {
                    seen_at: "yesterday".into(),
                    ..base.clone()
                },
                vec![HeartbeatOld],
            ),
            (
                "a clock ahead of ours is not late",
                SidecarInfo {
                    seen_at: "2026-01-01T00:01:03.000Z".into(),
                    ..base.clone()
                },
                vec![],
            ),
            (
                "reports stale",
                SidecarInfo {
                    status: "stale".into(),
                    cause: Some("liveness_failed".into()),
                    ..base.clone()
                },
                vec![ReportsStale],
            ),
            (
                "redis down as it reports it",
                SidecarInfo {
                    status: "stale".into(),
                    cause: Some("redis_unavailable".into()),
                    redis_connected: Some(false),
                    ..base.clone()
                },
                vec![ReportsStale, RedisDisconnected],
            ),
            (
                "old sidecar without redis_connected",
                SidecarInfo {
                    redis_connected: None,
                    ..base.clone()
                },
                vec![],
            ),
            (
                "one version behind",
                SidecarInfo {
                    version: 9,
                    ..base.clone()
                },
                vec![OldVersion],
            ),
            (
                "an older epoch at a higher version is behind",
                SidecarInfo {
                    epoch: 0,
                    version: 99,
                    ..base.clone()
                },
                vec![OldVersion],
            ),
            (
                "ahead of the ledger",
                SidecarInfo {
                    version: 11,
                    ..base.clone()
                },
                vec![AheadOfLedger],
            ),
            (
                "drift",
                SidecarInfo {
                    schema_hash: "other".into(),
                    ..base.clone()
                },
                vec![SchemaDrift],
            ),
            (
                "everything at once",
                SidecarInfo {
                    seen_at: "2026-01-01T00:00:00.000Z".into(),
                    status: "stale".into(),
                    cause: None,
                    redis_connected: Some(false),
                    version: 3,
                    schema_hash: "other".into(),
                    ..base.clone()
                },
                vec![
                    HeartbeatOld,
                    ReportsStale,
                    RedisDisconnected,
                    OldVersion,
                    SchemaDrift,
                ],
            ),
        ];
        for (name, s, want) in rows {
            assert_eq!(codes(&s), want, "{name}");
        }
    }

    #[test]
    fn problems_say_why_in_words() {
        let late = SidecarInfo {
            seen_at: "2026-01-01T00:00:18.000Z".into(),
            version: 7,
            schema_hash: "abcdefabcdefabcdef".into(),
            status: "stale".into(),
            cause: Some("relay_down".into()),
            ..healthy("a")
        };
        let (p, age) = problems(&reference(), &late);
        assert_eq!(age, Some(42_000));
        let words: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            words,
            vec![
                "no heartbeat for 42 s (it beats every 5 s)",
                "it reports its values stale: the admin's relay has stopped updating Redis",
                "it serves version 7, 3 behind the ledger's 10",
                "its schema (abcdefabcdef…) is not the admin's (admin-hash-0…)",
            ]
        );
    }

    #[test]
    fn the_state_is_the_most_serious_problem() {
        let r = reference();
        let state = |s: SidecarInfo| SidecarState::of(&problems(&r, &s).0);
        assert_eq!(state(healthy("a")), SidecarState::InSync);
        let behind_and_drifting = SidecarInfo {
            version: 9,
            schema_hash: "x".into(),
            ..healthy("a")
        };
        assert_eq!(state(behind_and_drifting.clone()), SidecarState::OldVersion);
        assert_eq!(
            state(SidecarInfo {
                status: "stale".into(),
                ..behind_and_drifting
            }),
            SidecarState::Stale
        );
        assert_eq!(
            state(SidecarInfo {
                version: 12,
                schema_hash: "x".into(),
                ..healthy("a")
            }),
            SidecarState::AheadOfLedger
        );
        assert_eq!(
            state(SidecarInfo {
                schema_hash: "x".into(),
                ..healthy("a")
            }),
            SidecarState::SchemaDrift
        );
    }

    #[test]
    fn arrival_is_measured_only_for_sidecars_that_received_the_change() {
        let change = reference().last_change.expect("change");
        let rows: Vec<(&str, SidecarInfo, Arrival)> = vec![
            ("received", healthy("a"), Arrival::Measured(120)),
            (
                "not yet",
                SidecarInfo {
                    version: 9,
                    ..healthy("a")
                },
                Arrival::Pending,
            ),
            (
                "started after the commit",
                SidecarInfo {
                    started_at: Some("2026-01-01T00:00:55.000Z".into()),
                    applied_at: Some("2026-01-01T00:00:55.300Z".into()),
                    ..healthy("a")
                },
                Arrival::JoinedLater,
            ),
            (
                "an old sidecar without times",
                SidecarInfo {
                    applied_at: None,
                    started_at: None,
                    ..healthy("a")
                },
                Arrival::Unmeasured,
            ),
            (
                "a later version (ledger read before it)",
                SidecarInfo {
                    version: 11,
                    ..healthy("a")
                },
                Arrival::Unmeasured,
            ),
            (
                "a pod clock behind ours shows 0, not a negative lag",
                SidecarInfo {
                    applied_at: Some("2026-01-01T00:00:49.900Z".into()),
                    ..healthy("a")
                },
                Arrival::Measured(0),
            ),
            (
                "dev's in-process sidecar",
                SidecarInfo {
                    id: "dev-local".into(),
                    started_at: None,
                    ..healthy("a")
                },
                Arrival::Measured(120),
            ),
        ];
        for (name, s, want) in rows {
            assert_eq!(arrival(&change, &s), want, "{name}");
        }
    }

    #[test]
    fn lag_stats_are_min_lower_median_and_max() {
        assert_eq!(lag_stats(vec![]), None);
        assert_eq!(
            lag_stats(vec![7]),
            Some(LagStats {
                min: 7,
                p50: 7,
                max: 7
            })
        );
        assert_eq!(
            lag_stats(vec![40, 10, 30, 20]),
            Some(LagStats {
                min: 10,
                p50: 20,
                max: 40
            })
        );
        assert_eq!(
            lag_stats(vec![5, 1, 9]),
            Some(LagStats {
                min: 1,
                p50: 5,
                max: 9
            })
        );
    }

    #[test]
    fn assess_counts_lists_and_measures() {
        let sidecars = vec![
            healthy("c"),
            SidecarInfo {
                applied_at: Some("2026-01-01T00:00:50.480Z".into()),
                ..healthy("a")
            },
            SidecarInfo {
                version: 9,
                applied_at: Some("2026-01-01T00:00:40.000Z".into()),
                ..healthy("b")
            },
            SidecarInfo {
                schema_hash: "other".into(),
                status: "stale".into(),
                applied_at: None,
                ..healthy("d")
            },
        ];
        let v = assess(&reference(), sidecars);
        let ids: Vec<&str> = v.sidecars.iter().map(|s| s.info.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "c", "d"], "sorted by id");
        assert_eq!(
            v.summary,
            Summary {
                total: 4,
                in_sync: 2,
                stale: 1,
                old_version: 1,
                schema_drift: 1
            }
        );
        assert_eq!(v.stragglers, vec!["b"]);
        assert_eq!(v.schema_drift, vec!["d"]);
        assert_eq!(
            v.by_version,
            BTreeMap::from([("1-10".to_owned(), 3), ("1-9".to_owned(), 1)])
        );
        let p = v.propagation.expect("propagation");
        assert_eq!(
            (p.reached, p.pending, p.unmeasured, p.joined_later),
            (3, 1, 1, 0)
        );
        assert_eq!(
            p.lag_ms,
            Some(LagStats {
                min: 120,
                p50: 120,
                max: 480
            })
        );
        assert_eq!(p.pending_for_ms, Some(10_000), "since the commit");
        assert_eq!(p.actor, "alice");
        assert_eq!(p.committed_at, COMMIT);
        assert_eq!(v.sidecars[0].lag_ms, Some(480));
        assert_eq!(v.sidecars[1].lag_ms, None, "pending");
        assert_eq!(v.now, NOW);
    }

    #[test]
    fn before_the_first_change_there_is_no_propagation() {
        let r = Reference {
            version: 0,
            last_change: None,
            ..reference()
        };
        let v = assess(
            &r,
            vec![SidecarInfo {
                version: 0,
                ..healthy("a")
            }],
        );
        assert_eq!(v.propagation, None);
        assert_eq!(v.summary.in_sync, 1);
        assert_eq!(v.sidecars[0].lag_ms, None);
        let empty = assess(&reference(), vec![]);
        assert_eq!(empty.summary, Summary::default());
        let p = empty.propagation.expect("propagation");
        assert_eq!((p.reached, p.pending, p.lag_ms), (0, 0, None));
    }

    #[test]
    fn only_what_the_clock_alone_moves_is_not_a_change() {
        let r = reference();
        let slow = SidecarInfo {
            version: 9,
            ..healthy("a")
        };
        let before = assess(&r, vec![slow.clone()]);
        let later = Reference {
            now: t("2026-01-01T00:01:01.000Z"),
            ..reference()
        };
        assert!(
            !changed(&before, &assess(&later, vec![slow.clone()])),
            "one second later, same beats"
        );
        let new_beat = SidecarInfo {
            seen_at: "2026-01-01T00:01:00.500Z".into(),
            ..slow.clone()
        };
        assert!(
            changed(&before, &assess(&later, vec![new_beat])),
            "a new beat"
        );
        let caught_up = SidecarInfo {
            version: 10,
            ..slow.clone()
        };
        assert!(
            changed(&before, &assess(&later, vec![caught_up])),
            "caught up"
        );
        let much_later = Reference {
            now: t("2026-01-01T00:02:00.000Z"),
            ..reference()
        };
        assert!(
            changed(&before, &assess(&much_later, vec![slow])),
            "the beat became late"
        );
    }

    #[test]
    fn durations_read_like_people_write_them() {
        for (ms, text) in [
            (0, "0 ms"),
            (999, "999 ms"),
            (1000, "1 s"),
            (4250, "4.2 s"),
            (59_999, "59.9 s"),
            (185_000, "3 min 5 s"),
            (7_800_000, "2 h 10 min"),
        ] {
            assert_eq!(human_ms(ms), text, "{ms}");
        }
    }
}
