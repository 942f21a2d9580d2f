//! Single sign-on with OpenID Connect: the relying-party side of the authorization-code flow
//! with PKCE, for the admin's sign-in routes (which own the HTTP side: cookies, sessions, the
//! user store).
//!
//! # The flow, and who does what
//!
//! 1. At start: [`Oidc::discover`] reads the provider's metadata and signing keys from
//!    `--oidc-issuer` (OpenID Connect Discovery).
//! 2. `GET /auth/oidc/login` (the caller): [`Oidc::begin`] returns the provider's authorize URL
//!    and a [`PendingLogin`] (the PKCE verifier, `state` and `nonce`, all random). The caller
//!    keeps the `PendingLogin` server-side or in a short-lived sealed (encrypted, authenticated)
//!    cookie — never readable or forgeable by the browser — and redirects to the URL.
//! 3. `GET /auth/oidc/callback?code=…&state=…` (the caller): [`Oidc::finish`] checks `state`
//!    against the pending login (constant time), refuses a login older than
//!    [`PENDING_LOGIN_TTL`], exchanges the code (with the PKCE verifier and the client secret),
//!    and validates the ID token: signature (with the provider's published keys, asymmetric
//!    algorithms only), issuer, audience, expiry, nonce and the access-token hash. The role claim
//!    comes from the ID token, or from the userinfo endpoint when the ID token lacks it. It
//!    returns an [`OidcIdentity`]. The caller consumes the `PendingLogin` (one use).
//! 4. The caller finds the user by **(issuer, subject)** — [`OidcIdentity::link`], looked up with
//!    `AuthStore::user_by_oidc` — creating it on first sign-in, and **replaces** its grants with
//!    [`map_roles`]`(&identity.claim_values, role_map)` at every sign-in, so a group removed at
//!    the provider removes the grant (and, through the store, the user's other sessions).
//!
//! # Accounts are keyed on (issuer, subject), never on name or e-mail
//!
//! An SSO user is found only by [`OidcLink`] (the issuer and the provider's `sub`). It is never
//! linked to an existing local account, nor to another SSO user, because a name or e-mail
//! matches: a provider that lets users pick their `preferred_username` or an unverified e-mail
//! would otherwise hand over someone else's account. [`OidcIdentity::username`] is only the
//! name to create the user with (`preferred_username`, else `email`, else `sub`); when it is
//! already taken, the caller must not merge — it refuses the sign-in or picks another name.
//!
//! A user none of whose claim values is in the role map gets no grants; the caller should
//! refuse such a sign-in ("no rtconfig role for this account") rather than create an empty
//! user. A second factor for SSO users is the provider's business (docs/SSO.md).
//!
//! # Security notes
//!
//! - The HTTP client follows no redirects (SSRF) and has timeouts; discovery refuses an
//!   `http://` issuer that is not on loopback.
//! - `redirect_uri` is `--public-url` + [`CALLBACK_PATH`], never derived from a request's `Host`.
//! - Errors never carry a code, token, verifier or secret: token-endpoint failures keep only the
//!   provider's error code and description, or the JSON path that failed to parse.

mod client;
mod error;
pub mod role_map;
mod rules;

use std::fmt;

use url::Url;

pub use client::{Oidc, OidcIdentity, PendingLogin, PENDING_LOGIN_TTL};
pub use error::{HttpError, IdTokenRejection, OidcError, ProviderCallError};
pub use role_map::{map_roles, RoleMap, RoleMapError, RoleMapProblem};

pub use crate::auth::store::OidcLink;

/// The callback route on the admin, appended to `--public-url` to form the `redirect_uri`
/// registered at the provider.
pub const CALLBACK_PATH: &str = "/auth/oidc/callback";

/// `--oidc-role-claim` when not given.
pub const DEFAULT_ROLE_CLAIM: &str = "groups";

/// The scopes asked for when the caller does not say otherwise (`openid` is always asked).
pub const DEFAULT_SCOPES: [&str; 4] = ["openid", "profile", "email", "groups"];

