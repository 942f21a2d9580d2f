//! `/users` and `/users/{name}` (global admins): the users with their roles per namespace,
//! MFA, disabled, last sign-in and SSO link; the create form; one user's page with its roles
//! per namespace, disable/enable, unlock, reset MFA and a new password. Every write goes
//! through `admin::users` (`create_user`, `update_user`, `set_password`): the same checks,
//! audit and session rules as `POST /api/v1/users` and `PATCH /api/v1/users/{name}`.
//! Errors show next to their field; a success redirects (PRG) with a notice.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::admin::session::rotated;
use crate::admin::users::{create_user, find, set_password, update_user, CreateUser, PatchUser};
use crate::admin::AdminState;
use crate::auth::guard::{store_error, RequestInfo};
use crate::auth::store::{AuditQuery, User};
use crate::auth::throttle::{decide, ThrottlePolicy};
use crate::auth::{Grants, Principal};
use crate::http::ApiError;
use crate::ui::form::Form;
use crate::ui::layout::{Layout, Section};
use crate::ui::time::When;
use crate::ui::{render, see_other};

/// How many recent sign-ins the list reads from the audit log for "last sign-in".
const SIGN_INS_READ: usize = 1000;

/// One user in the list.
pub struct UserRow {
    pub name: String,
    /// `editor:demo`, `viewer` … (empty: no role).
    pub roles: Vec<String>,
    pub mfa: bool,
    pub disabled: bool,
    pub locked: bool,
    pub sso: bool,
    pub last_sign_in: Option<When>,
    pub created: When,
}

/// One row of a roles form: the global role or one namespace's, and the role now chosen.
pub struct RoleChoice {
    /// `""` for the global row, else the namespace.
    pub namespace: String,
    /// The form field: `role.global` or `role.ns.NAMESPACE`.
    pub field: String,
    /// `""` (none), `viewer`, `editor`, `admin`.
    pub selected: String,
}

/// An error shown next to its field (`field` is the input's id; `""`: the whole form).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Template)]
#[template(path = "users.html")]
pub struct UsersPage {
    pub layout: Layout,
    pub rows: Vec<UserRow>,
    pub notice: String,
    pub error: FieldError,
    pub username: String,
    pub roles: Vec<RoleChoice>,
    pub role_names: [&'static str; 3],
}

#[derive(Template)]
#[template(path = "user.html")]
pub struct UserPage {
    pub layout: Layout,
    pub row: UserRow,
    pub failed_logins: u32,
    pub is_self: bool,
    pub notice: String,
    pub error: FieldError,
    /// Which form the error belongs to (`roles`, `status`, `mfa`, `password`).
    pub error_form: String,
    pub roles: Vec<RoleChoice>,
    pub role_names: [&'static str; 3],
}

/// `?done=` after a redirect: which notice to show (a fixed set, never reflected text).
#[derive(Deserialize, Default)]
pub struct Done {
    #[serde(default)]
    pub done: String,
}

/// The notice for a `?done=` code (unknown codes show nothing).
pub fn notice(done: &str) -> &'static str {
    match done {
        "created" => "User created.",
        "roles" => "Roles saved. The user's sessions ended; they sign in again with the new roles.",
        "roles_same" => "Nothing to save: the roles are unchanged.",
        "disabled" => "User disabled: their sessions ended and they cannot sign in.",
        "enabled" => "User enabled: they can sign in again.",
        "unlocked" => "Sign-in lock cleared.",
        "mfa" => "Second factor reset: they enrol a new one at their next sign-in.",
        "password" => "Password set. The user's sessions ended.",
        _ => "",
    }
}

/// Which input an API error belongs to (its `code`), so the page shows it there.
pub fn field_of(code: &str) -> &'static str {
    match code {
        "invalid_username" | "user_exists" => "username",
        "weak_password" | "sso_user" => "password",
        "invalid_role" => "roles",
        "invalid_credentials" => "admin-password",
        _ => "",
    }
}

fn field_error(e: &ApiError) -> FieldError {
    FieldError {
        field: field_of(e.code),
        message: e.message.clone(),
    }
}

