//! A toxiproxy-like TCP proxy running inside the test process (tokio), for network fault
//! injection between a component and Redis/PostgreSQL.
//!
//! Modes apply to new *and existing* connections promptly (every pump watches a `watch` channel):
//! - [`TcpProxy::pass`] / [`TcpProxy::heal`]: forward bytes both ways.
//! - [`TcpProxy::set_latency`]: forward, but hold every chunk for the given delay (each direction).
//! - [`TcpProxy::blackhole`]: keep accepting and keep connections open, forward nothing either way
//!   (bytes already read are held, not lost, and flow again after heal) — a hung server.
//! - [`TcpProxy::partition`]: close every existing connection; accept-and-close new ones.
//! - [`TcpProxy::reset_connections`]: close every existing connection once, mode unchanged.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwarding behaviour of a [`TcpProxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Latency(Duration),
    Blackhole,
    Partition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    mode: Mode,
    /// Bumped by `reset_connections`; connections from an older epoch close.
    epoch: u64,
}

/// A TCP proxy on `127.0.0.1:<free port>` forwarding to `upstream`. Stops (closing every
/// connection) when dropped. Must be created inside a tokio runtime.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    control: watch::Sender<Control>,
    accepted: Arc<AtomicU64>,
    active: Arc<AtomicUsize>,
    accept_task: JoinHandle<()>,
}

impl TcpProxy {
    /// Binds `127.0.0.1:0` and starts forwarding to `upstream` in [`Mode::Pass`].
    ///
    /// # Panics
    /// Outside a tokio runtime, or if the listener cannot be bound.
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let std_listener = match std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
            Ok(l) => l,
            Err(e) => panic!("TcpProxy: cannot bind 127.0.0.1:0: {e}"),
        };
        if let Err(e) = std_listener.set_nonblocking(true) {
            panic!("TcpProxy: set_nonblocking: {e}");
        }
        let addr = match std_listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("TcpProxy: local_addr: {e}"),
        };
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => panic!("TcpProxy: must be started inside a tokio runtime: {e}"),
        };
        let (control, rx) = watch::channel(Control {
            mode: Mode::Pass,
            epoch: 0,
        });
        let accepted = Arc::new(AtomicU64::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let accept_task = tokio::spawn(accept_loop(
            listener,
            upstream,
            rx,
            accepted.clone(),
            active.clone(),
        ));
        TcpProxy {
            addr,
            upstream,
            control,
            accepted,
            active,
            accept_task,
        }
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub fn url_for_redis(&self) -> String {
        format!("redis://127.0.0.1:{}", self.addr.port())
    }

    /// `postgres://postgres@127.0.0.1:<proxy port>/<db>`.
    pub fn url_for_postgres(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.addr.port())
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.control.borrow().mode
    }

    /// Forward normally.
    pub fn pass(&self) {
        self.set_mode(Mode::Pass);
    }

    /// Same as [`pass`](Self::pass).
    pub fn heal(&self) {
        self.set_mode(Mode::Pass);
    }

    /// Forward, delaying each chunk by `latency` in both directions (`ZERO` = pass).
    pub fn set_latency(&self, latency: Duration) {
        self.set_mode(if latency.is_zero() {
            Mode::Pass
        } else {
            Mode::Latency(latency)
        });
    }

    /// Accept and keep connections open, forward nothing (a hung peer).
    pub fn blackhole(&self) {
        self.set_mode(Mode::Blackhole);
    }

    /// Close all connections and close new ones immediately after accepting.
    pub fn partition(&self) {
        self.set_mode(Mode::Partition);
    }

    /// Close all existing connections once; the mode is unchanged (new connections follow it).
    pub fn reset_connections(&self) {
        self.control.send_modify(|c| c.epoch += 1);
    }

    /// Sets any mode.
    pub fn set_mode(&self, mode: Mode) {
        self.control.send_modify(|c| c.mode = mode);
    }

    /// Client connections accepted so far (including ones closed at once by a partition).
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Client connections currently open through the proxy.
    pub fn active_connections(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // Dropping `control` (after this) makes every connection task see a closed channel and
        // exit, closing its sockets; the accept loop is aborted here.
        self.accept_task.abort();
    }
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("mode", &self.mode())
            .finish()
    }
}

