//! The write path: validate against the schema → commit one changeset to the ledger → tell
//! whoever distributes it ([`AfterCommit`]: the in-process publisher in `dev`, the Redis relay
//! in production).
//!
//! Every value is checked before anything is written; a request with any bad value writes
//! nothing and gets every problem back at once. Error messages never contain a secret's value,
//! and no answer tells whether a value sent for a secret equals the stored one: setting a
//! secret is always a change (`CommitRequest::always_write`), even to its current value.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::http::ApiError;
use crate::ledger::{
    changes_to_reach, Change, ChangeMeta, CommitRequest, Committed, CurrentValues, Ledger,
    LedgerError, NamespaceState,
};
use crate::metrics::{AdminMetrics, WriteResult};
use crate::schema::{Schema, SchemaSet};
use crate::telemetry::Chain;

/// Called after every commit that changed something (and after replays, harmlessly).
#[async_trait]
pub trait AfterCommit: Send + Sync + 'static {
    async fn committed(&self, namespace: &str, state: NamespaceState);
}

/// Several [`AfterCommit`]s, run in order (dev: publish the snapshot, then tell the event
/// streams).
pub struct AfterCommits(pub Vec<Arc<dyn AfterCommit>>);

#[async_trait]
impl AfterCommit for AfterCommits {
    async fn committed(&self, namespace: &str, state: NamespaceState) {
        for each in &self.0 {
            each.committed(namespace, state).await;
        }
    }
}

/// Does nothing after a commit (tests, tools).
pub struct NoDistribution;

#[async_trait]
impl AfterCommit for NoDistribution {
    async fn committed(&self, _namespace: &str, _state: NamespaceState) {}
}

/// Namespaces that must not take writes now, and why: the relay found Redis ahead of the
/// ledger (a restored ledger), so a write would fork history (`503 ledger_behind`).
#[derive(Debug, Default)]
pub struct WriteGate {
    ledger_behind: parking_lot::Mutex<std::collections::HashSet<String>>,
}

impl WriteGate {
    pub fn set_ledger_behind(&self, namespace: &str, behind: bool) {
        let mut set = self.ledger_behind.lock();
        if behind {
            set.insert(namespace.to_owned());
        } else {
            set.remove(namespace);
        }
    }

    pub fn check(&self, namespace: &str) -> Result<(), ApiError> {
        let set = self.ledger_behind.lock();
        if set.contains(namespace) {
            return Err(ledger_behind());
        }
        Ok(())
    }
}

/// 503 `ledger_behind`: a write now would fork history.
fn ledger_behind() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ledger_behind",
        "Redis holds versions the ledger does not (was the database restored?); writes are refused until an operator runs `rtconfig admin reconcile --force`",
    )
}

/// A write as the API received it.
#[derive(Debug, Default, Clone)]
pub struct WriteRequest {
    /// `KEY → value`, or `KEY → null` to reset to the default.
    pub changes: Vec<(String, Value)>,
    pub expected_version: Option<u64>,
    pub expected_keys: BTreeMap<String, u64>,
    pub meta: ChangeMeta,
    pub idempotency_key: Option<String>,
}

/// Validates and commits writes.
pub struct WritePath {
    pub schemas: SchemaSet,
    pub ledger: Arc<dyn Ledger>,
    pub after_commit: Arc<dyn AfterCommit>,
    pub metrics: AdminMetrics,
    pub gate: Arc<WriteGate>,
}

impl WritePath {
    pub fn schema(&self, namespace: &str) -> Result<&Arc<Schema>, ApiError> {
        self.schemas
            .get(namespace)
            .ok_or_else(|| ApiError::unknown_namespace(namespace))
    }