/// The role strings (`ROLE`, `ROLE:NS`) the roles form asks for: the global select and one
/// per namespace (blank = none). Pure.
pub fn roles_from_form(form: &Form) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = form.get("role.global").filter(|r| !r.is_empty()) {
        out.push(r.to_owned());
    }
    for (ns, r) in form.with_prefix("role.ns.") {
        if !r.is_empty() {
            out.push(format!("{r}:{ns}"));
        }
    }
    out
}

/// The roles form's rows for `grants`: global first, then every namespace of the schemas and
/// any other namespace the user has a grant on (so saving never drops it).
pub fn role_choices(grants: &Grants, namespaces: &[String]) -> Vec<RoleChoice> {
    let mut all: Vec<String> = namespaces.to_vec();
    for g in grants.iter() {
        if let Some(ns) = &g.namespace {
            if !all.contains(ns) {
                all.push(ns.clone());
            }
        }
    }
    let mut out = vec![RoleChoice {
        namespace: String::new(),
        field: "role.global".into(),
        selected: grants.global().map(|r| r.to_string()).unwrap_or_default(),
    }];
    for ns in all {
        let selected = grants
            .iter()
            .filter(|g| g.namespace.as_deref() == Some(ns.as_str()))
            .map(|g| g.role)
            .max()
            .map(|r| r.to_string())
            .unwrap_or_default();
        out.push(RoleChoice {
            field: format!("role.ns.{ns}"),
            namespace: ns,
            selected,
        });
    }
    out
}

/// The form's choices as they were posted (to show them again after an error).
fn posted_choices(form: &Form, namespaces: &[String]) -> Vec<RoleChoice> {
    let roles = roles_from_form(form);
    let grants = Grants::new(roles.iter().filter_map(|r| r.parse().ok()).collect());
    role_choices(&grants, namespaces)
}

fn namespaces(state: &AdminState) -> Vec<String> {
    state
        .write
        .schemas
        .iter()
        .map(|s| s.namespace.clone())
        .collect()
}

/// The roles a select offers, weakest first.
pub const ROLE_NAMES: [&str; 3] = ["viewer", "editor", "admin"];

