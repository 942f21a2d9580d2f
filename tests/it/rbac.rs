//! The RBAC matrix: every route × method of the admin's route table × {anonymous, viewer,
//! editor of another namespace, editor, admin, admin token, expired token, revoked token} →
//! the expected answer, on the embedded store and on PostgreSQL.
//!
//! [`EXPECTED`] is this test's own statement of who may call what. It must list exactly the
//! routes of `rtconfig::admin::route_table()` (the table the guard enforces): a new route
//! without an entry here, or a declaration that differs from it, fails the test.

use std::collections::BTreeMap;

use reqwest::Method;
use rtconfig::auth::guard::Access;
use rtconfig::auth::Role;
use serde_json::json;

use crate::auth_support::{answer, Backend, Browser, Target};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Anyone, signed in or not.
    Public,
    /// Any valid credential.
    SignedIn,
    /// A user's session, not a token.
    Session,
    /// A role somewhere (the namespace listing).
    ViewerSomewhere,
    /// At least viewer / editor of the path's namespace (`demo`).
    Viewer,
    Editor,
    /// A global admin.
    Admin,
}

use Rule::*;

/// Who may call what (method, pattern, rule).
const EXPECTED: &[(&str, &str, Rule)] = &[
    ("GET", "/api/v1/namespaces", ViewerSomewhere),
    ("GET", "/api/v1/namespaces/{ns}/configs", Viewer),
    ("PATCH", "/api/v1/namespaces/{ns}/configs", Editor),
    ("GET", "/api/v1/namespaces/{ns}/configs/{key}", Viewer),
    ("PUT", "/api/v1/namespaces/{ns}/configs/{key}", Editor),
    ("DELETE", "/api/v1/namespaces/{ns}/configs/{key}", Editor),
    ("GET", "/api/v1/namespaces/{ns}/history", Viewer),
    (
        "GET",
        "/api/v1/namespaces/{ns}/changesets/{version}",
        Viewer,
    ),
    ("GET", "/api/v1/namespaces/{ns}/compare", Viewer),
    ("POST", "/api/v1/namespaces/{ns}/rollback", Editor),
    ("GET", "/api/v1/namespaces/{ns}/sidecars", Viewer),
    ("GET", "/api/v1/namespaces/{ns}/constance", Viewer),
    ("GET", "/api/v1/namespaces/{ns}/events", Viewer),
    ("GET", "/api/v1/namespaces/{ns}/export", Viewer),
    ("POST", "/api/v1/namespaces/{ns}/import", Editor),
    ("POST", "/api/v1/session", Public),
    ("GET", "/api/v1/session", SignedIn),
    ("DELETE", "/api/v1/session", Session),
    ("POST", "/api/v1/session/totp", Session),
    ("POST", "/api/v1/session/totp/confirm", Session),
    ("POST", "/api/v1/session/password", Session),
    ("GET", "/api/v1/sessions", Session),
    ("DELETE", "/api/v1/sessions", Session),
    ("GET", "/api/v1/users", Admin),
    ("POST", "/api/v1/users", Admin),
    ("PATCH", "/api/v1/users/{name}", Admin),
    ("POST", "/api/v1/users/{name}/password", Admin),
    ("GET", "/api/v1/tokens", Admin),
    ("POST", "/api/v1/tokens", Admin),
    ("DELETE", "/api/v1/tokens/{id}", Admin),
    ("GET", "/api/v1/audit", Admin),
    ("GET", "/auth/oidc/login", Public),
    ("GET", "/auth/oidc/callback", Public),
    ("GET", "/api/v1/openapi.yaml", Public),
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/metrics", Public),
    // The web UI's pages (`rtconfig::ui::pages`): same guard; see [`page_answer`].
    ("GET", "/", Public),
    ("GET", "/signin", Public),
    ("POST", "/signin", Public),
    ("GET", "/signin/mfa", Session),
    ("POST", "/signin/mfa", Session),
    ("POST", "/signout", Session),
    ("GET", "/namespaces", ViewerSomewhere),
    ("GET", "/namespaces/{ns}", Viewer),
    ("POST", "/namespaces/{ns}/review", Editor),
    ("POST", "/namespaces/{ns}/commit", Editor),
    ("GET", "/namespaces/{ns}/keys/{key}", Viewer),
    ("GET", "/namespaces/{ns}/history", Viewer),
    ("GET", "/namespaces/{ns}/changesets/{version}", Viewer),
    ("GET", "/namespaces/{ns}/compare", Viewer),
    ("GET", "/namespaces/{ns}/rollback", Editor),
    ("POST", "/namespaces/{ns}/rollback", Editor),
    ("GET", "/fleet", ViewerSomewhere),
    ("GET", "/namespaces/{ns}/fleet", Viewer),
    ("GET", "/users", Admin),
    ("POST", "/users", Admin),
    ("GET", "/users/{name}", Admin),
    ("POST", "/users/{name}", Admin),
    ("GET", "/tokens", Admin),
    ("POST", "/tokens", Admin),
    ("GET", "/tokens/{id}/revoke", Admin),
    ("POST", "/tokens/{id}/revoke", Admin),
    ("GET", "/namespaces/{ns}/export", Viewer),
    ("GET", "/namespaces/{ns}/import", Editor),
    ("POST", "/namespaces/{ns}/import", Editor),
    ("GET", "/audit", Admin),
    ("GET", "/assets/{file}", Public),
];

