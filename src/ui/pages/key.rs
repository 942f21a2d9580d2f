//! `GET /namespaces/{ns}/keys/{key}`: one key on its own page (constance#316): its facts,
//! its editor and its recent history, posting to the same review as the configs page.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;

use crate::admin::write::ledger_error;
use crate::admin::AdminState;
use crate::auth::Principal;
use crate::http::ApiError;
use crate::ledger::HistoryQuery;
use crate::ui::edit::{text_of, KeyErrors};
use crate::ui::layout::{Layout, Section};
use crate::ui::render;
use crate::ui::time::When;

use super::configs::{authors, can_edit, key_view, Inputs, KeyView};

pub struct KeyChange {
    pub version: u64,
    pub actor: String,
    pub when: When,
    pub old: String,
    pub new: String,
    pub comment: String,
}

#[derive(Template)]
#[template(path = "key.html")]
pub struct KeyPage {
    pub layout: Layout,
    pub ns: String,
    pub key: KeyView,
    pub can_edit: bool,
    pub changes: Vec<KeyChange>,
}

/// `GET /namespaces/{ns}/keys/{key}`
pub async fn page(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let schema = state.write.schema(&ns)?.clone();
    let def = schema
        .key(&key)
        .ok_or_else(|| ApiError::unknown_key(&key))?;
    let current = state.current(&ns).await?;
    let authors = authors(&state, &ns).await?;
    let now = Utc::now();
    let errors = KeyErrors::new();
    let inputs = Inputs {
        masker: &state.masker,
        schema: &schema,
        current: &current,
        authors: &authors,
        submitted: None,
        errors: &errors,
        now,
    };
    let view = key_view(&inputs, def);
    let history = state
        .write
        .ledger
        .history(
            &ns,
            &HistoryQuery {
                key: Some(key.clone()),
                limit: 20,
                ..HistoryQuery::default()
            },
        )
        .await
        .map_err(ledger_error)?;
    let text = |v: Option<&serde_json::Value>| match v {
        _ if def.secret => "secret".to_owned(),
        Some(v) => text_of(def.ty, v),
        None => format!("{} (default)", text_of(def.ty, &def.default.value())),
    };
    let changes = history
        .changesets
        .iter()
        .filter_map(|cs| {
            cs.changes.iter().find(|c| c.key == key).map(|c| KeyChange {
                version: cs.version,
                actor: cs.meta.actor.clone(),
                when: When::new(cs.created_at, now),
                old: text(c.old.as_ref()),
                new: text(c.new.as_ref()),
                comment: cs.meta.comment.clone(),
            })
        })
        .collect();
    let page = KeyPage {
        layout: Layout::new(
            &principal,
            &format!("{key} · {ns}"),
            Section::Namespaces,
            Some(&ns),
        ),
        ns: ns.clone(),
        key: view,
        can_edit: can_edit(&principal, &ns),
        changes,
    };
    Ok(render(StatusCode::OK, &page))
}
