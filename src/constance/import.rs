//! Pure mapping of a Django project's constance definitions to an rtconfig schema file.
//!
//! Input: the JSON printed by `python -m rtconfig_client.export_constance`
//! (`clients/python/src/rtconfig_client/export_constance.py`). Output: the TOML text of one
//! namespace file plus every field that could not be mapped, with the reason. Nothing is dropped
//! silently: an unsupported key is left out of the file *and* listed.

use serde::Deserialize;
use serde_json::{Map, Value};

/// What the exporter prints.
#[derive(Debug, Deserialize)]
pub struct Export {
    /// `KEY → entry`, in the order Django holds them.
    pub config: Map<String, Value>,
    #[serde(default)]
    pub fieldsets: Vec<Fieldset>,
    #[serde(default)]
    pub additional_fields: Map<String, Value>,
    /// `true` when CONSTANCE_CONFIG is an OrderedDict (admin order kept); else keys are sorted,
    /// as constance's admin shows them.
    #[serde(default)]
    pub ordered: bool,
}

#[derive(Debug, Deserialize)]
pub struct Fieldset {
    pub title: String,
    pub fields: Vec<String>,
    #[serde(default)]
    pub collapse: bool,
}

#[derive(Debug, Deserialize)]
struct Entry {
    default: Value,
    #[serde(default)]
    help: String,
    #[serde(default)]
    r#type: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// A constance field left out of the schema, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub key: String,
    pub reason: String,
}

/// The result of a mapping.
#[derive(Debug)]
pub struct Mapped {
    pub toml: String,
    pub keys: usize,
    pub unsupported: Vec<Unsupported>,
    /// Things that were mapped but deserve a look (e.g. a naive datetime default read as UTC).
    pub notes: Vec<String>,
}

/// A mapped key: its rtconfig type, default (JSON) and choices for an enum.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyOut {
    pub ty: &'static str,
    pub default: Value,
    pub choices: Vec<String>,
    pub note: Option<String>,
}

/// The rtconfig type of a constance Python type name (`Decimal` → `decimal`, …).
pub fn type_of_python(name: &str) -> Option<&'static str> {
    Some(match name {
        "bool" => "bool",
        "int" => "int",
        "float" => "float",
        "Decimal" => "decimal",
        "str" => "string",
        "date" => "date",
        "time" => "time",
        "datetime" => "datetime",
        "timedelta" => "duration",
        "list" | "dict" => "json",
        _ => return None,
    })
}

/// The rtconfig type of a Django form field class (dotted path) used as a constance field.
/// `Err` carries the reason it is unsupported.
pub fn type_of_form_field(class: &str) -> Result<&'static str, String> {
    let short = class.rsplit('.').next().unwrap_or(class);
    Ok(match short {
        "ChoiceField" | "TypedChoiceField" => "enum",
        "CharField"
        | "EmailField"
        | "URLField"
        | "SlugField"
        | "RegexField"
        | "GenericIPAddressField" => "string",
        "IntegerField" => "int",
        "FloatField" => "float",
        "DecimalField" => "decimal",
        "BooleanField" | "NullBooleanField" => "bool",
        "DateField" => "date",
        "TimeField" => "time",
        "DateTimeField" => "datetime",
        "DurationField" => "duration",
        "JSONField" => "json",
        "FileField" | "ImageField" | "FilePathField" => {
            return Err(format!(
                "{short} is a file upload (stored under MEDIA_ROOT, not in the config store)"
            ))
        }
        "MultipleChoiceField" | "TypedMultipleChoiceField" => {
            return Err(format!(
                "{short} holds several choices (no rtconfig type: use json)"
            ))
        }
        _ => {
            return Err(format!(
                "custom form field {class} (no known rtconfig type)"
            ))
        }
    })
}

fn seconds_to_duration(secs: f64) -> Option<String> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    let ms = (secs * 1000.0).round();
    if (secs * 1000.0 - ms).abs() > 1e-6 {
        return None;
    }
    let ms = ms as u64;
    Some(if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    })
}

/// Does an ISO 8601 datetime text carry an offset (`Z`, `+01:00`)?
fn has_offset(s: &str) -> bool {
    let Some(time) = s
        .split_once('T')
        .or_else(|| s.split_once(' '))
        .map(|(_, t)| t)
    else {
        return false;
    };
    time.ends_with('Z') || time.contains('+') || time.contains('-')
}

