//! The read port's own HTTP/1.1 connection loop: requests a [`FastPath`] takes are answered
//! straight from the snapshot into the socket; the first request it does not take hands the
//! connection, with every byte not yet answered, to hyper and the router for good.
//!
//! Why: hyper answers a request through a `Response` with a `HeaderMap`, and for the sidecar's
//! hottest request, `GET /v1/configs/{key}`, building, encoding and dropping the seven
//! `X-Config-*`/`Cache-Control` headers that way cost more than everything else the sidecar adds
//! to hyper's own work. Here the whole answer is a few copies of pre-encoded bytes.
//!
//! What this loop does itself, and only this:
//!
//! - parse each request head with `httparse` (the parser hyper uses, with hyper's default
//!   settings, so both accept and refuse the same heads) into a stack array of
//!   [`MAX_HEADERS`] headers;
//! - take a head only if it is `GET`, HTTP/1.1, in origin form (`/…`), has no body
//!   (no `Content-Length`, no `Transfer-Encoding`), no `Expect` and no `Upgrade`, and its
//!   `Connection` headers say at most `keep-alive`; then the [`FastPath`] may answer it;
//! - answer pipelined heads in order and write the answers together (as hyper does), flushing
//!   at least every [`FLUSH_AT`] bytes;
//! - keep the connection's request-head deadline ([`HeadClock`], [`Deadlined`]: a slow head
//!   gets 408, an idle keep-alive connection is closed) and its part in the listener's drain
//!   (closes when idle, after finishing the answers in hand).
//!
//! Everything else — another method or version, a body, a head the parser refuses, more than
//! [`MAX_HEADERS`] headers or a head over [`MAX_HEAD_BYTES`], an unknown key, a refused `Host`,
//! a query other than `format=raw` — goes to hyper with the bytes already read in front of the
//! socket ([`Prefixed`]), so hyper sees exactly the byte stream the client sent from that request
//! on, and answers it (and all later requests on the connection) as it would have from the
//! start: the same status, limits and error bodies. The sidecar's tests compare both servers'
//! bytes on the wire (`sidecar::tests`).

use std::error::Error;
use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::drain::GracefulConnection;
use super::head_timer::{Deadlined, HeadClock};
use super::server::{self, App, FastPath, MAX_HEADERS, MAX_HEAD_BYTES};

/// A request the loop may answer itself: a bodiless HTTP/1.1 `GET` in origin form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastRequest<'a> {
    /// The target's path (`/v1/configs/KEY`), exactly as sent.
    pub path: &'a str,
    /// What follows the first `?`, if there is one (`Some("")` for a bare `?`).
    pub query: Option<&'a str>,
    /// The first `Host` header's value.
    pub host: Option<&'a [u8]>,
}

/// The read buffer's first size, as hyper's; it grows up to [`MAX_HEAD_BYTES`].
const READ_BUF: usize = 8 * 1024;

/// Answers are written out once this many bytes are waiting (pipelined requests).
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// What the head at the front of the buffer is.
#[derive(Debug, PartialEq, Eq)]
enum Head<'a> {
    /// Not all there yet.
    Partial,
    /// A whole head of this many bytes that the loop may answer.
    Fast(usize, FastRequest<'a>),
    /// A whole head the loop does not take, or one the parser refuses: hyper's.
    Other,
}

/// Reads the head at the front of `bytes` (pure).
fn parse_head(bytes: &[u8]) -> Head<'_> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, bytes, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    let (Some("GET"), Some(1), Some(target)) = (req.method, req.version, req.path) else {
        return Head::Other;
    };
    if !target.starts_with('/') {
        return Head::Other;
    }
    let mut host = None;
    for header in req.headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            host.get_or_insert(header.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            if !only_keep_alive(header.value) {
                return Head::Other;
            }
        } else if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Head::Other;
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    Head::Fast(len, FastRequest { path, query, host })
}

/// Whether a `Connection` value lists nothing but `keep-alive` (the default of HTTP/1.1, so
/// hyper answers such a request as one without the header).
fn only_keep_alive(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .all(|token| token.trim_ascii().eq_ignore_ascii_case(b"keep-alive"))
}

