//! `GET /api/v1/namespaces/{ns}/events`: the admin's Server-Sent Events stream, which tells
//! open pages about commits (DESIGN §6; the contract in docs/openapi.yaml).
//!
//! Events:
//! - `event: commit`, `id: <version>`, `data: {"namespace","version","actor","comment",
//!   "created_at","keys"}` — one per changeset, whichever admin replica committed it;
//! - `event: revoked`, `data: {"code","message"}` — right before the stream ends because its
//!   session or token was revoked or expired (`code` `unauthorized`), or its principal lost the
//!   namespace's viewer role (`code` `forbidden`); a browser shows "signed out" instead of
//!   reconnecting;
//! - a comment `: keep-alive` every 15 s.
//!
//! `Last-Event-ID: <version>` replays the commits after that version first (at most the last
//! [`REPLAY_LIMIT`]). The stream values' keys only, never values: a page refreshes from
//! `GET …/configs`, so secrets stay masked there.
//!
//! **The hub** ([`CommitEvents`]): one broadcast channel per namespace, fed after every commit
//! of this process ([`CommitEvents::feed`], an `AfterCommit`) and, on PostgreSQL, by the
//! `NOTIFY` every commit sends (`ledger::postgres::PgLedger::follow_commits`, one connection
//! per process), so commits of other replicas appear too. A notice carries only a version: the
//! hub reads the changesets it has not published yet from the ledger, so each is published
//! once, in order, with what the ledger recorded. A stream that falls behind (`Lagged`) reads
//! what it missed from the ledger.
//!
//! **Closing on revocation** (issue 8): a stream keeps its caller's [`Credential`] (a session's
//! digest or a token's id) and re-authenticates it against the store (`guard::reauthenticate`)
//! when this process announces a revocation that concerns it (`auth::revocation`: sign-out,
//! password, grant or MFA change, disable, token revoked — at once), at the session's or
//! token's own deadline (idle timeout, lifetime, expiry), and at least every
//! [`RECHECK_INTERVAL`] (revocations by other replicas or the CLI). A stream does not count as
//! activity: a page left open longer than the idle timeout is signed out.
//!
//! **Bounded**: at most `--max-event-streams` streams at once (more get 503
//! `too_many_streams`); streams end on shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};

use super::write::{ledger_error, AfterCommit};
use super::AdminState;
use crate::auth::guard::{reauthenticate, Credential, Denial};
use crate::auth::revocation::Revoked;
use crate::auth::session_policy::SessionPolicy;
use crate::auth::{Need, Principal, Role};
use crate::http::ApiError;
use crate::ledger::{Changeset, Ledger, LedgerError, NamespaceState};
use crate::metrics::{AdminMetrics, StreamEnd};
use crate::shutdown::Shutdown;
use crate::telemetry::Chain;

/// A comment line this often keeps proxies from closing an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A stream re-checks its credential at least this often (revocations by other replicas).
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(5);
/// At most this many commits are replayed after `Last-Event-ID` (or after falling behind).
pub const REPLAY_LIMIT: u64 = 1000;
/// The default of `--max-event-streams`.
pub const DEFAULT_MAX_STREAMS: usize = 1024;
/// Events a slow stream may fall behind by before it reads from the ledger instead.
const CHANNEL_CAPACITY: usize = 64;
/// Changesets read from the ledger per call.
const FETCH_BATCH: usize = 100;
/// The shortest wait between two re-checks (a deadline already past re-checks this soon).
const MIN_RECHECK: Duration = Duration::from_millis(50);

/// One committed changeset as the stream tells it: who, when, which keys (never values).
#[derive(Debug, Clone, PartialEq)]
pub struct CommitEvent {
    pub namespace: String,
    pub version: u64,
    pub actor: String,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub keys: Vec<String>,
}

impl CommitEvent {
    pub fn of(cs: &Changeset) -> CommitEvent {
        CommitEvent {
            namespace: cs.namespace.clone(),
            version: cs.version,
            actor: cs.meta.actor.clone(),
            comment: Some(cs.meta.comment.clone()).filter(|c| !c.trim().is_empty()),
            created_at: cs.created_at,
            keys: cs.changes.iter().map(|c| c.key.clone()).collect(),
        }
    }

