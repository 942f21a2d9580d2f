//! Export and import pages of a namespace. `GET /namespaces/{ns}/export` serves the API's
//! export document (`admin::api::export_document`) as a download named `NS-vVERSION.json`.
//! `GET /namespaces/{ns}/import` shows a form to paste an export document;
//! `POST /namespaces/{ns}/import` with `step=preview` shows its dry-run diff (old → new per
//! key, defaults marked, secrets never shown; every invalid value's error next to its key and
//! nothing written), and with `step=apply` writes it as one changeset through the same code as
//! `POST /api/v1/namespaces/{ns}/import` (`plan_import` / `apply_import`: validation,
//! `require_comment`, the write path), carrying the version the preview showed so a namespace
//! changed in between is a conflict that offers the review again. The pasted document
//! travels from preview to apply sealed (`auth::SecretBox`, bound to the session and
//! namespace), so a secret in it never appears in the page.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::admin::api::{apply_import, export_document, plan_import, ImportBody, WriteContext};
use crate::admin::diff;
use crate::admin::AdminState;
use crate::auth::Principal;
use crate::http::ApiError;
use crate::ui::edit::KeyErrors;
use crate::ui::form::Form;
use crate::ui::layout::{Layout, Section};
use crate::ui::pages::history::{rows, Cell, DiffRow};
use crate::ui::{render, see_other};

/// The download's file name: `NS-vVERSION.json` (a namespace name is already `[a-z0-9_-]`;
/// anything else is replaced, so the header stays valid).
pub fn export_filename(ns: &str, version: u64) -> String {
    let safe: String = ns
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-v{version}.json")
}

