//! Single sign-on through the admin's routes, end to end against a real OpenID provider
//! (`oidc-provider` under node): `/auth/oidc/login` redirects with a sealed pending-login
//! cookie, the harness signs in at the provider over HTTP, `/auth/oidc/callback` gives a
//! session; the user is created at the first sign-in, keyed on (issuer, subject), and its roles
//! are re-derived at every sign-in. A wrong `state`, a replayed callback and a missing cookie are
//! refused. On the embedded store and on PostgreSQL.

use reqwest::Method;
use rtconfig::settings::OidcFlags;
use serde_json::json;
use url::Url;

use crate::auth_support::{answer, set_cookie, Backend, Browser, Target};
use crate::harness::oidc::{OidcProvider, ProviderConfig, TestUser};

const PUBLIC_URL: &str = "https://rtconfig.test";

const ROLE_MAP: &str = r#"
[groups]
"platform-admins" = ["admin"]
"payments-team" = ["editor:demo"]
readers = ["viewer"]
"#;

async fn sso(backend: Backend) {
    let redirect = Url::parse(&format!("{PUBLIC_URL}/auth/oidc/callback")).expect("url");
    let alice = TestUser::new("alice", json!(["payments-team", "strangers"]));
    let nobody = TestUser::new("nobody", json!(["strangers"]));
    let mut provider = OidcProvider::start(ProviderConfig::new(
        redirect,
        vec![alice.clone(), nobody.clone()],
    ));
    let files = tempfile::tempdir().expect("tempdir");
    let role_map = files.path().join("roles.toml");
    std::fs::write(&role_map, ROLE_MAP).expect("role map");
    let secret = files.path().join("secret");
    let config = provider.config().clone();
    std::fs::write(
        &secret,
        format!("{}\n", config.client_secret.clone().expect("secret")),
    )
    .expect("secret");
    let issuer = provider.issuer().to_string();
    let t = Target::start(backend, |s| {
        s.auth.public_url = Some(PUBLIC_URL.into());
        s.auth.oidc = Some(OidcFlags {
            issuer,
            client_id: config.client_id.clone(),
            client_secret_file: Some(secret),
            role_claim: "groups".into(),
            role_map,
        });
    })
    .await;

    // One sign-in through the admin: the redirect with a pending-login cookie, the provider's
    // sign-in, the callback.
    let begin = || async {
        let resp = answer(t.request(Method::GET, "/auth/oidc/login"))
            .await
            .expect_status(303);
        let location = Url::parse(resp.header("location").expect("location")).expect("url");
        let pending = resp
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("__Host-rtconfig-oidc="))
            .expect("pending-login cookie")
            .to_owned();
        assert!(
            pending.contains("SameSite=Lax") && pending.contains("HttpOnly"),
            "{pending}"
        );
        let cookie = pending.split(';').next().expect("pair").to_owned();
        (location, cookie)
    };
    let callback = |cookie: Option<String>, code: String, state: String| {
        let mut rb = t
            .request(Method::GET, "/auth/oidc/callback")
            .query(&[("code", code), ("state", state)]);
        if let Some(c) = cookie {
            rb = rb.header("cookie", c);
        }
        answer(rb)
    };
    let (location, cookie) = begin().await;
    let cb = provider
        .sign_in(&location, &alice)
        .await
        .expect("provider sign-in");
    let resp = callback(Some(cookie.clone()), cb.code.clone(), cb.state.clone()).await;
    assert_eq!(resp.status, 303, "{}", resp.text());
    assert_eq!(resp.header("location"), Some("/"));
    let (session, attrs) = set_cookie(&resp).expect("a session");
    assert!(attrs.contains("SameSite=Strict"), "{attrs}");
    let browser = Browser {
        cookie: session,
        csrf: String::new(),
    };
    let me = answer(t.as_browser(&browser, Method::GET, "/api/v1/session"))
        .await
        .expect_status(200)
        .json();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["roles"], json!(["editor:demo"]));
    let user = t
        .auth
        .store
        .user_by_name("alice")
        .await
        .expect("store")
        .expect("alice created");
    assert!(user.oidc.is_some() && user.password_hash.is_none());
    // The same callback again (a replayed code, the pending login used up) is refused.
    callback(Some(cookie), cb.code, cb.state)
        .await
        .expect_error(401, "sso_failed");

    // A wrong state, and no pending-login cookie, are refused.
    let (location, cookie) = begin().await;
    let cb = provider
        .sign_in(&location, &alice)
        .await
        .expect("provider sign-in");
    callback(
        Some(cookie.clone()),
        cb.code.clone(),
        "not-the-state".into(),
    )
    .await
    .expect_error(401, "sso_failed");
    let (location, _) = begin().await;
    let cb = provider
        .sign_in(&location, &alice)
        .await
        .expect("provider sign-in");
    callback(None, cb.code, cb.state)
        .await
        .expect_error(401, "sso_failed");

    // No mapped group: no account.
    let (location, cookie) = begin().await;
    let cb = provider
        .sign_in(&location, &nobody)
        .await
        .expect("provider sign-in");
    callback(Some(cookie), cb.code, cb.state)
        .await
        .expect_error(403, "forbidden");
    assert!(t
        .auth
        .store
        .user_by_name("nobody")
        .await
        .expect("store")
        .is_none());

    // Roles are re-derived at every sign-in: alice moves to the readers; her old session ends.
    let moved = TestUser::new("alice", json!(["readers"]));
    provider.restart_with(vec![moved.clone()]);
    let (location, cookie) = begin().await;
    let cb = provider
        .sign_in(&location, &moved)
        .await
        .expect("provider sign-in");
    let resp = callback(Some(cookie), cb.code, cb.state).await;
    assert_eq!(resp.status, 303, "{}", resp.text());
    let (session, _) = set_cookie(&resp).expect("a session");
    answer(t.as_browser(&browser, Method::GET, "/api/v1/session"))
        .await
        .expect_error(401, "unauthorized");
    let me = answer(t.as_browser(
        &Browser {
            cookie: session,
            csrf: String::new(),
        },
        Method::GET,
        "/api/v1/session",
    ))
    .await
    .expect_status(200)
    .json();
    assert_eq!(me["roles"], json!(["viewer"]));
    assert!(!t.audit("roles_changed").await.is_empty());
    let failures = t.audit("login_failed").await;
    assert!(failures.len() >= 4, "{failures:?}");
    // Without --oidc-issuer the routes are 404 (see the RBAC matrix); a local password never
    // signs an SSO user in.
    answer(
        t.request(Method::POST, "/api/v1/session")
            .json(&json!({"username": "alice", "password": "anything at all, really"})),
    )
    .await
    .expect_error(401, "invalid_credentials");
}

#[tokio::test]
async fn sso_sign_in_through_the_admin_embedded() {
    sso(Backend::Embedded).await;
}

#[tokio::test]
async fn sso_sign_in_through_the_admin_postgres() {
    sso(Backend::Postgres).await;
}
