//! Reading a bearer token out of an `Authorization` header (RFC 9110 §11.4, RFC 6750 §2.1).
//!
//! `credentials = auth-scheme [ 1*SP token68 ]`: the scheme is case-insensitive (`Bearer`,
//! `bearer` and `BEARER` are one scheme), then one or more spaces, then exactly one token68
//! (`1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`). Anything else — another
//! scheme, no token, a second token, a tab, auth-params (`a=b, c=d`), characters outside token68
//! — is not a bearer token. The comparison with the expected token is the caller's (in constant
//! time).

use axum::http::HeaderValue;

/// The token of `Authorization: Bearer <token>`, or `None` when the header is anything else.
pub fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    is_token68(token).then_some(token)
}

/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_token68(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_is_one_token68() {
        for (header, want) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("bEaReR abc", Some("abc")),
            ("Bearer  abc", Some("abc")),
            ("Bearer rtc_AZaz09-._~+/", Some("rtc_AZaz09-._~+/")),
            ("Bearer YWJj==", Some("YWJj==")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearer  ", None),
            ("Bearer ==", None),
            ("Bearer a=b", None),
            ("Bearer abc def", None),
            ("Bearer abc ", None),
            ("Bearer\tabc", None),
            ("Bearer abc,def", None),
            ("Bearer realm=\"x\"", None),
            ("Bearerabc", None),
            ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", None),
            ("Token abc", None),
            (" Bearer abc", None),
            ("", None),
        ] {
            let value = HeaderValue::from_str(header).expect("header value");
            assert_eq!(bearer_token(&value), want, "{header:?}");
        }
        // Bytes outside visible ASCII are not a token.
        let value = HeaderValue::from_bytes(b"Bearer ab\xffc").expect("header value");
        assert_eq!(bearer_token(&value), None);
    }
}
