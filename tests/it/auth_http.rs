//! The access layer through HTTP, on the embedded store and on PostgreSQL: sign-in and the
//! session cookie (flags, fixation, logout, idle and absolute expiry, one's sessions, password
//! change), CSRF (cross-origin form post and fetch refused; same origin with the token
//! accepted; bearer exempt; a bad bearer never falls back to the cookie), no user enumeration,
//! throttling and lockout, API tokens (shown once, revoked at once, expired), user management
//! with re-authentication, the audit log, and changesets naming the real actor. Plus: the
//! spawned binary's log never carries a password, token, session id or CSRF token.

use reqwest::Method;
use serde_json::{json, Value};

use crate::auth_support::{answer, browser_of, set_cookie, Backend, Browser, Target};
use crate::harness::eventually;
use crate::harness::ports::free_port;
use crate::harness::redis::RedisServer;
use crate::pg_stack::{path_str, schema_dir, ChildProcess, SETTLE};

const PASSWORD: &str = "correct horse battery staple";

async fn hash(password: &str) -> String {
    rtconfig::auth::password::Hasher::default()
        .hash(password)
        .await
        .expect("hash")
}

/// `POST /api/v1/session` as a script sends it (no `Origin`).
async fn login(t: &Target, username: &str, password: &str) -> crate::support::Resp {
    answer(
        t.request(Method::POST, "/api/v1/session")
            .header("x-request-id", "fixed-request-id")
            .json(&json!({"username": username, "password": password})),
    )
    .await
}

async fn whoami(t: &Target, b: &Browser) -> crate::support::Resp {
    answer(t.as_browser(b, Method::GET, "/api/v1/session")).await
}

