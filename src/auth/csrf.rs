//! Cross-site request forgery: the two checks a state-changing request with a session cookie
//! must pass (pure functions; the guard gathers the inputs).
//!
//! 1. **Synchronizer token.** The session's random CSRF token, sent back in the
//!    `X-CSRF-Token` header (scripts) or the `csrf_token` field of an
//!    `application/x-www-form-urlencoded` body (plain HTML forms), compared in constant time.
//! 2. **Origin.** The browser's `Origin` must be the admin's own origin (`http(s)://` + the
//!    request's `Host`, `https` when the admin serves TLS) or `--public-url`'s; without an
//!    `Origin`, `Sec-Fetch-Site` must be `same-origin` or `none`. A cookie request with neither
//!    header is refused (every current browser sends one of them on a state-changing request).
//!
//! Sign-in has no session (so no token): it gets the origin check only, and a request with
//! neither header (a script, `curl`) passes, since a forged cross-site sign-in needs a
//! browser, which always sends `Origin`.
//!
//! Bearer-token requests are exempt: a browser never adds an `Authorization` header by itself.

use axum::http::Method;

use super::secrets::constant_time_eq;

/// The header scripts send the CSRF token in.
pub const HEADER: &str = "x-csrf-token";
/// The form field HTML forms send it in.
pub const FORM_FIELD: &str = "csrf_token";

/// Whether `method` may change state (everything but `GET`, `HEAD`, `OPTIONS`, `TRACE`).
pub fn state_changing(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The origins this admin accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// `--public-url`'s origin (`https://config.example.com`, no path, no trailing slash).
    pub public: Option<String>,
    /// Whether the admin itself serves TLS (its own origin is then `https://` + `Host`).
    pub tls: bool,
}

/// What the origin check looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOrigin<'a> {
    pub origin: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
    pub host: Option<&'a str>,
}

/// Why a request failed the CSRF checks (logged; the client sees `csrf_failed` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfFailure {
    #[error("no CSRF token (send the X-CSRF-Token header or the csrf_token form field)")]
    MissingToken,
    #[error("the CSRF token is not this session's")]
    WrongToken,
    #[error("the request comes from another origin")]
    ForeignOrigin,
    #[error("the request carries neither Origin nor Sec-Fetch-Site")]
    NoOrigin,
}

impl Origins {
    /// The admin's own origin for a request to `host`.
    fn own(&self, host: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", host.to_ascii_lowercase())
    }

    /// The origin check. `allow_missing`: a request with neither `Origin` nor
    /// `Sec-Fetch-Site` passes (sign-in only).
    pub fn check(&self, req: RequestOrigin<'_>, allow_missing: bool) -> Result<(), CsrfFailure> {
        if let Some(origin) = req.origin {
            let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            let public = self.public.as_deref().map(str::to_ascii_lowercase);
            let own = req.host.map(|h| self.own(h.trim()));
            return if origin != "null"
                && (public.as_deref() == Some(origin.as_str())
                    || own.as_deref() == Some(origin.as_str()))
            {
                Ok(())
            } else {
                Err(CsrfFailure::ForeignOrigin)
            };
        }
        match req.sec_fetch_site.map(str::trim) {
            Some(site) if site.eq_ignore_ascii_case("same-origin") => Ok(()),
            Some(site) if site.eq_ignore_ascii_case("none") => Ok(()),
            Some(_) => Err(CsrfFailure::ForeignOrigin),
            None if allow_missing => Ok(()),
            None => Err(CsrfFailure::NoOrigin),
        }
    }
}

/// The synchronizer-token check: `given` must be the session's token.
pub fn check_token(session_token: &str, given: Option<&str>) -> Result<(), CsrfFailure> {
    match given.map(str::trim) {
        None | Some("") => Err(CsrfFailure::MissingToken),
        Some(t) if constant_time_eq(t, session_token) => Ok(()),
        Some(_) => Err(CsrfFailure::WrongToken),
    }
}

