//! The one JSON error shape of every API: `{"error":{"code","message","details"?,"request_id"?}}`.
//!
//! `code` is stable (clients branch on it); `message` is for humans. Extractor rejections are
//! mapped here so malformed input gets the same shape as everything else, and in the client's
//! terms: a body of the wrong shape is described in JSON words ([`JsonBody::SHAPE`], "an
//! object", "a number"), never with the Rust type names serde's messages carry.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// An API error: status, stable code, message, optional details.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Boxed: keeps `Result<_, ApiError>` small on the happy path.
    pub details: Option<Box<Value>>,
    /// Seconds for `Retry-After` (503, 429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(Box::new(details));
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn unknown_namespace(ns: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_namespace",
            format!("no namespace named {ns:?}"),
        )
    }

    pub fn unknown_key(key: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_key",
            format!("no config key named {key:?}"),
        )
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this method is not allowed on this path",
        )
    }

    /// The body, with the request id when known.
    pub fn body(&self, request_id: Option<&str>) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.details {
            error["details"] = (**d).clone();
        }
        if let Some(id) = request_id {
            error["request_id"] = Value::String(id.to_owned());
        }
        json!({ "error": error })
    }

    pub fn to_response(&self, request_id: Option<&str>) -> Response {
        let body = serde_json::to_vec(&self.body(request_id)).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = self.to_response(None);
        // Kept so a middleware can re-render the body with the request id.
        resp.extensions_mut().insert(self);
        resp
    }
}

/// The largest request body [`ApiJson`] is meant for; the admin router enforces it
/// (`DefaultBodyLimit`), and a larger body is answered with [`body_too_large`].
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// A JSON request body, and how to tell a client what it must look like.
pub trait JsonBody: DeserializeOwned {
    /// The expected shape in the client's words, e.g. `the body must be a JSON object with
    /// "to_version" (a number) and optionally "comment" (a string)`.
    const SHAPE: &'static str;
}

/// `Json<T>` whose rejections are [`ApiError`]s with our codes.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: JsonBody,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection, T::SHAPE)),
        }
    }
}

/// Maps a JSON extractor's rejection; `shape` describes the expected body (422 messages).
pub fn json_rejection(rejection: JsonRejection, shape: &str) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => {
            let message = match path_error(&e) {
                Some(e) => format!(
                    "{shape}: {}",
                    plain_problem(&e.path().to_string(), &e.inner().to_string())
                ),
                None => shape.to_owned(),
            };
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            body_too_large()
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
        other => ApiError::bad_request("malformed_body", other.body_text()),
    }
}

/// 413 `body_too_large`, naming [`BODY_LIMIT_BYTES`].
pub fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "the request body is larger than the limit ({})",
            bytes_in_words(BODY_LIMIT_BYTES)
        ),
    )
    .with_details(json!({ "limit_bytes": BODY_LIMIT_BYTES }))
}

/// `1048576` → `1 MiB`, `65536` → `64 KiB`, otherwise `N bytes`.
fn bytes_in_words(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// The error serde gave, with the path to the offending field (axum keeps it as the
/// rejection's source).
fn path_error<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e serde_path_to_error::Error<serde_json::Error>> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// What is wrong with a body, in JSON terms, from the path of the field (`.` for the body
/// itself, `expected.SITE_NAME`, `items[0]`) and serde's message (which names Rust types:
/// "expected struct PatchBody", "expected u64"). Unrecognised messages keep only the part
/// before serde's ", expected …".
fn plain_problem(path: &str, message: &str) -> String {
    let message = message
        .rfind(" at line ")
        .map_or(message, |i| &message[..i]);
    let whose = |what: &str| -> String {
        if path == "." {
            what.to_owned()
        } else {
            format!("{what} in \"{path}\"")
        }
    };
    if let Some(field) = backticked(message, "unknown field `") {
        // The path ends with the unknown field itself; name the object that holds it.
        let holder = path
            .strip_suffix(field)
            .map(|p| p.strip_suffix('.').unwrap_or(p))
            .unwrap_or(path);
        let what = format!("unknown field \"{field}\"");
        return if holder.is_empty() || holder == "." {
            what
        } else {
            format!("{what} in \"{holder}\"")
        };
    }
    if let Some(field) = backticked(message, "missing field `") {
        return whose(&format!("\"{field}\" is missing"));
    }
    if message.starts_with("invalid length ") {
        // serde takes a struct from an array too; an array of the wrong length lands here.
        return if path == "." {
            "got an array".to_owned()
        } else {
            format!("\"{path}\" is an array of the wrong length")
        };
    }
    let mismatch = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    if let Some(rest) = mismatch {
        let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let got = json_words(got);
        return match (path, plain_expected(expected)) {
            (".", _) => format!("got {got}"),
            (_, Some(expected)) => format!("\"{path}\" must be {expected}, not {got}"),
            (_, None) => format!("\"{path}\" cannot be {got}"),
        };
    }
    let head = message
        .split_once(", expected ")
        .map_or(message, |(head, _)| head);
    whose(head)
}

/// The text between `prefix` and the next backtick.
fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(name, _)| name)
}

