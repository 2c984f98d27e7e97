//! Build time: each `[[aggregate]]` bound to the descriptors. Every call's method is found, every
//! request key is resolved to its field, every `{CALL.field}` to a field of CALL's response,
//! and each placeholder's source is checked against the type of the field it fills, so a
//! mistake is reported by `check` with its key instead of failing requests.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::Value;

use crate::aggregate::template::{Piece, Source, Template};
use crate::aggregate::{key, parse_route};
use crate::config::{AggregateConfig, OnError};
use crate::observability::RouteLabels;
use crate::route::{Lookup, PathTemplate, Routable, Route, RouteOrigin, Table, TableBuilder, VariableSpan};
use crate::transcode::JsonOptions;

/// The composite routes and the table that finds them.
#[derive(Debug, Default)]
pub struct Aggregates {
    table: Option<Table<Aggregate>>,
}

/// One composite route, ready to run.
#[derive(Debug)]
pub struct Aggregate {
    /// The HTTP method.
    pub http_method: Method,
    /// The path template.
    pub template: PathTemplate,
    /// The template's variables by name (`{path.NAME}`), in order.
    variables: Vec<String>,
    /// What a failed call does to the answer.
    pub on_error: OnError,
    /// The calls, in the order the config gives them.
    pub calls: Vec<Call>,
    /// Whether a call reads the request body.
    pub reads_body: bool,
    /// Whether a call reads the query string.
    pub reads_query: bool,
    /// The labels its requests are logged and counted under.
    pub labels: Arc<RouteLabels>,
    /// The answer's top-level keys, each with the message under it (for `?fields=`).
    pub answer_keys: Vec<(String, Option<MessageDescriptor>)>,
}

/// One call of a composite route.
#[derive(Debug)]
pub struct Call {
    /// Its name: its key in the answer.
    pub name: String,
    /// The implicit route of its method (`POST /pkg.Service/Method`) in the gateway's table:
    /// its transcoder and upstream.
    pub route: usize,
    /// `pkg.Service/Method`.
    pub grpc_method: String,
    /// Its request message.
    pub request: Node,
    /// The calls whose responses it reads (indices into [`Aggregate::calls`]).
    pub needs: Vec<usize>,
    /// Its own deadline.
    pub timeout: Option<Duration>,
    /// Where its result goes in the answer.
    pub output: Output,
    /// Whether its response is read as JSON (another call reads it, or fields are merged).
    pub parsed: bool,
}

/// Where a call's result goes in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The whole response under the call's name.
    Whole,
    /// These top-level fields (their JSON names in the answer) at the answer's top level.
    Fields(Vec<String>),
}

/// A request value bound to its field.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Sent as configured.
    Fixed(Value),
    /// One source's value, with its JSON type.
    Single {
        /// Where it comes from.
        input: Input,
        /// What the field it fills accepts.
        target: Target,
    },
    /// Text and sources' values written out as one string.
    Text {
        /// The pieces, in order.
        pieces: Vec<TextPiece>,
        /// What the field it fills accepts.
        target: Target,
    },
    /// A repeated field's values.
    List(Vec<Node>),
    /// A message's fields (proto names) or a map's entries.
    Object(Vec<(String, Node)>),
}

/// A piece of a text value.
#[derive(Debug, Clone, PartialEq)]
pub enum TextPiece {
    /// Literal text.
    Text(String),
    /// A source's value as text.
    Value(Input),
}

/// Where a value comes from at request time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The path variable at this index.
    Path(usize),
    /// A query parameter.
    Query(String),
    /// A field of the JSON body (the whole body when empty).
    Body(Vec<String>),
    /// A claim of the verified token.
    Claim(String),
    /// A field of another call's response as rendered (its output JSON names).
    Call {
        /// The call's index.
        call: usize,
        /// Output names from its response down (the whole response when empty).
        path: Vec<String>,
    },
}

