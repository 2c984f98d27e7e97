//! A composite route's request templates as written in the config: JSON whose strings may hold
//! placeholders. Parsing needs no descriptors, so `check` reports a malformed placeholder even
//! when the descriptors do not load; [`super::plan`] then binds each value to its field.
//!
//! `"{path.id}"` (exactly one placeholder) keeps the JSON type of its source; `"shelves/{path.id}"`
//! is text. `{{` and `}}` are literal braces.

use serde_json::Value;

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `{path.X}`: the path variable X.
    Path(String),
    /// `{query.X}`: query parameter X (every value of it, for a repeated field).
    Query(String),
    /// `{body.a.b}`: a field of the JSON request body; `{body}`: the whole body.
    Body(Vec<String>),
    /// `{claim.X}`: a claim of the verified token.
    Claim(String),
    /// `{CALL.a.b}`: a field of another call's response; `{CALL}`: the whole response.
    Call {
        /// The call's name.
        call: String,
        /// Field names from its response message down.
        path: Vec<String>,
    },
}

/// A piece of a text value: literal text or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A placeholder, written out as text.
    Value(Source),
}

/// A request value as configured.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// JSON without placeholders, sent as it is.
    Fixed(Value),
    /// A string that is exactly one placeholder: the source's value, with its JSON type.
    Single(Source),
    /// A string of literal text and placeholders.
    Text(Vec<Piece>),
    /// A list of values.
    List(Vec<Template>),
    /// An object: a message's fields (or a map's entries).
    Object(Vec<(String, Template)>),
}

impl Template {
    /// Parses a configured value; every problem is reported as (key path below `value`, message).
    pub fn parse(value: &Value) -> Result<Template, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let template = parse_at(value, "", &mut errors);
        if errors.is_empty() { Ok(template) } else { Err(errors) }
    }

    /// Every placeholder in the value.
    pub fn sources(&self) -> Vec<&Source> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'t>(&'t self, out: &mut Vec<&'t Source>) {
        match self {
            Template::Fixed(_) => {}
            Template::Single(source) => out.push(source),
            Template::Text(pieces) => out.extend(pieces.iter().filter_map(|p| match p {
                Piece::Value(source) => Some(source),
                Piece::Text(_) => None,
            })),
            Template::List(items) => items.iter().for_each(|t| t.collect(out)),
            Template::Object(entries) => entries.iter().for_each(|(_, t)| t.collect(out)),
        }
    }
}

fn parse_at(value: &Value, key: &str, errors: &mut Vec<(String, String)>) -> Template {
    match value {
        Value::String(text) => match parse_text(text) {
            Ok(template) => template,
            Err(message) => {
                errors.push((key.to_owned(), message));
                Template::Fixed(Value::Null)
            }
        },
        Value::Array(items) => Template::List(
            items.iter().enumerate().map(|(i, item)| parse_at(item, &format!("{key}[{i}]"), errors)).collect(),
        ),
        Value::Object(entries) => Template::Object(
            entries
                .iter()
                .map(|(name, item)| {
                    let key = if key.is_empty() { name.clone() } else { format!("{key}.{name}") };
                    (name.clone(), parse_at(item, &key, errors))
                })
                .collect(),
        ),
        other => Template::Fixed(other.clone()),
    }
}

/// A string value: fixed text, one placeholder, or text with placeholders.
fn parse_text(text: &str) -> Result<Template, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        literal.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
            literal.push_str(&tail[..1]);
            rest = after;
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!("{text:?}: unmatched '}}' (write '}}}}' for a literal brace)"));
        }
        let Some(end) = tail.find('}') else {
            return Err(format!("{text:?}: unclosed '{{' (write '{{{{' for a literal brace)"));
        };
        let source = parse_source(&tail[1..end]).map_err(|reason| format!("{text:?}: {reason}"))?;
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal)));
        }
        pieces.push(Piece::Value(source));
        rest = &tail[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(match pieces.as_slice() {
        [] => Template::Fixed(Value::String(String::new())),
        [Piece::Text(text)] => Template::Fixed(Value::String(text.clone())),
        [Piece::Value(source)] => Template::Single(source.clone()),
        _ => Template::Text(pieces),
    })
}