async fn sessions_cookies_and_fixation(backend: Backend) {
    let t = Target::start(backend, |_| {}).await;
    let alice = t
        .user("alice", &["editor:demo"], Some(hash(PASSWORD).await))
        .await;

    // A made-up cookie is useless, and is cleared.
    let made_up = Browser {
        cookie: "attacker-chosen-value".into(),
        csrf: String::new(),
    };
    let resp = whoami(&t, &made_up).await;
    resp.expect_error(401, "unauthorized");
    let (value, attrs) = set_cookie(&resp).expect("clearing cookie");
    assert_eq!(value, "");
    assert!(attrs.contains("Max-Age=0"), "{attrs}");

    // Signing in with a planted, valid session issues a new id and ends the planted one.
    let planted = t.session(&alice).await;
    let resp = answer(
        t.request(Method::POST, "/api/v1/session")
            .header("cookie", format!("__Host-rtconfig={}", planted.cookie))
            .header("origin", t.origin())
            .json(&json!({"username": "alice", "password": PASSWORD})),
    )
    .await
    .expect_status(200);
    let body = resp.json();
    assert_eq!(body["user"], "alice");
    assert_eq!(body["roles"], json!(["editor:demo"]));
    assert!(body["csrf_token"].as_str().is_some_and(|t| t.len() >= 32));
    let (cookie, attrs) = set_cookie(&resp).expect("session cookie");
    assert_ne!(cookie, planted.cookie, "the session id changes at sign-in");
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            attrs.split(';').any(|a| a.trim() == attr),
            "{attr} missing: {attrs}"
        );
    }
    assert!(!attrs.to_ascii_lowercase().contains("domain"), "{attrs}");
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    whoami(&t, &planted).await.expect_error(401, "unauthorized");
    let browser = browser_of(&resp);
    let me = whoami(&t, &browser).await.expect_status(200).json();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["kind"], "session");

    // The session writes as alice.
    let resp = answer(
        t.as_browser(&browser, Method::PATCH, "/api/v1/namespaces/demo/configs")
            .json(&json!({"changes": {"SITE_NAME": "by alice"}})),
    )
    .await
    .expect_status(200);
    let version = resp.json()["version"].as_u64().expect("version");
    let cs = answer(t.as_browser(
        &browser,
        Method::GET,
        &format!("/api/v1/namespaces/demo/changesets/{version}"),
    ))
    .await
    .expect_status(200)
    .json();
    assert_eq!(cs["actor"], "alice");

    // Own sessions: two; end the other one.
    let other = t.session(&alice).await;
    let list = answer(t.as_browser(&browser, Method::GET, "/api/v1/sessions"))
        .await
        .expect_status(200)
        .json();
    let list = list["sessions"].as_array().expect("sessions").clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(!list.iter().any(|s| s.to_string().contains(&browser.cookie)));
    let ended = answer(t.as_browser(&browser, Method::DELETE, "/api/v1/sessions"))
        .await
        .expect_status(200)
        .json();
    assert_eq!(ended["ended"], 1);
    whoami(&t, &other).await.expect_error(401, "unauthorized");
    whoami(&t, &browser).await.expect_status(200);

    // Own password change: the current one is required; every other session ends and this
    // one is rotated.
    let other = t.session(&alice).await;
    answer(
        t.as_browser(&browser, Method::POST, "/api/v1/session/password")
            .json(&json!({"current_password": "wrong password!", "new_password": "a new long passphrase"})),
    )
    .await
    .expect_error(401, "invalid_credentials");
    let resp = answer(
        t.as_browser(&browser, Method::POST, "/api/v1/session/password")
            .json(&json!({"current_password": PASSWORD, "new_password": "a new long passphrase"})),
    )
    .await
    .expect_status(200);
    let rotated = browser_of(&resp);
    assert_ne!(rotated.cookie, browser.cookie);
    whoami(&t, &other).await.expect_error(401, "unauthorized");
    whoami(&t, &browser).await.expect_error(401, "unauthorized");
    whoami(&t, &rotated).await.expect_status(200);
    login(&t, "alice", PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");
    let fresh = browser_of(
        &login(&t, "alice", "a new long passphrase")
            .await
            .expect_status(200),
    );

    // Logout needs the CSRF token too, then the session is gone.
    answer(
        t.request(Method::DELETE, "/api/v1/session")
            .header("cookie", format!("__Host-rtconfig={}", fresh.cookie))
            .header("origin", t.origin()),
    )
    .await
    .expect_error(403, "csrf_failed");
    let resp = answer(t.as_browser(&fresh, Method::DELETE, "/api/v1/session"))
        .await
        .expect_status(204);
    assert_eq!(set_cookie(&resp).map(|c| c.0), Some(String::new()));
    whoami(&t, &fresh).await.expect_error(401, "unauthorized");

    // Idle and absolute expiry (sessions made old in the store: no waiting).
    let policy = t.auth.config.sessions;
    for (seen_ago, ends_in) in [
        (
            policy.idle_timeout + std::time::Duration::from_secs(1),
            3600,
        ),
        (std::time::Duration::ZERO, -1),
    ] {
        let now = chrono::Utc::now();
        let (id, mut s) = policy.new_session(&alice.id, None, None, None, now);
        s.last_seen_at = now - chrono::Duration::from_std(seen_ago).expect("duration");
        s.expires_at = now + chrono::Duration::seconds(ends_in);
        t.auth.store.create_session(s).await.expect("session");
        let old = Browser {
            cookie: id,
            csrf: String::new(),
        };
        let resp = whoami(&t, &old).await;
        resp.expect_error(401, "unauthorized");
        assert_eq!(set_cookie(&resp).map(|c| c.0), Some(String::new()));
    }
    assert!(!t.audit("login_ok").await.is_empty());
    assert!(!t.audit("logout").await.is_empty());
    assert!(!t.audit("sessions_revoked").await.is_empty());
    assert!(!t.audit("password_changed").await.is_empty());
}