    /// Validates every change, commits them as one changeset, and distributes it.
    pub async fn write(&self, namespace: &str, req: WriteRequest) -> Result<Committed, ApiError> {
        let schema = self.schema(namespace)?.clone();
        if req.changes.is_empty() {
            self.metrics.write(WriteResult::invalid);
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_value",
                "changes must name at least one key",
            ));
        }
        let changes = match validate(&schema, &req.changes) {
            Ok(c) => c,
            Err(e) => {
                self.metrics.write(WriteResult::invalid);
                return Err(e);
            }
        };
        for key in req.expected_keys.keys() {
            if schema.key(key).is_none() {
                self.metrics.write(WriteResult::invalid);
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_key",
                    format!("expected names an unknown key {key:?}"),
                ));
            }
        }
        let fingerprint = fingerprint(namespace, &changes, &req);
        // A secret set to its stored value is written anyway: a "no change" answer would
        // confirm a guess of the secret.
        let always_write = changes
            .iter()
            .filter(|(key, value)| value.is_some() && schema.key(key).is_some_and(|d| d.secret))
            .map(|(key, _)| key.clone())
            .collect();
        let defaults = defaults_of(&schema, changes.iter().map(|(k, _)| k.as_str()));
        let request = CommitRequest {
            namespace: namespace.to_owned(),
            defaults,
            changes,
            expected_version: req.expected_version,
            expected_keys: req.expected_keys,
            meta: req.meta,
            idempotency_key: req.idempotency_key,
            fingerprint,
            always_write,
        };
        self.commit(request).await
    }

    /// Commits an already validated request and distributes it.
    async fn commit(&self, request: CommitRequest) -> Result<Committed, ApiError> {
        let namespace = request.namespace.clone();
        let requires = self.schema(&namespace)?.require_comment;
        if let Err(e) = comment_check(requires, &request.meta.comment) {
            self.metrics.write(WriteResult::invalid);
            return Err(e);
        }
        if let Err(e) = self.gate.check(&namespace) {
            self.metrics.write(WriteResult::refused);
            return Err(e);
        }
        match self.ledger.commit(request).await {
            Ok(committed) => {
                let result = if committed.replayed {
                    WriteResult::replayed
                } else if committed.changes.is_empty() {
                    WriteResult::unchanged
                } else {
                    WriteResult::ok
                };
                self.metrics.write(result);
                if !committed.changes.is_empty() {
                    tracing::info!(
                        namespace = %namespace,
                        version = committed.state.version,
                        keys = ?committed.changes.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
                        replayed = committed.replayed,
                        "changeset committed"
                    );
                    self.after_commit
                        .committed(&namespace, committed.state)
                        .await;
                }
                Ok(committed)
            }
            Err(e) => {
                let api = ledger_error(e);
                self.metrics.write(match api.status {
                    StatusCode::CONFLICT => WriteResult::conflict,
                    s if s.is_client_error() => WriteResult::invalid,
                    _ => WriteResult::error,
                });
                Err(api)
            }
        }
    }

    /// What a rollback to `to_version` would change now: the stored values at `to_version`,
    /// for the keys the current schema still has, validated against it. `expected_version`
    /// (the version a preview showed) makes a later state a 409 instead of another change.
    pub async fn plan_rollback(
        &self,
        namespace: &str,
        to_version: u64,
        expected_version: Option<u64>,
    ) -> Result<RollbackPlan, ApiError> {
        let schema = self.schema(namespace)?.clone();
        let current = self.ledger.current(namespace).await.map_err(ledger_error)?;
        if let Some(expected) = expected_version {
            if expected != current.state.version {
                return Err(ledger_error(LedgerError::VersionConflict {
                    expected,
                    actual: current.state.version,
                }));
            }
        }
        let target = self
            .ledger
            .state_at(namespace, to_version)
            .await
            .map_err(ledger_error)?;
        // Keys the schema no longer has are left alone; values it now rejects stop the rollback.
        let target: BTreeMap<String, Value> = target
            .into_iter()
            .filter(|(k, _)| schema.key(k).is_some())
            .collect();
        let wanted: Vec<(String, Value)> =
            target.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        validate(&schema, &wanted)?;
        let changes: Vec<(String, Option<Value>)> = changes_to_reach(&current, &target)
            .into_iter()
            .filter(|(k, _)| schema.key(k).is_some())
            .collect();
        Ok(RollbackPlan {
            to_version,
            current,
            changes,
        })
    }

    /// A new changeset restoring the stored values as they were at `to_version`.
    pub async fn rollback(
        &self,
        namespace: &str,
        to_version: u64,
        expected_version: Option<u64>,
        meta: ChangeMeta,
        idempotency_key: Option<String>,
    ) -> Result<Committed, ApiError> {
        let schema = self.schema(namespace)?.clone();
        // Before reading anything: the answer must not depend on whether the target exists.
        if let Err(e) = comment_check(schema.require_comment, &meta.comment) {
            self.metrics.write(WriteResult::invalid);
            return Err(e);
        }
        let plan = self
            .plan_rollback(namespace, to_version, expected_version)
            .await?;
        // The fingerprint is what the client asked for (target version, comment), not the
        // changes computed from the current state: a retry after a successful rollback computes
        // other changes, and must still be recognised as the same request (and replayed).
        let asked = WriteRequest {
            meta: meta.clone(),
            expected_version,
            ..WriteRequest::default()
        };
        let fingerprint = fingerprint(namespace, &[], &asked);
        let defaults = defaults_of(&schema, plan.changes.iter().map(|(k, _)| k.as_str()));
        self.commit(CommitRequest {
            namespace: namespace.to_owned(),
            changes: plan.changes,
            expected_version: Some(plan.current.state.version),
            expected_keys: BTreeMap::new(),
            meta,
            idempotency_key,
            fingerprint: format!("rollback:{to_version}:{fingerprint}"),
            always_write: Default::default(),
            defaults,
        })
        .await
    }
}