fn row(u: &User, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> UserRow {
    UserRow {
        name: u.username.clone(),
        roles: u.grants.iter().map(|g| g.to_string()).collect(),
        mfa: u.totp.as_ref().is_some_and(|t| t.confirmed),
        disabled: u.disabled,
        locked: !decide(&u.failures, now, &ThrottlePolicy::PER_ACCOUNT).is_allowed(),
        sso: u.oidc.is_some(),
        last_sign_in: last.map(|at| When::new(at, now)),
        created: When::new(u.created_at, now),
    }
}

/// The newest successful sign-in per user name, from the audit log (the last
/// [`SIGN_INS_READ`] of them, or of one user).
async fn last_sign_ins(
    state: &AdminState,
    actor: Option<&str>,
) -> Result<HashMap<String, DateTime<Utc>>, ApiError> {
    let page = state
        .auth
        .store
        .audit(&AuditQuery {
            action: Some("login_ok".into()),
            actor: actor.map(str::to_owned),
            limit: if actor.is_some() { 1 } else { SIGN_INS_READ },
            ..AuditQuery::default()
        })
        .await
        .map_err(store_error)?;
    let mut out = HashMap::new();
    for e in page.events {
        out.entry(e.event.actor).or_insert(e.event.at);
    }
    Ok(out)
}

async fn list_page(
    state: &AdminState,
    principal: &Principal,
    notice_text: &str,
) -> Result<UsersPage, ApiError> {
    let users = state.auth.store.users().await.map_err(store_error)?;
    let last = last_sign_ins(state, None).await?;
    let now = Utc::now();
    let rows = users
        .iter()
        .map(|u| row(u, last.get(&u.username).copied(), now))
        .collect();
    Ok(UsersPage {
        layout: Layout::new(principal, "Users", Section::Users, None),
        rows,
        notice: notice_text.to_owned(),
        error: FieldError::default(),
        username: String::new(),
        roles: role_choices(&Grants::default(), &namespaces(state)),
        role_names: ROLE_NAMES,
    })
}

/// `GET /users`
pub async fn list(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Query(done): Query<Done>,
) -> Result<Response, ApiError> {
    let page = list_page(&state, &principal, notice(&done.done)).await?;
    Ok(render(StatusCode::OK, &page))
}

/// `POST /users` (`username`, `password`, `role.global`, `role.ns.NS`…): creates the user
/// through `admin::users::create_user`; its error shows next to the field.
pub async fn create(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    info: RequestInfo,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = Form::parse(&body);
    let username = form.get("username").unwrap_or_default().trim().to_owned();
    let request = CreateUser {
        username: username.clone(),
        password: form.get("password").unwrap_or_default().to_owned(),
        roles: roles_from_form(&form),
    };
    match create_user(&state, &principal, &info, request).await {
        Ok(user) => Ok(see_other(&format!(
            "/users/{}?done=created",
            encode(&user.username)
        ))),
        Err(e) if e.status.is_client_error() => {
            let mut page = list_page(&state, &principal, "").await?;
            page.error = field_error(&e);
            page.username = username;
            page.roles = posted_choices(&form, &namespaces(&state));
            Ok(render(e.status, &page))
        }
        Err(e) => Err(e),
    }
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn user_page(
    state: &AdminState,
    principal: &Principal,
    name: &str,
) -> Result<UserPage, ApiError> {
    let user = find(&state.auth, name).await?;
    let last = last_sign_ins(state, Some(&user.username)).await?;
    let now = Utc::now();
    Ok(UserPage {
        layout: Layout::new(
            principal,
            &format!("{} · Users", user.username),
            Section::Users,
            None,
        ),
        row: row(&user, last.get(&user.username).copied(), now),
        failed_logins: user.failures.consecutive,
        is_self: principal.user_id() == Some(user.id.as_str()),
        notice: String::new(),
        error: FieldError::default(),
        error_form: String::new(),
        roles: role_choices(&user.grants, &namespaces(state)),
        role_names: ROLE_NAMES,
    })
}

/// `GET /users/{name}`
pub async fn page(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    principal: Principal,
    Query(done): Query<Done>,
) -> Result<Response, ApiError> {
    let mut page = user_page(&state, &principal, &name).await?;
    page.notice = notice(&done.done).to_owned();
    Ok(render(StatusCode::OK, &page))
}

/// What one of the user page's forms asks for (its `action` field). Pure.
pub fn request_of(form: &Form) -> Option<(&'static str, PatchUser)> {
    let password = form
        .get("admin_password")
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    Some(match form.get("action")? {
        "roles" => (
            "roles",
            PatchUser {
                roles: Some(roles_from_form(form)),
                password,
                ..PatchUser::default()
            },
        ),
        "disable" => (
            "disabled",
            PatchUser {
                disabled: Some(true),
                ..PatchUser::default()
            },
        ),
        "enable" => (
            "enabled",
            PatchUser {
                disabled: Some(false),
                ..PatchUser::default()
            },
        ),
        "unlock" => (
            "unlocked",
            PatchUser {
                unlock: true,
                ..PatchUser::default()
            },
        ),
        "reset_mfa" => (
            "mfa",
            PatchUser {
                reset_mfa: true,
                password,
                ..PatchUser::default()
            },
        ),
        _ => return None,
    })
}

/// `POST /users/{name}` (`action` = `roles`, `disable`, `enable`, `unlock`, `reset_mfa` or
/// `password`): one change through `admin::users`; then back to the user's page with a
/// notice, or the page again with the error next to the field.
pub async fn update(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    principal: Principal,
    info: RequestInfo,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = Form::parse(&body);
    let action = form.get("action").unwrap_or_default().to_owned();
    let before = find(&state.auth, &name).await?;
    let result = if action == "password" {
        let password = form.get("password").unwrap_or_default();
        set_password(&state, &name, &principal, &info, password)
            .await
            .map(|u| ("password", u))
    } else {
        let Some((done, request)) = request_of(&form) else {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_action",
                "unknown form action: use the buttons of the user's page",
            ));
        };
        let unchanged = action == "roles" && Grants::new(parsed(&request)) == before.grants;
        update_user(&state, &name, &principal, &info, request)
            .await
            .map(|u| (if unchanged { "roles_same" } else { done }, u))
    };
    match result {
        Ok((done, updated)) => {
            let mut resp = see_other(&format!(
                "/users/{}?done={done}",
                encode(&updated.user.username)
            ));
            if updated.own_sessions_ended {
                // The acting admin's own sessions ended with the change: the fresh session's
                // cookie, exactly as the JSON API sets it.
                let api = rotated(&state.auth, &updated.user, &info, serde_json::json!({})).await?;
                for cookie in api.headers().get_all(header::SET_COOKIE) {
                    resp.headers_mut()
                        .append(header::SET_COOKIE, cookie.clone());
                }
            }
            Ok(resp)
        }
        Err(e) if e.status.is_client_error() && e.status != StatusCode::NOT_FOUND => {
            let mut page = user_page(&state, &principal, &name).await?;
            page.error = field_error(&e);
            page.error_form = if action == "disable" || action == "enable" || action == "unlock" {
                "status".into()
            } else if action == "reset_mfa" {
                "mfa".into()
            } else {
                action.clone()
            };
            if action == "roles" {
                page.roles = posted_choices(&form, &namespaces(&state));
            }
            Ok(render(e.status, &page))
        }
        Err(e) => Err(e),
    }
}