/// What a field accepts, for the few conversions a source's JSON value needs: text sources
/// into bool fields, numbers into string fields, one value into a repeated field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// How one value is converted.
    pub coerce: Coerce,
    /// The field is repeated: a single value becomes a list of one.
    pub repeated: bool,
}

/// How one value is converted for its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coerce {
    /// A string field: numbers and booleans are written out.
    Text,
    /// A bool field: `"true"` and `"false"` become booleans.
    Bool,
    /// Anything else: the JSON mapping decides (it reads numbers from strings itself).
    AsIs,
}

/// What a source gives, for checking it against the field it fills.
enum Shape {
    /// Text (path variables, query parameters).
    Text,
    /// Any JSON (body, claims): checked when the request is decoded.
    Json,
    /// A field of a call's response.
    Field(FieldDescriptor),
    /// A call's whole response.
    Message(MessageDescriptor),
}

impl Aggregates {
    /// Binds every composite route to the descriptors. `routes` is the gateway's table (in
    /// order): each call goes through its method's implicit route. Every problem is returned,
    /// keyed by [`key`].
    pub fn build(
        configs: &[AggregateConfig],
        routes: &[Route],
        json: &JsonOptions,
    ) -> Result<Aggregates, Vec<(String, String)>> {
        if configs.is_empty() {
            return Ok(Aggregates::default());
        }
        let mut errors = Vec::new();
        let mut builder = TableBuilder::new();
        for config in configs {
            let prefix = key(config);
            match build_one(config, routes, json) {
                Ok(aggregate) => {
                    if let Some(route) = routes.iter().find(|r| same_route(r, &aggregate)) {
                        errors.push((
                            format!("{prefix}.route"),
                            format!(
                                "{} {} is also a route of {}: one of them could never be reached",
                                aggregate.http_method,
                                aggregate.template,
                                route.method.full_name()
                            ),
                        ));
                    }
                    builder.push(aggregate);
                }
                Err(problems) => errors.extend(problems.into_iter().map(|(k, m)| (format!("{prefix}.{k}"), m))),
            }
        }
        let table = builder.build();
        for conflict in table.conflicts() {
            let (Some(shadowed), Some(winner)) = (configs.get(conflict.shadowed), configs.get(conflict.winner)) else {
                continue;
            };
            errors.push((format!("{}.route", key(shadowed)), format!("the same route as {}", key(winner))));
        }
        if errors.is_empty() { Ok(Aggregates { table: Some(table) }) } else { Err(errors) }
    }

    /// The composite route for this request, if one matches.
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_, Aggregate> {
        match &self.table {
            Some(table) => table.lookup(method, path),
            None => Lookup::NotFound,
        }
    }

    /// Every composite route.
    pub fn routes(&self) -> &[Aggregate] {
        self.table.as_ref().map_or(&[], Table::routes)
    }
}

fn same_route(route: &Route, aggregate: &Aggregate) -> bool {
    route.origin == RouteOrigin::Annotation
        && route.http_method == aggregate.http_method
        && route.template.shape() == aggregate.template.shape()
}

impl Routable for Aggregate {
    fn http_method(&self) -> &Method {
        &self.http_method
    }

    fn template(&self) -> &PathTemplate {
        &self.template
    }

    fn variables(&self) -> impl Iterator<Item = VariableSpan<'_>> {
        self.template.variables().iter().zip(&self.variables).map(|(variable, name)| VariableSpan {
            start: variable.start,
            end: variable.end,
            multi_segment: variable.is_multi_segment(&self.template),
            name,
        })
    }
}

