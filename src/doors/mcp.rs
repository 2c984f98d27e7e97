//! The Model Context Protocol door (`[mcp]`): the selected unary methods as tools an AI agent
//! can list and call, over MCP's Streamable HTTP transport on the public listener.
//!
//! - `initialize` answers the protocol version and the `tools` capability. The door keeps no
//!   session (`Mcp-Session-Id` is not issued): any replica answers any request.
//! - `tools/list` gives one tool per method: its name (`Service_Method`), its proto comment as
//!   description, and `inputSchema` / `outputSchema` from the JSON Schemas the OpenAPI
//!   document uses, each self-contained under `$defs`.
//! - `tools/call` runs the method through the one pipeline like any other door — the policies
//!   (the JWT from `Authorization`), rate limits, deadline, access log and metrics — and
//!   answers `structuredContent` with a text rendering, or, when the call fails, a tool error
//!   whose text is the `google.rpc.Status`.
//!
//! Notifications get 202; a `GET` (no server-initiated stream) or `DELETE` (no session) 405.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::metadata::{self, Peer};
use crate::openapi::schema::Schemas;
use crate::pipeline::{self, Arrival, CallKind, Caller};
use crate::route::{Route, RouteOrigin};

/// The protocol versions this door speaks, newest first.
const VERSIONS: &[&str] = &["2025-06-18", "2025-03-26", "2024-11-05"];

/// JSON-RPC's error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Whether `request` is for the MCP endpoint.
pub fn is_mcp(gateway: &Gateway, request: &Request<Body>) -> bool {
    gateway.mcp().enabled && request.uri().path() == gateway.mcp().path
}

/// Answers one request to the MCP endpoint.
pub async fn handle(gateway: Arc<Gateway>, request: Request<Body>, peer: Peer) -> Response<Body> {
    if request.method() != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "this MCP endpoint takes POST only");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let (parts, body) = request.into_parts();
    let body = match pipeline::read_limited(&parts.headers, body, gateway.max_body_bytes()).await {
        Ok(body) => body,
        Err(error) => return gateway.error_response(error, None).map(Body::from),
    };
    let message: Value = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(e) => return rpc_error(Value::Null, PARSE_ERROR, &format!("not JSON: {e}")),
    };
    let Some(object) = message.as_object() else {
        return rpc_error(Value::Null, INVALID_REQUEST, "one JSON-RPC message per request (batches are not taken)");
    };
    let Some(method) = object.get("method").and_then(Value::as_str) else {
        // A response to a request of ours: there are none.
        return accepted();
    };
    let Some(id) = object.get("id").cloned() else { return accepted() };
    let params = object.get("params").cloned().unwrap_or(Value::Null);
    let mut failure = None;
    let result = match method {
        "initialize" => Ok(initialize(&params)),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools(&gateway) })),
        "tools/call" => call(&gateway, &parts, peer, &params, &mut failure).await,
        other => Err((METHOD_NOT_FOUND, format!("{other} is not a method of this server"))),
    };
    let mut response = match result {
        Ok(result) => json_response(&json!({ "jsonrpc": "2.0", "id": id, "result": result })),
        Err((code, message)) => rpc_error(id, code, &message),
    };
    // A failed call answers 200 (a tool error is a result), but the access log, metrics and
    // span still say what failed.
    if let Some(error) = failure {
        response.extensions_mut().insert(error);
    }
    response
}

fn initialize(params: &Value) -> Value {
    let asked = params["protocolVersion"].as_str().unwrap_or_default();
    let version = VERSIONS.iter().find(|v| **v == asked).unwrap_or(&VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": "protogate", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "Each tool calls one gRPC method behind this gateway; arguments and results are its request and response messages in the proto3 JSON mapping.",
    })
}

/// The methods offered: each unary method's `POST /pkg.Service/Method` route.
fn offered(gateway: &Gateway) -> impl Iterator<Item = (usize, &Route)> {
    let mcp = gateway.mcp();
    gateway.table().routes().iter().enumerate().filter(move |(_, route)| {
        let method = &route.method;
        route.origin == RouteOrigin::Default
            && !method.is_client_streaming()
            && !method.is_server_streaming()
            && mcp.offers(method.parent_service().full_name(), method.name())
    })
}

/// A tool's name: `Service_Method`, or the full name with `_` for dots where two services of
/// different packages share a name.
fn tool_names(gateway: &Gateway) -> Vec<(usize, String)> {
    let short = |route: &Route| format!("{}_{}", route.method.parent_service().name(), route.method.name());
    let named: Vec<(usize, &Route, String)> =
        offered(gateway).map(|(index, route)| (index, route, short(route))).collect();
    let mut uses: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (_, _, name) in &named {
        *uses.entry(name.as_str()).or_default() += 1;
    }
    named
        .iter()
        .map(|(index, route, name)| match uses[name.as_str()] {
            1 => (*index, name.clone()),
            _ => (*index, route.method.full_name().replace('.', "_")),
        })
        .collect()
}

