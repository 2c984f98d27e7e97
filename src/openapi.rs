//! OpenAPI 3.1 of what the gateway serves now, built from its live route table: every route
//! (annotated, additional bindings, `POST /pkg.Service/Method`), composite routes and profile
//! routes, with parameters, bodies and answers described by the JSON Schemas of
//! [`schema`], the error body, streaming media types and each operation's security. One
//! generator serves `protogate openapi` and the admin listener's `/openapi.json`; both follow
//! reloads because both read the gateway being served.

mod comments;
pub mod schema;

use std::collections::BTreeMap;

use http::Method;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use crate::gateway::Gateway;
use crate::policy::AuthNeed;
use crate::route::rule::has_string_form;
use crate::route::template::{PathTemplate, Segment};
use crate::route::{BodySelector, Route, RouteOrigin};
use schema::Schemas;

/// The error body every failure answers with.
const STATUS: &str = "google.rpc.Status";

/// The `google.rpc` detail types an error may carry, documented as `details` entries.
const DETAIL_TYPES: &[&str] = &[
    "google.rpc.BadRequest",
    "google.rpc.ErrorInfo",
    "google.rpc.RequestInfo",
    "google.rpc.ResourceInfo",
    "google.rpc.RetryInfo",
    "google.rpc.PreconditionFailure",
    "google.rpc.QuotaFailure",
    "google.rpc.DebugInfo",
    "google.rpc.Help",
    "google.rpc.LocalizedMessage",
];

/// The OpenAPI 3.1 document of `gateway`'s routes.
pub fn document(gateway: &Gateway) -> Value {
    let options = gateway.transcoder().json_options();
    let mut doc = Document {
        gateway,
        reshaped: Vec::new(),
        schemas: Schemas::new(options),
        paths: Paths::default(),
        tags: BTreeMap::new(),
    };
    for route in gateway.table().routes() {
        let operation = doc.route_operation(route);
        doc.paths.add(&route.template, &route.http_method, operation, "");
    }
    for aggregate in gateway.aggregates().routes() {
        let operation = doc.composite_operation(aggregate);
        doc.paths.add(&aggregate.template, &aggregate.http_method, operation, "");
    }
    doc.profiles();
    doc.finish()
}

struct Document<'g> {
    gateway: &'g Gateway,
    /// Profile operations whose answer is not the route's: by path and method.
    reshaped: Vec<(String, String, Reshape<'g>)>,
    schemas: Schemas<'g>,
    paths: Paths,
    /// Services by name, with their comments: the operations' tags.
    tags: BTreeMap<String, Option<String>>,
}

