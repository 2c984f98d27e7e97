//! The composite-route door (`[[aggregate]]`, planned in [`crate::aggregate`]): every
//! policy of every method it calls holds the request, then its calls run, each each started as soon as the calls it reads have
//! answered, so independent calls overlap and dependent ones follow. The answer is written
//! once every call has ended (or, with `on_error = "fail"`, at the first failure, which
//! cancels the calls still in flight).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::Value;
use tonic::Code;

use crate::aggregate::plan::{Aggregate, Call, Coerce, Input, Node, Output, Target, TextPiece};
use crate::auth::Claims;
use crate::config::OnError;
use crate::error::{GatewayError, json_response};
use crate::gateway::Gateway;
use crate::metadata::{self, Peer};
use crate::observability::Exchange;
use crate::observability::exchange::failure_code;
use crate::pipeline::{self, CallKind, deadline, earliest, read_body_json};
use crate::policy::{self, Access};
use crate::profile::View;
use crate::route::RouteMatch;
use crate::transcode::TranscodeError;
use crate::transcode::fields;
use crate::upstream::{UnaryResponse, UpstreamError};

/// What the request gives the calls' templates.
struct Inputs<'a> {
    path: &'a [String],
    query: Vec<(String, String)>,
    body: Option<Value>,
    claims: Option<&'a Claims>,
}

/// Where each call stands.
enum Slot {
    /// Waiting for calls it reads.
    Waiting,
    /// In flight.
    Running,
    /// Answered: its response as rendered JSON, and parsed when something reads into it.
    Done { json: Vec<u8>, parsed: Option<Value> },
    /// Failed.
    Failed(GatewayError),
}

type Pending<'g> = Pin<Box<dyn Future<Output = (usize, Result<UnaryResponse, UpstreamError>)> + Send + 'g>>;

/// A composite route (at `route_path` below a profile's prefix, else the request path): every
/// policy of the methods it calls (and the first that fits its own path, under the profile
/// and without it), then its calls, through the cache when the first of those policies caches.
pub async fn respond(
    gateway: &Gateway,
    matched: RouteMatch<'_, Aggregate>,
    parts: &Parts,
    route_path: &str,
    body: Body,
    peer: Peer,
    view: View<'_>,
) -> Result<Response<Body>, GatewayError> {
    let aggregate = matched.route;
    Exchange::of(&parts.extensions).matched(view.labels);
    let request = policy::Request {
        http_method: &aggregate.http_method,
        template: &aggregate.template,
        headers: &parts.headers,
        query_token: parts.extensions.get(),
        client: peer.client,
    };
    let routes = aggregate.calls.iter().map(|call| call.route);
    let paths = [parts.uri.path(), route_path];
    let access = pipeline::authorize_composite(gateway, routes, &request, &paths, parts).await?;
    let values = &matched.values;
    // A GET takes nothing from a body (`check` refuses `{body}` there): the key holds
    // everything the calls read, but the claims, which a verified subject keys.
    let Some(cache) = pipeline::cache_rule(gateway, &access, &parts.method, aggregate.reads_body) else {
        return run(gateway, aggregate, values, parts, body, peer, &access, view).await;
    };
    drop(body);
    let fetch = || run(gateway, aggregate, values, parts, Body::empty(), peer, &access, view);
    pipeline::through_cache(gateway, cache, &view.labels.route, values, parts, peer, &access, fetch).await
}

