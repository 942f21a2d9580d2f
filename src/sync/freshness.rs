//! The sidecar's freshness decisions, as pure functions (table tests below):
//! - [`staleness_bound`]: the published bound `B` (docs/OPERATIONS.md) — a read that says
//!   `X-Config-Stale: false` is never more than `B` behind the ledger's acknowledged state;
//! - [`proven_at`]: the last moment a sync round proves the sidecar was in sync with the
//!   *ledger* (not merely with Redis): the relay's heartbeat `relay_at`, which the relay only
//!   moves while Redis covers the ledger, carried back to our clock through the round's own
//!   send time (no clock skew between hosts enters);
//! - [`liveness_timeout`]: the subscriber `PING` timeout adapting to measured round trips,
//!   bounded by a floor and a cap (the cap enters `B`);
//! - [`link_up`]: whether Redis is connected, from the clients' real state and the last
//!   successful command; [`link_change`]: how a change of it is logged (a first connection is
//!   not a reconnect).

use std::time::{Duration, Instant};

/// How many of the latest ping round trips the adaptive timeout looks at.
pub(crate) const RTT_SAMPLES: usize = 32;
/// The timeout is this many times the p90 round trip.
pub(crate) const RTT_FACTOR: u32 = 4;
/// The longest liveness timeout: a link slower than this is reported as failed.
pub(crate) const LIVENESS_CAP: Duration = Duration::from_secs(5);

/// `B = 2 × resync + relay + liveness_cap`: the relay's heartbeat can be one relay interval
/// old when read; the sidecar reads it at least every resync interval (+20 % jitter, plus the
/// round's own time, bounded by the liveness cap) — two resync intervals leave room for one
/// round lost to a transient error without a false alarm.
pub fn staleness_bound(resync: Duration, relay: Duration, liveness_cap: Duration) -> Duration {
    resync * 2 + relay + liveness_cap
}

/// The cap of the adaptive liveness timeout for a resync interval: the resync interval,
/// between the floor and [`LIVENESS_CAP`].
pub fn liveness_cap(resync: Duration, floor: Duration) -> Duration {
    resync.clamp(floor, LIVENESS_CAP.max(floor))
}

/// The local instant a round proves the served state was in sync with the ledger: the round
/// was sent at `sent` (local clock); Redis answered at `redis_time` with a `relay_at` that
/// many seconds earlier (both Redis's clock). `None` when the relay never beat, or its beat
/// is from the future by more than a clock tick (a different Redis clock: not provable).
pub fn proven_at(sent: Instant, redis_time: Option<f64>, relay_at: Option<f64>) -> Option<Instant> {
    let (now, at) = (redis_time?, relay_at?);
    let lag = now - at;
    if !lag.is_finite() || lag < -0.001 {
        return None;
    }
    sent.checked_sub(Duration::from_secs_f64(lag.max(0.0)))
}

/// `clamp(RTT_FACTOR × p90(rtts), floor, cap)`; `floor` with no samples yet.
pub fn liveness_timeout(rtts: &[Duration], floor: Duration, cap: Duration) -> Duration {
    if rtts.is_empty() {
        return floor.min(cap);
    }
    let mut sorted = rtts.to_vec();
    sorted.sort_unstable();
    let i = (sorted.len() * 9).div_ceil(10).saturating_sub(1);
    (sorted[i] * RTT_FACTOR).clamp(floor.min(cap), cap)
}

/// Whether Redis counts as connected: both clients report a live connection and a command
/// succeeded within `window` (a connection can be open while Redis never answers).
pub fn link_up(clients_connected: bool, since_last_ok: Option<Duration>, window: Duration) -> bool {
    clients_connected && since_last_ok.is_some_and(|d| d <= window)
}

/// What a change of `redis_connected` is logged as.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkChange {
    /// The first connection since start (after the `NotReachableYet` wait, if any).
    Connected,
    /// Up again after having been up before; the time it was down.
    Reconnected(Duration),
    /// Down after having been up; the time it was up.
    Disconnected(Duration),
    /// Down before the first connection.
    NotReachableYet,
}

