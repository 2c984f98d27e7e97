//! Step 2 of the pipeline: HTTP request → request message.
//!
//! The body is decoded first (per the route's [`BodySelector`]), then path variables are set
//! (they win over the body), then query parameters fill what neither bound. On PATCH, an
//! absent `update_mask` is filled from the keys of the JSON body.
//!
//! Every error names the field or parameter at fault.

use std::collections::HashSet;

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};

use crate::route::{BodySelector, FieldPath, Route};
use crate::transcode::direct::wire::{put_len_field, put_reflect_field};
use crate::transcode::json::{JsonOptions, has_string_form, parse_field_value};

/// Why an HTTP request does not make a request message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    /// The body is not JSON, or not JSON of the right shape; `field` is where, when known.
    #[error("{}", describe_json_error(field.as_deref(), reason))]
    InvalidJson {
        /// Dotted path of the offending field.
        field: Option<String>,
        /// What the JSON decoder said.
        reason: String,
    },
    /// A path variable or query value does not parse as its field's type.
    #[error("invalid value for field \"{field}\": {reason}")]
    InvalidValue {
        /// Dotted path of the field.
        field: String,
        /// Why the value is wrong.
        reason: String,
    },
    /// A query parameter names no field.
    #[error("unknown query parameter \"{name}\": it names no field of {message}")]
    UnknownQueryParameter {
        /// The parameter as sent.
        name: String,
        /// The request message type.
        message: String,
    },
    /// A query parameter cannot set the field it names.
    #[error("query parameter \"{name}\": {reason}")]
    InvalidQueryParameter {
        /// The parameter as sent.
        name: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The query string does not decode.
    #[error("malformed query string: {reason}")]
    MalformedQuery {
        /// Why.
        reason: String,
    },
    /// A response message could not be rendered as JSON.
    #[error("the response could not be rendered as JSON: {reason}")]
    Render {
        /// Why.
        reason: String,
    },
}

impl TranscodeError {
    /// The request field (dotted path) or parameter the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            TranscodeError::InvalidJson { field, .. } => field.as_deref(),
            TranscodeError::InvalidValue { field, .. } => Some(field),
            TranscodeError::UnknownQueryParameter { name, .. } | TranscodeError::InvalidQueryParameter { name, .. } => {
                Some(name)
            }
            TranscodeError::MalformedQuery { .. } | TranscodeError::Render { .. } => None,
        }
    }
}

fn describe_json_error(field: Option<&str>, reason: &str) -> String {
    match field {
        Some(field) => format!("invalid JSON for field \"{field}\": {reason}"),
        None => format!("invalid JSON body: {reason}"),
    }
}

/// Builds the request message of `route` from the decoded path variable values (one per
/// binding), the raw query string and the body bytes.
pub fn decode(
    route: &Route,
    values: &[String],
    query: Option<&str>,
    body: &[u8],
    options: &JsonOptions,
) -> Result<DynamicMessage, TranscodeError> {
    let input = route.method.input();
    let body = body.trim_ascii();
    let mut message = match &route.body {
        BodySelector::Empty => DynamicMessage::new(input),
        _ if body.is_empty() => DynamicMessage::new(input),
        BodySelector::Whole => decode_json(input, None, body, options)?,
        BodySelector::Field(field) => decode_json(input, Some(field), body, options)?,
    };
    for (binding, value) in route.bindings.iter().zip(values) {
        set_text(&mut message, &binding.field, value)?;
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        apply_query(&mut message, route, query, options)?;
    }
    fill_update_mask(&mut message, route, body)?;
    Ok(message)
}

/// Appends the encoding of the path variables' fields to `out`. Values are written even when
/// they are defaults, so they override whatever an earlier body encoding set.
pub(crate) fn encode_path_bindings(route: &Route, values: &[String], out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    for (binding, text) in route.bindings.iter().zip(values) {
        let field = binding.field.last();
        let value = parse_field_value(field, text)
            .map_err(|reason| TranscodeError::InvalidValue { field: binding.field.to_string(), reason })?;
        let mut encoded = Vec::with_capacity(text.len() + 4);
        put_reflect_field(&mut encoded, field, &value);
        // Wrap in the enclosing messages, innermost first: `book.name` is `book { name }`.
        for parent in binding.field.fields().iter().rev().skip(1) {
            let mut wrapped = Vec::with_capacity(encoded.len() + 4);
            put_len_field(&mut wrapped, parent.number(), &encoded);
            encoded = wrapped;
        }
        out.extend_from_slice(&encoded);
    }
    Ok(())
}

