//! Typed values: how a JSON value is checked against a key's type and constraints.
//!
//! Values travel as `serde_json::Value` in their *canonical* form (what the sidecar serves):
//! `bool` → JSON bool, `int` → JSON integer, `float` → JSON number, `json` → any JSON, and every
//! other type (`decimal`, `string`, `enum`, `duration`, `date`, `datetime`, `time`) → JSON string.
//! [`KeyDef::validate`] turns an incoming value into that form or says which rule it broke;
//! [`KeyDef::parse_text`] does the same for text (a form field, `?format=raw`, an env var).
//!
//! JSON `null` never reaches here as a value: everywhere in the API it means "reset to default".
//!
//! Formats are exactly the documented ones (docs/REFERENCE.md), nothing looser: `date` is
//! `YYYY-MM-DD`, `time` `HH:MM`, `HH:MM:SS` or `HH:MM:SS.f…`, `datetime` RFC 3339 with a `T`
//! and a leap second only where one can be (23:59:60 UTC on a month's last day), and `decimal`
//! `-?digits[.digits]` with at most [`DECIMAL_MAX_DIGITS`] digits. A decimal sent as a JSON
//! number is taken from its exact text ([`Sent`]): serde_json reads numbers as `f64`, which
//! would silently drop digits; a fractional number without its text is refused.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::{Bound, KeyDef, ValueType};

/// Why a value was rejected. `rule` is stable (it is part of the API's error details).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ValueError {
    pub key: String,
    /// `type`, `format`, `min`, `max`, `max_length`, `pattern`, `choices`, `max_bytes`, `masked`
    pub rule: &'static str,
    pub message: String,
}

impl KeyDef {
    fn reject(&self, rule: &'static str, message: impl Into<String>) -> ValueError {
        ValueError {
            key: self.name.to_string(),
            rule,
            message: message.into(),
        }
    }

    /// Checks `value` against this key's type and constraints and returns its canonical form.
    pub fn validate(&self, value: &Value) -> Result<Value, ValueError> {
        if is_mask(value) {
            return Err(self.reject(
                "masked",
                "the masked placeholder of a secret cannot be written back; send the real value",
            ));
        }
        let canonical = match self.ty {
            ValueType::Bool => match value {
                Value::Bool(b) => Value::Bool(*b),
                other => return Err(self.type_error(other)),
            },
            ValueType::Int => match value.as_i64() {
                Some(i) if value.is_i64() || value.is_u64() => {
                    self.check_bounds(i as f64, || i.to_string())?;
                    Value::from(i)
                }
                _ => return Err(self.type_error(value)),
            },
            ValueType::Float => match value.as_f64() {
                Some(f) if value.is_number() && f.is_finite() => {
                    self.check_bounds(f, || f.to_string())?;
                    Value::from(f)
                }
                _ => return Err(self.type_error(value)),
            },
            ValueType::Json => {
                if let Some(max) = self.rules.max_bytes {
                    let len = serde_json::to_vec(value)
                        .map(|v| v.len())
                        .unwrap_or(usize::MAX);
                    if len > max {
                        return Err(self.reject(
                            "max_bytes",
                            format!("encoded value is {len} bytes, more than max_bytes {max}"),
                        ));
                    }
                }
                value.clone()
            }
            _ => match value {
                Value::String(s) => self.validate_text(s)?,
                // A whole JSON number is exact; any other came through `f64` and may have lost
                // digits on the way (the API hands decimals over as text: [`Sent::exact`]).
                Value::Number(n) if self.ty == ValueType::Decimal => {
                    if !(n.is_i64() || n.is_u64()) {
                        return Err(self.inexact_number(&n.to_string()));
                    }
                    self.validate_text(&n.to_string())?
                }
                other => return Err(self.type_error(other)),
            },
        };
        Ok(canonical)
    }

    fn inexact_number(&self, text: &str) -> ValueError {
        self.reject(
            "format",
            format!(
                "the JSON number {text} cannot be stored exactly as a decimal (JSON numbers \
                 are read as 64-bit floats); send the decimal as a string, e.g. \"12.50\""
            ),
        )
    }

