//! A real OpenID provider per test: `node tests/oidc/provider.mjs` (the certified `oidc-provider`
//! package, see tests/oidc/README.md) on a free loopback port, and a sign-in driven over plain
//! HTTP (no browser): authorize → login form → consent → the redirect to `redirect_uri`, caught
//! and not followed.
//!
//! Node is looked up on `PATH` (override with `RTCONFIG_TEST_NODE`); when it is missing and the
//! tests run as root it is installed with apt (`nodejs npm`). The npm packages are installed
//! with `npm ci --prefix tests/oidc` when `tests/oidc/node_modules` is missing (`scripts/test`
//! does both beforehand). The provider exits when the test process does (it watches its stdin)
//! and is killed on drop.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;
use url::Url;

use super::{apt_install, find_on_path, log_tail, run_with_timeout};

/// Env var overriding the `node` binary.
pub const NODE_ENV: &str = "RTCONFIG_TEST_NODE";

/// How long a start may take (node + the provider's setup; a cold disk is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// The `node` binary, installed with apt when missing (root only).
fn node_binary() -> PathBuf {
    static NODE: OnceLock<PathBuf> = OnceLock::new();
    NODE.get_or_init(|| {
        if let Some(p) = std::env::var_os(NODE_ENV) {
            return PathBuf::from(p);
        }
        if let Some(p) = find_on_path("node") {
            return p;
        }
        if apt_install("nodejs") {
            apt_install("npm");
        }
        find_on_path("node").unwrap_or_else(|| {
            panic!(
                "OidcProvider: `node` not found on PATH (set {NODE_ENV}, or run scripts/test, \
                 which installs nodejs and npm)"
            )
        })
    })
    .clone()
}

/// Makes sure `tests/oidc/node_modules` holds the pinned packages (`npm ci` once per process).
fn ensure_node_modules() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = provider_dir();
        if dir.join("node_modules/oidc-provider/package.json").is_file()
            && dir.join("node_modules/jose/package.json").is_file()
        {
            return;
        }
        let npm = find_on_path("npm").unwrap_or_else(|| {
            panic!("OidcProvider: tests/oidc/node_modules is missing and `npm` is not on PATH (run scripts/test)")
        });
        let out = run_with_timeout(
            Command::new(npm)
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir),
            Duration::from_secs(300),
        )
        .unwrap_or_else(|e| panic!("OidcProvider: npm ci failed: {e}"));
        assert!(
            out.status.success(),
            "OidcProvider: npm ci --prefix tests/oidc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A user of the test provider.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub sub: String,
    /// What the login form takes.
    pub login: String,
    pub password: String,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    /// The `groups` claim as sent: a string or an array of strings (`Value::Null`: none).
    pub groups: Value,
    /// A tamper mode for this user's ID tokens (tests/oidc/README.md): `expired`, `audience`,
    /// `nonce`, `issuer`, `signature`, `hs256`, `none`.
    pub tamper: Option<&'static str>,
}

impl TestUser {
    /// A user whose login, password and `preferred_username` derive from `login`.
    pub fn new(login: &str, groups: Value) -> TestUser {
        TestUser {
            sub: format!("sub-{login}"),
            login: login.to_owned(),
            password: format!("{login}-password"),
            preferred_username: Some(login.to_owned()),
            email: Some(format!("{login}@example.com")),
            groups,
            tamper: None,
        }
    }

    pub fn tampered(login: &str, mode: &'static str) -> TestUser {
        TestUser {
            tamper: Some(mode),
            ..TestUser::new(login, json!(["readers"]))
        }
    }

    fn to_json(&self) -> Value {
        let mut u = json!({ "sub": self.sub, "login": self.login, "password": self.password });
        let obj = u.as_object_mut().expect("object");
        if let Some(p) = &self.preferred_username {
            obj.insert("preferred_username".into(), json!(p));
        }
        if let Some(e) = &self.email {
            obj.insert("email".into(), json!(e));
            obj.insert("email_verified".into(), json!(true));
        }
        if !self.groups.is_null() {
            obj.insert("groups".into(), self.groups.clone());
        }
        if let Some(t) = self.tamper {
            obj.insert("tamper".into(), json!(t));
        }
        u
    }
}

