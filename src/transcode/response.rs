//! Step 5 of the pipeline: response message → JSON body.

use prost_reflect::{DynamicMessage, FieldDescriptor, ReflectMessage, Value};
use serde::Serialize;

use crate::transcode::json::JsonOptions;
use crate::transcode::request::TranscodeError;

/// Renders `message` as JSON, or only the value of `response_body` when the route names one.
pub fn render(
    message: &DynamicMessage,
    response_body: Option<&FieldDescriptor>,
    options: &JsonOptions,
) -> Result<Vec<u8>, TranscodeError> {
    match response_body {
        None => to_json(message, options),
        Some(field) => render_field(message, field, options),
    }
}

fn to_json(message: &DynamicMessage, options: &JsonOptions) -> Result<Vec<u8>, TranscodeError> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::new(&mut out);
    message
        .serialize_with_options(&mut serializer, &options.serialize)
        .map_err(|e| TranscodeError::Render { reason: e.to_string() })?;
    Ok(out)
}

/// The JSON of one field's value. A singular message renders directly; any other value is
/// rendered inside a message holding only it (with defaults emitted, so the key is present)
/// and taken back out, so every field kind follows the same JSON mapping.
fn render_field(
    message: &DynamicMessage,
    field: &FieldDescriptor,
    options: &JsonOptions,
) -> Result<Vec<u8>, TranscodeError> {
    if let Value::Message(inner) = message.get_field(field).as_ref() {
        return to_json(inner, options);
    }
    let mut only = DynamicMessage::new(message.descriptor());
    only.try_set_field(field, message.get_field(field).into_owned())
        .map_err(|e| TranscodeError::Render { reason: e.to_string() })?;
    let with_defaults = options.serialize.clone().skip_default_fields(false);
    let json = only
        .serialize_with_options(serde_json::value::Serializer, &with_defaults)
        .map_err(|e| TranscodeError::Render { reason: e.to_string() })?;
    let value = json.get(options.output_name(field)).cloned().unwrap_or(serde_json::Value::Null);
    let mut out = Vec::new();
    value
        .serialize(&mut serde_json::Serializer::new(&mut out))
        .map_err(|e| TranscodeError::Render { reason: e.to_string() })?;
    Ok(out)
}