/// How the route table's declaration reads as a [`Rule`] (namespaced roles on `demo`).
fn rule_of(access: Access) -> Option<Rule> {
    Some(match access {
        Access::Public => Public,
        Access::SignedIn => SignedIn,
        Access::Session | Access::Enrol => Session,
        Access::Somewhere(Role::Viewer) => ViewerSomewhere,
        Access::Namespace(Role::Viewer) => Viewer,
        Access::Namespace(Role::Editor) => Editor,
        Access::Global(Role::Admin) => Admin,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Viewer,
    OtherEditor,
    Editor,
    Admin,
    AdminToken,
    ExpiredToken,
    RevokedToken,
}

const EVERYONE: [Who; 8] = [
    Who::Anonymous,
    Who::Viewer,
    Who::OtherEditor,
    Who::Editor,
    Who::Admin,
    Who::AdminToken,
    Who::ExpiredToken,
    Who::RevokedToken,
];

/// The expected answer: `Ok(())` (anything but 401/403), or the status and error code.
fn expected(rule: Rule, who: Who) -> Result<(), (u16, &'static str)> {
    const UNAUTHORIZED: Result<(), (u16, &str)> = Err((401, "unauthorized"));
    const FORBIDDEN: Result<(), (u16, &str)> = Err((403, "forbidden"));
    if rule == Public {
        return Ok(());
    }
    match who {
        Who::Anonymous | Who::RevokedToken => return UNAUTHORIZED,
        Who::ExpiredToken => return Err((401, "token_expired")),
        _ => {}
    }
    let allowed = match rule {
        Public | SignedIn | ViewerSomewhere => true,
        Session => who != Who::AdminToken,
        Viewer => matches!(
            who,
            Who::Viewer | Who::Editor | Who::Admin | Who::AdminToken
        ),
        Editor => matches!(who, Who::Editor | Who::Admin | Who::AdminToken),
        Admin => matches!(who, Who::Admin | Who::AdminToken),
    };
    if allowed {
        Ok(())
    } else {
        FORBIDDEN
    }
}

/// What a web UI page answers instead of the API's JSON: a denial that would be a 401 is a
/// 303 to the sign-in page; a 403 is an HTML error page with status 403; a page the principal
/// may open is neither (and is `no-store` when authenticated). `None` when the answer fits.
fn page_answer(
    want: Result<(), (u16, &'static str)>,
    resp: &crate::support::Resp,
) -> Option<String> {
    let location = resp.header("location").unwrap_or_default();
    match want {
        Err((401, _)) if resp.status == 303 && location.starts_with("/signin") => None,
        Err((401, _)) => Some(format!(
            "expected 303 to /signin, got {} location {location:?}",
            resp.status
        )),
        Err((403, _)) if resp.status == 403 && resp.text().contains("<!doctype html>") => None,
        Err((status, _)) => Some(format!(
            "expected an HTML {status} page, got {} {}",
            resp.status,
            resp.text()
        )),
        Ok(()) if matches!(resp.status, 401 | 403) => Some(format!(
            "expected to pass the guard, got {} {}",
            resp.status,
            resp.text()
        )),
        Ok(()) => None,
    }
}

/// A concrete path for a pattern.
fn path_of(pattern: &str) -> String {
    let samples = [
        ("{ns}", "demo"),
        ("{key}", "SITE_NAME"),
        ("{version}", "1"),
        ("{name}", "nobody"),
        ("{id}", "tok_none"),
        ("{file}", "app.css"),
    ];
    let mut path = pattern.to_owned();
    for (param, value) in samples {
        path = path.replace(param, value);
    }
    assert!(
        !path.contains('{'),
        "{pattern}: add a sample value for its path parameter to rbac::path_of"
    );
    path
}

/// The route table and [`EXPECTED`] say the same.
fn checked_table() -> Vec<(Method, &'static str, Rule)> {
    let declared: BTreeMap<(String, &str), Access> = rtconfig::admin::route_table()
        .into_iter()
        .map(|(pattern, method, access)| ((method.to_string(), pattern), access))
        .collect();
    let expected: BTreeMap<(String, &str), Rule> = EXPECTED
        .iter()
        .map(|(m, p, r)| ((m.to_string(), *p), *r))
        .collect();
    let mut problems = Vec::new();
    for (key, access) in &declared {
        match (expected.get(key), rule_of(*access)) {
            (None, _) => problems.push(format!("{key:?} ({access:?}) has no entry in EXPECTED")),
            (Some(want), got) if got != Some(*want) => problems.push(format!(
                "{key:?} is declared {access:?} but EXPECTED says {want:?}"
            )),
            _ => {}
        }
    }
    for key in expected.keys() {
        if !declared.contains_key(key) {
            problems.push(format!("{key:?} is in EXPECTED but not a route"));
        }
    }
    assert!(
        problems.is_empty(),
        "route table vs EXPECTED:\n{}",
        problems.join("\n")
    );
    EXPECTED
        .iter()
        .map(|(m, p, r)| (m.parse().expect("method"), *p, *r))
        .collect()
}

struct Principals {
    viewer: rtconfig::auth::store::User,
    other_editor: rtconfig::auth::store::User,
    editor: rtconfig::auth::store::User,
    admin: rtconfig::auth::store::User,
    admin_token: String,
    expired_token: String,
    revoked_token: String,
}

async fn principals(t: &Target) -> Principals {
    let admin = t.user("root", &["admin"], None).await;
    let (_, admin_token) = t.token("admin-ci", &["admin"], Some(&admin), None).await;
    let (_, expired_token) = t
        .token("old", &["admin"], None, Some(-chrono::Duration::hours(1)))
        .await;
    let (revoked_id, revoked_token) = t.token("gone", &["admin"], None, None).await;
    assert!(t
        .auth
        .store
        .revoke_token(&revoked_id, chrono::Utc::now())
        .await
        .expect("revoke"));
    Principals {
        viewer: t.user("vera", &["viewer:demo"], None).await,
        other_editor: t.user("otto", &["editor:other"], None).await,
        editor: t.user("eddie", &["editor:demo"], None).await,
        admin,
        admin_token,
        expired_token,
        revoked_token,
    }
}

async fn matrix(backend: Backend) {
    let table = checked_table();
    let t = Target::start(backend, |_| {}).await;
    let p = principals(&t).await;
    let mut failures = Vec::new();
    let mut cells = 0;
    for (method, pattern, rule) in &table {
        let path = path_of(pattern);
        for who in EVERYONE {
            // A fresh session for every cell: some cells sign out or end sessions.
            let browser: Option<Browser> = match who {
                Who::Viewer => Some(t.session(&p.viewer).await),
                Who::OtherEditor => Some(t.session(&p.other_editor).await),
                Who::Editor => Some(t.session(&p.editor).await),
                Who::Admin => Some(t.session(&p.admin).await),
                _ => None,
            };
            let mut rb = match (&browser, who) {
                (Some(b), _) => t.as_browser(b, method.clone(), &path),
                (None, Who::AdminToken) => t.with_token(&p.admin_token, method.clone(), &path),
                (None, Who::ExpiredToken) => t.with_token(&p.expired_token, method.clone(), &path),
                (None, Who::RevokedToken) => t.with_token(&p.revoked_token, method.clone(), &path),
                (None, _) => t.request(method.clone(), &path),
            };
            if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                rb = rb.json(&json!({}));
            }
            let resp = answer(rb).await;
            cells += 1;
            let code = || {
                serde_json::from_slice::<serde_json::Value>(&resp.body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            let got_denied = matches!(resp.status, 401 | 403);
            if rtconfig::ui::is_page(pattern) {
                if let Some(problem) = page_answer(expected(*rule, who), &resp) {
                    failures.push(format!("page {method} {pattern} as {who:?}: {problem}"));
                }
                continue;
            }
            match expected(*rule, who) {
                Ok(()) if got_denied => failures.push(format!(
                    "{method} {pattern} as {who:?}: expected to pass the guard, got {} {}",
                    resp.status,
                    resp.text()
                )),
                Err((status, want)) if resp.status != status || code() != want => {
                    failures.push(format!(
                        "{method} {pattern} as {who:?}: expected {status} {want}, got {} {}",
                        resp.status,
                        resp.text()
                    ))
                }
                Err((403, _)) => {
                    // The message names what is needed.
                    let body: serde_json::Value = resp.json();
                    let message = body["error"]["message"].as_str().unwrap_or_default();
                    if !message.starts_with("needs ") {
                        failures.push(format!(
                            "{method} {pattern} as {who:?}: 403 message {message:?}"
                        ));
                    }
                }
                Err((401, _)) if resp.header("www-authenticate").is_none() => {
                    failures.push(format!(
                        "{method} {pattern} as {who:?}: 401 without WWW-Authenticate"
                    ));
                }
                _ => {}
            }
            if *rule != Public && !got_denied && resp.header("cache-control") != Some("no-store") {
                failures.push(format!(
                    "{method} {pattern} as {who:?}: authenticated answer without Cache-Control: no-store"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{:?}: {} of {cells} cells wrong:\n{}",
        t.backend,
        failures.len(),
        failures.join("\n")
    );
    // Every refusal of a signed-in principal was audited.
    let forbidden = t.audit("forbidden").await;
    let denied_cells = table
        .iter()
        .flat_map(|(_, _, rule)| EVERYONE.iter().map(move |who| expected(*rule, *who)))
        .filter(|e| matches!(e, Err((403, _))))
        .count();
    assert_eq!(forbidden.len(), denied_cells, "one forbidden event per 403");
    assert!(forbidden.iter().all(|e| e.event.target.is_some()));
    t.stop().await;
}

#[tokio::test]
async fn rbac_matrix_on_the_embedded_store() {
    matrix(Backend::Embedded).await;
}

#[tokio::test]
async fn rbac_matrix_on_postgres() {
    matrix(Backend::Postgres).await;
}

#[test]
fn the_matrix_covers_the_route_table() {
    let table = checked_table();
    assert!(table.len() >= 30, "{}", table.len());
    for (_, pattern, _) in &table {
        path_of(pattern);
    }
}

/// docs/openapi.yaml documents every route and method of the route table.
#[test]
fn the_openapi_document_lists_every_route() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml"))
        .expect("docs/openapi.yaml");
    let lines: Vec<&str> = doc.lines().collect();
    let mut missing = Vec::new();
    for (pattern, method, _) in rtconfig::admin::route_table() {
        // HTML pages are not API: README's "Web UI" section documents them.
        if rtconfig::ui::is_page(pattern) {
            continue;
        }
        let head = format!("  {pattern}:");
        let Some(start) = lines.iter().position(|l| *l == head) else {
            missing.push(format!("{method} {pattern} (no path)"));
            continue;
        };
        let op = format!("    {}:", method.as_str().to_ascii_lowercase());
        let found = lines[start + 1..]
            .iter()
            .take_while(|l| !(l.starts_with("  /") || (!l.is_empty() && !l.starts_with(' '))))
            .any(|l| *l == op);
        if !found {
            missing.push(format!("{method} {pattern}"));
        }
    }
    assert!(missing.is_empty(), "not in docs/openapi.yaml: {missing:?}");
}
