//! The graceful drain of one listener's connections: on shutdown every connection is told to
//! finish (`graceful_shutdown`: idle keep-alive connections close at once, in-flight requests
//! complete), and [`Drain::shutdown`] resolves when the last one has gone.
//!
//! This is hyper-util's `GracefulShutdown` with one difference that matters on the read path:
//! that one polls a `watch` channel's `changed()` future — a lock on the channel's waiter list
//! — every time a connection is polled, i.e. several times per request. Here a connection
//! registers for the stop signal once (its first poll) and afterwards only loads an atomic
//! flag; the signal's `notify_waiters` wakes the registered task, whose next poll sees the flag.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// A connection that can be told to finish (hyper's HTTP/1 connection; a stand-in in tests).
pub(crate) trait GracefulConnection: Future {
    /// Stop taking new requests; close once idle.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, B, S> GracefulConnection for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::Connection::graceful_shutdown(self);
    }
}

#[derive(Debug, Default)]
struct Shared {
    /// Set (before `stop` is notified) once the drain has begun.
    stopping: AtomicBool,
    stop: Arc<Notify>,
    /// Connections (and TLS handshakes) not yet gone.
    live: AtomicUsize,
    /// Notified when `live` drops to 0.
    gone: Notify,
}

/// The drain of one listener.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    shared: Arc<Shared>,
}

impl Drain {
    pub(crate) fn new() -> Drain {
        Drain::default()
    }

    /// Counts a connection from now on (e.g. before its TLS handshake); [`Watcher::watch`]
    /// then watches it.
    pub(crate) fn watcher(&self) -> Watcher {
        self.shared.live.fetch_add(1, Ordering::AcqRel);
        Watcher {
            shared: self.shared.clone(),
        }
    }

    /// Tells every connection to finish and waits until all have gone.
    pub(crate) async fn shutdown(self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.stop.notify_waiters();
        loop {
            let gone = self.shared.gone.notified();
            tokio::pin!(gone);
            gone.as_mut().enable();
            if self.shared.live.load(Ordering::Acquire) == 0 {
                return;
            }
            gone.await;
        }
    }
}

/// One counted connection (see [`Drain::watcher`]); uncounted when dropped.
#[derive(Debug)]
pub(crate) struct Watcher {
    shared: Arc<Shared>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if self.shared.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.gone.notify_waiters();
        }
    }
}

impl Watcher {
    /// `conn`, told to finish when the drain begins.
    pub(crate) fn watch<C: GracefulConnection>(self, conn: C) -> Watched<C> {
        let stop = Box::pin(self.shared.stop.clone().notified_owned());
        Watched {
            conn: Box::pin(conn),
            stop,
            armed: false,
            told: false,
            _watcher: self,
        }
    }
}

/// A connection under a [`Drain`].
pub(crate) struct Watched<C> {
    conn: Pin<Box<C>>,
    stop: Pin<Box<OwnedNotified>>,
    /// `stop` has been polled once: this task is woken when the drain begins.
    armed: bool,
    /// `graceful_shutdown` was called.
    told: bool,
    _watcher: Watcher,
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        if !this.told {
            let stopping = if this.armed {
                this.shared().stopping.load(Ordering::Acquire)
            } else {
                this.armed = true;
                this.stop.as_mut().poll(cx).is_ready()
                    || this.shared().stopping.load(Ordering::Acquire)
            };
            if stopping {
                this.told = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

impl<C> Watched<C> {
    fn shared(&self) -> &Shared {
        &self._watcher.shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    /// A connection that finishes once told to (after `linger`), counting how often it was
    /// told.
    struct Conn {
        told: Arc<AtomicU32>,
        linger: Duration,
        done: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl Future for Conn {
        type Output = Result<(), std::io::Error>;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.get_mut().done.as_mut() {
                Some(sleep) => sleep.as_mut().poll(cx).map(Ok),
                None => Poll::Pending,
            }
        }
    }

    impl GracefulConnection for Conn {
        fn graceful_shutdown(self: Pin<&mut Self>) {
            let this = self.get_mut();
            this.told.fetch_add(1, Ordering::SeqCst);
            this.done = Some(Box::pin(tokio::time::sleep(this.linger)));
        }
    }

    fn conn(told: &Arc<AtomicU32>, linger_ms: u64) -> Conn {
        Conn {
            told: told.clone(),
            linger: Duration::from_millis(linger_ms),
            done: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_tells_every_connection_once_and_waits_for_the_last() {
        let drain = Drain::new();
        let told = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for linger in [0, 100, 300] {
            tasks.push(tokio::spawn(drain.watcher().watch(conn(&told, linger))));
        }
        // A connection counted (a TLS handshake) but not yet watched holds the drain too.
        let handshake = drain.watcher();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = tokio::time::Instant::now();
        let shutdown = tokio::spawn(drain.shutdown());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!shutdown.is_finished(), "the handshake is still counted");
        let late = tokio::spawn(handshake.watch(conn(&told, 50)));
        shutdown.await.expect("drained");
        assert!(started.elapsed() >= Duration::from_millis(550));
        for task in tasks {
            task.await.expect("joined").expect("finished");
        }
        late.await.expect("joined").expect("finished");
        assert_eq!(told.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_with_no_connections_ends_at_once() {
        tokio::time::timeout(Duration::from_millis(1), Drain::new().shutdown())
            .await
            .expect("nothing to wait for");
    }
}
