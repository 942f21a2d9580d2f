use std::path::Path;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn schema(text: &str) -> Schema {
    match Schema::parse(Path::new("t.toml"), text) {
        Ok(s) => s,
        Err(p) => panic!("schema should parse: {p:?}"),
    }
}

fn problems(text: &str) -> Vec<String> {
    match Schema::parse(Path::new("t.toml"), text) {
        Ok(_) => panic!("schema should be rejected"),
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
    }
}

/// A one-key schema: `extra` is the rest of the key's table.
fn one(ty: &str, default: &str, extra: &str) -> KeyDef {
    let s = schema(&format!(
        "namespace = \"t\"\n[[group]]\nname = \"G\"\nkeys = [\"K\"]\n[keys.K]\ntype = \"{ty}\"\ndefault = {default}\n{extra}\n"
    ));
    s.key("K").expect("key K").clone()
}

fn rule(def: &KeyDef, v: Value) -> &'static str {
    match def.validate(&v) {
        Ok(ok) => panic!("{v} should be rejected for {}, got {ok}", def.ty),
        Err(e) => e.rule,
    }
}

#[test]
fn the_demo_schema_has_the_eight_original_configs_in_four_groups() {
    let set = SchemaSet::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")))
        .expect("demo schema loads");
    let demo = set.get("demo").expect("demo namespace");
    let groups: Vec<&str> = demo.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(groups, ["General", "Content", "Logging", "Demo"]);
    let defaults: Vec<(&str, Value)> = demo
        .keys()
        .iter()
        .map(|k| (&*k.name, k.default.value()))
        .collect();
    assert_eq!(
        defaults,
        [
            ("SITE_NAME", json!("Config Manager")),
            ("THEME_COLOR", json!("#4a6cf7")),
            ("MAINTENANCE_MODE", json!(false)),
            (
                "WELCOME_MESSAGE",
                json!("You can see real-time configs and their values here")
            ),
            ("ITEMS_PER_PAGE", json!(5)),
            ("SHOW_LOGS", json!(true)),
            ("LOGS_COUNT", json!(10)),
            ("UI_POLLING_INTERVAL", json!(300.0)),
        ]
    );
    assert_eq!(
        demo.key("ITEMS_PER_PAGE").map(|k| &*k.group),
        Some("Content")
    );
    assert_eq!(demo.hash.len(), 64);
}

#[test]
fn bool_accepts_only_booleans() {
    let k = one("bool", "false", "");
    assert_eq!(k.validate(&json!(true)), Ok(json!(true)));
    assert_eq!(rule(&k, json!("true")), "type");
    assert_eq!(rule(&k, json!(1)), "type");
    assert_eq!(k.parse_text("on"), Ok(json!(true)));
    assert_eq!(k.parse_text("0"), Ok(json!(false)));
    assert!(k.parse_text("maybe").is_err());
}

#[test]
fn int_checks_type_range_and_bounds() {
    let k = one("int", "5", "min = 1\nmax = 100");
    assert_eq!(k.validate(&json!(100)), Ok(json!(100)));
    assert_eq!(rule(&k, json!(0)), "min");
    assert_eq!(rule(&k, json!(101)), "max");
    assert_eq!(rule(&k, json!(5.5)), "type");
    assert_eq!(rule(&k, json!("5")), "type");
    assert_eq!(rule(&k, json!(u64::MAX)), "type");
    assert_eq!(k.parse_text(" 42 "), Ok(json!(42)));
    assert_eq!(k.parse_text("4x").map_err(|e| e.rule), Err("type"));
}

#[test]
fn float_accepts_integers_and_checks_bounds() {
    let k = one("float", "300.0", "min = 50\nmax = 60000.0");
    assert_eq!(k.validate(&json!(100)), Ok(json!(100.0)));
    assert_eq!(k.validate(&json!(50.5)), Ok(json!(50.5)));
    assert_eq!(rule(&k, json!(49.9)), "min");
    assert_eq!(rule(&k, json!(60000.1)), "max");
    assert_eq!(rule(&k, json!("1.0")), "type");
    assert_eq!(k.parse_text("inf").map_err(|e| e.rule), Err("type"));
    assert_eq!(k.parse_text("NaN").map_err(|e| e.rule), Err("type"));
}