/// The log entry of a link that is now `up`, was up at some point before (`ever_up`), and
/// spent `held` in the state it leaves (`None`: no state yet). A first connection is never
/// called a reconnect (it once logged "reconnected after 0.0 s" at start).
pub fn link_change(up: bool, ever_up: bool, held: Option<Duration>) -> LinkChange {
    match (up, ever_up, held) {
        (true, true, Some(d)) => LinkChange::Reconnected(d),
        (true, _, _) => LinkChange::Connected,
        (false, true, Some(d)) => LinkChange::Disconnected(d),
        (false, _, _) => LinkChange::NotReachableYet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_change_is_named_by_what_came_before() {
        let s = Duration::from_secs;
        // (up now, up ever before, time in the state left, logged as)
        let rows = [
            (true, false, None, LinkChange::Connected),
            (true, false, Some(s(1)), LinkChange::Connected),
            (true, true, Some(s(3)), LinkChange::Reconnected(s(3))),
            (false, true, Some(s(60)), LinkChange::Disconnected(s(60))),
            (false, false, None, LinkChange::NotReachableYet),
            (false, false, Some(s(1)), LinkChange::NotReachableYet),
        ];
        for (up, ever, held, want) in rows {
            assert_eq!(link_change(up, ever, held), want, "{up} {ever} {held:?}");
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_bound_adds_two_resyncs_one_relay_interval_and_the_liveness_cap() {
        // (resync, relay, cap, B)
        let rows = [
            (ms(5000), ms(1000), ms(5000), ms(16_000)), // defaults
            (ms(500), ms(200), ms(500), ms(1700)),      // the fault tests
            (ms(30_000), ms(1000), ms(5000), ms(66_000)),
            (ms(50), ms(1000), ms(300), ms(1400)),
        ];
        for (resync, relay, cap, b) in rows {
            assert_eq!(
                staleness_bound(resync, relay, cap),
                b,
                "{resync:?} {relay:?}"
            );
        }
    }

    #[test]
    fn the_liveness_cap_is_the_resync_interval_between_floor_and_five_seconds() {
        let rows = [
            (ms(5000), ms(1000), ms(5000)),
            (ms(500), ms(300), ms(500)),
            (ms(100), ms(300), ms(300)),
            (ms(30_000), ms(1000), ms(5000)),
            (ms(30_000), ms(8000), ms(8000)),
        ];
        for (resync, floor, cap) in rows {
            assert_eq!(liveness_cap(resync, floor), cap, "{resync:?} {floor:?}");
        }
    }

    #[test]
    fn a_round_proves_sync_as_of_the_relays_beat_on_our_clock() {
        let sent = Instant::now() + Duration::from_secs(100);
        // (name, Redis TIME, relay_at, proven = sent − …)
        type Row = (&'static str, Option<f64>, Option<f64>, Option<Duration>);
        let rows: [Row; 6] = [
            ("beat just now", Some(1000.0), Some(1000.0), Some(ms(0))),
            ("beat 0.75 s old", Some(1000.0), Some(999.25), Some(ms(750))),
            (
                "frozen relay, 40 s old",
                Some(1000.0),
                Some(960.0),
                Some(ms(40_000)),
            ),
            ("relay never beat", Some(1000.0), None, None),
            ("no Redis TIME", None, Some(999.0), None),
            ("beat from the future", Some(1000.0), Some(1002.0), None),
        ];
        for (name, time, at, back) in rows {
            let got = proven_at(sent, time, at);
            assert_eq!(got, back.map(|b| sent - b), "{name}");
        }
    }

    #[test]
    fn the_liveness_timeout_follows_the_p90_round_trip_within_bounds() {
        let floor = ms(1000);
        let cap = ms(5000);
        // (name, samples, timeout)
        let rows: [(&str, Vec<Duration>, Duration); 5] = [
            ("no samples", vec![], floor),
            ("loopback", vec![ms(1); 20], floor),
            ("+500 ms", vec![ms(500); 20], ms(2000)),
            (
                "+1 s with one outlier",
                {
                    let mut v = vec![ms(1000); 19];
                    v.push(ms(9000));
                    v
                },
                ms(4000),
            ),
            ("+2 s", vec![ms(2000); 20], cap),
        ];
        for (name, rtts, want) in rows {
            assert_eq!(liveness_timeout(&rtts, floor, cap), want, "{name}");
        }
    }

    #[test]
    fn connected_needs_live_clients_and_a_recent_success() {
        let w = ms(3000);
        let rows = [
            ("open and answering", true, Some(ms(200)), true),
            ("open but silent (blackhole)", true, Some(ms(3500)), false),
            ("never answered", true, None, false),
            ("reconnecting", false, Some(ms(10)), false),
        ];
        for (name, clients, since, up) in rows {
            assert_eq!(link_up(clients, since, w), up, "{name}");
        }
    }
}