async fn csrf(backend: Backend) {
    let t = Target::start(backend, |_| {}).await;
    let eve = t.user("eve", &["editor:demo"], None).await;
    let b = t.session(&eve).await;
    let cookie = format!("__Host-rtconfig={}", b.cookie);
    let rollback = "/api/v1/namespaces/demo/rollback";

    // A cross-origin HTML form post (the browser sends the cookie and its Origin), with and
    // without a guessed token field.
    for body in [
        "to_version=0",
        &format!("to_version=0&csrf_token={}", b.csrf),
    ] {
        answer(
            t.request(Method::POST, rollback)
                .header("cookie", &cookie)
                .header("origin", "http://evil.example")
                .header("sec-fetch-site", "cross-site")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_owned()),
        )
        .await
        .expect_error(403, "csrf_failed");
    }
    // A fetch from another origin, even with the right token.
    answer(
        t.request(Method::PATCH, "/api/v1/namespaces/demo/configs")
            .header("cookie", &cookie)
            .header("origin", "http://evil.example")
            .header("x-csrf-token", &b.csrf)
            .json(&json!({"changes": {"SITE_NAME": "pwned"}})),
    )
    .await
    .expect_error(403, "csrf_failed");
    // Same origin without the token, or with a wrong one, or with neither Origin nor
    // Sec-Fetch-Site.
    for (origin, token) in [
        (Some(t.origin()), None),
        (Some(t.origin()), Some("not-the-token")),
        (None, Some(b.csrf.as_str())),
    ] {
        let mut rb = t
            .request(Method::PATCH, "/api/v1/namespaces/demo/configs")
            .header("cookie", &cookie)
            .json(&json!({"changes": {"SITE_NAME": "pwned"}}));
        if let Some(o) = origin {
            rb = rb.header("origin", o);
        }
        if let Some(tok) = token {
            rb = rb.header("x-csrf-token", tok);
        }
        answer(rb).await.expect_error(403, "csrf_failed");
    }
    // Sign-in from another origin is refused too.
    answer(
        t.request(Method::POST, "/api/v1/session")
            .header("origin", "http://evil.example")
            .json(&json!({"username": "eve", "password": PASSWORD})),
    )
    .await
    .expect_error(403, "csrf_failed");
    assert!(t.audit("csrf_failed").await.len() >= 7);

    // Same origin with the token: accepted (header, or Sec-Fetch-Site instead of Origin).
    answer(
        t.as_browser(&b, Method::PATCH, "/api/v1/namespaces/demo/configs")
            .json(&json!({"changes": {"SITE_NAME": "ok"}})),
    )
    .await
    .expect_status(200);
    answer(
        t.request(Method::PATCH, "/api/v1/namespaces/demo/configs")
            .header("cookie", &cookie)
            .header("sec-fetch-site", "same-origin")
            .header("x-csrf-token", &b.csrf)
            .json(&json!({"changes": {"SITE_NAME": "ok too"}})),
    )
    .await
    .expect_status(200);
    // A same-origin form post with the token field passes the guard (the handler then wants
    // JSON: 415, not 403).
    answer(
        t.request(Method::POST, rollback)
            .header("cookie", &cookie)
            .header("origin", t.origin())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("to_version=0&csrf_token={}", b.csrf)),
    )
    .await
    .expect_error(415, "unsupported_media_type");

    // Bearer requests are exempt; a bad bearer never falls back to a good cookie.
    let (token_id, token) = t.token("ci", &["editor:demo"], None, None).await;
    let resp = answer(
        t.with_token(&token, Method::PATCH, "/api/v1/namespaces/demo/configs")
            .json(&json!({"changes": {"SITE_NAME": "by ci"}})),
    )
    .await
    .expect_status(200);
    let version = resp.json()["version"].as_u64().expect("version");
    let history = answer(t.with_token(
        &token,
        Method::GET,
        "/api/v1/namespaces/demo/history?limit=1",
    ))
    .await
    .expect_status(200)
    .json();
    assert_eq!(history["changesets"][0]["version"], version);
    assert_eq!(history["changesets"][0]["actor"], "token:ci");
    let stored = t
        .auth
        .store
        .token(&token_id)
        .await
        .expect("token")
        .expect("exists");
    assert!(stored.last_used_at.is_some());
    answer(
        t.request(Method::GET, "/api/v1/session")
            .header("cookie", &cookie)
            .header("authorization", "Bearer rtc_not-a-token"),
    )
    .await
    .expect_error(401, "unauthorized");
    answer(
        t.request(Method::GET, "/api/v1/session")
            .header("cookie", &cookie)
            .header("authorization", format!("bearer {token}")),
    )
    .await
    .expect_status(200);
}

/// `POST /api/v1/session` through the trusted proxy on loopback, for client `ip`.
async fn login_from(t: &Target, ip: &str, username: &str, password: &str) -> crate::support::Resp {
    answer(
        t.request(Method::POST, "/api/v1/session")
            .header("x-request-id", "fixed-request-id")
            .header("x-forwarded-for", format!("198.51.100.99, {ip}"))
            .json(&json!({"username": username, "password": password})),
    )
    .await
}

