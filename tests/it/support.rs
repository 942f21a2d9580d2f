//! Support for the `dev_*` tests: the real composition root (`rtconfig::app::start_dev`) on
//! port 0 with a fresh data dir, a small HTTP client, a Server-Sent Events reader, and JSON
//! helpers.
//!
//! Nothing here sleeps to synchronise: waits are bounded by [`WITHIN`] and either wait for an
//! answer or poll with [`crate::harness::eventually`].

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use rtconfig::app::{start_dev, DevParts, DevSettings, Running};
use serde_json::{json, Value};
use tempfile::TempDir;

/// How long anything that should be prompt may take before a test fails.
pub const WITHIN: Duration = Duration::from_secs(5);

/// The namespace the demo schema defines and `dev` serves.
pub const NS: &str = "demo";

/// The repository's `config/` (the demo schema).
pub fn demo_schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// A schema dir holding the demo schema plus a secret key `DB_PASSWORD` (group General,
/// `pattern = "^[a-z0-9]*$"`, so a value can be invalid without the error showing it).
pub fn schema_with_secret() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = std::fs::read_to_string(demo_schema_dir().join("demo.toml")).expect("demo.toml");
    let general = r#"keys = ["SITE_NAME", "THEME_COLOR", "MAINTENANCE_MODE"]"#;
    assert!(demo.contains(general), "demo.toml's General group changed");
    let text = demo.replace(
        general,
        r#"keys = ["SITE_NAME", "THEME_COLOR", "MAINTENANCE_MODE", "DB_PASSWORD"]"#,
    ) + r#"
[keys.DB_PASSWORD]
type = "string"
default = ""
description = "Database password"
pattern = "^[a-z0-9]*$"
max_length = 64
secret = true
"#;
    std::fs::write(dir.path().join("demo.toml"), text).expect("write schema");
    dir
}

/// A running `rtconfig dev` on ephemeral ports, with its own data dir.
pub struct Dev {
    running: Option<Running<DevParts>>,
    pub settings: DevSettings,
    /// A client that sends the dev token (`<data-dir>/dev-token`) on every request.
    pub client: reqwest::Client,
    /// A client without credentials.
    pub anon: reqwest::Client,
    /// The admin API token `dev` wrote to `<data-dir>/dev-token`.
    pub token: String,
    /// `http://127.0.0.1:<port>` of the sidecar read API, the admin and the probe listener.
    pub read: String,
    pub admin: String,
    pub probe: String,
    _data: TempDir,
    _schema: Option<TempDir>,
}

impl Dev {
    /// `dev` on the demo schema.
    pub async fn start() -> Dev {
        Dev::start_with(None, |_| {}).await
    }

    /// `dev` on the demo schema plus the secret `DB_PASSWORD`.
    pub async fn start_with_secret() -> Dev {
        Dev::start_with(Some(schema_with_secret()), |_| {}).await
    }

    /// `dev` on `schema` (the demo schema when `None`), with settings adjusted by `tweak`.
    pub async fn start_with(schema: Option<TempDir>, tweak: impl FnOnce(&mut DevSettings)) -> Dev {
        let data = tempfile::tempdir().expect("tempdir");
        let schema_dir = schema
            .as_ref()
            .map_or_else(demo_schema_dir, |d| d.path().to_path_buf());
        let mut settings = DevSettings::for_tests(schema_dir, data.path().join("data"));
        tweak(&mut settings);
        let running = start_dev(settings.clone()).await.expect("start dev");
        let token = dev_token(&settings);
        let mut dev = Dev {
            read: String::new(),
            admin: String::new(),
            probe: String::new(),
            running: None,
            settings,
            client: client_with_token(&token),
            anon: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            token,
            _data: data,
            _schema: schema,
        };
        dev.attach(running);
        dev
    }

    fn attach(&mut self, running: Running<DevParts>) {
        self.read = format!("http://{}", running.read_addr);
        self.admin = format!("http://{}", running.admin_addr);
        self.probe = format!("http://{}", running.probe_addr);
        self.running = Some(running);
    }

