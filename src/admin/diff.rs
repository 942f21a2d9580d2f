//! What history, changesets, compares and rollback previews show: the value **in effect** on
//! each side of a change (a key at its default shows the default, marked as such, never
//! `null`), type-aware comparison of two states, and the history filters read from a query
//! string. Pure functions (no I/O, no masking): the handlers in `admin::history` and the UI's
//! pages mask secrets on the way out.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::ledger::{Change, HistoryQuery};
use crate::schema::{valid_key_name, KeyDef, Schema};

/// One side of a change as shown: the value in effect, and whether it is the default.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    /// `None` only when the key is at its default and its default is unknown (the key left
    /// the schema before defaults were recorded with changes).
    pub value: Option<Value>,
    pub is_default: bool,
}

impl Side {
    /// The value in effect for a stored state: the stored value, else the default recorded with
    /// the change, else the schema's current default.
    pub fn in_effect(
        stored: Option<&Value>,
        recorded_default: Option<&Value>,
        schema_default: Option<&Value>,
    ) -> Side {
        match stored {
            Some(v) => Side {
                value: Some(v.clone()),
                is_default: false,
            },
            None => Side {
                value: recorded_default.or(schema_default).cloned(),
                is_default: true,
            },
        }
    }
}

/// A change as shown (before masking): `old` and `new` in effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub key: String,
    pub old: Side,
    pub new: Side,
}

/// A recorded change with both sides in effect. The default recorded at commit time wins over
/// the schema's current one (history shows what was in effect then).
pub fn shown(schema: &Schema, change: &Change) -> Shown {
    let schema_default = schema.key(&change.key).map(|d| d.default.value());
    let schema_default = schema_default.as_ref();
    Shown {
        key: change.key.clone(),
        old: Side::in_effect(change.old.as_ref(), change.default.as_ref(), schema_default),
        new: Side::in_effect(change.new.as_ref(), change.default.as_ref(), schema_default),
    }
}

/// The keys whose state differs between two stored states (`from` → `to`), in schema order,
/// each side in effect under the current schema. Only keys the current schema has are compared
/// (the values a sidecar serves); values are compared in their canonical form for the key's
/// type, so `1.50` and `1.5` of a float, or two JSON objects with their keys in another order,
/// are equal. A key set explicitly to its default value and the same key at its default differ
/// (one is "modified": it would not follow a later change of the default).
pub fn compare(
    schema: &Schema,
    from: &BTreeMap<String, Value>,
    to: &BTreeMap<String, Value>,
) -> Vec<Shown> {
    schema
        .keys()
        .iter()
        .filter_map(|def| {
            let old = side_at(def, from.get(&*def.name));
            let new = side_at(def, to.get(&*def.name));
            (old != new).then(|| Shown {
                key: def.name.to_string(),
                old,
                new,
            })
        })
        .collect()
}

fn side_at(def: &KeyDef, stored: Option<&Value>) -> Side {
    let canonical = stored.map(|v| def.validate(v).unwrap_or_else(|_| v.clone()));
    Side::in_effect(canonical.as_ref(), None, Some(&def.default.value()))
}

/// A history query string's parameters, as sent (a GET form sends empty fields: they mean "no
/// filter").
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    pub key: Option<String>,
    pub actor: Option<String>,
    pub q: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub before: Option<String>,
    pub limit: Option<String>,
}

/// The default page size of history.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest page of history.
pub const MAX_LIMIT: usize = 1000;
/// The longest `actor` or `q` filter accepted.
pub const MAX_FILTER_CHARS: usize = 200;

/// A bad query parameter: which one, and why (→ 400 `invalid_query`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {reason}")]
pub struct BadParam {
    pub param: &'static str,
    pub reason: String,
}

fn bad(param: &'static str, reason: impl Into<String>) -> BadParam {
    BadParam {
        param,
        reason: reason.into(),
    }
}