/// The `csrf_token` field of an `application/x-www-form-urlencoded` body.
pub fn form_token(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == FORM_FIELD)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_methods_change_state() {
        for (m, want) in [
            (Method::GET, false),
            (Method::HEAD, false),
            (Method::OPTIONS, false),
            (Method::POST, true),
            (Method::PUT, true),
            (Method::PATCH, true),
            (Method::DELETE, true),
        ] {
            assert_eq!(state_changing(&m), want, "{m}");
        }
    }

    #[test]
    fn origin_check() {
        use CsrfFailure::*;
        let plain = Origins::default();
        let public = Origins {
            public: Some("https://config.example.com".into()),
            tls: false,
        };
        let tls = Origins {
            public: None,
            tls: true,
        };
        let host = Some("127.0.0.1:8080");
        // (origins, origin, sec-fetch-site, host, allow_missing, want)
        type Row<'a> = (
            &'a Origins,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            bool,
            Result<(), CsrfFailure>,
        );
        let table: &[Row] = &[
            (
                &plain,
                Some("http://127.0.0.1:8080"),
                None,
                host,
                false,
                Ok(()),
            ),
            (
                &plain,
                Some("http://127.0.0.1:8080/"),
                None,
                host,
                false,
                Ok(()),
            ),
            (
                &plain,
                Some("https://127.0.0.1:8080"),
                None,
                host,
                false,
                Err(ForeignOrigin),
            ),
            (
                &tls,
                Some("https://127.0.0.1:8080"),
                None,
                host,
                false,
                Ok(()),
            ),
            (
                &plain,
                Some("http://evil.example"),
                None,
                host,
                false,
                Err(ForeignOrigin),
            ),
            (
                &plain,
                Some("http://evil.example"),
                Some("same-origin"),
                host,
                false,
                Err(ForeignOrigin),
            ),
            (&plain, Some("null"), None, host, false, Err(ForeignOrigin)),
            (
                &plain,
                Some("http://127.0.0.1:8080"),
                None,
                None,
                false,
                Err(ForeignOrigin),
            ),
            (
                &public,
                Some("https://config.example.com"),
                None,
                host,
                false,
                Ok(()),
            ),
            (
                &public,
                Some("HTTPS://Config.Example.com"),
                None,
                host,
                false,
                Ok(()),
            ),
            (
                &public,
                Some("http://config.example.com"),
                None,
                host,
                false,
                Err(ForeignOrigin),
            ),
            (
                &public,
                Some("http://127.0.0.1:8080"),
                None,
                host,
                false,
                Ok(()),
            ),
            (&plain, None, Some("same-origin"), host, false, Ok(())),
            (&plain, None, Some("none"), host, false, Ok(())),
            (
                &plain,
                None,
                Some("same-site"),
                host,
                false,
                Err(ForeignOrigin),
            ),
            (
                &plain,
                None,
                Some("cross-site"),
                host,
                true,
                Err(ForeignOrigin),
            ),
            (&plain, None, None, host, false, Err(NoOrigin)),
            (&plain, None, None, host, true, Ok(())),
        ];
        for (origins, origin, site, host, allow, want) in table {
            let req = RequestOrigin {
                origin: *origin,
                sec_fetch_site: *site,
                host: *host,
            };
            assert_eq!(
                origins.check(req, *allow),
                *want,
                "{origins:?} {origin:?} {site:?} {host:?} {allow}"
            );
        }
    }

    #[test]
    fn token_check() {
        use CsrfFailure::*;
        for (given, want) in [
            (None, Err(MissingToken)),
            (Some(""), Err(MissingToken)),
            (Some("abc"), Ok(())),
            (Some(" abc "), Ok(())),
            (Some("abd"), Err(WrongToken)),
            (Some("ab"), Err(WrongToken)),
        ] {
            assert_eq!(check_token("abc", given), want, "{given:?}");
        }
    }

    #[test]
    fn form_token_is_found() {
        assert_eq!(
            form_token(b"a=1&csrf_token=x%2By&b=2").as_deref(),
            Some("x+y")
        );
        assert_eq!(form_token(b"a=1"), None);
    }
}