/// Runs `aggregate`'s calls for one request and writes the answer, shaped as `view` says.
#[allow(clippy::too_many_arguments)]
async fn run(
    gateway: &Gateway,
    aggregate: &Aggregate,
    values: &[String],
    parts: &Parts,
    body: Body,
    peer: Peer,
    access: &Access<'_>,
    view: View<'_>,
) -> Result<Response<Body>, GatewayError> {
    let body = match aggregate.reads_body {
        true => Some(read_body_json(&parts.headers, body, gateway.max_body_bytes()).await?),
        false => None,
    };
    let query = match (aggregate.reads_query, parts.uri.query()) {
        (true, Some(query)) => parse_query(query)?,
        _ => Vec::new(),
    };
    let always: &[&str] = if aggregate.on_error == OnError::Partial { &["errors"] } else { &[] };
    let mask = fields::requested_composite(parts.uri.query(), &aggregate.answer_keys, always)?;
    let mut metadata = metadata::to_grpc(&parts.headers, peer, gateway.header_rules())?;
    pipeline::forward_claims(gateway, access, &mut metadata);
    let exchange = Exchange::of(&parts.extensions);
    let mut run = Run {
        gateway,
        aggregate,
        view,
        access,
        inputs: Inputs { path: values, query, body, claims: access.claims.as_ref() },
        metadata,
        exchange: exchange.clone(),
        requested: metadata::grpc_timeout(&parts.headers)?,
        http_method: &parts.method,
        slots: aggregate.calls.iter().map(|_| Slot::Waiting).collect(),
    };
    let started = Instant::now();
    let ran = run.all().await;
    // For the access log: how long the calls took together.
    exchange.upstream_answered(started.elapsed(), None);
    ran?;
    let json = view.finish(mask.as_ref(), answer(gateway, aggregate, run.slots, gateway.request_id(&parts.headers)))?;
    Ok(json_response(StatusCode::OK, json).map(Body::from))
}

/// One request's calls.
struct Run<'r> {
    gateway: &'r Gateway,
    aggregate: &'r Aggregate,
    view: View<'r>,
    access: &'r Access<'r>,
    inputs: Inputs<'r>,
    /// The request's metadata, sent with every call (each with its own `traceparent`).
    metadata: http::HeaderMap,
    /// The request's record: each call is a span of its own.
    exchange: Exchange,
    /// The client's `Grpc-Timeout`.
    requested: Option<Duration>,
    /// The request's HTTP method: a GET's calls may all be retried.
    http_method: &'r http::Method,
    slots: Vec<Slot>,
}

impl<'r> Run<'r> {
    /// Makes every call, each once the calls it reads have answered. With `on_error = "fail"`
    /// the first failure ends it (dropping the calls in flight cancels them).
    async fn all(&mut self) -> Result<(), GatewayError> {
        let mut running: FuturesUnordered<Pending<'r>> = FuturesUnordered::new();
        loop {
            let progressed = self.start_ready(&mut running)?;
            if progressed && running.is_empty() {
                // Calls failed without a call in flight: the next pass marks the calls that read them.
                continue;
            }
            let Some((index, reply)) = running.next().await else { return Ok(()) };
            let call = &self.aggregate.calls[index];
            let outcome =
                reply.map_err(GatewayError::from).and_then(|reply| render(self.gateway, self.view, call, &reply));
            self.slots[index] = match outcome {
                Ok(slot) => slot,
                Err(error) => self.failed(error)?,
            };
        }
    }

    /// Starts every waiting call whose inputs are in, and marks those whose inputs failed;
    /// whether any changed.
    fn start_ready(&mut self, running: &mut FuturesUnordered<Pending<'r>>) -> Result<bool, GatewayError> {
        let mut progressed = false;
        let calls = &self.aggregate.calls;
        for (index, call) in calls.iter().enumerate() {
            if !matches!(self.slots[index], Slot::Waiting) {
                continue;
            }
            if let Some(&failed) = call.needs.iter().find(|&&n| matches!(self.slots[n], Slot::Failed(_))) {
                self.slots[index] = Slot::Failed(GatewayError::NotCalled { needs: calls[failed].name.clone() });
                progressed = true;
                continue;
            }
            if !call.needs.iter().all(|&n| matches!(self.slots[n], Slot::Done { .. })) {
                continue;
            }
            progressed = true;
            self.slots[index] = match self.start(index, call) {
                Ok(pending) => {
                    running.push(pending);
                    Slot::Running
                }
                Err(error) => self.failed(error)?,
            };
        }
        Ok(progressed)
    }

