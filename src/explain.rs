//! `protogate routes --match 'GET /v1/users/7?view=FULL'`: what the gateway would do with a
//! request, without sending it — the route, the variable bindings and the request message.

use std::fmt::Write as _;

use http::{Method, Uri};
use prost_reflect::DynamicMessage;

use crate::aggregate::Aggregate;
use crate::config::OnError;
use crate::gateway::Gateway;
use crate::route::template::Segment;
use crate::route::{Lookup, Route, RouteMatch};
use crate::transcode;

/// What a request would become, as text, and whether it would reach an upstream.
#[derive(Debug)]
pub struct Explanation {
    /// A human-readable report.
    pub text: String,
    /// Whether the request matches a route and transcodes.
    pub ok: bool,
}

/// Explains `request` (`METHOD /path?query`) with an optional JSON `body`.
pub fn explain(gateway: &Gateway, request: &str, body: Option<&str>) -> Explanation {
    let mut text = format!("{request}\n");
    let Some((method, uri)) = parse_request_line(request) else {
        text.push_str("  not a request: give it as 'METHOD /path?query', e.g. 'GET /v1/users/7?view=FULL'\n");
        return Explanation { text, ok: false };
    };
    if let Lookup::Matched(matched) = gateway.aggregates().lookup(&method, uri.path()) {
        explain_aggregate(gateway, &matched, &mut text);
        return Explanation { text, ok: true };
    }
    let ok = match gateway.table().lookup(&method, uri.path()) {
        Lookup::Matched(matched) => {
            let route = matched.route;
            line(&mut text, "route", &format!("{} {}", route.http_method, route.template));
            line(&mut text, "calls", &describe_call(gateway, matched.index, route));
            for (binding, value) in route.bindings.iter().zip(&matched.values) {
                line(&mut text, "binds", &format!("{} = {value:?}", binding.field));
            }
            let body = body.unwrap_or("").as_bytes();
            let transcoder = gateway.transcoder();
            match transcoder.decode(matched.index, route, &matched.values, uri.query(), body) {
                Ok(wire) => {
                    // Shown as prost-reflect renders the exact bytes that would go upstream.
                    let json = DynamicMessage::decode(route.method.input(), wire)
                        .map_err(|e| e.to_string())
                        .and_then(|m| transcode::render(&m, None, transcoder.json_options()).map_err(|e| e.to_string()))
                        .map_or_else(|e| e, |b| String::from_utf8_lossy(&b).into_owned());
                    line(&mut text, "request", &json);
                    true
                }
                Err(e) => {
                    line(&mut text, "error", &format!("400: {e}"));
                    false
                }
            }
        }
        Lookup::MethodNotAllowed { allow } => {
            let allow: Vec<&str> = allow.iter().map(Method::as_str).collect();
            line(&mut text, "error", &format!("405: the path matches, but only for {}", allow.join(", ")));
            false
        }
        Lookup::InvalidPath { reason } => {
            line(&mut text, "error", &format!("400: {reason}"));
            false
        }
        Lookup::NotFound => {
            line(&mut text, "error", "404: no route matches");
            for route in nearest(gateway, &method, uri.path()) {
                line(
                    &mut text,
                    "nearest",
                    &format!("{} {}  ({})", route.http_method, route.template, route.method.full_name()),
                );
            }
            false
        }
    };
    Explanation { text, ok }
}

/// A composite route: its calls, where they go and what each waits for.
fn explain_aggregate(gateway: &Gateway, matched: &RouteMatch<'_, Aggregate>, text: &mut String) {
    let aggregate = matched.route;
    let on_error = match aggregate.on_error {
        OnError::Fail => "fail",
        OnError::Partial => "partial",
    };
    let route = format!("{} {}  (composite, on_error = {on_error})", aggregate.http_method, aggregate.template);
    line(text, "route", &route);
    for call in &aggregate.calls {
        let upstream =
            gateway.upstream_of(call.route).map_or("no upstream (502)".to_owned(), |u| format!("upstream {}", u.name));
        let mut description = format!("{}: {} on {upstream}", call.name, call.grpc_method);
        if !call.needs.is_empty() {
            let needs: Vec<&str> = call.needs.iter().map(|&i| aggregate.calls[i].name.as_str()).collect();
            let _ = write!(description, ", after {}", needs.join(", "));
        }
        line(text, "calls", &description);
    }
    for (variable, value) in aggregate.template.variables().iter().zip(&matched.values) {
        line(text, "binds", &format!("path.{} = {value:?}", variable.field_path.join(".")));
    }
}

fn parse_request_line(request: &str) -> Option<(Method, Uri)> {
    let (method, target) = request.trim().split_once(char::is_whitespace)?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let uri: Uri = target.trim().parse().ok()?;
    uri.path().starts_with('/').then_some((method, uri))
}

fn describe_call(gateway: &Gateway, index: usize, route: &Route) -> String {
    let upstream = gateway.upstream_of(index).map_or_else(
        || "no upstream configured".to_owned(),
        |u| format!("upstream {} ({})", u.name, u.endpoints.join(", ")),
    );
    format!("{} on {upstream}", route.method.full_name())
}

fn line(text: &mut String, label: &str, value: &str) {
    let _ = writeln!(text, "  {label:<8} {value}");
}

/// Up to three routes that come closest to the path: segment by segment, an equal literal
/// counts most, a variable next, a literal a typo away (edit distance ≤ 2) a little; the same
/// HTTP method breaks ties.
fn nearest<'g>(gateway: &'g Gateway, method: &Method, path: &str) -> Vec<&'g Route> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut scored: Vec<(usize, bool, usize, &Route)> = gateway
        .table()
        .routes()
        .iter()
        .enumerate()
        .map(|(i, route)| (similarity(route, &segments), route.http_method == *method, i, route))
        .filter(|(score, ..)| *score > 0)
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    scored.into_iter().take(3).map(|(.., route)| route).collect()
}

fn similarity(route: &Route, segments: &[&str]) -> usize {
    let template = route.template.segments();
    let aligned: usize = template
        .iter()
        .zip(segments)
        .map(|(t, s)| match t {
            Segment::Literal(text) if text == s => 4,
            Segment::Literal(text) if edit_distance(text, s) <= 2 => 2,
            Segment::Literal(_) => 0,
            Segment::Wildcard | Segment::DeepWildcard => 3,
        })
        .sum();
    aligned.saturating_sub(template.len().abs_diff(segments.len()))
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("users", "user"), 1);
        assert_eq!(edit_distance("orders", "odrers"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
