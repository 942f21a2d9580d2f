//! Login throttling: when a sign-in attempt may be tried at all.
//!
//! Two keys are throttled with one rule ([`decide`]):
//! - the **account**: its [`LoginFailures`] live in the [`AuthStore`](super::AuthStore), shared by
//!   every admin replica ([`ThrottlePolicy::PER_ACCOUNT`]);
//! - the **client IP** ([`client_ip`](super::client_ip)): in memory per replica, in
//!   [`IpThrottle`] ([`ThrottlePolicy::PER_IP`], a higher hourly cap since many people can share
//!   one NAT address).
//!
//! # The rule
//! After `backoff_after` (10) consecutive failures, the next attempt must wait `first_delay` (1 s)
//! after the last failure, then 2 s, 4 s, … up to `max_delay` (15 min). Separately, an account
//! that failed `per_hour` (100) times within its current one-hour window is refused until the window
//! ends. A successful sign-in clears an account's counts ([`AuthStore::clear_login_failures`](super::AuthStore::clear_login_failures)).
//!
//! # For the login route
//! ```ignore
//! let ip = client_ip::from_headers(peer, req.headers(), &trusted_proxies);
//! if !ip_throttle.check(ip, now).is_allowed() {
//!     return Err(invalid_credentials()); // at once: the address, not an account, is throttled
//! }
//! let user = store.user_by_name(&name).await?;
//! let phc = user.as_ref().and_then(|u| u.password_hash.as_deref());
//! let locked = user.as_ref()
//!     .is_some_and(|u| !decide(&u.failures, now, &ThrottlePolicy::PER_ACCOUNT).is_allowed());
//! let ok = match phc {
//!     Some(phc) if !locked => hasher.verify(&password, phc).await?,
//!     _ => { hasher.verify_dummy(&password).await; false } // unknown, SSO-only or locked
//! };
//! match (ok, &user) {
//!     (true, Some(u)) => { store.clear_login_failures(&u.id).await?; ip_throttle.succeeded(ip); }
//!     (_, u) => {
//!         if let (Some(u), false) = (u, locked) { store.record_login_failure(&u.id, now).await?; }
//!         ip_throttle.failed(ip, now);
//!         return Err(invalid_credentials()); // the same answer in every case
//!     }
//! }
//! ```
//! - A refused attempt gets **exactly the answer of a wrong password** (same status, body and
//!   headers: no `Retry-After`, no `account_locked`), so a lock does not tell that the account
//!   exists. The password is not checked, so a right password during back-off also fails.
//! - It is answered **without sleeping**: a sleeping request would hold a connection and a task per
//!   attempt, which is what a flood wants.
//! - For an *account* refusal, still spend [`Hasher::verify_dummy`](super::password::Hasher::verify_dummy)
//!   first: unknown names are never locked, so an instant answer would tell a locked (existing)
//!   account from an unknown one by timing. An *IP* refusal says nothing about any account and is
//!   answered at once, which keeps a flood from one address off the hashing cap.
//! - Whether a refused attempt counts as another failure is the caller's choice; not counting it
//!   (as above) keeps an attacker from pushing the back-off of a victim's account ever higher.
//! - Attempts that start together all see the same counts; the hashing cap bounds how many of those
//!   are verified at once, and the hourly cap bounds the total.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;

pub use super::store::LoginFailures;

/// The length of the window `per_hour` counts in ([`LoginFailures::window_start`]).
pub const WINDOW: Duration = Duration::from_secs(3600);

/// The numbers of the throttle (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Consecutive failures allowed before the back-off starts.
    pub backoff_after: u32,
    /// The wait after the `backoff_after`-th consecutive failure; doubles with each further one.
    pub first_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// Failed attempts allowed in one [`WINDOW`]; then every attempt is refused until it ends.
    pub per_hour: u32,
}

impl ThrottlePolicy {
    /// Per account: back-off after 10 failures from 1 s to 15 min, at most 100 failures an hour.
    pub const PER_ACCOUNT: Self = Self {
        backoff_after: 10,
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(15 * 60),
        per_hour: 100,
    };