/// Decrements the active-connection gauge when a connection task ends (or is cancelled).
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    rx: watch::Receiver<Control>,
    accepted: Arc<AtomicU64>,
    active: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Transient accept errors (e.g. EMFILE): back off briefly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        if rx.has_changed().is_err() {
            return; // proxy dropped
        }
        if rx.borrow().mode == Mode::Partition {
            drop(client);
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let guard = ActiveGuard(active.clone());
        tokio::spawn(connection(client, upstream, rx.clone(), guard));
    }
}

/// Why a pump stopped.
enum End {
    /// Clean EOF from the reading side (the write side was shut down): the other direction goes on.
    Eof,
    /// Close the whole connection (partition, reset, proxy dropped, I/O error).
    Kill,
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut rx: watch::Receiver<Control>,
    _guard: ActiveGuard,
) {
    let epoch = rx.borrow_and_update().epoch;
    // A hung peer does not even complete its side: wait out a blackhole before connecting.
    if wait_while_blackholed(&mut rx, epoch).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return; // upstream down: close the client, like a refused connection
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, rx.clone(), epoch);
    let down = pump(sr, cw, rx, epoch);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            end = &mut up, if !up_done => match end {
                End::Eof => up_done = true,
                End::Kill => return,
            },
            end = &mut down, if !down_done => match end {
                End::Eof => down_done = true,
                End::Kill => return,
            },
        }
    }
}

/// Returns `Err(())` if the connection must close (partition, reset, proxy gone).
async fn wait_while_blackholed(rx: &mut watch::Receiver<Control>, epoch: u64) -> Result<(), ()> {
    loop {
        let c = *rx.borrow_and_update();
        if c.epoch != epoch || c.mode == Mode::Partition {
            return Err(());
        }
        if c.mode != Mode::Blackhole {
            return Ok(());
        }
        if rx.changed().await.is_err() {
            return Err(());
        }
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut rx: watch::Receiver<Control>,
    epoch: u64,
) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Don't read while blackholed: the peer's bytes stay in kernel buffers, like a hung server.
        if wait_while_blackholed(&mut rx, epoch).await.is_err() {
            return End::Kill;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) => {
                    let _ = to.shutdown().await;
                    return End::Eof;
                }
                Ok(n) => n,
                Err(_) => return End::Kill,
            },
            changed = rx.changed() => {
                if changed.is_err() {
                    return End::Kill;
                }
                continue; // re-evaluate the mode
            }
        };
        // Latency: hold the chunk (watching for partition/reset meanwhile).
        // (Copy the mode out first: a watch borrow must never be held across an await.)
        let mode = rx.borrow_and_update().mode;
        if let Mode::Latency(d) = mode {
            let sleep = tokio::time::sleep(d);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return End::Kill;
                        }
                        let c = *rx.borrow_and_update();
                        if c.epoch != epoch || c.mode == Mode::Partition {
                            return End::Kill;
                        }
                    }
                }
            }
        }
        // A blackhole that started meanwhile holds the chunk until healed.
        if wait_while_blackholed(&mut rx, epoch).await.is_err() {
            return End::Kill;
        }
        let write = to.write_all(&buf[..n]);
        tokio::pin!(write);
        loop {
            tokio::select! {
                r = &mut write => {
                    if r.is_err() {
                        return End::Kill;
                    }
                    break;
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        return End::Kill;
                    }
                    let c = *rx.borrow_and_update();
                    if c.epoch != epoch || c.mode == Mode::Partition {
                        return End::Kill;
                    }
                }
            }
        }
    }
}
