//! Who the client is: the address the login throttle and the audit log use.
//!
//! # The rule
//! - The TCP peer, unless it is in a `--trusted-proxy` range. `X-Forwarded-For` from any other
//!   peer is ignored: anybody can write one.
//! - Behind a trusted proxy: walk `X-Forwarded-For` from the right (the hop the nearest proxy
//!   appended first), skipping hops that are themselves trusted proxies; the first untrusted hop
//!   is the client. Several header lines count as one list, in order.
//! - A hop that is not an IP address (`unknown`, an obfuscated name, an empty item, garbage) stops
//!   the walk: nothing to its left can be believed, so the client is the last trusted hop (the
//!   proxy that passed the garbage on). This never yields an address the client chose; at worst
//!   it lumps such clients together under their proxy's address.
//! - When every hop is trusted, the leftmost one is the client (an internal caller).
//!
//! Hops may carry a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`) or brackets (`[2001:db8::1]`).
//! IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, from dual-stack sockets) are taken as the
//! IPv4 address, both for matching `--trusted-proxy` and as the result. The RFC 7239 `Forwarded`
//! header is not read.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The client's address (see the module docs). `x_forwarded_for` holds every
/// `X-Forwarded-For` header value of the request, in order.
pub fn client_ip(peer: IpAddr, x_forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut nearest = peer;
    for hop in x_forwarded_for
        .iter()
        .rev()
        .flat_map(|value| value.rsplit(','))
    {
        match parse_hop(hop) {
            Some(ip) if is_trusted(&ip) => nearest = ip,
            Some(ip) => return ip,
            None => return nearest,
        }
    }
    nearest
}

/// [`client_ip`] with the request's headers. A header value that is not valid UTF-8 counts as
/// garbage (it stops the walk).
pub fn from_headers(peer: IpAddr, headers: &http::HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if trusted.is_empty() {
        return peer.to_canonical();
    }
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.to_str().unwrap_or(""))
        .collect();
    client_ip(peer, &values, trusted)
}

/// One `X-Forwarded-For` item: an IP address, optionally bracketed (IPv6) and with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim_matches([' ', '\t']);
    let ip = match hop.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match hop.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(inner) => inner.parse::<std::net::Ipv6Addr>().ok()?.into(),
            None => hop.parse::<SocketAddr>().ok()?.ip(),
        },
    };
    Some(ip.to_canonical())
}

/// Why a `--trusted-proxy` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedProxyError {
    #[error(
        "--trusted-proxy {0:?} is neither a CIDR range (10.0.0.0/8, fd00::/8) nor an IP address \
         (10.1.2.3, fd00::1)"
    )]
    Invalid(String),
    #[error(
        "--trusted-proxy {0:?} trusts every address, so any client could choose its own IP with \
         X-Forwarded-For; name the proxies' addresses instead"
    )]
    Everything(String),
}

