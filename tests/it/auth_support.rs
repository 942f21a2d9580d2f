//! Support for the access-layer tests (`rbac`, `auth_http`): an admin on the embedded store or
//! on PostgreSQL (same suites on both), principals seeded straight into its store (users,
//! sessions, tokens: no password hashing where a test does not sign in), and a client that
//! speaks cookies and CSRF by hand so every header is visible to the test.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, RequestBuilder};
use rtconfig::app::{self, AdminParts, AdminSettings, Running};
use rtconfig::auth::secrets::{new_api_token, new_id};
use rtconfig::auth::store::{ApiToken, NewUser, User};
use rtconfig::auth::{Auth, Grants};
use serde_json::Value;
use tempfile::TempDir;

use crate::harness::postgres::shared_cluster;
use crate::harness::redis::RedisServer;
use crate::pg_stack::{fresh_db, schema_dir, TOKEN};
use crate::support::{send, Resp};

/// Which store the admin runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Postgres,
}

/// A running admin and what a test needs to talk to it.
pub struct Target {
    pub backend: Backend,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pub auth: Arc<Auth>,
    pub client: reqwest::Client,
    running: Option<Running<AdminParts>>,
    _redis: RedisServer,
    _dir: TempDir,
}

/// A signed-in browser: the session cookie's value and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

impl Target {
    /// An admin on `backend`, settings adjusted by `tweak` (MFA for admins off unless the
    /// tweak turns it on).
    pub async fn start(backend: Backend, tweak: impl FnOnce(&mut AdminSettings)) -> Target {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = match backend {
            Backend::Embedded => {
                AdminSettings::for_tests(schema_dir(), dir.path().join("data"), &redis.url())
            }
            Backend::Postgres => {
                let (_, url) = fresh_db(shared_cluster());
                AdminSettings::for_tests_pg(schema_dir(), &url, &redis.url())
            }
        };
        s.auth.require_mfa_for_admins = false;
        tweak(&mut s);
        let running = app::start_admin(s).await.expect("start admin");
        Target {
            backend,
            base: format!("http://{}", running.addr),
            auth: running.auth.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .user_agent("rtconfig-tests")
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            running: Some(running),
            _redis: redis,
            _dir: dir,
        }
    }

    /// Stops the admin (graceful).
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The admin's own origin, as a browser on it sends it.
    pub fn origin(&self) -> String {
        self.base.clone()
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request as the signed-in browser sends it: the cookie, and on state-changing
    /// methods the CSRF token and the admin's own `Origin`.
    pub fn as_browser(&self, b: &Browser, method: Method, path: &str) -> RequestBuilder {
        let changes = !matches!(method, Method::GET | Method::HEAD);
        let mut rb = self
            .request(method, path)
            .header("cookie", format!("__Host-rtconfig={}", b.cookie));
        if changes {
            rb = rb
                .header("x-csrf-token", &b.csrf)
                .header("origin", self.origin());
        }
        rb
    }

    pub fn with_token(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(token)
    }

    /// The bootstrap `--admin-token` of the test settings.
    pub fn bootstrap(&self) -> &'static str {
        TOKEN
    }

    /// A user straight in the store (`password_hash`: `None` when the test never signs in
    /// with a password).
    pub async fn user(&self, name: &str, grants: &[&str], password_hash: Option<String>) -> User {
        self.auth
            .store
            .create_user(NewUser {
                username: name.to_owned(),
                grants: grants_of(grants),
                password_hash,
                oidc: None,
            })
            .await
            .expect("create user")
    }

    /// A session for `user` straight in the store.
    pub async fn session(&self, user: &User) -> Browser {
        let (cookie, session) =
            self.auth
                .config
                .sessions
                .new_session(&user.id, None, None, None, Utc::now());
        let csrf = session.csrf_token.clone();
        self.auth
            .store
            .create_session(session)
            .await
            .expect("create session");
        Browser { cookie, csrf }
    }

    /// A token straight in the store: `(id, token)`.
    pub async fn token(
        &self,
        name: &str,
        grants: &[&str],
        created_by: Option<&User>,
        expires_in: Option<chrono::Duration>,
    ) -> (String, String) {
        let (token, digest) = new_api_token();
        let id = new_id("tok_");
        self.auth
            .store
            .create_token(ApiToken {
                id: id.clone(),
                name: name.to_owned(),
                digest,
                grants: grants_of(grants),
                created_by: created_by.map(|u| u.id.clone()),
                created_at: Utc::now() - chrono::Duration::hours(2),
                expires_at: expires_in.map(|d| Utc::now() + d),
                last_used_at: None,
                revoked_at: None,
            })
            .await
            .expect("create token");
        (id, token)
    }

    /// The audit events with `action`, newest first (straight from the store).
    pub async fn audit(&self, action: &str) -> Vec<rtconfig::auth::store::AuditEvent> {
        self.auth
            .store
            .audit(&rtconfig::auth::store::AuditQuery {
                action: Some(action.to_owned()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("audit")
            .events
    }
}

pub fn grants_of(list: &[&str]) -> Grants {
    Grants::new(list.iter().map(|s| s.parse().expect("grant")).collect())
}

/// Sends; the whole answer.
pub async fn answer(rb: RequestBuilder) -> Resp {
    send(rb).await
}

/// The session cookie a `Set-Cookie` header installs: `(value, attributes)`.
pub fn set_cookie(resp: &Resp) -> Option<(String, String)> {
    resp.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-rtconfig="))
        .map(|rest| {
            let (value, attrs) = rest.split_once(';').unwrap_or((rest, ""));
            (value.to_owned(), attrs.trim().to_owned())
        })
}

/// The signed-in browser from a successful sign-in answer.
pub fn browser_of(resp: &Resp) -> Browser {
    let (cookie, _) = set_cookie(resp).expect("a session cookie");
    let body: Value = resp.json();
    Browser {
        cookie,
        csrf: body["csrf_token"].as_str().expect("csrf_token").to_owned(),
    }
}
