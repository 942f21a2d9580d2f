//! The relying party: discovery, the authorize URL, the code exchange and the ID-token checks.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    reqwest, AccessTokenHash, AdditionalClaims, AuthorizationCode, Client, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenClaims,
    IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, SignatureVerificationError, StandardErrorResponse, StandardTokenResponse,
    TokenResponse, UserInfoClaims,
};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::error::{IdTokenRejection, OidcError, ProviderCallError};
use super::role_map::{map_roles, RoleMap};
use super::{rules, OidcLink, OidcSettings};
use crate::auth::role::Grants;

/// How long a [`PendingLogin`] may wait for its callback.
pub const PENDING_LOGIN_TTL: Duration = Duration::from_secs(10 * 60);

/// Timeouts of the calls to the provider.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The signing keys are fetched again (for a key rotation at the provider: an ID token signed
/// with a key id not in the set) at most this often.
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Every claim of the ID token or userinfo answer beyond the standard ones (the role claim is
/// one of them), kept as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OtherClaims {
    #[serde(flatten)]
    claims: Map<String, Value>,
}
impl AdditionalClaims for OtherClaims {}

type IdFields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<IdFields, CoreTokenType>;
type Claims = IdTokenClaims<OtherClaims, CoreGenderClaim>;

/// `CoreClient` with [`OtherClaims`], in the typestate `from_provider_metadata` returns: an
/// authorize URL, and (checked at discovery) a token and maybe a userinfo endpoint.
type RpClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The OpenID Connect relying party, made once at start by [`Oidc::discover`] and shared.
pub struct Oidc {
    http: reqwest::Client,
    metadata: CoreProviderMetadata,
    /// Rebuilt when the signing keys are fetched again.
    client: RwLock<Arc<RpClient>>,
    /// When the signing keys were last fetched again after discovery.
    jwks_refreshed_at: Mutex<Option<Instant>>,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    redirect_uri: RedirectUrl,
    algs: Vec<CoreJwsSigningAlgorithm>,
    scopes: Vec<Scope>,
    role_claim: String,
    role_map: RoleMap,
}

/// A sign-in in progress, between [`Oidc::begin`] and [`Oidc::finish`]. Holds secrets (the
/// PKCE verifier and the nonce): keep it server-side or in a sealed cookie, use it once.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    state: String,
    nonce: String,
    pkce_verifier: String,
    /// Unix seconds.
    created_at: i64,
}

impl PendingLogin {
    /// The `state` sent to the provider (also a good key for server-side storage).
    pub fn state(&self) -> &str {
        &self.state
    }

    /// When [`Oidc::begin`] made it (unix seconds).
    pub fn created_at(&self) -> i64 {
        self.created_at
    }
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Who signed in, as the provider vouches for it in a validated ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    /// The issuer, exactly as in the ID token (`iss`).
    pub issuer: String,
    /// The provider's stable id of the user (`sub`).
    pub subject: String,
    /// The name to create the user with: `preferred_username`, else `email`, else `subject`.
    /// Never used to find or link an account.
    pub username: String,
    pub email: Option<String>,
    /// The values of the role claim (from the ID token, else from userinfo); empty when the
    /// provider sent none.
    pub claim_values: Vec<String>,
}

impl OidcIdentity {
    /// The key the user is stored under (`AuthStore::user_by_oidc`).
    pub fn link(&self) -> OidcLink {
        OidcLink {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
        }
    }
}