    /// Per client IP: as per account, but 1000 failures an hour (a NAT address is shared).
    pub const PER_IP: Self = Self {
        per_hour: 1000,
        ..Self::PER_ACCOUNT
    };

    /// The wait imposed after `consecutive` failures: zero below `backoff_after`, then
    /// `first_delay × 2^(consecutive − backoff_after)`, at most `max_delay`.
    pub fn backoff(&self, consecutive: u32) -> Duration {
        if consecutive < self.backoff_after {
            return Duration::ZERO;
        }
        let doublings = consecutive - self.backoff_after;
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.first_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self::PER_ACCOUNT
    }
}

/// Whether an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer as for a wrong password, at once (see the module docs). `retry_after` is when an
    /// attempt would be allowed again: for logs and the admin's view of the user, never for the
    /// client.
    Refuse {
        retry_after: Duration,
    },
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow)
    }
}

/// The throttle decision for one key (an account or an IP) at `now`. Pure.
///
/// Clock skew between replicas is bounded: a `last_at` or `window_start` in the future never makes
/// a wait longer than the back-off itself or one window.
pub fn decide(failures: &LoginFailures, now: DateTime<Utc>, policy: &ThrottlePolicy) -> Verdict {
    let mut wait = Duration::ZERO;
    if let Some(start) = failures.window_start {
        if failures.in_window >= policy.per_hour && in_window(start, now) {
            wait = wait.max(until(start + window(), now).min(WINDOW));
        }
    }
    if let Some(last) = failures.last_at {
        let delay = policy.backoff(failures.consecutive);
        if !delay.is_zero() {
            let delta = TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
            let end = last
                .checked_add_signed(delta)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            wait = wait.max(until(end, now).min(delay));
        }
    }
    if wait.is_zero() {
        Verdict::Allow
    } else {
        Verdict::Refuse { retry_after: wait }
    }
}

/// The counts after one more failure at `now`: `consecutive` + 1, `last_at` = `now`, and the
/// hourly window rolled (a new window starts at `now` when there is none or the current one is
/// over). Pure: what [`AuthStore::record_login_failure`](super::AuthStore::record_login_failure)
/// stores. A store applies it atomically — under its lock (embedded) or to the row read
/// `FOR UPDATE` in the same transaction (PostgreSQL) — so concurrent failures all count. A
/// success stores [`LoginFailures::default()`].
pub fn record_failure(failures: &LoginFailures, now: DateTime<Utc>) -> LoginFailures {
    let current = failures.window_start.filter(|start| in_window(*start, now));
    LoginFailures {
        consecutive: failures.consecutive.saturating_add(1),
        last_at: Some(failures.last_at.map_or(now, |last| last.max(now))),
        window_start: Some(current.unwrap_or(now)),
        in_window: match current {
            Some(_) => failures.in_window.saturating_add(1),
            None => 1,
        },
    }
}

fn window() -> TimeDelta {
    TimeDelta::seconds(WINDOW.as_secs() as i64)
}

/// Whether the window that started at `start` still runs at `now` (also when `start` is ahead
/// of this replica's clock).
fn in_window(start: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now < start + window()
}

/// How long from `now` to `end` (zero when `end` has passed).
fn until(end: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (end - now).to_std().unwrap_or(Duration::ZERO)
}

// ------------------------------------------------------------------------------------------------
// Per client IP

/// The most client IPs [`IpThrottle::new`] remembers.
pub const DEFAULT_MAX_IPS: usize = 100_000;

/// Failed sign-ins per client IP, in memory (per replica), with bounded memory: an IP not seen for
/// a [`WINDOW`] is forgotten (its counts no longer matter), and when `max_entries` IPs are
/// remembered the longest-idle tenth is dropped to make room.
///
/// IPv6 clients are counted per /64 (one household or host usually has a whole /64, so single
/// addresses would be free to rotate); an IPv4-mapped IPv6 address counts as its IPv4 address.
#[derive(Debug)]
pub struct IpThrottle {
    policy: ThrottlePolicy,
    max_entries: usize,
    state: Mutex<IpState>,
}