/// `GET /namespaces/{ns}/export`: the API's export, as an attachment.
pub async fn export(
    State(state): State<Arc<AdminState>>,
    Path(ns): Path<String>,
) -> Result<Response, ApiError> {
    let doc = export_document(&state, &ns).await?;
    let version = doc["version"].as_u64().unwrap_or_default();
    let mut resp = Json(doc).into_response();
    let disposition = format!("attachment; filename=\"{}\"", export_filename(&ns, version));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[derive(Template)]
#[template(path = "import.html")]
pub struct ImportPage {
    pub layout: Layout,
    pub ns: String,
    /// The pasted document (refilled on the upload form after an error).
    pub document: String,
    /// Set on the preview: the diff rows and the sealed document to apply.
    pub preview: bool,
    pub changes: Vec<DiffRow>,
    pub sealed: String,
    /// The version the preview was computed at (`expected_version` of the apply).
    pub version: u64,
    pub comment: String,
    pub require_comment: bool,
    /// A problem with the whole document or the apply (announced).
    pub error: String,
    /// Per-key validation errors (nothing was written).
    pub key_errors: Vec<(String, String)>,
    pub conflict: bool,
}

fn seal_context(principal: &Principal, ns: &str) -> String {
    let session = principal
        .session_user()
        .map(|(_, s)| s.id_digest.as_str())
        .unwrap_or_default();
    format!("ui-import:{session}:{ns}")
}

impl ImportPage {
    fn new(principal: &Principal, ns: &str, title: &str, require_comment: bool) -> ImportPage {
        ImportPage {
            layout: Layout::new(
                principal,
                &format!("{title} · {ns}"),
                Section::Namespaces,
                Some(ns),
            ),
            ns: ns.to_owned(),
            document: String::new(),
            preview: false,
            changes: Vec::new(),
            sealed: String::new(),
            version: 0,
            comment: String::new(),
            require_comment,
            error: String::new(),
            key_errors: Vec::new(),
            conflict: false,
        }
    }
}

/// The per-key errors of a `422 invalid_value` (`details.errors[].key/message`).
pub fn key_errors(e: &ApiError) -> KeyErrors {
    let mut out = KeyErrors::new();
    if let Some(list) = e.details.as_ref().and_then(|d| d["errors"].as_array()) {
        for item in list {
            if let (Some(k), Some(m)) = (item["key"].as_str(), item["message"].as_str()) {
                out.insert(k.to_owned(), m.to_owned());
            }
        }
    }
    out
}

/// `GET /namespaces/{ns}/import`
pub async fn import_form(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Path(ns): Path<String>,
) -> Result<Response, ApiError> {
    let schema = state.write.schema(&ns)?.clone();
    let page = ImportPage::new(&principal, &ns, "Import", schema.require_comment);
    Ok(render(StatusCode::OK, &page))
}

/// `POST /namespaces/{ns}/import` (`step=preview` or `step=apply`)
pub async fn import_submit(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    ctx: WriteContext,
    Path(ns): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = Form::parse(&body);
    let schema = state.write.schema(&ns)?.clone();
    let apply = form.get("step") == Some("apply");
    let mut page = ImportPage::new(
        &principal,
        &ns,
        if apply {
            "Apply import"
        } else {
            "Import preview"
        },
        schema.require_comment,
    );
    let document = if apply {
        let sealed = form.get("sealed").unwrap_or_default();
        let opened = state
            .auth
            .secret_box
            .open(sealed, &seal_context(&principal, &ns))
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        match opened {
            Some(d) => d,
            None => {
                page.error = "The previewed import is damaged or from another session: paste the document and preview it again.".into();
                return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
            }
        }
    } else {
        form.get("document").unwrap_or_default().to_owned()
    };
    page.document = if apply {
        String::new()
    } else {
        document.clone()
    };
    let parsed: Result<ImportBody, _> = serde_json::from_str(&document);
    let body = match parsed {
        Ok(b) => b,
        Err(e) => {
            page.error = format!(
                "The document is not an export: {e}. Paste a JSON object with \"values\" (an object of key → value), as \"Download export\" gives."
            );
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    };
    if apply {
        let comment = form.get("comment").unwrap_or_default().trim().to_owned();
        let expected = form.get("version").and_then(|v| v.parse().ok());
        let ctx = ctx.with_comment(Some(comment.clone()))?;
        match apply_import(&state, &schema, body.values.clone(), expected, ctx).await {
            Ok(done) => {
                let v = done["version"].as_u64().unwrap_or_default();
                let changed = done["changes"].as_array().is_some_and(|c| !c.is_empty());
                return Ok(if changed {
                    see_other(&format!("/namespaces/{ns}/changesets/{v}"))
                } else {
                    see_other(&format!("/namespaces/{ns}"))
                });
            }
            Err(e) if e.code == "version_conflict" => {
                page.conflict = true;
                page.error = "The namespace changed after your preview: nothing was written. Review the import again against the current values below, then apply it.".into();
            }
            Err(e) if e.code == "comment_required" => {
                page.error = format!(
                    "{}: say why in the Comment field, then Apply import. Nothing was written.",
                    e.message
                );
            }
            Err(e) => return Err(e),
        }
        page.comment = comment;
    }
    // The preview (or the preview again after a refused apply).
    match plan_import(&state, &schema, body.values).await {
        Ok(plan) => {
            let shown: Vec<_> = plan
                .changes
                .iter()
                .map(|c| diff::shown(&schema, &c.change))
                .collect();
            let mut diff_rows = rows(&state, &schema, &shown);
            for (row, c) in diff_rows.iter_mut().zip(&plan.changes) {
                if c.secret_replace {
                    row.new = Cell {
                        text: "new secret value (hidden)".into(),
                        is_default: false,
                        secret: true,
                    };
                }
            }
            page.preview = true;
            page.changes = diff_rows;
            page.version = plan.version;
            page.sealed = state
                .auth
                .secret_box
                .seal(document.as_bytes(), &seal_context(&principal, &ns));
            let status = if page.error.is_empty() {
                StatusCode::OK
            } else if page.conflict {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            Ok(render(status, &page))
        }
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let errors = key_errors(&e);
            if errors.is_empty() {
                page.error = e.message;
            } else {
                page.error =
                    format!(
                    "{} {} refused: nothing was written. Fix the document and preview it again.",
                    errors.len(),
                    if errors.len() == 1 { "value is" } else { "values are" }
                );
                page.key_errors = errors.into_iter().collect();
            }
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_filenames_carry_namespace_and_version() {
        for (ns, v, want) in [
            ("demo", 12, "demo-v12.json"),
            ("billing_eu", 0, "billing_eu-v0.json"),
            ("a\"b", 3, "a_b-v3.json"),
        ] {
            assert_eq!(export_filename(ns, v), want);
        }
    }
}
