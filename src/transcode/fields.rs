//! Partial responses: `?fields=name,orders.id` keeps only those fields of the response JSON,
//! for any route (unary calls, each message of a server stream, a client stream's answer).
//!
//! The value is a FieldMask: comma-separated paths of field names, `.` going into a message
//! field (into each element of a repeated one). Names may be JSON or proto names. Every path is
//! checked against the response message before the upstream is called, so a typo is a 400
//! naming it, not an empty answer.
//!
//! The parameter is `fields` unless the request message has a top-level field of that name
//! (then it sets that field, as any query parameter does); `$fields` always asks for a
//! partial response.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use super::TranscodeError;

/// The parameter, when the request message has no field of that name.
const PARAMETER: &str = "fields";
/// The parameter whatever the request message has.
const SYSTEM_PARAMETER: &str = "$fields";
/// The deepest path accepted: a recursive message would otherwise let a long query nest the
/// mask (and the recursion that applies it) without bound.
const MAX_DEPTH: usize = 32;

/// The fields a request keeps, as a tree of JSON keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMask {
    root: Node,
}

/// One level of the mask: the fields kept at it, each with what is kept inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    fields: Vec<Kept>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    /// The field's JSON name and proto name: the output uses one or the other.
    json_name: String,
    name: String,
    /// All of it (a path ended at it), or only what `inner` lists.
    whole: bool,
    inner: Node,
}

/// Whether query parameter `name` asks for a partial response rather than setting a field of
/// the request message `input`.
pub fn is_parameter(name: &str, input: &MessageDescriptor) -> bool {
    name == SYSTEM_PARAMETER
        || (name == PARAMETER
            && input.get_field_by_name(PARAMETER).is_none()
            && input.get_field_by_json_name(PARAMETER).is_none())
}

/// The mask the query asks for, checked against `output` (the message the response renders),
/// if it asks for one. `raw` responses (`google.api.HttpBody`) are not JSON and cannot be
/// trimmed.
pub fn requested(
    query: Option<&str>,
    input: &MessageDescriptor,
    output: Option<&MessageDescriptor>,
) -> Result<Option<FieldMask>, TranscodeError> {
    let Some(paths) = asked(query, |name| is_parameter(name, input))? else { return Ok(None) };
    let Some(output) = output else {
        return Err(invalid("this route's response is not a JSON object, so it cannot be trimmed"));
    };
    FieldMask::parse(&paths, output).map(Some)
}

/// As [`requested`] for a composite route's answer, whose top-level keys are `keys`: each with
/// the message under it, or `None` for a value with no fields to select inside. `fields` is
/// always the gateway's parameter there (the answer is no one message). Keys in `always`
/// (the `errors` of a partial answer) are kept whatever the mask says.
pub fn requested_composite(
    query: Option<&str>,
    keys: &[(String, Option<MessageDescriptor>)],
    always: &[&str],
) -> Result<Option<FieldMask>, TranscodeError> {
    let Some(paths) = asked(query, |name| name == PARAMETER || name == SYSTEM_PARAMETER)? else { return Ok(None) };
    composite_mask(&paths, keys, always).map(Some)
}

/// The mask `paths` (comma-separated) make over a composite answer with these `keys`; `always`
/// are kept whatever the paths say.
pub fn composite_mask(
    paths: &str,
    keys: &[(String, Option<MessageDescriptor>)],
    always: &[&str],
) -> Result<FieldMask, TranscodeError> {
    let mut root = Node::default();
    for path in paths.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if path.split('.').count() > MAX_DEPTH {
            return Err(invalid(&format!("a path may name at most {MAX_DEPTH} nested fields")));
        }
        let (head, rest) = path.split_once('.').map_or((path, None), |(head, rest)| (head, Some(rest)));
        let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let (_, message) = keys
            .iter()
            .find(|(key, _)| key == head)
            .ok_or_else(|| invalid(&format!("the answer has no key {head:?} (it has {})", names.join(", "))))?;
        root.add_key(head, rest, message.as_ref())?;
    }
    if root.fields.is_empty() {
        return Err(invalid("give at least one field path, e.g. fields=name,items.id"));
    }
    for key in always {
        root.add_key(key, None, None)?;
    }
    Ok(FieldMask { root })
}

