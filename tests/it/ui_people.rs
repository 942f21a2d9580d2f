//! The web UI's users and API tokens pages over plain HTTP, forms driven as a browser
//! submits them (`support::hidden_inputs`): create a user (the password policy's error next to
//! the field), grant a role (the admin's password asked again), disable — the disabled user
//! cannot sign in —, one cannot disable oneself; a token shown once works as a Bearer on the
//! API, never appears in a later page, and once revoked is refused; viewers and editors get a
//! 403 page and no nav link; a forged post (no or a wrong CSRF token) changes nothing.

use reqwest::Method;
use serde_json::json;

use crate::auth_support::{answer, browser_of, Backend, Browser, Target};
use crate::support::{hidden_inputs, unescape, Resp};

const PASSWORD: &str = "correct horse battery staple";
const BOB_PASSWORD: &str = "a long enough passphrase for bob";

async fn hash(password: &str) -> String {
    rtconfig::auth::password::Hasher::default()
        .hash(password)
        .await
        .expect("hash")
}

async fn sign_in(t: &Target, username: &str, password: &str) -> Resp {
    answer(
        t.request(Method::POST, "/api/v1/session")
            .json(&json!({"username": username, "password": password})),
    )
    .await
}

async fn get(t: &Target, b: &Browser, path: &str) -> Resp {
    answer(t.as_browser(b, Method::GET, path)).await
}

/// A form post as a browser on the page sends it: cookie, same `Origin`, the page's hidden
/// fields (the CSRF token among them) and `fields`.
async fn post(t: &Target, b: &Browser, path: &str, fields: &[(&str, &str)]) -> Resp {
    let mut body: Vec<(String, String)> = vec![("csrf_token".into(), b.csrf.clone())];
    body.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    answer(
        t.request(Method::POST, path)
            .header("cookie", format!("__Host-rtconfig={}", b.cookie))
            .header("origin", t.origin())
            .form(&body),
    )
    .await
}