#[derive(Debug, Default)]
struct IpState {
    entries: HashMap<IpAddr, LoginFailures>,
    last_sweep: Option<DateTime<Utc>>,
}

/// How often [`IpThrottle::failed`] forgets idle IPs (when the map is not full).
const SWEEP_EVERY: TimeDelta = TimeDelta::minutes(1);

impl Default for IpThrottle {
    fn default() -> Self {
        Self::new()
    }
}

impl IpThrottle {
    /// [`ThrottlePolicy::PER_IP`], at most [`DEFAULT_MAX_IPS`] IPs.
    pub fn new() -> Self {
        Self::with_limits(ThrottlePolicy::PER_IP, DEFAULT_MAX_IPS)
    }

    pub fn with_limits(policy: ThrottlePolicy, max_entries: usize) -> Self {
        Self {
            policy,
            max_entries: max_entries.max(1),
            state: Mutex::new(IpState::default()),
        }
    }

    /// Whether a sign-in from `ip` may be tried at `now`.
    pub fn check(&self, ip: IpAddr, now: DateTime<Utc>) -> Verdict {
        let state = self.state.lock();
        match state.entries.get(&key(ip)) {
            Some(failures) => decide(failures, now, &self.policy),
            None => Verdict::Allow,
        }
    }

    /// A failed sign-in from `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: DateTime<Utc>) {
        let key = key(ip);
        let mut state = self.state.lock();
        let due = state.last_sweep.is_none_or(|at| now - at >= SWEEP_EVERY);
        let full = state.entries.len() >= self.max_entries && !state.entries.contains_key(&key);
        if due || full {
            state.forget_idle(now);
        }
        if state.entries.len() >= self.max_entries && !state.entries.contains_key(&key) {
            state.forget_longest_idle(self.max_entries.div_ceil(10));
        }
        let entry = state.entries.entry(key).or_default();
        *entry = record_failure(entry, now);
    }

    /// A successful sign-in from `ip`: ends its back-off. Its hourly count stays, so one valid
    /// account does not let an address try other accounts' passwords without limit.
    pub fn succeeded(&self, ip: IpAddr) {
        if let Some(failures) = self.state.lock().entries.get_mut(&key(ip)) {
            failures.consecutive = 0;
        }
    }

    /// How many IPs are remembered (for a gauge).
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl IpState {
    /// Drops the IPs whose last failure is a [`WINDOW`] old: their window is over and so is
    /// any back-off (`max_delay` is below an hour).
    fn forget_idle(&mut self, now: DateTime<Utc>) {
        self.entries
            .retain(|_, f| f.last_at.is_some_and(|last| in_window(last, now)));
        self.last_sweep = Some(now);
    }

    /// Drops the `n` IPs whose last failure is oldest.
    fn forget_longest_idle(&mut self, n: usize) {
        let mut by_age: Vec<(Option<DateTime<Utc>>, IpAddr)> = self
            .entries
            .iter()
            .map(|(ip, f)| (f.last_at, *ip))
            .collect();
        let n = n.min(by_age.len());
        if n == 0 {
            return;
        }
        by_age.select_nth_unstable(n - 1);
        for (_, ip) in &by_age[..n] {
            self.entries.remove(ip);
        }
    }
}

