//! Build time: each method's `google.api.http` rule (and its additional bindings), plus the
//! implicit `POST /pkg.Service/Method`, expanded into [`Route`]s with every field path resolved.
//!
//! After this step nothing on the request path looks a bound field up by name.

use std::collections::HashMap;
use std::fmt;

use http::Method;
use http::uri::PathAndQuery;
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};

use crate::pb::google::api::HttpRule;
use crate::pb::google::api::http_rule::Pattern;
use crate::route::template::PathTemplate;

/// One HTTP method + path template bound to one gRPC method.
#[derive(Debug, Clone)]
pub struct Route {
    /// The HTTP method.
    pub http_method: Method,
    /// The path template.
    pub template: PathTemplate,
    /// The gRPC method called.
    pub method: MethodDescriptor,
    /// The gRPC request path, `/pkg.Service/Method`.
    pub grpc_path: PathAndQuery,
    /// Fields filled from path variables, in template order.
    pub bindings: Vec<Binding>,
    /// What the HTTP body carries.
    pub body: BodySelector,
    /// The response field whose value is the whole HTTP body, if not the whole message.
    pub response_body: Option<FieldDescriptor>,
    /// Where the route comes from.
    pub origin: RouteOrigin,
}

impl Route {
    /// Whether the path or the body sets the field at `fields` (a path of fields from the
    /// request message), or a field containing it or inside it: the query string does not.
    pub fn binds(&self, fields: &[FieldDescriptor]) -> bool {
        let by_body = match &self.body {
            BodySelector::Whole => true,
            BodySelector::Field(body) => fields.first() == Some(body),
            BodySelector::Empty => false,
        };
        by_body
            || self.bindings.iter().any(|b| {
                let bound = b.field.fields();
                let n = bound.len().min(fields.len());
                bound[..n] == fields[..n]
            })
    }
}

/// A path variable bound to a request field.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The field the value goes to.
    pub field: FieldPath,
    /// The template segments the variable spans (`start..end`).
    pub start: usize,
    /// One past the last segment.
    pub end: usize,
    /// Whether the variable may span several segments (its value keeps `%2F` encoded).
    pub multi_segment: bool,
}

/// A resolved path of fields from the request message down, e.g. `book.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<FieldDescriptor>);

/// What the HTTP request body is mapped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodySelector {
    /// `body: "*"`: the whole request message, less path-bound fields.
    Whole,
    /// `body: "field"`: one top-level field.
    Field(FieldDescriptor),
    /// No body: fields come from the path and the query string.
    Empty,
}

/// Whether a route was declared or is the implicit one every method gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOrigin {
    /// From a `google.api.http` option.
    Annotation,
    /// `POST /pkg.Service/Method` with the whole request as the body.
    Default,
}

/// A rule that cannot become a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method}: {reason}")]
pub struct RouteError {
    /// The full gRPC method name.
    pub method: String,
    /// What is wrong with its rule.
    pub reason: String,
}

/// Every route of every service in the pool: annotated ones first (in descriptor order), then
/// the implicit `POST /pkg.Service/Method` of each method.
pub fn build_routes(pool: &DescriptorPool, http_rules: &HashMap<String, HttpRule>) -> (Vec<Route>, Vec<RouteError>) {
    let mut routes = Vec::new();
    let mut errors = Vec::new();
    let methods: Vec<MethodDescriptor> = pool.services().flat_map(|s| s.methods().collect::<Vec<_>>()).collect();
    for method in &methods {
        if let Some(rule) = http_rules.get(method.full_name()) {
            match expand_rule(method, rule) {
                Ok(mut expanded) => routes.append(&mut expanded),
                Err(e) => errors.push(e),
            }
        }
    }
    for method in &methods {
        routes.push(default_route(method));
    }
    (routes, errors)
}

/// The routes of one rule and its additional bindings.
pub fn expand_rule(method: &MethodDescriptor, rule: &HttpRule) -> Result<Vec<Route>, RouteError> {
    let error = |reason: String| RouteError { method: method.full_name().to_owned(), reason };
    let mut routes = vec![route_from_rule(method, rule).map_err(error)?];
    for (i, binding) in rule.additional_bindings.iter().enumerate() {
        if !binding.additional_bindings.is_empty() {
            return Err(error(format!("additional_bindings[{i}]: additional bindings cannot nest")));
        }
        let route =
            route_from_rule(method, binding).map_err(|reason| error(format!("additional_bindings[{i}]: {reason}")))?;
        routes.push(route);
    }
    Ok(routes)
}

/// `POST /pkg.Service/Method`, body `*`.
pub fn default_route(method: &MethodDescriptor) -> Route {
    Route {
        http_method: Method::POST,
        template: PathTemplate::literal(&[method.parent_service().full_name(), method.name()]),
        method: method.clone(),
        grpc_path: grpc_path(method),
        bindings: Vec::new(),
        body: BodySelector::Whole,
        response_body: None,
        origin: RouteOrigin::Default,
    }
}