#[test]
fn decimal_keeps_its_scale_and_checks_bounds() {
    let k = one("decimal", "\"12.50\"", "min = \"0.01\"\nmax = 1000");
    assert_eq!(k.default.value(), json!("12.50"));
    assert_eq!(k.validate(&json!("3.000")), Ok(json!("3.000")));
    assert_eq!(k.validate(&json!(7)), Ok(json!("7")));
    assert_eq!(rule(&k, json!("0.001")), "min");
    assert_eq!(rule(&k, json!("1000.01")), "max");
    assert_eq!(rule(&k, json!("12,5")), "format");
    assert_eq!(rule(&k, json!("1e400")), "format");
    assert_eq!(k.parse_text(" 12.5 "), Ok(json!("12.5")));
    assert_eq!(rule(&k, json!(true)), "type");
}

#[test]
fn string_checks_length_in_characters_and_pattern() {
    let k = one("string", "\"#4a6cf7\"", "pattern = \"^#[0-9a-fA-F]{6}$\"");
    assert_eq!(k.validate(&json!("#ABCDEF")), Ok(json!("#ABCDEF")));
    assert_eq!(rule(&k, json!("red")), "pattern");
    assert_eq!(rule(&k, json!(5)), "type");
    let k = one("string", "\"ok\"", "max_length = 3");
    assert_eq!(k.validate(&json!("äöü")), Ok(json!("äöü")));
    assert_eq!(rule(&k, json!("abcd")), "max_length");
    assert_eq!(k.parse_text(" ab"), Ok(json!(" ab")));
}

#[test]
fn enum_accepts_only_its_choices() {
    let k = one(
        "enum",
        "\"info\"",
        "choices = [\"debug\", \"info\", \"warn\"]",
    );
    assert_eq!(k.validate(&json!("warn")), Ok(json!("warn")));
    assert_eq!(rule(&k, json!("INFO")), "choices");
    assert_eq!(rule(&k, json!(1)), "type");
}

#[test]
fn duration_parses_human_units_and_checks_bounds() {
    let k = one("duration", "\"30s\"", "min = \"1s\"\nmax = \"1h\"");
    assert_eq!(k.validate(&json!("5m")), Ok(json!("5m")));
    assert_eq!(k.validate(&json!("1h")), Ok(json!("1h")));
    assert_eq!(k.validate(&json!("1m 30s")), Ok(json!("1m 30s")));
    assert_eq!(rule(&k, json!("500ms")), "min");
    assert_eq!(rule(&k, json!("2h")), "max");
    assert_eq!(rule(&k, json!("soon")), "format");
    assert_eq!(rule(&k, json!(30)), "type");
}

#[test]
fn date_datetime_and_time_follow_their_formats() {
    let d = one("date", "\"2024-01-31\"", "");
    assert!(d.validate(&json!("2024-02-29")).is_ok());
    assert_eq!(rule(&d, json!("2023-02-29")), "format");
    assert_eq!(rule(&d, json!("31.01.2024")), "format");
    let dt = one("datetime", "\"2024-01-31T10:00:00Z\"", "");
    assert!(dt.validate(&json!("2024-01-31T10:00:00+02:00")).is_ok());
    assert_eq!(rule(&dt, json!("2024-01-31 10:00")), "format");
    let t = one("time", "\"08:30\"", "");
    assert!(t.validate(&json!("23:59:59")).is_ok());
    assert!(t.validate(&json!("23:59:59.250")).is_ok());
    assert_eq!(rule(&t, json!("24:00")), "format");
}

