//! Header names and values used on the read path, built once.

use axum::http::{HeaderName, HeaderValue};

pub const X_CONFIG_VERSION: HeaderName = HeaderName::from_static("x-config-version");
pub const X_CONFIG_EPOCH: HeaderName = HeaderName::from_static("x-config-epoch");
pub const X_CONFIG_SOURCE: HeaderName = HeaderName::from_static("x-config-source");
pub const X_CONFIG_AGE: HeaderName = HeaderName::from_static("x-config-age");
pub const X_CONFIG_STALE: HeaderName = HeaderName::from_static("x-config-stale");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

pub const JSON: HeaderValue = HeaderValue::from_static("application/json");
pub const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
pub const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
pub const TRUE: HeaderValue = HeaderValue::from_static("true");
pub const FALSE: HeaderValue = HeaderValue::from_static("false");
pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// The longest client `X-Request-Id` kept (bytes); a longer one is replaced by a fresh id.
pub const MAX_REQUEST_ID_BYTES: usize = 200;

/// A header's text when it is UTF-8 (`HeaderValue::to_str` takes visible ASCII only, so a
/// UTF-8 user agent or request id would be lost).
pub fn text(value: &HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

/// Whether a client's `X-Request-Id` is kept as it is: UTF-8, 1 to [`MAX_REQUEST_ID_BYTES`]
/// bytes, no control characters. Otherwise the admin gives the request its own id, so what is
/// echoed and what is stored always agree.
pub fn request_id_usable(value: &HeaderValue) -> bool {
    let len = value.as_bytes().len();
    (1..=MAX_REQUEST_ID_BYTES).contains(&len)
        && text(value).is_some_and(|t| !t.chars().any(char::is_control))
}

/// `X-Config-Source` values.
pub fn source(source: crate::snapshot::Source) -> HeaderValue {
    HeaderValue::from_static(source.as_str())
}

/// Whether an `If-None-Match` header value matches `etag` (handles lists, `W/` and `*`).
pub fn etag_matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(text) = if_none_match.to_str() else {
        return false;
    };
    let want = etag.as_bytes();
    text.split(',').any(|candidate| {
        let c = candidate.trim();
        c == "*" || c.trim_start_matches("W/").as_bytes() == want
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_handles_lists_weak_tags_and_star() {
        let etag = HeaderValue::from_static("\"1-5\"");
        for yes in ["\"1-5\"", "W/\"1-5\"", "\"0-1\", \"1-5\"", "*"] {
            assert!(etag_matches(&HeaderValue::from_static(yes), &etag), "{yes}");
        }
        for no in ["\"1-4\"", "1-5", ""] {
            assert!(!etag_matches(&HeaderValue::from_static(no), &etag), "{no}");
        }
    }
}

#[cfg(test)]
mod request_id_tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_when_utf8_short_and_printable() {
        let ok = |bytes: &[u8]| request_id_usable(&HeaderValue::from_bytes(bytes).expect("value"));
        assert!(ok(b"abc-123"));
        assert!(ok("zählung-42".as_bytes()));
        assert!(ok(&[b'a'; MAX_REQUEST_ID_BYTES]));
        assert!(!ok(&[b'a'; MAX_REQUEST_ID_BYTES + 1]));
        assert!(!ok(b""));
        assert!(!ok(b"\xff\xfe"));
        assert!(!ok(b"a\tb"));
        assert_eq!(
            text(&HeaderValue::from_bytes("Mozilla/5.0 (Käse)".as_bytes()).expect("v")),
            Some("Mozilla/5.0 (Käse)")
        );
    }
}