/// What a rollback would do (`WritePath::plan_rollback`): the current state it was computed
/// from and the changes (`None`: back to the default) that reach `to_version`'s state.
#[derive(Debug, Clone)]
pub struct RollbackPlan {
    pub to_version: u64,
    pub current: CurrentValues,
    pub changes: Vec<(String, Option<Value>)>,
}

impl RollbackPlan {
    /// The plan as changes from the current stored values (as a commit would record them).
    pub fn as_changes(&self) -> Vec<Change> {
        self.changes
            .iter()
            .map(|(key, new)| Change {
                key: key.clone(),
                old: self.current.values.get(key).and_then(|s| s.value.clone()),
                new: new.clone(),
                default: None,
            })
            .collect()
    }
}

/// The schema's default of each of `keys` (recorded with the changes, see `Change::default`).
fn defaults_of<'a>(
    schema: &Schema,
    keys: impl Iterator<Item = &'a str>,
) -> BTreeMap<String, Value> {
    keys.filter_map(|k| schema.key(k).map(|d| (k.to_owned(), d.default.value())))
        .collect()
}

/// A namespace whose schema sets `require_comment = true` takes no changeset without a
/// comment (blank counts as none): 422 `comment_required`.
pub fn comment_check(required: bool, comment: &str) -> Result<(), ApiError> {
    if required && comment.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "comment_required",
            "this namespace's schema sets require_comment = true: send a non-blank \"comment\" saying why",
        ));
    }
    Ok(())
}

/// Checks every change; returns them in canonical form or every problem at once.
pub fn validate(
    schema: &Schema,
    changes: &[(String, Value)],
) -> Result<Vec<(String, Option<Value>)>, ApiError> {
    let mut out = Vec::with_capacity(changes.len());
    let mut unknown = Vec::new();
    let mut invalid = Vec::new();
    for (key, value) in changes {
        let Some(def) = schema.key(key) else {
            unknown.push(
                json!({"key": key, "rule": "unknown_key", "message": "no such key in the schema"}),
            );
            continue;
        };
        if value.is_null() {
            out.push((key.clone(), None));
            continue;
        }
        match def.validate(value) {
            Ok(v) => out.push((key.clone(), Some(v))),
            Err(e) => {
                // A secret's value must not come back in an error body.
                let message = if def.secret {
                    format!("the value breaks rule {}", e.rule)
                } else {
                    e.message
                };
                invalid.push(json!({"key": key, "rule": e.rule, "message": message}));
            }
        }
    }
    if !unknown.is_empty() {
        let keys: Vec<&str> = unknown.iter().filter_map(|u| u["key"].as_str()).collect();
        let message = format!(
            "unknown key(s) in namespace {}: {}",
            schema.namespace,
            keys.join(", ")
        );
        unknown.extend(invalid);
        return Err(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_key", message)
                .with_details(json!({ "errors": unknown })),
        );
    }
    if !invalid.is_empty() {
        let message = invalid
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["key"].as_str().unwrap_or_default(),
                    e["message"].as_str().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", message)
                .with_details(json!({ "errors": invalid })),
        );
    }
    Ok(out)
}

