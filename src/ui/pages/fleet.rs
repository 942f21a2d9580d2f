//! `GET /namespaces/{ns}/fleet`: the fleet of a namespace — sidecars by version, the stale ones
//! and why, schema drift, time since each heartbeat, the last change's propagation lag; live
//! (the page listens to the events stream with `?fleet=true` and re-renders on each `fleet`
//! event). `GET /fleet` goes to the first namespace's fleet. The namespaces list's fleet columns
//! come from [`add_columns`]. Everything is `admin::fleet`'s view, the same as the JSON API's.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};

use crate::admin::fleet::{self, human_ms, FleetView, SidecarState};
use crate::admin::write::ledger_error;
use crate::admin::AdminState;
use crate::auth::guard::sees;
use crate::auth::Principal;
use crate::http::ApiError;
use crate::ui::layout::{Layout, Section};
use crate::ui::pages::namespaces::NamespaceRow;
use crate::ui::time::When;
use crate::ui::{render, see_other};

/// One sidecar's row.
pub struct SidecarRow {
    pub id: String,
    pub version: String,
    pub state: &'static str,
    /// CSS modifier of the state badge.
    pub tone: &'static str,
    pub problems: Vec<String>,
    pub heartbeat: String,
    pub seen: Option<When>,
    pub lag: String,
}

/// The last change's propagation, in words.
pub struct PropagationText {
    pub version: u64,
    pub actor: String,
    pub when: Option<When>,
    pub reached: String,
    pub lag: String,
    pub pending: String,
    pub unmeasured: String,
}

#[derive(Template)]
#[template(path = "fleet.html")]
pub struct FleetPage {
    pub layout: Layout,
    pub ns: String,
    pub version: u64,
    /// Why the fleet cannot be shown (Redis unreachable), instead of the tables.
    pub unavailable: Option<String>,
    pub total: usize,
    pub in_sync: usize,
    pub stale: usize,
    pub old_version: usize,
    pub schema_drift: usize,
    pub by_version: Vec<(String, usize)>,
    pub rows: Vec<SidecarRow>,
    pub propagation: Option<PropagationText>,
    /// The django-constance mirror of this namespace, when `--constance-mirror` maps it.
    pub constance: Option<MirrorCard>,
}

/// The django-constance mirror, as the fleet page shows it.
pub struct MirrorCard {
    pub prefix: String,
    pub running: bool,
    pub notifications: bool,
    pub last_pass: Option<String>,
    pub last_error: Option<String>,
    pub mirrored: usize,
    /// Keys not mirrored: (key, state, reason).
    pub problems: Vec<(String, String, String)>,
}

fn mirror_card(state: &AdminState, ns: &str) -> Option<MirrorCard> {
    use crate::constance::mirror::KeyStatus;
    let s = state.constance.read();
    if !s.enabled || s.namespace.as_deref() != Some(ns) {
        return None;
    }
    Some(MirrorCard {
        prefix: s.prefix.clone().unwrap_or_default(),
        running: s.running,
        notifications: s.keyspace_notifications,
        last_pass: s.last_pass_at.clone(),
        last_error: s.last_error.clone(),
        mirrored: s
            .keys
            .iter()
            .filter(|k| k.state == KeyStatus::Mirrored)
            .count(),
        problems: s
            .keys
            .iter()
            .filter(|k| matches!(k.state, KeyStatus::Invalid | KeyStatus::Unmirrorable))
            .map(|k| {
                let state = match k.state {
                    KeyStatus::Invalid => "invalid in constance",
                    _ => "no constance form",
                };
                (
                    k.key.clone(),
                    state.to_owned(),
                    k.reason.clone().unwrap_or_default(),
                )
            })
            .collect(),
    })
}

