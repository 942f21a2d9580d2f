use serde_json::{json, Value};

use super::*;
use crate::schema::{Schema, ValueType};

fn default_of(ty: ValueType) -> Value {
    match ty {
        ValueType::Bool => json!(false),
        ValueType::Int => json!(0),
        ValueType::Float => json!(0.0),
        ValueType::Decimal => json!("0"),
        ValueType::String | ValueType::Enum => json!("a"),
        ValueType::Duration => json!("0s"),
        ValueType::Date => json!("2024-01-01"),
        ValueType::DateTime => json!("2024-01-01T00:00:00Z"),
        ValueType::Time => json!("00:00"),
        ValueType::Json => json!([]),
    }
}

fn def(ty: ValueType) -> KeyDef {
    let schema = Schema::from_keys("t", &[("K", ty, default_of(ty))]);
    schema.key("K").cloned().expect("K")
}

fn ty_named(name: &str) -> ValueType {
    match name {
        "bool" => ValueType::Bool,
        "int" => ValueType::Int,
        "float" => ValueType::Float,
        "decimal" => ValueType::Decimal,
        "string" => ValueType::String,
        "enum" => ValueType::Enum,
        "duration" => ValueType::Duration,
        "date" => ValueType::Date,
        "datetime" => ValueType::DateTime,
        "time" => ValueType::Time,
        "json" => ValueType::Json,
        other => panic!("unknown type {other}"),
    }
}

#[test]
fn encodes_what_constance_4_writes_for_every_type() {
    let cases: &[(ValueType, Value, &str)] = &[
        (
            ValueType::String,
            json!("hello"),
            r#"{"__type__": "default", "__value__": "hello"}"#,
        ),
        (
            ValueType::Int,
            json!(42),
            r#"{"__type__": "default", "__value__": 42}"#,
        ),
        (
            ValueType::Bool,
            json!(true),
            r#"{"__type__": "default", "__value__": true}"#,
        ),
        (
            ValueType::Float,
            json!(2.75),
            r#"{"__type__": "default", "__value__": 2.75}"#,
        ),
        (
            ValueType::Float,
            json!(2.0),
            r#"{"__type__": "default", "__value__": 2.0}"#,
        ),
        (
            ValueType::Decimal,
            json!("1.10"),
            r#"{"__type__": "decimal", "__value__": "1.10"}"#,
        ),
        (
            ValueType::Decimal,
            json!("0.0000001"),
            r#"{"__type__": "decimal", "__value__": "1E-7"}"#,
        ),
        (
            ValueType::DateTime,
            json!("2024-01-02T03:04:05Z"),
            r#"{"__type__": "datetime", "__value__": "2024-01-02T03:04:05+00:00"}"#,
        ),
        (
            ValueType::DateTime,
            json!("2024-01-02T03:04:05.25-05:00"),
            r#"{"__type__": "datetime", "__value__": "2024-01-02T03:04:05.250000-05:00"}"#,
        ),
        (
            ValueType::DateTime,
            json!("2024-01-02T03:04:05.123456789+05:30"),
            r#"{"__type__": "datetime", "__value__": "2024-01-02T03:04:05.123456+05:30"}"#,
        ),
        (
            ValueType::Date,
            json!("2024-01-02"),
            r#"{"__type__": "date", "__value__": "2024-01-02"}"#,
        ),
        (
            ValueType::Time,
            json!("03:04:05"),
            r#"{"__type__": "time", "__value__": "03:04:05"}"#,
        ),
        (
            ValueType::Time,
            json!("09:30"),
            r#"{"__type__": "time", "__value__": "09:30:00"}"#,
        ),
        (
            ValueType::Time,
            json!("23:59:59.5"),
            r#"{"__type__": "time", "__value__": "23:59:59.500000"}"#,
        ),
        (
            ValueType::Duration,
            json!("1d 30s"),
            r#"{"__type__": "timedelta", "__value__": 86430.0}"#,
        ),
        (
            ValueType::Duration,
            json!("250ms"),
            r#"{"__type__": "timedelta", "__value__": 0.25}"#,
        ),
        (
            ValueType::Duration,
            json!("1us"),
            r#"{"__type__": "timedelta", "__value__": 1e-06}"#,
        ),
        (
            ValueType::Json,
            json!([1, "a"]),
            r#"{"__type__": "default", "__value__": [1, "a"]}"#,
        ),
        (
            ValueType::Json,
            json!({"b": 1, "a": {"x": [true, null, 2.5]}}),
            r#"{"__type__": "default", "__value__": {"b": 1, "a": {"x": [true, null, 2.5]}}}"#,
        ),
        (
            ValueType::String,
            json!("h\u{e9}llo \u{1F600} \"q\" \\ \n\t\u{7f}/"),
            r#"{"__type__": "default", "__value__": "h\u00e9llo \ud83d\ude00 \"q\" \\ \n\t\u007f/"}"#,
        ),
    ];
    for (ty, value, want) in cases {
        let got = encode(&def(*ty), value).expect("encodes");
        assert_eq!(got, *want, "{ty} {value}");
    }
}

