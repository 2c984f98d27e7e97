//! Backends-for-frontends: `[[profile]]` route groups under a path prefix (`/mobile`, `/web`),
//! each exposing chosen routes — method routes and composite routes — with its own response
//! shape (fields allowed, denied, renamed) and JSON options. `/mobile/v1/users/7` is
//! `/v1/users/7` answered the mobile way; a route the profile does not list is 404 under its
//! prefix. Policies apply by the full path, so `match = { path_prefix = "/mobile" }` gives a
//! profile its own auth and rate limits.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use crate::aggregate::Aggregates;
use crate::config::{ProfileConfig, ProfileRoute};
use crate::observability::RouteLabels;
use crate::route::{PathTemplate, Route};
use crate::transcode::fields::FieldMask;
use crate::transcode::{JsonOptions, TranscodeError, Transcoder};

/// Every profile.
#[derive(Debug, Default)]
pub struct Profiles {
    profiles: Vec<Profile>,
}

/// One profile, ready to serve.
#[derive(Debug)]
pub struct Profile {
    /// Its name.
    pub name: String,
    /// Its path prefix, without a trailing `/`.
    pub prefix: String,
    /// Its own JSON options, when it has them.
    transcoder: Option<Transcoder>,
    /// The method routes it exposes (by table index).
    routes: HashMap<usize, Exposed>,
    /// The composite routes it exposes (by index).
    aggregates: HashMap<usize, Exposed>,
}

/// A route a profile exposes: how its answer is shaped, and what its requests are logged and
/// counted under (the template with the prefix).
#[derive(Debug)]
pub struct Exposed {
    /// The profile's shape of the answer.
    pub shape: Shape,
    /// Its labels.
    pub labels: Arc<RouteLabels>,
}

/// How a profile reshapes a route's JSON answer.
#[derive(Debug, Default)]
pub struct Shape {
    /// Only these fields are kept.
    allow: Option<FieldMask>,
    /// These fields are removed.
    deny: Vec<FieldPath>,
    /// These fields are renamed (the last step of the path).
    rename: Vec<(FieldPath, String)>,
}

/// A path of fields into an answer; each step is a field's JSON name and proto name (the
/// answer uses one or the other), and a list is walked element by element.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldPath(Vec<Step>);

/// A field's JSON name and proto name.
type Step = (String, String);

/// What is done to the object holding a path's last step.
type Edit<'e> = dyn FnMut(&mut Map<String, Value>, &Step) + 'e;

/// How one request is answered: which transcoder renders it, and how it is then reshaped.
#[derive(Debug, Clone, Copy)]
pub struct View<'g> {
    /// Renders (and decodes) the messages.
    pub transcoder: &'g Transcoder,
    /// The profile's shape for the route, under a profile.
    pub shape: Option<&'g Shape>,
    /// The route's labels (its template, under a profile with the prefix): for the access log
    /// and metrics, and part of a cache key.
    pub labels: &'g Arc<RouteLabels>,
}

impl Profiles {
    /// Every profile bound to the routes; every problem keyed `profile[i]...`.
    pub fn build(
        configs: &[ProfileConfig],
        routes: &[Route],
        aggregates: &Aggregates,
    ) -> Result<Profiles, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut profiles = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            let mut problems = Vec::new();
            let profile = Profile::build(config, routes, aggregates, &mut problems);
            if profiles.iter().any(|p: &Profile| p.prefix == profile.prefix) {
                problems.push(("prefix".into(), format!("{:?} is another profile's prefix", config.prefix)));
            }
            errors.extend(problems.into_iter().map(|(k, m)| (format!("profile[{i}].{k}"), m)));
            profiles.push(profile);
        }
        if errors.is_empty() { Ok(Profiles { profiles }) } else { Err(errors) }
    }

    /// The profile whose prefix the path is under, and the path below it.
    pub fn find<'p>(&self, path: &'p str) -> Option<(&Profile, &'p str)> {
        self.profiles.iter().find_map(|profile| {
            let rest = path.strip_prefix(profile.prefix.as_str())?;
            rest.starts_with('/').then_some((profile, rest))
        })
    }

    /// Every profile.
    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.iter()
    }

    /// Gives each exposed method route the upstream of its route (`route_labels`, by table
    /// index), known once the upstreams are.
    pub fn name_upstreams(&mut self, route_labels: &[Arc<RouteLabels>]) {
        for profile in &mut self.profiles {
            for (index, exposed) in &mut profile.routes {
                if let Some(own) = route_labels.get(*index) {
                    let labels = &exposed.labels;
                    let (route, grpc_method) = (labels.route.clone(), labels.grpc_method.clone());
                    exposed.labels = Arc::new(RouteLabels::new(route, grpc_method, own.upstream.clone()));
                }
            }
        }
    }
}