impl Document<'_> {
    /// The operation of a table route.
    fn route_operation(&mut self, route: &Route) -> Value {
        let method = &route.method;
        let service = method.parent_service();
        let comment = self.schemas.comment_of(service.parent_file(), service.path());
        self.tags.entry(service.full_name().to_owned()).or_insert(comment);
        let mut operation = json!({
            "operationId": method.full_name(),
            "summary": method.name(),
            "tags": [service.full_name()],
        });
        if let Some(text) = self.schemas.comment_of(method.parent_file(), method.path()) {
            operation["description"] = Value::String(text);
        }
        if route.origin == RouteOrigin::Default {
            operation["x-protogate-default-route"] = Value::Bool(true);
        }
        let mut parameters = self.path_parameters(route);
        if route.body != BodySelector::Whole {
            self.query_parameters(route, &route.method.input(), &mut Vec::new(), &mut parameters);
        }
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = self.request_body(route) {
            operation["requestBody"] = body;
        }
        let success = self.success_response(route);
        let need = self.gateway.policies().auth_need(self.gateway.table().routes(), route);
        operation["responses"] = responses(success, need.as_ref());
        if let Some(need) = &need {
            operation["security"] = security(need);
        }
        operation
    }

    /// One parameter per template variable, named as the path key names it, and one per
    /// wildcard no variable covers (`{_1}`: any segment).
    fn path_parameters(&mut self, route: &Route) -> Vec<Value> {
        let template = &route.template;
        let mut parameters: Vec<Value> = template
            .variables()
            .iter()
            .map(|variable| {
                let name = variable.field_path.join(".");
                let binding = route.bindings.iter().find(|b| b.start == variable.start);
                let mut schema = match binding.and_then(|b| b.field.fields().last().cloned()) {
                    Some(field) => self.schemas.kind(&field.kind()),
                    None => json!({ "type": "string" }),
                };
                let inner = &template.segments()[variable.start..variable.end];
                if inner != [Segment::Wildcard] {
                    // `{name=shelves/*}`: the value spans segments; its slashes stay as sent.
                    schema = json!({ "type": "string", "pattern": segments_pattern(inner) });
                }
                json!({
                    "name": name,
                    "in": "path",
                    "required": true,
                    "description": format!("binds `{name}`"),
                    "schema": schema,
                })
            })
            .collect();
        let covered = |i: usize| template.variables().iter().any(|v| (v.start..v.end).contains(&i));
        let unnamed = template
            .segments()
            .iter()
            .enumerate()
            .filter(|(i, s)| matches!(s, Segment::Wildcard | Segment::DeepWildcard) && !covered(*i));
        for (n, _) in unnamed.enumerate() {
            let schema = json!({ "type": "string" });
            parameters.push(json!({ "name": format!("_{}", n + 1), "in": "path", "required": true, "schema": schema }));
        }
        parameters
    }

    /// Query parameters for the fields of `message` (reached through `path`) that neither the
    /// path nor the body binds: nested messages by dotted name, maps as `name[key]`.
    fn query_parameters(
        &mut self,
        route: &Route,
        message: &MessageDescriptor,
        path: &mut Vec<FieldDescriptor>,
        out: &mut Vec<Value>,
    ) {
        let options = self.gateway.transcoder().json_options();
        for field in message.fields() {
            path.push(field.clone());
            let name: Vec<&str> = path.iter().map(|f| options.output_name(f)).collect();
            let name = name.join(".");
            match field.kind() {
                _ if route.binds(path) => {}
                Kind::Message(_) if has_string_form(&field) => out.push(self.query_parameter(&name, &field)),
                Kind::Message(child) if !field.is_list() && !field.is_map() && !schema::is_well_known(&child) => {
                    // Recursive messages stop after a few levels.
                    if path.len() < 4 {
                        self.query_parameters(route, &child, path, out);
                    }
                }
                // Lists of messages and the JSON-only well-known types have no query form.
                Kind::Message(_) if !field.is_map() => {}
                _ => out.push(self.query_parameter(&name, &field)),
            }
            path.pop();
        }
    }

    /// The error body's schema.
    fn status_schema(&mut self) -> Value {
        match self.gateway.pool().get_message_by_name(STATUS) {
            Some(status) => self.schemas.message(&status),
            None => json!({ "type": "object" }),
        }
    }

    fn query_parameter(&mut self, name: &str, field: &FieldDescriptor) -> Value {
        let schema = self.schemas.field(field);
        let mut parameter = json!({ "name": name, "in": "query", "schema": schema });
        if field.is_map() {
            // `labels[env]=prod`.
            parameter["style"] = json!("deepObject");
            parameter["explode"] = json!(true);
        }
        parameter
    }

    fn request_body(&mut self, route: &Route) -> Option<Value> {
        let schema = match &route.body {
            BodySelector::Empty => return None,
            BodySelector::Whole => self.schemas.message(&route.method.input()),
            BodySelector::Field(field) => self.schemas.field(field),
        };
        let (media, description) = match route.method.is_client_streaming() {
            true => ("application/x-ndjson", "A stream: one JSON message per line."),
            false => ("application/json", ""),
        };
        let mut body = json!({ "content": { media: { "schema": schema } } });
        if !description.is_empty() {
            body["description"] = json!(description);
        }
        Some(body)
    }

    /// The 200 answer: the message (or `response_body` field), or a stream.
    fn success_response(&mut self, route: &Route) -> Value {
        let output = route.method.output();
        let message = match &route.response_body {
            Some(field) => self.schemas.field(field),
            None => self.schemas.message(&output),
        };
        if route.method.is_server_streaming() {
            let status = self.status_schema();
            let line = json!({
                "oneOf": [
                    { "type": "object", "properties": { "result": message }, "required": ["result"] },
                    { "type": "object", "properties": { "error": status }, "required": ["error"] }
                ]
            });
            return json!({
                "description": "A stream: NDJSON, one `{\"result\": …}` per message and an `{\"error\": …}` line if it fails; \
                                or Server-Sent Events (`Accept: text/event-stream`), one `data:` event per message",
                "content": {
                    "application/x-ndjson": { "schema": line },
                    "text/event-stream": { "schema": { "type": "string" } }
                }
            });
        }
        if output.full_name() == "google.api.HttpBody" && route.response_body.is_none() {
            return json!({
                "description": "The body the method answers, with its own content type",
                "content": { "*/*": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } }
            });
        }
        json!({ "description": "OK", "content": { "application/json": { "schema": message } } })
    }

    /// A composite route: one object with each call's answer under its name.
    fn composite_operation(&mut self, aggregate: &crate::aggregate::plan::Aggregate) -> Value {
        let mut properties = Map::new();
        let mut methods = Vec::new();
        for call in &aggregate.calls {
            let route = self.gateway.route_at(call.route);
            properties.insert(call.name.clone(), self.schemas.message(&route.method.output()));
            methods.push(call.grpc_method.clone());
        }
        if aggregate.on_error == crate::config::OnError::Partial {
            let status = self.status_schema();
            properties.insert(
                "errors".into(),
                json!({ "type": "object", "additionalProperties": status, "description": "the calls that failed" }),
            );
        }
        let parameters: Vec<Value> = aggregate
            .template
            .variables()
            .iter()
            .map(|v| json!({ "name": v.field_path.join("."), "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let answer = json!({ "type": "object", "properties": properties });
        let success = json!({ "description": "OK", "content": { "application/json": { "schema": answer } } });
        let mut operation = json!({
            "operationId": format!("composite {} {}", aggregate.http_method, aggregate.template),
            "summary": format!("Composite route: {}", methods.join(", ")),
            "tags": ["composite routes"],
            "responses": responses(success, None),
        });
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if aggregate.reads_body {
            operation["requestBody"] = json!({ "content": { "application/json": { "schema": { "type": "object" } } } });
        }
        operation
    }

    /// Each profile's routes under its prefix: the operation of the route it exposes, its
    /// answer reshaped as the profile says (in [`Document::finish`], once every schema is known).
    fn profiles(&mut self) {
        let gateway = self.gateway;
        for profile in gateway.profiles().iter() {
            let routes = gateway.table().routes().iter().enumerate();
            let routes =
                routes.filter_map(|(i, r)| Some((&r.http_method, &r.template, profile.route(i)?, Answer::Route(r))));
            let aggregates = gateway.aggregates().routes().iter().enumerate();
            let aggregates = aggregates
                .filter_map(|(i, a)| Some((&a.http_method, &a.template, profile.aggregate(i)?, Answer::Composite(a))));
            for (method, template, exposed, answer) in routes.chain(aggregates) {
                let Some(mut operation) = self.paths.operation(template, method) else { continue };
                let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
                operation["operationId"] = json!(format!("{}.{id}", profile.name));
                operation["tags"] = json!([format!("profile {}", profile.name)]);
                operation["x-protogate-profile"] = json!(profile.name);
                let path = self.paths.add(template, method, operation, profile.prefix.as_str());
                let shape = (!exposed.shape.is_empty()).then_some(&exposed.shape);
                let own = profile.has_own_json_options().then(|| OwnOptions {
                    profile: profile.name.as_str(),
                    options: profile.transcoder(gateway.transcoder()).json_options(),
                    answer,
                });
                if shape.is_some() || own.is_some() {
                    self.reshaped.push((path, method.as_str().to_ascii_lowercase(), Reshape { shape, own }));
                }
            }
        }
    }

    fn finish(mut self) -> Value {
        // The error body's schema is in the components whatever the operations refer to.
        self.status_schema();
        let details: Vec<Value> = DETAIL_TYPES
            .iter()
            .filter_map(|name| self.gateway.pool().get_message_by_name(name))
            .map(|detail| {
                let url = format!("type.googleapis.com/{}", detail.full_name());
                let schema = self.schemas.message(&detail);
                json!({ "allOf": [schema], "properties": { "@type": { "const": url } }, "required": ["@type"] })
            })
            .collect();
        let tags: Vec<Value> = self
            .tags
            .iter()
            .map(|(name, comment)| match comment {
                Some(text) => json!({ "name": name, "description": text }),
                None => json!({ "name": name }),
            })
            .collect();
        let security_schemes = self.gateway.policies().security_schemes();
        let mut schemas = self.schemas.finish();
        for (path, method, reshape) in std::mem::take(&mut self.reshaped) {
            let answer = self
                .paths
                .items
                .get_mut(&path)
                .and_then(|item| item.get_mut(&method))
                .map(|operation| &mut operation["responses"]["200"]["content"]["application/json"]["schema"]);
            if let Some(answer) = answer.filter(|a| !a.is_null()) {
                *answer = reshape.schema(self.gateway, answer, &mut schemas);
            }
        }
        if let Some(Value::Object(status_schema)) = schemas.get_mut(STATUS) {
            // A detail not listed is still an Any.
            let mut choices = details;
            choices.push(
                json!({ "type": "object", "properties": { "@type": { "type": "string" } }, "required": ["@type"] }),
            );
            status_schema.insert(
                "properties".into(),
                json!({
                    "code": { "type": "integer", "format": "int32", "description": "the google.rpc.Code" },
                    "message": { "type": "string" },
                    "details": { "type": "array", "items": { "anyOf": choices } }
                }),
            );
            status_schema.remove("additionalProperties");
        }
        let mut components = json!({
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "A google.rpc.Status: the gRPC code, a message, and typed details",
                    "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{STATUS}") } } }
                }
            }
        });
        if !security_schemes.is_empty() {
            components["securitySchemes"] = Value::Object(security_schemes);
        }
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "protogate",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "The HTTP/JSON routes this gateway serves, generated from the descriptors it has loaded."
            },
            "tags": tags,
            "paths": self.paths.into_json(),
            "components": components,
        })
    }
}

