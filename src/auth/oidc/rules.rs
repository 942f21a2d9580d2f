//! The small decisions of the SSO flow, as pure functions with table tests.

use openidconnect::core::{CoreClientAuthMethod, CoreJwsSigningAlgorithm};
use openidconnect::{AuthType, JwsSigningAlgorithm};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::{Host, Url};

use super::CALLBACK_PATH;

/// Whether a host is this machine (so plain `http://` cannot be intercepted on the way).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `--oidc-issuer` must be `https://` (OpenID Connect Discovery §3), or `http://` on loopback
/// (tests, a provider on the same host). No query or fragment.
pub(crate) fn check_issuer(issuer: &Url) -> Result<(), String> {
    match issuer.scheme() {
        "https" => {}
        "http" if is_loopback(issuer) => {}
        "http" => {
            return Err(format!(
                "{issuer} must use https:// (plain http:// is accepted only on loopback)"
            ))
        }
        _ => return Err(format!("{issuer} must be an https:// URL")),
    }
    if issuer.query().is_some() || issuer.fragment().is_some() {
        return Err(format!("{issuer} must not have a query or fragment"));
    }
    Ok(())
}

/// The issuer strings to try, in order. A `Url` always has a path, so `https://idp.example`
/// and `https://idp.example/` read the same; providers differ in which one their metadata says
/// (most: without the slash), and the ID token's `iss` must equal it exactly.
pub(crate) fn issuer_candidates(issuer: &Url) -> Vec<String> {
    let text = issuer.as_str();
    if issuer.path() == "/" {
        vec![text.trim_end_matches('/').to_owned(), text.to_owned()]
    } else {
        vec![text.to_owned()]
    }
}