fn build_one(
    config: &AggregateConfig,
    routes: &[Route],
    json: &JsonOptions,
) -> Result<Aggregate, Vec<(String, String)>> {
    let (http_method, template) = parse_route(&config.route).map_err(|m| vec![("route".to_owned(), m)])?;
    let variables: Vec<String> = template.variables().iter().map(|v| v.field_path.join(".")).collect();
    let mut errors = Vec::new();
    // Each call's implicit route, found first: other calls read its output type.
    let methods = find_methods(config, routes, &mut errors);
    let outputs: Vec<Option<MessageDescriptor>> = methods.iter().map(|m| m.map(|(_, r)| r.method.output())).collect();
    let names = config.calls.keys().map(String::as_str).collect();
    let mut binder =
        Binder { json, names, outputs: &outputs, variables: &variables, errors: &mut errors, needs: Vec::new() };
    let mut calls = Vec::new();
    for ((name, call), method) in config.calls.iter().zip(&methods) {
        let Some((index, route)) = *method else { continue };
        let key = format!("calls.{name}.request");
        let entries = match Template::parse(&Value::Object(call.request.clone())) {
            Ok(Template::Object(entries)) => entries,
            _ => continue, // reported by `validate`
        };
        binder.needs.clear();
        let input = route.method.input();
        let request = binder.object(&entries, &input, &key);
        check_fixed(&request, &input, json, &key, binder.errors);
        let mut needs = std::mem::take(&mut binder.needs);
        needs.sort_unstable();
        needs.dedup();
        let output = output_of(name, call.merge.as_deref(), &route.method.output(), json, binder.errors);
        let (grpc_method, timeout) = (call.method.clone(), call.timeout);
        calls.push(Call {
            name: name.clone(),
            route: index,
            grpc_method,
            request,
            needs,
            timeout,
            parsed: false,
            output,
        });
    }
    check_answer_keys(&calls, config.on_error, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    for i in 0..calls.len() {
        let read = calls.iter().any(|c| c.needs.contains(&i));
        calls[i].parsed = read || calls[i].output != Output::Whole;
    }
    let reads = |f: fn(&Input) -> bool| calls.iter().any(|c| c.request.inputs().into_iter().any(f));
    let labels = Arc::new(RouteLabels::new(
        template.to_string().into(),
        calls.iter().map(|c| c.grpc_method.as_str()).collect::<Vec<_>>().join(",").into(),
        None,
    ));
    Ok(Aggregate {
        reads_body: reads(|i| matches!(i, Input::Body(_))),
        reads_query: reads(|i| matches!(i, Input::Query(_))),
        answer_keys: answer_keys(&calls, routes),
        http_method,
        template,
        variables,
        on_error: config.on_error,
        calls,
        labels,
    })
}

/// Each call's method as its implicit route (and that route's index), or `None` with the
/// problem noted: unknown, or streaming.
fn find_methods<'r>(
    config: &AggregateConfig,
    routes: &'r [Route],
    errors: &mut Vec<(String, String)>,
) -> Vec<Option<(usize, &'r Route)>> {
    let find = |method: &str| {
        let path = format!("/{method}");
        routes.iter().enumerate().find(|(_, r)| r.origin == RouteOrigin::Default && r.grpc_path.path() == path)
    };
    config
        .calls
        .iter()
        .map(|(name, call)| {
            let found = find(&call.method);
            let problem = match found {
                None => format!("no method {} in the descriptors", call.method),
                Some((_, r)) if r.method.is_client_streaming() || r.method.is_server_streaming() => {
                    format!("{} streams: composite routes call unary methods", call.method)
                }
                Some(found) => return Some(found),
            };
            errors.push((format!("calls.{name}.method"), problem));
            None
        })
        .collect()
}

/// Where call `name`'s result goes: whole under its name, or its `merge` fields at the top.
fn output_of(
    name: &str,
    merge: Option<&[String]>,
    output: &MessageDescriptor,
    json: &JsonOptions,
    errors: &mut Vec<(String, String)>,
) -> Output {
    let Some(fields) = merge else { return Output::Whole };
    let mut names = Vec::new();
    for field in fields {
        match find_field(output, field) {
            Some(f) => names.push(json.output_name(&f).to_owned()),
            None => {
                errors.push((format!("calls.{name}.merge"), format!("{} has no field {field:?}", output.full_name())))
            }
        }
    }
    Output::Fields(names)
}