#[test]
fn floats_print_as_python_repr() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (100.0, "100.0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-4, "0.0001"),
        (1e-5, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (1e15, "1000000000000000.0"),
        (1234567890123456.0, "1234567890123456.0"),
        (1e16, "1e+16"),
        (1.5e300, "1.5e+300"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (-2.5, "-2.5"),
    ];
    for (f, want) in cases {
        assert_eq!(float_repr(*f).as_deref(), Some(*want), "{f:e}");
    }
    assert_eq!(float_repr(f64::NAN), None);
    assert_eq!(float_repr(f64::INFINITY), None);
}

#[test]
fn decimals_print_as_python_str() {
    let cases: &[(&str, &str)] = &[
        ("1.10", "1.10"),
        ("1000", "1000"),
        ("0.00", "0.00"),
        ("-0.001", "-0.001"),
        ("007.5", "7.5"),
        ("0.000001", "0.000001"),
        ("0.0000001", "1E-7"),
        ("0.00000010", "1.0E-7"),
        ("-0.00000012", "-1.2E-7"),
        ("0.0000000", "0E-7"),
        ("-0", "-0"),
    ];
    for (text, want) in cases {
        assert_eq!(python_decimal_str(text).as_deref(), Some(*want), "{text}");
    }
}

#[test]
fn decodes_what_constance_holds_into_the_key_type() {
    let ok: &[(ValueType, &str, Option<Value>)] = &[
        (
            ValueType::Decimal,
            r#"{"__type__": "decimal", "__value__": "1E+3"}"#,
            Some(json!("1000")),
        ),
        (
            ValueType::Decimal,
            r#"{"__type__": "decimal", "__value__": "1.0E-7"}"#,
            Some(json!("0.00000010")),
        ),
        (
            ValueType::DateTime,
            r#"{"__type__": "datetime", "__value__": "2024-01-02T03:04:05"}"#,
            Some(json!("2024-01-02T03:04:05Z")),
        ),
        (
            ValueType::Duration,
            r#"{"__type__": "timedelta", "__value__": 86430.0}"#,
            Some(json!("86430s")),
        ),
        (
            ValueType::Duration,
            r#"{"__type__": "timedelta", "__value__": 0.0015}"#,
            Some(json!("1500us")),
        ),
        (ValueType::Int, "42", Some(json!(42))),
        (
            ValueType::Float,
            r#"{"__type__":"default","__value__":3}"#,
            Some(json!(3.0)),
        ),
        (
            ValueType::Json,
            r#"{"__type__": "default", "__value__": [{"__type__": "decimal", "__value__": "1.5"}]}"#,
            Some(json!(["1.5"])),
        ),
        (ValueType::Json, r#"{"a": 1}"#, Some(json!({"a": 1}))),
        (
            ValueType::String,
            r#"{"__type__": "default", "__value__": null}"#,
            None,
        ),
        (ValueType::String, "", None),
    ];
    for (ty, bytes, want) in ok {
        assert_eq!(
            decode(&def(*ty), bytes.as_bytes()).as_ref(),
            Ok(want),
            "{ty} {bytes}"
        );
    }
    let bad: &[(ValueType, &[u8], &str)] = &[
        (ValueType::Int, b"not json", "not_json"),
        (ValueType::Int, b"\x80\x04K*.", "not_json"),
        (
            ValueType::Float,
            br#"{"__type__": "default", "__value__": NaN}"#,
            "not_json",
        ),
        (
            ValueType::Int,
            br#"{"__type__": "default"}"#,
            "half_wrapped",
        ),
        (
            ValueType::Int,
            br#"{"__type__": "default", "__value__": 1, "x": 2}"#,
            "half_wrapped",
        ),
        (
            ValueType::String,
            br#"{"__type__": "money", "__value__": "1"}"#,
            "unknown_type",
        ),
        (
            ValueType::Int,
            br#"{"__type__": "default", "__value__": "5"}"#,
            "wrong_type",
        ),
        (
            ValueType::Int,
            br#"{"__type__": "default", "__value__": 18446744073709551616}"#,
            "wrong_type",
        ),
        (
            ValueType::Bool,
            br#"{"__type__": "default", "__value__": 1}"#,
            "wrong_type",
        ),
        (
            ValueType::Decimal,
            br#"{"__type__": "decimal", "__value__": "abc"}"#,
            "format",
        ),
        (
            ValueType::DateTime,
            br#"{"__type__": "datetime", "__value__": "yesterday"}"#,
            "format",
        ),
        (
            ValueType::Duration,
            br#"{"__type__": "timedelta", "__value__": -1.0}"#,
            "format",
        ),
        (
            ValueType::Time,
            br#"{"__type__": "time", "__value__": "03:04:05+00:00"}"#,
            "format",
        ),
        (
            ValueType::Enum,
            br#"{"__type__": "default", "__value__": "zzz"}"#,
            "schema",
        ),
    ];
    for (ty, bytes, code) in bad {
        let got = decode(&def(*ty), bytes);
        assert_eq!(
            got.as_ref().map_err(DecodeError::code),
            Err(*code),
            "{ty} {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn two_spellings_of_one_value_normalize_to_the_same_bytes() {
    let d = def(ValueType::Duration);
    let a = normalize(&d, br#"{"__type__": "timedelta", "__value__": 300.0}"#);
    let b = encode(&d, &json!("5m"))
        .map(Some)
        .map_err(NormalizeError::from);
    assert_eq!(a, b);
    let t = def(ValueType::DateTime);
    let a = normalize(
        &t,
        br#"{"__type__": "datetime", "__value__": "2024-01-02T03:04:05.250000-05:00"}"#,
    );
    let b = encode(&t, &json!("2024-01-02T03:04:05.25-05:00")).map(Some);
    assert_eq!(a, b.map_err(NormalizeError::from));
}

#[test]
fn a_leap_second_has_no_python_form() {
    let err = encode(&def(ValueType::DateTime), &json!("2016-12-31T23:59:60Z"));
    assert!(
        matches!(err, Err(EncodeError::Unrepresentable { .. })),
        "{err:?}"
    );
}

/// Vectors generated by real django-constance (tests/constance/make_vectors.py). The file is
/// the `django` branch's; `RTCONFIG_CODEC_VECTORS` points at another copy.
#[test]
fn matches_the_vectors_real_constance_wrote() {
    let path = std::env::var_os("RTCONFIG_CODEC_VECTORS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/constance/codec_vectors.json")
        });
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("{} is absent: skipped", path.display());
        return;
    };
    let file: Value = serde_json::from_str(&text).expect("vectors are JSON");
    let python_type = |t: &str| match t {
        "bool" => Some(ValueType::Bool),
        "int" => Some(ValueType::Int),
        "float" => Some(ValueType::Float),
        "str" => Some(ValueType::String),
        "Decimal" => Some(ValueType::Decimal),
        "date" => Some(ValueType::Date),
        "time" => Some(ValueType::Time),
        "datetime" => Some(ValueType::DateTime),
        "timedelta" => Some(ValueType::Duration),
        "list" | "dict" => Some(ValueType::Json),
        _ => None,
    };
    let mut checked = 0;
    for v in file["vectors"].as_array().expect("vectors") {
        let name = v["name"].as_str().unwrap_or("?");
        let bytes = v["bytes"].as_str().expect("bytes");
        match &v["rtconfig"] {
            Value::Null => {
                // rtconfig cannot hold it: decoding refuses it, or reads it as the default.
                let ty = python_type(v["python_type"].as_str().unwrap_or(""))
                    .unwrap_or(ValueType::String);
                match decode(&def(ty), bytes.as_bytes()) {
                    Err(_) | Ok(None) => {}
                    Ok(Some(got)) => panic!("{name}: decoded {got} from what rtconfig cannot hold"),
                }
            }
            rt => {
                let d = def(ty_named(rt["type"].as_str().expect("type")));
                let want = &rt["value"];
                let decoded = decode(&d, bytes.as_bytes());
                let got = match (d.validate(want), decoded) {
                    // The vector's rtconfig value is canonical: decoding gives exactly it.
                    (Ok(canonical), Ok(Some(got))) => {
                        assert_eq!(got, canonical, "{name}");
                        got
                    }
                    // A value beyond what rtconfig holds (29 digits): refused for the same rule.
                    (Err(want_err), Err(DecodeError::Invalid(got_err))) => {
                        assert_eq!(want_err.rule, got_err.rule, "{name}");
                        checked += 1;
                        continue;
                    }
                    // Not an rtconfig spelling (`1E+3`): the same number, positionally.
                    (Err(_), Ok(Some(got))) => {
                        assert_eq!(
                            encode(&d, &got).ok(),
                            normalize(&d, bytes.as_bytes()).ok().flatten(),
                            "{name}"
                        );
                        got
                    }
                    (_, other) => panic!("{name}: decoded {other:?}"),
                };
                // Where rtconfig's value is constance's, encoding gives constance's bytes.
                if v.get("note").is_none() && d.validate(want).is_ok() {
                    assert_eq!(encode(&d, &got).as_deref(), Ok(bytes), "{name}");
                }
            }
        }
        checked += 1;
    }
    for v in file["decode"].as_array().expect("decode") {
        let name = v["name"].as_str().unwrap_or("?");
        let hex = v["bytes_hex"].as_str().expect("bytes_hex");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        match v.get("error") {
            Some(_) => {
                let ty = match name {
                    "bad_decimal" => ValueType::Decimal,
                    "bad_datetime" => ValueType::DateTime,
                    _ => ValueType::String,
                };
                assert!(
                    decode(&def(ty), &bytes).is_err(),
                    "{name}: constance refuses it"
                );
            }
            None => {
                let ty = python_type(v["decoded_type"].as_str().unwrap_or("")).expect("type");
                let d = def(ty);
                let got = decode(&d, &bytes)
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .unwrap_or_else(|| panic!("{name}: decoded as the default"));
                let reencoded = v["reencoded"].as_str().expect("reencoded");
                if !name.contains("nested") {
                    assert_eq!(encode(&d, &got).as_deref(), Ok(reencoded), "{name}");
                }
            }
        }
        checked += 1;
    }
    for (key, p) in file["project"].as_object().expect("project") {
        let d = def(ty_named(
            p["rtconfig_type"].as_str().expect("rtconfig_type"),
        ));
        let bytes = p["default_bytes"].as_str().expect("default_bytes");
        let got = decode(&d, bytes.as_bytes()).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(got.is_some(), "{key}");
        checked += 1;
    }
    assert!(checked > 50, "only {checked} vectors");
}