    /// The `data` of its `commit` event.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "namespace": self.namespace,
            "version": self.version,
            "actor": self.actor,
            "comment": self.comment,
            "created_at": self.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "keys": self.keys,
        })
    }

    fn sse(&self) -> Event {
        Event::default()
            .event("commit")
            .id(self.version.to_string())
            .data(self.json().to_string())
    }
}

struct Channel {
    tx: broadcast::Sender<Arc<CommitEvent>>,
    /// The last version published (`None`: not known yet). Held while reading the ledger, so
    /// feeds arriving together publish each changeset once, in order.
    published: tokio::sync::Mutex<Option<u64>>,
}

/// The hub of commit events, and the bound on open streams (see the module doc).
pub struct CommitEvents {
    ledger: Arc<dyn Ledger>,
    channels: parking_lot::Mutex<HashMap<String, Arc<Channel>>>,
    open: AtomicUsize,
    max_streams: usize,
    metrics: AdminMetrics,
    shutdown: Shutdown,
}

impl CommitEvents {
    pub fn new(
        ledger: Arc<dyn Ledger>,
        max_streams: usize,
        metrics: AdminMetrics,
        shutdown: Shutdown,
    ) -> Arc<CommitEvents> {
        Arc::new(CommitEvents {
            ledger,
            channels: parking_lot::Mutex::default(),
            open: AtomicUsize::new(0),
            max_streams,
            metrics,
            shutdown,
        })
    }

    fn channel(&self, namespace: &str) -> Arc<Channel> {
        self.channels
            .lock()
            .entry(namespace.to_owned())
            .or_insert_with(|| {
                Arc::new(Channel {
                    tx: broadcast::Sender::new(CHANNEL_CAPACITY),
                    published: tokio::sync::Mutex::new(None),
                })
            })
            .clone()
    }

    /// The commits of `namespace` from now on.
    pub fn subscribe(&self, namespace: &str) -> broadcast::Receiver<Arc<CommitEvent>> {
        self.channel(namespace).tx.subscribe()
    }

    /// Tells the hub where a new subscriber started (the version its page shows), so the
    /// next feed publishes everything after it.
    async fn prime(&self, namespace: &str, version: u64) {
        let ch = self.channel(namespace);
        let mut published = ch.published.lock().await;
        if published.is_none() {
            *published = Some(version);
        }
    }

    /// `namespace` is at `version` (or later): publishes every changeset after the last one
    /// published, read from the ledger. With nobody listening it only remembers the version.
    pub async fn advance(&self, namespace: &str, version: u64) {
        let ch = self.channel(namespace);
        let mut published = ch.published.lock().await;
        let from = match *published {
            Some(p) if version <= p => return,
            Some(p) => p,
            None => version.saturating_sub(1),
        };
        if ch.tx.receiver_count() == 0 {
            *published = Some(version);
            return;
        }
        let mut after = from.max(version.saturating_sub(REPLAY_LIMIT));
        loop {
            match self
                .ledger
                .changes_since(namespace, after, FETCH_BATCH)
                .await
            {
                Ok(batch) => {
                    let Some(last) = batch.last().map(|cs| cs.version) else {
                        break;
                    };
                    for cs in &batch {
                        // No receiver left is fine.
                        let _ = ch.tx.send(Arc::new(CommitEvent::of(cs)));
                    }
                    after = last;
                    if after >= version || batch.len() < FETCH_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(namespace, version, error = %Chain(&e), "cannot read a commit for the event streams; open pages see it with the next commit");
                    break;
                }
            }
        }
        *published = Some(after.max(from));
    }

    /// Catches up with the ledger's current version (after the commit listener reconnected).
    pub async fn advance_to_current(&self, namespace: &str) {
        if self.channel(namespace).tx.receiver_count() == 0 {
            return;
        }
        match self.ledger.namespace_state(namespace).await {
            Ok(state) => self.advance(namespace, state.version).await,
            Err(e) => {
                tracing::warn!(namespace, error = %Chain(&e), "cannot catch up the event streams")
            }
        }
    }

