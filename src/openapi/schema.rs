//! JSON Schema (2020-12, OpenAPI 3.1's dialect) of protobuf messages as the gateway speaks
//! them: the proto3 JSON mapping with the `[json]` options in force — field names (JSON or
//! proto), enums as names or numbers, 64-bit integers as strings, bytes as base64, every
//! well-known type in its JSON form, maps as objects, a oneof's fields mutually exclusive, and
//! messages by `$ref`, so recursive ones are finite.

use std::collections::BTreeMap;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::comments::Comments;
use crate::transcode::json::JsonOptions;

/// Where message schemas live in the document.
const SCHEMAS: &str = "#/components/schemas/";

/// The schemas of the messages named so far, by full name: each is generated once, and the
/// messages it refers to are queued as it is.
pub struct Schemas<'o> {
    options: &'o JsonOptions,
    /// Where the references point: the document's components, or a schema's `$defs`.
    prefix: String,
    comments: Comments,
    done: BTreeMap<String, Value>,
    queue: Vec<MessageDescriptor>,
}

impl<'o> Schemas<'o> {
    /// Schemas under `options`, referred to as OpenAPI components.
    pub fn new(options: &'o JsonOptions) -> Schemas<'o> {
        Schemas::with_prefix(options, SCHEMAS.to_owned())
    }

    /// Schemas under `options`, referred to under `prefix` (`#/$defs/` for a self-contained
    /// JSON Schema).
    pub fn with_prefix(options: &'o JsonOptions, prefix: String) -> Schemas<'o> {
        Schemas { options, prefix, comments: Comments::default(), done: BTreeMap::new(), queue: Vec::new() }
    }

    /// A reference to `message`'s schema (a well-known type's JSON form inline), queuing it.
    pub fn message(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(inline) = well_known(message.full_name()) {
            return inline;
        }
        if !self.done.contains_key(message.full_name()) && !self.queue.iter().any(|m| m == message) {
            self.queue.push(message.clone());
        }
        json!({ "$ref": format!("{}{}", self.prefix, message.full_name()) })
    }

    /// The schema of one field's value (its repeated or map form included).
    pub fn field(&mut self, field: &FieldDescriptor) -> Value {
        let mut schema = if field.is_map() {
            let Kind::Message(entry) = field.kind() else { return json!({}) };
            let value = self.kind(&entry.map_entry_value_field().kind());
            let mut map = json!({ "type": "object", "additionalProperties": value });
            if let Some(pattern) = key_pattern(&entry.map_entry_key_field().kind()) {
                map["propertyNames"] = json!({ "pattern": pattern });
            }
            map
        } else if field.is_list() {
            json!({ "type": "array", "items": self.kind(&field.kind()) })
        } else {
            self.kind(&field.kind())
        };
        if let Some(text) = self.comments.of(field.parent_file(), field.path()) {
            describe(&mut schema, text);
        }
        schema
    }

    /// The schema of a singular value of `kind`.
    pub fn kind(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({
                "oneOf": [
                    { "type": "number" },
                    { "type": "string", "enum": ["NaN", "Infinity", "-Infinity"] }
                ]
            }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({ "type": "integer", "format": "int32" }),
            Kind::Uint32 | Kind::Fixed32 => json!({ "type": "integer", "format": "uint32", "minimum": 0 }),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]+$" })
            }
            Kind::Uint64 | Kind::Fixed64 => json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]+$" }),
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => json!({ "type": "null" }),
            Kind::Enum(e) => match self.options.enums_as_ints {
                true => json!({ "type": "integer", "enum": e.values().map(|v| v.number()).collect::<Vec<_>>() }),
                false => {
                    json!({ "type": "string", "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>() })
                }
            },
            Kind::Message(m) => self.message(m),
        }
    }

    /// Generates every queued message's schema (and those they refer to); the schemas by
    /// full name.
    pub fn finish(mut self) -> BTreeMap<String, Value> {
        while let Some(message) = self.queue.pop() {
            if self.done.contains_key(message.full_name()) {
                continue;
            }
            // Placed first: a message that refers to itself is not queued again.
            self.done.insert(message.full_name().to_owned(), Value::Null);
            let schema = self.object(&message);
            self.done.insert(message.full_name().to_owned(), schema);
        }
        self.done
    }

    /// An object schema: one property per field, by the name the gateway writes; each oneof's
    /// fields mutually exclusive.
    fn object(&mut self, message: &MessageDescriptor) -> Value {
        let mut properties = Map::new();
        for field in message.fields() {
            let schema = self.field(&field);
            properties.insert(self.options.output_name(&field).to_owned(), schema);
        }
        let mut schema = json!({ "type": "object", "properties": properties });
        if !self.options.ignore_unknown_fields {
            schema["additionalProperties"] = json!(false);
        }
        let exclusive: Vec<Value> = message
            .oneofs()
            .filter(|oneof| !oneof.is_synthetic() && oneof.fields().len() > 1)
            .map(|oneof| {
                let names: Vec<String> = oneof.fields().map(|f| self.options.output_name(&f).to_owned()).collect();
                at_most_one(&names)
            })
            .collect();
        if !exclusive.is_empty() {
            schema["allOf"] = Value::Array(exclusive);
        }
        if let Some(text) = self.comments.of(message.parent_file(), message.path()) {
            describe(&mut schema, text);
        }
        schema
    }

    /// The proto comment of a service or method, for operation descriptions.
    pub fn comment_of(&mut self, file: prost_reflect::FileDescriptor, path: &[i32]) -> Option<String> {
        self.comments.of(file, path).map(str::to_owned)
    }
}

/// Whether `message` is a well-known type with a JSON form of its own (not an object of its
/// fields).
pub fn is_well_known(message: &MessageDescriptor) -> bool {
    well_known(message.full_name()).is_some()
}

/// "At most one of `names` is present", in JSON Schema.
fn at_most_one(names: &[String]) -> Value {
    let present: Vec<Value> = names.iter().map(|n| json!({ "required": [n] })).collect();
    let mut choices = present.clone();
    choices.push(json!({ "not": { "anyOf": present } }));
    json!({ "oneOf": choices })
}

fn describe(schema: &mut Value, text: &str) {
    if let Value::Object(map) = schema {
        // A `$ref` with siblings is allowed in 3.1; a description beside it documents the field.
        map.insert("description".into(), Value::String(text.to_owned()));
    }
}

/// The key pattern of a map whose keys are not strings (JSON object keys always are).
fn key_pattern(kind: &Kind) -> Option<&'static str> {
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Some("^-?[0-9]+$"),
        Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64 => Some("^[0-9]+$"),
        Kind::Bool => Some("^(true|false)$"),
        _ => None,
    }
}