fn tools(gateway: &Gateway) -> Vec<Value> {
    tool_names(gateway)
        .into_iter()
        .map(|(index, name)| {
            let route = gateway.route_at(index);
            let options = gateway.transcoder().json_options();
            let mut schemas = Schemas::with_prefix(options, "#/$defs/".to_owned());
            let description = schemas.comment_of(route.method.parent_file(), route.method.path());
            let input = self_contained(options, &route.method.input());
            let output = self_contained(options, &route.method.output());
            let mut tool = json!({
                "name": name,
                "title": route.method.full_name(),
                "inputSchema": input,
                "outputSchema": output,
            });
            tool["description"] = json!(description.unwrap_or_else(|| format!("Calls {}.", route.method.full_name())));
            tool
        })
        .collect()
}

/// `message`'s object schema with every message it refers to under `$defs`.
fn self_contained(options: &crate::transcode::json::JsonOptions, message: &prost_reflect::MessageDescriptor) -> Value {
    let mut schemas = Schemas::with_prefix(options, "#/$defs/".to_owned());
    let root = schemas.message(message);
    let defs = schemas.finish();
    let mut schema = match defs.get(message.full_name()) {
        Some(object) => object.clone(),
        // A well-known type: its JSON form is not an object, so it is wrapped.
        None => json!({ "type": "object", "properties": { "value": root } }),
    };
    if !defs.is_empty() {
        schema["$defs"] = Value::Object(defs.into_iter().collect::<Map<String, Value>>());
    }
    schema
}

/// `tools/call`: the method run through the pipeline; a failure is a tool error carrying its
/// `google.rpc.Status`, not a JSON-RPC error (the agent reads it).
async fn call(
    gateway: &Arc<Gateway>,
    parts: &Parts,
    peer: Peer,
    params: &Value,
    failure: &mut Option<Arc<GatewayError>>,
) -> Result<Value, (i64, String)> {
    let name = params["name"].as_str().ok_or((INVALID_PARAMS, "params.name is required".to_owned()))?;
    let Some((index, _)) = tool_names(gateway).into_iter().find(|(_, n)| n == name) else {
        return Err((INVALID_PARAMS, format!("no tool is named {name:?}")));
    };
    let arguments = match &params["arguments"] {
        Value::Null => json!({}),
        Value::Object(_) => params["arguments"].clone(),
        _ => return Err((INVALID_PARAMS, "params.arguments must be an object".to_owned())),
    };
    match run(gateway, parts, peer, index, &arguments).await {
        Ok(answer) => {
            let structured: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
            let text = String::from_utf8_lossy(&answer).into_owned();
            Ok(
                json!({ "content": [{ "type": "text", "text": text }], "structuredContent": structured, "isError": false }),
            )
        }
        Err(error) => {
            let request_id = gateway.request_id(&parts.headers).cloned();
            let answer = gateway.error_response(error, request_id.as_ref());
            *failure = answer.extensions().get::<Arc<GatewayError>>().cloned();
            let status = answer.into_body();
            let text = String::from_utf8_lossy(&status).into_owned();
            Ok(json!({ "content": [{ "type": "text", "text": text }], "isError": true }))
        }
    }
}

/// One call of route `index`'s method with `arguments` as its request message.
async fn run(
    gateway: &Gateway,
    parts: &Parts,
    peer: Peer,
    index: usize,
    arguments: &Value,
) -> Result<Vec<u8>, GatewayError> {
    let route = gateway.route_at(index);
    let exchange = pipeline::note_route(gateway, parts, index);
    let access = pipeline::authorize(gateway, index, Arrival::Method, parts, peer).await?;
    let body = serde_json::to_vec(arguments).unwrap_or_default();
    let message = gateway.transcoder().decode(index, route, &[], None, &body)?;
    let metadata = metadata::to_grpc(&parts.headers, peer, gateway.header_rules())?;
    let caller = Caller { peer, exchange: &exchange };
    let requested = metadata::grpc_timeout(&parts.headers)?;
    let call = pipeline::call_target(gateway, index, metadata, requested, CallKind::Unary, &access, caller)?;
    let idempotent = pipeline::idempotent(None, call.upstream, route.grpc_path.path());
    let reply = call.upstream.unary(route.grpc_path.clone(), message, call.metadata, call.deadline, idempotent);
    let reply = exchange.time_call(call.span, reply).await?;
    Ok(gateway.transcoder().render(index, route, &reply.message)?)
}

fn json_response(body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn rpc_error(id: Value, code: i64, message: &str) -> Response<Body> {
    let mut response =
        json_response(&json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }));
    if id.is_null() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

fn accepted() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_unless_the_client_asks_for_one_known() {
        assert_eq!(initialize(&json!({"protocolVersion": "2025-03-26"}))["protocolVersion"], "2025-03-26");
        assert_eq!(initialize(&json!({"protocolVersion": "1999-01-01"}))["protocolVersion"], VERSIONS[0]);
    }
}