impl Profile {
    fn build(
        config: &ProfileConfig,
        routes: &[Route],
        aggregates: &Aggregates,
        errors: &mut Vec<(String, String)>,
    ) -> Profile {
        if config.name.trim().is_empty() {
            errors.push(("name".into(), "must not be empty".into()));
        }
        let prefix = config.prefix.trim_end_matches('/').to_owned();
        if !prefix.starts_with('/') || prefix.len() < 2 || prefix.contains(['{', '}', '*', ':', '?', '#']) {
            errors.push((
                "prefix".into(),
                format!("{:?} is not a literal path prefix such as \"/mobile\"", config.prefix),
            ));
        }
        let json = config.json.as_ref().map(JsonOptions::from_config);
        let mut profile = Profile {
            name: config.name.clone(),
            prefix,
            transcoder: json.as_ref().map(|j| Transcoder::build(routes, j.clone())),
            routes: HashMap::new(),
            aggregates: HashMap::new(),
        };
        for (j, exposed) in config.routes.iter().enumerate() {
            let problems = profile.expose(exposed, routes, aggregates);
            errors.extend(problems.into_iter().map(|(k, m)| (format!("routes[{j}].{k}"), m)));
        }
        profile
    }

    /// Adds the route `exposed` names, with its shape; the problems, by key below it.
    fn expose(&mut self, exposed: &ProfileRoute, routes: &[Route], aggregates: &Aggregates) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let Some((method, template)) = parse_route(&exposed.route) else {
            problems.push(("route".into(), format!("{:?} is not \"METHOD /path/template\"", exposed.route)));
            return problems;
        };
        let found_aggregate =
            aggregates.routes().iter().position(|a| a.http_method == method && a.template == template);
        let found_route = routes.iter().position(|r| r.http_method == method && r.template == template);
        let labels = |grpc_method: Arc<str>| {
            let route = format!("{}{template}", self.prefix).into();
            Arc::new(RouteLabels::new(route, grpc_method, None))
        };
        match (found_aggregate, found_route) {
            (Some(index), _) => {
                let aggregate = &aggregates.routes()[index];
                let shape = Shape::build(exposed, &Answer::Composite(&aggregate.answer_keys), &mut problems);
                let labels = labels(aggregate.labels.grpc_method.clone());
                self.aggregates.insert(index, Exposed { shape, labels });
            }
            (None, Some(index)) => {
                let route = &routes[index];
                if route.method.is_client_streaming() || route.method.is_server_streaming() {
                    let method = route.method.full_name();
                    problems.push((
                        "route".into(),
                        format!("{method} streams: profiles expose unary and composite routes"),
                    ));
                }
                let shape = Shape::build(exposed, &Answer::Message(route.method.output()), &mut problems);
                let labels = labels(route.grpc_path.path().trim_start_matches('/').into());
                self.routes.insert(index, Exposed { shape, labels });
            }
            (None, None) => problems.push(("route".into(), format!("no route is {method} {template}"))),
        }
        problems
    }

    /// Method route `index`, if the profile exposes it.
    pub fn route(&self, index: usize) -> Option<&Exposed> {
        self.routes.get(&index)
    }

    /// Whether it renders with `[json]` options of its own.
    pub fn has_own_json_options(&self) -> bool {
        self.transcoder.is_some()
    }

    /// Composite route `index`, if the profile exposes it.
    pub fn aggregate(&self, index: usize) -> Option<&Exposed> {
        self.aggregates.get(&index)
    }

    /// The transcoder with the profile's JSON options, or `default`.
    pub fn transcoder<'t>(&'t self, default: &'t Transcoder) -> &'t Transcoder {
        self.transcoder.as_ref().unwrap_or(default)
    }

    /// Every route it exposes, as `METHOD /template` under its prefix.
    pub fn exposed(&self, routes: &[Route], aggregates: &Aggregates) -> Vec<String> {
        let mut out: Vec<String> = self
            .aggregates
            .keys()
            .filter_map(|&i| aggregates.routes().get(i))
            .map(|a| format!("{} {}{}", a.http_method, self.prefix, a.template))
            .chain(
                self.routes
                    .keys()
                    .filter_map(|&i| routes.get(i))
                    .map(|r| format!("{} {}{}", r.http_method, self.prefix, r.template)),
            )
            .collect();
        out.sort();
        out
    }
}