/// How a profile's answer differs from its route's: its fields kept, dropped and renamed as
/// its shape says, and, when it has `[json]` options of its own, rendered with those (its
/// messages then described again, under the profile's name).
struct Reshape<'g> {
    shape: Option<&'g crate::profile::Shape>,
    own: Option<OwnOptions<'g>>,
}

/// A profile's own `[json]` options, and the answer they render.
struct OwnOptions<'g> {
    profile: &'g str,
    options: &'g crate::transcode::json::JsonOptions,
    answer: Answer<'g>,
}

/// What a route answers.
enum Answer<'g> {
    /// A method's message (or its `response_body` field).
    Route(&'g Route),
    /// A composite route's object of its calls' messages.
    Composite(&'g crate::aggregate::plan::Aggregate),
}

/// How deep a reshaped answer's messages are written out; deeper ones stay references.
const RESHAPE_DEPTH: usize = 6;

impl Reshape<'_> {
    /// The answer's schema after the profile: the route's (described again with the profile's
    /// options, its messages added to `components` under the profile's name), its messages
    /// written out, then shaped the way the profile shapes answers — by the same code, run
    /// over a skeleton of the schema whose objects are the messages and whose arrays hold
    /// their item.
    fn schema(&self, gateway: &Gateway, answer: &Value, components: &mut BTreeMap<String, Value>) -> Value {
        let answer = match &self.own {
            Some(own) => own.describe(gateway, components),
            None => answer.clone(),
        };
        let Some(shape) = self.shape else { return answer };
        let mut skeleton = skeleton(&answer, components, 0);
        shape.apply(&mut skeleton);
        from_skeleton(&skeleton)
    }
}

