//! django-constance 4.x's Redis value codec, byte for byte (pure; no I/O).
//!
//! constance stores each value as `json.dumps({"__type__": T, "__value__": V})` with Python's
//! default separators (`", "`, `": "`) and `ensure_ascii` (`constance/codecs.py`; the table in
//! `reference/mission-anchors.md` §1). [`encode`] turns an rtconfig value (canonical form, see
//! `schema::value`) into exactly those bytes; [`decode`] turns what constance holds back into an
//! rtconfig value for the key's schema type, checked against the key's constraints.
//!
//! | rtconfig type | `__type__` | `__value__` |
//! |---|---|---|
//! | bool, int, float, string, enum, json | `default` | the JSON value (floats as Python's `repr`) |
//! | decimal | `decimal` | `str(Decimal)` (`"1.10"`; `"1E-7"` below 1e-6, as Python prints it) |
//! | duration | `timedelta` | `total_seconds()`, a float (`86430.0`) |
//! | date | `date` | `YYYY-MM-DD` |
//! | datetime | `datetime` | `isoformat()`: `2024-01-02T03:04:05+00:00`, microseconds only when non-zero |
//! | time | `time` | `isoformat()`: `03:04:05`, microseconds only when non-zero |
//!
//! What constance can hold but rtconfig cannot, and the other way round, is an error naming it:
//! a naive datetime is read as UTC (as `rtconfig import-constance` reads a naive default), but
//! rtconfig always writes an aware one; Python keeps microseconds, so finer fractions are cut
//! (a duration rounds to the microsecond, like `timedelta`); a leap second has no Python form;
//! nested typed values inside a list or dict (`[Decimal("1.5")]`) have no rtconfig `json` form.

use std::fmt::Write as _;

use chrono::{Datelike, Timelike};
use serde_json::Value;

use crate::schema::ValueError;
use crate::schema::{KeyDef, ValueType};

/// Why an rtconfig value has no constance form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("{key}: {value:?} is not a valid {ty} (the ledger holds an unchecked value)")]
    NotCanonical {
        key: String,
        ty: ValueType,
        value: String,
    },
    #[error("{key}: {value:?} has no Python form ({why})")]
    Unrepresentable {
        key: String,
        value: String,
        why: &'static str,
    },
}

/// Why constance's bytes are not a value of the key's rtconfig type. `reason()` is what the
/// status view and the log show.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("an object with only one of __type__ and __value__ (constance cannot read it either)")]
    HalfWrapped,
    #[error("unknown constance type {0:?}")]
    UnknownType(String),
    #[error("constance holds a {got}, the rtconfig key is {expected}")]
    WrongType { expected: ValueType, got: String },
    #[error("{0}")]
    Format(String),
    #[error("fails the rtconfig schema: {0}")]
    Invalid(#[source] ValueError),
}

