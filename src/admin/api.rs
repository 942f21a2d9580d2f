//! Handlers of the admin JSON API. Shapes are DESIGN §6's; secrets are masked in every output.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::write::{comment_check, ledger_error, validate, WriteRequest};
use super::AdminState;
use crate::auth::guard::{sees, RequestInfo};
use crate::auth::Principal;
use crate::http::error::JsonBody;
use crate::http::headers::IDEMPOTENCY_KEY;
use crate::http::{ApiError, ApiJson, ApiQuery, NoQuery};
use crate::ledger::{Change, ChangeMeta, Committed};
use crate::schema::{is_mask, Schema, Sent};
use crate::telemetry::Chain;

const MAX_COMMENT_CHARS: usize = 1000;
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

type ApiResult = Result<Response, ApiError>;

/// Who is writing, from where, and with which idempotency key: taken from the request.
pub struct WriteContext {
    pub(crate) meta: ChangeMeta,
    pub(crate) idempotency_key: Option<String>,
}

impl FromRequestParts<Arc<AdminState>> for WriteContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AdminState>,
    ) -> Result<Self, Self::Rejection> {
        let text = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let idempotency_key = text(IDEMPOTENCY_KEY.as_str());
        if let Some(k) = &idempotency_key {
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_BYTES {
                return Err(ApiError::bad_request(
                    "invalid_idempotency_key",
                    format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
                ));
            }
        }
        let principal = Principal::from_request_parts(parts, state).await?;
        let info = RequestInfo::from_request_parts(parts, state).await?;
        Ok(WriteContext {
            meta: ChangeMeta {
                actor: principal.actor(),
                comment: String::new(),
                request_id: info.request_id.unwrap_or_default(),
                token_id: principal.token_id().map(str::to_owned),
                client_ip: info.ip.map(|ip| ip.to_string()),
                user_agent: info.user_agent,
            },
            idempotency_key,
        })
    }
}

impl WriteContext {
    pub(crate) fn with_comment(mut self, comment: Option<String>) -> Result<Self, ApiError> {
        let comment = comment.unwrap_or_default();
        if comment.chars().count() > MAX_COMMENT_CHARS {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_comment",
                format!("comment is longer than {MAX_COMMENT_CHARS} characters"),
            ));
        }
        self.meta.comment = comment;
        Ok(self)
    }

    /// Who writes (with the comment), and the request's `Idempotency-Key`.
    pub(crate) fn into_parts(self) -> (ChangeMeta, Option<String>) {
        (self.meta, self.idempotency_key)
    }
}

fn ok(body: Value) -> Response {
    Json(body).into_response()
}

impl AdminState {
    /// The namespace's current values from the ledger (a store error as the API's error).
    pub(crate) async fn current(&self, ns: &str) -> Result<crate::ledger::CurrentValues, ApiError> {
        self.write.ledger.current(ns).await.map_err(ledger_error)
    }

    pub(crate) fn mask(&self, schema: &Schema, key: &str, value: Option<&Value>) -> Value {
        match schema.key(key) {
            Some(def) if def.secret => self.masker.mask(&schema.namespace, key, value),
            _ => value.cloned().unwrap_or(Value::Null),
        }
    }

    fn change_json(&self, schema: &Schema, c: &Change) -> Value {
        json!({
            "key": c.key,
            "old": self.mask(schema, &c.key, c.old.as_ref()),
            "new": self.mask(schema, &c.key, c.new.as_ref()),
        })
    }

    fn changes_json(&self, schema: &Schema, changes: &[Change]) -> Value {
        changes
            .iter()
            .map(|c| self.change_json(schema, c))
            .collect()
    }

    pub(crate) fn committed_json(&self, schema: &Schema, c: &Committed) -> Value {
        json!({
            "version": c.state.version,
            "epoch": c.state.epoch,
            "changes": self.changes_json(schema, &c.changes),
            "replayed": c.replayed,
        })
    }
}