/// `--public-url` + [`CALLBACK_PATH`], keeping a path prefix (`https://x/rtconfig/` →
/// `https://x/rtconfig/auth/oidc/callback`).
pub(crate) fn redirect_uri(public_url: &Url) -> Result<Url, String> {
    if !matches!(public_url.scheme(), "https" | "http") || public_url.cannot_be_a_base() {
        return Err(format!("{public_url} must be an http:// or https:// URL"));
    }
    if public_url.query().is_some() || public_url.fragment().is_some() {
        return Err(format!("{public_url} must not have a query or fragment"));
    }
    let mut url = public_url.clone();
    let path = format!("{}{CALLBACK_PATH}", public_url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

/// The values of a role claim: a string is one value, an array gives its strings (other
/// elements are skipped), anything else gives none.
pub(crate) fn claim_values(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The name to create an SSO user with: `preferred_username`, else `email`, else the subject
/// (blank values skipped). Never used to find or link an account.
pub(crate) fn username(preferred: Option<&str>, email: Option<&str>, subject: &str) -> String {
    [preferred, email]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(subject)
        .to_owned()
}

/// Compares two secrets without a timing side channel (on their SHA-256 digests, so neither
/// the content nor the length leaks).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (da, db) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    bool::from(da.as_slice().ct_eq(db.as_slice()))
}

/// Whether a pending login created at `created_at` (unix seconds) may still finish at `now`:
/// at most `ttl_secs` old, and not from the future (a minute of clock step tolerated).
pub(crate) fn pending_is_fresh(created_at: i64, now: i64, ttl_secs: i64) -> bool {
    created_at <= now + 60 && now - created_at <= ttl_secs
}

/// The ID-token signature algorithms accepted: those the provider announces, minus the
/// symmetric ones (HS*, keyed with the client secret, which more than the provider knows) and
/// `none`; RS256 (the OpenID Connect default) when that leaves nothing.
pub(crate) fn id_token_algs(announced: &[CoreJwsSigningAlgorithm]) -> Vec<CoreJwsSigningAlgorithm> {
    let mut algs: Vec<_> = announced
        .iter()
        .filter(|a| !a.uses_shared_secret() && **a != CoreJwsSigningAlgorithm::None)
        .cloned()
        .collect();
    if algs.is_empty() {
        algs.push(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256);
    }
    algs
}

/// The scopes to ask for: `wanted` without `openid` (always sent) and duplicates, and — when
/// the provider announces its scopes — without those it does not know (Google and Microsoft
/// Entra ID refuse an unknown `groups` scope; Keycloak and Okta announce it when configured).
/// Returns the scopes to ask for and those left out.
pub(crate) fn scopes_to_request(
    wanted: &[String],
    announced: Option<&[String]>,
) -> (Vec<String>, Vec<String>) {
    let mut ask: Vec<String> = Vec::new();
    let mut left_out = Vec::new();
    for s in wanted.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if s == "openid" || ask.iter().any(|x| x == s) || left_out.iter().any(|x| x == s) {
            continue;
        }
        match announced {
            Some(known) if !known.iter().any(|k| k == s) => left_out.push(s.to_owned()),
            _ => ask.push(s.to_owned()),
        }
    }
    (ask, left_out)
}

/// How to send the client secret to the token endpoint: HTTP Basic (the default of OAuth 2.0
/// and OIDC), unless the provider announces only `client_secret_post`.
pub(crate) fn auth_type(announced: Option<&[CoreClientAuthMethod]>) -> AuthType {
    match announced {
        Some(methods)
            if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
        {
            AuthType::RequestBody
        }
        _ => AuthType::BasicAuth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn which_issuers_are_accepted() {
        let table: &[(&str, bool)] = &[
            ("https://accounts.google.com", true),
            ("https://sso.example.com/realms/acme", true),
            ("http://127.0.0.1:8080", true),
            ("http://localhost:8080/realms/test", true),
            ("http://[::1]:9000", true),
            ("http://sso.example.com", false),
            ("http://10.0.0.1", false),
            ("ftp://sso.example.com", false),
            ("https://sso.example.com/?tenant=a", false),
            ("https://sso.example.com/#x", false),
        ];
        for (issuer, ok) in table {
            assert_eq!(check_issuer(&url(issuer)).is_ok(), *ok, "{issuer}");
        }
    }

    #[test]
    fn issuer_spellings_to_try() {
        let table: &[(&str, &[&str])] = &[
            (
                "https://accounts.google.com",
                &[
                    "https://accounts.google.com",
                    "https://accounts.google.com/",
                ],
            ),
            (
                "https://acme.auth0.com/",
                &["https://acme.auth0.com", "https://acme.auth0.com/"],
            ),
            (
                "https://sso.example.com/realms/acme",
                &["https://sso.example.com/realms/acme"],
            ),
            (
                "https://login.example.com/tenant/v2.0/",
                &["https://login.example.com/tenant/v2.0/"],
            ),
        ];
        for (issuer, want) in table {
            assert_eq!(issuer_candidates(&url(issuer)), *want, "{issuer}");
        }
    }

    #[test]
    fn redirect_uri_comes_from_the_public_url() {
        let table: &[(&str, Result<&str, ()>)] = &[
            (
                "https://config.example.com",
                Ok("https://config.example.com/auth/oidc/callback"),
            ),
            (
                "https://config.example.com/",
                Ok("https://config.example.com/auth/oidc/callback"),
            ),
            (
                "https://example.com/rtconfig/",
                Ok("https://example.com/rtconfig/auth/oidc/callback"),
            ),
            (
                "http://127.0.0.1:7000",
                Ok("http://127.0.0.1:7000/auth/oidc/callback"),
            ),
            ("https://example.com/?a=b", Err(())),
            ("mailto:ops@example.com", Err(())),
            ("ftp://example.com", Err(())),
        ];
        for (public, want) in table {
            let got = redirect_uri(&url(public));
            match want {
                Ok(w) => assert_eq!(got.as_ref().map(Url::as_str), Ok(*w), "{public}"),
                Err(()) => assert!(got.is_err(), "{public}: {got:?}"),
            }
        }
    }

    #[test]
    fn role_claims_are_a_string_or_a_list_of_strings() {
        let table: &[(Value, &[&str])] = &[
            (json!("payments-team"), &["payments-team"]),
            (json!(["a", "b"]), &["a", "b"]),
            (json!([]), &[]),
            (json!(["a", 1, null, {"x": 1}, "b"]), &["a", "b"]),
            (json!(null), &[]),
            (json!(42), &[]),
            (json!({"a": true}), &[]),
            (json!("a b"), &["a b"]),
        ];
        for (value, want) in table {
            assert_eq!(claim_values(value), *want, "{value}");
        }
    }

    #[test]
    fn the_username_falls_back_to_email_then_subject() {
        let table: &[(Option<&str>, Option<&str>, &str)] = &[
            (Some("alice"), Some("alice@example.com"), "alice"),
            (None, Some("bob@example.com"), "bob@example.com"),
            (Some(""), Some("bob@example.com"), "bob@example.com"),
            (Some("  "), None, "sub-123"),
            (None, None, "sub-123"),
            (Some(" carol "), None, "carol"),
        ];
        for (preferred, email, want) in table {
            assert_eq!(
                username(*preferred, *email, "sub-123"),
                *want,
                "{preferred:?} {email:?}"
            );
        }
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("abc", ""));
        assert!(same_secret("", ""));
    }

    #[test]
    fn a_pending_login_expires() {
        // (created, now, fresh) with a 600 s lifetime
        let table = [
            (1000, 1000, true),
            (1000, 1600, true),
            (1000, 1601, false),
            (1060, 1000, true),
            (1061, 1000, false),
        ];
        for (created, now, fresh) in table {
            assert_eq!(
                pending_is_fresh(created, now, 600),
                fresh,
                "{created} {now}"
            );
        }
    }

    #[test]
    fn only_asymmetric_signatures_are_accepted() {
        use CoreJwsSigningAlgorithm::*;
        let table: &[(&[CoreJwsSigningAlgorithm], &[CoreJwsSigningAlgorithm])] = &[
            (&[RsaSsaPkcs1V15Sha256], &[RsaSsaPkcs1V15Sha256]),
            (
                &[HmacSha256, RsaSsaPkcs1V15Sha256, EcdsaP256Sha256, None],
                &[RsaSsaPkcs1V15Sha256, EcdsaP256Sha256],
            ),
            (&[HmacSha256], &[RsaSsaPkcs1V15Sha256]),
            (&[None], &[RsaSsaPkcs1V15Sha256]),
            (&[], &[RsaSsaPkcs1V15Sha256]),
            (&[EdDsa, RsaSsaPssSha256], &[EdDsa, RsaSsaPssSha256]),
        ];
        for (announced, want) in table {
            assert_eq!(id_token_algs(announced), *want, "{announced:?}");
        }
    }

    #[test]
    fn scopes_the_provider_does_not_know_are_left_out() {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let wanted = v(&["openid", "profile", "email", "groups"]);
        // (announced, asked, left out)
        type Row<'a> = (Option<&'a [&'a str]>, &'a [&'a str], &'a [&'a str]);
        let table: &[Row] = &[
            (None, &["profile", "email", "groups"], &[]),
            (
                Some(&["openid", "profile", "email", "groups", "offline_access"]),
                &["profile", "email", "groups"],
                &[],
            ),
            (
                Some(&["openid", "email", "profile"]),
                &["profile", "email"],
                &["groups"],
            ),
            (Some(&[]), &[], &["profile", "email", "groups"]),
        ];
        for (announced, ask, left) in table {
            let announced = announced.map(v);
            assert_eq!(
                scopes_to_request(&wanted, announced.as_deref()),
                (v(ask), v(left)),
                "{announced:?}"
            );
        }
        assert_eq!(
            scopes_to_request(&v(&["email", " email", "", "openid"]), None),
            (v(&["email"]), v(&[]))
        );
    }

    #[test]
    fn the_client_secret_goes_in_basic_auth_unless_only_post_is_offered() {
        use CoreClientAuthMethod::*;
        let basic = |a: AuthType| matches!(a, AuthType::BasicAuth);
        assert!(basic(auth_type(Option::None)));
        assert!(basic(auth_type(Some(&[
            ClientSecretBasic,
            ClientSecretPost
        ]))));
        assert!(basic(auth_type(Some(&[ClientSecretBasic]))));
        assert!(!basic(auth_type(Some(&[ClientSecretPost]))));
        assert!(!basic(auth_type(Some(&[PrivateKeyJwt, ClientSecretPost]))));
        assert!(basic(auth_type(Some(&[]))));
    }
}
