//! The request-head deadline of one connection: [`HEADER_READ_TIMEOUT`] to send a request head,
//! kept with one timer per connection instead of one per request.
//!
//! hyper's own `header_read_timeout` allocates a timer, registers it in tokio's timer wheel and
//! removes it again for every request head — about 6 % of a key read's instructions. Here a
//! connection's socket is wrapped ([`Deadlined`]) and shares a small [`HeadClock`] with the
//! connection's service:
//!
//! - the clock is *waiting for a head* from the connection's start, and again from the moment
//!   a response is done (its body dropped by hyper: [`Tracked`]), until the service is called
//!   with the next request (the head has arrived);
//! - while waiting, a read that would block polls one `tokio::time::Sleep` that lives as long
//!   as the connection. It is armed once and re-armed lazily: when it fires before the current
//!   deadline (which moved on with later requests), it is reset to that deadline. A busy
//!   keep-alive connection so touches the timer wheel about once per timeout, not per request;
//! - at the deadline, a connection that had sent part of a head gets `408 Request Timeout`
//!   (empty body, `connection: close`) — written only when nothing of an earlier response is
//!   still unflushed, so it can never be spliced into another answer — and is closed; an idle
//!   keep-alive connection is closed without an answer, as hyper, nginx and Go do.
//!
//! The deadline of a request whose head has arrived is the request timeout's business
//! (`TimeoutLayer`), and streams (SSE, long-polls) are never cut by this clock: it does not
//! wait for a head while a response is being sent.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::server::HEADER_READ_TIMEOUT;

/// What a timed-out partial head is answered with.
pub(crate) const REQUEST_TIMEOUT_RESPONSE: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// The state shared by a connection's socket wrapper and its service.
#[derive(Debug)]
pub(crate) struct HeadClock {
    /// The instant the times below count from (the connection's start).
    base: Instant,
    /// Waiting for a request head (none in flight, no response being sent).
    waiting: AtomicBool,
    /// Bytes arrived since the wait began (a head is on its way).
    partial: AtomicBool,
    /// When the wait began, in nanoseconds since `base`.
    since_nanos: AtomicU64,
}

impl HeadClock {
    pub(crate) fn new() -> Arc<HeadClock> {
        Arc::new(HeadClock {
            base: Instant::now(),
            waiting: AtomicBool::new(true),
            partial: AtomicBool::new(false),
            since_nanos: AtomicU64::new(0),
        })
    }

    /// The service was called: a whole head arrived.
    pub(crate) fn request_started(&self) {
        self.waiting.store(false, Ordering::Relaxed);
    }

    /// The response is done: the next head's time starts now.
    pub(crate) fn response_done(&self) {
        let since = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.since_nanos.store(since, Ordering::Relaxed);
        self.partial.store(false, Ordering::Relaxed);
        self.waiting.store(true, Ordering::Relaxed);
    }

    /// Bytes of the next head are already in hand (read together with the last one).
    pub(crate) fn head_arriving(&self) {
        self.partial.store(true, Ordering::Relaxed);
    }

    fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The deadline of the current wait.
    fn deadline(&self) -> Instant {
        self.base
            + Duration::from_nanos(self.since_nanos.load(Ordering::Relaxed))
            + HEADER_READ_TIMEOUT
    }
}

/// What the deadline asks of a connection whose read would block (pure; see [`Deadlined`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDeadline {
    /// Not waiting for a head, or the deadline is still ahead: keep waiting.
    Wait,
    /// The timer fired early (the deadline moved on): re-arm it.
    Rearm,
    /// Close the connection, answering 408 first.
    Answer408,
    /// Close the connection without an answer.
    Close,
}

/// Decides what a fired timer means.
pub(crate) fn on_timer_fired(
    waiting: bool,
    now: Instant,
    deadline: Instant,
    partial: bool,
    unflushed: bool,
) -> OnDeadline {
    if !waiting {
        OnDeadline::Wait
    } else if now < deadline {
        OnDeadline::Rearm
    } else if partial && !unflushed {
        OnDeadline::Answer408
    } else {
        OnDeadline::Close
    }
}

/// A connection's socket with the request-head deadline of its [`HeadClock`].
pub(crate) struct Deadlined<IO> {
    io: IO,
    clock: Arc<HeadClock>,
    /// Armed on the first read that blocks while waiting; lives as long as the connection.
    timer: Option<Pin<Box<Sleep>>>,
    /// Bytes were written that no flush has confirmed yet.
    unflushed: bool,
    /// How much of [`REQUEST_TIMEOUT_RESPONSE`] is written once the deadline passed.
    answering: Option<usize>,
}