/// A digest of what a request asks for, so an `Idempotency-Key` reused for a different request
/// is recognised.
fn fingerprint(namespace: &str, changes: &[(String, Option<Value>)], req: &WriteRequest) -> String {
    let doc = json!({
        "namespace": namespace,
        "changes": changes,
        "expected_version": req.expected_version,
        "expected": req.expected_keys,
        "comment": req.meta.comment,
    });
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

/// Maps ledger failures to API errors with stable codes.
pub fn ledger_error(e: LedgerError) -> ApiError {
    match e {
        LedgerError::UnknownNamespace(ns) => ApiError::unknown_namespace(&ns),
        LedgerError::VersionConflict { expected, actual } => ApiError::new(
            StatusCode::CONFLICT,
            "version_conflict",
            format!("expected version {expected}, but the namespace is at version {actual}; reload and retry"),
        )
        .with_details(json!({"expected_version": expected, "current_version": actual})),
        LedgerError::KeyConflict {
            key,
            expected,
            actual,
        } => ApiError::new(
            StatusCode::CONFLICT,
            "version_conflict",
            format!("{key} was expected at version {expected} but changed at version {actual}"),
        )
        .with_details(json!({"key": key, "expected_version": expected, "current_version": actual})),
        LedgerError::IdempotencyKeyReused => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request",
        ),
        LedgerError::NoSuchVersion(v) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_version",
            format!("version {v} does not exist"),
        ),
        LedgerError::LedgerBehind(_) => ledger_behind(),
        LedgerError::OutcomeUnknown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "outcome_unknown",
            "the commit's outcome is unknown; retry with the same Idempotency-Key",
        )
        .retry_after(1),
        e @ (LedgerError::Unavailable(_) | LedgerError::Io { .. }) => {
            tracing::warn!(error = %Chain(&e), "ledger unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the configuration store is unavailable; nothing was written",
            )
            .retry_after(1)
        }
        e @ (LedgerError::ForeignCluster { .. }
        | LedgerError::Corrupt(_)
        | LedgerError::DataDirInUse { .. }) => {
            tracing::error!(error = %Chain(&e), "ledger failure");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the configuration store cannot be used; see the admin's logs",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ledger::embedded::EmbeddedLedger;

    fn write_path(dir: &std::path::Path) -> WritePath {
        let schema = Schema::from_keys("demo", &[("N", crate::schema::ValueType::Int, json!(0))]);
        WritePath {
            schemas: SchemaSet::from_schemas([schema]),
            ledger: Arc::new(EmbeddedLedger::open(dir, "default").expect("open")),
            after_commit: Arc::new(NoDistribution),
            metrics: AdminMetrics::register(&mut crate::metrics::registry()),
            gate: Arc::default(),
        }
    }

    fn meta(comment: &str) -> ChangeMeta {
        ChangeMeta {
            actor: "test".into(),
            comment: comment.into(),
            ..ChangeMeta::default()
        }
    }

    #[test]
    fn comments_required_or_not() {
        // (schema requires one, comment, accepted)
        let table = [
            (false, "", true),
            (false, "why", true),
            (true, "why", true),
            (true, "", false),
            (true, "  \t\n", false),
            (true, " x ", true),
        ];
        for (required, comment, ok) in table {
            let got = comment_check(required, comment);
            assert_eq!(got.is_ok(), ok, "{required} {comment:?}");
            if let Err(e) = got {
                assert_eq!((e.status.as_u16(), e.code), (422, "comment_required"));
            }
        }
    }

    #[tokio::test]
    async fn a_retried_rollback_with_the_same_idempotency_key_is_replayed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = write_path(dir.path());
        w.ledger.ensure_namespace("demo").await.expect("ns");
        for n in [1, 2] {
            w.write(
                "demo",
                WriteRequest {
                    changes: vec![("N".into(), json!(n))],
                    meta: meta(""),
                    ..WriteRequest::default()
                },
            )
            .await
            .expect("write");
        }
        let key = Some("rb-1".to_owned());
        let first = w
            .rollback("demo", 1, None, meta("undo"), key.clone())
            .await
            .expect("rollback");
        assert_eq!((first.state.version, first.replayed), (3, false));
        let retry = w
            .rollback("demo", 1, None, meta("undo"), key.clone())
            .await
            .expect("retry is replayed, not refused");
        assert_eq!((retry.state.version, retry.replayed), (3, true));
        assert_eq!(retry.changes, first.changes);
        let other = w.rollback("demo", 2, None, meta("undo"), key).await;
        assert_eq!(
            other.expect_err("another target with the same key").code,
            "idempotency_key_reused"
        );
    }
}