/// Appends the encoding of the fields the query string sets to `out`.
pub(crate) fn encode_query(
    route: &Route,
    query: Option<&str>,
    options: &JsonOptions,
    out: &mut Vec<u8>,
) -> Result<(), TranscodeError> {
    let Some(query) = query.filter(|q| !q.is_empty()) else { return Ok(()) };
    let mut message = DynamicMessage::new(route.method.input());
    apply_query(&mut message, route, query, options)?;
    prost::Message::encode_raw(&message, out);
    Ok(())
}

// === body ===

/// Decodes `body` as the whole message, or as the value of one top-level `field`.
fn decode_json(
    input: MessageDescriptor,
    field: Option<&FieldDescriptor>,
    body: &[u8],
    options: &JsonOptions,
) -> Result<DynamicMessage, TranscodeError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let result = match field {
        None => {
            let de = serde_path_to_error::Deserializer::new(&mut json, &mut track);
            DynamicMessage::deserialize_with_options(input, de, &options.deserialize)
        }
        Some(field) => {
            let de =
                serde_path_to_error::Deserializer::new(FieldBody { name: field.name(), body: &mut json }, &mut track);
            DynamicMessage::deserialize_with_options(input, de, &options.deserialize)
        }
    };
    let message = result.map_err(|e| json_error(track.path(), &e))?;
    json.end().map_err(|e| TranscodeError::InvalidJson { field: None, reason: e.to_string() })?;
    Ok(message)
}

pub(crate) fn json_error(path: serde_path_to_error::Path, error: &serde_json::Error) -> TranscodeError {
    use serde_path_to_error::Segment;
    let mut field = String::new();
    let mut known = true;
    for segment in &path {
        match segment {
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            Segment::Seq { index } => {
                field.push('[');
                field.push_str(&index.to_string());
                field.push(']');
            }
            // A key serde could not capture (the error came while reading it).
            Segment::Unknown => known = false,
        }
    }
    let mut reason = error.to_string();
    // prost-reflect reports an unknown key at the level of its parent object: name the key.
    if let Some(name) = reason
        .strip_prefix("unrecognized field name '")
        .and_then(|r| r.rsplit_once("' at line "))
        .map(|(n, _)| n.to_owned())
    {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(&name);
        reason = "unknown field".to_owned();
    }
    TranscodeError::InvalidJson { field: (known && !field.is_empty()).then_some(field), reason }
}

/// Presents a body bound to one field as the message `{"field": <body>}`, without copying it,
/// so the message decoder sees the field's type and error paths start with the field name.
struct FieldBody<'n, D> {
    name: &'n str,
    body: D,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for FieldBody<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        visitor.visit_map(OneEntry { name: Some(self.name), body: Some(self.body) })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct OneEntry<'n, D> {
    name: Option<&'n str>,
    body: Option<D>,
}