/// serde's description of a JSON value (`integer `5``, `sequence`) in JSON words.
fn json_words(unexpected: &str) -> String {
    let quoted = |prefix: &str| {
        unexpected
            .strip_prefix(prefix)
            .map(|v| v.trim_matches('`').to_owned())
    };
    if let Some(n) = quoted("integer ").or_else(|| quoted("floating point ")) {
        return format!("the number {n}");
    }
    if let Some(b) = quoted("boolean ") {
        return b;
    }
    if let Some(s) = unexpected.strip_prefix("string ") {
        return format!("the string {s}");
    }
    match unexpected {
        "sequence" => "an array".into(),
        "map" => "an object".into(),
        "null" | "unit value" | "unit" => "null".into(),
        other => other.into(),
    }
}

/// What serde expected, in JSON words, when it is one of the shapes our bodies use.
fn plain_expected(expected: &str) -> Option<&'static str> {
    let expected = expected.trim();
    Some(match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a string" => "a string",
        "a boolean" => "true or false",
        "a map" => "an object",
        "a sequence" => "an array",
        _ if expected.starts_with("struct ") => "an object",
        _ => return None,
    })
}

/// `Query<T>` whose rejections are [`ApiError`]s (`invalid_query`).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    // axum's text starts with "Failed to deserialize query string: "; keep only what names
    // the parameter and the problem.
    let text = rejection.body_text();
    let detail = text
        .split_once(": ")
        .map_or(text.as_str(), |(_, rest)| rest);
    ApiError::bad_request(
        "invalid_query",
        format!("the query string is not valid: {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::body::Body;

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct WriteBody {
        changes: serde_json::Map<String, Value>,
        expected_version: Option<u64>,
        #[serde(default)]
        expected: BTreeMap<String, u64>,
    }

    impl JsonBody for WriteBody {
        const SHAPE: &'static str = "the body must be a JSON object with \"changes\"";
    }

    async fn rejected(body: &str) -> ApiError {
        let request = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
        match ApiJson::<WriteBody>::from_request(request, &()).await {
            Ok(ApiJson(v)) => panic!("{body} was accepted as {v:?}"),
            Err(e) => e,
        }
    }

    /// Real serde messages, through the real extractor: no Rust type names reach the client.
    #[tokio::test]
    async fn a_body_of_the_wrong_shape_is_described_in_json_terms() {
        let cases = [
            ("[]", "got an array"),
            ("5", "got the number 5"),
            ("{}", "\"changes\" is missing"),
            (
                "{\"changes\": 5}",
                "\"changes\" must be an object, not the number 5",
            ),
            (
                "{\"changes\": [\"A\"]}",
                "\"changes\" must be an object, not an array",
            ),
            ("{\"SITE_NAME\": \"x\"}", "unknown field \"SITE_NAME\""),
            (
                "{\"changes\": {}, \"expected_version\": \"one\"}",
                "\"expected_version\" must be a whole number, 0 or more, not the string \"one\"",
            ),
            (
                "{\"changes\": {}, \"expected_version\": -1}",
                "\"expected_version\" must be a whole number, 0 or more, not the number -1",
            ),
            (
                "{\"changes\": {}, \"expected\": {\"A\": true}}",
                "\"expected.A\" must be a whole number, 0 or more, not true",
            ),
        ];
        for (body, problem) in cases {
            let e = rejected(body).await;
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(e.code, "invalid_body", "{body}");
            assert_eq!(
                e.message,
                format!("{}: {problem}", WriteBody::SHAPE),
                "{body}"
            );
            for rust in ["struct", "WriteBody", "u64", "usize", "line 1"] {
                assert!(!e.message.contains(rust), "{body}: {}", e.message);
            }
        }
    }

    #[test]
    fn unrecognised_serde_messages_lose_their_expected_part() {
        assert_eq!(
            plain_problem(
                "value",
                "something odd, expected enum Mode at line 1 column 9"
            ),
            "something odd in \"value\""
        );
        assert_eq!(
            plain_problem("value", "invalid type: map, expected enum Mode"),
            "\"value\" cannot be an object"
        );
        assert_eq!(plain_problem(".", "custom failure"), "custom failure");
        assert_eq!(
            plain_problem("meta.extra", "unknown field `extra`, expected `a` or `b`"),
            "unknown field \"extra\" in \"meta\""
        );
    }

    #[test]
    fn body_too_large_names_the_limit_constant() {
        let e = body_too_large();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            e.message,
            "the request body is larger than the limit (1 MiB)"
        );
        assert_eq!(
            e.details.as_deref(),
            Some(&json!({ "limit_bytes": BODY_LIMIT_BYTES }))
        );
        assert_eq!(bytes_in_words(64 * 1024), "64 KiB");
        assert_eq!(bytes_in_words(1000), "1000 bytes");
    }
}