/// Map one key's type and default. `Err` is the reason it is unsupported.
pub fn map_default(ty: &'static str, default: &Value) -> Result<KeyOut, String> {
    let out = |d: Value| KeyOut {
        ty,
        default: d,
        choices: Vec::new(),
        note: None,
    };
    match (ty, default) {
        (_, Value::Null) => Err("the default is None (rtconfig keys always have a value)".into()),
        (_, Value::Object(o)) if o.contains_key("__unsupported__") => Err(format!(
            "the default is a {} (no rtconfig type)",
            o.get("__unsupported__")
                .and_then(Value::as_str)
                .unwrap_or("custom object")
        )),
        ("bool", Value::Bool(_)) | ("string", Value::String(_)) => Ok(out(default.clone())),
        ("int", Value::Number(n)) if n.is_i64() => Ok(out(default.clone())),
        ("float", Value::Number(n)) => Ok(out(Value::from(n.as_f64().unwrap_or(0.0)))),
        ("decimal", Value::String(_)) => Ok(out(default.clone())),
        ("decimal", Value::Number(n)) => Ok(out(Value::String(n.to_string()))),
        ("date" | "time", Value::String(_)) => Ok(out(default.clone())),
        ("datetime", Value::String(s)) if has_offset(s) => Ok(out(default.clone())),
        ("datetime", Value::String(s)) => {
            let mut o = out(Value::String(format!("{s}Z")));
            o.note = Some(format!(
                "naive datetime default {s:?} written as UTC ({s}Z); check the time zone"
            ));
            Ok(o)
        }
        ("duration", Value::Number(n)) => n
            .as_f64()
            .and_then(seconds_to_duration)
            .map(|d| out(Value::String(d)))
            .ok_or_else(|| format!("the timedelta default {n} s is negative or finer than 1 ms")),
        ("json", v) => Ok(out(v.clone())),
        (ty, v) => Err(format!("the default {v} does not fit type {ty}")),
    }
}

/// Map a key whose field is a ChoiceField: choices must be strings and hold the default.
pub fn map_choices(default: &Value, choices: &[Value]) -> Result<KeyOut, String> {
    let mut out = Vec::new();
    for c in choices {
        let value = c.as_array().and_then(|pair| pair.first()).unwrap_or(c);
        match value.as_str() {
            Some(s) => out.push(s.to_owned()),
            None => {
                return Err(format!(
                    "choice {value} is not a string (rtconfig enums are)"
                ))
            }
        }
    }
    if out.is_empty() {
        return Err("the ChoiceField has no choices".into());
    }
    match default.as_str() {
        Some(d) if out.iter().any(|c| c == d) => Ok(KeyOut {
            ty: "enum",
            default: default.clone(),
            choices: out,
            note: None,
        }),
        _ => Err(format!("the default {default} is not one of the choices")),
    }
}

fn key_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn map_key(name: &str, raw: &Value, additional: &Map<String, Value>) -> Result<KeyOut, String> {
    if !key_name_ok(name) {
        return Err("the name does not match ^[A-Za-z][A-Za-z0-9_.-]{0,127}$".into());
    }
    let entry: Entry =
        serde_json::from_value(raw.clone()).map_err(|e| format!("unreadable definition: {e}"))?;
    if let Some(e) = entry.error {
        return Err(e);
    }
    let _ = &entry.help;
    if let Some(ty) = entry.r#type.as_deref() {
        let t = type_of_python(ty).ok_or_else(|| format!("type {ty} has no rtconfig type"))?;
        return map_default(t, &entry.default);
    }
    let field = entry.field.as_deref().unwrap_or("");
    let Some(spec) = additional.get(field) else {
        return Err(format!(
            "field {field:?} is neither a Python type nor in CONSTANCE_ADDITIONAL_FIELDS"
        ));
    };
    let class = spec.get("class").and_then(Value::as_str).unwrap_or("");
    let ty = type_of_form_field(class)?;
    if ty == "enum" {
        let choices = spec
            .get("choices")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        return map_choices(&entry.default, &choices);
    }
    map_default(ty, &entry.default)
}

/// A bare TOML key when the name allows it (`SITE_NAME`), else a quoted one (`"a.b"`).
fn toml_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_owned()
    } else {
        toml::Value::String(name.to_owned()).to_string()
    }
}

fn toml_lit(v: &Value) -> String {
    match v {
        Value::String(s) => toml::Value::String(s.clone()).to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            toml::Value::Float(f).to_string()
        }
        Value::Number(n) => n.to_string(),
        // JSON defaults are written as inline TOML tables/arrays.
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_lit).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => {
            let parts: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{} = {}", toml::Value::String(k.clone()), toml_lit(v)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
        Value::Null => "\"\"".into(),
    }
}