    /// The commits after `after`, oldest first: at most the last [`REPLAY_LIMIT`] up to the
    /// current version.
    pub async fn replay(
        &self,
        namespace: &str,
        after: u64,
        current: u64,
    ) -> Result<Vec<CommitEvent>, LedgerError> {
        let mut after = after.max(current.saturating_sub(REPLAY_LIMIT));
        let mut out = Vec::new();
        while after < current {
            let batch = self
                .ledger
                .changes_since(namespace, after, FETCH_BATCH)
                .await?;
            let Some(last) = batch.last().map(|cs| cs.version) else {
                break;
            };
            out.extend(
                batch
                    .iter()
                    .filter(|cs| cs.version <= current)
                    .map(CommitEvent::of),
            );
            after = last;
        }
        Ok(out)
    }

    /// The `AfterCommit` that feeds the hub with this process's commits (in the background:
    /// a write's answer never waits for the streams).
    pub fn feed(self: &Arc<Self>) -> Arc<dyn AfterCommit> {
        Arc::new(Feed(self.clone()))
    }

    /// Takes a stream slot, or refuses with 503 when `--max-event-streams` are open.
    fn slot(self: &Arc<Self>) -> Result<StreamSlot, ApiError> {
        let taken = self.open.fetch_add(1, Ordering::AcqRel);
        if taken >= self.max_streams {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.metrics.event_streams_rejected.inc();
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!(
                    "{} event streams are open already (--max-event-streams)",
                    self.max_streams
                ),
            )
            .retry_after(1));
        }
        self.metrics.event_streams.inc();
        Ok(StreamSlot {
            events: self.clone(),
            end: StreamEnd::client,
        })
    }
}

/// Feeds the hub after a commit of this process.
struct Feed(Arc<CommitEvents>);

#[async_trait]
impl AfterCommit for Feed {
    async fn committed(&self, namespace: &str, state: NamespaceState) {
        let (events, namespace) = (self.0.clone(), namespace.to_owned());
        tokio::spawn(async move { events.advance(&namespace, state.version).await });
    }
}

/// A held stream slot; released (and the stream's end counted) on drop.
struct StreamSlot {
    events: Arc<CommitEvents>,
    end: StreamEnd,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.events.open.fetch_sub(1, Ordering::AcqRel);
        self.events.metrics.event_streams.dec();
        self.events.metrics.event_stream_ended(self.end);
    }
}

/// Whether a revocation notice may concern the stream's credential (then it re-checks; the
/// store decides).
pub fn concerns(credential: &Credential, principal: &Principal, notice: &Revoked) -> bool {
    match (credential, notice) {
        (Credential::Session { id_digest }, Revoked::Session(d)) => id_digest == d,
        (Credential::Token { id }, Revoked::Token(t)) => id == t,
        // A user's sessions, or the rights of the tokens they created.
        (Credential::Session { .. } | Credential::Token { .. }, Revoked::User(u)) => {
            principal.user_id() == Some(u.as_str())
        }
        _ => false,
    }
}

/// When the stream must re-check at the latest: the session's idle end or lifetime, the
/// token's expiry, or [`RECHECK_INTERVAL`] from now, whichever is first.
pub fn next_check(principal: &Principal, policy: &SessionPolicy, now: DateTime<Utc>) -> Duration {
    let until = |at: DateTime<Utc>| (at - now).to_std().unwrap_or(Duration::ZERO);
    let deadline = match principal {
        Principal::User { session, .. } => {
            let idle_end = session.last_seen_at
                + chrono::Duration::from_std(policy.idle_timeout).unwrap_or(chrono::Duration::MAX);
            Some(until(session.expires_at).min(until(idle_end)))
        }
        Principal::Token { token, .. } => token.expires_at.map(until),
        Principal::Bootstrap => None,
    };
    deadline
        .map_or(RECHECK_INTERVAL, |d| d.min(RECHECK_INTERVAL))
        .max(MIN_RECHECK)
}

/// What a re-check decided.
#[derive(Debug)]
pub enum Verdict {
    /// Still good: go on with the principal as the store has it now.
    Keep(Box<Principal>),
    /// Send `event: revoked` with this code and message, then close.
    Close {
        code: &'static str,
        message: &'static str,
    },
    /// The store could not answer: go on, and ask again at the next check.
    Unknown,
}