/// Whether `bytes` hold the end of a request head (`\r\n\r\n` or a bare-LF `\n\n`).
fn may_end_head(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

/// The bytes read from a connection and not yet answered.
struct ReadBuffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// How many of the filled bytes are known not to end a head (a head that came in pieces
    /// is parsed again only once its end may be there, as hyper does).
    no_end: usize,
}

impl ReadBuffer {
    fn new() -> ReadBuffer {
        ReadBuffer {
            data: vec![0; READ_BUF],
            start: 0,
            end: 0,
            no_end: 0,
        }
    }

    #[cfg(test)]
    fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The head at the front, parsed only when the bytes since the last look may end it.
    fn head(&mut self) -> Head<'_> {
        let filled = &self.data[self.start..self.end];
        let from = self.no_end.saturating_sub(3);
        if self.no_end > 0 && !may_end_head(&filled[from..]) {
            self.no_end = filled.len();
            return Head::Partial;
        }
        match parse_head(filled) {
            Head::Partial => {
                self.no_end = filled.len();
                Head::Partial
            }
            head => head,
        }
    }

    fn consume(&mut self, n: usize) {
        self.no_end = 0;
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into; `None` when a head of [`MAX_HEAD_BYTES`] is buffered and still not
    /// whole (hyper answers that with 431).
    fn spare(&mut self) -> Option<&mut [u8]> {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < MAX_HEAD_BYTES {
                let len = (self.data.len() * 2).min(MAX_HEAD_BYTES);
                self.data.resize(len, 0);
            } else {
                return None;
            }
        }
        Some(&mut self.data[self.end..])
    }

    fn into_unanswered(mut self) -> Vec<u8> {
        self.data.truncate(self.end);
        self.data.drain(..self.start);
        self.data
    }
}

/// `IMF-fixdate` of the current second, as hyper caches it, per thread.
struct CachedDate {
    second: u64,
    text: [u8; 29],
}

thread_local! {
    static DATE: std::cell::RefCell<CachedDate> = const {
        std::cell::RefCell::new(CachedDate { second: u64::MAX, text: [b' '; 29] })
    };
}

/// Calls `f` with the `Date` header's value for now.
fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut date = cell.borrow_mut();
        if date.second != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == date.text.len() {
                date.text.copy_from_slice(text.as_bytes());
            }
            date.second = second;
        }
        f(&date.text)
    })
}

type ConnError = Box<dyn Error + Send + Sync>;

/// One plain-TCP connection (any byte stream in tests) of a listener with a [`FastPath`], under
/// the listener's drain.
pub(crate) struct FastConnection {
    stop: Arc<AtomicBool>,
    run: Pin<Box<dyn Future<Output = Result<(), ConnError>> + Send>>,
}

impl FastConnection {
    pub(crate) fn new<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        stream: IO,
        peer: SocketAddr,
        app: App,
        fast: Arc<dyn FastPath>,
        builder: http1::Builder,
    ) -> FastConnection {
        let stop = Arc::new(AtomicBool::new(false));
        let run = Box::pin(run(stream, peer, app, fast, builder, stop.clone()));
        FastConnection { stop, run }
    }
}

impl Future for FastConnection {
    type Output = Result<(), ConnError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().run.as_mut().poll(cx)
    }
}