    /// Parses text (a form field, a shell argument) into this key's canonical value.
    pub fn parse_text(&self, text: &str) -> Result<Value, ValueError> {
        match self.ty {
            ValueType::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
                "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
                _ => Err(self.reject("type", format!("expected true or false, got {text:?}"))),
            },
            ValueType::Int => match text.trim().parse::<i64>() {
                Ok(i) => self.validate(&Value::from(i)),
                Err(_) => Err(self.reject("type", format!("expected an integer, got {text:?}"))),
            },
            ValueType::Float => match text.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => self.validate(&Value::from(f)),
                _ => Err(self.reject("type", format!("expected a number, got {text:?}"))),
            },
            ValueType::Json => match serde_json::from_str::<Value>(text) {
                Ok(v) => self.validate(&v),
                Err(e) => Err(self.reject("format", format!("invalid JSON: {e}"))),
            },
            // Text is kept as it is; a form field may carry spaces around a number, a date or
            // a duration, whose format is strict.
            ValueType::String | ValueType::Enum => self.validate_text(text),
            _ => self.validate_text(text.trim()),
        }
    }

    /// Text-encoded types: check the format, then the constraints; returns the canonical string.
    fn validate_text(&self, s: &str) -> Result<Value, ValueError> {
        let canonical: String = match self.ty {
            ValueType::String => {
                if let Some(max) = self.rules.max_length {
                    let len = s.chars().count();
                    if len > max {
                        return Err(self.reject(
                            "max_length",
                            format!("{len} characters, more than max_length {max}"),
                        ));
                    }
                }
                if let Some(re) = &self.rules.pattern {
                    if !re.is_match(s) {
                        return Err(self.reject(
                            "pattern",
                            format!("does not match pattern {:?}", re.as_str()),
                        ));
                    }
                }
                s.to_owned()
            }
            ValueType::Enum => {
                if !self.rules.choices.iter().any(|c| c == s) {
                    return Err(self.reject(
                        "choices",
                        format!("{s:?} is not one of {:?}", self.rules.choices),
                    ));
                }
                s.to_owned()
            }
            ValueType::Decimal => {
                let d = match parse_decimal(s) {
                    Ok(d) => d,
                    Err(DecimalError::Format) => {
                        return Err(self.reject(
                            "format",
                            format!(
                                "{s:?} is not a decimal (digits with an optional sign and \
                                 point, e.g. \"12.50\" or \"-3\")"
                            ),
                        ))
                    }
                    Err(DecimalError::TooLong(n)) => {
                        return Err(self.reject(
                            "format",
                            format!(
                                "{s:?} has {n} digits; a decimal holds at most \
                                 {DECIMAL_MAX_DIGITS}"
                            ),
                        ))
                    }
                };
                self.check_bounds_decimal(d)?;
                d.to_string()
            }
            ValueType::Duration => {
                let d = parse_duration(s).ok_or_else(|| {
                    self.reject(
                        "format",
                        format!("{s:?} is not a duration (examples: \"30s\", \"5m\", \"1h30m\")"),
                    )
                })?;
                self.check_bounds(d.as_secs_f64(), || s.to_owned())?;
                s.trim().to_owned()
            }
            ValueType::Date => {
                if !is_date(s) {
                    return Err(self.reject(
                        "format",
                        format!("{s:?} is not a date (YYYY-MM-DD, e.g. \"2026-01-31\")"),
                    ));
                }
                s.to_owned()
            }
            ValueType::DateTime => {
                if !is_datetime(s) {
                    return Err(self.reject(
                        "format",
                        format!(
                            "{s:?} is not an RFC 3339 date-time (e.g. \"2026-01-31T09:00:00Z\" \
                             or \"2026-01-31T09:00:00.5+01:00\")"
                        ),
                    ));
                }
                s.to_owned()
            }
            ValueType::Time => {
                if parse_time(s).is_none() {
                    return Err(self.reject(
                        "format",
                        format!("{s:?} is not a time (HH:MM, HH:MM:SS or HH:MM:SS.fff, 24-hour)"),
                    ));
                }
                s.to_owned()
            }
            ValueType::Bool | ValueType::Int | ValueType::Float | ValueType::Json => {
                return Err(self.reject("type", format!("expected {}, got a string", self.ty)));
            }
        };
        Ok(Value::String(canonical))
    }

    fn type_error(&self, got: &Value) -> ValueError {
        let expected = match self.ty {
            ValueType::Bool => "a boolean",
            ValueType::Int => "an integer",
            ValueType::Float => "a finite number",
            ValueType::Decimal => "a decimal string such as \"12.50\"",
            ValueType::Json => "JSON",
            _ => "a string",
        };
        self.reject(
            "type",
            format!("expected {expected} ({}), got {}", self.ty, json_kind(got)),
        )
    }

    fn check_bounds(&self, x: f64, show: impl Fn() -> String) -> Result<(), ValueError> {
        if let Some(min) = &self.rules.min {
            if x < min.as_f64() {
                return Err(self.reject("min", format!("{} is less than min {}", show(), min)));
            }
        }
        if let Some(max) = &self.rules.max {
            if x > max.as_f64() {
                return Err(self.reject("max", format!("{} is more than max {}", show(), max)));
            }
        }
        Ok(())
    }

    fn check_bounds_decimal(&self, d: Decimal) -> Result<(), ValueError> {
        let as_dec = |b: &Bound| match b {
            Bound::Decimal(x) => Some(*x),
            _ => Decimal::from_str(&b.as_f64().to_string()).ok(),
        };
        if let Some(min) = self.rules.min.as_ref().and_then(as_dec) {
            if d < min {
                return Err(self.reject("min", format!("{d} is less than min {min}")));
            }
        }
        if let Some(max) = self.rules.max.as_ref().and_then(as_dec) {
            if d > max {
                return Err(self.reject("max", format!("{d} is more than max {max}")));
            }
        }
        Ok(())
    }
}