impl Oidc {
    /// Reads the provider's discovery document and signing keys from `settings.issuer`.
    pub async fn discover(settings: OidcSettings) -> Result<Oidc, OidcError> {
        settings.validate()?;
        let redirect_uri = RedirectUrl::from_url(settings.redirect_uri()?);
        let http = reqwest::Client::builder()
            // Following redirects would let a provider (or whoever controls a URL in its
            // metadata) point the admin at internal addresses (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(OidcError::HttpClient)?;

        let metadata = discover_metadata(&settings.issuer, &http).await?;
        let issuer = metadata.issuer().to_string();
        if metadata.token_endpoint().is_none() {
            return Err(OidcError::MissingEndpoint {
                issuer,
                endpoint: "token_endpoint",
            });
        }
        let algs = rules::id_token_algs(metadata.id_token_signing_alg_values_supported());
        let client_id = ClientId::new(settings.client_id.trim().to_owned());
        let client_secret = settings
            .client_secret
            .as_deref()
            .map(|s| ClientSecret::new(s.trim().to_owned()));
        let announced: Option<Vec<String>> = metadata
            .scopes_supported()
            .map(|l| l.iter().map(|s| s.as_str().to_owned()).collect());
        let (scopes, left_out) = rules::scopes_to_request(&settings.scopes, announced.as_deref());
        if !left_out.is_empty() {
            tracing::info!(
                issuer = %issuer,
                scopes = %left_out.join(" "),
                "not asking for scopes the OpenID provider does not announce"
            );
        }
        let scopes: Vec<Scope> = scopes.into_iter().map(Scope::new).collect();
        let oidc = Oidc {
            client: RwLock::new(Arc::new(build_client(
                &metadata,
                &client_id,
                client_secret.as_ref(),
                &redirect_uri,
            ))),
            http,
            jwks_refreshed_at: Mutex::new(None),
            client_id,
            client_secret,
            redirect_uri,
            algs,
            scopes,
            role_claim: settings.role_claim,
            role_map: settings.role_map,
            metadata,
        };
        tracing::info!(
            issuer = %issuer,
            client_id = %oidc.client_id.as_str(),
            redirect_uri = %oidc.redirect_uri.as_str(),
            role_claim = %oidc.role_claim,
            mapped_values = oidc.role_map.len(),
            userinfo = oidc.metadata.userinfo_endpoint().is_some(),
            "OpenID Connect provider discovered"
        );
        Ok(oidc)
    }

    /// The issuer as the provider's metadata says it (users are keyed on it).
    pub fn issuer(&self) -> &str {
        self.metadata.issuer().as_str()
    }

    /// The `redirect_uri` sent to the provider (`--public-url` + `/auth/oidc/callback`).
    pub fn redirect_uri(&self) -> &Url {
        self.redirect_uri.url()
    }

    pub fn role_map(&self) -> &RoleMap {
        &self.role_map
    }

    /// The grants an identity gets ([`map_roles`] with this provider's role map).
    pub fn grants(&self, identity: &OidcIdentity) -> Grants {
        map_roles(&identity.claim_values, &self.role_map)
    }

