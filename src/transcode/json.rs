//! The proto3 JSON mapping options, and the text forms of single values that path variables
//! and query parameters carry.
//!
//! Whole messages go through prost-reflect's serde support, which implements the canonical
//! mapping; this module holds what that mapping leaves to a gateway: one value given as bare
//! text (`?page_size=10`, `/v1/shelves/{shelf}`), where strings are not quoted.

use std::collections::HashSet;

use base64::Engine;
use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, SerializeOptions, Value};

use crate::config::JsonConfig;

/// How messages are mapped to and from JSON, decided once from `[json]`.
#[derive(Debug, Clone)]
pub struct JsonOptions {
    /// For rendering messages.
    pub serialize: SerializeOptions,
    /// For decoding request bodies.
    pub deserialize: DeserializeOptions,
    /// Output includes fields holding default values.
    pub emit_unpopulated: bool,
    /// Output uses proto field names instead of JSON names.
    pub use_proto_names: bool,
    /// Output writes enums as numbers.
    pub enums_as_ints: bool,
    /// Unknown body fields and query parameters are skipped instead of rejected.
    pub ignore_unknown_fields: bool,
    /// Query parameters never bound to fields.
    pub ignored_query_parameters: HashSet<String>,
}

impl JsonOptions {
    /// Options from the `[json]` section.
    pub fn from_config(config: &JsonConfig) -> JsonOptions {
        JsonOptions {
            serialize: SerializeOptions::new()
                .stringify_64_bit_integers(true)
                .use_enum_numbers(config.enums_as_ints)
                .use_proto_field_name(config.use_proto_names)
                .skip_default_fields(!config.emits_unpopulated()),
            deserialize: DeserializeOptions::new().deny_unknown_fields(!config.ignores_unknown_fields()),
            emit_unpopulated: config.emits_unpopulated(),
            use_proto_names: config.use_proto_names,
            enums_as_ints: config.enums_as_ints,
            ignore_unknown_fields: config.ignores_unknown_fields(),
            ignored_query_parameters: config.ignored_query_parameters.iter().cloned().collect(),
        }
    }

    /// The name a field has in output JSON.
    pub fn output_name<'f>(&self, field: &'f FieldDescriptor) -> &'f str {
        if self.use_proto_names { field.name() } else { field.json_name() }
    }
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions::from_config(&JsonConfig::default())
    }
}

pub use crate::route::rule::{STRING_FORM_MESSAGES, has_string_form};

/// Parses one text value for `field` (one element, for a repeated field).
pub fn parse_field_value(field: &FieldDescriptor, text: &str) -> Result<Value, String> {
    parse_kind(&field.kind(), text)
}

fn parse_kind(kind: &Kind, text: &str) -> Result<Value, String> {
    match kind {
        Kind::Double => parse_double(text).map(Value::F64),
        Kind::Float => parse_float(text).map(Value::F32),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => parse_int(text, "a 32-bit integer").map(Value::I32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => parse_int(text, "a 64-bit integer").map(Value::I64),
        Kind::Uint32 | Kind::Fixed32 => parse_int(text, "an unsigned 32-bit integer").map(Value::U32),
        Kind::Uint64 | Kind::Fixed64 => parse_int(text, "an unsigned 64-bit integer").map(Value::U64),
        Kind::Bool => parse_bool(text).map(Value::Bool),
        Kind::String => Ok(Value::String(text.to_owned())),
        Kind::Bytes => parse_bytes(text).map(Value::Bytes),
        Kind::Enum(desc) => match desc.get_value_by_name(text) {
            Some(value) => Ok(Value::EnumNumber(value.number())),
            None => text.parse::<i32>().map(Value::EnumNumber).map_err(|_| {
                let names: Vec<String> = desc.values().map(|v| v.name().to_owned()).collect();
                format!("{text:?} is not a value of {} (one of {})", desc.full_name(), names.join(", "))
            }),
        },
        Kind::Message(desc) => match desc.full_name() {
            "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.FieldMask" => {
                let json = serde_json::Value::String(text.to_owned());
                DynamicMessage::deserialize(desc.clone(), json).map(Value::Message).map_err(|e| e.to_string())
            }
            name if STRING_FORM_MESSAGES.contains(&name) => {
                // A wrapper: the text is the value of its single field, `value` (number 1).
                let inner = desc.get_field(1).ok_or("malformed wrapper type")?;
                let mut wrapper = DynamicMessage::new(desc.clone());
                wrapper.try_set_field(&inner, parse_kind(&inner.kind(), text)?).map_err(|e| e.to_string())?;
                Ok(Value::Message(wrapper))
            }
            name => Err(format!("a {name} message cannot be given as one text value; set its fields one by one")),
        },
    }
}

fn parse_int<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{text:?} is not {what}"))
}

fn parse_double(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!("{text:?} is not a number")),
        },
    }
}

fn parse_float(text: &str) -> Result<f32, String> {
    let value = parse_double(text)?;
    if value.is_finite() && value.abs() > f64::from(f32::MAX) {
        return Err(format!("{text:?} is out of range for a 32-bit float"));
    }
    // In range (or NaN/infinite), so the narrowing keeps the value's meaning.
    #[allow(clippy::cast_possible_truncation)]
    Ok(value as f32)
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" | "True" | "TRUE" | "1" => Ok(true),
        "false" | "False" | "FALSE" | "0" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (true or false)")),
    }
}

/// Standard or URL-safe base64, padded or not, as the JSON mapping accepts.
pub fn parse_bytes(text: &str) -> Result<bytes::Bytes, String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = text.trim_end_matches('=');
    STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .map(bytes::Bytes::from)
        .map_err(|_| format!("{text:?} is not valid base64"))
}

#[cfg(test)]
mod tests;
