//! Composite routes (`[[aggregate]]`): one HTTP request answered by several unary gRPC calls,
//! their results under their names (or chosen fields merged at the top level) in one JSON
//! object.
//!
//! Each call builds its request from a [`template`]: path variables, query parameters, the JSON
//! body, verified claims and fields of other calls' responses. A call that reads another's
//! response waits for it; the rest run at once ([`crate::doors::composite`]). The calls form a DAG, checked when
//! the config is read ([`validate`]: names, placeholders, cycles) and when the gateway is built
//! ([`plan`]: methods, fields and types against the descriptors).

pub mod plan;
pub mod template;

use http::Method;

use crate::config::AggregateConfig;
use crate::route::PathTemplate;
use template::{Source, Template};

pub use plan::{Aggregate, Aggregates};

/// Names a call may not have: they start the other placeholders, or are the answer's `errors`.
const RESERVED: [&str; 5] = ["path", "query", "body", "claim", "errors"];

/// Splits `GET /bff/users/{id}` into its method and template.
pub fn parse_route(route: &str) -> Result<(Method, PathTemplate), String> {
    let Some((method, path)) = route.trim().split_once(' ') else {
        return Err(format!("{route:?} is not \"METHOD /path/template\""));
    };
    let method = match method {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => {
            Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?
        }
        other => return Err(format!("{other:?} is not GET, POST, PUT, PATCH or DELETE")),
    };
    let template = PathTemplate::parse(path.trim()).map_err(|e| e.to_string())?;
    Ok((method, template))
}

/// How errors name a composite route: by its route as the config writes it
/// (`aggregate["GET /bff/users/{id}"]`), not by its place in the list.
pub fn key(config: &crate::config::AggregateConfig) -> String {
    format!("aggregate[{:?}]", config.route)
}