    /// Stops the process's servers (graceful: streams end, in-flight requests finish).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// Stops and starts again on the same data dir and schema (new ports).
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = start_dev(self.settings.clone()).await.expect("restart dev");
        self.attach(running);
    }

    /// The running instance's access layer (to seed users for the browser tests).
    pub fn auth(&self) -> std::sync::Arc<rtconfig::auth::Auth> {
        self.running.as_ref().expect("dev is running").auth.clone()
    }

    pub fn read_url(&self, path: &str) -> String {
        format!("{}{path}", self.read)
    }

    /// `/api/v1{path}` on the admin.
    /// The schema dir this instance loads (a temp dir when the test made its own).
    pub fn schema_dir(&self) -> &Path {
        &self.settings.schema_dir
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.admin)
    }

    /// `/api/v1/namespaces/demo{path}` on the admin.
    pub fn ns_url(&self, path: &str) -> String {
        self.api_url(&format!("/namespaces/{NS}{path}"))
    }

    pub fn request(&self, method: Method, url: impl AsRef<str>) -> RequestBuilder {
        self.client.request(method, url.as_ref())
    }

    pub async fn get(&self, url: impl AsRef<str>) -> Resp {
        send(self.client.get(url.as_ref())).await
    }

    /// `PATCH /api/v1/namespaces/demo/configs` with `body` as is.
    pub async fn patch_body(&self, body: Value) -> Resp {
        send(self.client.patch(self.ns_url("/configs")).json(&body)).await
    }

    /// `PATCH …/configs` with `{"changes": changes}`.
    pub async fn patch(&self, changes: Value) -> Resp {
        self.patch_body(json!({ "changes": changes })).await
    }

    /// A PATCH that must succeed; returns the new version.
    pub async fn write(&self, changes: Value) -> u64 {
        let resp = self.patch(changes).await.expect_status(200);
        resp.json()["version"]
            .as_u64()
            .expect("version in write answer")
    }

    /// The namespace's current version, from the admin.
    pub async fn admin_version(&self) -> u64 {
        let body = self
            .get(self.ns_url("/configs"))
            .await
            .expect_status(200)
            .json();
        body["version"].as_u64().expect("version")
    }

    /// `GET /v1/configs` → the `values` object.
    pub async fn sidecar_values(&self) -> Value {
        self.get(self.read_url("/v1/configs"))
            .await
            .expect_status(200)
            .json()["values"]
            .clone()
    }

    /// `GET …/history{query}` → the body.
    pub async fn history(&self, query: &str) -> Value {
        self.get(self.ns_url(&format!("/history{query}")))
            .await
            .expect_status(200)
            .json()
    }

    /// `GET /status` on the probe listener.
    pub async fn status(&self) -> Value {
        self.get(format!("{}/status", self.probe))
            .await
            .expect_status(200)
            .json()
    }

    /// Waits until `n` long-polls or streams are open (so a write that follows is one they
    /// must see).
    pub async fn await_watchers(&self, n: u64) {
        crate::harness::eventually(WITHIN, &format!("{n} open watcher(s)"), || async {
            (self.status().await["watchers"].as_u64() == Some(n)).then_some(())
        })
        .await;
    }

    /// Opens `GET /v1/watch{query}`, with `Last-Event-ID` when given.
    pub async fn watch(&self, query: &str, last_event_id: Option<&str>) -> Sse {
        let mut rb = self.client.get(self.read_url(&format!("/v1/watch{query}")));
        if let Some(id) = last_event_id {
            rb = rb.header("last-event-id", id);
        }
        Sse::open(rb).await
    }
}

/// The token `dev` wrote to `<data-dir>/dev-token` at its first start.
fn dev_token(settings: &DevSettings) -> String {
    std::fs::read_to_string(settings.data_dir.join("dev-token"))
        .expect("dev wrote <data-dir>/dev-token")
        .trim()
        .to_owned()
}

/// A client sending `Authorization: Bearer <token>` on every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A whole HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends and reads the whole answer (of a `text/event-stream`, which never ends by itself,
/// only the status and headers: the stream is dropped).
pub async fn send(rb: RequestBuilder) -> Resp {
    let resp = tokio::time::timeout(Duration::from_secs(30), rb.send())
        .await
        .expect("answer within 30 s")
        .expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let streaming = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let body = if streaming {
        Bytes::new()
    } else {
        resp.bytes().await.expect("body")
    };
    Resp {
        status,
        headers,
        body,
    }
}

impl Resp {
    /// Panics (showing the body) unless the status is `status`.
    #[track_caller]
    pub fn expect_status(self, status: u16) -> Resp {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the DESIGN §6 error shape and the status; returns the `error` object.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        assert!(
            self.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "error bodies are JSON, got {:?}",
            self.header("content-type")
        );
        let body = self.json();
        let error = body["error"].clone();
        assert_eq!(error["code"], code, "error code; body: {body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "errors carry a message: {body}"
        );
        error
    }