/// What an IP is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn secs(s: f64) -> TimeDelta {
        TimeDelta::milliseconds((s * 1000.0) as i64)
    }

    /// `n` failures, one every `gap` seconds from `t0`; returns the counts and the last failure's time.
    fn failures(n: u32, gap: f64) -> (LoginFailures, DateTime<Utc>) {
        let mut f = LoginFailures::default();
        let mut at = t0();
        for i in 0..n {
            at = t0() + secs(gap * f64::from(i));
            f = record_failure(&f, at);
        }
        (f, at)
    }

    fn refuse(s: f64) -> Verdict {
        Verdict::Refuse {
            retry_after: secs(s).to_std().unwrap(),
        }
    }

    #[test]
    fn backoff_table() {
        let p = ThrottlePolicy::PER_ACCOUNT;
        // (failures so far, one every gap s, asked how long after the last one, verdict)
        let cases: &[(u32, f64, f64, Verdict)] = &[
            (0, 0.0, 0.0, Verdict::Allow),
            (1, 0.0, 0.0, Verdict::Allow),
            (9, 0.0, 0.0, Verdict::Allow), // the 10th attempt may go ahead at once
            (10, 0.0, 0.0, refuse(1.0)),   // after the 10th failure: 1 s
            (10, 0.0, 0.4, refuse(0.6)),
            (10, 0.0, 1.0, Verdict::Allow),
            (11, 0.0, 0.0, refuse(2.0)), // after the 11th: 2 s
            (11, 0.0, 1.5, refuse(0.5)),
            (11, 0.0, 2.0, Verdict::Allow),
            (12, 0.0, 0.0, refuse(4.0)),
            (13, 0.0, 0.0, refuse(8.0)),
            (19, 0.0, 0.0, refuse(512.0)),
            (20, 0.0, 0.0, refuse(900.0)), // 1024 s capped at 15 min
            (40, 0.0, 0.0, refuse(900.0)),
            (40, 0.0, 899.0, refuse(1.0)),
            (40, 0.0, 900.0, Verdict::Allow),
            // failures spread out (as the back-off forces them to be) still count as consecutive
            (12, 30.0, 0.0, refuse(4.0)),
        ];
        for &(n, gap, after, want) in cases {
            let (f, last) = failures(n, gap);
            assert_eq!(
                decide(&f, last + secs(after), &p),
                want,
                "{n} failures, {after} s after the last"
            );
        }
    }

    #[test]
    fn backoff_never_overflows() {
        let p = ThrottlePolicy::PER_ACCOUNT;
        for n in [41, 42, 63, 64, 1000, u32::MAX] {
            assert_eq!(p.backoff(n), Duration::from_secs(900), "{n}");
        }
        let huge = ThrottlePolicy {
            first_delay: Duration::MAX,
            max_delay: Duration::MAX,
            ..p
        };
        assert_eq!(huge.backoff(12), Duration::MAX);
        let f = LoginFailures {
            consecutive: 12,
            last_at: Some(t0()),
            ..Default::default()
        };
        assert!(!decide(&f, t0(), &huge).is_allowed());
    }

    #[test]
    fn hourly_cap_table() {
        let p = ThrottlePolicy::PER_ACCOUNT;
        let at = |minutes: i64| t0() + TimeDelta::minutes(minutes);
        // an address whose back-off was reset by successes, but with many failures this hour
        let counts = |in_window: u32| LoginFailures {
            consecutive: 0,
            last_at: Some(at(50)),
            window_start: Some(t0()),
            in_window,
        };
        let cases: &[(u32, i64, Verdict)] = &[
            (99, 50, Verdict::Allow),
            (100, 50, refuse(600.0)), // refused until the window ends, 10 min later
            (100, 59, refuse(60.0)),
            (100, 60, Verdict::Allow), // the window is over
            (5000, 50, refuse(600.0)),
            // a window that starts ahead of this replica's clock waits at most one window
            (100, -30, refuse(3600.0)),
        ];
        for &(in_window, minute, want) in cases {
            assert_eq!(
                decide(&counts(in_window), at(minute), &p),
                want,
                "{in_window} at {minute} min"
            );
        }
    }

    #[test]
    fn the_longer_wait_wins() {
        let p = ThrottlePolicy::PER_ACCOUNT;
        // 100 failures, one every 30 s: the last at 49.5 min; back-off 15 min beats the
        // 10.5 min left in the window
        let (f, last) = failures(100, 30.0);
        assert_eq!(f.in_window, 100);
        assert_eq!(decide(&f, last, &p), refuse(900.0));
        // the same window, but only 11 consecutive (so 2 s back-off): the window's 10.5 min win
        let f = LoginFailures {
            consecutive: 11,
            ..f
        };
        assert_eq!(decide(&f, last, &p), refuse(630.0));
    }

    #[test]
    fn record_failure_rolls_the_window() {
        let f0 = LoginFailures::default();
        let f1 = record_failure(&f0, t0());
        assert_eq!(
            f1,
            LoginFailures {
                consecutive: 1,
                last_at: Some(t0()),
                window_start: Some(t0()),
                in_window: 1
            }
        );
        let almost = t0() + TimeDelta::seconds(3599);
        let f2 = record_failure(&f1, almost);
        assert_eq!(
            (f2.consecutive, f2.window_start, f2.in_window),
            (2, Some(t0()), 2)
        );
        assert_eq!(f2.last_at, Some(almost));
        // an hour after the window started, a new one starts; consecutive keeps counting
        let hour = t0() + TimeDelta::seconds(3600);
        let f3 = record_failure(&f2, hour);
        assert_eq!(
            (f3.consecutive, f3.window_start, f3.in_window),
            (3, Some(hour), 1)
        );
        // a clock behind the last failure does not move `last_at` back
        let f4 = record_failure(&f3, t0());
        assert_eq!(f4.last_at, Some(hour));
        assert_eq!((f4.consecutive, f4.in_window), (4, 2));
        // saturates instead of wrapping
        let full = LoginFailures {
            consecutive: u32::MAX,
            in_window: u32::MAX,
            ..f4
        };
        let f5 = record_failure(&full, hour);
        assert_eq!((f5.consecutive, f5.in_window), (u32::MAX, u32::MAX));
    }

    #[test]
    fn hundred_failures_an_hour_then_the_next_window() {
        // the cap without back-off in the way: a policy that never backs off
        let p = ThrottlePolicy {
            backoff_after: u32::MAX,
            ..ThrottlePolicy::PER_ACCOUNT
        };
        let (f, last) = failures(99, 1.0);
        assert!(decide(&f, last, &p).is_allowed());
        let f = record_failure(&f, last + secs(1.0));
        assert_eq!(f.in_window, 100);
        assert_eq!(decide(&f, last + secs(1.0), &p), refuse(3600.0 - 99.0));
        let later = t0() + TimeDelta::hours(1);
        assert!(decide(&f, later, &p).is_allowed());
        let f = record_failure(&f, later);
        assert_eq!((f.in_window, f.window_start), (1, Some(later)));
        assert!(decide(&f, later, &p).is_allowed());
    }

    #[test]
    fn success_resets() {
        // what a store writes on success
        let (f, last) = failures(15, 0.0);
        assert!(!decide(&f, last, &ThrottlePolicy::PER_ACCOUNT).is_allowed());
        assert!(decide(
            &LoginFailures::default(),
            last,
            &ThrottlePolicy::PER_ACCOUNT
        )
        .is_allowed());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_throttle_backs_off_and_success_resets() {
        let throttle = IpThrottle::new();
        let a = ip("203.0.113.7");
        let b = ip("203.0.113.8");
        for _ in 0..9 {
            assert!(throttle.check(a, t0()).is_allowed());
            throttle.failed(a, t0());
        }
        assert!(throttle.check(a, t0()).is_allowed());
        throttle.failed(a, t0());
        assert_eq!(throttle.check(a, t0()), refuse(1.0));
        throttle.failed(a, t0());
        assert_eq!(throttle.check(a, t0()), refuse(2.0));
        assert!(
            throttle.check(b, t0()).is_allowed(),
            "other addresses are not affected"
        );
        throttle.succeeded(a);
        assert!(throttle.check(a, t0()).is_allowed());
        throttle.succeeded(b); // unknown: nothing to do
        assert_eq!(throttle.len(), 1);
    }

    #[test]
    fn ip_throttle_success_keeps_the_hourly_count() {
        let policy = ThrottlePolicy {
            per_hour: 20,
            ..ThrottlePolicy::PER_IP
        };
        let throttle = IpThrottle::with_limits(policy, 10);
        let a = ip("198.51.100.1");
        for round in 0..2 {
            for _ in 0..9 {
                throttle.failed(a, t0());
            }
            throttle.succeeded(a);
            assert!(throttle.check(a, t0()).is_allowed(), "round {round}");
        }
        throttle.failed(a, t0());
        throttle.failed(a, t0());
        throttle.succeeded(a);
        assert_eq!(
            throttle.check(a, t0()),
            refuse(3600.0),
            "20 failures this hour"
        );
    }

    #[test]
    fn ip_throttle_counts_ipv6_per_64() {
        let throttle = IpThrottle::new();
        for i in 0..10 {
            throttle.failed(ip(&format!("2001:db8:1:2::{i:x}")), t0());
        }
        assert_eq!(throttle.len(), 1);
        assert_eq!(
            throttle.check(ip("2001:db8:1:2:ffff::1"), t0()),
            refuse(1.0)
        );
        assert!(throttle.check(ip("2001:db8:1:3::1"), t0()).is_allowed());
        // IPv4-mapped IPv6 is the IPv4 address
        for _ in 0..10 {
            throttle.failed(ip("::ffff:192.0.2.1"), t0());
        }
        assert_eq!(throttle.check(ip("192.0.2.1"), t0()), refuse(1.0));
        assert_eq!(throttle.len(), 2);
    }

    #[test]
    fn ip_throttle_forgets_idle_addresses() {
        let throttle = IpThrottle::new();
        let at = |m: i64, s: i64| t0() + TimeDelta::minutes(m) + TimeDelta::seconds(s);
        throttle.failed(ip("192.0.2.1"), at(0, 0));
        throttle.failed(ip("192.0.2.2"), at(30, 0));
        assert_eq!(throttle.len(), 2);
        // an hour after .1's last failure, the next sweep drops it
        throttle.failed(ip("192.0.2.3"), at(89, 50));
        assert_eq!(throttle.len(), 2);
        assert!(throttle.state.lock().entries.contains_key(&ip("192.0.2.2")));
        // sweeps run at most once a minute, so a burst does not scan the map each time:
        // .2 is idle from 90:00 but stays until the sweep due at 90:50
        throttle.failed(ip("192.0.2.4"), at(90, 30));
        assert_eq!(throttle.len(), 3);
        assert!(throttle.state.lock().entries.contains_key(&ip("192.0.2.2")));
        throttle.failed(ip("192.0.2.5"), at(91, 0));
        assert_eq!(throttle.len(), 3, ".3, .4, .5");
        assert!(!throttle.state.lock().entries.contains_key(&ip("192.0.2.2")));
    }

    #[test]
    fn ip_throttle_is_bounded() {
        let throttle = IpThrottle::with_limits(ThrottlePolicy::PER_IP, 100);
        for i in 0..100u32 {
            throttle.failed(
                IpAddr::from((0x0a00_0000 + i).to_be_bytes()),
                t0() + secs(f64::from(i)),
            );
        }
        assert_eq!(throttle.len(), 100);
        // full: the longest-idle tenth makes room
        throttle.failed(ip("192.0.2.1"), t0() + secs(100.0));
        assert_eq!(throttle.len(), 91);
        let kept = |i: u32| {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            throttle.state.lock().entries.contains_key(&ip)
        };
        assert!(!kept(0) && !kept(9), "the oldest went");
        assert!(kept(10) && kept(99), "the newest stayed");
        // a known address never evicts anything
        let throttle = IpThrottle::with_limits(ThrottlePolicy::PER_IP, 2);
        throttle.failed(ip("192.0.2.1"), t0());
        throttle.failed(ip("192.0.2.2"), t0());
        throttle.failed(ip("192.0.2.2"), t0());
        assert_eq!(throttle.len(), 2);
        throttle.failed(ip("192.0.2.3"), t0());
        assert_eq!(throttle.len(), 2, "one evicted for the newcomer");
    }
}