/// What is between the braces: `path.id`, `query.page`, `body.a.b`, `claim.sub`, `user.id`.
fn parse_source(inner: &str) -> Result<Source, String> {
    let names: Vec<&str> = inner.split('.').map(str::trim).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(format!(
            "{{{inner}}} is not a placeholder: write {{path.X}}, {{query.X}}, {{body.X}}, {{claim.X}} or {{CALL.field}}"
        ));
    }
    let owned = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let one = |what: &str, rest: &[&str]| match rest {
        [name] => Ok((*name).to_owned()),
        [] => Err(format!("{{{what}}} names no {what} value: write {{{what}.NAME}}")),
        _ => Err(format!("{{{inner}}}: a {what} value has a single name")),
    };
    match names.as_slice() {
        ["path", rest @ ..] if !rest.is_empty() => Ok(Source::Path(rest.join("."))),
        ["path"] => Err("{path} names no path variable: write {path.NAME}".into()),
        ["query", rest @ ..] => one("query", rest).map(Source::Query),
        ["claim", rest @ ..] => one("claim", rest).map(Source::Claim),
        ["body", rest @ ..] => Ok(Source::Body(owned(rest))),
        [call, rest @ ..] => Ok(Source::Call { call: (*call).to_owned(), path: owned(rest) }),
        [] => Err("empty placeholder".into()),
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dotted = |head: &str, path: &[String]| {
            std::iter::once(head.to_owned()).chain(path.iter().cloned()).collect::<Vec<_>>().join(".")
        };
        match self {
            Source::Path(name) => write!(f, "{{path.{name}}}"),
            Source::Query(name) => write!(f, "{{query.{name}}}"),
            Source::Body(path) => write!(f, "{{{}}}", dotted("body", path)),
            Source::Claim(name) => write!(f, "{{claim.{name}}}"),
            Source::Call { call, path } => write!(f, "{{{}}}", dotted(call, path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call(call: &str, path: &[&str]) -> Source {
        Source::Call { call: call.into(), path: path.iter().map(|s| (*s).to_owned()).collect() }
    }

    #[test]
    fn a_lone_placeholder_keeps_its_type_and_text_around_one_makes_text() {
        assert_eq!(Template::parse(&json!("{path.id}")).unwrap(), Template::Single(Source::Path("id".into())));
        assert_eq!(
            Template::parse(&json!("{user.address.city}")).unwrap(),
            Template::Single(call("user", &["address", "city"]))
        );
        assert_eq!(Template::parse(&json!("{user}")).unwrap(), Template::Single(call("user", &[])));
        assert_eq!(Template::parse(&json!("{body}")).unwrap(), Template::Single(Source::Body(vec![])));
        assert_eq!(
            Template::parse(&json!("shelves/{path.shelf}/books/{query.book}")).unwrap(),
            Template::Text(vec![
                Piece::Text("shelves/".into()),
                Piece::Value(Source::Path("shelf".into())),
                Piece::Text("/books/".into()),
                Piece::Value(Source::Query("book".into())),
            ])
        );
        assert_eq!(Template::parse(&json!("{{literal}}")).unwrap(), Template::Fixed(json!("{literal}")));
        assert_eq!(Template::parse(&json!(7)).unwrap(), Template::Fixed(json!(7)));
    }

    #[test]
    fn objects_and_lists_hold_templates() {
        let parsed = Template::parse(&json!({"user_id": "{user.id}", "tags": ["a", "{claim.sub}"]})).unwrap();
        let sources: Vec<String> = parsed.sources().iter().map(ToString::to_string).collect();
        assert_eq!(sources, ["{user.id}", "{claim.sub}"]);
    }

    #[test]
    fn malformed_placeholders_are_reported_with_their_key() {
        let errors =
            Template::parse(&json!({"a": "{path.id", "b": {"c": "x}"}, "d": ["{query}"], "e": "{a..b}"})).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b.c", "d[0]", "e"]);
        assert!(errors[0].1.contains("unclosed '{'"), "{errors:?}");
        assert!(errors[1].1.contains("unmatched '}'"), "{errors:?}");
        assert!(errors[2].1.contains("{query} names no query value"), "{errors:?}");
        assert!(errors[3].1.contains("is not a placeholder"), "{errors:?}");
    }
}