/// The answer's top-level keys, each with the message under it (for `?fields=` and profiles).
fn answer_keys(calls: &[Call], routes: &[Route]) -> Vec<(String, Option<MessageDescriptor>)> {
    let mut keys = Vec::new();
    for call in calls {
        let output = routes[call.route].method.output();
        match &call.output {
            Output::Whole => keys.push((call.name.clone(), Some(output))),
            Output::Fields(fields) => keys.extend(fields.iter().map(|name| {
                let inner = find_field(&output, name).filter(|f| !f.is_map()).and_then(|f| structured_message(&f));
                (name.clone(), inner)
            })),
        }
    }
    keys
}

/// Two results may not land on one key of the answer.
fn check_answer_keys(calls: &[Call], on_error: OnError, errors: &mut Vec<(String, String)>) {
    let mut taken: Vec<(String, String)> = Vec::new();
    if on_error == OnError::Partial {
        taken.push(("errors".into(), "where failed calls are listed".into()));
    }
    for call in calls {
        let (keys, what): (Vec<String>, &str) = match &call.output {
            Output::Whole => (vec![call.name.clone()], "whole response"),
            Output::Fields(fields) => (fields.clone(), "merged field"),
        };
        for key in keys {
            match taken.iter().find(|(k, _)| *k == key) {
                Some((_, owner)) => errors
                    .push((format!("calls.{}.merge", call.name), format!("{key:?} in the answer is already {owner}"))),
                None => taken.push((key, format!("call {}'s {what}", call.name))),
            }
        }
    }
}

/// Binds templates to fields, collecting problems and the calls each request reads.
struct Binder<'a> {
    json: &'a JsonOptions,
    /// The calls' names and response types, in config order (a call's index).
    names: Vec<&'a str>,
    outputs: &'a [Option<MessageDescriptor>],
    variables: &'a [String],
    errors: &'a mut Vec<(String, String)>,
    needs: Vec<usize>,
}