/// Where the provider puts the profile, e-mail and groups claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsIn {
    /// Only the userinfo endpoint (OIDC Core for the code flow; the provider's default).
    UserInfo,
    /// The ID token (the userinfo endpoint is off).
    IdToken,
}

/// What the provider is started with.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub client_id: String,
    /// `None`: a public client (PKCE only).
    pub client_secret: Option<String>,
    pub redirect_uri: Url,
    pub users: Vec<TestUser>,
    pub claims_in: ClaimsIn,
}

impl ProviderConfig {
    pub fn new(redirect_uri: Url, users: Vec<TestUser>) -> ProviderConfig {
        ProviderConfig {
            client_id: "rtconfig-test".into(),
            client_secret: Some("rtconfig-test-client-secret-0123456789".into()),
            redirect_uri,
            users,
            claims_in: ClaimsIn::UserInfo,
        }
    }

    fn to_json(&self, port: u16) -> String {
        let mut client = json!({
            "client_id": self.client_id,
            "redirect_uris": [self.redirect_uri.as_str()],
        });
        if let Some(s) = &self.client_secret {
            client["client_secret"] = json!(s);
        }
        json!({
            "port": port,
            "client": client,
            "users": self.users.iter().map(TestUser::to_json).collect::<Vec<_>>(),
            "claims_in": match self.claims_in {
                ClaimsIn::UserInfo => "userinfo",
                ClaimsIn::IdToken => "id_token",
            },
        })
        .to_string()
    }
}

/// A running `tests/oidc/provider.mjs`.
pub struct OidcProvider {
    config: ProviderConfig,
    issuer: Url,
    port: u16,
    child: Option<(Child, ChildStdin)>,
    // Dropped last.
    dir: TempDir,
}

impl OidcProvider {
    /// Starts the provider on a free port (it binds port 0 itself) and waits for its ready line.
    pub fn start(config: ProviderConfig) -> OidcProvider {
        let dir = tempfile::Builder::new()
            .prefix("rtconfig-oidc-")
            .tempdir()
            .expect("tempdir");
        let mut p = OidcProvider {
            config,
            issuer: Url::parse("http://127.0.0.1:1").expect("url"),
            port: 0,
            child: None,
            dir,
        };
        p.spawn(0);
        p
    }

    /// Stops the provider and starts it again on the same port (the same issuer) with `users`:
    /// a new signing key (and key id), no sessions, no codes.
    pub fn restart_with(&mut self, users: Vec<TestUser>) {
        self.stop();
        self.config.users = users;
        let port = self.port;
        self.spawn(port);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("provider.log")
    }

