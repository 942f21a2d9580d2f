//! `GET /namespaces/{ns}`: the configs of a namespace — groups as collapsible fieldsets in
//! schema order, search as you type, per key its type, description, default, value,
//! "modified" marker, last change and a reset; a typed editor per type for editors, values
//! only for viewers. The whole page is one form whose one "Review changes" button posts to
//! the review (`pages::review`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::admin::mask::Masker;
use crate::admin::write::ledger_error;
use crate::admin::AdminState;
use crate::auth::role::Need;
use crate::auth::{Principal, Role};
use crate::http::ApiError;
use crate::ledger::{CurrentValues, HistoryQuery};
use crate::schema::{KeyDef, Schema, ValueType};
use crate::ui::edit::{text_of, KeyErrors};
use crate::ui::form::Form;
use crate::ui::layout::{Layout, Section};
use crate::ui::render;
use crate::ui::time::When;

/// How many recent changesets the page reads to show each key's last change (one query).
const LAST_CHANGES: usize = 1000;

/// One key as the page shows it.
pub struct KeyView {
    pub name: String,
    pub ty: &'static str,
    pub description: String,
    /// The editor: toggle, int, float, decimal, select, text, duration, date, time,
    /// datetime, json, secret.
    pub kind: &'static str,
    /// The value in effect as text (empty for a secret).
    pub value: String,
    /// What the input holds: the value, or what the user submitted when re-shown with errors.
    pub input: String,
    /// The value in effect as the input's text (`data-initial`: the script's "changed?").
    pub initial: String,
    pub checked: bool,
    pub default_text: String,
    pub modified: bool,
    pub secret: bool,
    /// A secret's fingerprint (HMAC, never the value); empty at the default.
    pub fingerprint: String,
    /// The key's version (the changeset that last touched it; 0: never).
    pub version: u64,
    pub last_actor: String,
    pub last_when: Option<When>,
    pub min: String,
    pub max: String,
    pub step: &'static str,
    pub maxlength: String,
    pub choices: Vec<String>,
    /// Constraints in words ("1 to 100", "at most 100 characters; pattern ^#…$").
    pub hint: String,
    pub error: String,
    /// Lower-case key, description and group, for the search.
    pub search: String,
}

pub struct GroupView {
    pub name: String,
    pub keys: Vec<KeyView>,
}

#[derive(Template)]
#[template(path = "configs.html")]
pub struct ConfigsPage {
    pub layout: Layout,
    pub ns: String,
    pub description: String,
    pub version: u64,
    pub groups: Vec<GroupView>,
    pub can_edit: bool,
    pub q: String,
    /// A notice after a commit ("Committed version 5.").
    pub notice: String,
    /// The summary of errors (`role=alert`), each also next to its key.
    pub error_summary: String,
    pub total_keys: usize,
}

/// Who changed which version when (from the recent history).
pub type Authors = HashMap<u64, (String, DateTime<Utc>)>;

/// The recent changesets' authors (one history read).
pub async fn authors(state: &AdminState, ns: &str) -> Result<Authors, ApiError> {
    let page = state
        .write
        .ledger
        .history(
            ns,
            &HistoryQuery {
                limit: LAST_CHANGES,
                ..HistoryQuery::default()
            },
        )
        .await
        .map_err(ledger_error)?;
    Ok(page
        .changesets
        .into_iter()
        .map(|cs| (cs.version, (cs.meta.actor, cs.created_at)))
        .collect())
}

fn bound_hint(def: &KeyDef) -> String {
    let mut parts = Vec::new();
    match (&def.rules.min, &def.rules.max) {
        (Some(a), Some(b)) => parts.push(format!("{a} to {b}")),
        (Some(a), None) => parts.push(format!("at least {a}")),
        (None, Some(b)) => parts.push(format!("at most {b}")),
        (None, None) => {}
    }
    if let Some(n) = def.rules.max_length {
        parts.push(format!("at most {n} characters"));
    }
    if let Some(re) = &def.rules.pattern {
        parts.push(format!("must match {}", re.as_str()));
    }
    if let Some(n) = def.rules.max_bytes {
        parts.push(format!("at most {n} bytes"));
    }
    match def.ty {
        ValueType::Duration => parts.push("e.g. 30s, 5m, 1h30m".into()),
        ValueType::DateTime => parts.push("RFC 3339, e.g. 2026-12-02T09:30:00Z".into()),
        ValueType::Decimal => parts.push("kept exactly as typed, e.g. 12.50".into()),
        ValueType::Json => parts.push("JSON, checked before review".into()),
        _ => {}
    }
    parts.join("; ")
}

fn kind_of(def: &KeyDef) -> &'static str {
    if def.secret {
        return "secret";
    }
    match def.ty {
        ValueType::Bool => "toggle",
        ValueType::Int => "int",
        ValueType::Float => "float",
        ValueType::Decimal => "decimal",
        ValueType::String => "text",
        ValueType::Enum => "select",
        ValueType::Duration => "duration",
        ValueType::Date => "date",
        ValueType::Time => "time",
        ValueType::DateTime => "datetime",
        ValueType::Json => "json",
    }
}

/// What a configs page is made of: the values read, and a form being re-shown with errors.
pub struct Inputs<'a> {
    /// Secret fingerprints.
    pub masker: &'a Masker,
    pub schema: &'a Schema,
    pub current: &'a CurrentValues,
    pub authors: &'a Authors,
    /// The form being re-shown (its text wins over the values).
    pub submitted: Option<&'a Form>,
    pub errors: &'a KeyErrors,
    pub now: DateTime<Utc>,
}