fn parse_route(text: &str) -> Option<(Method, PathTemplate)> {
    let (method, path) = text.trim().split_once(' ')?;
    Some((Method::from_bytes(method.as_bytes()).ok()?, PathTemplate::parse(path.trim()).ok()?))
}

/// What a route answers, for checking a shape's paths.
enum Answer<'a> {
    /// One message.
    Message(MessageDescriptor),
    /// A composite answer: its keys, each with the message under it.
    Composite(&'a [(String, Option<MessageDescriptor>)]),
}

impl Shape {
    fn build(config: &ProfileRoute, answer: &Answer<'_>, errors: &mut Vec<(String, String)>) -> Shape {
        let allow = match (&config.allow[..], answer) {
            ([], _) => None,
            (paths, Answer::Message(message)) => match FieldMask::parse(&paths.join(","), message) {
                Ok(mask) => Some(mask),
                Err(e) => {
                    errors.push(("allow".into(), reason(&e)));
                    None
                }
            },
            (paths, Answer::Composite(keys)) => {
                match crate::transcode::fields::composite_mask(&paths.join(","), keys, &[]) {
                    Ok(mask) => Some(mask),
                    Err(e) => {
                        errors.push(("allow".into(), reason(&e)));
                        None
                    }
                }
            }
        };
        let mut resolve = |what: &str, path: &str| match resolve(answer, path) {
            Ok(path) => Some(path),
            Err(message) => {
                errors.push((what.to_owned(), format!("{path:?}: {message}")));
                None
            }
        };
        let deny = config.deny.iter().filter_map(|path| resolve("deny", path)).collect();
        let rename = config
            .rename
            .iter()
            .filter_map(|(path, to)| Some((resolve("rename", path)?, to.clone())))
            .collect::<Vec<_>>();
        for (path, to) in &config.rename {
            if to.trim().is_empty() {
                errors.push(("rename".into(), format!("{path:?}: the new name is empty")));
            }
        }
        Shape { allow, deny, rename }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty() && self.rename.is_empty()
    }

    /// Reshapes an answer: allowed fields kept, denied ones removed, renames made.
    pub fn apply(&self, value: &mut Value) {
        if let Some(allow) = &self.allow {
            allow.trim_value(value);
        }
        for path in &self.deny {
            edit(value, &path.0, &mut |object, (json, proto)| {
                object.remove(json.as_str());
                object.remove(proto.as_str());
            });
        }
        for (path, to) in &self.rename {
            edit(value, &path.0, &mut |object, (json, proto)| {
                // Rebuilt in order: the renamed field keeps its place.
                *object = std::mem::take(object)
                    .into_iter()
                    .map(|(key, value)| if key == *json || key == *proto { (to.clone(), value) } else { (key, value) })
                    .collect();
            });
        }
    }
}

impl View<'_> {
    /// A rendered answer trimmed to the client's `?fields=` (`mask`), then reshaped as the
    /// profile says: parsed once, only when either applies.
    pub fn finish(&self, mask: Option<&FieldMask>, json: Vec<u8>) -> Result<Vec<u8>, TranscodeError> {
        View::reshape(mask, self.shape, json)
    }

    fn reshape(mask: Option<&FieldMask>, shape: Option<&Shape>, json: Vec<u8>) -> Result<Vec<u8>, TranscodeError> {
        if mask.is_none() && shape.is_none() {
            return Ok(json);
        }
        let failed = |e: serde_json::Error| TranscodeError::Render { reason: format!("shaping the response: {e}") };
        let mut value: Value = serde_json::from_slice(&json).map_err(failed)?;
        if let Some(mask) = mask {
            mask.trim_value(&mut value);
        }
        if let Some(shape) = shape {
            shape.apply(&mut value);
        }
        serde_json::to_vec(&value).map_err(failed)
    }
}