/// The `value` of the input with id `id`.
fn input_value(html: &str, id: &str) -> Option<String> {
    let rest = html.split(&format!("id=\"{id}\"")).nth(1)?;
    let tag = rest.split('>').next()?;
    Some(unescape(tag.split("value=\"").nth(1)?.split('"').next()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_people_users_pages_create_grant_disable() {
    let t = Target::start(Backend::Embedded, |_| {}).await;
    t.user("root", &["admin"], Some(hash(PASSWORD).await)).await;
    let root = browser_of(&sign_in(&t, "root", PASSWORD).await);

    let list = get(&t, &root, "/users").await;
    assert_eq!(list.status, 200, "{}", list.text());
    let html = list.text();
    assert!(html.contains("<title>Users · rtconfig</title>"), "{html}");
    assert!(html.contains("data-user=\"root\""), "root is listed");
    assert!(
        html.contains("href=\"/users\" aria-current=\"page\""),
        "the nav marks Users"
    );
    let csrf = hidden_inputs(&html)
        .into_iter()
        .find(|(n, _)| n == "csrf_token")
        .expect("the form's csrf_token")
        .1;
    assert_eq!(csrf, root.csrf);

    // The password policy's error, next to the password field; nothing created.
    let weak = post(
        &t,
        &root,
        "/users",
        &[
            ("username", "bob"),
            ("password", "bob"),
            ("role.ns.demo", "viewer"),
        ],
    )
    .await;
    assert_eq!(weak.status, 422);
    let html = weak.text();
    assert!(
        html.contains("id=\"password-error\" role=\"alert\""),
        "{html}"
    );
    assert!(html.contains("aria-describedby=\"password-hint password-error\""));
    assert!(html.contains("value=\"bob\""), "the name is kept");
    assert!(t
        .auth
        .store
        .user_by_name("bob")
        .await
        .expect("store")
        .is_none());

    let created = post(
        &t,
        &root,
        "/users",
        &[
            ("username", "bob"),
            ("password", BOB_PASSWORD),
            ("role.global", ""),
            ("role.ns.demo", "viewer"),
        ],
    )
    .await;
    assert_eq!(created.status, 303, "{}", created.text());
    assert_eq!(created.header("location"), Some("/users/bob?done=created"));
    let page = get(&t, &root, "/users/bob?done=created").await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("User created."));
    assert!(html.contains("viewer:demo"), "{html}");
    assert!(html.contains("<title>bob · Users · rtconfig</title>"));
    assert_eq!(sign_in(&t, "bob", BOB_PASSWORD).await.status, 200);
    let page = get(&t, &root, "/users").await.text();
    let bob_row = page.split("data-user=\"bob\"").nth(1).expect("bob's row");
    assert!(
        bob_row
            .split("</tr>")
            .next()
            .expect("row")
            .contains("<time"),
        "bob's last sign-in is known"
    );

    // A grant needs the admin's own password again; a wrong one is shown next to it.
    let wrong = post(
        &t,
        &root,
        "/users/bob",
        &[
            ("action", "roles"),
            ("role.ns.demo", "editor"),
            ("admin_password", "not it"),
        ],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong
        .text()
        .contains("id=\"roles-admin-password-error\" role=\"alert\""));
    let granted = post(
        &t,
        &root,
        "/users/bob",
        &[
            ("action", "roles"),
            ("role.ns.demo", "editor"),
            ("admin_password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(granted.status, 303, "{}", granted.text());
    assert_eq!(granted.header("location"), Some("/users/bob?done=roles"));
    let bob = t
        .auth
        .store
        .user_by_name("bob")
        .await
        .expect("store")
        .expect("bob");
    let grants: Vec<String> = bob.grants.iter().map(|g| g.to_string()).collect();
    assert_eq!(grants, ["editor:demo"]);
    assert!(!t.audit("roles_changed").await.is_empty(), "audited");

    // Disabled: bob cannot sign in; enabling lets him again.
    let disabled = post(&t, &root, "/users/bob", &[("action", "disable")]).await;
    assert_eq!(disabled.status, 303);
    assert_eq!(sign_in(&t, "bob", BOB_PASSWORD).await.status, 401);
    let html = get(&t, &root, "/users").await.text();
    let row = html.split("data-user=\"bob\"").nth(1).expect("bob's row");
    assert!(row.split("</tr>").next().expect("row").contains("disabled"));
    assert_eq!(
        post(&t, &root, "/users/bob", &[("action", "enable")])
            .await
            .status,
        303
    );
    assert_eq!(sign_in(&t, "bob", BOB_PASSWORD).await.status, 200);

    // A new password through the page: the old one stops working.
    let set = post(
        &t,
        &root,
        "/users/bob",
        &[
            ("action", "password"),
            ("password", "another long passphrase"),
        ],
    )
    .await;
    assert_eq!(set.status, 303, "{}", set.text());
    assert_eq!(sign_in(&t, "bob", BOB_PASSWORD).await.status, 401);
    assert_eq!(
        sign_in(&t, "bob", "another long passphrase").await.status,
        200
    );

    // One cannot lock oneself out: the API's refusal, on the page.
    let own = post(&t, &root, "/users/root", &[("action", "disable")]).await;
    assert_eq!(own.status, 409);
    assert!(own.text().contains("you cannot disable your own account"));
    assert_eq!(sign_in(&t, "root", PASSWORD).await.status, 200);

    // Forged posts: no token, a wrong token, another origin — refused, nothing written.
    let no_csrf = answer(
        t.request(Method::POST, "/users")
            .header("cookie", format!("__Host-rtconfig={}", root.cookie))
            .header("origin", t.origin())
            .form(&[("username", "mallory"), ("password", BOB_PASSWORD)]),
    )
    .await;
    assert_eq!(no_csrf.status, 403);
    assert!(no_csrf.text().contains("<!doctype html>"));
    let forged = Browser {
        cookie: root.cookie.clone(),
        csrf: "not-the-token".into(),
    };
    let wrong_csrf = post(
        &t,
        &forged,
        "/users",
        &[("username", "mallory"), ("password", BOB_PASSWORD)],
    )
    .await;
    assert_eq!(wrong_csrf.status, 403);
    let cross = answer(
        t.request(Method::POST, "/users/bob")
            .header("cookie", format!("__Host-rtconfig={}", root.cookie))
            .header("origin", "https://evil.example")
            .form(&[("csrf_token", root.csrf.as_str()), ("action", "disable")]),
    )
    .await;
    assert_eq!(cross.status, 403);
    assert!(t
        .auth
        .store
        .user_by_name("mallory")
        .await
        .expect("store")
        .is_none());
    assert!(
        !t.auth
            .store
            .user_by_name("bob")
            .await
            .expect("store")
            .expect("bob")
            .disabled
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_people_tokens_shown_once_then_revoked() {
    let t = Target::start(Backend::Embedded, |_| {}).await;
    t.user("root", &["admin"], Some(hash(PASSWORD).await)).await;
    let root = browser_of(&sign_in(&t, "root", PASSWORD).await);

    let list = get(&t, &root, "/tokens").await;
    assert_eq!(list.status, 200);
    assert!(list.text().contains("<title>API tokens · rtconfig</title>"));

    // The admin's password is asked again (the API's rule); the error sits by the field.
    let no_password = post(
        &t,
        &root,
        "/tokens",
        &[("name", "ci"), ("role", "viewer"), ("expiry", "1d")],
    )
    .await;
    assert_eq!(no_password.status, 401);
    assert!(no_password
        .text()
        .contains("id=\"token-admin-password-error\" role=\"alert\""));
    let bad_name = post(
        &t,
        &root,
        "/tokens",
        &[
            ("name", "ci deploy"),
            ("role", "viewer"),
            ("expiry", "1d"),
            ("admin_password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(bad_name.status, 422);
    assert!(bad_name.text().contains("id=\"name-error\" role=\"alert\""));

    let created = post(
        &t,
        &root,
        "/tokens",
        &[
            ("name", "ci"),
            ("role", "viewer"),
            ("namespace", "demo"),
            ("expiry", "7d"),
            ("admin_password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let html = created.text();
    let secret = input_value(&html, "token-secret").expect("the token on the page");
    assert!(html.contains("shown on this page only"));
    assert!(html.contains("viewer:demo"));
    assert!(html.contains("data-copy=\"token-secret\""), "a copy button");

    // It works as a Bearer on the API, with its scope.
    let read = answer(t.with_token(&secret, Method::GET, "/api/v1/namespaces/demo/configs")).await;
    assert_eq!(read.status, 200, "{}", read.text());
    let write = answer(
        t.with_token(&secret, Method::PATCH, "/api/v1/namespaces/demo/configs")
            .json(&json!({"changes": {"SITE_NAME": "x"}})),
    )
    .await;
    assert_eq!(write.status, 403, "a viewer token cannot write");

    // Never again in any page's HTML.
    let list = get(&t, &root, "/tokens").await.text();
    let id = list
        .split("data-token=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the token's row")
        .to_owned();
    assert!(list.contains(">ci</th>"));
    assert!(list.contains("by root"), "the creator");
    let confirm = get(&t, &root, &format!("/tokens/{id}/revoke")).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.text().contains("Confirm revoke"));
    for page in [
        list.clone(),
        confirm.text(),
        get(&t, &root, "/users").await.text(),
        get(&t, &root, "/namespaces").await.text(),
    ] {
        assert!(!page.contains(&secret), "the token appears again");
    }

    // The confirm step is a form; after it the token is refused at once.
    let revoked = post(&t, &root, &format!("/tokens/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status, 303);
    assert_eq!(revoked.header("location"), Some("/tokens?done=revoked"));
    let refused =
        answer(t.with_token(&secret, Method::GET, "/api/v1/namespaces/demo/configs")).await;
    assert_eq!(refused.status, 401);
    let html = get(&t, &root, "/tokens?done=revoked").await.text();
    assert!(html.contains("Token revoked"));
    assert!(html.contains("badge-error\">revoked"));
    assert!(!html.contains(&secret));
    let unknown = post(&t, &root, "/tokens/tok_nope/revoke", &[]).await;
    assert_eq!(unknown.status, 404);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_people_pages_are_for_admins_only() {
    let t = Target::start(Backend::Embedded, |_| {}).await;
    let viewer = t.user("vic", &["viewer:demo"], None).await;
    let editor = t.user("eve", &["editor:demo"], None).await;
    for user in [viewer, editor] {
        let b = t.session(&user).await;
        let home = get(&t, &b, "/namespaces").await.text();
        assert!(
            !home.contains("href=\"/users\""),
            "no Users link for {}",
            user.username
        );
        assert!(!home.contains("href=\"/tokens\""), "no Tokens link");
        for path in ["/users", "/users/vic", "/tokens", "/tokens/tok_x/revoke"] {
            let resp = get(&t, &b, path).await;
            assert_eq!(resp.status, 403, "{} GET {path}", user.username);
            assert!(resp.text().contains("Not allowed"), "an HTML 403 page");
        }
        let post = post(
            &t,
            &b,
            "/users",
            &[("username", "mallory"), ("password", BOB_PASSWORD)],
        )
        .await;
        assert_eq!(post.status, 403);
    }
    assert!(t
        .auth
        .store
        .user_by_name("mallory")
        .await
        .expect("store")
        .is_none());
    t.stop().await;
}