/// A `--trusted-proxy` value: a CIDR range (host bits are cleared: `10.1.2.3/8` is
/// `10.0.0.0/8`) or one IP address (a /32 or /128). A /0 is refused.
pub fn parse_trusted_proxy(s: &str) -> Result<IpNet, TrustedProxyError> {
    let text = s.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| TrustedProxyError::Invalid(s.to_owned()))?,
    };
    if net.prefix_len() == 0 {
        return Err(TrustedProxyError::Everything(s.to_owned()));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| parse_trusted_proxy(s).unwrap())
            .collect()
    }

    #[test]
    fn client_ip_table() {
        let proxies = nets(&["10.0.0.0/8", "fd00::/8", "192.0.2.10"]);
        // (peer, X-Forwarded-For lines, trusted, expected client)
        let cases: &[(&str, &[&str], &[IpNet], &str)] = &[
            // no proxies configured: always the peer
            ("203.0.113.5", &[], &[], "203.0.113.5"),
            ("203.0.113.5", &["198.51.100.1"], &[], "203.0.113.5"),
            // a spoofed header from an untrusted peer is ignored
            ("203.0.113.5", &["10.0.0.1"], &proxies, "203.0.113.5"),
            (
                "203.0.113.5",
                &["198.51.100.1, 10.1.1.1"],
                &proxies,
                "203.0.113.5",
            ),
            // a trusted proxy without the header: the proxy itself
            ("10.0.0.2", &[], &proxies, "10.0.0.2"),
            // one proxy
            ("10.0.0.2", &["198.51.100.1"], &proxies, "198.51.100.1"),
            // the client's own (spoofed) entries are left of the one the proxy appended
            (
                "10.0.0.2",
                &["6.6.6.6, 198.51.100.1"],
                &proxies,
                "198.51.100.1",
            ),
            (
                "10.0.0.2",
                &["10.9.9.9, 198.51.100.1"],
                &proxies,
                "198.51.100.1",
            ),
            // two trusted proxies: skip the inner one
            (
                "10.0.0.2",
                &["198.51.100.1, 10.0.0.3"],
                &proxies,
                "198.51.100.1",
            ),
            (
                "192.0.2.10",
                &["6.6.6.6,198.51.100.1,10.0.0.3"],
                &proxies,
                "198.51.100.1",
            ),
            // several header lines are one list, in order
            (
                "10.0.0.2",
                &["6.6.6.6", "198.51.100.1", "10.0.0.3"],
                &proxies,
                "198.51.100.1",
            ),
            (
                "10.0.0.2",
                &["6.6.6.6, 198.51.100.1", "10.0.0.3"],
                &proxies,
                "198.51.100.1",
            ),
            // every hop trusted: the leftmost
            ("10.0.0.2", &["10.0.0.4, 10.0.0.3"], &proxies, "10.0.0.4"),
            // garbage stops the walk at the last trusted hop
            ("10.0.0.2", &["198.51.100.1, unknown"], &proxies, "10.0.0.2"),
            (
                "10.0.0.2",
                &["198.51.100.1, unknown, 10.0.0.3"],
                &proxies,
                "10.0.0.3",
            ),
            (
                "10.0.0.2",
                &["198.51.100.1,,10.0.0.3"],
                &proxies,
                "10.0.0.3",
            ),
            ("10.0.0.2", &["198.51.100.1", ""], &proxies, "10.0.0.2"),
            ("10.0.0.2", &["_hidden"], &proxies, "10.0.0.2"),
            ("10.0.0.2", &["198.51.100.1 10.0.0.3"], &proxies, "10.0.0.2"),
            ("10.0.0.2", &["999.1.1.1"], &proxies, "10.0.0.2"),
            // garbage left of the client does not matter
            (
                "10.0.0.2",
                &["<script>, 198.51.100.1"],
                &proxies,
                "198.51.100.1",
            ),
            // ports, brackets, blanks
            ("10.0.0.2", &["198.51.100.1:4711"], &proxies, "198.51.100.1"),
            ("10.0.0.2", &[" \t198.51.100.1 "], &proxies, "198.51.100.1"),
            ("10.0.0.2", &["[2001:db8::1]:4711"], &proxies, "2001:db8::1"),
            ("10.0.0.2", &["[2001:db8::1]"], &proxies, "2001:db8::1"),
            // IPv6 proxies and clients
            ("fd00::1", &["2001:db8::7"], &proxies, "2001:db8::7"),
            (
                "fd00::1",
                &["2001:db8::7, fd12::9"],
                &proxies,
                "2001:db8::7",
            ),
            ("2001:db8::99", &["2001:db8::7"], &proxies, "2001:db8::99"),
            // IPv4-mapped: the peer of a dual-stack socket, and a mapped hop
            (
                "::ffff:10.0.0.2",
                &["198.51.100.1"],
                &proxies,
                "198.51.100.1",
            ),
            (
                "::ffff:203.0.113.5",
                &["198.51.100.1"],
                &proxies,
                "203.0.113.5",
            ),
            (
                "10.0.0.2",
                &["::ffff:198.51.100.1"],
                &proxies,
                "198.51.100.1",
            ),
            (
                "10.0.0.2",
                &["198.51.100.1, ::ffff:10.0.0.3"],
                &proxies,
                "198.51.100.1",
            ),
        ];
        for (peer, xff, trusted, want) in cases {
            assert_eq!(
                client_ip(ip(peer), xff, trusted),
                ip(want),
                "peer {peer}, X-Forwarded-For {xff:?}"
            );
        }
    }

    #[test]
    fn from_headers_reads_every_line() {
        let proxies = nets(&["10.0.0.0/8"]);
        let mut headers = http::HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        headers.append("X-Forwarded-For", "198.51.100.1, 10.0.0.3".parse().unwrap());
        assert_eq!(
            from_headers(ip("10.0.0.2"), &headers, &proxies),
            ip("198.51.100.1")
        );
        assert_eq!(
            from_headers(ip("203.0.113.5"), &headers, &proxies),
            ip("203.0.113.5")
        );
        assert_eq!(
            from_headers(ip("::ffff:10.0.0.2"), &headers, &[]),
            ip("10.0.0.2")
        );
        // a value that is not UTF-8 is garbage
        let mut headers = http::HeaderMap::new();
        headers.append("x-forwarded-for", "198.51.100.1".parse().unwrap());
        headers.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(
            from_headers(ip("10.0.0.2"), &headers, &proxies),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn parse_trusted_proxy_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("10.0.0.0/8", Some("10.0.0.0/8")),
            ("10.1.2.3/8", Some("10.0.0.0/8")),
            ("10.1.2.3", Some("10.1.2.3/32")),
            (" 10.1.2.3 ", Some("10.1.2.3/32")),
            ("fd00::/8", Some("fd00::/8")),
            ("2001:db8::1", Some("2001:db8::1/128")),
            ("", None),
            ("proxy.internal", None),
            ("10.0.0.0/33", None),
            ("10.0.0/8", None),
            ("[::1]", None),
        ];
        for (input, want) in cases {
            match (parse_trusted_proxy(input), want) {
                (Ok(net), Some(want)) => assert_eq!(net.to_string(), *want, "{input:?}"),
                (Err(e), None) => {
                    assert!(e.to_string().starts_with("--trusted-proxy "), "{e}");
                    assert!(e.to_string().contains(&format!("{input:?}")), "{e}");
                }
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
        for everything in ["0.0.0.0/0", "::/0", "10.0.0.0/0"] {
            let err = parse_trusted_proxy(everything).unwrap_err();
            assert_eq!(err, TrustedProxyError::Everything(everything.into()));
            assert!(err.to_string().contains("trusts every address"), "{err}");
        }
    }
}
