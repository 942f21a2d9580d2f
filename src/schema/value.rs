//! Typed values: how a JSON value is checked against a key's type and constraints.
//!
//! Values travel as `serde_json::Value` in their *canonical* form (what the sidecar serves):
//! `bool` → JSON bool, `int` → JSON integer, `float` → JSON number, `json` → any JSON, and every
//! other type (`decimal`, `string`, `enum`, `duration`, `date`, `datetime`, `time`) → JSON string.
//! [`KeyDef::validate`] turns an incoming value into that form or says which rule it broke;
//! [`KeyDef::parse_text`] does the same for text (a form field, `?format=raw`, an env var).
//!
//! JSON `null` never reaches here as a value: everywhere in the API it means "reset to default".

use std::str::FromStr;

use rust_decimal::Decimal;
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
            key: self.name.clone(),
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
                if let Some(max) = self.max_bytes {
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
                // A decimal may arrive as a JSON number; its text keeps what JSON kept.
                Value::Number(n) if self.ty == ValueType::Decimal => {
                    self.validate_text(&n.to_string())?
                }
                other => return Err(self.type_error(other)),
            },
        };
        Ok(canonical)
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
            _ => self.validate_text(text),
        }
    }

    /// Text-encoded types: check the format, then the constraints; returns the canonical string.
    fn validate_text(&self, s: &str) -> Result<Value, ValueError> {
        let canonical: String = match self.ty {
            ValueType::String => {
                if let Some(max) = self.max_length {
                    let len = s.chars().count();
                    if len > max {
                        return Err(self.reject(
                            "max_length",
                            format!("{len} characters, more than max_length {max}"),
                        ));
                    }
                }
                if let Some(re) = &self.pattern {
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
                if !self.choices.iter().any(|c| c == s) {
                    return Err(
                        self.reject("choices", format!("{s:?} is not one of {:?}", self.choices))
                    );
                }
                s.to_owned()
            }
            ValueType::Decimal => {
                let d = parse_decimal(s)
                    .ok_or_else(|| self.reject("format", format!("{s:?} is not a decimal")))?;
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
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                    self.reject("format", format!("{s:?} is not a date (YYYY-MM-DD)"))
                })?;
                s.to_owned()
            }
            ValueType::DateTime => {
                chrono::DateTime::parse_from_rfc3339(s).map_err(|_| {
                    self.reject("format", format!("{s:?} is not an RFC 3339 date-time"))
                })?;
                s.to_owned()
            }
            ValueType::Time => {
                chrono::NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
                    .or_else(|_| chrono::NaiveTime::parse_from_str(s, "%H:%M"))
                    .map_err(|_| {
                        self.reject("format", format!("{s:?} is not a time (HH:MM[:SS])"))
                    })?;
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
        if let Some(min) = &self.min {
            if x < min.as_f64() {
                return Err(self.reject("min", format!("{} is less than min {}", show(), min)));
            }
        }
        if let Some(max) = &self.max {
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
        if let Some(min) = self.min.as_ref().and_then(as_dec) {
            if d < min {
                return Err(self.reject("min", format!("{d} is less than min {min}")));
            }
        }
        if let Some(max) = self.max.as_ref().and_then(as_dec) {
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

pub(crate) fn parse_decimal(s: &str) -> Option<Decimal> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    Decimal::from_str_exact(s).ok()
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