impl DecodeError {
    /// The stable short name of the failure (metric label, status `code`).
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::NotJson(_) => "not_json",
            DecodeError::HalfWrapped => "half_wrapped",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::Format(_) => "format",
            DecodeError::Invalid(_) => "schema",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// The bytes constance 4.x writes for `value` (the canonical rtconfig value of `def`).
pub fn encode(def: &KeyDef, value: &Value) -> Result<String, EncodeError> {
    let not_canonical = || EncodeError::NotCanonical {
        key: def.name.to_string(),
        ty: def.ty,
        value: value.to_string(),
    };
    let text = || value.as_str().ok_or_else(not_canonical);
    let mut out = String::with_capacity(48);
    let (ty, inner) = match def.ty {
        ValueType::Bool | ValueType::Int | ValueType::String | ValueType::Enum => {
            let mut s = String::new();
            dumps(value, &mut s);
            ("default", s)
        }
        ValueType::Json => {
            let mut s = String::new();
            dumps(value, &mut s);
            ("default", s)
        }
        ValueType::Float => {
            let f = value.as_f64().ok_or_else(not_canonical)?;
            ("default", float_repr(f).ok_or_else(not_canonical)?)
        }
        ValueType::Decimal => {
            let s = python_decimal_str(text()?).ok_or_else(not_canonical)?;
            ("decimal", quoted(&s))
        }
        ValueType::Duration => {
            let d = crate::schema::parse_duration(text()?).ok_or_else(not_canonical)?;
            // timedelta keeps microseconds (round half to even, as its constructor does).
            let micros = round_half_even_div(d.as_nanos(), 1000);
            // total_seconds() = microseconds / 10**6, one correctly rounded division.
            let secs = micros as f64 / 1e6;
            ("timedelta", float_repr(secs).ok_or_else(not_canonical)?)
        }
        ValueType::Date => ("date", quoted(text()?)),
        ValueType::DateTime => {
            let s = text()?;
            let dt = chrono::DateTime::parse_from_rfc3339(s).map_err(|_| not_canonical())?;
            let unrepresentable = |why| EncodeError::Unrepresentable {
                key: def.name.to_string(),
                value: s.to_owned(),
                why,
            };
            if dt.nanosecond() >= 1_000_000_000 {
                return Err(unrepresentable("a leap second"));
            }
            if dt.year() < 1 {
                return Err(unrepresentable("Python's datetime starts at year 1"));
            }
            let mut iso = String::with_capacity(32);
            let _ = write!(
                iso,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            );
            push_micros(&mut iso, dt.nanosecond());
            let offset = dt.offset().local_minus_utc();
            let (sign, abs) = if offset < 0 {
                ('-', -offset)
            } else {
                ('+', offset)
            };
            let _ = write!(iso, "{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60);
            if abs % 60 != 0 {
                let _ = write!(iso, ":{:02}", abs % 60);
            }
            ("datetime", quoted(&iso))
        }
        ValueType::Time => {
            let s = text()?;
            let t = parse_time(s).ok_or_else(not_canonical)?;
            let mut iso = format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
            push_micros(&mut iso, t.nanosecond());
            ("time", quoted(&iso))
        }
    };
    out.push_str("{\"__type__\": \"");
    out.push_str(ty);
    out.push_str("\", \"__value__\": ");
    out.push_str(&inner);
    out.push('}');
    Ok(out)
}

/// `.ffffff` when the microseconds are not zero (Python's `isoformat()`); finer digits are cut.
fn push_micros(out: &mut String, nanos: u32) {
    let micros = nanos / 1000;
    if micros != 0 {
        let _ = write!(out, ".{micros:06}");
    }
}

fn round_half_even_div(n: u128, d: u128) -> u128 {
    let (q, r) = (n / d, n % d);
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    dump_str(s, &mut out);
    out
}

/// `json.dumps(value)` with Python's defaults: `", "` and `": "`, `ensure_ascii`, floats as
/// `repr(float)`, objects in their order.
pub fn dumps(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                let _ = write!(out, "{n}");
            } else {
                // serde_json numbers are finite.
                let f = n.as_f64().unwrap_or(0.0);
                out.push_str(&float_repr(f).unwrap_or_else(|| "NaN".into()));
            }
        }
        Value::String(s) => dump_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dumps(v, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump_str(k, out);
                out.push_str(": ");
                dumps(v, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string as Python's `json.dumps` writes it with `ensure_ascii=True`.
fn dump_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            // Python escapes everything outside printable ASCII (`[^\\ -~]`), DEL included.
            c if !(' '..='~').contains(&c) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that round-trip, positional for exponents -4
/// to 15 (always with a fraction: `5.0`), else `1e+16` / `1.5e-05`. `None` for NaN and
/// infinities (rtconfig floats are finite).
pub fn float_repr(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    // `{:e}` prints the shortest round-trip digits: `-1.2345e-5`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the point
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(&digits);
        } else if point as usize >= digits.len() {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point as usize]);
            out.push('.');
            out.push_str(&digits[point as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    Some(out)
}

/// `str(Decimal(text))` for an rtconfig decimal (`-?digits[.digits]`): the same text, except
/// that a value whose first significant digit is more than 6 places after the point is printed
/// in scientific notation (`0.0000001` → `1E-7`, `0.00000010` → `1.0E-7`), as Python does.
pub fn python_decimal_str(text: &str) -> Option<String> {
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(u) => ("-", u),
        None => ("", text),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The coefficient without leading zeros ("0" for zero) and the exponent.
    let all: String = format!("{int}{frac}");
    let coeff = all.trim_start_matches('0');
    let coeff = if coeff.is_empty() { "0" } else { coeff };
    let exp = -(frac.len() as i64);
    let leftdigits = exp + coeff.len() as i64;
    if leftdigits > -6 {
        // Positional, as written (leading zeros of the integer part dropped).
        let int = int.trim_start_matches('0');
        let int = if int.is_empty() { "0" } else { int };
        return Some(if frac.is_empty() {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        });
    }
    let mut out = String::from(sign);
    out.push_str(&coeff[..1]);
    if coeff.len() > 1 {
        out.push('.');
        out.push_str(&coeff[1..]);
    }
    let _ = write!(out, "E{:+}", leftdigits - 1);
    Some(out)
}

fn parse_time(s: &str) -> Option<chrono::NaiveTime> {
    ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveTime::parse_from_str(s, f).ok())
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A decoded constance value before it is matched with an rtconfig type.
#[derive(Debug, Clone, PartialEq)]
enum Constance {
    /// `"default"` (or a bare, unwrapped value as constance 4.0 wrote them): plain JSON, with
    /// any nested registered value turned into its text (`Decimal("1.5")` → `"1.5"`, a
    /// timedelta → its seconds).
    Plain(Value),
    /// A registered type at the top: its discriminator and encoded `__value__`.
    Typed(String, Value),
}

const KNOWN_TYPES: [&str; 7] = [
    "default",
    "decimal",
    "datetime",
    "date",
    "time",
    "timedelta",
    "uuid",
];

/// Reads constance's bytes as its `loads` does (`object_hook`): an object of exactly
/// `__type__` and `__value__` is a wrapped value, one with either key and anything else is an
/// error, any other object is a plain dict. `None`: constance reads the default (an empty
/// value, or `null`).
fn parse(bytes: &[u8]) -> Result<Option<Constance>, DecodeError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        DecodeError::NotJson("not UTF-8 text (a pickled constance 3.x value?)".into())
    })?;
    let v: Value = serde_json::from_str(text).map_err(|e| {
        let nan = text.contains("NaN") || text.contains("Infinity");
        DecodeError::NotJson(if nan {
            "NaN or Infinity (rtconfig floats are finite)".into()
        } else {
            e.to_string()
        })
    })?;
    let c = match wrapped(&v)? {
        Some(("default", inner)) => Constance::Plain(plain(inner)?),
        Some((t, inner)) => Constance::Typed(t.to_owned(), inner.clone()),
        None => Constance::Plain(plain(&v)?),
    };
    Ok(match c {
        Constance::Plain(Value::Null) => None,
        c => Some(c),
    })
}