fn reason(error: &TranscodeError) -> String {
    match error {
        TranscodeError::InvalidQueryParameter { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Calls `last` with the object holding the path's last step (each of them, through lists).
fn edit(value: &mut Value, path: &[Step], last: &mut Edit<'_>) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| edit(item, path, last)),
        Value::Object(object) => match path {
            [] => {}
            [step] => last(object, step),
            [(json, proto), rest @ ..] => {
                let inner = match object.get_mut(json.as_str()) {
                    Some(inner) => Some(inner),
                    None => object.get_mut(proto.as_str()),
                };
                if let Some(inner) = inner {
                    edit(inner, rest, last);
                }
            }
        },
        _ => {}
    }
}

/// `a.b` resolved into the answer: for a composite answer, the first step is one of its keys.
fn resolve(answer: &Answer<'_>, path: &str) -> Result<FieldPath, String> {
    let steps: Vec<&str> = path.split('.').map(str::trim).collect();
    if steps.iter().any(|s| s.is_empty()) {
        return Err("not a field path such as \"address.city\"".into());
    }
    let (mut out, mut message, rest) = match answer {
        Answer::Message(message) => (Vec::new(), Some(message.clone()), &steps[..]),
        Answer::Composite(keys) => {
            let (key, message) = keys
                .iter()
                .find(|(key, _)| key == steps[0])
                .ok_or_else(|| format!("the answer has no key {:?}", steps[0]))?;
            (vec![(key.clone(), key.clone())], message.clone(), &steps[1..])
        }
    };
    for step in rest {
        let Some(current) = message else {
            return Err(format!("{:?} has no fields inside it", out.last().map_or("", |(j, _): &(String, String)| j)));
        };
        let field = current
            .get_field_by_name(step)
            .or_else(|| current.get_field_by_json_name(step))
            .ok_or_else(|| format!("{} has no field {step:?}", current.full_name()))?;
        message = inner_message(&field);
        out.push((field.json_name().to_owned(), field.name().to_owned()));
    }
    Ok(FieldPath(out))
}

fn inner_message(field: &FieldDescriptor) -> Option<MessageDescriptor> {
    match field.kind() {
        Kind::Message(m) if !field.is_map() && !m.full_name().starts_with("google.protobuf.") => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(steps: &[(&str, &str)]) -> FieldPath {
        FieldPath(steps.iter().map(|(j, p)| ((*j).to_owned(), (*p).to_owned())).collect())
    }

    #[test]
    fn deny_and_rename_reach_into_lists_by_either_name() {
        let shape = Shape {
            allow: None,
            deny: vec![path(&[("orders", "orders"), ("items", "items")]), path(&[("email", "email")])],
            rename: vec![
                (path(&[("displayName", "display_name")]), "name".into()),
                (path(&[("orders", "orders"), ("totalMicros", "total_micros")]), "total".into()),
            ],
        };
        let json =
            br#"{"display_name":"Ada","email":"a@x","orders":[{"id":"1","items":[1],"total_micros":"5"},{"id":"2"}]}"#;
        let shaped: Value = serde_json::from_slice(&View::reshape(None, Some(&shape), json.to_vec()).unwrap()).unwrap();
        assert_eq!(shaped, serde_json::json!({"name": "Ada", "orders": [{"id": "1", "total": "5"}, {"id": "2"}]}));
    }

    #[test]
    fn an_answer_that_is_not_json_is_an_error_not_a_panic() {
        assert!(View::reshape(None, Some(&Shape::default()), b"not json".to_vec()).is_err());
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let profile = |prefix: &str| Profile {
            name: "p".into(),
            prefix: prefix.into(),
            transcoder: None,
            routes: HashMap::new(),
            aggregates: HashMap::new(),
        };
        let profiles = Profiles { profiles: vec![profile("/m"), profile("/mobile")] };
        let found = |path| profiles.find(path).map(|(p, rest)| (p.prefix.as_str(), rest));
        assert_eq!(found("/mobile/v1/users/1"), Some(("/mobile", "/v1/users/1")));
        assert_eq!(found("/m/v1"), Some(("/m", "/v1")));
        assert!(profiles.find("/mobile").is_none(), "the prefix alone names no route");
        assert!(profiles.find("/mob/v1").is_none());
    }
}