impl Binder<'_> {
    fn object(&mut self, entries: &[(String, Template)], message: &MessageDescriptor, key: &str) -> Node {
        let mut fields = Vec::new();
        for (name, template) in entries {
            let key = format!("{key}.{name}");
            match find_field(message, name) {
                Some(field) => fields.push((field.name().to_owned(), self.field(template, &field, false, &key))),
                None => self.errors.push((key, format!("{} has no field {name:?}", message.full_name()))),
            }
        }
        Node::Object(fields)
    }

    /// The node filling `field` (one element of it when `element`).
    fn field(&mut self, template: &Template, field: &FieldDescriptor, element: bool, key: &str) -> Node {
        let list = field.is_list() && !element;
        let target = Target { coerce: coerce_for(field), repeated: list };
        match template {
            Template::Fixed(value) => Node::Fixed(value.clone()),
            Template::Single(source) => match self.input(source, key) {
                Some((input, shape)) => {
                    if let Err(reason) = fits(&shape, field, list) {
                        self.errors.push((key.to_owned(), format!("{source} {reason}")));
                    }
                    Node::Single { input, target }
                }
                None => Node::Fixed(Value::Null),
            },
            Template::Text(pieces) => {
                if field.is_map() || structured_message(field).is_some() {
                    self.errors.push((key.to_owned(), format!("text cannot fill {}", describe(field))));
                }
                let pieces = pieces.iter().filter_map(|piece| self.text_piece(piece, key)).collect();
                Node::Text { pieces, target }
            }
            Template::List(items) if list => Node::List(
                items.iter().enumerate().map(|(i, t)| self.field(t, field, true, &format!("{key}[{i}]"))).collect(),
            ),
            Template::List(_) => {
                self.errors.push((key.to_owned(), format!("a list cannot fill {}", describe(field))));
                Node::Fixed(Value::Null)
            }
            Template::Object(entries) if field.is_map() => {
                let value_field = match field.kind() {
                    Kind::Message(entry) => entry.map_entry_value_field(),
                    _ => field.clone(),
                };
                let entries = entries
                    .iter()
                    .map(|(name, t)| (name.clone(), self.field(t, &value_field, false, &format!("{key}.{name}"))))
                    .collect();
                Node::Object(entries)
            }
            Template::Object(entries) => match structured_message(field) {
                Some(message) if !list => self.object(entries, &message, key),
                _ => {
                    self.errors.push((key.to_owned(), format!("an object cannot fill {}", describe(field))));
                    Node::Fixed(Value::Null)
                }
            },
        }
    }

    fn text_piece(&mut self, piece: &Piece, key: &str) -> Option<TextPiece> {
        match piece {
            Piece::Text(text) => Some(TextPiece::Text(text.clone())),
            Piece::Value(source) => {
                let (input, shape) = self.input(source, key)?;
                let structured = match &shape {
                    Shape::Message(m) => Some(m.full_name().to_owned()),
                    Shape::Field(f) if f.is_list() || f.is_map() || structured_message(f).is_some() => {
                        Some(describe(f))
                    }
                    _ => None,
                };
                if let Some(what) = structured {
                    self.errors.push((key.to_owned(), format!("{source} is {what}: it has no text form")));
                }
                Some(TextPiece::Value(input))
            }
        }
    }

    /// Where `source` reads from, and what it gives; `None` when it names nothing. A path
    /// variable or call that does not exist is [`super::validate`]'s to report; a field that
    /// does not exist is reported here.
    fn input(&mut self, source: &Source, key: &str) -> Option<(Input, Shape)> {
        match source {
            Source::Path(name) => self.variables.iter().position(|v| v == name).map(|i| (Input::Path(i), Shape::Text)),
            Source::Query(name) => Some((Input::Query(name.clone()), Shape::Text)),
            Source::Body(path) => Some((Input::Body(path.clone()), Shape::Json)),
            Source::Claim(name) => Some((Input::Claim(name.clone()), Shape::Json)),
            Source::Call { call, path } => {
                let index = self.call_index(call)?;
                self.needs.push(index);
                match self.call_field(index, path) {
                    Ok(found) => Some(found),
                    Err(reason) => {
                        self.errors.push((key.to_owned(), format!("{source}: {reason}")));
                        None
                    }
                }
            }
        }
    }

    /// A field of call `index`'s response, followed from its output message down.
    fn call_field(&self, index: usize, path: &[String]) -> Result<(Input, Shape), String> {
        // A call whose method is unknown is reported on its own `method` key.
        let Some(mut message) = self.outputs.get(index).cloned().flatten() else {
            return Ok((Input::Call { call: index, path: Vec::new() }, Shape::Json));
        };
        let mut names = Vec::new();
        let mut shape = Shape::Message(message.clone());
        for (i, segment) in path.iter().enumerate() {
            if i > 0 {
                let Shape::Field(field) = &shape else { break };
                message = match structured_message(field) {
                    Some(inner) if !field.is_list() && !field.is_map() => inner,
                    _ => {
                        return Err(format!(
                            "{} is {}: there is no field inside it to read",
                            field.name(),
                            describe(field)
                        ));
                    }
                };
            }
            let field = find_field(&message, segment)
                .ok_or_else(|| format!("{} has no field {segment:?}", message.full_name()))?;
            names.push(self.json.output_name(&field).to_owned());
            shape = Shape::Field(field);
        }
        Ok((Input::Call { call: index, path: names }, shape))
    }

    fn call_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| *n == name)
    }
}