impl GracefulConnection for FastConnection {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The connection's loop (see the module's documentation).
async fn run<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: IO,
    peer: SocketAddr,
    app: App,
    fast: Arc<dyn FastPath>,
    builder: http1::Builder,
    stop: Arc<AtomicBool>,
) -> Result<(), ConnError> {
    let clock = HeadClock::new();
    let mut io = Deadlined::new(stream, clock.clone());
    let mut buf = ReadBuffer::new();
    let mut out = Vec::with_capacity(1024);
    loop {
        let mut to_hyper = false;
        // The buffer ends in a partial head (or is empty): only then read.
        let mut need_bytes = false;
        while out.len() < FLUSH_AT {
            let answered = match buf.head() {
                Head::Partial => {
                    need_bytes = true;
                    break;
                }
                Head::Other => None,
                Head::Fast(len, req) => {
                    with_date(|date| fast.answer(&req, date, &mut out)).then_some(len)
                }
            };
            match answered {
                Some(len) => {
                    clock.request_started();
                    buf.consume(len);
                }
                None => {
                    to_hyper = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            io.write_all(&out).await?;
            io.flush().await?;
            out.clear();
            // A large answer's buffer is not kept for the rest of the connection.
            if out.capacity() > 2 * FLUSH_AT {
                out = Vec::with_capacity(1024);
            }
            clock.response_done();
            if !buf.is_empty() {
                clock.head_arriving();
            }
            if stop.load(Ordering::Acquire) && !to_hyper {
                return Ok(());
            }
        }
        if to_hyper {
            return hand_over(io, buf, peer, app, builder, clock, &stop).await;
        }
        if !need_bytes {
            // Stopped at `FLUSH_AT` with whole requests still buffered: answer them first.
            continue;
        }
        let read = poll_fn(|cx| {
            if stop.load(Ordering::Acquire) && buf.is_empty() {
                return Poll::Ready(Ok(None));
            }
            let Some(spare) = buf.spare() else {
                return Poll::Ready(Ok(Some(None)));
            };
            let mut spare = ReadBuf::new(spare);
            match Pin::new(&mut io).poll_read(cx, &mut spare) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(Some(Some(spare.filled().len())))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        match read {
            // Drained while idle, or the client closed.
            None | Some(Some(0)) => return Ok(()),
            Some(Some(n)) => buf.end += n,
            // A head too big to buffer: hyper answers it (431).
            Some(None) => return hand_over(io, buf, peer, app, builder, clock, &stop).await,
        }
    }
}

/// Serves the rest of the connection with hyper and the router, starting with the bytes not
/// yet answered.
async fn hand_over<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: Deadlined<IO>,
    buf: ReadBuffer,
    peer: SocketAddr,
    app: App,
    builder: http1::Builder,
    clock: Arc<HeadClock>,
    stop: &AtomicBool,
) -> Result<(), ConnError> {
    let io = Prefixed::new(buf.into_unanswered(), io);
    let conn = builder.serve_connection(TokioIo::new(io), server::service(app, peer, false, clock));
    let mut conn = std::pin::pin!(conn);
    let mut told = false;
    poll_fn(|cx| {
        // hyper first reads what is in hand (`Prefixed` gives it at once): told to stop before
        // that, it would close without answering the request it has not read yet.
        let polled = conn.as_mut().poll(cx);
        if polled.is_pending() && !told && stop.load(Ordering::Acquire) {
            told = true;
            conn.as_mut().graceful_shutdown();
            return conn.as_mut().poll(cx);
        }
        polled
    })
    .await
    .map_err(Into::into)
}

/// A socket with bytes already read from it put back in front.
pub(crate) struct Prefixed<IO> {
    prefix: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO> Prefixed<IO> {
    pub(crate) fn new(prefix: Vec<u8>, io: IO) -> Prefixed<IO> {
        Prefixed { prefix, at: 0, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;

    fn fast(path: &str, query: Option<&str>, host: Option<&str>) -> FastRequest<'static> {
        FastRequest {
            path: Box::leak(path.to_owned().into_boxed_str()),
            query: query.map(|q| &*Box::leak(q.to_owned().into_boxed_str())),
            host: host.map(|h| &*Box::leak(h.as_bytes().to_vec().into_boxed_slice())),
        }
    }

    #[test]
    fn heads_the_loop_takes_and_those_it_leaves_to_hyper() {
        fn h(text: &str) -> Head<'_> {
            parse_head(text.as_bytes())
        }
        let get = "GET /v1/configs/A HTTP/1.1\r\nHost: 127.0.0.1:7070\r\n\r\n";
        assert_eq!(
            h(get),
            Head::Fast(
                get.len(),
                fast("/v1/configs/A", None, Some("127.0.0.1:7070"))
            )
        );
        let raw = "GET /v1/configs/A?format=raw HTTP/1.1\r\nhost: x\r\nHost: y\r\nUser-Agent: u\r\nConnection: Keep-Alive\r\n\r\n";
        assert_eq!(
            h(raw),
            Head::Fast(
                raw.len(),
                fast("/v1/configs/A", Some("format=raw"), Some("x"))
            )
        );
        let bare = "GET /a? HTTP/1.1\r\n\r\n";
        assert_eq!(h(bare), Head::Fast(bare.len(), fast("/a", Some(""), None)));
        // Pipelined: only the first head counts.
        let two = format!("{get}{get}");
        assert!(matches!(h(&two), Head::Fast(len, _) if len == get.len()));
        for partial in ["", "GET", "GET /v1/configs/A HTTP/1.1\r\nHost: x\r\n"] {
            assert_eq!(h(partial), Head::Partial, "{partial:?}");
        }
        for other in [
            "HEAD /v1/configs/A HTTP/1.1\r\n\r\n",
            "POST /v1/configs/A HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /v1/configs/A HTTP/1.0\r\n\r\n",
            "GET http://x/v1/configs/A HTTP/1.1\r\n\r\n",
            "GET * HTTP/1.1\r\n\r\n",
            "GET /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET /a HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
            "GET /a HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            "GET /a HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GET /a HTTP/9.9\r\n\r\n",
            "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03",
        ] {
            assert_eq!(h(other), Head::Other, "{other:?}");
        }
        // More headers than the limit: hyper's (it answers 431).
        let many = format!(
            "GET /a HTTP/1.1\r\n{}\r\n",
            "X-A: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(h(&many), Head::Other);
        let at_limit = format!(
            "GET /a HTTP/1.1\r\n{}\r\n",
            "X-A: 1\r\n".repeat(MAX_HEADERS)
        );
        assert!(matches!(h(&at_limit), Head::Fast(..)));
    }

    #[test]
    fn connection_values_that_mean_keep_alive() {
        for yes in [
            &b"keep-alive"[..],
            b"Keep-Alive",
            b" keep-alive , keep-alive ",
        ] {
            assert!(only_keep_alive(yes), "{yes:?}");
        }
        for no in [&b"close"[..], b"keep-alive, close", b"upgrade", b"", b"te"] {
            assert!(!only_keep_alive(no), "{no:?}");
        }
    }

    #[test]
    fn the_read_buffer_compacts_grows_to_the_head_limit_and_hands_back_the_rest() {
        let mut buf = ReadBuffer::new();
        let spare = buf.spare().expect("room");
        assert_eq!(spare.len(), READ_BUF);
        spare[..5].copy_from_slice(b"abcde");
        buf.end += 5;
        buf.consume(2);
        assert_eq!(buf.filled(), b"cde");
        buf.consume(3);
        assert!(buf.is_empty());
        assert_eq!(
            (buf.start, buf.end),
            (0, 0),
            "an emptied buffer starts over"
        );
        // Fill it: a buffer with consumed bytes in front compacts, a full one grows.
        buf.end = READ_BUF;
        buf.start = 10;
        assert_eq!(buf.spare().expect("room").len(), 10);
        assert_eq!(buf.start, 0);
        buf.end = buf.data.len();
        assert!(buf.spare().is_some());
        assert_eq!(buf.data.len(), (2 * READ_BUF).min(MAX_HEAD_BYTES));
        while buf.data.len() < MAX_HEAD_BYTES {
            buf.end = buf.data.len();
            assert!(buf.spare().is_some());
        }
        buf.end = buf.data.len();
        assert!(buf.spare().is_none(), "a whole head limit buffered");
        let mut buf = ReadBuffer::new();
        buf.data[..6].copy_from_slice(b"GET /x");
        buf.end = 6;
        buf.consume(4);
        assert_eq!(buf.into_unanswered(), b"/x");
    }

    #[test]
    fn the_date_is_an_imf_fixdate() {
        let date = with_date(|d| String::from_utf8(d.to_vec()).expect("ascii"));
        assert_eq!(date.len(), 29);
        assert!(date.ends_with(" GMT"), "{date}");
        assert!(httpdate::parse_http_date(&date).is_ok(), "{date}");
    }

    /// A fast path that answers `GET /fast` (and nothing else) with `fast`.
    struct Fixed;

    impl FastPath for Fixed {
        fn answer(&self, req: &FastRequest<'_>, date: &[u8], out: &mut Vec<u8>) -> bool {
            if req.path == "/big" {
                let body = "b".repeat(FLUSH_AT + 1);
                out.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                out.extend_from_slice(body.as_bytes());
                return true;
            }
            if req.path != "/fast" {
                return false;
            }
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\ndate: ");
            out.extend_from_slice(date);
            out.extend_from_slice(b"\r\n\r\nfast");
            true
        }
    }

    /// A connection of a listener whose router answers `GET /routed`, and its client end.
    fn connection() -> (FastConnection, tokio::io::DuplexStream) {
        let router =
            axum::Router::new().route("/routed", axum::routing::get(|| async { "routed" }));
        let fast: Arc<dyn FastPath> = Arc::new(Fixed);
        let (client, server) = tokio::io::duplex(64 * 1024);
        let conn = FastConnection::new(
            server,
            ([127, 0, 0, 1], 1).into(),
            App::with_fast_path(router, fast.clone()),
            fast,
            server::http1_builder(),
        );
        (conn, client)
    }

    /// The bodies of the responses in `text`, in order (every response here has a body).
    fn bodies(text: &str) -> Vec<String> {
        text.split("HTTP/1.1 ")
            .skip(1)
            .map(|resp| {
                let status = &resp[..3];
                let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                format!("{status} {body}")
            })
            .collect()
    }

    async fn read_all(client: &mut tokio::io::DuplexStream) -> String {
        use tokio::io::AsyncReadExt;
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.expect("read");
        String::from_utf8(bytes).expect("utf-8")
    }

    const FAST: &str = "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_across_the_hand_over() {
        let (conn, mut client) = connection();
        let served = tokio::spawn(conn);
        let requests = format!(
            "{FAST}{FAST}GET /routed HTTP/1.1\r\nHost: x\r\n\r\n{FAST}GET /routed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        client.write_all(requests.as_bytes()).await.expect("write");
        let text = read_all(&mut client).await;
        // After the hand-over hyper and the router answer everything, `/fast` too (404 there).
        assert_eq!(
            bodies(&text),
            ["200 fast", "200 fast", "200 routed", "404 ", "200 routed"],
            "{text}"
        );
        served.await.expect("joined").expect("served");
    }

    #[tokio::test(start_paused = true)]
    async fn pipelined_answers_over_the_flush_size_are_all_sent_without_waiting() {
        let (conn, mut client) = connection();
        let served = tokio::spawn(conn);
        let big = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
        client
            .write_all(format!("{big}{big}{FAST}").as_bytes())
            .await
            .expect("write");
        // Each answer is read before the deadline could pass: nothing waits for more bytes.
        let mut text = Vec::new();
        let expected = 2 * (FLUSH_AT + 1) + 2 * 40 + 60;
        let mut chunk = vec![0; 64 * 1024];
        while text.len() < expected && !String::from_utf8_lossy(&text).ends_with("fast") {
            let n = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::io::AsyncReadExt::read(&mut client, &mut chunk),
            )
            .await
            .expect("answered at once, not after the head deadline")
            .expect("read");
            assert!(n > 0, "closed early");
            text.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8(text).expect("utf-8");
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3);
        assert!(!text.contains("408"));
        assert!(text.ends_with("fast"));
        drop(client);
        let _ = served.await.expect("joined");
    }

    #[test]
    fn the_end_of_a_head_is_seen_in_every_line_ending() {
        for yes in [&b"\r\n\r\n"[..], b"x\n\n", b"\n\r\n", b"Host: x\r\n\r\nGET"] {
            assert!(may_end_head(yes), "{yes:?}");
        }
        for no in [&b""[..], b"\r\n", b"Host: x\r\nA: b\r\n", b"\n\r"] {
            assert!(!may_end_head(no), "{no:?}");
        }
        // A head in pieces: parsed once its end may be in the new bytes (3 bytes back).
        let mut buf = ReadBuffer::new();
        let head = FAST.as_bytes();
        for (i, byte) in head.iter().enumerate() {
            buf.data[buf.end] = *byte;
            buf.end += 1;
            let whole = i + 1 == head.len();
            assert_eq!(
                matches!(buf.head(), Head::Fast(..)),
                whole,
                "after {} bytes",
                i + 1
            );
        }
    }

    #[tokio::test]
    async fn a_drain_during_a_head_for_hyper_still_answers_it() {
        let drain = super::super::drain::Drain::new();
        let (conn, mut client) = connection();
        let conn = tokio::spawn(drain.watcher().watch(conn));
        client
            .write_all(b"GET /routed HTTP/1.1\r\n")
            .await
            .expect("write");
        tokio::task::yield_now().await;
        let shutdown = tokio::spawn(drain.shutdown());
        tokio::task::yield_now().await;
        client.write_all(b"Host: x\r\n\r\n").await.expect("write");
        let text = read_all(&mut client).await;
        assert_eq!(bodies(&text), ["200 routed"], "{text}");
        conn.await.expect("joined").expect("clean close");
        shutdown.await.expect("drained");
    }

    #[tokio::test]
    async fn a_head_sent_in_pieces_is_answered_once_whole() {
        let (conn, mut client) = connection();
        let served = tokio::spawn(conn);
        for piece in FAST.as_bytes().chunks(3) {
            client.write_all(piece).await.expect("write");
            tokio::task::yield_now().await;
        }
        client
            .write_all(b"GET /fast HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let text = read_all(&mut client).await;
        assert_eq!(bodies(&text), ["200 fast", "404 "], "{text}");
        served.await.expect("joined").expect("served");
    }

    #[tokio::test]
    async fn a_head_over_the_limit_gets_hyper_s_431() {
        let (conn, mut client) = connection();
        let served = tokio::spawn(conn);
        let head = format!(
            "GET /fast HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(MAX_HEAD_BYTES)
        );
        // The server stops reading once it answers; the rest of the write may fail.
        let _ = client.write_all(head.as_bytes()).await;
        let text = read_all(&mut client).await;
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        let _ = served.await.expect("joined");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_head_gets_408_and_an_idle_connection_is_closed() {
        let (conn, mut client) = connection();
        let served = tokio::spawn(conn);
        client.write_all(b"GET /fa").await.expect("write");
        tokio::time::sleep(super::super::server::HEADER_READ_TIMEOUT + Duration::from_secs(1))
            .await;
        let text = read_all(&mut client).await;
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
        assert!(served.await.expect("joined").is_err());

        let (conn, mut client) = connection();
        let served = tokio::spawn(conn);
        client.write_all(FAST.as_bytes()).await.expect("write");
        let mut first = vec![0; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut client, &mut first)
            .await
            .expect("read");
        assert_eq!(
            bodies(std::str::from_utf8(&first[..n]).expect("utf-8")),
            ["200 fast"]
        );
        tokio::time::sleep(super::super::server::HEADER_READ_TIMEOUT + Duration::from_secs(1))
            .await;
        assert_eq!(read_all(&mut client).await, "", "closed without an answer");
        assert!(served.await.expect("joined").is_err());
    }

    #[tokio::test]
    async fn a_drain_closes_idle_connections_and_finishes_heads_in_hand() {
        let drain = super::super::drain::Drain::new();
        let (idle, mut idle_client) = connection();
        let idle = tokio::spawn(drain.watcher().watch(idle));
        idle_client.write_all(FAST.as_bytes()).await.expect("write");
        let mut first = vec![0; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut idle_client, &mut first)
            .await
            .expect("read");
        assert_eq!(
            bodies(std::str::from_utf8(&first[..n]).expect("utf-8")),
            ["200 fast"]
        );
        let (busy, mut busy_client) = connection();
        let busy = tokio::spawn(drain.watcher().watch(busy));
        busy_client
            .write_all(b"GET /fast HTTP/1.1\r\n")
            .await
            .expect("write");
        tokio::task::yield_now().await;
        let shutdown = tokio::spawn(drain.shutdown());
        assert_eq!(read_all(&mut idle_client).await, "", "the idle one closes");
        idle.await.expect("joined").expect("clean close");
        busy_client
            .write_all(b"Host: x\r\n\r\n")
            .await
            .expect("write");
        let text = read_all(&mut busy_client).await;
        assert_eq!(bodies(&text), ["200 fast"], "answered, then closed: {text}");
        busy.await.expect("joined").expect("clean close");
        shutdown.await.expect("drained");
    }

    #[tokio::test]
    async fn prefixed_reads_the_prefix_first_then_the_socket() {
        use tokio::io::AsyncReadExt;
        let (a, mut b) = tokio::io::duplex(64);
        b.write_all(b" world").await.expect("write");
        drop(b);
        let mut io = Prefixed::new(b"hello".to_vec(), a);
        let mut text = String::new();
        io.read_to_string(&mut text).await.expect("read");
        assert_eq!(text, "hello world");
    }
}
