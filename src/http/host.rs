//! Which `Host` a listener answers: the defence against DNS rebinding.
//!
//! A page on `evil.example` can make a browser's later lookups of `evil.example` resolve to
//! `127.0.0.1`, and then read and drive whatever listens there (the dev admin, a sidecar's
//! secrets) with the browser's own requests, same-origin as far as the browser knows. Those
//! requests still carry `Host: evil.example`, so every listener refuses a `Host` it does not
//! expect, with 421 `host_not_allowed`. Allowed ([`host_allowed`]):
//!
//! - the listener's own IP literal, on any port (`127.0.0.1`, `127.0.0.1:8080`, `[::1]:7070`);
//! - on a loopback listener, `localhost` and every loopback literal (`127.0.0.0/8`, `[::1]`);
//! - every `--allowed-host` name or IP literal, on any port;
//! - on a wildcard listener (`0.0.0.0`, `::`): with no `--allowed-host`, any host (a
//!   Kubernetes Service name or a pod IP must keep working without configuration); with
//!   `--allowed-host`, those names plus `localhost` and any IP literal (kubelet probes a pod by
//!   its IP, and an IP literal cannot be rebound: the attacker's page has to use its own name).
//!
//! A request without `Host` (HTTP/1.0) is served: browsers always send one. A request in
//! absolute form (`GET http://name/ HTTP/1.1`) must pass with its URI's authority too.
//!
//! The check runs on every read, so it allocates nothing: the allowed names are lower-cased
//! once ([`HostPolicy::new`]), and a `Host` is compared byte by byte (ASCII case-insensitive)
//! or parsed as an IP literal on the stack.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The hosts one listener answers, computed once from its bound address and `--allowed-host`.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    listen: IpAddr,
    /// `listen` as a `Host` names it (`127.0.0.1`, `[::1]`): the common case, matched first
    /// with a byte comparison instead of an IP parse.
    own: Box<[u8]>,
    /// Every `Host` is allowed (a wildcard listener without `--allowed-host`).
    any: bool,
    /// `--allowed-host` names, lower-case.
    names: Box<[Box<[u8]>]>,
    /// `--allowed-host` IP literals.
    ips: Box<[IpAddr]>,
}

impl HostPolicy {
    /// The policy of a listener bound to `listen` with these `--allowed-host` entries (checked
    /// beforehand by [`allowed_host_problem`]; an entry that is neither a name nor an IP
    /// literal can never match and is ignored).
    pub fn new(listen: SocketAddr, allowed: &[String]) -> HostPolicy {
        let mut names = Vec::new();
        let mut ips = Vec::new();
        for entry in allowed {
            match parse_ip_entry(entry) {
                Some(ip) => ips.push(ip),
                None => names.push(entry.to_ascii_lowercase().into_bytes().into_boxed_slice()),
            }
        }
        let own = match listen.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        HostPolicy {
            listen: listen.ip(),
            own: own.into_bytes().into_boxed_slice(),
            any: listen.ip().is_unspecified() && allowed.is_empty(),
            names: names.into(),
            ips: ips.into(),
        }
    }

    /// Whether a request with this URI and these headers may be served.
    pub fn allows(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        if self.any {
            return true;
        }
        self.allows_host(headers.get(header::HOST).map(HeaderValue::as_bytes))
            && uri
                .authority()
                .is_none_or(|a| host_allowed(self, a.as_str().as_bytes()))
    }
}

impl HostPolicy {
    /// Whether a request in origin form (`/path`) with this `Host` (the first, if several) may
    /// be served: [`HostPolicy::allows`] without a URI authority.
    pub fn allows_host(&self, host: Option<&[u8]>) -> bool {
        host.is_none_or(|h| host_allowed(self, h))
    }
}