/// The comma-joined value of every query parameter `is_it` accepts, if there is one.
fn asked(query: Option<&str>, is_it: impl Fn(&str) -> bool) -> Result<Option<String>, TranscodeError> {
    let Some(query) = query else { return Ok(None) };
    let mut paths: Option<String> = None;
    for pair in query.split('&') {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        // Most queries never name it: decode only what could (the name may be percent-encoded).
        if !raw_name.contains("fields") && !raw_name.contains('%') {
            continue;
        }
        let name = decode(raw_name)?;
        if !is_it(&name) {
            continue;
        }
        let value = decode(raw_value)?;
        match &mut paths {
            // `fields=a&fields=b` is `fields=a,b`.
            Some(paths) => {
                paths.push(',');
                paths.push_str(&value);
            }
            None => paths = Some(value),
        }
    }
    Ok(paths)
}

impl FieldMask {
    /// Parses `a,b.c` against `message`.
    pub fn parse(paths: &str, message: &MessageDescriptor) -> Result<FieldMask, TranscodeError> {
        let mut root = Node::default();
        for path in paths.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if path.split('.').count() > MAX_DEPTH {
                return Err(invalid(&format!("a path may name at most {MAX_DEPTH} nested fields")));
            }
            root.add(path, message)?;
        }
        if root.fields.is_empty() {
            return Err(invalid("give at least one field path, e.g. fields=name,items.id"));
        }
        Ok(FieldMask { root })
    }

    /// Keeps only the masked fields of a parsed answer.
    pub fn trim_value(&self, value: &mut Value) {
        self.root.trim(value);
    }

    /// The response JSON with only the masked fields.
    pub fn apply(&self, json: &[u8]) -> Result<Vec<u8>, TranscodeError> {
        let mut value: Value = serde_json::from_slice(json)
            .map_err(|e| TranscodeError::Render { reason: format!("trimming the response to fields=: {e}") })?;
        self.root.trim(&mut value);
        serde_json::to_vec(&value)
            .map_err(|e| TranscodeError::Render { reason: format!("trimming the response to fields=: {e}") })
    }
}

impl Node {
    fn add(&mut self, path: &str, message: &MessageDescriptor) -> Result<(), TranscodeError> {
        let (head, rest) = match path.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (path, None),
        };
        let within = if rest.is_some() { format!(" (in {path:?})") } else { String::new() };
        let field = message
            .get_field_by_json_name(head)
            .or_else(|| message.get_field_by_name(head))
            .ok_or_else(|| invalid(&format!("{} has no field {head:?}{within}", message.full_name())))?;
        let index = match self.fields.iter().position(|k| k.name == field.name()) {
            Some(index) => index,
            None => {
                let (json_name, name) = (field.json_name().to_owned(), field.name().to_owned());
                self.fields.push(Kept { json_name, name, whole: false, inner: Node::default() });
                self.fields.len() - 1
            }
        };
        let kept = &mut self.fields[index];
        let Some(rest) = rest else {
            // The whole field, whatever was asked inside it before.
            (kept.whole, kept.inner) = (true, Node::default());
            return Ok(());
        };
        let inner = nested(&field)
            .ok_or_else(|| invalid(&format!("field {} has no sub-fields to select (in {path:?})", field.name())))?;
        if kept.whole {
            // `a` and `a.b` together: `a` keeps all of it already.
            return Ok(());
        }
        kept.inner.add(rest, &inner)
    }

    /// A top-level key of a composite answer, and what is kept inside it.
    fn add_key(
        &mut self,
        key: &str,
        rest: Option<&str>,
        message: Option<&MessageDescriptor>,
    ) -> Result<(), TranscodeError> {
        let index = match self.fields.iter().position(|k| k.name == key) {
            Some(index) => index,
            None => {
                self.fields.push(Kept {
                    json_name: key.to_owned(),
                    name: key.to_owned(),
                    whole: false,
                    inner: Node::default(),
                });
                self.fields.len() - 1
            }
        };
        let kept = &mut self.fields[index];
        match (rest, message) {
            (None, _) => (kept.whole, kept.inner) = (true, Node::default()),
            (Some(_), _) if kept.whole => {}
            (Some(rest), Some(message)) => kept.inner.add(rest, message)?,
            (Some(rest), None) => {
                return Err(invalid(&format!("{key} has no sub-fields to select (in \"{key}.{rest}\")")));
            }
        }
        Ok(())
    }

    /// Keeps only the listed keys of an object (of each object of an array).
    fn trim(&self, value: &mut Value) {
        match value {
            Value::Object(object) => {
                let taken = std::mem::take(object);
                *object = self.keep(taken);
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.trim(item)),
            _ => {}
        }
    }

    fn keep(&self, object: Map<String, Value>) -> Map<String, Value> {
        let mut kept = Map::new();
        for (key, mut value) in object {
            let Some(field) = self.fields.iter().find(|k| k.json_name == key || k.name == key) else { continue };
            if !field.whole {
                field.inner.trim(&mut value);
            }
            kept.insert(key, value);
        }
        kept
    }
}