/// `Some((type, value))` for a wrapped object; an error for one constance refuses.
fn wrapped(v: &Value) -> Result<Option<(&str, &Value)>, DecodeError> {
    let Value::Object(map) = v else {
        return Ok(None);
    };
    let (t, inner) = (map.get("__type__"), map.get("__value__"));
    match (t, inner) {
        (None, None) => Ok(None),
        (Some(t), Some(inner)) if map.len() == 2 => match t.as_str() {
            Some(t) if KNOWN_TYPES.contains(&t) => Ok(Some((t, inner))),
            Some(t) => Err(DecodeError::UnknownType(t.to_owned())),
            None => Err(DecodeError::UnknownType(t.to_string())),
        },
        _ => Err(DecodeError::HalfWrapped),
    }
}

/// A plain JSON value with nested wrapped values replaced by their text.
fn plain(v: &Value) -> Result<Value, DecodeError> {
    if let Some((t, inner)) = wrapped(v)? {
        return match (t, inner) {
            ("default", inner) => plain(inner),
            ("timedelta", Value::Number(_)) => Ok(inner.clone()),
            (_, Value::String(_)) => Ok(inner.clone()),
            (t, _) => Err(DecodeError::Format(format!(
                "a nested constance {t} whose value is not text"
            ))),
        };
    }
    Ok(match v {
        Value::Array(items) => Value::Array(items.iter().map(plain).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), plain(v)?)))
                .collect::<Result<_, DecodeError>>()?,
        ),
        other => other.clone(),
    })
}

fn kind(c: &Constance) -> String {
    match c {
        Constance::Typed(t, _) => t.clone(),
        Constance::Plain(v) => match v {
            Value::Null => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Number(n) if n.is_i64() || n.is_u64() => "int".into(),
            Value::Number(_) => "float".into(),
            Value::String(_) => "str".into(),
            Value::Array(_) => "list".into(),
            Value::Object(_) => "dict".into(),
        },
    }
}