impl<IO> Deadlined<IO> {
    pub(crate) fn new(io: IO, clock: Arc<HeadClock>) -> Deadlined<IO> {
        Deadlined {
            io,
            clock,
            timer: None,
            unflushed: false,
            answering: None,
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request head not received in time")
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Deadlined<IO> {
    /// Writes what is left of the 408 (best effort: a client that does not read loses it).
    fn poll_answer(&mut self, cx: &mut Context<'_>, written: usize) -> Poll<io::Result<()>> {
        let mut written = written;
        while written < REQUEST_TIMEOUT_RESPONSE.len() {
            match Pin::new(&mut self.io).poll_write(cx, &REQUEST_TIMEOUT_RESPONSE[written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(timed_out())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Pending => {
                    self.answering = Some(written);
                    return Poll::Pending;
                }
            }
        }
        self.answering = Some(written);
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Err(timed_out())),
        }
    }

    /// A read blocked: check the deadline, arming or re-arming the timer as needed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.clock.waiting() {
            return Poll::Pending;
        }
        let deadline = self.clock.deadline();
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        let decision = loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.clock.deadline();
            match on_timer_fired(
                self.clock.waiting(),
                Instant::now(),
                deadline,
                self.clock.partial.load(Ordering::Relaxed),
                self.unflushed,
            ) {
                OnDeadline::Rearm => timer.as_mut().reset(deadline),
                decision => break decision,
            }
        };
        match decision {
            // Not waiting any more: the next wait re-arms (the timer stays fired until then).
            OnDeadline::Wait | OnDeadline::Rearm => Poll::Pending,
            OnDeadline::Answer408 => {
                tracing::debug!("request head not received in time; answered 408");
                self.poll_answer(cx, 0)
            }
            OnDeadline::Close => Poll::Ready(Err(timed_out())),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Deadlined<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(written) = this.answering {
            return this.poll_answer(cx, written);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => this.poll_deadline(cx),
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.clock.waiting() {
                    this.clock.partial.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            ready => ready,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Deadlined<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            this.unflushed = false;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A response body that tells the clock when hyper is done with it (dropped).
pub(crate) struct Tracked<B> {
    body: B,
    clock: Arc<HeadClock>,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, clock: Arc<HeadClock>) -> Tracked<B> {
        Tracked { body, clock }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.clock.response_done();
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fired_timer_rearms_closes_or_answers() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        use OnDeadline::*;
        // (waiting, now, deadline, partial, unflushed) → decision
        let table = [
            (false, later, t0, true, false, Wait),
            (true, t0, later, true, false, Rearm),
            (true, t0, later, false, false, Rearm),
            (true, later, t0, true, false, Answer408),
            (true, later, later, true, false, Answer408),
            (true, later, t0, false, false, Close),
            (true, later, t0, true, true, Close),
        ];
        for (waiting, now, deadline, partial, unflushed, want) in table {
            assert_eq!(
                on_timer_fired(waiting, now, deadline, partial, unflushed),
                want,
                "waiting={waiting} partial={partial} unflushed={unflushed}"
            );
        }
    }

    #[test]
    fn the_clock_waits_from_the_start_and_after_each_response() {
        let clock = HeadClock::new();
        assert!(clock.waiting());
        let first = clock.deadline();
        clock.request_started();
        assert!(!clock.waiting());
        clock.partial.store(true, Ordering::Relaxed);
        clock.response_done();
        assert!(clock.waiting());
        assert!(!clock.partial.load(Ordering::Relaxed));
        assert!(clock.deadline() >= first);
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server end wrapped in [`Deadlined`], and the client end.
    fn pair() -> (
        Deadlined<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Arc<HeadClock>,
    ) {
        let (client, server) = tokio::io::duplex(4096);
        let clock = HeadClock::new();
        (Deadlined::new(server, clock.clone()), client, clock)
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_head_gets_408_at_the_deadline() {
        let (mut server, mut client, _clock) = pair();
        let started = Instant::now();
        client
            .write_all(b"GET /v1/configs HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 256];
        assert!(server.read(&mut buf).await.expect("read") > 0);
        let err = server.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= HEADER_READ_TIMEOUT);
        drop(server);
        let mut answer = Vec::new();
        client
            .read_to_end(&mut answer)
            .await
            .expect("read the answer");
        assert_eq!(answer, REQUEST_TIMEOUT_RESPONSE);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_without_an_answer() {
        let (mut server, mut client, _clock) = pair();
        let mut buf = [0u8; 16];
        let err = server.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(server);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("eof");
        assert!(answer.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn each_response_moves_the_deadline_and_the_timer_rearms() {
        let (mut server, _client, clock) = pair();
        let started = Instant::now();
        tokio::spawn({
            let clock = clock.clone();
            async move {
                // A request arrives after 5 s and is answered at once: the next head has 10 s
                // from then, not from the connection's start.
                tokio::time::sleep(Duration::from_secs(5)).await;
                clock.request_started();
                clock.response_done();
            }
        });
        let mut buf = [0u8; 16];
        let err = server.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(15), "{waited:?}");
        assert!(waited < Duration::from_secs(16), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_while_a_request_is_in_flight() {
        let (mut server, mut client, clock) = pair();
        clock.request_started();
        let mut buf = [0u8; 16];
        // A stream (SSE) may keep the connection for minutes: the read just waits.
        let read = tokio::time::timeout(Duration::from_secs(120), server.read(&mut buf)).await;
        assert!(read.is_err(), "the read waited");
        // Bytes still flow, and once the response is done the deadline counts again.
        client.write_all(b"x").await.expect("write");
        assert_eq!(server.read(&mut buf).await.expect("read"), 1);
        clock.response_done();
        let err = server.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn no_408_over_an_unflushed_response() {
        let (mut server, mut client, _clock) = pair();
        server
            .write_all(b"HTTP/1.1 200 OK\r\n")
            .await
            .expect("write");
        client
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        assert!(server.read(&mut buf).await.expect("read") > 0);
        let err = server.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(server);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("read");
        assert_eq!(
            answer, b"HTTP/1.1 200 OK\r\n",
            "nothing spliced after the unflushed bytes"
        );
    }
}