async fn enumeration_throttle_and_lockout(backend: Backend) {
    let t = Target::start(backend, |s| {
        s.auth.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await;
    t.user("bob", &["viewer"], Some(hash(PASSWORD).await)).await;
    let unknown = login_from(&t, "10.1.0.1", "nobody-here", PASSWORD).await;
    let wrong = login_from(&t, "10.1.0.2", "bob", "not the password at all").await;
    unknown.expect_error(401, "invalid_credentials");
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(unknown.body, wrong.body, "byte-identical bodies");
    assert_eq!(unknown.header("content-type"), wrong.header("content-type"));

    // Per account: failures from many addresses up to the back-off; then even the right
    // password gets the same answer at once.
    for n in 3..=11 {
        login_from(&t, &format!("10.1.0.{n}"), "bob", "not the password at all").await;
    }
    // (Four more failures straight in the store stretch the back-off to 16 s, so a slow
    // machine cannot outwait the first 1 s before the next request.)
    let bob_id = t
        .auth
        .store
        .user_by_name("bob")
        .await
        .expect("bob")
        .expect("bob")
        .id;
    assert_eq!(
        t.auth
            .store
            .user(&bob_id)
            .await
            .expect("bob")
            .expect("bob")
            .failures
            .consecutive,
        10
    );
    for _ in 0..4 {
        t.auth
            .store
            .record_login_failure(&bob_id, chrono::Utc::now())
            .await
            .expect("failure");
    }
    let locked = login_from(&t, "10.1.1.1", "bob", PASSWORD).await;
    assert_eq!(locked.status, 401);
    assert_eq!(
        locked.body, wrong.body,
        "a locked account answers like a wrong password"
    );
    assert!(!t.audit("lockout").await.is_empty());
    let throttled = t.audit("login_throttled").await;
    assert_eq!(
        throttled[0].event.details["by"], "account",
        "{:?}",
        throttled[0]
    );
    let failed = t.audit("login_failed").await;
    assert_eq!(failed.len(), 11);
    // The audit has the client's address (the last hop before the trusted proxy).
    assert_eq!(failed[0].event.ip.as_deref(), Some("10.1.0.11"));

    // The admin sees the lock and lifts it.
    let users = answer(t.with_token(t.bootstrap(), Method::GET, "/api/v1/users"))
        .await
        .expect_status(200)
        .json();
    let bob = users["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["username"] == "bob")
        .expect("bob")
        .clone();
    assert_eq!(bob["locked"], true, "{bob}");
    answer(
        t.with_token(t.bootstrap(), Method::PATCH, "/api/v1/users/bob")
            .json(&json!({"unlock": true})),
    )
    .await
    .expect_status(200);
    login_from(&t, "10.1.1.2", "bob", PASSWORD)
        .await
        .expect_status(200);

    // Per client IP: ten failures from one address (any user names) back it off; the right
    // password from there is refused like a wrong one, from elsewhere it works.
    for n in 0..10 {
        login_from(
            &t,
            "203.0.113.7",
            &format!("guess{n}"),
            "not the password at all",
        )
        .await;
    }
    let ip: std::net::IpAddr = "203.0.113.7".parse().expect("ip");
    for _ in 0..4 {
        t.auth.ip_throttle.failed(ip, chrono::Utc::now());
    }
    let refused = login_from(&t, "203.0.113.7", "bob", PASSWORD).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body, wrong.body);
    let throttled = t.audit("login_throttled").await;
    assert_eq!(throttled[0].event.details["by"], "client ip");
    assert_eq!(throttled[0].event.ip.as_deref(), Some("203.0.113.7"));
    login_from(&t, "10.1.1.3", "bob", PASSWORD)
        .await
        .expect_status(200);
}

async fn tokens_users_and_audit(backend: Backend) {
    let t = Target::start(backend, |_| {}).await;
    // The bootstrap token creates the first admin user (every use audited).
    let resp = answer(
        t.with_token(t.bootstrap(), Method::POST, "/api/v1/users")
            .json(&json!({"username": "root", "password": PASSWORD, "roles": ["admin"]})),
    )
    .await
    .expect_status(201);
    assert_eq!(resp.json()["roles"], json!(["admin"]));
    answer(
        t.with_token(t.bootstrap(), Method::POST, "/api/v1/users")
            .json(&json!({"username": "weak", "password": "short", "roles": []})),
    )
    .await
    .expect_error(422, "weak_password");
    answer(
        t.with_token(t.bootstrap(), Method::POST, "/api/v1/users")
            .json(&json!({"username": "root", "password": PASSWORD, "roles": []})),
    )
    .await
    .expect_error(409, "user_exists");
    assert!(t.audit("bootstrap_token_used").await.len() >= 3);
    let root = browser_of(&login(&t, "root", PASSWORD).await.expect_status(200));

    // A session creating a token must give its password again.
    let new_token =
        json!({"name": "deploy", "role": "editor", "namespaces": ["demo"], "expires_in": 3600});
    answer(
        t.as_browser(&root, Method::POST, "/api/v1/tokens")
            .json(&new_token),
    )
    .await
    .expect_error(401, "invalid_credentials");
    let mut with_password = new_token.clone();
    with_password["password"] = json!(PASSWORD);
    let created = answer(
        t.as_browser(&root, Method::POST, "/api/v1/tokens")
            .json(&with_password),
    )
    .await
    .expect_status(201)
    .json();
    let token = created["token"].as_str().expect("token").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(token.starts_with("rtc_"));
    assert_eq!(created["roles"], json!(["editor:demo"]));

    // Never shown again.
    let list = answer(t.as_browser(&root, Method::GET, "/api/v1/tokens"))
        .await
        .expect_status(200);
    assert!(!list.text().contains(&token), "GET /tokens shows the token");
    let listed = list.json();
    let entry = listed["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|e| e["id"] == id.as_str())
        .expect("listed")
        .clone();
    assert!(entry.get("token").is_none());
    assert_eq!(entry["created_by"], "root");

    // Used: first use audited once; its rights are the scope.
    for _ in 0..2 {
        answer(t.with_token(&token, Method::GET, "/api/v1/namespaces/demo/configs"))
            .await
            .expect_status(200);
    }
    answer(t.with_token(&token, Method::GET, "/api/v1/users"))
        .await
        .expect_error(403, "forbidden");
    let first_uses = t.audit("token_first_use").await;
    assert_eq!(
        first_uses
            .iter()
            .filter(|e| e.event.target.as_deref() == Some(id.as_str()))
            .count(),
        1
    );

    // The creator's current roles limit the token: demote root to viewer, and the token can
    // no longer write (the role change needs root's password again).
    answer(
        t.as_browser(&root, Method::PATCH, "/api/v1/users/root")
            .json(&json!({"roles": ["viewer"]})),
    )
    .await
    .expect_error(401, "invalid_credentials");
    let resp = answer(
        t.as_browser(&root, Method::PATCH, "/api/v1/users/root")
            .json(&json!({"roles": ["viewer"], "password": PASSWORD})),
    )
    .await
    .expect_status(200);
    let demoted = browser_of(&resp);
    assert_ne!(
        demoted.cookie, root.cookie,
        "a privilege change rotates the session"
    );
    whoami(&t, &root).await.expect_error(401, "unauthorized");
    answer(
        t.with_token(&token, Method::PATCH, "/api/v1/namespaces/demo/configs")
            .json(&json!({"changes": {"SITE_NAME": "x"}})),
    )
    .await
    .expect_error(403, "forbidden");
    assert!(!t.audit("roles_changed").await.is_empty());

    // Revoked: refused from the next request on.
    answer(t.with_token(
        t.bootstrap(),
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
    ))
    .await
    .expect_status(204);
    answer(t.with_token(&token, Method::GET, "/api/v1/namespaces/demo/configs"))
        .await
        .expect_error(401, "unauthorized");
    answer(t.with_token(t.bootstrap(), Method::DELETE, "/api/v1/tokens/tok_unknown"))
        .await
        .expect_error(404, "not_found");
    // Expired.
    let (_, old) = t
        .token(
            "old",
            &["viewer"],
            None,
            Some(-chrono::Duration::seconds(1)),
        )
        .await;
    answer(t.with_token(&old, Method::GET, "/api/v1/namespaces"))
        .await
        .expect_error(401, "token_expired");

    // Disabling a user ends their sessions and suspends their tokens.
    let carol = t.user("carol", &["editor:demo"], None).await;
    let carol_session = t.session(&carol).await;
    let (_, carol_token) = t
        .token("carol-ci", &["editor:demo"], Some(&carol), None)
        .await;
    answer(
        t.with_token(t.bootstrap(), Method::PATCH, "/api/v1/users/carol")
            .json(&json!({"disabled": true})),
    )
    .await
    .expect_status(200);
    whoami(&t, &carol_session)
        .await
        .expect_error(401, "unauthorized");
    answer(t.with_token(&carol_token, Method::GET, "/api/v1/namespaces/demo/configs"))
        .await
        .expect_error(403, "forbidden");

    // The audit log: filters and paging, each event with actor, ip, user agent, request id.
    let page = answer(
        t.with_token(
            t.bootstrap(),
            Method::GET,
            "/api/v1/audit?action=token_created&limit=10",
        )
        .header("user-agent", "audit-reader"),
    )
    .await
    .expect_status(200)
    .json();
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{page}");
    let e = &events[0];
    assert_eq!(e["actor"], "root");
    assert_eq!(e["target"], id.as_str());
    for field in [
        "id",
        "action",
        "actor",
        "ip",
        "at",
        "request_id",
        "user_agent",
    ] {
        assert!(e.get(field).is_some_and(|v| !v.is_null()), "{field} in {e}");
    }
    assert!(!page.to_string().contains(&token));
    let first = answer(t.with_token(t.bootstrap(), Method::GET, "/api/v1/audit?limit=1"))
        .await
        .expect_status(200)
        .json();
    let next = first["next"].as_u64().expect("next page");
    let second = answer(t.with_token(
        t.bootstrap(),
        Method::GET,
        &format!("/api/v1/audit?limit=1&before={next}"),
    ))
    .await
    .expect_status(200)
    .json();
    assert!(
        second["events"][0]["id"].as_u64().expect("id")
            < first["events"][0]["id"].as_u64().expect("id")
    );
    let by_actor = answer(t.with_token(t.bootstrap(), Method::GET, "/api/v1/audit?actor=carol-ci"))
        .await
        .expect_status(200)
        .json();
    assert!(by_actor["events"].as_array().expect("events").is_empty());
    // By target and date: carol's events of today (UTC), and none before today.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let carol_today = answer(t.with_token(
        t.bootstrap(),
        Method::GET,
        &format!("/api/v1/audit?target=carol&since={today}&until={today}"),
    ))
    .await
    .expect_status(200)
    .json();
    let events = carol_today["events"].as_array().expect("events");
    assert!(!events.is_empty(), "{carol_today}");
    assert!(
        events.iter().all(|e| e["target"] == "carol"),
        "{carol_today}"
    );
    let earlier = answer(t.with_token(
        t.bootstrap(),
        Method::GET,
        &format!("/api/v1/audit?target=carol&until={today}T00:00:00Z"),
    ))
    .await
    .expect_status(200)
    .json();
    assert_eq!(earlier["events"], serde_json::json!([]), "{earlier}");
    for (query, why) in [
        ("since=yesterday", "since:"),
        ("until=2026-13-01", "until:"),
        (
            "since=2026-02-01&until=2026-01-01",
            "since must be before until",
        ),
    ] {
        let bad = answer(t.with_token(
            t.bootstrap(),
            Method::GET,
            &format!("/api/v1/audit?{query}"),
        ))
        .await
        .expect_error(400, "invalid_query");
        assert!(bad.to_string().contains(why), "{query}: {bad}");
    }
    for action in [
        "user_created",
        "token_revoked",
        "user_disabled",
        "forbidden",
        "login_ok",
    ] {
        assert!(!t.audit(action).await.is_empty(), "{action}");
    }
}

#[tokio::test]
async fn sessions_cookies_and_fixation_embedded() {
    sessions_cookies_and_fixation(Backend::Embedded).await;
}

#[tokio::test]
async fn sessions_cookies_and_fixation_postgres() {
    sessions_cookies_and_fixation(Backend::Postgres).await;
}

#[tokio::test]
async fn csrf_embedded() {
    csrf(Backend::Embedded).await;
}

#[tokio::test]
async fn csrf_postgres() {
    csrf(Backend::Postgres).await;
}

#[tokio::test]
async fn enumeration_throttle_and_lockout_embedded() {
    enumeration_throttle_and_lockout(Backend::Embedded).await;
}

#[tokio::test]
async fn enumeration_throttle_and_lockout_postgres() {
    enumeration_throttle_and_lockout(Backend::Postgres).await;
}

#[tokio::test]
async fn tokens_users_and_audit_embedded() {
    tokens_users_and_audit(Backend::Embedded).await;
}

#[tokio::test]
async fn tokens_users_and_audit_postgres() {
    tokens_users_and_audit(Backend::Postgres).await;
}

/// The real binary with a debug log: sign in, create and use a token, change a password;
/// none of the secrets may appear in its output.
#[tokio::test]
async fn secrets_never_reach_the_log() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let bootstrap = "bootstrap-secret-0123456789";
    let child = ChildProcess::spawn(
        &[
            "admin",
            "--data-dir",
            path_str(dir.path()),
            "--redis-url",
            &redis.url(),
            "--admin-token",
            bootstrap,
            "--listen",
            &listen,
            "--schema-dir",
            path_str(&schema_dir()),
            "--require-mfa-for-admins=false",
        ],
        &[("RUST_LOG", "debug")],
    );
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    eventually(SETTLE, "the admin answers /readyz", || {
        let (client, url) = (client.clone(), format!("{base}/readyz"));
        async move {
            client
                .get(url)
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await;
    let post = |path: &str, auth: Option<&str>, body: Value| {
        let mut rb = client.post(format!("{base}{path}")).json(&body);
        if let Some(a) = auth {
            rb = rb.bearer_auth(a);
        }
        answer(rb)
    };
    post(
        "/api/v1/users",
        Some(bootstrap),
        json!({"username": "dana", "password": PASSWORD, "roles": ["admin"]}),
    )
    .await
    .expect_status(201);
    post(
        "/api/v1/session",
        None,
        json!({"username": "dana", "password": "a wrong password here"}),
    )
    .await
    .expect_error(401, "invalid_credentials");
    let resp = post(
        "/api/v1/session",
        None,
        json!({"username": "dana", "password": PASSWORD}),
    )
    .await
    .expect_status(200);
    let session = browser_of(&resp);
    let created = post(
        "/api/v1/tokens",
        Some(bootstrap),
        json!({"name": "ci", "role": "viewer"}),
    )
    .await
    .expect_status(201)
    .json();
    let token = created["token"].as_str().expect("token").to_owned();
    answer(
        client
            .get(format!("{base}/api/v1/namespaces"))
            .bearer_auth(&token),
    )
    .await
    .expect_status(200);
    let log = std::fs::read_to_string(child.log_path()).expect("log");
    assert!(
        log.contains("login_failed") && log.contains("token_first_use"),
        "the audit reaches the log:\n{log}"
    );
    for secret in [
        PASSWORD,
        "a wrong password here",
        bootstrap,
        token.as_str(),
        &token["rtc_".len()..],
        session.cookie.as_str(),
        session.csrf.as_str(),
    ] {
        assert!(
            !log.contains(secret),
            "the log shows a secret ({} chars)",
            secret.len()
        );
    }
}

/// The current TOTP code of a base32 secret, `steps_ahead` time steps from now.
fn code(secret_base32: &str, steps_ahead: u64) -> String {
    let secret = totp_rs::Secret::Encoded(secret_base32.to_owned())
        .to_bytes()
        .expect("base32 secret");
    let now = u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970");
    rtconfig::auth::totp::code_at(&secret, now + steps_ahead * 30).expect("code")
}

async fn mfa_enrolment_and_sign_in(backend: Backend) {
    let t = Target::start(backend, |s| s.auth.require_mfa_for_admins = true).await;
    t.user("root", &["admin"], Some(hash(PASSWORD).await)).await;
    // The right password of an admin without a second factor: a session that may only enrol.
    let resp = login(&t, "root", PASSWORD).await;
    let err = resp.expect_error(401, "mfa_required");
    assert_eq!(err["details"]["enrolment"], true);
    let (cookie, _) = set_cookie(&resp).expect("a pending session");
    let pending = Browser {
        cookie,
        csrf: err["details"]["csrf_token"]
            .as_str()
            .expect("csrf")
            .to_owned(),
    };
    answer(t.as_browser(&pending, Method::GET, "/api/v1/namespaces"))
        .await
        .expect_error(401, "mfa_required");
    answer(t.as_browser(&pending, Method::GET, "/api/v1/users"))
        .await
        .expect_error(401, "mfa_required");
    let enrol = answer(t.as_browser(&pending, Method::POST, "/api/v1/session/totp"))
        .await
        .expect_status(200)
        .json();
    let secret = enrol["secret"].as_str().expect("secret").to_owned();
    assert!(enrol["otpauth_uri"]
        .as_str()
        .is_some_and(|u| u.starts_with("otpauth://totp/rtconfig:root?secret=")));
    answer(
        t.as_browser(&pending, Method::POST, "/api/v1/session/totp/confirm")
            .json(&json!({"code": "000000"})),
    )
    .await
    .expect_error(422, "invalid_code");
    let first = code(&secret, 0);
    let resp = answer(
        t.as_browser(&pending, Method::POST, "/api/v1/session/totp/confirm")
            .json(&json!({"code": first})),
    )
    .await
    .expect_status(200);
    let recovery: Vec<String> = resp.json()["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    let full = browser_of(&resp);
    assert_ne!(full.cookie, pending.cookie, "enrolment rotates the session");
    whoami(&t, &pending).await.expect_error(401, "unauthorized");
    assert_eq!(
        whoami(&t, &full).await.expect_status(200).json()["mfa"],
        true
    );
    answer(t.as_browser(&full, Method::GET, "/api/v1/users"))
        .await
        .expect_status(200);

    // Signing in now needs the code: without it mfa_required; a wrong one the usual 401; the
    // step used at enrolment is refused (replay); the next step works once.
    login(&t, "root", PASSWORD)
        .await
        .expect_error(401, "mfa_required");
    let with = |totp: String| {
        answer(
            t.request(Method::POST, "/api/v1/session")
                .json(&json!({"username": "root", "password": PASSWORD, "totp": totp})),
        )
    };
    with("123456".into())
        .await
        .expect_error(401, "invalid_credentials");
    with(first).await.expect_error(401, "invalid_credentials");
    let next = code(&secret, 1);
    with(next.clone()).await.expect_status(200);
    with(next).await.expect_error(401, "invalid_credentials");
    // A recovery code works once.
    with(recovery[0].clone()).await.expect_status(200);
    with(recovery[0].clone())
        .await
        .expect_error(401, "invalid_credentials");
    assert!(!t.audit("mfa_enrolled").await.is_empty());
    assert!(!t.audit("recovery_code_used").await.is_empty());
    // The stored secret is sealed, not in clear.
    let stored = t
        .auth
        .store
        .user_by_name("root")
        .await
        .expect("user")
        .expect("root");
    let sealed = stored.totp.expect("totp").secret_encrypted;
    assert!(!sealed.contains(&secret));
    // An admin resets the factor (their own password again): the user enrols anew.
    let admin = t
        .user("other-admin", &["admin"], Some(hash(PASSWORD).await))
        .await;
    let admin_session = t.session(&admin).await;
    answer(
        t.as_browser(&admin_session, Method::PATCH, "/api/v1/users/root")
            .json(&json!({"reset_mfa": true, "password": PASSWORD})),
    )
    .await
    .expect_status(200);
    let again = login(&t, "root", PASSWORD).await;
    assert_eq!(
        again.expect_error(401, "mfa_required")["details"]["enrolment"],
        true
    );
}

#[tokio::test]
async fn mfa_enrolment_and_sign_in_embedded() {
    mfa_enrolment_and_sign_in(Backend::Embedded).await;
}

#[tokio::test]
async fn mfa_enrolment_and_sign_in_postgres() {
    mfa_enrolment_and_sign_in(Backend::Postgres).await;
}

/// The web UI's enrolment: an admin without a second factor signs in on the form, is sent to
/// `/signin/mfa`, adds the secret shown there, a wrong code shows the same secret again, the
/// right one shows the recovery codes once and signs in (a full session); the pending session
/// could not see the namespaces before.
#[tokio::test]
async fn mfa_enrolment_through_the_sign_in_pages() {
    let t = Target::start(Backend::Embedded, |s| s.auth.require_mfa_for_admins = true).await;
    t.user("root", &["admin"], Some(hash(PASSWORD).await)).await;
    let signin = t
        .request(Method::POST, "/signin")
        .header("origin", t.origin())
        .form(&[("username", "root"), ("password", PASSWORD)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(signin.status(), 303);
    assert_eq!(signin.headers()["location"], "/signin/mfa");
    let cookie = signin
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next()?.strip_prefix("__Host-rtconfig="))
        .expect("a pending session")
        .to_owned();
    let get = |path: &'static str, cookie: String| {
        t.request(Method::GET, path)
            .header("cookie", format!("__Host-rtconfig={cookie}"))
            .send()
    };
    let denied = get("/namespaces", cookie.clone())
        .await
        .expect("namespaces");
    assert_ne!(
        denied.status(),
        200,
        "a session that may only enrol sees no namespaces"
    );
    let page = get("/signin/mfa", cookie.clone()).await.expect("mfa page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let secret = html
        .split("id=\"totp-secret\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("the secret on the page")
        .to_owned();
    assert!(
        html.contains("otpauth://totp/rtconfig:root?secret="),
        "the app link"
    );
    let csrf = crate::support::hidden_inputs(&html)
        .into_iter()
        .find(|(n, _)| n == "csrf_token")
        .expect("csrf")
        .1;
    let post = |code: String| {
        t.request(Method::POST, "/signin/mfa")
            .header("cookie", format!("__Host-rtconfig={cookie}"))
            .header("origin", t.origin())
            .form(&[("csrf_token", csrf.clone()), ("code", code)])
            .send()
    };
    let wrong = post("000000".into()).await.expect("wrong code");
    assert_eq!(wrong.status(), 422);
    let html = wrong.text().await.expect("html");
    assert!(html.contains("role=\"alert\""), "the reason is announced");
    assert!(
        html.contains(&secret),
        "the same secret again, not a new one"
    );
    let done = post(code(&secret, 0)).await.expect("confirm");
    assert_eq!(done.status(), 200);
    let full = done
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next()?.strip_prefix("__Host-rtconfig="))
        .expect("a new, full session")
        .to_owned();
    let html = done.text().await.expect("html");
    let codes = html
        .split("id=\"recovery-codes\">")
        .nth(1)
        .expect("recovery codes")
        .matches("<li>")
        .count();
    assert_eq!(codes, 10, "the recovery codes, shown once");
    assert_ne!(full, cookie, "the session was renewed");
    let namespaces = get("/namespaces", full).await.expect("namespaces");
    assert_eq!(namespaces.status(), 200, "signed in");
    t.stop().await;
}
