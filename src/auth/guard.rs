//! The one place requests are authenticated and authorized.
//!
//! Every admin route declares, in the route table (`admin::routes`), what each of its methods
//! needs ([`Needs`] of [`Access`]); [`guard`] is the middleware the table puts around each
//! route with its declaration. Handlers never check roles themselves: they take the
//! [`Principal`] (and [`RequestInfo`]) the guard put into the request's extensions.
//!
//! What the guard does, in order:
//! 1. **Client info**: the client IP (the TCP peer, or `X-Forwarded-For`'s last untrusted hop
//!    when the peer is a `--trusted-proxy`), user agent and request id ([`RequestInfo`]).
//! 2. **Public routes** (probes, the OpenAPI document, sign-in) go through without
//!    credentials; a state-changing one (sign-in) gets the origin check of [`super::csrf`].
//! 3. **Authentication.** An `Authorization` header means bearer only, never the cookie:
//!    (`auth::bearer`: the scheme is case-insensitive): the bootstrap `--admin-token` or an API token (unknown or revoked → 401 `unauthorized`,
//!    expired → 401 `token_expired`). Otherwise the `__Host-rtconfig` session cookie (none,
//!    unknown, idle or past its lifetime → 401 `unauthorized`, with a `Set-Cookie` that
//!    clears it).
//! 4. **CSRF** for a state-changing request authenticated by the cookie: the session's token
//!    (header or form field) and the origin check → otherwise 403 `csrf_failed`.
//! 5. A session still owing its second factor's enrolment may call only the enrolment routes
//!    (401 `mfa_required` elsewhere).
//! 6. **Authorization**: the route's [`Need`] (the namespace from the `{ns}` path parameter)
//!    against the principal's effective grants → 403 `forbidden` naming the role needed
//!    (audited).
//! 7. Book-keeping: a session's `last_seen_at`, a token's `last_used_at` (its first use
//!    audited), every use of the bootstrap token audited. Authenticated responses carry
//!    `Cache-Control: no-store`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde_json::json;

use super::audit::Action;
use super::csrf::{self, CsrfFailure, RequestOrigin};
use super::principal::{Principal, BOOTSTRAP_ACTOR};
use super::role::{Need, Role};
use super::secrets::digest;
use super::service::Auth;
use super::session_policy::SessionState;
use super::store::AuthStoreError;
use super::{cookie, Grants};
use crate::http::error::BODY_LIMIT_BYTES;
use crate::http::headers::X_REQUEST_ID;
use crate::http::ApiError;
use crate::telemetry::Chain;

/// What one method of a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: probes, the OpenAPI document, sign-in (which still gets the origin check).
    Public,
    /// Any authenticated principal: a session, a token, the bootstrap token.
    SignedIn,
    /// A signed-in user's session (not a token): one's own sessions and password.
    Session,
    /// A session, also one that still owes its TOTP enrolment: the enrolment routes.
    Enrol,
    /// At least this role in the namespace of the route's `{ns}` parameter.
    Namespace(Role),
    /// At least this role in some namespace (listings, filtered by the handler).
    Somewhere(Role),
    /// At least this role globally (users, tokens, audit: `Global(Admin)`).
    Global(Role),
}

impl Access {
    /// The role decision for this access in namespace `ns` (`None`: the route has no `{ns}`).
    pub fn need(&self, ns: Option<&str>) -> Option<Need> {
        Some(match self {
            Access::Public | Access::SignedIn | Access::Session | Access::Enrol => Need::SignedIn,
            Access::Namespace(role) => Need::InNamespace(*role, ns?.to_owned()),
            Access::Somewhere(role) => Need::Somewhere(*role),
            Access::Global(role) => Need::Global(*role),
        })
    }
}

/// What each method of a route needs. `HEAD` is `GET`'s. A method a route serves but
/// [`Needs`] does not list is refused (fail closed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs(pub Vec<(Method, Access)>);

impl Needs {
    pub fn new() -> Needs {
        Needs::default()
    }

    pub fn on(mut self, method: Method, access: Access) -> Needs {
        self.0.push((method, access));
        self
    }