fn parsed(request: &PatchUser) -> Vec<crate::auth::Grant> {
    request
        .roles
        .iter()
        .flatten()
        .filter_map(|r| r.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn roles_from_the_form() {
        let f = Form::parse(b"role.global=viewer&role.ns.demo=editor&role.ns.shop=&x=1");
        assert_eq!(roles_from_form(&f), vec!["viewer", "editor:demo"]);
        let none = Form::parse(b"role.global=&role.ns.demo=");
        assert!(roles_from_form(&none).is_empty());
    }

    #[test]
    fn role_choices_keep_unknown_namespaces() {
        let grants = Grants::new(vec![
            "editor:demo".parse().expect("grant"),
            "viewer:gone".parse().expect("grant"),
            "viewer".parse().expect("grant"),
        ]);
        let rows = role_choices(&grants, &["demo".into(), "shop".into()]);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.field.as_str(), r.selected.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("role.global", "viewer"),
                ("role.ns.demo", "editor"),
                ("role.ns.shop", ""),
                ("role.ns.gone", "viewer"),
            ]
        );
    }

    #[test]
    fn errors_go_next_to_their_field() {
        for (code, field) in [
            ("invalid_username", "username"),
            ("user_exists", "username"),
            ("weak_password", "password"),
            ("invalid_role", "roles"),
            ("invalid_credentials", "admin-password"),
            ("cannot_disable_self", ""),
        ] {
            assert_eq!(field_of(code), field, "{code}");
        }
    }

    #[test]
    fn role_names_are_the_roles() {
        let parsed: Vec<Role> = ROLE_NAMES
            .iter()
            .map(|r| r.parse().expect("role"))
            .collect();
        assert_eq!(parsed, Role::ALL);
    }

    #[test]
    fn form_actions() {
        let f = Form::parse(b"action=roles&role.global=admin&admin_password=pw");
        let (done, r) = request_of(&f).expect("roles");
        assert_eq!(done, "roles");
        assert_eq!(r.roles, Some(vec!["admin".to_owned()]));
        assert_eq!(r.password.as_deref(), Some("pw"));
        let (_, r) = request_of(&Form::parse(b"action=disable")).expect("disable");
        assert_eq!(r.disabled, Some(true));
        let (_, r) = request_of(&Form::parse(b"action=reset_mfa")).expect("mfa");
        assert!(r.reset_mfa && r.password.is_none());
        assert!(request_of(&Form::parse(b"action=drop_table")).is_none());
        assert_eq!(notice("created"), "User created.");
        assert_eq!(notice("<script>"), "");
    }
}