    /// Starts a sign-in: the provider's authorize URL to send the browser to, and what
    /// [`Oidc::finish`] needs when it comes back (PKCE S256, a random `state` and `nonce`).
    pub fn begin(&self) -> (Url, PendingLogin) {
        let client = self.client.read().clone();
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                || CsrfToken::new_random_len(32),
                || Nonce::new_random_len(32),
            )
            .add_scopes(self.scopes.iter().cloned())
            .set_pkce_challenge(challenge)
            .url();
        let pending = PendingLogin {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            created_at: Utc::now().timestamp(),
        };
        (url, pending)
    }

    /// Finishes a sign-in at the callback: checks `returned_state`, exchanges `code`, validates
    /// the ID token and returns who signed in. The caller must not use `pending` again.
    pub async fn finish(
        &self,
        pending: PendingLogin,
        code: &str,
        returned_state: &str,
    ) -> Result<OidcIdentity, OidcError> {
        if !rules::same_secret(&pending.state, returned_state) {
            return Err(OidcError::StateMismatch);
        }
        let ttl = i64::try_from(PENDING_LOGIN_TTL.as_secs()).unwrap_or(i64::MAX);
        if !rules::pending_is_fresh(pending.created_at, Utc::now().timestamp(), ttl) {
            return Err(OidcError::LoginExpired);
        }

        let client = self.client.read().clone();
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Exchange(ProviderCallError::Other(e.to_string())))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(ProviderCallError::from_token(e)))?;

        let nonce = Nonce::new(pending.nonce);
        let (client, claims) = match self.verify(&client, &tokens, &nonce) {
            Err(OidcError::InvalidIdToken {
                source:
                    openidconnect::ClaimsVerificationError::SignatureVerification(
                        SignatureVerificationError::NoMatchingKey,
                    ),
                ..
            }) if self.jwks_may_refresh() => {
                // The provider may have rotated its keys since discovery.
                let client = self.refresh_jwks().await?;
                let claims = self.verify(&client, &tokens, &nonce)?;
                (client, claims)
            }
            other => (client, other?),
        };

        let subject = claims.subject().as_str().to_owned();
        let mut preferred = claims.preferred_username().map(|u| u.as_str().to_owned());
        let mut email = claims.email().map(|e| e.as_str().to_owned());
        let mut role_values = present(claims.additional_claims(), &self.role_claim);

        if role_values.is_none() && client.user_info_url().is_some() {
            let info: UserInfoClaims<OtherClaims, CoreGenderClaim> = client
                .user_info(
                    tokens.access_token().clone(),
                    Some(claims.subject().clone()),
                )
                .map_err(|e| OidcError::UserInfo(ProviderCallError::Other(e.to_string())))?
                .request_async(&self.http)
                .await
                .map_err(|e| OidcError::UserInfo(ProviderCallError::from_user_info(e)))?;
            role_values = present(info.additional_claims(), &self.role_claim);
            preferred =
                preferred.or_else(|| info.preferred_username().map(|u| u.as_str().to_owned()));
            email = email.or_else(|| info.email().map(|e| e.as_str().to_owned()));
        }

        let identity = OidcIdentity {
            issuer: claims.issuer().as_str().to_owned(),
            username: rules::username(preferred.as_deref(), email.as_deref(), &subject),
            subject,
            email,
            claim_values: role_values
                .as_ref()
                .map(rules::claim_values)
                .unwrap_or_default(),
        };
        tracing::debug!(
            issuer = %identity.issuer,
            subject = %identity.subject,
            claim_values = identity.claim_values.len(),
            "OpenID Connect sign-in validated"
        );
        Ok(identity)
    }

    /// Validates the ID token of a token response (signature, issuer, audience, expiry, nonce,
    /// access-token hash) with the client's verifier, asymmetric algorithms only.
    fn verify(
        &self,
        client: &RpClient,
        tokens: &Tokens,
        nonce: &Nonce,
    ) -> Result<Claims, OidcError> {
        let id_token = tokens.id_token().ok_or(OidcError::MissingIdToken)?;
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(self.algs.iter().cloned());
        let refused = |source| OidcError::InvalidIdToken {
            reason: IdTokenRejection::of(&source),
            source,
        };
        let claims = id_token.claims(&verifier, nonce).map_err(refused)?;
        if let Some(expected) = claims.access_token_hash() {
            let sig = |e| refused(openidconnect::ClaimsVerificationError::SignatureVerification(e));
            let alg = id_token.signing_alg().map_err(sig)?;
            let key = id_token.signing_key(&verifier).map_err(sig)?;
            let actual =
                AccessTokenHash::from_token(tokens.access_token(), alg, key).map_err(|e| {
                    OidcError::InvalidIdToken {
                        reason: IdTokenRejection::AccessTokenHash,
                        source: openidconnect::ClaimsVerificationError::Other(format!(
                            "cannot compute the access token hash: {e}"
                        )),
                    }
                })?;
            if actual != *expected {
                return Err(OidcError::InvalidIdToken {
                    reason: IdTokenRejection::AccessTokenHash,
                    source: openidconnect::ClaimsVerificationError::Other(
                        "the at_hash claim does not match the access token".to_owned(),
                    ),
                });
            }
        }
        Ok(claims.clone())
    }

    /// The first unknown key id fetches the keys at once; later ones at most once a minute.
    fn jwks_may_refresh(&self) -> bool {
        self.jwks_refreshed_at
            .lock()
            .is_none_or(|at| at.elapsed() >= JWKS_REFRESH_INTERVAL)
    }

    /// Fetches the provider's signing keys again and rebuilds the client with them.
    async fn refresh_jwks(&self) -> Result<Arc<RpClient>, OidcError> {
        *self.jwks_refreshed_at.lock() = Some(Instant::now());
        let jwks = CoreJsonWebKeySet::fetch_async(self.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|source| OidcError::Discovery {
                issuer: self.issuer().to_owned(),
                source,
            })?;
        tracing::info!(
            issuer = %self.issuer(),
            keys = jwks.keys().len(),
            "OpenID Connect signing keys fetched again (unknown key id in an ID token)"
        );
        let metadata = self.metadata.clone().set_jwks(jwks);
        let client = Arc::new(build_client(
            &metadata,
            &self.client_id,
            self.client_secret.as_ref(),
            &self.redirect_uri,
        ));
        *self.client.write() = client.clone();
        Ok(client)
    }
}