impl<'de, D: Deserializer<'de>> MapAccess<'de> for OneEntry<'_, D> {
    type Error = D::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, D::Error> {
        match self.name.take() {
            Some(name) => seed.deserialize(name.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, D::Error> {
        match self.body.take() {
            Some(body) => seed.deserialize(body),
            None => Err(de::Error::custom("the body was already read")),
        }
    }
}

// === path variables and query parameters ===

/// Sets the field at `path` from one text value (appending, for a repeated field).
fn set_text(message: &mut DynamicMessage, path: &FieldPath, text: &str) -> Result<(), TranscodeError> {
    set_value(message, path.fields(), text)
        .map_err(|reason| TranscodeError::InvalidValue { field: path.to_string(), reason })
}

fn set_value(message: &mut DynamicMessage, fields: &[FieldDescriptor], text: &str) -> Result<(), String> {
    let Some((last, parents)) = fields.split_last() else {
        return Err("empty field path".into());
    };
    let mut current = message;
    for field in parents {
        current = match current.get_field_mut(field) {
            Value::Message(child) => child,
            _ => return Err(format!("{} is not a message field", field.name())),
        };
    }
    let value = parse_field_value(last, text)?;
    if last.is_list() {
        match current.get_field_mut(last) {
            Value::List(items) => items.push(value),
            _ => return Err(format!("{} is not a repeated field", last.name())),
        }
        Ok(())
    } else {
        current.try_set_field(last, value).map_err(|e| e.to_string())
    }
}

/// Applies `a.b=1&tags=x&tags=y`, skipping fields the path or the body already bind.
fn apply_query(
    message: &mut DynamicMessage,
    route: &Route,
    query: &str,
    options: &JsonOptions,
) -> Result<(), TranscodeError> {
    let input = route.method.input();
    let mut singular_seen: HashSet<Vec<u32>> = HashSet::new();
    let mut entries_seen: HashSet<(Vec<u32>, String)> = HashSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode(raw_name)?;
        if options.ignored_query_parameters.contains(&name) || super::fields::is_parameter(&name, &input) {
            continue;
        }
        let value = form_decode(raw_value)?;
        if let Some((base, key)) = map_entry_name(&name) {
            let entry = MapEntry { name: &name, base, key, value: &value };
            apply_map_entry(message, route, &input, entry, options, &mut entries_seen)?;
            continue;
        }
        let fields = match resolve_parameter(&input, &name) {
            Ok(fields) => fields,
            Err(Unresolved::Unknown) if options.ignore_unknown_fields => continue,
            Err(Unresolved::Unknown) => {
                return Err(TranscodeError::UnknownQueryParameter { name, message: input.full_name().to_owned() });
            }
            Err(Unresolved::Invalid(reason)) => return Err(TranscodeError::InvalidQueryParameter { name, reason }),
        };
        if route.binds(&fields) {
            continue;
        }
        let Some(last) = fields.last() else { continue };
        if last.is_map() {
            return Err(invalid(name, "is a map: set its entries as name[key]=value"));
        }
        if !has_string_form(last) {
            return Err(invalid(name, "names a message; set its fields one by one, e.g. name.field=value"));
        }
        if !last.is_list() && !singular_seen.insert(fields.iter().map(FieldDescriptor::number).collect()) {
            return Err(invalid(name, "is given more than once, but its field is not repeated"));
        }
        set_value(message, &fields, &value).map_err(|reason| TranscodeError::InvalidValue { field: name, reason })?;
    }
    Ok(())
}

fn invalid(name: String, reason: &str) -> TranscodeError {
    TranscodeError::InvalidQueryParameter { name, reason: reason.to_owned() }
}

enum Unresolved {
    Unknown,
    Invalid(String),
}

/// `labels[env]` names the entry `env` of map field `labels` (grpc-gateway's syntax for maps
/// in a query string): (`labels`, `env`).
fn map_entry_name(name: &str) -> Option<(&str, &str)> {
    let (base, rest) = name.split_once('[')?;
    let key = rest.strip_suffix(']')?;
    (!base.is_empty() && !key.contains(['[', ']'])).then_some((base, key))
}

/// One `name[key]=value` parameter.
struct MapEntry<'q> {
    name: &'q str,
    base: &'q str,
    key: &'q str,
    value: &'q str,
}

/// Sets one entry of a map field from the query; an entry given twice is refused.
fn apply_map_entry(
    message: &mut DynamicMessage,
    route: &Route,
    input: &MessageDescriptor,
    entry: MapEntry<'_>,
    options: &JsonOptions,
    seen: &mut HashSet<(Vec<u32>, String)>,
) -> Result<(), TranscodeError> {
    let MapEntry { name, base, key, value } = entry;
    let fields = match resolve_parameter(input, base) {
        Ok(fields) => fields,
        Err(Unresolved::Unknown) if options.ignore_unknown_fields => return Ok(()),
        Err(Unresolved::Unknown) => {
            return Err(TranscodeError::UnknownQueryParameter {
                name: name.to_owned(),
                message: input.full_name().to_owned(),
            });
        }
        Err(Unresolved::Invalid(reason)) => {
            return Err(TranscodeError::InvalidQueryParameter { name: name.to_owned(), reason });
        }
    };
    if route.binds(&fields) {
        return Ok(());
    }
    let Some((map, parents)) = fields.split_last() else { return Ok(()) };
    let (Kind::Message(types), true) = (map.kind(), map.is_map()) else {
        return Err(invalid(name.to_owned(), "is not a map field: only maps take name[key]=value"));
    };
    let (key_field, value_field) = (types.map_entry_key_field(), types.map_entry_value_field());
    if !has_string_form(&value_field) {
        return Err(invalid(name.to_owned(), "maps of messages cannot be set from the query string"));
    }
    let bad_value = |reason: String| TranscodeError::InvalidValue { field: name.to_owned(), reason };
    let map_key = parse_field_value(&key_field, key).map_err(bad_value)?.into_map_key();
    let map_key = map_key.ok_or_else(|| invalid(name.to_owned(), "has a key its map cannot hold"))?;
    let map_value = parse_field_value(&value_field, value).map_err(bad_value)?;
    if !seen.insert((fields.iter().map(FieldDescriptor::number).collect(), key.to_owned())) {
        return Err(invalid(name.to_owned(), "is given more than once"));
    }
    let mut current = message;
    for field in parents {
        current = match current.get_field_mut(field) {
            Value::Message(child) => child,
            _ => return Err(invalid(name.to_owned(), "names a field inside a field that is not a message")),
        };
    }
    if let Value::Map(entries) = current.get_field_mut(map) {
        entries.insert(map_key, map_value);
    }
    Ok(())
}

/// Resolves a dotted parameter name; each part may be the proto name or the JSON name.
fn resolve_parameter(input: &MessageDescriptor, name: &str) -> Result<Vec<FieldDescriptor>, Unresolved> {
    let mut fields: Vec<FieldDescriptor> = Vec::new();
    let mut current = input.clone();
    let mut parts = name.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))
            .ok_or(Unresolved::Unknown)?;
        if parts.peek().is_some() {
            current = match field.kind() {
                Kind::Message(m) if !field.is_list() && !field.is_map() && !has_string_form(&field) => m,
                _ => return Err(Unresolved::Invalid(format!("field {} has no sub-fields", field.name()))),
            };
        }
        fields.push(field);
    }
    Ok(fields)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, then percent-decoding.