    pub fn get(self, access: Access) -> Needs {
        self.on(Method::GET, access)
    }
    pub fn post(self, access: Access) -> Needs {
        self.on(Method::POST, access)
    }
    pub fn put(self, access: Access) -> Needs {
        self.on(Method::PUT, access)
    }
    pub fn patch(self, access: Access) -> Needs {
        self.on(Method::PATCH, access)
    }
    pub fn delete(self, access: Access) -> Needs {
        self.on(Method::DELETE, access)
    }

    /// What `method` needs on this route.
    pub fn for_method(&self, method: &Method) -> Option<Access> {
        let method = if *method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.0
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, access)| *access)
    }
}

/// Where a request comes from, for audit events, changesets and the throttle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// The client IP (`auth::client_ip`: the TCP peer, or the last untrusted
    /// `X-Forwarded-For` hop behind a `--trusted-proxy`).
    pub ip: Option<IpAddr>,
    /// At most 256 characters of `User-Agent`.
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl RequestInfo {
    fn of(req: &Request, trusted: &[IpNet]) -> RequestInfo {
        let headers = req.headers();
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        RequestInfo {
            ip: peer.map(|p| super::client_ip::from_headers(p, headers, trusted)),
            user_agent: text(header::USER_AGENT.as_str()).map(|ua| ua.chars().take(256).collect()),
            request_id: text(X_REQUEST_ID.as_str()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestInfo>()
            .cloned()
            .ok_or_else(unguarded)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(unguarded)
    }
}

/// A handler asked for the principal on a route the guard did not authenticate: a bug in the
/// route table. Refused rather than served.
fn unguarded() -> ApiError {
    tracing::error!("a handler needs a principal but its route is not guarded");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error: this route has no access declaration",
    )
}

/// How the request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Bearer,
    Cookie,
}

/// Why a request was refused.
#[derive(Debug)]
pub enum Denial {
    /// No usable credentials. `clear_cookie`: the request's session cookie is dead.
    Unauthorized {
        clear_cookie: bool,
    },
    TokenExpired,
    /// The session owes its second factor's enrolment.
    MfaRequired,
    Forbidden(String),
    Csrf(CsrfFailure),
    /// The route's declaration does not fit it (a bug): refused.
    Misdeclared,
    Store(AuthStoreError),
}

impl From<AuthStoreError> for Denial {
    fn from(e: AuthStoreError) -> Denial {
        Denial::Store(e)
    }
}

/// The 401 every missing or bad credential gets.
pub fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "sign in (POST /api/v1/session) or send Authorization: Bearer <token>",
    )
}

/// A store failure as the API answers it.
pub fn store_error(e: AuthStoreError) -> ApiError {
    match e {
        AuthStoreError::UserExists(name) => ApiError::new(
            StatusCode::CONFLICT,
            "user_exists",
            format!("a user named {name:?} already exists"),
        ),
        AuthStoreError::TokenExists(name) => ApiError::new(
            StatusCode::CONFLICT,
            "token_exists",
            format!("a token named {name:?} already exists"),
        ),
        AuthStoreError::NoSuchUser(name) => ApiError::not_found(format!("no user named {name:?}")),
        e => {
            tracing::warn!(error = %Chain(&e), "auth store unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the user store is unavailable; retry shortly",
            )
            .retry_after(1)
        }
    }
}

impl Denial {
    pub fn into_response(self) -> Response {
        let (err, clear) = match self {
            Denial::Unauthorized { clear_cookie } => (unauthorized(), clear_cookie),
            Denial::TokenExpired => (
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "token_expired",
                    "this API token has expired: create a new one",
                ),
                false,
            ),
            Denial::MfaRequired => (
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "mfa_required",
                    "set up a second factor first: POST /api/v1/session/totp",
                ),
                false,
            ),
            Denial::Forbidden(message) => (
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
                false,
            ),
            Denial::Csrf(_) => (
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_failed",
                    "this request needs the session's CSRF token (X-CSRF-Token header or \
                     csrf_token form field) and must come from the admin's own origin",
                ),
                false,
            ),
            Denial::Misdeclared => (unguarded(), false),
            Denial::Store(e) => (store_error(e), false),
        };
        let unauthorized = err.status == StatusCode::UNAUTHORIZED;
        let mut resp = err.into_response();
        if unauthorized {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rtconfig\""),
            );
        }
        if clear {
            resp.headers_mut()
                .insert(header::SET_COOKIE, cookie::clear());
        }
        resp
    }
}