/// The message a path may go into: a message field's type (of each element, when repeated),
/// but not a map's or a well-known type's that renders as a JSON string or number.
fn nested(field: &FieldDescriptor) -> Option<MessageDescriptor> {
    if field.is_map() {
        return None;
    }
    match field.kind() {
        Kind::Message(message) if !message.full_name().starts_with("google.protobuf.") => Some(message),
        _ => None,
    }
}

fn decode(text: &str) -> Result<String, TranscodeError> {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid("the value is not UTF-8 once percent-decoded"))
}

fn invalid(reason: &str) -> TranscodeError {
    TranscodeError::InvalidQueryParameter { name: PARAMETER.to_owned(), reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::pool;

    fn message(name: &str) -> MessageDescriptor {
        pool().get_message_by_name(name).unwrap()
    }

    fn trim(paths: &str, json: &str) -> String {
        let mask = FieldMask::parse(paths, &message("protogate.testing.v1.ListShelvesResponse")).unwrap();
        String::from_utf8(mask.apply(json.as_bytes()).unwrap()).unwrap()
    }

    const SHELVES: &str =
        r#"{"shelves":[{"id":"1","theme":"a","bookCount":2},{"id":"2","theme":"b"}],"nextPageToken":"t"}"#;

    #[test]
    fn paths_keep_fields_and_go_into_each_element_of_repeated_messages() {
        assert_eq!(trim("nextPageToken", SHELVES), r#"{"nextPageToken":"t"}"#);
        assert_eq!(trim("shelves.id", SHELVES), r#"{"shelves":[{"id":"1"},{"id":"2"}]}"#);
        assert_eq!(
            trim("shelves.id, shelves.book_count", SHELVES),
            r#"{"shelves":[{"id":"1","bookCount":2},{"id":"2"}]}"#
        );
        // A whole field wins over paths inside it, in either order.
        assert_eq!(trim("shelves.id,shelves", SHELVES), trim("shelves", SHELVES));
        assert_eq!(
            trim("shelves,shelves.id", SHELVES),
            r#"{"shelves":[{"id":"1","theme":"a","bookCount":2},{"id":"2","theme":"b"}]}"#
        );
        // Proto names in the output (`json.use_proto_names`) are matched too.
        assert_eq!(trim("next_page_token", r#"{"next_page_token":"t","shelves":[]}"#), r#"{"next_page_token":"t"}"#);
    }

    #[test]
    fn unknown_fields_and_paths_into_scalars_are_refused_by_name() {
        let output = message("protogate.testing.v1.ListShelvesResponse");
        let error = FieldMask::parse("shelves.colour", &output).unwrap_err().to_string();
        assert!(error.contains("protogate.testing.v1.Shelf has no field \"colour\""), "{error}");
        let error = FieldMask::parse("nextPageToken.x", &output).unwrap_err().to_string();
        assert!(error.contains("has no sub-fields"), "{error}");
        let deep = vec!["shelves"; MAX_DEPTH + 1].join(".");
        assert!(FieldMask::parse(&deep, &output).unwrap_err().to_string().contains("at most 32"));
        let book = message("protogate.testing.v1.Book");
        assert!(FieldMask::parse("publishTime.seconds", &book).is_err(), "a Timestamp renders as a string");
        assert!(FieldMask::parse(" , ", &output).is_err());
    }

    #[test]
    fn the_parameter_is_fields_unless_the_request_has_such_a_field() {
        let input = message("protogate.testing.v1.ListShelvesRequest");
        let output = message("protogate.testing.v1.ListShelvesResponse");
        assert!(is_parameter("fields", &input) && is_parameter("$fields", &input));
        let mask = requested(Some("page_size=2&fields=shelves.id&%24fields=nextPageToken"), &input, Some(&output));
        assert_eq!(mask.unwrap(), Some(FieldMask::parse("shelves.id,nextPageToken", &output).unwrap()));
        assert_eq!(requested(Some("page_size=2"), &input, Some(&output)).unwrap(), None);
        assert!(requested(Some("fields=x"), &input, None).is_err(), "a raw response cannot be trimmed");
    }
}