impl OwnOptions<'_> {
    /// The answer's schema under the profile's options; its messages go into `components`
    /// as `<profile>.<message>`.
    fn describe(&self, gateway: &Gateway, components: &mut BTreeMap<String, Value>) -> Value {
        let mut schemas = Schemas::with_prefix(self.options, format!("#/components/schemas/{}.", self.profile));
        let answer = match &self.answer {
            Answer::Route(route) => match &route.response_body {
                Some(field) => schemas.field(field),
                None => schemas.message(&route.method.output()),
            },
            Answer::Composite(aggregate) => {
                let properties: Map<String, Value> = aggregate
                    .calls
                    .iter()
                    .map(|call| (call.name.clone(), schemas.message(&gateway.route_at(call.route).method.output())))
                    .collect();
                json!({ "type": "object", "properties": properties })
            }
        };
        for (name, schema) in schemas.finish() {
            components.insert(format!("{}.{name}", self.profile), schema);
        }
        answer
    }
}

/// A schema as a value of the shape of its instances: a message an object of its fields, a
/// list an array of its item, anything else its own schema, written as a string so that no
/// reshaping mistakes it for a message.
fn skeleton(schema: &Value, schemas: &BTreeMap<String, Value>, depth: usize) -> Value {
    let referred = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/"));
    match referred {
        Some(name) if depth < RESHAPE_DEPTH => match schemas.get(name) {
            Some(target) => skeleton(target, schemas, depth + 1),
            None => Value::String(schema.to_string()),
        },
        _ if schema["type"] == "array" => Value::Array(vec![skeleton(&schema["items"], schemas, depth + 1)]),
        _ if schema["type"] == "object" && schema["properties"].is_object() => Value::Object(
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, property)| (name.clone(), skeleton(property, schemas, depth + 1)))
                .collect(),
        ),
        _ => Value::String(schema.to_string()),
    }
}