    /// Asserts the `X-Config-*` headers of a read, returns `(epoch, version)` from them.
    #[track_caller]
    pub fn expect_read_headers(&self) -> (u64, u64) {
        let num = |name: &str| -> u64 {
            self.header(name)
                .unwrap_or_else(|| panic!("{name} missing; headers: {:?}", self.headers))
                .parse()
                .unwrap_or_else(|e| panic!("{name} is not a number: {e}"))
        };
        let version = num("x-config-version");
        let epoch = num("x-config-epoch");
        assert_eq!(
            self.header("x-config-source"),
            Some("local"),
            "dev serves source=local"
        );
        assert_eq!(
            self.header("x-config-stale"),
            Some("false"),
            "dev is never stale"
        );
        assert_eq!(
            self.header("x-config-age"),
            Some("0"),
            "dev's in-process state is always current"
        );
        (epoch, version)
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl Event {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An open `text/event-stream`, parsed per the SSE spec (fields `event`, `id`, `data`;
/// comments and keep-alives skipped).
pub struct Sse {
    pub headers: HeaderMap,
    stream: ByteStream,
    buf: Vec<u8>,
}

impl Sse {
    /// Sends the request and checks that a stream was opened.
    pub async fn open(rb: RequestBuilder) -> Sse {
        let resp = tokio::time::timeout(WITHIN, rb.send())
            .await
            .expect("stream opened in time")
            .expect("stream request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        assert_eq!(status, 200, "watch refused");
        assert!(
            headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("text/event-stream")),
            "content type {:?}",
            headers.get("content-type")
        );
        Sse {
            headers,
            stream: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
        }
    }

    /// The next event, `None` when the server ended the stream. Panics after [`WITHIN`].
    pub async fn next(&mut self) -> Option<Event> {
        tokio::time::timeout(WITHIN, self.next_untimed())
            .await
            .expect("an SSE event (or the end of the stream) in time")
    }

    /// The next event within `deadline` (for waits longer than [`WITHIN`]).
    pub async fn next_within(&mut self, deadline: Duration) -> Option<Event> {
        tokio::time::timeout(deadline, self.next_untimed())
            .await
            .expect("an SSE event (or the end of the stream) in time")
    }

    /// The next event, which must be of type `event`.
    pub async fn expect_event(&mut self, event: &str) -> Event {
        let e = self.next().await.expect("stream still open");
        assert_eq!(e.event, event, "event type; got {e:?}");
        e
    }

    async fn next_untimed(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.take_event() {
                return Some(event);
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Parses one complete event out of the buffer, skipping blocks with no data (comments).
    fn take_event(&mut self) -> Option<Event> {
        loop {
            let end = self.buf.windows(2).position(|w| w == b"\n\n")?;
            let block: Vec<u8> = self.buf.drain(..end + 2).collect();
            let block = String::from_utf8(block).expect("SSE is UTF-8");
            let mut event = Event {
                event: "message".into(),
                id: None,
                data: String::new(),
            };
            let mut has_data = false;
            for line in block.lines() {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.is_empty() || line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.event = value.to_owned(),
                    "id" => event.id = Some(value.to_owned()),
                    "data" => {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if has_data {
                return Some(event);
            }
        }
    }
}

/// The metric families (`# TYPE rtconfig_<name> …`, without the prefix) of a `/metrics` text.
pub fn metric_families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE rtconfig_"))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// Asserts that `text` carries every family of `present` and none starting with a prefix of
/// `absent`.
pub fn assert_families(role: &str, text: &str, present: &[&str], absent: &[&str]) {
    let found = metric_families(text);
    for name in present {
        assert!(
            found.iter().any(|f| f == name),
            "{role}: missing rtconfig_{name} in {found:?}"
        );
    }
    for f in &found {
        assert!(
            !absent.iter().any(|p| f.starts_with(p)),
            "{role}: exports rtconfig_{f}, which it does not run"
        );
    }
}

/// The `<input type="hidden" name=… value=…>` fields of an HTML page, values unescaped: what a
/// browser sends back when the form is submitted (tests that drive the web UI's forms over
/// plain HTTP).
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let value = rest.split_once("value=\"")?.1.split_once('"')?.0;
            Some((name.to_owned(), unescape(value)))
        })
        .collect()
}

/// The text of an HTML attribute value (askama escapes `& < > " '`).
pub fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..end];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}
