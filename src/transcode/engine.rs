//! Steps 2 and 5 for every route, with the transcoder chosen per route when the gateway is
//! built: the direct one (JSON ↔ wire, [`super::direct`]) wherever its plans cover the
//! route's messages, prost-reflect's mapping ([`super::request`], [`super::response`])
//! elsewhere.
//!
//! Either way a request becomes wire bytes: the body's encoding, then the path variables'
//! (appended, so they win over the body, as protobuf merging makes the last value count),
//! then the query string's.

use bytes::Bytes;
use prost::Message;
use prost_reflect::DynamicMessage;

use crate::route::{BodySelector, Route};
use crate::transcode::direct::{self, DecodeError, DecodeOptions, PlanId, Plans, RenderOptions};
use crate::transcode::http_body::{self, RawTarget};
use crate::transcode::json::JsonOptions;
use crate::transcode::request::{self, TranscodeError};
use crate::transcode::response;

/// How each route's messages are transcoded.
#[derive(Debug)]
pub struct Transcoder {
    plans: Plans,
    routes: Vec<RoutePlan>,
    json: JsonOptions,
    render_options: RenderOptions,
    decode_options: DecodeOptions,
}

#[derive(Debug, Clone, Copy)]
struct RoutePlan {
    request: Engine,
    response: Engine,
    /// Set when the request body is a `google.api.HttpBody`, carried raw.
    raw_request: Option<RawTarget>,
    /// Set when the response is a `google.api.HttpBody`, answered raw.
    raw_response: Option<RawTarget>,
}

/// Which transcoder handles one direction of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// JSON ↔ wire directly: the message plan, and the field the body or response is bound to.
    Direct {
        /// The message's plan.
        message: PlanId,
        /// For a body or `response_body` bound to one field: its index in the plan.
        field: Option<usize>,
    },
    /// prost-reflect's serde mapping through a `DynamicMessage`.
    Reference,
}

impl Transcoder {
    /// Plans every route (in table order) under the given JSON options.
    pub fn build(routes: &[Route], json: JsonOptions) -> Transcoder {
        let plans = Plans::build(routes.iter().flat_map(|r| [r.method.input(), r.method.output()]));
        let routes = routes.iter().map(|route| RoutePlan::new(&plans, route)).collect();
        let render_options = RenderOptions {
            emit_unpopulated: json.emit_unpopulated,
            use_proto_names: json.use_proto_names,
            enums_as_ints: json.enums_as_ints,
        };
        let decode_options = DecodeOptions { deny_unknown_fields: !json.ignore_unknown_fields };
        Transcoder { plans, routes, json, render_options, decode_options }
    }

    /// The JSON options.
    pub fn json_options(&self) -> &JsonOptions {
        &self.json
    }

    /// The engines of route `index` (request, response).
    pub fn engines(&self, index: usize) -> (Engine, Engine) {
        self.routes.get(index).map_or((Engine::Reference, Engine::Reference), |p| (p.request, p.response))
    }

    /// Where route `index`'s raw (`google.api.HttpBody`) request body goes, if it has one.
    pub fn raw_request(&self, index: usize) -> Option<RawTarget> {
        self.routes.get(index)?.raw_request
    }

    /// Where route `index`'s raw (`google.api.HttpBody`) response comes from, if it has one.
    pub fn raw_response(&self, index: usize) -> Option<RawTarget> {
        self.routes.get(index)?.raw_response
    }

    /// Step 2 for a raw body: the request message with `data` and its content type in the
    /// HttpBody, and the path variables and query in the other fields.
    pub fn encode_raw(
        &self,
        route: &Route,
        target: RawTarget,
        values: &[String],
        query: Option<&str>,
        content_type: &str,
        data: Bytes,
    ) -> Result<Bytes, TranscodeError> {
        let mut out = Vec::with_capacity(data.len() + content_type.len() + 32);
        http_body::encode(target, content_type, data, &mut out);
        request::encode_path_bindings(route, values, &mut out)?;
        request::encode_query(route, query, &self.json, &mut out)?;
        Ok(Bytes::from(out))
    }