    /// Call `index`'s request built and sent.
    fn start(&self, index: usize, call: &'r Call) -> Result<Pending<'r>, GatewayError> {
        let message = build_request(self.gateway, self.view, call, &self.inputs, &self.slots)?;
        let upstream = pipeline::upstream_for(self.gateway, call.route)?;
        let path = self.gateway.route_at(call.route).grpc_path.clone();
        let limit = earliest(deadline(self.requested, CallKind::Unary, self.access, upstream), call.timeout);
        let idempotent = pipeline::idempotent(Some(self.http_method), upstream, path.path());
        let mut metadata = self.metadata.clone();
        let span = self.exchange.start_call(&path, &mut metadata);
        let reply = upstream.unary(path, message, metadata, limit, idempotent);
        let exchange = self.exchange.clone();
        Ok(Box::pin(async move {
            let reply = reply.await;
            let endpoint = reply.as_ref().map_or_else(UpstreamError::endpoint, |r| Some(&r.endpoint));
            exchange.call_ended(span, endpoint, reply.as_ref().map_or_else(failure_code, |_| Code::Ok));
            (index, reply)
        }))
    }

    /// A failed call: the end of the run with `on_error = "fail"`, else its slot.
    fn failed(&self, error: GatewayError) -> Result<Slot, GatewayError> {
        match self.aggregate.on_error {
            OnError::Fail => Err(error),
            OnError::Partial => Ok(Slot::Failed(error)),
        }
    }
}

/// The call's request message, encoded.
fn build_request(
    gateway: &Gateway,
    view: View<'_>,
    call: &Call,
    inputs: &Inputs<'_>,
    slots: &[Slot],
) -> Result<Bytes, GatewayError> {
    let json = fill(&call.request, inputs, slots).unwrap_or_else(|| Value::Object(Default::default()));
    let body =
        serde_json::to_vec(&json).map_err(|e| TranscodeError::InvalidJson { field: None, reason: e.to_string() })?;
    let route = gateway.route_at(call.route);
    Ok(view.transcoder.decode(call.route, route, &[], None, &body)?)
}

/// The call's response as JSON, parsed when another call or a merge reads into it.
fn render(gateway: &Gateway, view: View<'_>, call: &Call, reply: &UnaryResponse) -> Result<Slot, GatewayError> {
    let json = view.transcoder.render(call.route, gateway.route_at(call.route), &reply.message)?;
    let parsed = match call.parsed {
        true => Some(
            serde_json::from_slice(&json)
                .map_err(|e| TranscodeError::Render { reason: format!("{}: {e}", call.name) })?,
        ),
        false => None,
    };
    Ok(Slot::Done { json, parsed })
}

/// `{"user": {...}, "orders": {...}}`: each result under its name or its chosen fields at the
/// top, then (`on_error = "partial"`) the failed calls' errors under `errors`.
fn answer(
    gateway: &Gateway,
    aggregate: &Aggregate,
    slots: Vec<Slot>,
    request_id: Option<&http::HeaderValue>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    let mut errors: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut first = true;
    let mut key = |out: &mut Vec<u8>, name: &str| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_json(out, &Value::String(name.to_owned()));
        out.push(b':');
    };
    for (call, slot) in aggregate.calls.iter().zip(slots) {
        match (slot, &call.output) {
            (Slot::Done { json, .. }, Output::Whole) => {
                key(&mut out, &call.name);
                out.extend_from_slice(&json);
            }
            (Slot::Done { parsed: Some(parsed), .. }, Output::Fields(fields)) => {
                for field in fields {
                    if let Some(value) = parsed.get(field) {
                        key(&mut out, field);
                        write_json(&mut out, value);
                    }
                }
            }
            (Slot::Failed(error), _) => {
                errors.push((&call.name, gateway.error_response(error, request_id).into_body()));
            }
            _ => {}
        }
    }
    if !errors.is_empty() {
        key(&mut out, "errors");
        out.push(b'{');
        for (i, (name, status)) in errors.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json(&mut out, &Value::String((*name).to_owned()));
            out.push(b':');
            out.extend_from_slice(status);
        }
        out.push(b'}');
    }
    out.push(b'}');
    out
}