/// The JSON form of a well-known type, inline.
fn well_known(name: &str) -> Option<Value> {
    let int64 = json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]+$" });
    Some(match name {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => {
            json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$", "examples": ["1.5s"] })
        }
        "google.protobuf.FieldMask" => json!({ "type": "string", "examples": ["displayName,address.city"] }),
        "google.protobuf.Struct" => json!({ "type": "object" }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({ "type": "array" }),
        "google.protobuf.Empty" => json!({ "type": "object", "maxProperties": 0 }),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": { "@type": { "type": "string" } },
            "required": ["@type"]
        }),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => {
            json!({ "oneOf": [{ "type": "number" }, { "type": "string", "enum": ["NaN", "Infinity", "-Infinity"] }] })
        }
        "google.protobuf.Int64Value" => int64,
        "google.protobuf.UInt64Value" => json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]+$" }),
        "google.protobuf.Int32Value" => json!({ "type": "integer", "format": "int32" }),
        "google.protobuf.UInt32Value" => json!({ "type": "integer", "format": "uint32", "minimum": 0 }),
        "google.protobuf.BoolValue" => json!({ "type": "boolean" }),
        "google.protobuf.StringValue" => json!({ "type": "string" }),
        "google.protobuf.BytesValue" => json!({ "type": "string", "contentEncoding": "base64" }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