/// The placeholder shown for a secret: `{"masked": true, "fingerprint": …}`.
pub fn is_mask(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.get("masked") == Some(&Value::Bool(true)) && o.len() <= 2)
}

/// The most digits a `decimal` holds (integer and fraction together; at most this many after
/// the point too). `rust_decimal` keeps a 96-bit mantissa: every 28-digit number fits.
pub const DECIMAL_MAX_DIGITS: usize = 28;

/// Why text is not a decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecimalError {
    /// Not `-?digits[.digits]`.
    Format,
    /// More than [`DECIMAL_MAX_DIGITS`] digits (leading zeros of the integer part not counted).
    TooLong(usize),
}

/// `-?[0-9]+(\.[0-9]+)?`: no `+`, exponent, `_`, spaces or bare point.
fn is_plain_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    all_digits(int) && frac.is_none_or(all_digits)
}

/// A decimal in the documented format, exactly (scale kept).
pub(crate) fn parse_decimal(s: &str) -> Result<Decimal, DecimalError> {
    if !is_plain_decimal(s) {
        return Err(DecimalError::Format);
    }
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = int.trim_start_matches('0').len() + frac.len();
    if digits > DECIMAL_MAX_DIGITS || frac.len() > DECIMAL_MAX_DIGITS {
        return Err(DecimalError::TooLong(digits.max(frac.len())));
    }
    // Within 28 digits every such text is exact; a failure here would be a bug, not input.
    Decimal::from_str_exact(s).map_err(|_| DecimalError::TooLong(digits))
}