/// Whether `shape` can fill `field` (a whole list of it when `list`); why not, if not.
fn fits(shape: &Shape, field: &FieldDescriptor, list: bool) -> Result<(), String> {
    let target = structured_message(field).filter(|_| !field.is_map());
    match shape {
        Shape::Json => Ok(()),
        Shape::Text if target.is_some() || field.is_map() => {
            Err(format!("is text: it cannot fill {}", describe(field)))
        }
        Shape::Text => Ok(()),
        Shape::Message(message) => match target {
            Some(target) if target == *message && !list => Ok(()),
            _ => Err(format!("is a whole {} message: it cannot fill {}", message.full_name(), describe(field))),
        },
        Shape::Field(source) => {
            if source.is_map() != field.is_map() || (source.is_list() && !list) {
                return Err(format!("is {}: it cannot fill {}", describe(source), describe(field)));
            }
            match (structured_message(source), target) {
                (Some(a), Some(b)) if a == b => Ok(()),
                (None, None) => Ok(()),
                _ if field.is_map() => Ok(()),
                _ => Err(format!("is {}: it cannot fill {}", describe(source), describe(field))),
            }
        }
    }
}

/// The field's message type, unless its JSON form is not an object of its fields
/// (`google.protobuf.*`: timestamps, wrappers, Struct, ...).
fn structured_message(field: &FieldDescriptor) -> Option<MessageDescriptor> {
    match field.kind() {
        Kind::Message(message) if !message.full_name().starts_with("google.protobuf.") => Some(message),
        _ => None,
    }
}

fn coerce_for(field: &FieldDescriptor) -> Coerce {
    match field.kind() {
        _ if field.is_map() => Coerce::AsIs,
        Kind::String => Coerce::Text,
        Kind::Bool => Coerce::Bool,
        _ => Coerce::AsIs,
    }
}

/// "field example.users.v1.User.tags (a list of string)".
fn describe(field: &FieldDescriptor) -> String {
    let kind = match field.kind() {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        other => format!("{other:?}").to_lowercase(),
    };
    let shape = if field.is_map() {
        "a map".to_owned()
    } else if field.is_list() {
        format!("a list of {kind}")
    } else {
        kind
    };
    format!("field {} ({shape})", field.full_name())
}

/// A field by proto name or JSON name.
fn find_field(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message.get_field_by_name(name).or_else(|| message.get_field_by_json_name(name))
}

/// The literal parts of a request must decode as its message: a wrong type is a config error.
fn check_fixed(
    request: &Node,
    input: &MessageDescriptor,
    json: &JsonOptions,
    key: &str,
    errors: &mut Vec<(String, String)>,
) {
    let Some(skeleton) = request.fixed_part() else { return };
    if let Err(e) = DynamicMessage::deserialize_with_options(input.clone(), &skeleton, &json.deserialize) {
        errors.push((key.to_owned(), format!("does not decode as {}: {e}", input.full_name())));
    }
}

impl Node {
    /// The JSON of the literal parts alone, placeholders left out.
    fn fixed_part(&self) -> Option<Value> {
        match self {
            Node::Fixed(value) => Some(value.clone()),
            Node::Single { .. } | Node::Text { .. } => None,
            Node::List(items) => Some(Value::Array(items.iter().filter_map(Node::fixed_part).collect())),
            Node::Object(entries) => {
                Some(Value::Object(entries.iter().filter_map(|(k, n)| Some((k.clone(), n.fixed_part()?))).collect()))
            }
        }
    }

    /// Every input the node reads.
    pub fn inputs(&self) -> Vec<&Input> {
        match self {
            Node::Fixed(_) => Vec::new(),
            Node::Single { input, .. } => vec![input],
            Node::Text { pieces, .. } => pieces
                .iter()
                .filter_map(|p| match p {
                    TextPiece::Value(input) => Some(input),
                    TextPiece::Text(_) => None,
                })
                .collect(),
            Node::List(items) => items.iter().flat_map(Node::inputs).collect(),
            Node::Object(entries) => entries.iter().flat_map(|(_, n)| n.inputs()).collect(),
        }
    }
}