/// Issue 11 item 9: exactly the documented formats, nothing looser (each case was accepted
/// before).
#[test]
fn text_formats_are_exactly_the_documented_ones() {
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "decimal",
            "\"1\"",
            &[
                "0",
                "-3",
                "12.50",
                "007.5",
                "0.0000000000000000000000000001",
                "9999999999999999999999999999",
            ],
            &[
                "1_000",
                "+1",
                " 1",
                "1 ",
                "1.",
                ".5",
                "-",
                "1e3",
                "1E3",
                "0x10",
                "1,5",
                "",
                "NaN",
                "Infinity",
                "--1",
                "1.2.3",
                // 29 digits: more than a decimal holds (refused, never rounded).
                "0.12345678901234567890123456789",
                "12345678901234567890123456789",
            ],
        ),
        (
            "date",
            "\"2024-01-31\"",
            &["2024-02-29", "0001-01-01", "9999-12-31"],
            &[
                "2026-1-1",
                "2026-01-1",
                "+10000-01-01",
                "10000-01-01",
                "2023-02-29",
                "2026-13-01",
                "2026-01-31T00:00:00Z",
                " 2026-01-31",
                "2026/01/31",
                "-2026-01-01",
            ],
        ),
        (
            "time",
            "\"08:30\"",
            &[
                "00:00",
                "09:00",
                "23:59",
                "23:59:59",
                "09:00:30.5",
                "09:00:30.123456789",
            ],
            &[
                "9:00",
                "09:0",
                "24:00",
                "12:60",
                "12:00:60",
                "23:59:60",
                "09:00:30.",
                "09:00:30.1234567890",
                "09:00Z",
                "09:00:00+01:00",
                "9h",
                " 09:00",
                "0900",
            ],
        ),
        (
            "datetime",
            "\"2024-01-31T10:00:00Z\"",
            &[
                "2024-01-31T10:00:00Z",
                "2024-01-31T10:00:00.5+02:00",
                "2024-01-31t10:00:00z",
                "2024-01-31T10:00:00-23:59",
                // Leap seconds where there was one (23:59:60 UTC on a month's last day).
                "2016-12-31T23:59:60Z",
                "2015-06-30T23:59:60Z",
                "2017-01-01T00:59:60+01:00",
            ],
            &[
                "2026-01-31T12:30:60Z",
                "2016-12-30T23:59:60Z",
                "2016-12-31T23:59:60+01:00",
                "2024-01-31 10:00:00Z",
                "2024-01-31T10:00Z",
                "2024-01-31T10:00:00",
                "2024-01-31T10:00:00+2:00",
                "2024-01-31T10:00:00+24:00",
                "2024-01-31T10:00:00+0200",
                "+10000-01-31T10:00:00Z",
                "2024-1-31T10:00:00Z",
            ],
        ),
    ];
    for (ty, default, good, bad) in cases {
        let k = one(ty, default, "");
        for v in *good {
            assert!(
                k.validate(&json!(v)).is_ok(),
                "{ty} {v:?} should be accepted"
            );
        }
        for v in *bad {
            assert_eq!(rule(&k, json!(v)), "format", "{ty} {v:?} should be refused");
        }
    }
}

/// Issue 11 item 9: a decimal never loses digits through `f64`.
#[test]
fn a_decimal_sent_as_a_json_number_is_stored_exactly_or_refused() {
    let k = one("decimal", "\"1\"", "");
    let sent = |text: &str| -> Sent { serde_json::from_str(text).expect("json") };
    // From the number's own text: every digit kept, scale too.
    assert_eq!(
        k.validate(&sent("1234567890.123456789").exact(Some(&k))),
        Ok(json!("1234567890.123456789"))
    );
    assert_eq!(
        k.validate(&sent("12.50").exact(Some(&k))),
        Ok(json!("12.50"))
    );
    assert_eq!(k.validate(&sent(" -3 ").exact(Some(&k))), Ok(json!("-3")));
    // Too many digits, or an exponent: refused with a clear message, never rounded.
    for text in ["0.12345678901234567890123456789", "1e3", "1.5E-2"] {
        let e = k
            .validate(&sent(text).exact(Some(&k)))
            .expect_err("refused");
        assert_eq!(e.rule, "format", "{text}");
        assert!(
            e.message.contains("string") || e.message.contains("digits"),
            "{text}: {}",
            e.message
        );
    }
    // Without its text (a value built in code), only a whole number can be trusted.
    assert_eq!(k.validate(&json!(7)), Ok(json!("7")));
    assert_eq!(rule(&k, json!(1234567890.125)), "format");
    // Other types and non-numbers are as parsed.
    let s = one("string", "\"x\"", "");
    assert_eq!(sent("\"a\"").exact(Some(&s)), json!("a"));
    assert_eq!(sent("5").exact(Some(&s)), json!(5));
    assert_eq!(sent("null").exact(Some(&k)), Value::Null);
    assert_eq!(sent("{\"a\": 1.50}").exact(Some(&k)), json!({"a": 1.5}));
    assert_eq!(sent("2.5").exact(None), json!(2.5));
}

/// A decimal default written as a TOML float went through `f64`: `rtconfig check` says to write
/// it as a string.
#[test]
fn a_fractional_decimal_default_must_be_a_string() {
    let p = problems(
        "namespace = \"t\"\n[[group]]\nname = \"G\"\nkeys = [\"K\"]\n[keys.K]\ntype = \"decimal\"\ndefault = 9.90\n",
    );
    assert!(
        p.iter().any(|m| m.contains("send the decimal as a string")),
        "{p:?}"
    );
}

