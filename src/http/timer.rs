//! hyper's timer for one connection: the header-read timeout without a timer-wheel operation
//! per request.
//!
//! hyper arms the header-read timeout (`http::server::HEADER_READ_TIMEOUT`) every time it starts
//! reading a request head and drops it once the head is read. With hyper-util's `TokioTimer`
//! that is, per request on a keep-alive connection, a boxed `tokio::time::Sleep` registered in
//! the runtime's timer wheel (under the driver's lock) and deregistered again — a good part of
//! what a key read costs on top of hyper itself (docs/PERFORMANCE.md, "Instructions per read").
//!
//! [`ConnTimer`] keeps one `Sleep` per connection and moves its deadline instead: a later
//! deadline is a single atomic store in tokio (the wheel entry fires at the old time, sees the
//! new one and re-arms itself), so a request costs no lock and no wheel insert. The timeout
//! fires at the same instant as with `TokioTimer`; a dropped timeout leaves the `Sleep` armed,
//! which costs at most one spurious wake-up of the connection's task per timeout period.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// One connection's timer (give each connection its own: the `Sleep` it keeps is shared by
/// every timeout that connection arms).
#[derive(Clone, Default)]
pub struct ConnTimer {
    slot: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl ConnTimer {
    pub fn new() -> ConnTimer {
        ConnTimer::default()
    }
}

impl Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(ConnSleep {
            slot: Arc::clone(&self.slot),
            deadline: deadline.into(),
        })
    }

    /// The runtime's clock (as `TokioTimer`), so that a paused test runtime pauses it too.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<ConnSleep>() {
            Some(s) => s.get_mut().deadline = new_deadline.into(),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// One timeout armed by hyper: ready once `deadline` has passed.
struct ConnSleep {
    slot: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
    deadline: tokio::time::Instant,
}

impl Future for ConnSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        // One connection's task is the only user: the lock is never contended.
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            // Later (the usual case): an atomic store. Earlier (never from hyper, whose
            // deadlines only grow): tokio re-registers.
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

impl Sleep for ConnSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn a_timeout_fires_at_its_own_deadline_never_before() {
        let timer = ConnTimer::new();
        let start = Instant::now();
        timer.sleep(100 * MS).await;
        assert!(start.elapsed() >= 100 * MS);

        // Armed, dropped before its deadline (a head was read), armed again for longer: the
        // second fires at its own deadline, not at the first's (the `Sleep` is shared).
        let first = timer.sleep(100 * MS);
        tokio::time::sleep(20 * MS).await;
        drop(first);
        let rearmed = Instant::now();
        timer.sleep(300 * MS).await;
        assert!(rearmed.elapsed() >= 300 * MS);

        // `reset` moves a pending timeout later.
        let mut s = timer.sleep(10 * MS);
        let moved = Instant::now();
        timer.reset(&mut s, timer.now() + 200 * MS);
        s.await;
        assert!(moved.elapsed() >= 200 * MS);

        // An earlier deadline than the one the shared `Sleep` holds is honoured too.
        let waker = futures_util::task::noop_waker();
        let mut long = timer.sleep(10_000 * MS);
        assert!(long
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        drop(long);
        let short = Instant::now();
        timer.sleep(50 * MS).await;
        assert!(short.elapsed() >= 50 * MS);
    }

    #[tokio::test]
    async fn a_timeout_not_yet_due_is_pending_and_then_ready() {
        let timer = ConnTimer::new();
        let mut s = timer.sleep(10_000 * MS);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(s.as_mut().poll(&mut cx).is_pending());
        timer.reset(&mut s, timer.now());
        tokio::time::sleep(20 * MS).await;
        assert!(s.as_mut().poll(&mut cx).is_ready());
    }
}
