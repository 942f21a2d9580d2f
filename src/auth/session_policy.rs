//! Session lifetimes: the idle timeout and the absolute lifetime (`--session-idle-timeout`,
//! `--session-lifetime`), when `last_seen_at` is refreshed, and how a new session is made.
//! Pure functions with table tests; the guard and the sign-in do the I/O.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::secrets::{new_random_token, new_session_id};
use super::store::{Pending, Session};

/// The default idle timeout: 30 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The default absolute lifetime: 12 hours.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// `last_seen_at` is refreshed at most this often (and at least twice per idle timeout).
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// A half-finished sign-in (TOTP enrolment) lasts at most this long.
const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// How long sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle_timeout: Duration,
    pub lifetime: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            lifetime: DEFAULT_LIFETIME,
        }
    }
}

/// Whether a stored session may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Live,
    /// No request for longer than the idle timeout.
    Idle,
    /// Past its absolute lifetime.
    Expired,
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl SessionPolicy {
    pub fn state(&self, s: &Session, now: DateTime<Utc>) -> SessionState {
        if now >= s.expires_at {
            SessionState::Expired
        } else if now - s.last_seen_at >= chrono(self.idle_timeout) {
            SessionState::Idle
        } else {
            SessionState::Live
        }
    }

    /// Whether to refresh `last_seen_at` now (at most once a minute, and at least twice per
    /// idle timeout so a busy session never looks idle).
    pub fn touch_due(&self, s: &Session, now: DateTime<Utc>) -> bool {
        let every = TOUCH_EVERY.min(self.idle_timeout / 2);
        now - s.last_seen_at >= chrono(every)
    }

    /// The cookie's `Max-Age` for a session made now.
    pub fn cookie_max_age(&self, pending: Option<Pending>) -> Duration {
        match pending {
            Some(_) => PENDING_LIFETIME.min(self.lifetime),
            None => self.lifetime,
        }
    }

    /// A new session for `user_id`: the id for the cookie (shown to the client only) and the
    /// session to store (its digest, a fresh CSRF token, the absolute end).
    pub fn new_session(
        &self,
        user_id: &str,
        pending: Option<Pending>,
        ip: Option<String>,
        user_agent: Option<String>,
        now: DateTime<Utc>,
    ) -> (String, Session) {
        let (id, id_digest) = new_session_id();
        let session = Session {
            id_digest,
            user_id: user_id.to_owned(),
            csrf_token: new_random_token(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + chrono(self.cookie_max_age(pending)),
            pending,
            ip,
            user_agent,
        };
        (id, session)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn idle_and_absolute_expiry() {
        let policy = SessionPolicy {
            idle_timeout: Duration::from_secs(1800),
            lifetime: Duration::from_secs(12 * 3600),
        };
        let t0 = Utc.timestamp_opt(1_700_000_000, 0).single().expect("time");
        let (id, s) = policy.new_session("u_1", None, None, None, t0);
        assert_eq!(id.len(), 43);
        assert_eq!(s.expires_at, t0 + chrono::Duration::hours(12));
        let secs = chrono::Duration::seconds;
        // (last seen after t0, now after t0, state, touch due)
        let table = [
            (0, 0, SessionState::Live, false),
            (0, 59, SessionState::Live, false),
            (0, 60, SessionState::Live, true),
            (0, 1799, SessionState::Live, true),
            (0, 1800, SessionState::Idle, true),
            (43_000, 43_199, SessionState::Live, true),
            (43_000, 43_200, SessionState::Expired, true),
        ];
        for (seen, now, state, touch) in table {
            let mut s = s.clone();
            s.last_seen_at = t0 + secs(seen);
            let now = t0 + secs(now);
            assert_eq!(policy.state(&s, now), state, "{seen} {now}");
            assert_eq!(policy.touch_due(&s, now), touch, "{seen} {now}");
        }
    }

    #[test]
    fn short_idle_timeouts_touch_often_and_pending_sessions_are_short() {
        let policy = SessionPolicy {
            idle_timeout: Duration::from_secs(4),
            lifetime: Duration::from_secs(3600),
        };
        let t0 = Utc.timestamp_opt(1_700_000_000, 0).single().expect("time");
        let (_, s) = policy.new_session("u_1", Some(Pending::TotpEnrolment), None, None, t0);
        assert_eq!(s.expires_at, t0 + chrono::Duration::minutes(10));
        assert!(!policy.touch_due(&s, t0 + chrono::Duration::seconds(1)));
        assert!(policy.touch_due(&s, t0 + chrono::Duration::seconds(2)));
        let (a, sa) = policy.new_session("u_1", None, None, None, t0);
        let (b, sb) = policy.new_session("u_1", None, None, None, t0);
        assert_ne!(a, b);
        assert_ne!(sa.csrf_token, sb.csrf_token);
    }
}
