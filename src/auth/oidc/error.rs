//! Why a sign-in with the provider failed. No message or source here carries an authorization
//! code, a token, the PKCE verifier, the nonce or the client secret.

use openidconnect::core::CoreErrorResponseType;
use openidconnect::{
    ClaimsVerificationError, DiscoveryError, HttpClientError, RequestTokenError,
    StandardErrorResponse,
};

use openidconnect::reqwest;

/// The error of the HTTP client used for every call to the provider.
pub type HttpError = HttpClientError<reqwest::Error>;

/// Why a sign-in with OpenID Connect failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// A setting is unusable (checked before any request).
    #[error("{flag}: {reason}")]
    InvalidSettings { flag: &'static str, reason: String },
    #[error("cannot set up the HTTP client for OpenID Connect")]
    HttpClient(#[source] reqwest::Error),
    /// The provider's discovery document or signing keys could not be fetched or are invalid.
    #[error(
        "OpenID Connect discovery failed for --oidc-issuer {issuer} (is it the provider's issuer \
         URL, and is the provider reachable?)"
    )]
    Discovery {
        issuer: String,
        #[source]
        source: DiscoveryError<HttpError>,
    },
    /// The discovery document lacks an endpoint the flow needs.
    #[error("the provider at --oidc-issuer {issuer} announces no {endpoint}")]
    MissingEndpoint {
        issuer: String,
        endpoint: &'static str,
    },
    /// The `state` returned to the callback is not the one of this sign-in (a stale tab, a
    /// second sign-in in another tab, or a forged callback).
    #[error("the sign-in response does not belong to this sign-in (state mismatch); start again")]
    StateMismatch,
    /// The sign-in was started too long ago ([`super::PENDING_LOGIN_TTL`]).
    #[error("the sign-in took too long; start again")]
    LoginExpired,
    /// The token endpoint refused the authorization code (used already, expired, wrong PKCE
    /// verifier or client secret), or could not be reached.
    #[error("the identity provider did not accept the authorization code")]
    Exchange(#[source] ProviderCallError),
    #[error(
        "the identity provider's token response has no ID token (is the openid scope allowed?)"
    )]
    MissingIdToken,
    /// The ID token failed validation.
    #[error("the ID token was refused: {reason}")]
    InvalidIdToken {
        reason: IdTokenRejection,
        #[source]
        source: ClaimsVerificationError,
    },
    /// The userinfo endpoint (asked for the role claim) failed or answered for another user.
    #[error("the identity provider's userinfo request failed")]
    UserInfo(#[source] ProviderCallError),
}

/// Which ID-token check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenRejection {
    /// `exp` is past (or `iat` refused).
    Expired,
    /// `aud` does not contain the client id, or names an untrusted other audience.
    Audience,
    /// `nonce` is missing or not this sign-in's.
    Nonce,
    /// `iss` is not the discovered issuer.
    Issuer,
    /// Bad signature, unknown key, or a refused algorithm (HMAC, `none`).
    Signature,
    /// `at_hash` does not match the access token.
    AccessTokenHash,
    /// Anything else (unsupported token form, bad subject, …).
    Other,
}

impl std::fmt::Display for IdTokenRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdTokenRejection::Expired => "expired",
            IdTokenRejection::Audience => "issued for another client (audience)",
            IdTokenRejection::Nonce => "nonce mismatch",
            IdTokenRejection::Issuer => "wrong issuer",
            IdTokenRejection::Signature => "bad signature",
            IdTokenRejection::AccessTokenHash => "access token hash mismatch",
            IdTokenRejection::Other => "invalid",
        })
    }
}

impl IdTokenRejection {
    pub(crate) fn of(e: &ClaimsVerificationError) -> IdTokenRejection {
        match e {
            ClaimsVerificationError::Expired(_) => IdTokenRejection::Expired,
            ClaimsVerificationError::InvalidAudience(_) => IdTokenRejection::Audience,
            ClaimsVerificationError::InvalidNonce(_) => IdTokenRejection::Nonce,
            ClaimsVerificationError::InvalidIssuer(_) => IdTokenRejection::Issuer,
            ClaimsVerificationError::SignatureVerification(_) => IdTokenRejection::Signature,
            _ => IdTokenRejection::Other,
        }
    }
}

/// A failed call to the token or userinfo endpoint, without the response body (which may hold
/// tokens).
#[derive(Debug, thiserror::Error)]
pub enum ProviderCallError {
    /// The provider answered with an OAuth error (`invalid_grant` for a used or expired code).
    #[error("the provider answered {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("the request to the provider failed")]
    Request(#[source] HttpError),
    /// The answer was not what OpenID Connect says (only the JSON path is kept).
    #[error("the provider's answer could not be read (at {path})")]
    BadResponse { path: String },
    #[error("{0}")]
    Other(String),
}

impl ProviderCallError {
    pub(crate) fn from_token(
        e: RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>,
    ) -> ProviderCallError {
        match e {
            RequestTokenError::ServerResponse(r) => ProviderCallError::Refused {
                error: r.error().to_string(),
                description: r.error_description().cloned(),
            },
            RequestTokenError::Request(e) => ProviderCallError::Request(e),
            RequestTokenError::Parse(e, _body) => ProviderCallError::BadResponse {
                path: e.path().to_string(),
            },
            RequestTokenError::Other(s) => ProviderCallError::Other(s),
        }
    }

    pub(crate) fn from_user_info(e: openidconnect::UserInfoError<HttpError>) -> ProviderCallError {
        use openidconnect::UserInfoError as E;
        match e {
            E::Response(status, _body, _) => ProviderCallError::Refused {
                error: format!("HTTP {status}"),
                description: None,
            },
            E::Request(e) => ProviderCallError::Request(e),
            E::Parse(e) => ProviderCallError::BadResponse {
                path: e.path().to_string(),
            },
            E::ClaimsVerification(e) => {
                ProviderCallError::Other(format!("the userinfo answer was refused: {e}"))
            }
            other => ProviderCallError::Other(other.to_string()),
        }
    }
}