/// The decision of a re-check: the credential's fate, then the role the stream needs.
pub fn verdict(result: Result<Principal, Denial>, need: &Need) -> Verdict {
    match result {
        Ok(p) if p.grants().allows(need) => Verdict::Keep(Box::new(p)),
        Ok(_) => Verdict::Close {
            code: "forbidden",
            message: "you no longer have the viewer role in this namespace",
        },
        Err(Denial::Store(_)) => Verdict::Unknown,
        Err(_) => Verdict::Close {
            code: "unauthorized",
            message: "the session or token was revoked or has expired: sign in again",
        },
    }
}

fn revoked_event(code: &str, message: &str) -> Event {
    Event::default()
        .event("revoked")
        .data(json!({"code": code, "message": message}).to_string())
}

/// `Last-Event-ID` as a version (anything else is ignored: the stream starts from now).
fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `GET /api/v1/namespaces/{ns}/events` (see the module doc).
pub async fn events(
    State(state): State<Arc<AdminState>>,
    Path(ns): Path<String>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.write.schema(&ns)?;
    let hub = state.events.clone();
    let mut slot = hub.slot()?;
    // Subscribe before reading the version, so no commit falls between the two.
    let mut commits = hub.subscribe(&ns);
    let mut revocations = state.auth.revocations.subscribe();
    let current = state
        .write
        .ledger
        .namespace_state(&ns)
        .await
        .map_err(ledger_error)?
        .version;
    hub.prime(&ns, current).await;
    let resume = last_event_id(&headers);
    let replay = match resume {
        Some(after) => hub
            .replay(&ns, after, current)
            .await
            .map_err(ledger_error)?,
        None => Vec::new(),
    };
    let credential = Credential::of(&principal);
    let need = Need::InNamespace(Role::Viewer, ns.clone());
    let auth = state.auth.clone();
    let stop = hub.shutdown.wait();
    tracing::debug!(namespace = %ns, actor = %principal.actor(), resume, "event stream opened");

    let stream = async_stream::stream! {
        tokio::pin!(stop);
        let mut principal = principal;
        // The newest version this stream has told (or its page started from).
        let mut sent = current;
        for ev in &replay {
            yield Ok::<Event, Infallible>(ev.sse());
        }
        loop {
            let wait = next_check(&principal, &auth.config.sessions, Utc::now());
            let recheck = tokio::select! {
                r = commits.recv() => match r {
                    Ok(ev) => {
                        if ev.version > sent {
                            sent = ev.version;
                            yield Ok(ev.sse());
                        }
                        false
                    }
                    Err(RecvError::Lagged(_)) => {
                        let now = hub.ledger.namespace_state(&ns).await.map(|s| s.version);
                        match now {
                            Ok(now) => match hub.replay(&ns, sent, now).await {
                                Ok(missed) => {
                                    for ev in missed.iter().filter(|e| e.version > sent) {
                                        yield Ok(ev.sse());
                                    }
                                    sent = sent.max(now);
                                }
                                Err(e) => tracing::warn!(namespace = %ns, error = %Chain(&e), "an event stream fell behind and cannot catch up now"),
                            },
                            Err(e) => tracing::warn!(namespace = %ns, error = %Chain(&e), "an event stream fell behind and cannot catch up now"),
                        }
                        false
                    }
                    Err(RecvError::Closed) => break,
                },
                r = revocations.recv() => match r {
                    Ok(notice) => concerns(&credential, &principal, &notice),
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => break,
                },
                () = tokio::time::sleep(wait) => true,
                () = &mut stop => {
                    slot.end = StreamEnd::shutdown;
                    break;
                }
            };
            if recheck {
                match verdict(reauthenticate(&auth, &credential, Utc::now()).await, &need) {
                    Verdict::Keep(p) => principal = *p,
                    Verdict::Unknown => {}
                    Verdict::Close { code, message } => {
                        tracing::info!(namespace = %ns, actor = %principal.actor(), code, "event stream closed: credential revoked or expired");
                        slot.end = StreamEnd::revoked;
                        yield Ok(revoked_event(code, message));
                        break;
                    }
                }
            }
        }
        drop(slot);
    };
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::auth::principal::tests::user;
    use crate::auth::store::{ApiToken, Session};
    use crate::auth::Grants;
    use crate::ledger::{Change, ChangeMeta};

    fn t0() -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 0).single().expect("time")
    }

    fn session(last_seen: i64, expires: i64) -> Session {
        Session {
            id_digest: "s1".into(),
            user_id: "u_alice".into(),
            csrf_token: "c".into(),
            created_at: t0(),
            last_seen_at: t0() + chrono::Duration::seconds(last_seen),
            expires_at: t0() + chrono::Duration::seconds(expires),
            pending: None,
            ip: None,
            user_agent: None,
        }
    }

    fn token(expires: Option<i64>, created_by: Option<&str>) -> ApiToken {
        ApiToken {
            id: "tok_1".into(),
            name: "ci".into(),
            digest: "d".into(),
            grants: Grants::new(vec!["viewer:demo".parse().expect("grant")]),
            created_by: created_by.map(str::to_owned),
            created_at: t0(),
            expires_at: expires.map(|s| t0() + chrono::Duration::seconds(s)),
            last_used_at: None,
            revoked_at: None,
        }
    }

    fn alice(list: &[&str]) -> Principal {
        Principal::User {
            user: user("alice", list, false),
            session: session(0, 3600),
        }
    }

    #[test]
    fn the_next_check_is_the_first_deadline_or_the_interval() {
        let policy = SessionPolicy {
            idle_timeout: Duration::from_secs(30),
            lifetime: Duration::from_secs(3600),
        };
        let s = Duration::from_secs;
        let user_with = |seen, expires| Principal::User {
            user: user("alice", &["viewer"], false),
            session: session(seen, expires),
        };
        // (principal, seconds after t0, next check)
        let table = [
            (user_with(0, 3600), 0, RECHECK_INTERVAL),
            (user_with(0, 3600), 27, s(3)),
            (user_with(0, 3600), 30, MIN_RECHECK),
            (user_with(0, 3600), 31, MIN_RECHECK),
            (user_with(10, 12), 10, s(2)),
            (
                Principal::Token {
                    token: token(None, None),
                    creator: None,
                },
                0,
                RECHECK_INTERVAL,
            ),
            (
                Principal::Token {
                    token: token(Some(4), None),
                    creator: None,
                },
                1,
                s(3),
            ),
            (Principal::Bootstrap, 0, RECHECK_INTERVAL),
        ];
        for (p, at, want) in table {
            let now = t0() + chrono::Duration::seconds(at);
            assert_eq!(next_check(&p, &policy, now), want, "{p:?} at {at}");
        }
    }

    #[test]
    fn which_notices_concern_a_stream() {
        let by_session = alice(&["viewer"]);
        let by_token = Principal::Token {
            token: token(None, Some("u_alice")),
            creator: Some(user("alice", &["viewer"], false)),
        };
        let cli_token = Principal::Token {
            token: token(None, None),
            creator: None,
        };
        let session = |d: &str| Revoked::Session(d.into());
        let user = |u: &str| Revoked::User(u.into());
        let tok = |t: &str| Revoked::Token(t.into());
        // (principal, notice, concerns)
        let table = [
            (&by_session, session("s1"), true),
            (&by_session, session("s2"), false),
            (&by_session, user("u_alice"), true),
            (&by_session, user("u_bob"), false),
            (&by_session, tok("tok_1"), false),
            (&by_token, tok("tok_1"), true),
            (&by_token, tok("tok_2"), false),
            (&by_token, user("u_alice"), true),
            (&by_token, session("s1"), false),
            (&cli_token, user("u_alice"), false),
            (&Principal::Bootstrap, user("u_alice"), false),
        ];
        for (p, notice, want) in table {
            assert_eq!(
                concerns(&Credential::of(p), p, &notice),
                want,
                "{p:?} {notice:?}"
            );
        }
    }

    #[test]
    fn verdicts() {
        let need = Need::InNamespace(Role::Viewer, "demo".into());
        let code = |v: Verdict| match v {
            Verdict::Keep(_) => "keep",
            Verdict::Close { code, .. } => code,
            Verdict::Unknown => "unknown",
        };
        let store_down = Denial::Store(crate::auth::store::AuthStoreError::Corrupt("x".into()));
        // (re-check result, verdict)
        let table: Vec<(Result<Principal, Denial>, &str)> = vec![
            (Ok(alice(&["viewer:demo"])), "keep"),
            (Ok(alice(&["admin"])), "keep"),
            (Ok(alice(&["editor:payments"])), "forbidden"),
            (Ok(Principal::Bootstrap), "keep"),
            (
                Err(Denial::Unauthorized { clear_cookie: true }),
                "unauthorized",
            ),
            (Err(Denial::TokenExpired), "unauthorized"),
            (Err(store_down), "unknown"),
        ];
        for (result, want) in table {
            assert_eq!(code(verdict(result, &need)), want);
        }
    }

    #[test]
    fn a_commit_event_names_keys_never_values() {
        let cs = Changeset {
            namespace: "demo".into(),
            epoch: 1,
            version: 42,
            created_at: t0(),
            meta: ChangeMeta {
                actor: "alice".into(),
                comment: "  ".into(),
                ..ChangeMeta::default()
            },
            changes: vec![
                Change {
                    key: "SITE_NAME".into(),
                    old: None,
                    new: Some(json!("secret-ish")),
                    default: None,
                },
                Change {
                    key: "THEME_COLOR".into(),
                    old: None,
                    new: None,
                    default: None,
                },
            ],
        };
        let ev = CommitEvent::of(&cs);
        assert_eq!(
            ev.json(),
            json!({"namespace": "demo", "version": 42, "actor": "alice", "comment": null,
                   "created_at": "2023-11-14T22:13:20.000Z", "keys": ["SITE_NAME", "THEME_COLOR"]})
        );
        let mut with_comment = cs;
        with_comment.meta.comment = "launch".into();
        assert_eq!(
            CommitEvent::of(&with_comment).comment.as_deref(),
            Some("launch")
        );
    }

    #[test]
    fn last_event_ids() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("last-event-id", v.parse().expect("header"));
            h
        };
        assert_eq!(last_event_id(&with("42")), Some(42));
        assert_eq!(last_event_id(&with(" 7 ")), Some(7));
        assert_eq!(last_event_id(&with("1-42")), None);
        assert_eq!(last_event_id(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn the_hub_publishes_each_commit_once_in_order_from_the_ledger() {
        use crate::ledger::embedded::EmbeddedLedger;
        use crate::ledger::CommitRequest;
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger: Arc<dyn Ledger> =
            Arc::new(EmbeddedLedger::open(dir.path(), "default").expect("open"));
        ledger.ensure_namespace("demo").await.expect("ns");
        let metrics = AdminMetrics::register(&mut crate::metrics::registry());
        let hub = CommitEvents::new(ledger.clone(), 2, metrics, Shutdown::new());
        // Nobody listens: the hub only remembers.
        let commit = |n: i64| {
            let ledger = ledger.clone();
            async move {
                ledger
                    .commit(CommitRequest {
                        namespace: "demo".into(),
                        changes: vec![("N".into(), Some(json!(n)))],
                        meta: ChangeMeta {
                            actor: "alice".into(),
                            ..ChangeMeta::default()
                        },
                        fingerprint: format!("f{n}"),
                        ..CommitRequest::default()
                    })
                    .await
                    .expect("commit")
                    .state
                    .version
            }
        };
        let v1 = commit(1).await;
        hub.advance("demo", v1).await;
        let mut rx = hub.subscribe("demo");
        hub.prime("demo", v1).await;
        let v2 = commit(2).await;
        let v3 = commit(3).await;
        // Out of order and twice: each changeset once, in order.
        hub.advance("demo", v3).await;
        hub.advance("demo", v2).await;
        hub.advance("demo", v3).await;
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok().map(|e| e.version)).collect();
        assert_eq!(got, vec![v2, v3]);
        let replayed: Vec<u64> = hub
            .replay("demo", 0, v3)
            .await
            .expect("replay")
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(replayed, vec![v1, v2, v3]);
        // The cap: two slots, the third refused.
        let a = hub.slot().expect("slot");
        let _b = hub.slot().expect("slot");
        assert_eq!(hub.slot().err().map(|e| e.code), Some("too_many_streams"));
        drop(a);
        assert!(hub.slot().is_ok());
    }
}