/// A route's guard: the access layer, the route's pattern and its declaration.
#[derive(Clone)]
pub struct RouteGuard {
    pub auth: Arc<Auth>,
    pub pattern: &'static str,
    pub needs: Arc<Needs>,
}

/// The middleware every admin route runs in (see the module doc).
pub async fn guard(State(g): State<RouteGuard>, mut req: Request, next: Next) -> Response {
    let info = RequestInfo::of(&req, &g.auth.config.trusted_proxies);
    req.extensions_mut().insert(info.clone());
    let Some(access) = g.needs.for_method(req.method()) else {
        tracing::error!(route = g.pattern, method = %req.method(), "a route serves a method its access declaration does not list");
        return Denial::Misdeclared.into_response();
    };
    let changes_state = csrf::state_changing(req.method());
    if access == Access::Public {
        if changes_state {
            if let Err(why) = g
                .auth
                .config
                .origins
                .check(request_origin(req.headers()), true)
            {
                return refuse_csrf(&g, &info, None, why, req.method()).await;
            }
        }
        return next.run(req).await;
    }
    let now = Utc::now();
    let (principal, via) = match authenticate(&g.auth, req.headers(), now).await {
        Ok(found) => found,
        Err(denial) => return denial.into_response(),
    };
    if via == Via::Cookie && changes_state {
        let method = req.method().clone();
        req = match check_csrf(&g.auth, &principal, req).await {
            Ok(req) => req,
            Err(why) => return refuse_csrf(&g, &info, Some(&principal), why, &method).await,
        };
    }
    if let Some((_, session)) = principal.session_user() {
        if session.pending.is_some() && access != Access::Enrol {
            return Denial::MfaRequired.into_response();
        }
    }
    book_keeping(&g, &principal, &info, req.method(), now).await;
    if matches!(access, Access::Session | Access::Enrol) && principal.session_user().is_none() {
        let message = "needs a signed-in user's session (not an API token)".to_owned();
        return refuse(&g, &info, &principal, message, req.method()).await;
    }
    let params = {
        let (mut parts, body) = req.into_parts();
        let params = RawPathParams::from_request_parts(&mut parts, &())
            .await
            .ok();
        let ns = params.as_ref().and_then(|p| {
            p.iter()
                .find(|(name, _)| *name == "ns")
                .map(|(_, v)| v.to_owned())
        });
        req = Request::from_parts(parts, body);
        ns
    };
    let Some(need) = access.need(params.as_deref()) else {
        tracing::error!(
            route = g.pattern,
            "a route needs a namespace role but has no {{ns}}"
        );
        return Denial::Misdeclared.into_response();
    };
    let grants = principal.grants();
    if !grants.allows(&need) {
        return refuse(&g, &info, &principal, need.describe(), req.method()).await;
    }
    req.extensions_mut().insert(principal);
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn request_origin(headers: &HeaderMap) -> RequestOrigin<'_> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    RequestOrigin {
        origin: text(header::ORIGIN.as_str()),
        sec_fetch_site: text("sec-fetch-site"),
        host: text(header::HOST.as_str()),
    }
}

/// The CSRF checks of a cookie request: the request back (its body restored if it was read
/// for the form field), or why it failed.
async fn check_csrf(
    auth: &Auth,
    principal: &Principal,
    req: Request,
) -> Result<Request, CsrfFailure> {
    let Some((_, session)) = principal.session_user() else {
        return Ok(req);
    };
    auth.config
        .origins
        .check(request_origin(req.headers()), false)?;
    let header_token = req
        .headers()
        .get(csrf::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    let (req, given) = match header_token {
        Some(t) => (req, Some(t)),
        None if is_form => {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, BODY_LIMIT_BYTES)
                .await
                .map_err(|_| CsrfFailure::MissingToken)?;
            let token = csrf::form_token(&bytes);
            (Request::from_parts(parts, Body::from(bytes)), token)
        }
        None => (req, None),
    };
    csrf::check_token(&session.csrf_token, given.as_deref())?;
    Ok(req)
}