/// `n` ASCII digits at the start of `s`, as a number, and the rest.
fn digits(s: &[u8], n: usize) -> Option<(u32, &[u8])> {
    if s.len() < n || !s[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = s[..n]
        .iter()
        .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
    Some((value, &s[n..]))
}

fn byte(s: &[u8], b: u8) -> Option<&[u8]> {
    s.strip_prefix(&[b])
}

/// `YYYY-MM-DD`, a real calendar date; the rest of the text.
fn date_prefix(s: &[u8]) -> Option<(chrono::NaiveDate, &[u8])> {
    let (y, s) = digits(s, 4)?;
    let (m, s) = digits(byte(s, b'-')?, 2)?;
    let (d, s) = digits(byte(s, b'-')?, 2)?;
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?;
    Some((date, s))
}

fn is_date(s: &str) -> bool {
    matches!(date_prefix(s.as_bytes()), Some((_, rest)) if rest.is_empty())
}

/// `HH:MM[:SS[.f{1,9}]]` → (hour, minute, second, the rest). `require_seconds` for RFC 3339.
fn time_prefix(s: &[u8], require_seconds: bool) -> Option<(u32, u32, u32, &[u8])> {
    let (h, s) = digits(s, 2)?;
    let (m, s) = digits(byte(s, b':')?, 2)?;
    let (sec, s) = match byte(s, b':') {
        Some(rest) => digits(rest, 2)?,
        None if require_seconds => return None,
        None => (0, s),
    };
    let s = match byte(s, b'.') {
        Some(frac) => {
            let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
            if !(1..=9).contains(&n) {
                return None;
            }
            &frac[n..]
        }
        None => s,
    };
    (h < 24 && m < 60 && sec <= 60).then_some((h, m, sec, s))
}

/// A `time`: `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fff`, 24-hour, no leap second (a time of day
/// has no date to have one on).
fn parse_time(s: &str) -> Option<(u32, u32, u32)> {
    match time_prefix(s.as_bytes(), false)? {
        (h, m, sec, rest) if rest.is_empty() && sec < 60 => Some((h, m, sec)),
        _ => None,
    }
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.f]` then `Z` or `±HH:MM` (`T` and `Z` in either
/// case, as RFC 3339 allows). Second 60 only where a leap second can be: 23:59:60 UTC on the
/// last day of a month.
fn is_datetime(s: &str) -> bool {
    let Some((date, rest)) = date_prefix(s.as_bytes()) else {
        return false;
    };
    let Some(rest) = byte(rest, b'T').or_else(|| byte(rest, b't')) else {
        return false;
    };
    let Some((h, m, sec, rest)) = time_prefix(rest, true) else {
        return false;
    };
    let offset_minutes: i64 = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let Some((oh, after)) = digits(tail, 2) else {
                return false;
            };
            let Some((om, after)) = byte(after, b':').and_then(|t| digits(t, 2)) else {
                return false;
            };
            if !after.is_empty() || oh > 23 || om > 59 {
                return false;
            }
            let minutes = i64::from(oh * 60 + om);
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return false,
    };
    if sec < 60 {
        return true;
    }
    // A leap second: the UTC minute must be 23:59 on a month's last day.
    let local = date.and_hms_opt(h, m, 0).map(|t| t.and_utc());
    let Some(utc) = local.map(|t| t - chrono::Duration::minutes(offset_minutes)) else {
        return false;
    };
    let last_of_month = utc
        .date_naive()
        .succ_opt()
        .is_some_and(|next| chrono::Datelike::day(&next) == 1);
    chrono::Timelike::hour(&utc) == 23 && chrono::Timelike::minute(&utc) == 59 && last_of_month
}

/// A value as a client sent it in a JSON body: the parsed value and, for a bare number, the
/// number's own text — serde_json reads numbers as `f64`, and a `decimal` must not lose digits
/// on the way ([`Sent::exact`]). Deserialised through `RawValue`, so only these
/// values are read twice, not the whole body, and no crate-wide `arbitrary_precision`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub value: Value,
    /// The JSON text of `value` when it is a number.
    pub number: Option<Box<str>>,
}

impl Sent {
    /// The value to validate for `def`: a `decimal` sent as a plain JSON number becomes its
    /// exact text (so `1234567890.123456789` is stored as written, and one of more than
    /// [`DECIMAL_MAX_DIGITS`] digits is refused instead of rounded); anything else as parsed.
    pub fn exact(self, def: Option<&KeyDef>) -> Value {
        match (self.number, def) {
            (Some(text), Some(def)) if def.ty == ValueType::Decimal && is_plain_decimal(&text) => {
                Value::String(text.into())
            }
            _ => self.value,
        }
    }
}

impl From<Value> for Sent {
    fn from(value: Value) -> Sent {
        Sent {
            value,
            number: None,
        }
    }
}

impl<'de> Deserialize<'de> for Sent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sent, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let value: Value = serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
        let number = value.is_number().then(|| raw.get().trim().into());
        Ok(Sent { value, number })
    }
}

/// Durations as operators write them: `30s`, `5m`, `1h30m`, `250ms`, `2 days`.
pub(crate) fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    humantime::parse_duration(s).ok()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