/// How the admin talks to the provider. Built from `--oidc-issuer`, `--oidc-client-id`,
/// `--oidc-client-secret-file`, `--oidc-role-claim`, `--oidc-role-map` and `--public-url`.
#[derive(Clone)]
pub struct OidcSettings {
    /// `--oidc-issuer`: the provider's issuer URL, exactly as its discovery document says
    /// (a trailing `/` after the host is tried both ways).
    pub issuer: Url,
    /// `--oidc-client-id`.
    pub client_id: String,
    /// The content of `--oidc-client-secret-file`; `None` for a public client (PKCE only).
    pub client_secret: Option<String>,
    /// `--oidc-role-claim` (default `groups`): the claim whose values the role map maps. It must
    /// be the name of the role map's table.
    pub role_claim: String,
    /// `--oidc-role-map FILE`.
    pub role_map: RoleMap,
    /// `--public-url`: where browsers reach the admin. `redirect_uri` is this plus
    /// [`CALLBACK_PATH`].
    pub public_url: Url,
    /// Scopes to ask for ([`DEFAULT_SCOPES`]). `openid` is always asked; a scope the provider
    /// does not list in its discovery document's `scopes_supported` is left out (so the default
    /// `groups` is asked only of providers that have it).
    pub scopes: Vec<String>,
}

impl OidcSettings {
    /// Settings with the default role claim and scopes and an empty role map.
    pub fn new(issuer: Url, client_id: impl Into<String>, public_url: Url) -> OidcSettings {
        OidcSettings {
            issuer,
            client_id: client_id.into(),
            client_secret: None,
            role_claim: DEFAULT_ROLE_CLAIM.to_owned(),
            role_map: RoleMap::new(DEFAULT_ROLE_CLAIM, []),
            public_url,
            scopes: DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The `redirect_uri` to register at the provider: `--public-url` + [`CALLBACK_PATH`].
    pub fn redirect_uri(&self) -> Result<Url, OidcError> {
        rules::redirect_uri(&self.public_url).map_err(|reason| OidcError::InvalidSettings {
            flag: "--public-url",
            reason,
        })
    }

    /// Checks what can be checked without the network (also done by [`Oidc::discover`]).
    pub fn validate(&self) -> Result<(), OidcError> {
        rules::check_issuer(&self.issuer).map_err(|reason| OidcError::InvalidSettings {
            flag: "--oidc-issuer",
            reason,
        })?;
        if self.client_id.trim().is_empty() {
            return Err(OidcError::InvalidSettings {
                flag: "--oidc-client-id",
                reason: "is empty".to_owned(),
            });
        }
        if self
            .client_secret
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return Err(OidcError::InvalidSettings {
                flag: "--oidc-client-secret-file",
                reason: "the file is empty".to_owned(),
            });
        }
        if self.role_claim.trim().is_empty() {
            return Err(OidcError::InvalidSettings {
                flag: "--oidc-role-claim",
                reason: "is empty".to_owned(),
            });
        }
        if self.role_map.claim() != self.role_claim {
            return Err(OidcError::InvalidSettings {
                flag: "--oidc-role-map",
                reason: format!(
                    "the file maps the claim {:?} (its table [{}]) but --oidc-role-claim is {:?}: \
                     rename the table or change the flag",
                    self.role_map.claim(),
                    self.role_map.claim(),
                    self.role_claim
                ),
            });
        }
        self.redirect_uri().map(|_| ())
    }
}

impl fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("role_claim", &self.role_claim)
            .field("role_map", &format_args!("{} values", self.role_map.len()))
            .field("public_url", &self.public_url.as_str())
            .field("scopes", &self.scopes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OidcSettings {
        let mut s = OidcSettings::new(
            Url::parse("https://sso.example.com/realms/acme").expect("url"),
            "rtconfig",
            Url::parse("https://config.example.com").expect("url"),
        );
        s.client_secret = Some("very-secret-value".to_owned());
        s
    }

    #[test]
    fn settings_are_checked_before_any_request() {
        assert!(settings().validate().is_ok());
        // (change, flag named, words)
        type Change = fn(&mut OidcSettings);
        let table: &[(Change, &str, &str)] = &[
            (
                |s| s.issuer = Url::parse("http://sso.example.com").expect("url"),
                "--oidc-issuer",
                "https",
            ),
            (|s| s.client_id = " ".into(), "--oidc-client-id", "empty"),
            (
                |s| s.client_secret = Some("\n".into()),
                "--oidc-client-secret-file",
                "empty",
            ),
            (|s| s.role_claim = "".into(), "--oidc-role-claim", "empty"),
            (
                |s| s.role_claim = "roles".into(),
                "--oidc-role-map",
                "[groups]",
            ),
            (
                |s| s.public_url = Url::parse("mailto:a@b").expect("url"),
                "--public-url",
                "http",
            ),
        ];
        for (change, flag, words) in table {
            let mut s = settings();
            change(&mut s);
            let err = s.validate().expect_err(flag);
            let msg = err.to_string();
            assert!(msg.starts_with(flag), "{msg}");
            assert!(msg.contains(words), "{msg}");
        }
    }

    #[test]
    fn debug_hides_the_client_secret() {
        let text = format!("{:?}", settings());
        assert!(!text.contains("very-secret-value"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}
