//! `GET /namespaces`: the landing page — each namespace the user can see with its version,
//! key count and last change (who, when).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;

use crate::admin::write::ledger_error;
use crate::admin::AdminState;
use crate::auth::guard::sees;
use crate::auth::Principal;
use crate::http::ApiError;
use crate::ledger::HistoryQuery;
use crate::ui::layout::{Layout, Section};
use crate::ui::render;
use crate::ui::time::When;

/// One row of the list.
pub struct NamespaceRow {
    pub name: String,
    pub description: String,
    pub version: u64,
    pub keys: usize,
    /// The last changeset's actor and time (none at version 0).
    pub last_actor: String,
    pub last_when: Option<When>,
    /// Extra cells other pages' data adds (the fleet summary), as `(label, text)`.
    pub extra: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "namespaces.html")]
pub struct NamespacesPage {
    pub layout: Layout,
    pub rows: Vec<NamespaceRow>,
}

/// The rows the principal may see (shared with other pages that list namespaces).
pub async fn rows(
    state: &AdminState,
    principal: &Principal,
) -> Result<Vec<NamespaceRow>, ApiError> {
    let grants = principal.grants();
    let now = Utc::now();
    let mut rows = Vec::new();
    for schema in state.write.schemas.iter() {
        if !sees(&grants, &schema.namespace) {
            continue;
        }
        let ns = &schema.namespace;
        let last = state
            .write
            .ledger
            .history(
                ns,
                &HistoryQuery {
                    limit: 1,
                    ..HistoryQuery::default()
                },
            )
            .await
            .map_err(ledger_error)?;
        let last = last.changesets.first();
        let version = match last {
            Some(cs) => cs.version,
            None => {
                state
                    .write
                    .ledger
                    .namespace_state(ns)
                    .await
                    .map_err(ledger_error)?
                    .version
            }
        };
        rows.push(NamespaceRow {
            name: ns.clone(),
            description: schema.description.clone(),
            version,
            keys: schema.len(),
            last_actor: last.map(|cs| cs.meta.actor.clone()).unwrap_or_default(),
            last_when: last.map(|cs| When::new(cs.created_at, now)),
            extra: Vec::new(),
        });
    }
    Ok(rows)
}

/// `GET /namespaces`
pub async fn list(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let rows = rows(&state, &principal).await?;
    let page = NamespacesPage {
        layout: Layout::new(&principal, "Namespaces", Section::Namespaces, None),
        rows,
    };
    Ok(render(StatusCode::OK, &page))
}
