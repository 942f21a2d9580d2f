//! API tokens (global admins): `POST /api/v1/tokens` (the token is in that answer and nowhere
//! else, ever), `GET /api/v1/tokens` (never the token), `DELETE /api/v1/tokens/{id}`
//! (revoked from the next request on).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::session::confirm_password;
use super::AdminState;
use crate::auth::audit::Action;
use crate::auth::guard::{store_error, RequestInfo};
use crate::auth::secrets::{new_api_token, new_id};
use crate::auth::store::ApiToken;
use crate::auth::{Grant, Grants, Principal, Role};
use crate::http::error::JsonBody;
use crate::http::NoQuery;
use crate::http::{ApiError, ApiJson};

type ApiResult = Result<Response, ApiError>;

/// The longest `expires_in`: ten years.
pub(crate) const MAX_EXPIRES_IN_SECS: u64 = 10 * 366 * 24 * 3600;

fn timestamp(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn token_json(t: &ApiToken, names: &HashMap<String, String>) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "roles": t.grants,
        "created_by": t.created_by.as_ref().map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone())),
        "created_at": timestamp(t.created_at),
        "expires_at": t.expires_at.map(timestamp),
        "last_used_at": t.last_used_at.map(timestamp),
        "revoked_at": t.revoked_at.map(timestamp),
    })
}

/// Whether a token name is acceptable: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_token_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    pub role: String,
    /// The namespaces the role is for; absent: every namespace.
    pub namespaces: Option<Vec<String>>,
    /// Seconds until it expires; absent: never.
    pub expires_in: Option<u64>,
    /// The creator's own password (asked again of a signed-in user).
    pub password: Option<String>,
}

impl JsonBody for CreateToken {
    const SHAPE: &'static str = "the body must be a JSON object with \"name\" (a string) and \"role\" (viewer, editor or admin), and optionally \"namespaces\" (a list of namespace names; absent: every namespace), \"expires_in\" (seconds) and \"password\" (your own password, needed when signed in with a session)";
}

/// The scope a request asks for.
fn scope(role: &str, namespaces: Option<&[String]>) -> Result<Grants, ApiError> {
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_role", m);
    let role: Role = role
        .parse()
        .map_err(|e: crate::auth::role::GrantError| invalid(e.to_string()))?;
    match namespaces {
        None => Ok(Grants::new(vec![Grant::global(role)])),
        Some([]) => Err(invalid(
            "\"namespaces\" is empty: list at least one, or leave it out for every namespace"
                .into(),
        )),
        Some(list) => list
            .iter()
            .map(|ns| {
                format!("{role}:{ns}")
                    .parse::<Grant>()
                    .map_err(|e| invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Grants::new),
    }
}

/// `POST /api/v1/tokens` → 201 `{"id","token",…}`.
pub async fn create(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    info: RequestInfo,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult {
    let (record, token) = create_token(&state, &principal, &info, body).await?;
    let names = HashMap::from_iter(
        principal
            .session_user()
            .map(|(u, _)| (u.id.clone(), u.username.clone())),
    );
    let mut body = token_json(&record, &names);
    body["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Creates a token (name, scope, expiry; the creator's password again when signed in) and
/// audits it: `(the record, the token itself)` — the token is returned here and stored
/// nowhere (only its digest). What `POST /api/v1/tokens` and the web UI's `/tokens` form do.
pub(crate) async fn create_token(
    state: &AdminState,
    principal: &Principal,
    info: &RequestInfo,
    body: CreateToken,
) -> Result<(ApiToken, String), ApiError> {
    let auth = &state.auth;
    if !valid_token_name(&body.name) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
            "a token name is 1 to 64 of the characters A-Z a-z 0-9 . _ -",
        ));
    }
    let grants = scope(&body.role, body.namespaces.as_deref())?;
    let expires_at = match body.expires_in {
        None => None,
        Some(s) if (1..=MAX_EXPIRES_IN_SECS).contains(&s) => {
            Some(Utc::now() + chrono::Duration::seconds(s as i64))
        }
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_expiry",
                format!("\"expires_in\" must be 1 to {MAX_EXPIRES_IN_SECS} seconds"),
            ))
        }
    };
    confirm_password(auth, principal, body.password, info).await?;
    let (token, digest) = new_api_token();
    let record = ApiToken {
        id: new_id("tok_"),
        name: body.name,
        digest,
        grants,
        created_by: principal.user_id().map(str::to_owned),
        created_at: Utc::now(),
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    auth.store
        .create_token(record.clone())
        .await
        .map_err(store_error)?;
    auth.audit
        .record(
            Action::TokenCreated,
            &principal.actor(),
            Some(&record.id),
            info,
            json!({ "name": record.name, "roles": record.grants, "expires_at": record.expires_at.map(timestamp) }),
        )
        .await;
    Ok((record, token))
}

/// `GET /api/v1/tokens`: every token, newest first, without the token itself.
pub async fn list(State(state): State<Arc<AdminState>>, _: NoQuery) -> ApiResult {
    let store = &state.auth.store;
    let tokens = store.tokens().await.map_err(store_error)?;
    let names: HashMap<String, String> = store
        .users()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|u| (u.id, u.username))
        .collect();
    let tokens: Vec<Value> = tokens.iter().map(|t| token_json(t, &names)).collect();
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token.
pub async fn revoke(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    principal: Principal,
    info: RequestInfo,
) -> ApiResult {
    revoke_token(&state, &id, &principal, &info).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revokes token `id` from the next request on (again: nothing to do; unknown: 404), audited:
/// what `DELETE /api/v1/tokens/{id}` and the web UI's revoke form do.
pub(crate) async fn revoke_token(
    state: &AdminState,
    id: &str,
    principal: &Principal,
    info: &RequestInfo,
) -> Result<(), ApiError> {
    let auth = &state.auth;
    let revoked = auth
        .store
        .revoke_token(id, Utc::now())
        .await
        .map_err(store_error)?;
    if !revoked {
        let known = auth.store.token(id).await.map_err(store_error)?;
        return match known {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(format!("no token with id {id:?}"))),
        };
    }
    auth.audit
        .record(
            Action::TokenRevoked,
            &principal.actor(),
            Some(id),
            info,
            json!({}),
        )
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_scopes() {
        let s = |role: &str, ns: Option<&[&str]>| {
            let ns: Option<Vec<String>> = ns.map(|l| l.iter().map(|s| s.to_string()).collect());
            scope(role, ns.as_deref()).map(|g| g.iter().map(|g| g.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(s("editor", None).expect("ok"), vec!["editor"]);
        assert_eq!(
            s("viewer", Some(&["b", "a"])).expect("ok"),
            vec!["viewer:a", "viewer:b"]
        );
        assert!(s("owner", None).is_err());
        assert!(s("viewer", Some(&[])).is_err());
        assert!(s("viewer", Some(&["a b"])).is_err());
        assert!(valid_token_name("ci-deploy.1"));
        assert!(!valid_token_name("ci deploy"));
    }
}
