//! The session cookie: `__Host-rtconfig=<session id>; Secure; HttpOnly; SameSite=Strict;
//! Path=/`, how it is set and cleared, and how it is found in a request's `Cookie` headers.
//!
//! The `__Host-` prefix makes browsers keep the cookie only when it is `Secure`, has
//! `Path=/` and no `Domain`: no other host (a sibling subdomain) can set or shadow it.
//! Browsers keep `Secure` cookies over HTTPS and on loopback (`http://127.0.0.1`,
//! `http://localhost`) only.

use std::time::Duration;

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};

/// The session cookie's name.
pub const NAME: &str = "__Host-rtconfig";

const ATTRIBUTES: &str = "Secure; HttpOnly; SameSite=Strict; Path=/";

/// The `Set-Cookie` value that installs session `id` for `max_age`.
pub fn set(id: &str, max_age: Duration) -> HeaderValue {
    let text = format!("{NAME}={id}; Max-Age={}; {ATTRIBUTES}", max_age.as_secs());
    // The id is base64url (a valid header value); fall back to clearing if it ever is not.
    HeaderValue::from_str(&text).unwrap_or_else(|_| clear())
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-rtconfig=; Max-Age=0; Secure; HttpOnly; SameSite=Strict; Path=/",
    )
}

/// The session id of the request's `__Host-rtconfig` cookie, if any (the first one when a
/// client sends several; an empty value counts as none).
pub fn find(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == NAME)
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether the request carries a session cookie at all (even an empty or unknown one).
pub fn present(headers: &HeaderMap) -> bool {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|pair| pair.trim().split('=').next() == Some(NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).expect("value"));
        }
        h
    }

    #[test]
    fn finds_the_session_cookie() {
        let table: &[(&[&str], Option<&str>, bool)] = &[
            (&[], None, false),
            (&["a=1"], None, false),
            (&["__Host-rtconfig=abc"], Some("abc"), true),
            (&["a=1; __Host-rtconfig=abc; b=2"], Some("abc"), true),
            (&["a=1", "__Host-rtconfig=abc"], Some("abc"), true),
            (&["__Host-rtconfig="], None, true),
            (&["rtconfig=abc"], None, false),
            (&["__host-rtconfig=abc"], None, false),
        ];
        for (cookies, want, present_) in table {
            let h = headers(cookies);
            assert_eq!(find(&h).as_deref(), *want, "{cookies:?}");
            assert_eq!(present(&h), *present_, "{cookies:?}");
        }
    }

    #[test]
    fn set_and_clear_carry_every_attribute() {
        let set = set("abc", Duration::from_secs(60));
        let set = set.to_str().expect("ascii");
        assert_eq!(
            set,
            "__Host-rtconfig=abc; Max-Age=60; Secure; HttpOnly; SameSite=Strict; Path=/"
        );
        let clear = clear();
        let clear = clear.to_str().expect("ascii");
        assert!(clear.starts_with("__Host-rtconfig=; Max-Age=0;"), "{clear}");
        for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(clear.contains(attr), "{clear}");
        }
    }
}