#[test]
fn datetime_default_may_be_a_toml_datetime() {
    let dt = one("datetime", "2024-01-31T10:00:00Z", "");
    assert_eq!(dt.default.value(), json!("2024-01-31T10:00:00Z"));
}

#[test]
fn json_accepts_anything_within_max_bytes() {
    let k = one("json", "'{\"a\": [1, 2]}'", "max_bytes = 20");
    assert_eq!(k.default.value(), json!({"a": [1, 2]}));
    assert_eq!(k.validate(&json!([1, "x"])), Ok(json!([1, "x"])));
    assert_eq!(
        rule(&k, json!({"long": "xxxxxxxxxxxxxxxxxxxxx"})),
        "max_bytes"
    );
    assert_eq!(k.parse_text("{\"a\":1}"), Ok(json!({"a": 1})));
    assert_eq!(k.parse_text("{oops").map_err(|e| e.rule), Err("format"));
}

#[test]
fn the_mask_of_a_secret_cannot_be_written_back() {
    let k = one("string", "\"\"", "secret = true");
    assert!(k.secret);
    assert_eq!(
        rule(&k, json!({"masked": true, "fingerprint": "abc"})),
        "masked"
    );
}

#[test]
fn a_broken_file_reports_every_problem_with_file_and_key() {
    let p = problems(
        r#"
namespace = "Bad Name"
colour = "red"
[[group]]
name = "G"
keys = ["A", "B", "C", "GHOST"]
[[group]]
name = "G"
keys = ["A"]
[keys.A]
type = "int"
default = "five"
[keys.B]
type = "integer"
default = 1
[keys.C]
type = "string"
default = "x"
min = 1
[keys.D]
type = "bool"
default = true
[keys."1bad"]
type = "bool"
default = true
"#,
    );
    let joined = p.join("\n");
    for needle in [
        "t.toml: namespace \"Bad Name\" must match",
        "unknown top-level field \"colour\"",
        "group \"G\" is defined twice",
        "key A: listed in group \"G\" and in group \"G\"",
        "key A: default is invalid (type)",
        "key B: unknown type \"integer\"",
        "key C: min does not apply to type string",
        "key D: not listed in any [[group]]",
        "key 1bad: key name must match",
        "key GHOST: group \"G\" lists a key with no [keys.GHOST] table",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
    }
}

#[test]
fn constraint_problems_are_reported() {
    let base = "namespace = \"t\"\n[[group]]\nname = \"G\"\nkeys = [\"K\"]\n[keys.K]\n";
    let cases = [
        (
            "type = \"int\"\ndefault = 5\nmin = 10\nmax = 1",
            "min 10 is greater than max 1",
        ),
        (
            "type = \"int\"\ndefault = 50\nmax = 10",
            "default is invalid (max)",
        ),
        (
            "type = \"int\"\ndefault = 5\nmin = 1.5",
            "min must be an integer",
        ),
        (
            "type = \"string\"\ndefault = \"x\"\npattern = \"(\"",
            "pattern is not a valid regex",
        ),
        (
            "type = \"string\"\ndefault = \"x\"\nmax_length = 0",
            "max_length must be a positive",
        ),
        (
            "type = \"enum\"\ndefault = \"a\"",
            "type enum needs choices",
        ),
        (
            "type = \"enum\"\ndefault = \"a\"\nchoices = []",
            "choices must not be empty",
        ),
        (
            "type = \"enum\"\ndefault = \"a\"\nchoices = [\"a\", \"a\"]",
            "choice \"a\" is repeated",
        ),
        (
            "type = \"enum\"\ndefault = \"z\"\nchoices = [\"a\"]",
            "default is invalid (choices)",
        ),
        (
            "type = \"duration\"\ndefault = \"5s\"\nmin = 5",
            "min must be a duration",
        ),
        (
            "type = \"json\"\ndefault = 1\nmax_bytes = -1",
            "max_bytes must be a positive",
        ),
        (
            "type = \"bool\"\ndefault = true\nsecret = \"yes\"",
            "secret must be true or false",
        ),
        (
            "type = \"bool\"\ndefault = true\ncolour = 1",
            "unknown field \"colour\"",
        ),
        ("type = \"bool\"", "missing default"),
        ("default = true", "missing type"),
    ];
    for (body, needle) in cases {
        let p = problems(&format!("{base}{body}\n")).join("\n");
        assert!(p.contains(needle), "{body:?}: missing {needle:?} in {p}");
    }
}