/// Whether `host` (a `Host` header value or a URI authority: `name`, `name:port`,
/// `1.2.3.4:port`, `[v6]:port`) may be served by a listener with `policy`.
pub fn host_allowed(policy: &HostPolicy, host: &[u8]) -> bool {
    if policy.any {
        return true;
    }
    if let Some(port) = host.strip_prefix(&*policy.own) {
        match port {
            [] => return true,
            [b':', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => return true,
            _ => {}
        }
    }
    let Some(name) = host_part(host) else {
        return false;
    };
    match parse_ip(name) {
        Some(ip) => {
            ip == policy.listen
                || policy.listen.is_loopback() && ip.is_loopback()
                || policy.listen.is_unspecified()
                || policy.ips.contains(&ip)
        }
        None => {
            (policy.listen.is_loopback() || policy.listen.is_unspecified())
                && name.eq_ignore_ascii_case(b"localhost")
                || policy.names.iter().any(|n| name.eq_ignore_ascii_case(n))
        }
    }
}

/// The host of `host[:port]` (brackets kept for IPv6), or `None` when it is not of that form.
fn host_part(host: &[u8]) -> Option<&[u8]> {
    let (name, port) = if host.first() == Some(&b'[') {
        let end = host.iter().position(|&b| b == b']')?;
        let (name, rest) = host.split_at(end + 1);
        match rest {
            [] => (name, &rest[..0]),
            [b':', port @ ..] => (name, port),
            _ => return None,
        }
    } else {
        match host.iter().position(|&b| b == b':') {
            Some(i) => (&host[..i], &host[i + 1..]),
            None => (host, &host[..0]),
        }
    };
    (!name.is_empty() && port.iter().all(u8::is_ascii_digit)).then_some(name)
}

/// An IPv4 literal, or an IPv6 literal in brackets.
fn parse_ip(name: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(name).ok()?;
    match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => text.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// An `--allowed-host` IP literal: IPv4, IPv6 with or without brackets.
fn parse_ip_entry(entry: &str) -> Option<IpAddr> {
    let bare = entry
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(entry);
    bare.parse().ok()
}

/// Why an `--allowed-host` entry cannot be used (`None`: a host name or an IP literal).
pub fn allowed_host_problem(entry: &str) -> Option<String> {
    let is_name = !entry.is_empty()
        && entry.len() <= 253
        && entry.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    (!is_name && parse_ip_entry(entry).is_none()).then(|| {
        format!(
            "--allowed-host {entry:?} is not a host name or an IP address: give the name alone \
             (e.g. rtconfig.example.com or 10.0.0.5), without scheme, port or path"
        )
    })
}

/// The longest part of a refused `Host` repeated in the error message.
const MAX_ECHOED_HOST: usize = 100;

/// 421 `host_not_allowed`.
pub fn host_not_allowed(headers: &HeaderMap, uri: &Uri) -> ApiError {
    let host = headers
        .get(header::HOST)
        .map(HeaderValue::as_bytes)
        .or_else(|| uri.authority().map(|a| a.as_str().as_bytes()))
        .unwrap_or_default();
    let shown: String = String::from_utf8_lossy(host)
        .chars()
        .take(MAX_ECHOED_HOST)
        .collect();
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "host_not_allowed",
        format!(
            "this listener does not answer for host {shown:?} (a protection against DNS \
             rebinding); if that is a name of this service, add it with --allowed-host"
        ),
    )
}

/// Middleware: refuses a request whose `Host` the listener's policy does not allow.
pub async fn check_host(
    State(policy): State<Arc<HostPolicy>>,
    req: Request,
    next: Next,
) -> Response {
    if policy.allows(req.uri(), req.headers()) {
        return next.run(req).await;
    }
    host_not_allowed(req.headers(), req.uri()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(listen: &str, allowed: &[&str]) -> HostPolicy {
        let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        HostPolicy::new(listen.parse().expect("addr"), &allowed)
    }

    #[test]
    fn hosts_are_allowed_by_listener_and_allowed_list() {
        let loopback = "127.0.0.1:8080";
        let loopback6 = "[::1]:8080";
        let pod = "10.1.2.3:7070";
        let wildcard = "0.0.0.0:8080";
        let wildcard6 = "[::]:8080";
        let names: &[&str] = &["Config.Example.com", "10.9.9.9", "[fd00::1]"];
        #[rustfmt::skip]
        let cases: &[(&str, &[&str], &str, bool)] = &[
            // A loopback listener: its literal, any loopback literal, localhost; any port.
            (loopback, &[], "127.0.0.1", true),
            (loopback, &[], "127.0.0.1:8080", true),
            (loopback, &[], "127.0.0.1:9999", true),
            (loopback, &[], "127.0.0.2:8080", true),
            (loopback, &[], "[::1]:8080", true),
            (loopback, &[], "localhost", true),
            (loopback, &[], "LOCALHOST:8080", true),
            (loopback, &[], "evil.example", false),
            (loopback, &[], "evil.example:8080", false),
            (loopback, &[], "localhost.evil.example", false),
            (loopback, &[], "10.0.0.1", false),
            (loopback, &[], "127.0.0.1.evil.example", false),
            (loopback, &[], "2130706433", false),
            (loopback, &[], "", false),
            (loopback, &[], ":8080", false),
            (loopback, &[], "localhost:80x", false),
            (loopback, &[], "::1", false),
            (loopback, &[], "[::1", false),
            (loopback, &[], "[::1]x", false),
            (loopback6, &[], "[::1]", true),
            (loopback6, &[], "localhost:8080", true),
            (loopback6, &[], "evil.example", false),
            // --allowed-host adds names (case-insensitive, any port) and IP literals.
            (loopback, names, "config.example.com", true),
            (loopback, names, "CONFIG.EXAMPLE.COM:443", true),
            (loopback, names, "10.9.9.9:1", true),
            (loopback, names, "[fd00::1]:8080", true),
            (loopback, names, "localhost", true),
            (loopback, names, "example.com", false),
            (loopback, names, "config.example.com.evil", false),
            // A listener on one address: that literal and the list; no localhost.
            (pod, &[], "10.1.2.3", true),
            (pod, &[], "10.1.2.3:7070", true),
            (pod, &[], "localhost", false),
            (pod, &[], "127.0.0.1", false),
            (pod, &[], "rtconfig.svc", false),
            // The listener's own literal is matched first, byte for byte; near misses still
            // go through the full check.
            (pod, &[], "10.1.2.3:", true),
            (pod, &[], "10.1.2.3:70x", false),
            (pod, &[], "10.1.2.30", false),
            (pod, &[], "10.1.2.3.evil.example", false),
            (pod, &[], "10.1.2.3]", false),
            (loopback6, &[], "[::1]:", true),
            (loopback6, &[], "[::1]:x", false),
            (pod, names, "config.example.com", true),
            // A wildcard listener without a list answers every host.
            (wildcard, &[], "rtconfig-admin.prod.svc.cluster.local", true),
            (wildcard, &[], "10.1.2.3:8080", true),
            (wildcard, &[], "anything at all", true),
            (wildcard6, &[], "evil.example", true),
            // With a list: the names, localhost and IP literals (pod IPs, kubelet probes).
            (wildcard, names, "config.example.com", true),
            (wildcard, names, "10.1.2.3:8080", true),
            (wildcard, names, "[fd00::2]", true),
            (wildcard, names, "localhost:8080", true),
            (wildcard, names, "evil.example", false),
            (wildcard6, names, "evil.example", false),
        ];
        for (listen, allowed, host, want) in cases {
            let p = policy(listen, allowed);
            assert_eq!(
                host_allowed(&p, host.as_bytes()),
                *want,
                "listen {listen}, allowed {allowed:?}, Host {host:?}"
            );
        }
    }

    #[test]
    fn requests_are_checked_on_host_and_absolute_form_authority() {
        let p = policy("127.0.0.1:8080", &[]);
        let mut headers = HeaderMap::new();
        let path: Uri = "/v1/configs".parse().expect("uri");
        assert!(p.allows(&path, &headers), "no Host (HTTP/1.0) is served");
        headers.insert(header::HOST, HeaderValue::from_static("evil.example"));
        assert!(!p.allows(&path, &headers));
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(p.allows(&path, &headers));
        let absolute: Uri = "http://evil.example/v1/configs".parse().expect("uri");
        assert!(!p.allows(&absolute, &headers), "the authority counts too");
        let err = host_not_allowed(&headers, &absolute);
        assert_eq!(err.status, StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(err.code, "host_not_allowed");
        assert!(err.message.contains("--allowed-host"), "{}", err.message);
    }

    #[test]
    fn allowed_host_entries_are_names_or_ip_literals() {
        for ok in [
            "localhost",
            "rtconfig.example.com",
            "my_host",
            "10.0.0.5",
            "::1",
            "[fd00::1]",
        ] {
            assert_eq!(allowed_host_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "https://x.example",
            "x.example:8080",
            "x.example/",
            "a..b",
            "a b",
            ".",
        ] {
            let p = allowed_host_problem(bad).expect(bad);
            assert!(p.contains("--allowed-host"), "{p}");
        }
    }
}