/// Every problem in a composite route that needs no descriptors to see, as (key, message).
pub fn validate(config: &AggregateConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let route = match parse_route(&config.route) {
        Ok(route) => Some(route),
        Err(message) => {
            errors.push(("route".to_owned(), message));
            None
        }
    };
    if config.calls.is_empty() {
        errors.push(("calls".into(), "a composite route needs at least one call".into()));
    }
    let variables: Vec<String> =
        route.as_ref().map(|(_, t)| t.variables().iter().map(|v| v.field_path.join(".")).collect()).unwrap_or_default();
    let has_body = route.as_ref().is_some_and(|(method, _)| !matches!(*method, Method::GET | Method::DELETE));
    let mut needs: Vec<Vec<usize>> = Vec::new();
    for (name, call) in &config.calls {
        let key = |k: &str| format!("calls.{name}{k}");
        if !is_identifier(name) {
            errors.push((key(""), "a call name is letters, digits and '_', not starting with a digit".into()));
        } else if RESERVED.contains(&name.as_str()) {
            errors.push((key(""), format!("{name:?} is reserved: name the call otherwise")));
        }
        if !is_method_name(&call.method) {
            errors.push((key(".method"), format!("{:?} is not \"package.Service/Method\"", call.method)));
        }
        if call.timeout.is_some_and(|t| t.is_zero()) {
            errors.push((key(".timeout"), "must be longer than 0".into()));
        }
        let template = match Template::parse(&serde_json::Value::Object(call.request.clone())) {
            Ok(template) => template,
            Err(problems) => {
                errors.extend(problems.into_iter().map(|(k, m)| (key(&format!(".request.{k}")), m)));
                needs.push(Vec::new());
                continue;
            }
        };
        let mut mine = Vec::new();
        for source in template.sources() {
            let problem = match source {
                Source::Path(variable) if !variables.contains(variable) => Some(format!(
                    "{source}: the route has no path variable {variable:?} (it has {})",
                    list_or_none(&variables)
                )),
                Source::Body(_) if route.is_some() && !has_body => {
                    Some(format!("{source}: a {} request has no body", route.as_ref().map_or("", |(m, _)| m.as_str())))
                }
                Source::Call { call: other, .. } if other == name => {
                    Some(format!("{source}: a call cannot wait for itself"))
                }
                Source::Call { call: other, .. } => match config.calls.get_index_of(other) {
                    Some(index) => {
                        mine.push(index);
                        None
                    }
                    None => Some(format!(
                        "{source}: no call is named {other:?} (calls: {}; other sources: path, query, body, claim)",
                        config.calls.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                    )),
                },
                _ => None,
            };
            if let Some(message) = problem {
                errors.push((key(".request"), message));
            }
        }
        mine.sort_unstable();
        mine.dedup();
        needs.push(mine);
        if let Some(fields) = &call.merge {
            for (i, field) in fields.iter().enumerate() {
                if field.trim().is_empty() {
                    errors.push((key(&format!(".merge[{i}]")), "must not be empty".into()));
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(&needs) {
        let names: Vec<&str> =
            cycle.iter().filter_map(|&i| config.calls.get_index(i).map(|(n, _)| n.as_str())).collect();
        errors.push((
            format!("calls.{}", names[0]),
            format!("the calls wait for each other in a cycle: {}", names.join(" → ")),
        ));
    }
    errors
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `pkg.Service/Method`.
fn is_method_name(name: &str) -> bool {
    name.split_once('/').is_some_and(|(service, method)| {
        !service.is_empty() && service.split('.').all(is_identifier) && is_identifier(method)
    })
}

/// A cycle in the "waits for" graph, as call indices from one call back to it, if there is one.
fn find_cycle(needs: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(node: usize, needs: &[Vec<usize>], marks: &mut [Mark], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        marks[node] = Mark::OnPath;
        path.push(node);
        for &next in needs.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::OnPath) => {
                    let start = path.iter().position(|&n| n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Some(Mark::New) => {
                    if let Some(cycle) = visit(next, needs, marks, path) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        marks[node] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; needs.len()];
    (0..needs.len())
        .find_map(|node| if marks[node] == Mark::New { visit(node, needs, &mut marks, &mut Vec::new()) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn problems(toml: &str) -> Vec<(String, String)> {
        let config = Config::from_toml(toml).unwrap();
        validate(&config.aggregate[0])
    }

    #[test]
    fn the_contract_example_is_valid() {
        let toml = r#"
[[aggregate]]
route = "GET /bff/users/{id}/dashboard"
on_error = "fail"
calls.user   = { method = "example.users.v1.UserService/GetUser",     request = { id = "{path.id}" } }
calls.orders = { method = "example.orders.v1.OrderService/ListOrders", request = { user_id = "{user.id}" } }
"#;
        assert_eq!(problems(toml), Vec::<(String, String)>::new());
    }

    #[test]
    fn cycles_are_named_call_by_call() {
        let toml = r#"
[[aggregate]]
route = "GET /x/{id}"
calls.a = { method = "p.S/A", request = { id = "{c.id}" } }
calls.b = { method = "p.S/B", request = { id = "{a.id}" } }
calls.c = { method = "p.S/C", request = { id = "{b.id}" } }
calls.d = { method = "p.S/D", request = { id = "{path.id}" } }
"#;
        assert_eq!(
            problems(toml),
            [("calls.a".to_owned(), "the calls wait for each other in a cycle: a → c → b → a".to_owned())]
        );
    }

    #[test]
    fn unknown_sources_and_bad_names_are_precise() {
        let toml = r#"
[[aggregate]]
route = "GET /x/{id}"
calls.a = { method = "p.S/A", request = { id = "{path.name}", other = "{nobody.id}", me = "{a.id}", b = "{body.x}" } }
calls.body = { method = "nope", timeout = "0s" }
"#;
        let found = problems(toml);
        let expected = [
            ("calls.a.request", "{path.name}: the route has no path variable \"name\" (it has id)"),
            (
                "calls.a.request",
                "{nobody.id}: no call is named \"nobody\" (calls: a, body; other sources: path, query, body, claim)",
            ),
            ("calls.a.request", "{a.id}: a call cannot wait for itself"),
            ("calls.a.request", "{body.x}: a GET request has no body"),
            ("calls.body", "\"body\" is reserved: name the call otherwise"),
            ("calls.body.method", "\"nope\" is not \"package.Service/Method\""),
            ("calls.body.timeout", "must be longer than 0"),
        ];
        let found: Vec<(&str, &str)> = found.iter().map(|(k, m)| (k.as_str(), m.as_str())).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn routes_must_parse() {
        assert!(parse_route("GET /a/{id}").is_ok());
        assert!(parse_route("/a").unwrap_err().contains("METHOD /path/template"));
        assert!(parse_route("TRACE /a").unwrap_err().contains("not GET"));
        assert!(parse_route("GET a{").is_err());
    }
}