/// Map the whole export to the schema file of `namespace`.
pub fn map_export(export: &Export, namespace: &str) -> Mapped {
    let mut unsupported = Vec::new();
    let mut notes = Vec::new();
    let mut mapped: Vec<(String, KeyOut, String)> = Vec::new();
    let mut names: Vec<&String> = export.config.keys().collect();
    if !export.ordered {
        names.sort();
    }
    for name in names {
        let raw = &export.config[name.as_str()];
        match map_key(name, raw, &export.additional_fields) {
            Ok(k) => {
                if let Some(n) = &k.note {
                    notes.push(format!("{name}: {n}"));
                }
                let help = raw.get("help").and_then(Value::as_str).unwrap_or("");
                mapped.push((name.clone(), k, help.to_owned()));
            }
            Err(reason) => unsupported.push(Unsupported {
                key: name.clone(),
                reason,
            }),
        }
    }
    let known: Vec<&str> = mapped.iter().map(|(n, _, _)| n.as_str()).collect();

    // Groups: the fieldsets, minus unsupported keys; keys in none go to a last group "Other".
    let mut groups: Vec<(String, Vec<String>, bool)> = Vec::new();
    let mut placed: Vec<&str> = Vec::new();
    for fs in &export.fieldsets {
        let mut keys = Vec::new();
        for f in &fs.fields {
            if !export.config.contains_key(f) {
                notes.push(format!(
                    "fieldset {:?} names {f}, which CONSTANCE_CONFIG does not define: left out",
                    fs.title
                ));
            } else if known.contains(&f.as_str()) && !placed.contains(&f.as_str()) {
                placed.push(f.as_str());
                keys.push(f.clone());
            }
        }
        if keys.is_empty() {
            notes.push(format!(
                "fieldset {:?} has no importable key: left out",
                fs.title
            ));
        } else {
            groups.push((fs.title.clone(), keys, fs.collapse));
        }
    }
    let rest: Vec<String> = known
        .iter()
        .filter(|k| !placed.contains(k))
        .map(|k| (*k).to_owned())
        .collect();
    if !rest.is_empty() {
        let mut title = if export.fieldsets.is_empty() {
            "General"
        } else {
            "Other"
        }
        .to_owned();
        while groups.iter().any(|(t, _, _)| *t == title) {
            title.push('_');
        }
        groups.push((title, rest, false));
    }

    let mut out = String::new();
    out.push_str("# Imported from django-constance by `rtconfig import-constance`.\n");
    out.push_str(&format!(
        "namespace = {}\n",
        toml::Value::String(namespace.to_owned())
    ));
    out.push_str("description = \"Imported from django-constance\"\n");
    for (title, keys, collapse) in &groups {
        out.push_str("\n[[group]]\n");
        out.push_str(&format!("name = {}\n", toml::Value::String(title.clone())));
        if *collapse {
            out.push_str("collapse = true\n");
        }
        let list: Vec<String> = keys
            .iter()
            .map(|k| toml::Value::String(k.clone()).to_string())
            .collect();
        out.push_str(&format!("keys = [{}]\n", list.join(", ")));
    }
    for (name, k, help) in &mapped {
        out.push_str(&format!("\n[keys.{}]\n", toml_key(name)));
        out.push_str(&format!("type = \"{}\"\n", k.ty));
        out.push_str(&format!("default = {}\n", toml_lit(&k.default)));
        if !help.is_empty() {
            out.push_str(&format!(
                "description = {}\n",
                toml::Value::String(help.clone())
            ));
        }
        if !k.choices.is_empty() {
            let list: Vec<String> = k
                .choices
                .iter()
                .map(|c| toml::Value::String(c.clone()).to_string())
                .collect();
            out.push_str(&format!("choices = [{}]\n", list.join(", ")));
        }
    }
    Mapped {
        toml: out,
        keys: mapped.len(),
        unsupported,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_types_map_to_schema_types() {
        let table = [
            ("bool", Some("bool")),
            ("int", Some("int")),
            ("float", Some("float")),
            ("Decimal", Some("decimal")),
            ("str", Some("string")),
            ("date", Some("date")),
            ("time", Some("time")),
            ("datetime", Some("datetime")),
            ("timedelta", Some("duration")),
            ("list", Some("json")),
            ("dict", Some("json")),
            ("uuid.UUID", None),
        ];
        for (py, want) in table {
            assert_eq!(type_of_python(py), want, "{py}");
        }
    }

    #[test]
    fn form_fields_map_or_say_why_not() {
        let table: [(&str, Result<&str, &str>); 6] = [
            ("django.forms.ChoiceField", Ok("enum")),
            ("django.forms.fields.JSONField", Ok("json")),
            ("django.forms.EmailField", Ok("string")),
            ("django.forms.ImageField", Err("file upload")),
            ("django.forms.FileField", Err("file upload")),
            ("myapp.fields.ColorField", Err("custom form field")),
        ];
        for (class, want) in table {
            match (type_of_form_field(class), want) {
                (Ok(t), Ok(w)) => assert_eq!(t, w, "{class}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{class}: {e}"),
                (got, w) => panic!("{class}: got {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn defaults_are_converted_per_type() {
        let table: Vec<(&'static str, Value, Result<Value, &str>)> = vec![
            ("bool", json!(true), Ok(json!(true))),
            ("int", json!(25), Ok(json!(25))),
            ("int", json!(2.5), Err("does not fit")),
            ("float", json!(2), Ok(json!(2.0))),
            ("decimal", json!("1.10"), Ok(json!("1.10"))),
            ("duration", json!(86430.0), Ok(json!("86430s"))),
            ("duration", json!(0.25), Ok(json!("250ms"))),
            ("duration", json!(-1.0), Err("negative")),
            (
                "datetime",
                json!("2024-01-02T03:04:05+00:00"),
                Ok(json!("2024-01-02T03:04:05+00:00")),
            ),
            (
                "datetime",
                json!("2024-01-02T03:04:05"),
                Ok(json!("2024-01-02T03:04:05Z")),
            ),
            ("date", json!("2024-01-02"), Ok(json!("2024-01-02"))),
            ("json", json!({"a": [1]}), Ok(json!({"a": [1]}))),
            ("string", Value::Null, Err("None")),
            (
                "json",
                json!({"__unsupported__": "uuid.UUID", "repr": "UUID(…)"}),
                Err("uuid.UUID"),
            ),
        ];
        for (ty, default, want) in table {
            match (map_default(ty, &default), want) {
                (Ok(k), Ok(w)) => assert_eq!(k.default, w, "{ty} {default}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{ty} {default}: {e}"),
                (got, w) => panic!("{ty} {default}: got {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn choices_must_be_strings_and_hold_the_default() {
        let pairs = [json!(["s", "Small"]), json!(["l", "Large"])];
        let ok = map_choices(&json!("s"), &pairs).expect("maps");
        assert_eq!(ok.choices, vec!["s", "l"]);
        assert!(map_choices(&json!("x"), &pairs)
            .unwrap_err()
            .contains("not one of"));
        assert!(map_choices(&json!(1), &[json!([1, "one"])])
            .unwrap_err()
            .contains("not a string"));
    }

    #[test]
    fn a_whole_export_maps_with_groups_and_lists_what_it_left_out() {
        let export: Export = serde_json::from_value(json!({
            "config": {
                "SITE_NAME": {"default": "Shop", "help": "Name", "type": "str"},
                "SIZE": {"default": "s", "help": "Size", "type": null, "field": "size_select"},
                "LOGO": {"default": "", "help": "Logo", "type": null, "field": "image_field"},
                "TTL": {"default": 30.0, "help": "", "type": "timedelta"}
            },
            "fieldsets": [
                {"title": "General", "fields": ["SITE_NAME", "LOGO"], "collapse": false},
                {"title": "Advanced", "fields": ["SIZE"], "collapse": true}
            ],
            "additional_fields": {
                "size_select": {"class": "django.forms.fields.ChoiceField",
                                "choices": [["s", "Small"], ["l", "Large"]]},
                "image_field": {"class": "django.forms.ImageField"}
            },
            "ordered": true
        }))
        .expect("export");
        let m = map_export(&export, "shop");
        assert_eq!(m.keys, 3);
        assert_eq!(
            m.unsupported,
            vec![Unsupported {
                key: "LOGO".into(),
                reason:
                    "ImageField is a file upload (stored under MEDIA_ROOT, not in the config store)"
                        .into()
            }]
        );
        assert!(
            m.toml
                .contains("name = \"Advanced\"\ncollapse = true\nkeys = [\"SIZE\"]"),
            "{}",
            m.toml
        );
        assert!(
            m.toml.contains("name = \"Other\"\nkeys = [\"TTL\"]"),
            "{}",
            m.toml
        );
        assert!(m.toml.contains("type = \"enum\"\ndefault = \"s\"\ndescription = \"Size\"\nchoices = [\"s\", \"l\"]"), "{}", m.toml);
        assert!(
            m.toml.contains("type = \"duration\"\ndefault = \"30s\""),
            "{}",
            m.toml
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("shop.toml"), &m.toml).expect("write");
        let set =
            crate::schema::SchemaSet::load_dir(dir.path()).expect("rtconfig check accepts it");
        let schema = set.get("shop").expect("namespace shop");
        assert!(schema
            .groups
            .iter()
            .any(|g| g.name == "Advanced" && g.collapse));
    }
}