/// The role claim's value, when present and not `null`.
fn present(claims: &OtherClaims, name: &str) -> Option<Value> {
    claims.claims.get(name).filter(|v| !v.is_null()).cloned()
}

fn build_client(
    metadata: &CoreProviderMetadata,
    client_id: &ClientId,
    client_secret: Option<&ClientSecret>,
    redirect_uri: &RedirectUrl,
) -> RpClient {
    RpClient::from_provider_metadata(metadata.clone(), client_id.clone(), client_secret.cloned())
        .set_redirect_uri(redirect_uri.clone())
        .set_auth_type(rules::auth_type(
            metadata
                .token_endpoint_auth_methods_supported()
                .map(Vec::as_slice),
        ))
}

/// Discovery with each spelling of the issuer ([`rules::issuer_candidates`]): the next one is
/// tried only when the document names the issuer differently.
async fn discover_metadata(
    issuer: &Url,
    http: &reqwest::Client,
) -> Result<CoreProviderMetadata, OidcError> {
    let candidates = rules::issuer_candidates(issuer);
    let mut last = None;
    for candidate in candidates {
        let issuer_url =
            IssuerUrl::new(candidate.clone()).map_err(|e| OidcError::InvalidSettings {
                flag: "--oidc-issuer",
                reason: format!("{candidate} is not a URL: {e}"),
            })?;
        match CoreProviderMetadata::discover_async(issuer_url, http).await {
            Ok(metadata) => return Ok(metadata),
            Err(source @ openidconnect::DiscoveryError::Validation(_)) => {
                last = Some(OidcError::Discovery {
                    issuer: issuer.to_string(),
                    source,
                })
            }
            Err(source) => {
                return Err(OidcError::Discovery {
                    issuer: issuer.to_string(),
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| OidcError::InvalidSettings {
        flag: "--oidc-issuer",
        reason: format!("{issuer} is not a URL"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_login_round_trips_and_hides_its_secrets() {
        let pending = PendingLogin {
            state: "s".repeat(43),
            nonce: "the-nonce-value".into(),
            pkce_verifier: "the-verifier-value".into(),
            created_at: 1_700_000_000,
        };
        let json = serde_json::to_string(&pending).expect("json");
        let back: PendingLogin = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.state(), pending.state());
        assert_eq!(back.nonce, pending.nonce);
        assert_eq!(back.pkce_verifier, pending.pkce_verifier);
        assert_eq!(back.created_at(), 1_700_000_000);
        let debug = format!("{pending:?}");
        assert!(!debug.contains("the-nonce-value") && !debug.contains("the-verifier-value"));
        assert!(!debug.contains(&pending.state), "{debug}");
    }

    /// `Oidc` is shared by the admin's handlers, whose futures must be `Send`.
    #[test]
    fn oidc_is_shareable_and_its_futures_are_send() {
        fn shareable<T: Send + Sync + 'static>() {}
        fn send<T: Send>(_: &T) {}
        shareable::<Oidc>();
        shareable::<PendingLogin>();
        #[allow(dead_code)]
        fn finish_is_send(oidc: &Oidc, pending: PendingLogin) {
            send(&oidc.finish(pending, "", ""));
        }
        #[allow(dead_code)]
        fn discover_is_send(settings: OidcSettings) {
            send(&Oidc::discover(settings));
        }
    }

    #[test]
    fn other_claims_keep_the_role_claim_in_any_shape() {
        let claims: OtherClaims =
            serde_json::from_str(r#"{"groups":["a","b"],"roles":"x","gone":null}"#).expect("json");
        assert_eq!(
            present(&claims, "groups"),
            Some(serde_json::json!(["a", "b"]))
        );
        assert_eq!(present(&claims, "roles"), Some(serde_json::json!("x")));
        assert_eq!(present(&claims, "gone"), None);
        assert_eq!(present(&claims, "missing"), None);
    }
}