/// Authenticates a request (see the module doc): the principal and how it came.
pub async fn authenticate(
    auth: &Auth,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> Result<(Principal, Via), Denial> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = super::bearer::bearer_token(value).ok_or(Denial::Unauthorized {
            clear_cookie: false,
        })?;
        return bearer_principal(auth, token, now)
            .await
            .map(|p| (p, Via::Bearer));
    }
    let Some(id) = cookie::find(headers) else {
        return Err(Denial::Unauthorized {
            clear_cookie: cookie::present(headers),
        });
    };
    session_principal(auth, &digest(&id), now)
        .await
        .map(|p| (p, Via::Cookie))
}

/// The user of a live session (by its id's digest); an idle, expired or orphaned session is
/// deleted.
async fn session_principal(
    auth: &Auth,
    id_digest: &str,
    now: DateTime<Utc>,
) -> Result<Principal, Denial> {
    let dead = Denial::Unauthorized { clear_cookie: true };
    let Some(session) = auth.store.session(id_digest).await? else {
        return Err(dead);
    };
    if auth.config.sessions.state(&session, now) != SessionState::Live {
        auth.store.delete_session(id_digest).await?;
        return Err(dead);
    }
    match auth.store.user(&session.user_id).await? {
        Some(user) if !user.disabled => Ok(Principal::User { user, session }),
        _ => {
            auth.store.delete_session(id_digest).await?;
            Err(dead)
        }
    }
}

/// What a long-lived response (an SSE stream) keeps of its caller, to check later that the
/// credential is still good ([`reauthenticate`]). Holds digests and ids only, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Session { id_digest: String },
    Token { id: String },
    Bootstrap,
}

impl Credential {
    pub fn of(principal: &Principal) -> Credential {
        match principal {
            Principal::User { session, .. } => Credential::Session {
                id_digest: session.id_digest.clone(),
            },
            Principal::Token { token, .. } => Credential::Token {
                id: token.id.clone(),
            },
            Principal::Bootstrap => Credential::Bootstrap,
        }
    }
}

/// The principal a credential stands for *now*, with the same rules as [`authenticate`]: a
/// session must be live and its user enabled; a token unrevoked and unexpired, with its
/// creator as the store has them now. Nothing is refreshed (`last_seen_at` stays: a stream
/// open in a forgotten tab does not keep its session alive).
pub async fn reauthenticate(
    auth: &Auth,
    credential: &Credential,
    now: DateTime<Utc>,
) -> Result<Principal, Denial> {
    match credential {
        Credential::Session { id_digest } => session_principal(auth, id_digest, now).await,
        Credential::Token { id } => {
            let token = auth.store.token(id).await?;
            token_principal(auth, token, now).await
        }
        Credential::Bootstrap => Ok(Principal::Bootstrap),
    }
}