/// Reads the history filters: every parameter checked, the first bad one reported by name.
pub fn history_query(p: &HistoryParams) -> Result<HistoryQuery, BadParam> {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let key = given(&p.key);
    if let Some(k) = &key {
        if !valid_key_name(k) {
            return Err(bad(
                "key",
                format!("{k:?} is not a key name (^[A-Za-z][A-Za-z0-9_.-]{{0,127}}$)"),
            ));
        }
    }
    let actor = given(&p.actor);
    let text = given(&p.q);
    for (param, v) in [("actor", &actor), ("q", &text)] {
        if v.as_ref()
            .is_some_and(|v| v.chars().count() > MAX_FILTER_CHARS)
        {
            return Err(bad(param, format!("at most {MAX_FILTER_CHARS} characters")));
        }
    }
    let since = given(&p.since)
        .map(|s| instant("since", &s, false))
        .transpose()?;
    let until = given(&p.until)
        .map(|s| instant("until", &s, true))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(bad("until", "must be after since"));
        }
    }
    let before = given(&p.before)
        .map(|b| match b.parse::<u64>() {
            Ok(0) => Err(bad("before", "must be a version of 1 or more")),
            Ok(v) => Ok(v),
            Err(_) => Err(bad("before", format!("{b:?} is not a version number"))),
        })
        .transpose()?;
    let limit = match given(&p.limit) {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(bad(
                    "limit",
                    format!("must be a number from 1 to {MAX_LIMIT}, not {l:?}"),
                ))
            }
        },
    };
    Ok(HistoryQuery {
        key,
        actor,
        text,
        since,
        until,
        before,
        limit,
    })
}