/// `GET /api/v1/namespaces`: the namespaces the caller has a role in.
pub async fn namespaces(
    State(state): State<Arc<AdminState>>,
    _: NoQuery,
    principal: Principal,
) -> ApiResult {
    let grants = principal.grants();
    let mut out = Vec::new();
    let mut states = Vec::new();
    for schema in state.write.schemas.iter() {
        if !sees(&grants, &schema.namespace) {
            continue;
        }
        let ns = state
            .write
            .ledger
            .namespace_state(&schema.namespace)
            .await
            .map_err(ledger_error)?;
        states.push((schema.namespace.clone(), ns));
        out.push(json!({
            "name": schema.namespace,
            "description": schema.description,
            "epoch": ns.epoch,
            "version": ns.version,
            "keys": schema.len(),
            "schema_hash": schema.hash,
        }));
    }
    // The fleet columns, read side by side; a fleet that cannot be read leaves the list whole.
    let summaries = futures_util::future::join_all(
        states
            .iter()
            .map(|(name, ns)| super::fleet::summary(&state, name, *ns)),
    )
    .await;
    for (entry, summary) in out.iter_mut().zip(summaries) {
        match summary {
            Ok(s) => entry["fleet"] = json!(s),
            Err(e) => {
                entry["fleet"] = Value::Null;
                entry["fleet_error"] = json!(e.message);
            }
        }
    }
    Ok(ok(json!({ "namespaces": out })))
}

fn config_json(
    state: &AdminState,
    schema: &Schema,
    def: &crate::schema::KeyDef,
    stored: Option<&crate::ledger::StoredValue>,
) -> Value {
    let value = stored.and_then(|s| s.value.as_ref());
    let default = def.default.value();
    let effective = value.unwrap_or(&default);
    json!({
        "key": def.name,
        "type": def.ty.as_str(),
        "group": &*def.group,
        "description": def.description,
        "default": state.mask(schema, &def.name, Some(&default)),
        "value": state.mask(schema, &def.name, Some(effective)),
        "modified": value.is_some(),
        "secret": def.secret,
        "version": stored.map_or(0, |s| s.version),
        "constraints": def.constraints_json(),
    })
}

/// `GET /api/v1/namespaces/{ns}/configs`
pub async fn configs(
    State(state): State<Arc<AdminState>>,
    _: NoQuery,
    Path(ns): Path<String>,
) -> ApiResult {
    let schema = state.write.schema(&ns)?.clone();
    let current = state.current(&ns).await?;
    let configs: Vec<Value> = schema
        .keys()
        .iter()
        .map(|def| config_json(&state, &schema, def, current.values.get(&*def.name)))
        .collect();
    let groups: Vec<Value> = schema
        .groups
        .iter()
        .map(|g| json!({"name": g.name, "keys": g.keys}))
        .collect();
    Ok(ok(json!({
        "namespace": ns,
        "description": schema.description,
        "require_comment": schema.require_comment,
        "epoch": current.state.epoch,
        "version": current.state.version,
        "groups": groups,
        "configs": configs,
    })))
}

