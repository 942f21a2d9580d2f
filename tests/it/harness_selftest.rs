//! Tests of the test harness itself: real servers, the fault proxy, polling helpers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::ports::free_port;
use crate::harness::postgres::{shared_cluster, PgCluster, PgOptions};
use crate::harness::proxy::TcpProxy;
use crate::harness::redis::{command, command_async, ping_async, RedisServer, RespError};
use crate::harness::{eventually, eventually_blocking, process_alive};

const SHORT: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// ports / eventually
// ---------------------------------------------------------------------------------------------

#[test]
fn free_port_never_hands_out_the_same_port_twice() {
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let p = free_port();
        assert!(p != 6379 && p != 5432 && p != 0, "got reserved port {p}");
        assert!(seen.insert(p), "port {p} handed out twice");
    }
}

#[tokio::test]
async fn eventually_returns_the_first_some() {
    let start = Instant::now();
    let v = eventually(Duration::from_secs(2), "counter reaches 3", || {
        let elapsed = start.elapsed();
        async move { (elapsed >= Duration::from_millis(60)).then_some(3) }
    })
    .await;
    assert_eq!(v, 3);
    let w = eventually_blocking(Duration::from_secs(1), "immediately", || Some("now"));
    assert_eq!(w, "now");
}

#[tokio::test]
#[should_panic(expected = "the impossible thing")]
async fn eventually_panics_naming_what_it_waited_for() {
    eventually(
        Duration::from_millis(100),
        "the impossible thing",
        || async { None::<()> },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// redis
// ---------------------------------------------------------------------------------------------

#[test]
fn redis_starts_on_a_free_port_and_answers_commands() {
    let redis = RedisServer::start();
    assert_ne!(redis.port(), 6379);
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert!(redis.ping(SHORT));
    assert_eq!(redis.cmd(&["SET", "k", "v"]), "OK");
    assert_eq!(redis.cmd(&["GET", "k"]), "v");
    assert_eq!(redis.cmd(&["GET", "missing"]), "(nil)");
    assert_eq!(redis.cmd(&["RPUSH", "l", "a", "b"]), "2");
    assert_eq!(redis.cmd(&["LRANGE", "l", "0", "-1"]), "a\nb");
    assert_eq!(
        redis.cmd(&["CONFIG", "GET", "maxmemory-policy"]),
        "maxmemory-policy\nnoeviction"
    );
    assert!(matches!(
        redis.try_cmd(&["NOSUCHCOMMAND"]),
        Err(RespError::Server(_))
    ));
    redis.flushall();
    assert_eq!(redis.cmd(&["DBSIZE"]), "0");
}

#[test]
fn redis_pause_makes_ping_time_out_and_resume_restores_it() {
    let redis = RedisServer::start();
    redis.pause();
    assert!(redis.is_paused());
    // What matters is that it does not answer; whether the attempt times out or the kernel
    // gives up on the connection first depends on the machine's load.
    assert!(!redis.ping(SHORT), "a paused redis must not answer");
    redis.resume();
    assert!(redis.ping(Duration::from_secs(2)));
}

#[test]
fn redis_restart_comes_back_empty_on_the_same_port() {
    let redis = RedisServer::start();
    let port = redis.port();
    redis.cmd(&["SET", "k", "v"]);
    let old_pid = redis.pid();
    redis.kill();
    assert!(!redis.is_running());
    match redis.try_cmd(&["PING"]) {
        Err(e) => assert!(e.is_io(), "expected connection failure, got {e}"),
        Ok(r) => panic!("killed redis answered {r:?}"),
    }
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_ne!(redis.pid(), old_pid);
    assert_eq!(redis.cmd(&["GET", "k"]), "(nil)");
    assert_eq!(redis.cmd(&["DBSIZE"]), "0");
    // restart() also works on a running (even paused) server.
    redis.pause();
    redis.restart();
    assert!(redis.ping(SHORT));
}

#[test]
fn redis_start_with_args_applies_extra_config() {
    let redis = RedisServer::start_with_args(&["--user", "alice", "on", ">secret", "~*", "+@all"]);
    let addr = redis.addr();
    let t = Duration::from_secs(2);
    assert_eq!(
        command(addr, Some(("alice", "secret")), &["SET", "a", "1"], t).unwrap(),
        "OK"
    );
    let denied = command(addr, Some(("alice", "wrong")), &["PING"], t);
    assert!(
        matches!(denied, Err(RespError::Server(ref e)) if e.contains("WRONGPASS")),
        "{denied:?}"
    );
}

#[test]
fn redis_drop_kills_the_server_and_removes_its_directory() {
    let redis = RedisServer::start();
    redis.pause();
    let pid = redis.pid().unwrap();
    let dir = redis.dir().to_path_buf();
    drop(redis);
    assert!(!process_alive(pid), "redis-server {pid} survived drop");
    assert!(!dir.exists());
}

// ---------------------------------------------------------------------------------------------
// proxy (against a real redis, raw RESP over tokio)
// ---------------------------------------------------------------------------------------------

async fn send_ping(conn: &mut TcpStream) {
    conn.write_all(b"PING\r\n").await.expect("write PING");
}

/// Reads `+PONG\r\n` from `conn` within `within`, or returns what happened instead.
async fn read_pong(conn: &mut TcpStream, within: Duration) -> Result<(), String> {
    let mut buf = [0u8; 7];
    match tokio::time::timeout(within, conn.read_exact(&mut buf)).await {
        Err(_) => Err("timeout".into()),
        Ok(Err(e)) => Err(format!("io: {e}")),
        Ok(Ok(_)) if &buf == b"+PONG\r\n" => Ok(()),
        Ok(Ok(_)) => Err(format!("unexpected bytes {buf:?}")),
    }
}

#[tokio::test]
async fn proxy_passes_traffic_and_counts_connections() {
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.addr());
    assert_eq!(
        proxy.url_for_redis(),
        format!("redis://127.0.0.1:{}", proxy.addr().port())
    );
    assert!(ping_async(proxy.addr(), Duration::from_secs(2)).await);
    let set = command_async(
        proxy.addr(),
        None,
        &["SET", "k", "v"],
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(set.unwrap(), "OK");
    assert_eq!(redis.cmd(&["GET", "k"]), "v");
    assert_eq!(proxy.connections_accepted(), 2);
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    send_ping(&mut conn).await;
    read_pong(&mut conn, Duration::from_secs(2)).await.unwrap();
    assert_eq!(proxy.active_connections(), 1);
    drop(conn);
    eventually(
        Duration::from_secs(2),
        "connection count drops to 0",
        || async { (proxy.active_connections() == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn proxy_blackhole_hangs_old_and_new_connections_until_heal() {
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.addr());
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    send_ping(&mut conn).await;
    read_pong(&mut conn, Duration::from_secs(2)).await.unwrap();

    proxy.blackhole();
    send_ping(&mut conn).await;
    assert_eq!(read_pong(&mut conn, SHORT).await, Err("timeout".into()));
    assert!(
        !ping_async(proxy.addr(), SHORT).await,
        "new connection answered in blackhole"
    );
    let mut hung = TcpStream::connect(proxy.addr()).await.unwrap();
    send_ping(&mut hung).await;
    assert_eq!(read_pong(&mut hung, SHORT).await, Err("timeout".into()));

    proxy.heal();
    // Held bytes flow again: both pending PINGs are answered.
    read_pong(&mut conn, Duration::from_secs(2)).await.unwrap();
    read_pong(&mut hung, Duration::from_secs(2)).await.unwrap();
    assert!(ping_async(proxy.addr(), Duration::from_secs(2)).await);
}

#[tokio::test]
async fn proxy_partition_closes_old_and_new_connections_until_heal() {
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.addr());
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    send_ping(&mut conn).await;
    read_pong(&mut conn, Duration::from_secs(2)).await.unwrap();

    proxy.partition();
    let res = read_pong(&mut conn, Duration::from_secs(2)).await;
    assert!(
        res.as_ref().is_err_and(|e| e.starts_with("io")),
        "existing connection not closed: {res:?}"
    );
    let before = proxy.connections_accepted();
    let t = Instant::now();
    let r = command_async(proxy.addr(), None, &["PING"], Duration::from_secs(2)).await;
    assert!(matches!(r, Err(RespError::Io(_))), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "new connection was not closed promptly"
    );
    assert_eq!(proxy.connections_accepted(), before + 1);

    proxy.heal();
    assert!(ping_async(proxy.addr(), Duration::from_secs(2)).await);
}

#[tokio::test]
async fn proxy_latency_delays_each_chunk_in_both_directions() {
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.addr());
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.set_latency(Duration::from_millis(200));
    let t = Instant::now();
    send_ping(&mut conn).await;
    read_pong(&mut conn, Duration::from_secs(2)).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "round trip took {:?}",
        t.elapsed()
    );
    proxy.pass();
    let t = Instant::now();
    send_ping(&mut conn).await;
    read_pong(&mut conn, Duration::from_secs(2)).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "round trip took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn proxy_reset_and_drop_close_existing_connections() {
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.addr());
    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    send_ping(&mut a).await;
    read_pong(&mut a, Duration::from_secs(2)).await.unwrap();
    proxy.reset_connections();
    assert!(read_pong(&mut a, Duration::from_secs(2))
        .await
        .is_err_and(|e| e.starts_with("io")));
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    send_ping(&mut b).await;
    read_pong(&mut b, Duration::from_secs(2)).await.unwrap();
    let addr = proxy.addr();
    drop(proxy);
    assert!(read_pong(&mut b, Duration::from_secs(2))
        .await
        .is_err_and(|e| e.starts_with("io")));
    assert!(!ping_async(addr, SHORT).await);
}

// ---------------------------------------------------------------------------------------------
// postgres
// ---------------------------------------------------------------------------------------------

#[test]
fn shared_cluster_hands_out_fresh_databases_that_answer_queries() {
    let pg = shared_cluster();
    assert!(std::ptr::eq(pg, shared_cluster()));
    assert_ne!(pg.port(), 5432);
    let a = pg.create_database();
    let b = pg.create_database();
    assert_ne!(a, b);
    assert_eq!(
        pg.url(&a),
        format!("postgres://postgres@127.0.0.1:{}/{a}", pg.port())
    );
    assert_eq!(pg.psql(&a, "select 1"), "1");
    assert_eq!(pg.psql(&b, "select current_database()"), b);
    pg.psql(&a, "create table t(x int); insert into t values (1), (2)");
    assert_eq!(pg.psql(&a, "select x from t order by x"), "1\n2");
    assert_eq!(pg.psql(&a, "show fsync"), "off");
}

#[test]
fn postgres_pause_makes_queries_time_out_and_resume_restores_them() {
    let pg = PgCluster::start();
    let db = pg.create_database();
    assert_eq!(pg.psql(&db, "select 1"), "1");
    pg.pause();
    assert!(pg.is_paused());
    let r = pg.try_psql(&db, "select 1", Duration::from_secs(1));
    assert!(
        r.as_ref().is_err_and(|e| e.contains("timed out")),
        "paused postgres answered: {r:?}"
    );
    pg.resume();
    assert_eq!(pg.psql(&db, "select 1"), "1");
}

#[test]
fn postgres_kill_immediate_then_restart_keeps_committed_data_on_the_same_port() {
    let pg = PgCluster::start_with(PgOptions {
        fsync: true,
        ..Default::default()
    });
    assert_eq!(pg.psql("postgres", "show fsync"), "on");
    let port = pg.port();
    let db = pg.create_database();
    pg.psql(&db, "create table t(x int); insert into t values (42)");
    pg.kill_immediate();
    assert!(!pg.is_running());
    assert!(pg
        .try_psql(&db, "select 1", Duration::from_secs(2))
        .is_err());
    pg.restart();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql(&db, "select x from t"), "42");

    let pm = pg.postmaster_pid().unwrap();
    let dir = pg.dir().to_path_buf();
    drop(pg);
    assert!(!process_alive(pm), "postmaster {pm} survived drop");
    assert!(!dir.exists());
}
