//! `google.api.HttpBody`: a request or response that is raw bytes with a content type (file
//! uploads and downloads), carried as they are instead of as JSON.
//!
//! A route's request is raw when its body is bound to an HttpBody — the whole request message
//! (`body: "*"` on a method taking HttpBody) or one HttpBody field (`body: "file"`), the other
//! fields still coming from the path and query. Its response is raw when the output is an
//! HttpBody, or `response_body` names an HttpBody field.

use bytes::Bytes;
use prost::Message;

use crate::pb::google::api::HttpBody;
use crate::route::{BodySelector, Route};
use crate::transcode::direct::wire;
use crate::transcode::request::TranscodeError;

const HTTP_BODY: &str = "google.api.HttpBody";

/// Where raw bytes sit in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawTarget {
    /// The message is the HttpBody.
    Whole,
    /// The HttpBody is this field (its number) of the message.
    Field(u32),
}

/// Where a route's raw request body goes, if it takes one.
pub fn request_target(route: &Route) -> Option<RawTarget> {
    match &route.body {
        BodySelector::Whole if route.method.input().full_name() == HTTP_BODY => Some(RawTarget::Whole),
        BodySelector::Field(field) if is_http_body(field) => Some(RawTarget::Field(field.number())),
        _ => None,
    }
}

/// Where a route's raw response comes from, if it answers with one.
pub fn response_target(route: &Route) -> Option<RawTarget> {
    match &route.response_body {
        Some(field) if is_http_body(field) => Some(RawTarget::Field(field.number())),
        Some(_) => None,
        None if route.method.output().full_name() == HTTP_BODY => Some(RawTarget::Whole),
        None => None,
    }
}

fn is_http_body(field: &prost_reflect::FieldDescriptor) -> bool {
    !field.is_list() && field.kind().as_message().is_some_and(|m| m.full_name() == HTTP_BODY)
}

/// Appends the encoding of an HttpBody with these bytes to `out`.
pub fn encode(target: RawTarget, content_type: &str, data: Bytes, out: &mut Vec<u8>) {
    let body = HttpBody { content_type: content_type.to_owned(), data: data.into(), extensions: Vec::new() };
    match target {
        RawTarget::Whole => body.encode_raw(out),
        RawTarget::Field(number) => prost::encoding::message::encode(number, &body, out),
    }
}

/// The HttpBody in an encoded response message.
pub fn decode(target: RawTarget, wire: &[u8]) -> Result<HttpBody, TranscodeError> {
    let invalid = |e: &dyn std::fmt::Display| TranscodeError::Render { reason: format!("{HTTP_BODY}: {e}") };
    match target {
        RawTarget::Whole => HttpBody::decode(wire).map_err(|e| invalid(&e)),
        RawTarget::Field(number) => {
            // A message field may occur several times; the occurrences merge.
            let mut body = HttpBody::default();
            let mut rest = wire;
            while !rest.is_empty() {
                let field = wire::next_field(&mut rest).map_err(|e| invalid(&e))?;
                if field.number == number && field.wire_type == 2 {
                    body.merge(field.value).map_err(|e| invalid(&e))?;
                }
            }
            Ok(body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes_round_trip_in_either_place() {
        for target in [RawTarget::Whole, RawTarget::Field(2)] {
            let mut wire = Vec::new();
            if target == RawTarget::Field(2) {
                // Another field first: the HttpBody is found among the others.
                prost::encoding::string::encode(1, &"name".to_owned(), &mut wire);
            }
            encode(target, "image/png", Bytes::from_static(b"\x89PNG\x00\xff"), &mut wire);
            let body = decode(target, &wire).unwrap();
            assert_eq!(body.content_type, "image/png");
            assert_eq!(body.data, b"\x89PNG\x00\xff");
        }
        assert!(decode(RawTarget::Field(2), b"\x12\x05ab").is_err(), "truncated");
    }
}
