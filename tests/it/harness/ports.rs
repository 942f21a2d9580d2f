//! Free loopback ports.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::OnceLock;

use parking_lot::Mutex;

/// Ports never handed out: the shared Redis and PostgreSQL of the machine.
const RESERVED: [u16; 2] = [6379, 5432];

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind `127.0.0.1:0`, read it, drop the
/// socket). Never returns the same port twice within this process, nor 6379/5432.
///
/// There is an unavoidable race with other processes between this call and the server's own bind;
/// the server starters in this harness retry with a new port when that happens.
pub fn free_port() -> u16 {
    let mut set = handed_out().lock();
    for _ in 0..1000 {
        let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
            Ok(l) => l,
            Err(e) => panic!("free_port: cannot bind 127.0.0.1:0: {e}"),
        };
        let port = match listener.local_addr() {
            Ok(a) => a.port(),
            Err(e) => panic!("free_port: cannot read local address: {e}"),
        };
        if !RESERVED.contains(&port) && set.insert(port) {
            return port;
        }
    }
    panic!("free_port: no new free port after 1000 attempts");
}