/// One key's view.
pub fn key_view(inputs: &Inputs<'_>, def: &KeyDef) -> KeyView {
    let Inputs {
        masker,
        schema,
        current,
        authors,
        submitted,
        errors,
        now,
    } = *inputs;
    let stored = current.values.get(&*def.name);
    let value = stored.and_then(|s| s.value.as_ref());
    let default = def.default.value();
    let effective = value.unwrap_or(&default);
    let version = stored.map_or(0, |s| s.version);
    let (last_actor, last_when) = match authors.get(&version) {
        Some((actor, at)) if version > 0 => (actor.clone(), Some(When::new(*at, now))),
        _ => (String::new(), None),
    };
    let initial = if def.secret {
        String::new()
    } else {
        text_of(def.ty, effective)
    };
    let input = match submitted.and_then(|f| f.get(&format!("v.{}", def.name))) {
        Some(t) if !def.secret => t.to_owned(),
        _ => initial.clone(),
    };
    let checked = match submitted {
        Some(f) if def.ty == ValueType::Bool && f.get(&format!("p.{}", def.name)).is_some() => {
            f.get(&format!("v.{}", def.name)).is_some()
        }
        _ => effective == &serde_json::Value::Bool(true),
    };
    let fingerprint = match (def.secret, value) {
        (true, Some(v)) => masker.fingerprint(&schema.namespace, &def.name, v),
        _ => String::new(),
    };
    let default_text = if def.secret {
        if default.as_str() == Some("") {
            "empty".into()
        } else {
            "set in the schema".into()
        }
    } else {
        text_of(def.ty, &default)
    };
    KeyView {
        name: def.name.to_string(),
        ty: def.ty.as_str(),
        description: def.description.to_string(),
        kind: kind_of(def),
        value: if def.secret {
            String::new()
        } else {
            text_of(def.ty, effective)
        },
        input,
        initial,
        checked,
        default_text,
        modified: value.is_some(),
        secret: def.secret,
        fingerprint,
        version,
        last_actor,
        last_when,
        min: def
            .rules
            .min
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_default(),
        max: def
            .rules
            .max
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_default(),
        step: if def.ty == ValueType::Int { "1" } else { "any" },
        maxlength: def
            .rules
            .max_length
            .map(|n| n.to_string())
            .unwrap_or_default(),
        choices: def.rules.choices.clone(),
        hint: bound_hint(def),
        error: errors.get(&*def.name).cloned().unwrap_or_default(),
        search: format!("{} {} {}", def.name, def.description, def.group).to_lowercase(),
    }
}

/// Whether the principal may edit namespace `ns`.
pub fn can_edit(principal: &Principal, ns: &str) -> bool {
    principal
        .grants()
        .allows(&Need::InNamespace(Role::Editor, ns.to_owned()))
}

/// The page's model (also re-shown by the review with errors).
pub async fn build(
    state: &AdminState,
    principal: &Principal,
    ns: &str,
    submitted: Option<&Form>,
    errors: &KeyErrors,
) -> Result<ConfigsPage, ApiError> {
    let schema = state.write.schema(ns)?.clone();
    let current = state.current(ns).await?;
    let authors = authors(state, ns).await?;
    let inputs = Inputs {
        masker: &state.masker,
        schema: &schema,
        current: &current,
        authors: &authors,
        submitted,
        errors,
        now: Utc::now(),
    };
    Ok(page_model(&inputs, principal))
}

/// The page's model from what was read (pure; the benchmark renders it).
pub fn page_model(inputs: &Inputs<'_>, principal: &Principal) -> ConfigsPage {
    let (schema, current, errors) = (inputs.schema, inputs.current, inputs.errors);
    let ns = schema.namespace.as_str();
    let by_name: BTreeMap<&str, &KeyDef> = schema.keys().iter().map(|d| (&*d.name, d)).collect();
    let groups = schema
        .groups
        .iter()
        .map(|g| GroupView {
            name: g.name.clone(),
            keys: g
                .keys
                .iter()
                .filter_map(|k| by_name.get(&**k))
                .map(|def| key_view(inputs, def))
                .collect(),
        })
        .collect();
    let error_summary = if errors.is_empty() {
        String::new()
    } else {
        format!(
            "Nothing was written: fix the value of {} (shown next to each key).",
            errors.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    ConfigsPage {
        layout: Layout::new(
            principal,
            &format!("{ns} configs"),
            Section::Namespaces,
            Some(ns),
        ),
        ns: ns.to_owned(),
        description: schema.description.clone(),
        version: current.state.version,
        groups,
        can_edit: can_edit(principal, ns),
        q: String::new(),
        notice: String::new(),
        error_summary,
        total_keys: schema.len(),
    }
}

#[derive(Deserialize, Default)]
pub struct ConfigsQuery {
    q: Option<String>,
    committed: Option<u64>,
}

/// `GET /namespaces/{ns}?q=…`
pub async fn page(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Path(ns): Path<String>,
    Query(query): Query<ConfigsQuery>,
) -> Result<Response, ApiError> {
    let mut page = build(&state, &principal, &ns, None, &KeyErrors::new()).await?;
    page.q = query.q.unwrap_or_default();
    if let Some(v) = query.committed {
        page.notice = format!("Committed version {v}.");
    }
    Ok(render(StatusCode::OK, &page))
}