/// constance's bytes → the rtconfig value of `def` (canonical, constraints checked); `None`
/// when constance reads them as "use the default" (empty, or `null`).
pub fn decode(def: &KeyDef, bytes: &[u8]) -> Result<Option<Value>, DecodeError> {
    let Some(c) = parse(bytes)? else {
        return Ok(None);
    };
    let wrong = |c: &Constance| DecodeError::WrongType {
        expected: def.ty,
        got: kind(c),
    };
    let value = match (def.ty, &c) {
        (ValueType::Bool, Constance::Plain(v @ Value::Bool(_))) => v.clone(),
        (ValueType::Int, Constance::Plain(v @ Value::Number(n))) if n.is_i64() => v.clone(),
        (ValueType::Float, Constance::Plain(Value::Number(n))) => {
            Value::from(n.as_f64().ok_or_else(|| wrong(&c))?)
        }
        (ValueType::String | ValueType::Enum, Constance::Plain(v @ Value::String(_))) => v.clone(),
        (ValueType::Json, Constance::Plain(v)) => v.clone(),
        (ValueType::Decimal, Constance::Typed(t, Value::String(s))) if t == "decimal" => {
            Value::String(decimal_from_python(s)?)
        }
        (ValueType::Decimal, Constance::Plain(Value::Number(n))) if n.is_i64() || n.is_u64() => {
            Value::String(n.to_string())
        }
        (ValueType::Duration, Constance::Typed(t, Value::Number(n))) if t == "timedelta" => {
            Value::String(duration_from_seconds(n.as_f64().unwrap_or(f64::NAN))?)
        }
        (ValueType::Date, Constance::Typed(t, Value::String(s))) if t == "date" => {
            Value::String(date_from_iso(s)?)
        }
        (ValueType::DateTime, Constance::Typed(t, Value::String(s))) if t == "datetime" => {
            Value::String(datetime_from_iso(s)?)
        }
        (ValueType::Time, Constance::Typed(t, Value::String(s))) if t == "time" => {
            Value::String(time_from_iso(s)?)
        }
        _ => return Err(wrong(&c)),
    };
    def.validate(&value).map(Some).map_err(DecodeError::Invalid)
}

/// The bytes rtconfig would write for what constance holds (`None`: the default) — two
/// spellings of one value (`5m` and `300s`, `.25` and `.250000`) compare equal this way.
pub fn normalize(def: &KeyDef, bytes: &[u8]) -> Result<Option<String>, NormalizeError> {
    match decode(def, bytes)? {
        None => Ok(None),
        Some(v) => Ok(Some(encode(def, &v)?)),
    }
}

/// Why [`normalize`] failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormalizeError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// `str(Decimal)` text (`1.10`, `-3`, `1E-7`, `1.5E+3`) → rtconfig's positional decimal.
fn decimal_from_python(s: &str) -> Result<String, DecodeError> {
    let bad = || DecodeError::Format(format!("{s:?} is not a finite Decimal"));
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", s.strip_prefix('+').unwrap_or(s)),
    };
    let (num, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().map_err(|_| bad())?),
        None => (rest, 0),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        || exp.abs() > 64
    {
        return Err(bad());
    }
    let digits = format!("{int}{frac}");
    let point = int.len() as i64 + exp; // digits before the point
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    };
    let (i, f) = text.split_once('.').unwrap_or((&text, ""));
    let i = i.trim_start_matches('0');
    let i = if i.is_empty() { "0" } else { i };
    Ok(if f.is_empty() {
        format!("{sign}{i}")
    } else {
        format!("{sign}{i}.{f}")
    })
}

/// `total_seconds()` → an rtconfig duration (`30s`, `250ms`, `1500us`), at timedelta's
/// microsecond resolution.
fn duration_from_seconds(secs: f64) -> Result<String, DecodeError> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(DecodeError::Format(format!(
            "the timedelta {secs} s is negative (rtconfig durations are not)"
        )));
    }
    let micros = (secs * 1e6).round_ties_even();
    if micros > u64::MAX as f64 / 2.0 {
        return Err(DecodeError::Format(format!(
            "the timedelta {secs} s is too long"
        )));
    }
    let micros = micros as u64;
    Ok(if micros.is_multiple_of(1_000_000) {
        format!("{}s", micros / 1_000_000)
    } else if micros.is_multiple_of(1000) {
        format!("{}ms", micros / 1000)
    } else {
        format!("{micros}us")
    })
}

fn date_from_iso(s: &str) -> Result<String, DecodeError> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .map_err(|_| DecodeError::Format(format!("{s:?} is not an ISO date")))
}

/// `isoformat()` of an aware datetime → RFC 3339 as written; a naive one is read as UTC (`Z`).
fn datetime_from_iso(s: &str) -> Result<String, DecodeError> {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return Ok(s.to_owned());
    }
    if chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
        return Ok(format!("{s}Z"));
    }
    Err(DecodeError::Format(format!("{s:?} is not an ISO datetime")))
}

fn time_from_iso(s: &str) -> Result<String, DecodeError> {
    match parse_time(s) {
        Some(_) => Ok(s.to_owned()),
        None => Err(DecodeError::Format(format!(
            "{s:?} is not a time of day without an offset (rtconfig times have none)"
        ))),
    }
}

#[cfg(test)]
mod tests;