    fn spawn(&mut self, port: u16) {
        ensure_node_modules();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("provider log");
        let mut child = Command::new(node_binary())
            .arg(provider_dir().join("provider.mjs"))
            .current_dir(provider_dir())
            .env("OIDC_TEST_CONFIG", self.config.to_json(port))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("OidcProvider: cannot start node: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(issuer) = line.strip_prefix("oidc-provider ready issuer=") {
                    let _ = tx.send(issuer.trim().to_owned());
                }
            }
        });
        let issuer = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(i) => i,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "OidcProvider: no ready line within {READY_TIMEOUT:?}; log:\n{}",
                    log_tail(&self.log_path(), 40)
                );
            }
        };
        self.issuer = Url::parse(&issuer).expect("issuer URL");
        self.port = self.issuer.port().expect("issuer port");
        self.child = Some((child, stdin));
    }

    fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The issuer (`http://127.0.0.1:PORT`, as a `Url`: with a `/` path).
    pub fn issuer(&self) -> Url {
        self.issuer.clone()
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The provider's log (stderr), for failure messages.
    pub fn log(&self) -> String {
        log_tail(&self.log_path(), 60)
    }

    /// Signs `user` in at the provider starting from `authorize` (what the relying party's
    /// `begin` returned) and returns the redirect to `redirect_uri` (not followed).
    pub async fn sign_in(&self, authorize: &Url, user: &TestUser) -> Result<Callback, String> {
        sign_in(
            authorize,
            &self.config.redirect_uri,
            &user.login,
            &user.password,
        )
        .await
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The provider's redirect to `redirect_uri`.
#[derive(Debug, Clone)]
pub struct Callback {
    pub url: Url,
    pub code: String,
    pub state: String,
    /// RFC 9207 `iss`, when sent.
    pub iss: Option<String>,
}

/// Cookies by name (enough for one provider on one host; paths are ignored).
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn store(&mut self, resp: &reqwest::Response) {
        for value in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let mut parts = text.split(';');
            let Some((name, val)) = parts.next().and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            let expired = parts.any(|a| {
                let a = a.trim().to_ascii_lowercase();
                a == "max-age=0" || a.starts_with("expires=thu, 01 jan 1970")
            });
            if expired || val.is_empty() {
                self.0.remove(name.trim());
            } else {
                self.0.insert(name.trim().to_owned(), val.trim().to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

enum Step {
    Get(Url),
    Post(Url, Vec<(&'static str, String)>),
}

/// The `action` of the page's form and its `prompt` field.
fn form_of(page: &str) -> Option<(String, String)> {
    let action = page
        .split("action=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_owned();
    let prompt = page
        .split("name=\"prompt\" value=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_owned();
    Some((action, prompt))
}

/// Drives a sign-in over HTTP: GET `authorize`, follow redirects within the provider, fill in
/// the login form (`login`/`password`) and the consent form, and stop at the redirect to
/// `redirect_uri`.
pub async fn sign_in(
    authorize: &Url,
    redirect_uri: &Url,
    login: &str,
    password: &str,
) -> Result<Callback, String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut jar = Jar::default();
    let mut step = Step::Get(authorize.clone());
    let mut trail = Vec::new();
    for _ in 0..20 {
        let (url, req) = match step {
            Step::Get(url) => (url.clone(), http.get(url)),
            Step::Post(url, form) => (url.clone(), http.post(url).form(&form)),
        };
        trail.push(url.path().to_owned());
        let resp = req
            .header(reqwest::header::COOKIE, jar.header())
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        jar.store(&resp);
        let status = resp.status();
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("{url}: {status} without Location"))?;
            let next = url
                .join(location)
                .map_err(|e| format!("Location {location}: {e}"))?;
            if next.as_str().starts_with(redirect_uri.as_str()) {
                let q: BTreeMap<String, String> = next.query_pairs().into_owned().collect();
                if let Some(err) = q.get("error") {
                    return Err(format!(
                        "the provider redirected with error={err} ({})",
                        q.get("error_description").map(String::as_str).unwrap_or("")
                    ));
                }
                return Ok(Callback {
                    code: q.get("code").cloned().ok_or("callback without code")?,
                    state: q.get("state").cloned().ok_or("callback without state")?,
                    iss: q.get("iss").cloned(),
                    url: next,
                });
            }
            step = Step::Get(next);
            continue;
        }
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{url}: {status}: {body}"));
        }
        let (action, prompt) =
            form_of(&body).ok_or_else(|| format!("{url}: a page without a form: {body}"))?;
        let action = url.join(&action).map_err(|e| e.to_string())?;
        step = match prompt.as_str() {
            "login" => Step::Post(
                action,
                vec![
                    ("prompt", "login".into()),
                    ("login", login.into()),
                    ("password", password.into()),
                ],
            ),
            "consent" => Step::Post(action, vec![("prompt", "consent".into())]),
            other => return Err(format!("{url}: unexpected prompt {other}")),
        };
    }
    Err(format!(
        "no redirect to {redirect_uri} after 20 steps: {trail:?}"
    ))
}