/// An RFC 3339 instant, or a date (UTC): `since=2026-12-01` is that day's start, and
/// `until=2026-12-01` includes that day (it ends at the next day's start). `until` is
/// exclusive.
fn instant(param: &'static str, text: &str, until: bool) -> Result<DateTime<Utc>, BadParam> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        bad(
            param,
            format!("{text:?} is neither an RFC 3339 time (2026-12-01T09:30:00Z) nor a date (2026-12-01)"),
        )
    })?;
    let day = if until { date.succ_opt() } else { Some(date) };
    day.and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| bad(param, format!("{text:?} is out of range")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::ValueType;

    fn schema() -> Schema {
        Schema::from_keys(
            "demo",
            &[
                ("SITE_NAME", ValueType::String, json!("Config Manager")),
                ("RATE", ValueType::Float, json!(1.5)),
                ("DOC", ValueType::Json, json!({})),
            ],
        )
    }

    fn change(key: &str, old: Option<Value>, new: Option<Value>, default: Option<Value>) -> Change {
        Change {
            key: key.into(),
            old,
            new,
            default,
        }
    }

    fn side(v: Value, is_default: bool) -> Side {
        Side {
            value: Some(v),
            is_default,
        }
    }

    #[test]
    fn a_change_shows_the_value_in_effect_on_both_sides() {
        let s = schema();
        let cases = [
            // first change from the default, default recorded then
            (
                change(
                    "SITE_NAME",
                    None,
                    Some(json!("Shop")),
                    Some(json!("Old Default")),
                ),
                side(json!("Old Default"), true),
                side(json!("Shop"), false),
            ),
            // not recorded (older history): the schema's current default
            (
                change("SITE_NAME", None, Some(json!("Shop")), None),
                side(json!("Config Manager"), true),
                side(json!("Shop"), false),
            ),
            // a reset
            (
                change(
                    "SITE_NAME",
                    Some(json!("Shop")),
                    None,
                    Some(json!("Config Manager")),
                ),
                side(json!("Shop"), false),
                side(json!("Config Manager"), true),
            ),
            // value to value
            (
                change("RATE", Some(json!(2.0)), Some(json!(3.0)), None),
                side(json!(2.0), false),
                side(json!(3.0), false),
            ),
        ];
        for (c, old, new) in cases {
            let got = shown(&s, &c);
            assert_eq!((got.old, got.new), (old, new), "{c:?}");
        }
        let gone = shown(&s, &change("REMOVED", None, Some(json!(1)), None));
        assert_eq!(
            gone.old,
            Side {
                value: None,
                is_default: true
            },
            "a key the schema lost, default never recorded"
        );
    }

    #[test]
    fn compare_lists_only_keys_whose_state_differs_in_schema_order() {
        let s = schema();
        let at = |pairs: &[(&str, Value)]| -> BTreeMap<String, Value> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        let from = at(&[
            ("SITE_NAME", json!("Shop")),
            ("RATE", json!(2)),
            ("DOC", json!({"a": 1, "b": 2})),
            ("GONE", json!(1)),
        ]);
        let to = at(&[
            ("RATE", json!(2.0)),
            ("DOC", json!({"b": 2, "a": 1})),
            ("GONE", json!(2)),
        ]);
        let diff = compare(&s, &from, &to);
        assert_eq!(
            diff,
            vec![Shown {
                key: "SITE_NAME".into(),
                old: side(json!("Shop"), false),
                new: side(json!("Config Manager"), true),
            }],
            "2 and 2.0 of a float are equal, object key order does not matter, unknown keys are left out"
        );
        let explicit = at(&[("SITE_NAME", json!("Config Manager"))]);
        let diff = compare(&s, &explicit, &BTreeMap::new());
        assert_eq!(diff.len(), 1, "explicitly the default vs at the default");
        assert!(compare(&s, &from, &from).is_empty());
    }

    fn params(pairs: &[(&str, &str)]) -> HistoryParams {
        let mut p = HistoryParams::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "key" => p.key = v,
                "actor" => p.actor = v,
                "q" => p.q = v,
                "since" => p.since = v,
                "until" => p.until = v,
                "before" => p.before = v,
                "limit" => p.limit = v,
                other => panic!("no parameter {other}"),
            }
        }
        p
    }

    #[test]
    fn history_filters_are_read_and_empty_fields_mean_no_filter() {
        let q = history_query(&params(&[
            ("key", "SITE_NAME"),
            ("actor", "alice"),
            ("q", " launch "),
            ("since", "2026-12-01"),
            ("until", "2026-12-02"),
            ("before", "10"),
            ("limit", "20"),
        ]))
        .expect("valid");
        assert_eq!(q.key.as_deref(), Some("SITE_NAME"));
        assert_eq!(q.actor.as_deref(), Some("alice"));
        assert_eq!(q.text.as_deref(), Some("launch"));
        assert_eq!(
            q.since.map(|t| t.to_rfc3339()),
            Some("2026-12-01T00:00:00+00:00".into())
        );
        assert_eq!(
            q.until.map(|t| t.to_rfc3339()),
            Some("2026-12-03T00:00:00+00:00".into()),
            "a date as until includes that day"
        );
        assert_eq!((q.before, q.limit), (Some(10), 20));

        let empty = history_query(&params(&[
            ("key", ""),
            ("actor", ""),
            ("q", "  "),
            ("since", ""),
            ("until", ""),
            ("before", ""),
            ("limit", ""),
        ]))
        .expect("an empty GET form");
        assert!(empty.key.is_none() && empty.text.is_none() && empty.since.is_none());
        assert_eq!((empty.before, empty.limit), (None, DEFAULT_LIMIT));

        let t = history_query(&params(&[("since", "2026-12-01T09:30:00+02:00")])).expect("rfc3339");
        assert_eq!(
            t.since.map(|t| t.to_rfc3339()),
            Some("2026-12-01T07:30:00+00:00".into())
        );
    }

    #[test]
    fn a_bad_history_parameter_is_named() {
        let long = "x".repeat(MAX_FILTER_CHARS + 1);
        let cases: [(&[(&str, &str)], &str); 10] = [
            (&[("key", "not a key")], "key"),
            (&[("actor", &long)], "actor"),
            (&[("q", &long)], "q"),
            (&[("since", "yesterday")], "since"),
            (&[("until", "2026-13-01")], "until"),
            (&[("since", "2026-12-02"), ("until", "2026-12-01")], "until"),
            (&[("before", "soon")], "before"),
            (&[("before", "0")], "before"),
            (&[("limit", "0")], "limit"),
            (&[("limit", "1001")], "limit"),
        ];
        for (pairs, param) in cases {
            let err = history_query(&params(pairs)).expect_err(param);
            assert_eq!(err.param, param, "{pairs:?}: {err}");
        }
    }
}