async fn bearer_principal(
    auth: &Auth,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Principal, Denial> {
    if auth.is_bootstrap(token) {
        return Ok(Principal::Bootstrap);
    }
    let token = auth.store.token_by_digest(&digest(token)).await?;
    token_principal(auth, token, now).await
}

/// A stored token (if found) as a principal: unrevoked, unexpired, with its creator now.
async fn token_principal(
    auth: &Auth,
    token: Option<super::store::ApiToken>,
    now: DateTime<Utc>,
) -> Result<Principal, Denial> {
    let unknown = Denial::Unauthorized {
        clear_cookie: false,
    };
    let Some(token) = token else {
        return Err(unknown);
    };
    if token.revoked_at.is_some() {
        return Err(unknown);
    }
    if token.expires_at.is_some_and(|at| at <= now) {
        return Err(Denial::TokenExpired);
    }
    let creator = match &token.created_by {
        Some(id) => auth.store.user(id).await?,
        None => None,
    };
    Ok(Principal::Token { token, creator })
}

/// Every use of the bootstrap token audited; a token's first use audited and its
/// `last_used_at` kept (at most once a minute); a session's `last_seen_at` refreshed.
async fn book_keeping(
    g: &RouteGuard,
    principal: &Principal,
    info: &RequestInfo,
    method: &Method,
    now: DateTime<Utc>,
) {
    let auth = &g.auth;
    let result = match principal {
        Principal::Bootstrap => {
            // In the background: the request must not wait for a slow or paused store (the
            // bootstrap token works without one; the write path reports the store itself).
            let target = format!("{method} {}", g.pattern);
            let (audit, info) = (auth.audit.clone(), info.clone());
            tokio::spawn(async move {
                audit
                    .record(
                        Action::BootstrapTokenUsed,
                        BOOTSTRAP_ACTOR,
                        Some(&target),
                        &info,
                        json!({}),
                    )
                    .await;
            });
            Ok(())
        }
        Principal::Token { token, .. } => {
            let due = token
                .last_used_at
                .is_none_or(|at| now - at >= chrono::Duration::seconds(60));
            if due {
                match auth.store.token_used(&token.id, now).await {
                    Ok(true) => {
                        auth.audit
                            .record(
                                Action::TokenFirstUse,
                                &principal.actor(),
                                Some(&token.id),
                                info,
                                json!({"route": format!("{method} {}", g.pattern)}),
                            )
                            .await;
                        Ok(())
                    }
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                }
            } else {
                Ok(())
            }
        }
        Principal::User { session, .. } => {
            if auth.config.sessions.touch_due(session, now) {
                auth.store.touch_session(&session.id_digest, now).await
            } else {
                Ok(())
            }
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %Chain(&e), "cannot record a credential's use");
    }
}

/// 403 `forbidden`, audited.
async fn refuse(
    g: &RouteGuard,
    info: &RequestInfo,
    principal: &Principal,
    message: String,
    method: &Method,
) -> Response {
    let target = format!("{method} {}", g.pattern);
    g.auth
        .audit
        .record(
            Action::Forbidden,
            &principal.actor(),
            Some(&target),
            info,
            json!({"need": message, "grants": principal.grants()}),
        )
        .await;
    Denial::Forbidden(message).into_response()
}

/// 403 `csrf_failed`, audited.
async fn refuse_csrf(
    g: &RouteGuard,
    info: &RequestInfo,
    principal: Option<&Principal>,
    why: CsrfFailure,
    method: &Method,
) -> Response {
    let target = format!("{method} {}", g.pattern);
    let actor = principal.map_or_else(|| "anonymous".to_owned(), Principal::actor);
    g.auth
        .audit
        .record(
            Action::CsrfFailed,
            &actor,
            Some(&target),
            info,
            json!({"reason": why.to_string()}),
        )
        .await;
    Denial::Csrf(why).into_response()
}

/// Whether grants reach namespace `ns` at all (the namespace listing's filter).
pub fn sees(grants: &Grants, ns: &str) -> bool {
    grants.role_in(ns).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_per_method() {
        let needs = Needs::new()
            .get(Access::Namespace(Role::Viewer))
            .patch(Access::Namespace(Role::Editor));
        assert_eq!(
            needs.for_method(&Method::HEAD),
            Some(Access::Namespace(Role::Viewer))
        );
        assert_eq!(
            needs.for_method(&Method::PATCH),
            Some(Access::Namespace(Role::Editor))
        );
        assert_eq!(needs.for_method(&Method::DELETE), None);
        assert_eq!(
            Access::Namespace(Role::Editor).need(Some("demo")),
            Some(Need::InNamespace(Role::Editor, "demo".into()))
        );
        assert_eq!(Access::Namespace(Role::Editor).need(None), None);
        assert_eq!(
            Access::Global(Role::Admin).need(None),
            Some(Need::Global(Role::Admin))
        );
    }
}