pub(crate) fn form_decode(raw: &str) -> Result<String, TranscodeError> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| TranscodeError::MalformedQuery { reason: format!("{raw:?} is not UTF-8 once percent-decoded") })
}

// === PATCH update_mask ===

/// On PATCH with a body bound to one field, fills an absent `update_mask` (a
/// google.protobuf.FieldMask) with the paths of the keys present in the JSON body.
fn fill_update_mask(message: &mut DynamicMessage, route: &Route, body: &[u8]) -> Result<(), TranscodeError> {
    let BodySelector::Field(body_field) = &route.body else { return Ok(()) };
    if route.http_method != http::Method::PATCH || body.is_empty() {
        return Ok(());
    }
    let Some(mask_field) = route.method.input().get_field_by_name("update_mask") else { return Ok(()) };
    let Kind::Message(mask_type) = mask_field.kind() else { return Ok(()) };
    if mask_type.full_name() != "google.protobuf.FieldMask" || message.has_field(&mask_field) {
        return Ok(());
    }
    let Kind::Message(resource) = body_field.kind() else { return Ok(()) };
    // The body already decoded into the message, so it is valid JSON of the right shape.
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| TranscodeError::InvalidJson { field: None, reason: e.to_string() })?;
    let mut paths = Vec::new();
    if let serde_json::Value::Object(object) = &json {
        collect_paths(&resource, object, "", &mut paths);
    }
    let mut mask = DynamicMessage::new(mask_type);
    let list = paths.into_iter().map(Value::String).collect();
    mask.try_set_field_by_name("paths", Value::List(list))
        .and_then(|()| message.try_set_field(&mask_field, Value::Message(mask)))
        .map_err(|e| TranscodeError::InvalidValue { field: "update_mask".into(), reason: e.to_string() })
}

/// Field-mask paths (proto names) of the keys of `object`; nested objects of message fields
/// give dotted paths, anything else (maps, well-known types, scalars, lists) ends the path.
fn collect_paths(
    message: &MessageDescriptor,
    object: &serde_json::Map<String, serde_json::Value>,
    prefix: &str,
    out: &mut Vec<String>,
) {
    for (key, value) in object {
        let Some(field) = message.get_field_by_name(key).or_else(|| message.get_field_by_json_name(key)) else {
            continue;
        };
        let path = format!("{prefix}{}", field.name());
        match (field.kind(), value) {
            (Kind::Message(child), serde_json::Value::Object(inner))
                if !field.is_map()
                    && !field.is_list()
                    && !child.full_name().starts_with("google.protobuf.")
                    && !inner.is_empty() =>
            {
                collect_paths(&child, inner, &format!("{path}."), out);
            }
            _ => out.push(path),
        }
    }
}

#[cfg(test)]
mod tests;
