//! The decisions of the edit flow, as pure functions: which keys a submitted configs form
//! changes (and which values are invalid), and how values read as text in inputs and diffs.
//!
//! Field names of the configs form: `v.KEY` the input's value, `p.KEY` present for a toggle
//! (an unchecked checkbox sends nothing), `e.KEY` the key's version when the page was rendered
//! (the per-key `expected` of the write), `reset` = KEY to reset one key to its default.
//! A secret's empty input means "unchanged" (its value is never in the page).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ledger::StoredValue;
use crate::schema::{Schema, ValueType};

use super::form::Form;

/// A pending change: `KEY → Some(new canonical value)` or `None` (reset to the default).
pub type Pending = Vec<(String, Option<Value>)>;

/// Problems by key: the message to show next to the key's input.
pub type KeyErrors = BTreeMap<String, String>;

/// A value as its input and the diff show it: strings as they are, JSON pretty-printed,
/// numbers and booleans in JSON form.
pub fn text_of(ty: ValueType, v: &Value) -> String {
    match (ty, v) {
        (ValueType::Json, v) => serde_json::to_string_pretty(v).unwrap_or_default(),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Null) => String::new(),
        (_, v) => v.to_string(),
    }
}

/// The keys `form` changes against `current` (schema order), or every problem at once.
/// A value equal to the one in effect is no change; a `reset` of a key already at its
/// default is none either.
pub fn pending_changes(
    schema: &Schema,
    current: &BTreeMap<String, StoredValue>,
    form: &Form,
) -> Result<Pending, KeyErrors> {
    let reset = form.get("reset");
    let mut changes = Vec::new();
    let mut errors = KeyErrors::new();
    for def in schema.keys() {
        let stored = current.get(&*def.name).and_then(|s| s.value.as_ref());
        if reset == Some(&*def.name) {
            if stored.is_some() {
                changes.push((def.name.to_string(), None));
            }
            continue;
        }
        let field = format!("v.{}", def.name);
        let text = match (form.get(&field), def.ty) {
            (Some(t), _) => t,
            // An unchecked toggle sends only its presence marker.
            (None, ValueType::Bool) if form.get(&format!("p.{}", def.name)).is_some() => "false",
            (None, _) => continue,
        };
        if def.secret && text.is_empty() {
            continue;
        }
        let parsed = match def.parse_text(text) {
            Ok(v) => v,
            Err(e) => {
                let message = if def.secret {
                    format!("the new value breaks rule {}", e.rule)
                } else {
                    e.message
                };
                errors.insert(def.name.to_string(), message);
                continue;
            }
        };
        let default = def.default.value();
        let effective = stored.unwrap_or(&default);
        // A secret is always a change when given (no equality oracle, issue 8).
        if def.secret || parsed != *effective {
            changes.push((def.name.to_string(), Some(parsed)));
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

/// The per-key `expected` versions the form carried (`e.KEY`), for the keys of `changes`.
pub fn expected_versions(form: &Form, changes: &Pending) -> BTreeMap<String, u64> {
    changes
        .iter()
        .filter_map(|(key, _)| {
            form.get(&format!("e.{key}"))
                .and_then(|v| v.parse().ok())
                .map(|v| (key.clone(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        let text = r#"
namespace = "demo"
[[group]]
name = "General"
keys = ["SITE_NAME", "MAINTENANCE_MODE", "ITEMS", "DB_PASSWORD", "DATA"]
[keys.SITE_NAME]
type = "string"
default = "Config Manager"
max_length = 16
[keys.MAINTENANCE_MODE]
type = "bool"
default = false
[keys.ITEMS]
type = "int"
default = 5
min = 1
max = 100
[keys.DB_PASSWORD]
type = "string"
default = ""
secret = true
pattern = "^[a-z]*$"
[keys.DATA]
type = "json"
default = {a = 1}
"#;
        Schema::parse(std::path::Path::new("demo.toml"), text).expect("schema")
    }

    fn stored(pairs: &[(&str, Value, u64)]) -> BTreeMap<String, StoredValue> {
        pairs
            .iter()
            .map(|(k, v, ver)| {
                (
                    (*k).to_owned(),
                    StoredValue {
                        value: Some(v.clone()),
                        version: *ver,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn what_a_form_changes() {
        let s = schema();
        let cur = stored(&[("ITEMS", json!(7), 3)]);
        type Want = Result<Vec<(&'static str, Option<Value>)>, Vec<(&'static str, &'static str)>>;
        let cases: Vec<(&str, Want)> = vec![
            // Unchanged values are no change (the whole form is always submitted).
            (
                "v.SITE_NAME=Config+Manager&v.ITEMS=7&p.MAINTENANCE_MODE=1",
                Ok(vec![]),
            ),
            (
                "v.SITE_NAME=Shop&v.ITEMS=8",
                Ok(vec![
                    ("SITE_NAME", Some(json!("Shop"))),
                    ("ITEMS", Some(json!(8))),
                ]),
            ),
            // A checked toggle sends its value; an unchecked one only its marker.
            (
                "p.MAINTENANCE_MODE=1&v.MAINTENANCE_MODE=true",
                Ok(vec![("MAINTENANCE_MODE", Some(json!(true)))]),
            ),
            ("p.MAINTENANCE_MODE=1", Ok(vec![])),
            // A reset of a modified key; of a key at its default: nothing.
            ("reset=ITEMS&v.ITEMS=9", Ok(vec![("ITEMS", None)])),
            ("reset=SITE_NAME", Ok(vec![])),
            // A secret: empty is unchanged; a value is always a change.
            ("v.DB_PASSWORD=", Ok(vec![])),
            (
                "v.DB_PASSWORD=abc",
                Ok(vec![("DB_PASSWORD", Some(json!("abc")))]),
            ),
            // JSON is compared as JSON, not as text.
            ("v.DATA=%7B+%22a%22%3A+1+%7D", Ok(vec![])),
            (
                "v.DATA=%7B%22a%22%3A2%7D",
                Ok(vec![("DATA", Some(json!({"a": 2})))]),
            ),
            // Every problem at once, next to its key; a secret's message never has the value.
            (
                "v.SITE_NAME=far+too+long+a+name+really&v.ITEMS=0&v.DB_PASSWORD=S3CRET&v.DATA=%7B",
                Err(vec![
                    ("DATA", "invalid JSON"),
                    ("DB_PASSWORD", "the new value breaks rule pattern"),
                    ("ITEMS", "min"),
                    ("SITE_NAME", "max_length"),
                ]),
            ),
        ];
        for (body, want) in cases {
            let got = pending_changes(&s, &cur, &Form::parse(body.as_bytes()));
            match (got, want) {
                (Ok(got), Ok(want)) => {
                    let want: Pending = want.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                    assert_eq!(got, want, "{body}");
                }
                (Err(got), Err(want)) => {
                    assert_eq!(got.len(), want.len(), "{body}: {got:?}");
                    for (key, part) in want {
                        let msg = &got[key];
                        assert!(msg.contains(part), "{body}: {key}: {msg}");
                        assert!(!msg.contains("S3CRET"), "{msg}");
                    }
                }
                (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn expected_versions_of_the_changed_keys_only() {
        let form = Form::parse(b"e.ITEMS=3&e.SITE_NAME=0&e.DATA=x");
        let changes: Pending = vec![("ITEMS".into(), None), ("DATA".into(), None)];
        assert_eq!(
            expected_versions(&form, &changes),
            BTreeMap::from([("ITEMS".to_owned(), 3)])
        );
    }

    #[test]
    fn values_as_text() {
        assert_eq!(text_of(ValueType::String, &json!("a")), "a");
        assert_eq!(text_of(ValueType::Int, &json!(5)), "5");
        assert_eq!(text_of(ValueType::Bool, &json!(true)), "true");
        assert_eq!(
            text_of(ValueType::Json, &json!({"a": 1})),
            "{\n  \"a\": 1\n}"
        );
        assert_eq!(text_of(ValueType::Json, &json!("s")), "\"s\"");
    }
}
