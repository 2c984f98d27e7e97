use http::Method;

use super::*;
use crate::config::JsonConfig;
use crate::route::Lookup;
use crate::test_util;
use crate::transcode::render;

fn decode_with(options: &JsonOptions, method: &str, target: &str, body: &str) -> Result<String, TranscodeError> {
    let table = test_util::table();
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    let Lookup::Matched(m) = table.lookup(&Method::from_bytes(method.as_bytes()).unwrap(), path) else {
        panic!("{method} {path} does not match");
    };
    let message = decode(m.route, &m.values, query, body.as_bytes(), options)?;
    Ok(String::from_utf8(render(&message, None, &JsonOptions::default()).unwrap()).unwrap())
}

fn run(method: &str, target: &str, body: &str) -> Result<String, TranscodeError> {
    decode_with(&JsonOptions::default(), method, target, body)
}

fn ok(method: &str, target: &str, body: &str) -> String {
    run(method, target, body).unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

fn err(method: &str, target: &str, body: &str) -> TranscodeError {
    run(method, target, body).expect_err(target)
}

#[test]
fn path_body_and_query_fill_the_request() {
    assert_eq!(ok("GET", "/v1/shelves/12", ""), r#"{"shelf":"12"}"#);
    assert_eq!(
        ok("POST", "/v1/shelves?requestId=r1", r#"{"theme":"Sci-Fi"}"#),
        r#"{"shelf":{"theme":"Sci-Fi"},"requestId":"r1"}"#
    );
    // The path wins over the body for the field it binds.
    assert_eq!(ok("PUT", "/v1/shelves/7", r#"{"id":"9","theme":"x"}"#), r#"{"shelf":{"id":"7","theme":"x"}}"#);
    assert_eq!(
        ok("POST", "/v1/shelves/1/books/2:archive", r#"{"reason":"old"}"#),
        r#"{"name":"shelves/1/books/2","reason":"old"}"#
    );
    // A body bound to a repeated scalar field.
    assert_eq!(
        ok("POST", "/v1/shelves/1/books/2:tag", r#"["a","b"]"#),
        r#"{"name":"shelves/1/books/2","tags":["a","b"]}"#
    );
    // An empty body is an empty message.
    assert_eq!(ok("POST", "/protogate.testing.v1.Bookstore/Ping", "  "), "{}");
    assert_eq!(ok("POST", "/protogate.testing.v1.Bookstore/Ping", r#"{"text":"hi"}"#), r#"{"text":"hi"}"#);
}

#[test]
fn query_parameters_fill_unbound_fields() {
    assert_eq!(
        ok("GET", "/v1/shelves?page_size=5&filter.theme=a+b&filter.ids=1&filter.ids=2&pageToken=%2Fx", ""),
        r#"{"pageSize":5,"pageToken":"/x","filter":{"theme":"a b","ids":["1","2"]}}"#
    );
    assert_eq!(
        ok(
            "GET",
            "/v1/everything?enumValue=BLUE&repeated_enum=1&repeated_enum=GREEN&bool_value=true&int64_value=-3",
            ""
        ),
        r#"{"int64Value":"-3","boolValue":true,"enumValue":"BLUE","repeatedEnum":["RED","GREEN"]}"#
    );
    assert_eq!(
        ok(
            "GET",
            "/v1/everything?timestamp=2024-01-01T00:00:00Z&duration=2.5s&field_mask=a,b.c&wrapped_int32=4&renamedField=x",
            ""
        ),
        r#"{"timestamp":"2024-01-01T00:00:00Z","duration":"2.500s","fieldMask":"a,b.c","wrappedInt32":4,"renamedField":"x"}"#
    );
    assert_eq!(
        ok("GET", "/v1/everything?nested.child.name=deep&choice_text=t", ""),
        r#"{"nested":{"child":{"name":"deep"}},"choiceText":"t"}"#
    );
    // Path-bound fields keep the path's value; an empty value is the empty string.
    assert_eq!(ok("GET", "/v1/shelves/3?shelf=4", ""), r#"{"shelf":"3"}"#);
    assert_eq!(ok("GET", "/v1/shelves?page_token=&page_size=1", ""), r#"{"pageSize":1}"#);
}

/// grpc-gateway's syntax for map entries in a query string, `name[key]=value`, percent-encoded
/// brackets included; keys and values parsed as the map's types.
#[test]
fn map_entries_come_from_bracketed_parameters() {
    // A map's entries come in no set order: compared as JSON values.
    let decoded = ok("GET", "/v1/everything?string_map[env]=prod&stringMap%5Bteam%5D=edge&bool_map[true]=GREEN", "");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&decoded).unwrap(),
        serde_json::json!({"stringMap": {"env": "prod", "team": "edge"}, "boolMap": {"true": "GREEN"}})
    );
}

#[test]
fn path_variables_of_every_scalar_kind() {
    assert_eq!(
        ok("GET", "/v1/everything/hello%20world/-42/GREEN/false/inner", ""),
        r#"{"int64Value":"-42","stringValue":"hello world","enumValue":"GREEN","nested":{"name":"inner"}}"#
    );
    let e = err("GET", "/v1/everything/x/notanumber/GREEN/true/n", "");
    assert_eq!(e.to_string(), "invalid value for field \"int64_value\": \"notanumber\" is not a 64-bit integer");
    assert_eq!(e.field(), Some("int64_value"));
}

#[test]
fn query_errors_name_the_parameter() {
    let e = err("GET", "/v1/shelves?pageSiz=1", "");
    assert_eq!(
        e.to_string(),
        "unknown query parameter \"pageSiz\": it names no field of protogate.testing.v1.ListShelvesRequest"
    );
    assert_eq!(e.field(), Some("pageSiz"));
    for (target, needle) in [
        ("/v1/shelves?page_size=x", "invalid value for field \"page_size\": \"x\" is not a 32-bit integer"),
        ("/v1/shelves?page_size=1&page_size=2", "is given more than once"),
        ("/v1/shelves?filter=x", "names a message"),
        ("/v1/shelves?filter.nope=x", "unknown query parameter \"filter.nope\""),
        ("/v1/shelves?page_size.x=1", "has no sub-fields"),
        ("/v1/everything?string_map=x", "is a map: set its entries as name[key]=value"),
        ("/v1/everything?string_map[a]=1&string_map[a]=2", "is given more than once"),
        ("/v1/everything?int_map[1]=x", "maps of messages cannot be set"),
        ("/v1/everything?bool_map[maybe]=RED", "invalid value for field \"bool_map[maybe]\""),
        ("/v1/everything?string_value[a]=x", "is not a map field"),
        ("/v1/everything?nope[a]=x", "unknown query parameter \"nope[a]\""),
        ("/v1/everything?enum_value=PURPLE", "is not a value of protogate.testing.v1.Color"),
        ("/v1/shelves?page_token=%FF", "malformed query string"),
    ] {
        let message = err("GET", target, "").to_string();
        assert!(message.contains(needle), "{target}: {message}");
    }
}

#[test]
fn ignored_and_unknown_parameters_follow_the_options() {
    let ignoring = JsonOptions::from_config(&JsonConfig {
        ignored_query_parameters: vec!["_".into(), "callback".into()],
        ..JsonConfig::default()
    });
    assert_eq!(
        decode_with(&ignoring, "GET", "/v1/shelves?_=123&callback=f&page_size=2", "").unwrap(),
        r#"{"pageSize":2}"#
    );
    assert!(decode_with(&ignoring, "GET", "/v1/shelves?other=1", "").is_err());
    let lenient = JsonOptions::from_config(&JsonConfig { ignore_unknown_fields: Some(true), ..JsonConfig::default() });
    assert_eq!(decode_with(&lenient, "GET", "/v1/shelves?other=1&page_size=2", "").unwrap(), r#"{"pageSize":2}"#);
    assert_eq!(
        decode_with(&lenient, "POST", "/v1/shelves", r#"{"theme":"t","color":"red"}"#).unwrap(),
        r#"{"shelf":{"theme":"t"}}"#
    );
}

#[test]
fn body_errors_name_the_field() {
    let cases = [
        // (target, body, field, reason contains)
        ("/v1/everything", r#"{"int32Value":"abc"}"#, Some("int32Value"), "invalid"),
        ("/v1/everything", r#"{"int32Value":1e20}"#, Some("int32Value"), ""),
        ("/v1/everything", r#"{"nested":{"amount":true}}"#, Some("nested.amount"), "invalid type"),
        ("/v1/everything", r#"{"repeatedNested":[{},{"name":5}]}"#, Some("repeatedNested[1].name"), "invalid type"),
        ("/v1/everything", r#"{"enumValue":"PURPLE"}"#, Some("enumValue"), "unrecognized enum value"),
        ("/v1/everything", r#"{"bytesValue":"!!"}"#, Some("bytesValue"), "base64"),
        ("/v1/everything", r#"{"timestamp":"yesterday"}"#, Some("timestamp"), ""),
        ("/v1/everything", r#"{"nested":{"nope":1}}"#, Some("nested.nope"), "unknown field"),
        ("/v1/everything", r#"{"nope":1}"#, Some("nope"), "unknown field"),
        ("/v1/everything", r#"{"int32Value":1"#, None, "EOF"),
        ("/v1/everything", r#"{"int32Value":1} x"#, None, "trailing characters"),
        ("/v1/everything", "[1]", None, "invalid type"),
        ("/v1/everything", "\u{feff}{}", None, ""),
        ("/v1/shelves", r#"{"id":"x"}"#, Some("shelf.id"), ""),
    ];
    for (target, body, field, reason) in cases {
        match err("POST", target, body) {
            TranscodeError::InvalidJson { field: got, reason: why } => {
                assert_eq!(got.as_deref(), field, "{body}: {why}");
                assert!(why.contains(reason), "{body}: {why}");
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn deeply_nested_bodies_are_refused_not_overflowed() {
    let deep = format!("{{\"nested\":{}{{}}{}}}", r#"{"child":"#.repeat(10_000), "}".repeat(10_000));
    let e = err("POST", "/v1/everything", &deep);
    assert!(e.to_string().contains("recursion limit"), "{e}");
    let value = format!("{{\"value\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(err("POST", "/v1/everything", &value).to_string().contains("recursion limit"));
}

#[test]
fn patch_fills_the_update_mask_from_the_body() {
    assert_eq!(
        ok("PATCH", "/v1/shelves/1/books/2", r#"{"title":"T","publishTime":"2024-01-01T00:00:00Z","authors":[]}"#),
        r#"{"book":{"name":"shelves/1/books/2","title":"T","publishTime":"2024-01-01T00:00:00Z"},"updateMask":"title,publishTime,authors"}"#
    );
    // An explicit mask in the query wins.
    assert_eq!(
        ok("PATCH", "/v1/shelves/1/books/2?update_mask=title", r#"{"title":"T","archived":true}"#),
        r#"{"book":{"name":"shelves/1/books/2","title":"T","archived":true},"updateMask":"title"}"#
    );
}

#[test]
fn patch_masks_use_proto_names_and_dotted_paths() {
    let everything = test_util::pool().get_message_by_name("protogate.testing.v1.Everything").unwrap();
    let body: serde_json::Value = serde_json::from_str(
        r#"{"nested":{"name":"n","child":{"amount":1}},"renamedField":"x","stringMap":{"k":"v"},"timestamp":"2024-01-01T00:00:00Z","nested2":1,"structValue":{"a":1},"emptyObj":{}}"#,
    )
    .unwrap();
    let mut paths = Vec::new();
    collect_paths(&everything, body.as_object().unwrap(), "", &mut paths);
    assert_eq!(paths, ["nested.name", "nested.child.amount", "custom_json", "string_map", "timestamp", "struct_value"]);
}