fn state_label(s: SidecarState) -> (&'static str, &'static str) {
    match s {
        SidecarState::InSync => ("in sync", "ok"),
        SidecarState::Stale => ("stale", "error"),
        SidecarState::OldVersion => ("old version", "warn"),
        SidecarState::AheadOfLedger => ("ahead of the ledger", "warn"),
        SidecarState::SchemaDrift => ("schema drift", "warn"),
    }
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The page's rows and texts from the view (pure).
pub fn page_parts(
    view: &FleetView,
    now: DateTime<Utc>,
) -> (Vec<SidecarRow>, Option<PropagationText>) {
    let rows = view
        .sidecars
        .iter()
        .map(|s| {
            let (state, tone) = state_label(s.state);
            SidecarRow {
                id: s.info.id.clone(),
                version: if s.info.epoch == view.epoch {
                    s.info.version.to_string()
                } else {
                    format!("{} (epoch {})", s.info.version, s.info.epoch)
                },
                state,
                tone,
                problems: s.problems.iter().map(|p| p.message.clone()).collect(),
                heartbeat: s
                    .heartbeat_age_ms
                    .map_or_else(|| "unknown".into(), |ms| format!("{} ago", human_ms(ms))),
                seen: parse(&s.info.seen_at).map(|t| When::new(t, now)),
                lag: s.lag_ms.map_or_else(|| "—".into(), human_ms),
            }
        })
        .collect();
    let propagation = view.propagation.as_ref().map(|p| {
        let total = p.reached + p.pending;
        PropagationText {
            version: p.version,
            actor: p.actor.clone(),
            when: parse(&p.committed_at).map(|t| When::new(t, now)),
            reached: format!("reached {} of {}", p.reached, plural(total, "sidecar", "sidecars")),
            lag: match p.lag_ms {
                Some(l) if p.pending == 0 => format!(
                    "propagation lag {} (fastest {}, median {})",
                    human_ms(l.max),
                    human_ms(l.min),
                    human_ms(l.p50)
                ),
                Some(l) => format!(
                    "so far: fastest {}, median {}, slowest {}",
                    human_ms(l.min),
                    human_ms(l.p50),
                    human_ms(l.max)
                ),
                None => "no lag measured yet".into(),
            },
            pending: match p.pending_for_ms {
                Some(ms) if p.pending > 0 => format!(
                    "{} still on an older version, {} after the commit",
                    plural(p.pending, "sidecar", "sidecars"),
                    human_ms(ms)
                ),
                _ => String::new(),
            },
            unmeasured: if p.joined_later + p.unmeasured > 0 {
                format!(
                    "{} not measured ({} started after the change, {} do not report when they applied it)",
                    p.joined_later + p.unmeasured,
                    p.joined_later,
                    p.unmeasured
                )
            } else {
                String::new()
            },
        }
    });
    (rows, propagation)
}

/// `GET /namespaces/{ns}/fleet`
pub async fn page(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Path(ns): Path<String>,
) -> Result<Response, ApiError> {
    state.write.schema(&ns)?;
    let layout = Layout::new(
        &principal,
        &format!("Fleet · {ns}"),
        Section::Fleet,
        Some(&ns),
    );
    let now = Utc::now();
    let page = match fleet::view(&state, &ns).await {
        Ok(view) => {
            let (rows, propagation) = page_parts(&view, now);
            FleetPage {
                layout,
                ns: ns.clone(),
                version: view.version,
                unavailable: None,
                total: view.summary.total,
                in_sync: view.summary.in_sync,
                stale: view.summary.stale,
                old_version: view.summary.old_version,
                schema_drift: view.summary.schema_drift,
                by_version: view.by_version.into_iter().collect(),
                rows,
                propagation,
                constance: mirror_card(&state, &ns),
            }
        }
        Err(e) if e.code == "fleet_unavailable" => {
            let version = state
                .write
                .ledger
                .namespace_state(&ns)
                .await
                .map_err(ledger_error)?
                .version;
            FleetPage {
                layout,
                ns: ns.clone(),
                version,
                unavailable: Some(e.message),
                total: 0,
                in_sync: 0,
                stale: 0,
                old_version: 0,
                schema_drift: 0,
                by_version: Vec::new(),
                rows: Vec::new(),
                propagation: None,
                constance: mirror_card(&state, &ns),
            }
        }
        Err(e) => return Err(e),
    };
    Ok(render(StatusCode::OK, &page))
}

/// `GET /fleet`: the fleet of the first namespace the user can see.
pub async fn first(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let grants = principal.grants();
    Ok(
        match state
            .write
            .schemas
            .iter()
            .find(|s| sees(&grants, &s.namespace))
        {
            Some(s) => see_other(&format!("/namespaces/{}/fleet", s.namespace)),
            None => see_other("/namespaces"),
        },
    )
}

/// The namespaces list's fleet columns: sidecars in sync, stale, on an old version, drifting.
pub async fn add_columns(state: &AdminState, rows: &mut [NamespaceRow]) {
    let mut reads = Vec::new();
    for row in rows.iter() {
        let current = state.write.ledger.namespace_state(&row.name).await;
        reads.push(async move {
            match current {
                Ok(ns) => fleet::summary(state, &row.name, ns).await,
                Err(e) => Err(ledger_error(e)),
            }
        });
    }
    let summaries = futures_util::future::join_all(reads).await;
    for (row, summary) in rows.iter_mut().zip(summaries) {
        let cells = match summary {
            Ok(s) => [
                format!("{} of {}", s.in_sync, s.total),
                s.stale.to_string(),
                s.old_version.to_string(),
                s.schema_drift.to_string(),
            ],
            Err(_) => [
                "fleet unavailable".to_owned(),
                "—".into(),
                "—".into(),
                "—".into(),
            ],
        };
        let labels = ["Sidecars in sync", "Stale", "Old version", "Schema drift"];
        row.extra
            .extend(labels.iter().zip(cells).map(|(l, c)| ((*l).to_owned(), c)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::fleet::{assess, LastChange, Reference, SidecarInfo};

    fn t(s: &str) -> DateTime<Utc> {
        parse(s).expect("time")
    }

    #[test]
    fn the_page_says_how_far_the_last_change_went() {
        let now = t("2026-01-01T00:01:00Z");
        let r = Reference {
            namespace: "demo",
            epoch: 1,
            version: 5,
            schema_hash: "h",
            last_change: Some(LastChange {
                epoch: 1,
                version: 5,
                created_at: t("2026-01-01T00:00:50Z"),
                actor: "alice".into(),
            }),
            now,
        };
        let beat = |id: &str, version: u64, applied: &str| SidecarInfo {
            id: id.into(),
            epoch: 1,
            version,
            schema_hash: "h".into(),
            status: "ok".into(),
            seen_at: "2026-01-01T00:00:59.000Z".into(),
            interval_ms: Some(5000),
            applied_at: Some(applied.into()),
            started_at: Some("2026-01-01T00:00:00Z".into()),
            cause: None,
            redis_connected: Some(true),
        };
        let view = assess(
            &r,
            vec![
                beat("a", 5, "2026-01-01T00:00:50.040Z"),
                beat("b", 4, "2026-01-01T00:00:40Z"),
            ],
        );
        let (rows, p) = page_parts(&view, now);
        assert_eq!(rows[0].state, "in sync");
        assert_eq!(rows[0].lag, "40 ms");
        assert_eq!(rows[0].heartbeat, "1 s ago");
        assert_eq!(rows[1].state, "old version");
        assert_eq!(
            rows[1].problems,
            vec!["it serves version 4, 1 behind the ledger's 5"]
        );
        assert_eq!(rows[1].lag, "—");
        let p = p.expect("propagation");
        assert_eq!(p.reached, "reached 1 of 2 sidecars");
        assert_eq!(p.lag, "so far: fastest 40 ms, median 40 ms, slowest 40 ms");
        assert_eq!(
            p.pending,
            "1 sidecar still on an older version, 10 s after the commit"
        );
        assert_eq!(p.unmeasured, "");
        let done = assess(&r, vec![beat("a", 5, "2026-01-01T00:00:50.040Z")]);
        let (_, p) = page_parts(&done, now);
        let p = p.expect("propagation");
        assert_eq!(p.lag, "propagation lag 40 ms (fastest 40 ms, median 40 ms)");
        assert_eq!(p.pending, "");
    }
}