/// `GET /api/v1/namespaces/{ns}/configs/{key}`
pub async fn config(
    State(state): State<Arc<AdminState>>,
    _: NoQuery,
    Path((ns, key)): Path<(String, String)>,
) -> ApiResult {
    let schema = state.write.schema(&ns)?.clone();
    let def = schema
        .key(&key)
        .ok_or_else(|| ApiError::unknown_key(&key))?;
    let current = state.current(&ns).await?;
    let mut v = config_json(&state, &schema, def, current.values.get(&key));
    v["namespace_version"] = json!(current.state.version);
    Ok(ok(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    changes: indexmap::IndexMap<String, Sent>,
    expected_version: Option<u64>,
    #[serde(default)]
    expected: BTreeMap<String, u64>,
    comment: Option<String>,
}

impl JsonBody for PatchBody {
    const SHAPE: &'static str = "the body must be a JSON object with \"changes\" (an object of key → new value, null to reset a key to its default), and optionally \"expected_version\" (a number), \"expected\" (an object of key → version) and \"comment\" (a string)";
}

/// `PATCH /api/v1/namespaces/{ns}/configs`
pub async fn patch_configs(
    State(state): State<Arc<AdminState>>,
    _: NoQuery,
    Path(ns): Path<String>,
    ctx: WriteContext,
    ApiJson(body): ApiJson<PatchBody>,
) -> ApiResult {
    let schema = state.write.schema(&ns)?.clone();
    let ctx = ctx.with_comment(body.comment)?;
    let committed = state
        .write
        .write(
            &ns,
            WriteRequest {
                changes: exact(&schema, body.changes),
                expected_version: body.expected_version,
                expected_keys: body.expected,
                meta: ctx.meta,
                idempotency_key: ctx.idempotency_key,
            },
        )
        .await?;
    Ok(ok(state.committed_json(&schema, &committed)))
}

/// Each sent value as it is to be validated: a decimal's JSON number as its exact text
/// (`schema::value::Sent`).
fn exact(schema: &Schema, sent: indexmap::IndexMap<String, Sent>) -> Vec<(String, Value)> {
    sent.into_iter()
        .map(|(key, v)| {
            let value = v.exact(schema.key(&key));
            (key, value)
        })
        .collect()
}

/// Distinguishes a missing field (`None`) from an explicit `null` (`Some(Null)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Sent>, D::Error> {
    Sent::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    #[serde(default, deserialize_with = "present")]
    value: Option<Sent>,
    expected_version: Option<u64>,
    /// The key's own version, as `expected` in a PATCH.
    expected_key_version: Option<u64>,
    comment: Option<String>,
}

impl JsonBody for PutBody {
    const SHAPE: &'static str = "the body must be a JSON object with \"value\" (the new value, null to reset to the default), and optionally \"expected_version\" or \"expected_key_version\" (a number) and \"comment\" (a string)";
}

/// `PUT /api/v1/namespaces/{ns}/configs/{key}`
pub async fn put_config(
    State(state): State<Arc<AdminState>>,
    _: NoQuery,
    Path((ns, key)): Path<(String, String)>,
    ctx: WriteContext,
    ApiJson(body): ApiJson<PutBody>,
) -> ApiResult {
    let schema = state.write.schema(&ns)?.clone();
    if schema.key(&key).is_none() {
        return Err(ApiError::unknown_key(&key));
    }
    let Some(value) = body.value else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "the body needs a \"value\" (null resets to the default)",
        ));
    };
    let ctx = ctx.with_comment(body.comment)?;
    let committed = state
        .write
        .write(
            &ns,
            WriteRequest {
                changes: vec![(key.clone(), value.exact(schema.key(&key)))],
                expected_version: body.expected_version,
                expected_keys: body
                    .expected_key_version
                    .map(|v| BTreeMap::from([(key, v)]))
                    .unwrap_or_default(),
                meta: ctx.meta,
                idempotency_key: ctx.idempotency_key,
            },
        )
        .await?;
    Ok(ok(state.committed_json(&schema, &committed)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    expected_version: Option<u64>,
    comment: Option<String>,
}

/// `DELETE /api/v1/namespaces/{ns}/configs/{key}`: reset to the default.
pub async fn delete_config(
    State(state): State<Arc<AdminState>>,
    Path((ns, key)): Path<(String, String)>,
    ctx: WriteContext,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult {
    let schema = state.write.schema(&ns)?.clone();
    if schema.key(&key).is_none() {
        return Err(ApiError::unknown_key(&key));
    }
    let ctx = ctx.with_comment(q.comment)?;
    let committed = state
        .write
        .write(
            &ns,
            WriteRequest {
                changes: vec![(key, Value::Null)],
                expected_version: q.expected_version,
                meta: ctx.meta,
                idempotency_key: ctx.idempotency_key,
                ..WriteRequest::default()
            },
        )
        .await?;
    Ok(ok(state.committed_json(&schema, &committed)))
}

/// `GET /api/v1/namespaces/{ns}/sidecars`: the fleet view ([`super::fleet`]).
pub async fn sidecars(
    State(state): State<Arc<AdminState>>,
    _: NoQuery,
    Path(ns): Path<String>,
) -> ApiResult {
    let view = super::fleet::view(&state, &ns).await?;
    Ok(Json(view).into_response())
}

/// `GET /api/v1/namespaces/{ns}/constance`: the django-constance mirror's status for `ns`
/// (`enabled: false` when the mirror is off or maps another namespace).
pub async fn constance(
    State(state): State<Arc<AdminState>>,
    _: NoQuery,
    Path(ns): Path<String>,
) -> ApiResult {
    state.write.schema(&ns)?;
    let status = state.constance.read().clone();
    let status = if status.enabled && status.namespace.as_deref() == Some(ns.as_str()) {
        status
    } else {
        crate::constance::mirror::MirrorStatus::default()
    };
    Ok(Json(status).into_response())
}

/// `GET /api/v1/namespaces/{ns}/export`: the stored (non-default) values; secrets masked.
pub async fn export(
    State(state): State<Arc<AdminState>>,
    _: NoQuery,
    Path(ns): Path<String>,
) -> ApiResult {
    Ok(ok(export_document(&state, &ns).await?))
}

/// The export document of `ns` (secrets masked): what `GET …/export` answers and the UI's
/// "Download export" serves.
pub(crate) async fn export_document(state: &AdminState, ns: &str) -> Result<Value, ApiError> {
    let schema = state.write.schema(ns)?.clone();
    let current = state.current(ns).await?;
    let values: serde_json::Map<String, Value> = current
        .stored()
        .map(|(k, v)| (k.to_owned(), state.mask(&schema, k, Some(v))))
        .collect();
    Ok(json!({
        "namespace": ns,
        "epoch": current.state.epoch,
        "version": current.state.version,
        "values": values,
    }))
}

#[derive(Deserialize)]
pub struct ImportBody {
    pub(crate) values: indexmap::IndexMap<String, Sent>,
    pub(crate) comment: Option<String>,
    /// Apply only if the namespace is still at this version (the one the dry run showed);
    /// otherwise `409 version_conflict` and nothing is written.
    #[serde(default)]
    pub(crate) expected_version: Option<u64>,
    /// Export documents carry these; they are accepted and ignored.
    #[serde(default, rename = "namespace")]
    _namespace: Option<Value>,
    #[serde(default, rename = "epoch")]
    _epoch: Option<Value>,
    #[serde(default, rename = "version")]
    _version: Option<Value>,
}

impl JsonBody for ImportBody {
    const SHAPE: &'static str = "the body must be a JSON object with \"values\" (an object of key → value; an export document as it is) and optionally \"comment\" (a string)";
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/v1/namespaces/{ns}/import?dry_run=true`: sets the given values as one changeset
/// (or, with `dry_run`, only shows the diff). Masked secrets in the document are left as they are.
pub async fn import(
    State(state): State<Arc<AdminState>>,
    Path(ns): Path<String>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    ctx: WriteContext,
    ApiJson(body): ApiJson<ImportBody>,
) -> ApiResult {
    let schema = state.write.schema(&ns)?.clone();
    // Checked before the dry run, so a dry run refuses what the real import would. Without a
    // comment an import says "import" — unless the schema wants a real one.
    let comment = match body.comment {
        Some(c) => c,
        None if schema.require_comment => String::new(),
        None => "import".into(),
    };
    if q.dry_run {
        let plan = plan_import(&state, &schema, body.values).await?;
        // The comment's own checks (length) apply to a dry run too.
        ctx.with_comment(Some(comment))?;
        // A secret that is set is always "replaced", equal or not, and its new value's
        // fingerprint is not shown: either would confirm a guess of the stored secret.
        let diff: Vec<Value> = plan
            .changes
            .iter()
            .map(|c| {
                if c.secret_replace {
                    json!({
                        "key": c.change.key,
                        "secret": true,
                        "action": "replace",
                        "old": state.mask(&schema, &c.change.key, c.change.old.as_ref()),
                    })
                } else {
                    state.change_json(&schema, &c.change)
                }
            })
            .collect();
        return Ok(ok(json!({
            "dry_run": true,
            "version": plan.version,
            "changes": diff,
        })));
    }
    let committed = apply_import(
        &state,
        &schema,
        body.values,
        body.expected_version,
        ctx.with_comment(Some(comment))?,
    )
    .await?;
    Ok(ok(committed))
}

/// One key an import changes.
pub(crate) struct ImportChange {
    pub change: Change,
    /// A secret that is set: always "replaced" (equal or not), its new value never shown.
    pub secret_replace: bool,
}

/// What an import of `values` would do now: the keys it changes and the version it was
/// computed at. Invalid values are refused as the write would (`422 invalid_value` with
/// every key's error); masked secrets (an export's) are left as they are.
pub(crate) struct ImportPlan {
    pub changes: Vec<ImportChange>,
    pub version: u64,
}

pub(crate) async fn plan_import(
    state: &AdminState,
    schema: &Schema,
    values: indexmap::IndexMap<String, Sent>,
) -> Result<ImportPlan, ApiError> {
    let wanted: Vec<(String, Value)> = exact(schema, values)
        .into_iter()
        .filter(|(_, v)| !is_mask(v))
        .collect();
    let canonical = validate(schema, &wanted)?;
    let current = state.current(&schema.namespace).await?;
    let changes = canonical
        .into_iter()
        .filter_map(|(key, new)| {
            let old = current.values.get(&key).and_then(|s| s.value.clone());
            let secret = schema.key(&key).is_some_and(|d| d.secret);
            let secret_replace = secret && new.is_some();
            (secret_replace || old != new).then_some(ImportChange {
                change: Change {
                    key,
                    old,
                    new,
                    default: None,
                },
                secret_replace,
            })
        })
        .collect();
    Ok(ImportPlan {
        changes,
        version: current.state.version,
    })
}

/// Writes an import of `values` as one changeset through the write path (the comment in
/// `ctx` is checked against `require_comment`); `expected_version`: only if the namespace is
/// still there. Answers what `POST …/import` does.
pub(crate) async fn apply_import(
    state: &AdminState,
    schema: &Schema,
    values: indexmap::IndexMap<String, Sent>,
    expected_version: Option<u64>,
    ctx: WriteContext,
) -> Result<Value, ApiError> {
    let ns = schema.namespace.clone();
    let wanted: Vec<(String, Value)> = exact(schema, values)
        .into_iter()
        .filter(|(_, v)| !is_mask(v))
        .collect();
    validate(schema, &wanted)?;
    comment_check(schema.require_comment, &ctx.meta.comment)?;
    if wanted.is_empty() {
        let current = state
            .write
            .ledger
            .namespace_state(&ns)
            .await
            .map_err(ledger_error)?;
        if let Some(v) = expected_version.filter(|v| *v != current.version) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "version_conflict",
                format!("the namespace is at version {}, not {v}", current.version),
            ));
        }
        return Ok(
            json!({"version": current.version, "epoch": current.epoch, "changes": [], "replayed": false}),
        );
    }
    let committed = state
        .write
        .write(
            &ns,
            WriteRequest {
                changes: wanted,
                expected_version,
                meta: ctx.meta,
                idempotency_key: ctx.idempotency_key,
                ..WriteRequest::default()
            },
        )
        .await?;
    Ok(state.committed_json(schema, &committed))
}

/// `GET /readyz`: the ledger answers.
pub async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match state.write.ledger.ping().await {
        Ok(()) => ok(json!({"ready": true})),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "cause": Chain(&e).to_string()})),
        )
            .into_response(),
    }
}

pub async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let mut resp = state.metrics.encode().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        )],
        OPENAPI,
    )
        .into_response()
}