/// The schema a reshaped skeleton stands for.
fn from_skeleton(skeleton: &Value) -> Value {
    match skeleton {
        Value::Object(fields) => json!({
            "type": "object",
            "properties": fields.iter().map(|(name, field)| (name.clone(), from_skeleton(field))).collect::<Map<String, Value>>(),
        }),
        Value::Array(items) => {
            json!({ "type": "array", "items": items.first().map(from_skeleton).unwrap_or(json!({})) })
        }
        Value::String(text) => serde_json::from_str(text).unwrap_or(json!({})),
        _ => json!({}),
    }
}

/// The pattern of a multi-segment variable's value: `shelves/*` → `^shelves/[^/]+$`.
fn segments_pattern(segments: &[Segment]) -> String {
    let parts: Vec<String> = segments
        .iter()
        .map(|segment| match segment {
            Segment::Literal(text) => regex_escape(text),
            Segment::Wildcard => "[^/]+".to_owned(),
            Segment::DeepWildcard => ".*".to_owned(),
        })
        .collect();
    format!("^{}$", parts.join("/"))
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            true => vec![c],
            false => vec!['\\', c],
        })
        .collect()
}

/// The answers an operation may give: the success, and the errors the contract gives.
fn responses(success: Value, need: Option<&AuthNeed>) -> Value {
    let error = json!({ "$ref": "#/components/responses/Error" });
    // Any other code an upstream answers with maps to its status the same way.
    let mut responses = json!({ "200": success, "default": error });
    let mut codes = vec!["400", "404", "409", "413", "415", "429", "500", "501", "502", "503", "504"];
    if need.is_some() {
        codes.extend(["401", "403"]);
    }
    codes.sort_unstable();
    for code in codes {
        responses[code] = error.clone();
    }
    responses
}

/// An operation's security: the bearer token (where the policies let it be carried), with
/// the scopes they require; optional when only some of the requests need one.
fn security(need: &AuthNeed) -> Value {
    let mut alternatives: Vec<Value> = vec![json!({ "bearer": need.scopes })];
    if need.places.query {
        alternatives.push(json!({ "access_token_query": need.scopes }));
    }
    if need.places.cookie.is_some() {
        alternatives.push(json!({ "access_token_cookie": need.scopes }));
    }
    if !need.always {
        alternatives.push(json!({}));
    }
    Value::Array(alternatives)
}