fn route_from_rule(method: &MethodDescriptor, rule: &HttpRule) -> Result<Route, String> {
    let (http_method, path) = match &rule.pattern {
        Some(Pattern::Get(path)) => (Method::GET, path.as_str()),
        Some(Pattern::Put(path)) => (Method::PUT, path.as_str()),
        Some(Pattern::Post(path)) => (Method::POST, path.as_str()),
        Some(Pattern::Delete(path)) => (Method::DELETE, path.as_str()),
        Some(Pattern::Patch(path)) => (Method::PATCH, path.as_str()),
        Some(Pattern::Custom(custom)) => {
            let kind = Method::from_bytes(custom.kind.as_bytes())
                .map_err(|_| format!("custom method {:?} is not a valid HTTP method", custom.kind))?;
            (kind, custom.path.as_str())
        }
        None => return Err("the rule sets no HTTP method and path".into()),
    };
    let template = PathTemplate::parse(path).map_err(|e| e.to_string())?;
    let input = method.input();
    let bindings = template
        .variables()
        .iter()
        .map(|var| {
            let field = resolve_field_path(&input, &var.field_path)?;
            check_path_target(&field)?;
            Ok(Binding { field, start: var.start, end: var.end, multi_segment: var.is_multi_segment(&template) })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let body = match rule.body.as_str() {
        "" => BodySelector::Empty,
        "*" => BodySelector::Whole,
        name => BodySelector::Field(top_level_field(&input, name, "body")?),
    };
    let response_body = match rule.response_body.as_str() {
        "" => None,
        name => Some(top_level_field(&method.output(), name, "response_body")?),
    };
    Ok(Route {
        http_method,
        template,
        method: method.clone(),
        grpc_path: grpc_path(method),
        bindings,
        body,
        response_body,
        origin: RouteOrigin::Annotation,
    })
}

fn grpc_path(method: &MethodDescriptor) -> PathAndQuery {
    let text = format!("/{}/{}", method.parent_service().full_name(), method.name());
    // Service and method names are identifiers, so this always parses; fall back to "/" only
    // to keep the type total.
    text.parse().unwrap_or_else(|_| PathAndQuery::from_static("/"))
}

/// Resolves `a.b.c` from `message`: every step but the last must be a singular message field.
pub fn resolve_field_path(message: &MessageDescriptor, names: &[String]) -> Result<FieldPath, String> {
    if names.is_empty() {
        return Err("empty field path".into());
    }
    let mut fields = Vec::with_capacity(names.len());
    let mut current = message.clone();
    for (i, name) in names.iter().enumerate() {
        let shown = names[..=i].join(".");
        let field = current
            .get_field_by_name(name)
            .ok_or_else(|| format!("field {shown:?} does not exist in {}", current.full_name()))?;
        if i + 1 < names.len() {
            current = match field.kind() {
                Kind::Message(m) if !field.is_list() && !field.is_map() => m,
                _ => return Err(format!("field {shown:?} is not a singular message, so it has no fields")),
            };
        }
        fields.push(field);
    }
    Ok(FieldPath(fields))
}

fn check_path_target(path: &FieldPath) -> Result<(), String> {
    let field = path.last();
    if field.is_list() || field.is_map() {
        return Err(format!("path variable {path} must bind a singular field, not a repeated one"));
    }
    if !has_string_form(field) {
        return Err(format!("path variable {path} binds a message, which a path segment cannot carry"));
    }
    Ok(())
}

fn top_level_field(message: &MessageDescriptor, name: &str, what: &str) -> Result<FieldDescriptor, String> {
    message
        .get_field_by_name(name)
        .ok_or_else(|| format!("{what} {name:?} is not a top-level field of {}", message.full_name()))
}

// === impl FieldPath ===

impl FieldPath {
    /// The fields, outermost first. Never empty.
    pub fn fields(&self) -> &[FieldDescriptor] {
        &self.0
    }

    /// The field that holds the value.
    pub fn last(&self) -> &FieldDescriptor {
        // Built only by `resolve_field_path` from a non-empty template variable.
        &self.0[self.0.len() - 1]
    }

    /// The outermost field.
    pub fn first(&self) -> &FieldDescriptor {
        &self.0[0]
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(field.name())?;
        }
        Ok(())
    }
}

impl fmt::Display for BodySelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodySelector::Whole => f.write_str("*"),
            BodySelector::Field(field) => f.write_str(field.name()),
            BodySelector::Empty => f.write_str("-"),
        }
    }
}

/// Well-known message types whose JSON form is a string (or a bare scalar), so one path
/// segment or query value can carry them.
pub const STRING_FORM_MESSAGES: &[&str] = &[
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
];

/// Whether a single text value (a path segment, a query value) can set this field.
pub fn has_string_form(field: &FieldDescriptor) -> bool {
    match field.kind() {
        Kind::Message(message) => STRING_FORM_MESSAGES.contains(&message.full_name()),
        _ => true,
    }
}

#[cfg(test)]
mod tests;