fn write_json(out: &mut Vec<u8>, value: &Value) {
    // Writing a `Value` to a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// The JSON a node stands for; `None` when a source it reads has no value (the field stays
/// unset).
fn fill(node: &Node, inputs: &Inputs<'_>, slots: &[Slot]) -> Option<Value> {
    match node {
        Node::Fixed(value) => Some(value.clone()),
        Node::Single { input, target } => Some(coerce(read(input, target.repeated, inputs, slots)?, *target)),
        Node::Text { pieces, target } => {
            let mut text = String::new();
            for piece in pieces {
                match piece {
                    TextPiece::Text(literal) => text.push_str(literal),
                    TextPiece::Value(input) => write_text(&mut text, &read(input, false, inputs, slots)?),
                }
            }
            Some(coerce(Value::String(text), *target))
        }
        Node::List(items) => Some(Value::Array(items.iter().filter_map(|n| fill(n, inputs, slots)).collect())),
        Node::Object(entries) => Some(Value::Object(
            entries.iter().filter_map(|(k, n)| Some((k.clone(), fill(n, inputs, slots)?))).collect(),
        )),
    }
}

/// An input's value; `all` takes every value of a repeated query parameter.
fn read(input: &Input, all: bool, inputs: &Inputs<'_>, slots: &[Slot]) -> Option<Value> {
    match input {
        Input::Path(i) => inputs.path.get(*i).map(|v| Value::String(v.clone())),
        Input::Query(name) => {
            let mut values = inputs.query.iter().filter(|(k, _)| k == name).map(|(_, v)| Value::String(v.clone()));
            if all {
                let values: Vec<Value> = values.collect();
                (!values.is_empty()).then_some(Value::Array(values))
            } else {
                values.next()
            }
        }
        Input::Body(path) => walk(inputs.body.as_ref()?, path),
        Input::Claim(name) => inputs.claims?.get(name).filter(|v| !v.is_null()).cloned(),
        Input::Call { call, path } => match slots.get(*call)? {
            Slot::Done { parsed: Some(parsed), .. } => walk(parsed, path),
            _ => None,
        },
    }
}

fn walk(mut value: &Value, path: &[String]) -> Option<Value> {
    for name in path {
        value = value.get(name)?;
    }
    (!value.is_null()).then(|| value.clone())
}

/// The few conversions the JSON mapping does not make itself.
fn coerce(value: Value, target: Target) -> Value {
    let one = |value: Value| match (target.coerce, value) {
        (Coerce::Text, Value::Number(n)) => Value::String(n.to_string()),
        (Coerce::Text, Value::Bool(b)) => Value::String(b.to_string()),
        (Coerce::Bool, Value::String(s)) if s == "true" || s == "false" => Value::Bool(s == "true"),
        (_, value) => value,
    };
    match (target.repeated, value) {
        (true, Value::Array(items)) => Value::Array(items.into_iter().map(one).collect()),
        (true, value) => Value::Array(vec![one(value)]),
        (false, value) => one(value),
    }
}

/// A value written into text: strings as they are, other JSON as JSON.
fn write_text(text: &mut String, value: &Value) {
    match value {
        Value::String(s) => text.push_str(s),
        other => text.push_str(&other.to_string()),
    }
}

/// The query string's parameters, percent-decoded, in order.
fn parse_query(query: &str) -> Result<Vec<(String, String)>, GatewayError> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((crate::transcode::request::form_decode(name)?, crate::transcode::request::form_decode(value)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn target(coerce: Coerce, repeated: bool) -> Target {
        Target { coerce, repeated }
    }

    fn inputs<'a>(path: &'a [String], query: &[(&str, &str)], body: Value) -> Inputs<'a> {
        let query = query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Inputs { path, query, body: Some(body), claims: None }
    }

    #[test]
    fn values_take_the_type_their_field_needs() {
        assert_eq!(coerce(json!(7), target(Coerce::Text, false)), json!("7"));
        assert_eq!(coerce(json!(true), target(Coerce::Text, false)), json!("true"));
        assert_eq!(coerce(json!("false"), target(Coerce::Bool, false)), json!(false));
        assert_eq!(
            coerce(json!("maybe"), target(Coerce::Bool, false)),
            json!("maybe"),
            "left for the mapping to refuse"
        );
        assert_eq!(coerce(json!("5"), target(Coerce::AsIs, true)), json!(["5"]));
        assert_eq!(coerce(json!([1, 2]), target(Coerce::Text, true)), json!(["1", "2"]));
    }

    #[test]
    fn a_missing_source_leaves_its_field_unset() {
        let path = ["42".to_owned()];
        let inputs = inputs(&path, &[("tag", "a"), ("tag", "b")], json!({"order": {"id": "o-1", "n": null}}));
        let node = Node::Object(vec![
            ("id".into(), Node::Single { input: Input::Path(0), target: target(Coerce::Text, false) }),
            ("tags".into(), Node::Single { input: Input::Query("tag".into()), target: target(Coerce::Text, true) }),
            ("first".into(), Node::Single { input: Input::Query("tag".into()), target: target(Coerce::Text, false) }),
            ("absent".into(), Node::Single { input: Input::Query("nope".into()), target: target(Coerce::Text, false) }),
            (
                "null".into(),
                Node::Single {
                    input: Input::Body(vec!["order".into(), "n".into()]),
                    target: target(Coerce::AsIs, false),
                },
            ),
            (
                "name".into(),
                Node::Text {
                    pieces: vec![
                        TextPiece::Text("users/".into()),
                        TextPiece::Value(Input::Path(0)),
                        TextPiece::Text("/orders/".into()),
                        TextPiece::Value(Input::Body(vec!["order".into(), "id".into()])),
                    ],
                    target: target(Coerce::Text, false),
                },
            ),
            (
                "half".into(),
                Node::Text {
                    pieces: vec![TextPiece::Text("x/".into()), TextPiece::Value(Input::Claim("sub".into()))],
                    target: target(Coerce::Text, false),
                },
            ),
        ]);
        assert_eq!(
            fill(&node, &inputs, &[]),
            Some(json!({"id": "42", "tags": ["a", "b"], "first": "a", "name": "users/42/orders/o-1"}))
        );
    }

    #[test]
    fn a_call_field_is_read_from_its_rendered_answer() {
        let slots = [Slot::Done { json: Vec::new(), parsed: Some(json!({"user": {"id": "u-1", "tags": ["x"]}})) }];
        let read_at = |path: &[&str]| {
            let input = Input::Call { call: 0, path: path.iter().map(|s| (*s).to_owned()).collect() };
            read(&input, false, &inputs(&[], &[], Value::Null), &slots)
        };
        assert_eq!(read_at(&["user", "id"]), Some(json!("u-1")));
        assert_eq!(read_at(&["user", "tags"]), Some(json!(["x"])));
        assert_eq!(read_at(&["user", "email"]), None, "a default value is not rendered: the field stays unset");
        assert_eq!(read_at(&[]), Some(json!({"user": {"id": "u-1", "tags": ["x"]}})));
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(
            parse_query("a=1&b=x%20y+z&&c").unwrap(),
            [("a".into(), "1".into()), ("b".into(), "x y z".into()), ("c".into(), String::new())]
        );
        assert!(parse_query("a=%FF").is_err());
    }
}