    /// Step 2: the encoded request message of route `index` for these path variable values
    /// (one per binding), query string and body.
    pub fn decode(
        &self,
        index: usize,
        route: &Route,
        values: &[String],
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Bytes, TranscodeError> {
        let Engine::Direct { message, field } = self.engines(index).0 else {
            return self.decode_reference(route, values, query, body);
        };
        let body = body.trim_ascii();
        let mut out = Vec::with_capacity(body.len() + 64);
        if !body.is_empty() {
            let decoded = match field {
                Some(field) => direct::decode_field(&self.plans, message, field, body, self.decode_options, &mut out),
                None if route.body == BodySelector::Whole => {
                    direct::decode_message(&self.plans, message, body, self.decode_options, &mut out)
                }
                None => Ok(()),
            };
            match decoded {
                Ok(()) => {}
                Err(DecodeError::Declined) => return self.decode_reference(route, values, query, body),
                Err(DecodeError::Invalid { field, reason }) => {
                    return Err(TranscodeError::InvalidJson { field, reason });
                }
            }
        }
        request::encode_path_bindings(route, values, &mut out)?;
        request::encode_query(route, query, &self.json, &mut out)?;
        Ok(Bytes::from(out))
    }

    fn decode_reference(
        &self,
        route: &Route,
        values: &[String],
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Bytes, TranscodeError> {
        let message = request::decode(route, values, query, body, &self.json)?;
        Ok(Bytes::from(message.encode_to_vec()))
    }

    /// Step 5: the JSON body for route `index`'s encoded response message.
    pub fn render(&self, index: usize, route: &Route, wire: &[u8]) -> Result<Vec<u8>, TranscodeError> {
        let mut out = Vec::new();
        self.render_into(index, route, wire, &mut out)?;
        Ok(out)
    }

    /// [`Transcoder::render`], appended to `out`: a stream writes the messages that are ready one
    /// after another into one buffer. On an error `out` is as it was.
    pub fn render_into(
        &self,
        index: usize,
        route: &Route,
        wire: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TranscodeError> {
        let Engine::Direct { message, field } = self.engines(index).1 else {
            let decoded = DynamicMessage::decode(route.method.output(), wire).map_err(|e| TranscodeError::Render {
                reason: format!("{}: {e}", route.method.output().full_name()),
            })?;
            let json = response::render(&decoded, route.response_body.as_ref(), &self.json)?;
            // A whole body (not a stream's next line) is the rendered buffer itself, uncopied.
            if out.is_empty() {
                *out = json;
            } else {
                out.extend_from_slice(&json);
            }
            return Ok(());
        };
        let start = out.len();
        out.reserve(wire.len() * 2 + 16);
        let rendered = match field {
            Some(field) => direct::render_field(&self.plans, message, field, wire, self.render_options, out),
            None => direct::render(&self.plans, message, wire, self.render_options, out),
        };
        rendered.map_err(|e| {
            out.truncate(start);
            TranscodeError::Render { reason: format!("{}: {e}", route.method.output().full_name()) }
        })
    }
}

impl RoutePlan {
    fn new(plans: &Plans, route: &Route) -> RoutePlan {
        let input = route.method.input();
        let output = route.method.output();
        let direct = |name: &str| plans.id(name).filter(|&id| plans.message(id).supported);
        let field_index = |id: PlanId, name: &str| plans.message(id).fields.iter().position(|f| &*f.proto_name == name);
        let request = match direct(input.full_name()) {
            // The field-mask fill on PATCH reads the body's keys; prost-reflect does that.
            Some(_) if fills_update_mask(route) => Engine::Reference,
            Some(message) => match &route.body {
                BodySelector::Field(f) => match field_index(message, f.name()) {
                    Some(field) => Engine::Direct { message, field: Some(field) },
                    None => Engine::Reference,
                },
                _ => Engine::Direct { message, field: None },
            },
            None => Engine::Reference,
        };
        let response = match (direct(output.full_name()), &route.response_body) {
            (Some(message), Some(f)) => match field_index(message, f.name()) {
                Some(field) => Engine::Direct { message, field: Some(field) },
                None => Engine::Reference,
            },
            (Some(message), None) => Engine::Direct { message, field: None },
            (None, _) => Engine::Reference,
        };
        RoutePlan {
            request,
            response,
            raw_request: http_body::request_target(route),
            raw_response: http_body::response_target(route),
        }
    }
}

fn fills_update_mask(route: &Route) -> bool {
    route.http_method == http::Method::PATCH
        && matches!(route.body, BodySelector::Field(_))
        && route
            .method
            .input()
            .get_field_by_name("update_mask")
            .and_then(|f| f.kind().as_message().map(|m| m.full_name() == "google.protobuf.FieldMask"))
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;

    fn engines_of(method: &str) -> Vec<(String, Engine, Engine)> {
        let routes = test_util::routes();
        let transcoder = Transcoder::build(&routes, JsonOptions::default());
        routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.method.name() == method)
            .map(|(i, r)| {
                let (request, response) = transcoder.engines(i);
                (format!("{} {}", r.http_method, r.template), request, response)
            })
            .collect()
    }

    fn is_direct(engine: Engine) -> bool {
        matches!(engine, Engine::Direct { .. })
    }

    #[test]
    fn routes_use_the_direct_transcoder_where_plans_cover_them() {
        for (route, request, response) in engines_of("GetShelf").into_iter().chain(engines_of("Echo")) {
            assert!(is_direct(request) && is_direct(response), "{route}");
        }
        let (_, request, _) = &engines_of("CreateShelf")[0];
        assert!(matches!(request, Engine::Direct { field: Some(_), .. }), "body bound to one field");
        let (_, _, response) = &engines_of("GetBookTitle")[0];
        assert!(matches!(response, Engine::Direct { field: Some(_), .. }), "response_body");
    }

    #[test]
    fn any_and_the_patch_field_mask_use_prost_reflect() {
        for (route, request, response) in engines_of("EchoAny") {
            assert_eq!((request, response), (Engine::Reference, Engine::Reference), "{route}");
        }
        let update = engines_of("UpdateBook");
        assert_eq!(update[0].1, Engine::Reference, "PATCH fills update_mask from the body keys");
        assert!(is_direct(update[0].2));
        assert!(is_direct(update[1].1), "the implicit POST route has no mask to fill");
    }
}
