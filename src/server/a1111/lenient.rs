//! Owns pydantic v1's coercions as A1111's API applies them to request fields: `"20"` is 20,
//! `20.7` is 20, `7` is 7.0, `1` is true; `null` reads as absent (the field's default).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

pub const NOT_INT: &str = "value is not a valid integer";
pub const NOT_FLOAT: &str = "value is not a valid float";
pub const NOT_BOOL: &str = "value could not be parsed to a boolean";
pub const NOT_STR: &str = "str type expected";
pub const NOT_LIST: &str = "value is not a valid list";
pub const NOT_DICT: &str = "value is not a valid dict";
pub const MISSING: &str = "field required";

/// pydantic v1's error `type` for one of the messages above.
pub fn error_type(msg: &str) -> &'static str {
    match msg {
        NOT_INT => "type_error.integer",
        NOT_FLOAT => "type_error.float",
        NOT_BOOL => "type_error.bool",
        NOT_STR => "type_error.str",
        NOT_LIST => "type_error.list",
        NOT_DICT => "type_error.dict",
        MISSING => "value_error.missing",
        _ => "value_error",
    }
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.filter(|v| !v.is_null()))
}

pub fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite() && f.abs() < 9.0e18).map(|f| f.trunc() as i64)),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn as_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
            "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
            _ => None,
        },
        _ => None,
    }
}

/// pydantic v1 turns numbers into strings for `str` fields (`5` -> `"5"`, `true` -> `"True"`).
pub fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        _ => None,
    }
}

pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    present(d)?.map(|v| as_int(&v).ok_or_else(|| D::Error::custom(NOT_INT))).transpose()
}

pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    present(d)?.map(|v| as_float(&v).ok_or_else(|| D::Error::custom(NOT_FLOAT))).transpose()
}

pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    present(d)?.map(|v| as_bool(&v).ok_or_else(|| D::Error::custom(NOT_BOOL))).transpose()
}

pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    present(d)?.map(|v| as_string(&v).ok_or_else(|| D::Error::custom(NOT_STR))).transpose()
}

pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match present(d)? {
        None => Ok(None),
        Some(Value::Array(items)) => {
            items.iter().map(|v| as_string(v).ok_or_else(|| D::Error::custom(NOT_STR))).collect::<Result<Vec<_>, _>>().map(Some)
        }
        Some(_) => Err(D::Error::custom(NOT_LIST)),
    }
}

pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Value>>, D::Error> {
    match present(d)? {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(_) => Err(D::Error::custom(NOT_LIST)),
    }
}

pub fn dict<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Map<String, Value>>, D::Error> {
    match present(d)? {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(D::Error::custom(NOT_DICT)),
    }
}