#[test]
fn invalid_toml_names_the_line() {
    let p = problems("namespace = \"t\"\n[[group]\n");
    assert!(p[0].contains("line 2: invalid TOML"), "{p:?}");
}

#[test]
fn a_schema_dir_rejects_duplicate_namespaces_and_empty_dirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = SchemaSet::load_dir(dir.path()).expect_err("empty dir");
    assert!(err[0].reason.contains("no *.toml"));
    let text = "namespace = \"x\"\n[[group]]\nname = \"G\"\nkeys = [\"K\"]\n[keys.K]\ntype = \"bool\"\ndefault = true\n";
    std::fs::write(dir.path().join("a.toml"), text).expect("write");
    std::fs::write(dir.path().join("b.toml"), text).expect("write");
    let err = SchemaSet::load_dir(dir.path()).expect_err("duplicate");
    assert!(err[0].reason.contains("also defined in"), "{err:?}");
}

#[test]
fn key_and_namespace_names_follow_their_patterns() {
    assert!(valid_key_name("SITE_NAME"));
    assert!(valid_key_name("a.b-c_d"));
    assert!(!valid_key_name("_x"));
    assert!(!valid_key_name(&"a".repeat(129)));
    assert!(valid_namespace_name("demo"));
    assert!(!valid_namespace_name("Demo"));
    assert!(!valid_namespace_name("a{b}"));
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn every_type() -> Vec<KeyDef> {
    vec![
        one("bool", "false", ""),
        one("int", "5", "min = -10\nmax = 10"),
        one("float", "1.5", "min = -1.0\nmax = 2.0"),
        one("decimal", "\"1.0\"", "min = \"-5\"\nmax = \"5\""),
        one("string", "\"a\"", "max_length = 5\npattern = \"^[a-z]*$\""),
        one("enum", "\"a\"", "choices = [\"a\", \"b\"]"),
        one("duration", "\"1s\"", "min = \"1ms\"\nmax = \"1d\""),
        one("date", "\"2024-01-01\"", ""),
        one("datetime", "\"2024-01-01T00:00:00Z\"", ""),
        one("time", "\"00:00\"", ""),
        one("json", "1", "max_bytes = 64"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No value and no text panics validation, and whatever is accepted validates again unchanged.
    #[test]
    fn validation_never_panics_and_is_idempotent(v in any_json(), text in ".{0,64}") {
        for def in every_type() {
            if let Ok(c) = def.validate(&v) {
                prop_assert_eq!(def.validate(&c), Ok(c.clone()));
            }
            if let Ok(c) = def.parse_text(&text) {
                prop_assert_eq!(def.validate(&c), Ok(c.clone()));
            }
        }
    }

    /// Arbitrary schema text never panics the parser.
    #[test]
    fn schema_parsing_never_panics(text in "(namespace|keys|group|type|default|min|\\[|\\]|=|\"|\n| |[a-z0-9])*") {
        let _ = Schema::parse(Path::new("p.toml"), &text);
    }
}

#[test]
fn require_comment_is_a_boolean_defaulting_to_false() {
    let body =
        "[[group]]\nname = \"G\"\nkeys = [\"K\"]\n[keys.K]\ntype = \"bool\"\ndefault = true\n";
    // (top-level lines, Ok(require_comment) or the problem)
    let table: [(&str, Result<bool, &str>); 4] = [
        ("", Ok(false)),
        ("require_comment = true\n", Ok(true)),
        ("require_comment = false\n", Ok(false)),
        (
            "require_comment = \"yes\"\n",
            Err("require_comment must be true or false"),
        ),
    ];
    for (top, want) in table {
        let text = format!("namespace = \"t\"\n{top}{body}");
        match want {
            Ok(b) => assert_eq!(schema(&text).require_comment, b, "{top}"),
            Err(p) => {
                let got = problems(&text).join("\n");
                assert!(got.contains(p), "{top}: {got}");
            }
        }
    }
}

#[test]
fn an_unknown_top_level_field_stops_check_but_only_warns_a_sidecar() {
    let text = "namespace = \"t\"\nrequire_approval = true\n[[group]]\nname = \"G\"\nkeys = [\"K\"]\n[keys.K]\ntype = \"bool\"\ndefault = true\n";
    let strict = problems(text).join("\n");
    assert!(
        strict.contains("t.toml: unknown top-level field \"require_approval\" (known: namespace, description, require_comment, group, keys)"),
        "{strict}"
    );
    let (s, warnings) = Schema::parse_with(Path::new("t.toml"), text, Strictness::Sidecar)
        .expect("a sidecar goes on");
    assert_eq!(s.key("K").map(|k| k.ty), Some(ValueType::Bool));
    let warnings: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("unknown top-level field \"require_approval\" ignored"),
        "{warnings:?}"
    );
    // Inside a key definition an unknown field changes what is served: an error for a sidecar too.
    let in_key = text.replace("default = true\n", "default = true\ncolour = \"red\"\n");
    let err =
        Schema::parse_with(Path::new("t.toml"), &in_key, Strictness::Sidecar).expect_err("refused");
    assert!(
        err.iter()
            .any(|p| p.to_string().contains("unknown field \"colour\"")),
        "{err:?}"
    );
}

#[test]
fn names_and_equal_rules_are_held_once_per_schema() {
    let text = "namespace = \"t\"\n[[group]]\nname = \"A\"\nkeys = [\"A1\", \"A2\"]\n[[group]]\nname = \"B\"\nkeys = [\"B1\", \"B2\"]\n\
        [keys.A1]\ntype = \"string\"\ndefault = \"x\"\nmax_length = 20\n\
        [keys.A2]\ntype = \"string\"\ndefault = \"y\"\nmax_length = 20\n\
        [keys.B1]\ntype = \"string\"\ndefault = \"z\"\nmax_length = 21\n\
        [keys.B2]\ntype = \"string\"\ndefault = \"w\"\nmax_length = 20\n";
    let s = schema(text);
    let def = |k: &str| s.key(k).expect("key");
    // The same rules and type: one `Rules`; other rules: another.
    assert!(Arc::ptr_eq(&def("A1").rules, &def("A2").rules));
    assert!(!Arc::ptr_eq(&def("A1").rules, &def("B1").rules));
    assert!(
        Arc::ptr_eq(&def("A1").rules, &def("B2").rules),
        "not only neighbours"
    );
    assert_eq!(def("B1").rules.max_length, Some(21));
    // Each group's key list holds the keys' own names, not copies.
    let listed: Vec<&Arc<str>> = s.groups.iter().flat_map(|g| &g.keys).collect();
    assert_eq!(listed.len(), s.len());
    for (name, def) in listed.into_iter().zip(s.keys()) {
        assert!(Arc::ptr_eq(name, &def.name), "{name}");
    }
    // The compact schema a sidecar reloads shares them the same way.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("t.toml"), text).expect("write");
    let compact = dir.path().join("t.snapshot.schema");
    for want in [compact::Loaded::Parsed, compact::Loaded::Compact] {
        let (s, _, how) = compact::load_namespace(dir.path(), Strictness::Sidecar, "t", &compact)
            .expect("loads")
            .expect("namespace t");
        assert_eq!(how, want);
        let (a1, a2) = (s.key("A1").expect("A1"), s.key("A2").expect("A2"));
        assert!(Arc::ptr_eq(&a1.rules, &a2.rules));
        assert!(Arc::ptr_eq(&s.groups[0].keys[0], &a1.name));
    }
}

#[test]
fn a_key_definition_stays_small() {
    // 100,000 keys hold 100,000 of these: the constraints live behind one shared pointer, the
    // default is its JSON (a `Value` is 72 bytes), the description a `Box<str>`.
    assert!(
        std::mem::size_of::<KeyDef>() <= 80,
        "{}",
        std::mem::size_of::<KeyDef>()
    );
}

#[test]
fn a_namespace_over_the_key_limit_is_refused_by_name() {
    let text = "namespace = \"t\"\n[[group]]\nname = \"G\"\nkeys = [\"A\", \"B\", \"C\"]\n\
                [keys.A]\ntype = \"int\"\ndefault = 1\n[keys.B]\ntype = \"int\"\ndefault = 1\n\
                [keys.C]\ntype = \"int\"\ndefault = 1\n";
    let mut parser = Parser::new(Path::new("t.toml"), Strictness::Strict);
    parser.max_keys = 2;
    let problems: Vec<String> = match parser.parse(text) {
        Ok(_) => panic!("3 keys over a limit of 2 should be refused"),
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("t.toml") && problems[0].contains("at most 2"),
        "{problems:?}"
    );
    // At the limit: it loads.
    let mut parser = Parser::new(Path::new("t.toml"), Strictness::Strict);
    parser.max_keys = 3;
    assert!(parser.parse(text).is_ok());
}
