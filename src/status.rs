//! gRPC status → HTTP: the one code → status table, and the `google.rpc.Status` JSON body
//! (`{"code", "message", "details"}`) with details rendered as JSON `Any` objects.

use base64::Engine;
use http::StatusCode;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use serde::Serialize;
use tonic::Code;

use crate::pb::google::rpc;
use crate::transcode::JsonOptions;

/// The HTTP status for a gRPC code, row for row as CONTRACT.md lists it.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // 499 is nginx's "client closed request": the caller gave up, nobody failed.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        // Not 412: that status is about HTTP conditional headers, which gRPC has none of.
        Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        // An upstream that *answered* UNAVAILABLE; one that cannot be reached is 502 (error.rs).
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The canonical name of a gRPC code, as the status codes document spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The JSON error body.
#[derive(Debug, Serialize)]
pub struct StatusBody<'a> {
    /// The google.rpc.Code number.
    pub code: i32,
    /// A developer-facing message.
    pub message: &'a str,
    /// Typed details, each a JSON `Any` with `@type`.
    pub details: Vec<serde_json::Value>,
}

impl StatusBody<'_> {
    /// The body as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising strings, numbers and `serde_json::Value`s into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Renders the details of an encoded `google.rpc.Status` (a `grpc-status-details-bin` value).
///
/// Each detail whose type is in `pool` (the google.rpc error details always are) becomes its
/// JSON form plus `@type`; any other keeps its bytes as `{"@type", "value": base64}`, so nothing
/// the upstream sent is lost.
pub fn render_details(encoded_status: &[u8], pool: &DescriptorPool, options: &JsonOptions) -> Vec<serde_json::Value> {
    if encoded_status.is_empty() {
        return Vec::new();
    }
    let Ok(status) = rpc::Status::decode(encoded_status) else {
        return vec![opaque("type.googleapis.com/google.rpc.Status", encoded_status)];
    };
    status.details.iter().map(|any| render_any(any, pool, options)).collect()
}

fn render_any(any: &prost_types::Any, pool: &DescriptorPool, options: &JsonOptions) -> serde_json::Value {
    let fallback = || opaque(&any.type_url, &any.value);
    let Some(any_type) = pool.get_message_by_name("google.protobuf.Any") else { return fallback() };
    let type_name = any.type_url.rsplit('/').next().unwrap_or("");
    if pool.get_message_by_name(type_name).is_none() {
        return fallback();
    }
    let mut message = DynamicMessage::new(any_type);
    let set = message
        .try_set_field_by_name("type_url", Value::String(any.type_url.clone()))
        .and_then(|()| message.try_set_field_by_name("value", Value::Bytes(any.value.clone().into())));
    if set.is_err() {
        return fallback();
    }
    message.serialize_with_options(serde_json::value::Serializer, &options.serialize).unwrap_or_else(|_| fallback())
}

fn opaque(type_url: &str, value: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "@type": type_url,
        "value": base64::engine::general_purpose::STANDARD.encode(value),
    })
}

/// A `google.rpc.RequestInfo` detail carrying the request's correlation id, as JSON `Any`.
pub fn request_info(request_id: &str, pool: &DescriptorPool, options: &JsonOptions) -> serde_json::Value {
    let info = rpc::RequestInfo { request_id: request_id.to_owned(), serving_data: String::new() };
    let any = prost_types::Any {
        type_url: "type.googleapis.com/google.rpc.RequestInfo".to_owned(),
        value: info.encode_to_vec(),
    };
    render_any(&any, pool, options)
}

/// An encoded `google.rpc.Status` whose one detail is a `google.rpc.BadRequest` naming `field`.
pub fn bad_request(code: Code, message: &str, field: &str, description: &str) -> Vec<u8> {
    let detail = rpc::BadRequest {
        field_violations: vec![rpc::bad_request::FieldViolation {
            field: field.to_owned(),
            description: description.to_owned(),
            ..Default::default()
        }],
    };
    rpc::Status {
        code: code as i32,
        message: message.to_owned(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.BadRequest".to_owned(),
            value: detail.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests;
