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