/// Path items by OpenAPI path, one operation per method. Templates that differ only in their
/// variables' names share one path item (OpenAPI forbids two): the first route's names stand.
#[derive(Default)]
struct Paths {
    items: BTreeMap<String, Map<String, Value>>,
    /// The operation ids given: each must be unique.
    ids: std::collections::HashSet<String>,
    /// The path of each template shape (`/v1/users/{}`), and its variables' names.
    names: BTreeMap<String, (String, Vec<String>)>,
}

impl Paths {
    /// Adds `operation` at `template`'s path (under `prefix`); the path it is under.
    fn add(&mut self, template: &PathTemplate, method: &Method, mut operation: Value, prefix: &str) -> String {
        let (path, names) = self.path_of(template, prefix);
        // Parameters follow the names the path uses.
        if let Some(Value::Array(parameters)) = operation.get_mut("parameters") {
            let mut variables = template.variables().iter().map(|v| v.field_path.join(".")).zip(names.iter());
            for parameter in parameters.iter_mut().filter(|p| p["in"] == "path") {
                if let Some((_, name)) = variables.next() {
                    parameter["name"] = json!(name);
                }
            }
        }
        // Additional bindings and `POST /pkg.Service/Method` are other operations of one method.
        if let Some(id) = operation["operationId"].as_str().map(str::to_owned) {
            let unique = (1..).map(|n| if n == 1 { id.clone() } else { format!("{id}_{n}") });
            let unique = unique.take(1000).find(|candidate| !self.ids.contains(candidate)).unwrap_or(id);
            self.ids.insert(unique.clone());
            operation["operationId"] = json!(unique);
        }
        let item = self.items.entry(path.clone()).or_default();
        item.entry(method.as_str().to_ascii_lowercase()).or_insert(operation);
        path
    }

    /// The operation already added for `template` and `method`, unprefixed.
    fn operation(&self, template: &PathTemplate, method: &Method) -> Option<Value> {
        let (path, _) = self.names.get(&format!("|{}", key_of(template)))?;
        self.items.get(path)?.get(&method.as_str().to_ascii_lowercase()).cloned()
    }

    fn path_of(&mut self, template: &PathTemplate, prefix: &str) -> (String, Vec<String>) {
        let key = format!("{prefix}|{}", key_of(template));
        let names: Vec<String> = template.variables().iter().map(|v| v.field_path.join(".")).collect();
        let (path, names) =
            self.names.entry(key).or_insert_with(|| (format!("{prefix}{}", render(template, &names)), names)).clone();
        (path, names)
    }

    fn into_json(self) -> Value {
        Value::Object(self.items.into_iter().map(|(path, item)| (path, Value::Object(item))).collect())
    }
}

/// A template with its variables' names erased, and its verb: what makes two paths the same.
fn key_of(template: &PathTemplate) -> String {
    render(template, &vec![String::new(); template.variables().len()])
}

/// The OpenAPI path of a template: each variable one `{name}`, whatever it spans.
fn render(template: &PathTemplate, names: &[String]) -> String {
    let mut out = String::new();
    let segments = template.segments();
    let mut i = 0;
    let mut unnamed = 0;
    while i < segments.len() {
        out.push('/');
        match template.variables().iter().position(|v| v.start == i) {
            Some(n) => {
                out.push_str(&format!("{{{}}}", names[n]));
                i = template.variables()[n].end;
                continue;
            }
            None => match &segments[i] {
                Segment::Literal(text) => out.push_str(text),
                Segment::Wildcard | Segment::DeepWildcard => {
                    unnamed += 1;
                    out.push_str(&format!("{{_{unnamed}}}"));
                }
            },
        }
        i += 1;
    }
    if segments.is_empty() {
        out.push('/');
    }
    if let Some(verb) = template.verb() {
        out.push(':');
        out.push_str(verb);
    }
    out
}
