use super::*;
use crate::pb::google::api::CustomHttpPattern;
use crate::test_util;

const BOOKSTORE: &str = "protogate.testing.v1.Bookstore";

fn summary(route: &Route) -> String {
    format!(
        "{} {} body={} response_body={}",
        route.http_method,
        route.template,
        route.body,
        route.response_body.as_ref().map_or("-", |f| f.name())
    )
}

#[test]
fn every_rule_and_binding_becomes_a_route() {
    let routes = test_util::routes();
    let of = |method: &str| -> Vec<String> {
        routes.iter().filter(|r| r.method.full_name() == format!("{BOOKSTORE}.{method}")).map(summary).collect()
    };
    assert_eq!(
        of("GetBook"),
        [
            "GET /v1/{name=shelves/*/books/*} body=- response_body=-",
            "GET /v1/books/{name=**} body=- response_body=-",
            "GET /v2/{name=shelves/*/books/*} body=- response_body=-",
            "POST /protogate.testing.v1.Bookstore/GetBook body=* response_body=-",
        ]
    );
    assert_eq!(of("CreateShelf")[0], "POST /v1/shelves body=shelf response_body=-");
    assert_eq!(of("ArchiveBook")[0], "POST /v1/{name=shelves/*/books/*}:archive body=* response_body=-");
    assert_eq!(of("SearchBooks")[0], "SEARCH /v1/books body=* response_body=-");
    assert_eq!(of("GetBookTitle")[0], "GET /v1/{name=shelves/*/books/*}/title body=- response_body=title");
    assert_eq!(of("Ping"), ["POST /protogate.testing.v1.Bookstore/Ping body=* response_body=-"]);
}

#[test]
fn annotated_routes_come_before_default_ones() {
    let routes = test_util::routes();
    let first_default = routes.iter().position(|r| r.origin == RouteOrigin::Default).unwrap();
    assert!(routes[first_default..].iter().all(|r| r.origin == RouteOrigin::Default));
    let methods: usize = test_util::pool().services().map(|s| s.methods().len()).sum();
    assert_eq!(routes.len() - first_default, methods, "one default route per method");
}

#[test]
fn field_paths_are_resolved_at_build_time() {
    let routes = test_util::routes();
    let update = routes.iter().find(|r| r.method.name() == "UpdateShelf").unwrap();
    assert_eq!(update.bindings.len(), 1);
    let binding = &update.bindings[0];
    assert_eq!(binding.field.to_string(), "shelf.id");
    assert_eq!(binding.field.fields().len(), 2);
    assert!(!binding.multi_segment);
    let file = routes.iter().find(|r| r.method.name() == "GetFile").unwrap();
    assert!(file.bindings[0].multi_segment);
    assert_eq!(update.grpc_path.as_str(), "/protogate.testing.v1.Bookstore/UpdateShelf");
}

fn rule(pattern: Pattern) -> HttpRule {
    HttpRule { pattern: Some(pattern), ..Default::default() }
}

#[test]
fn bad_rules_are_reported_with_the_method_and_reason() {
    let method = test_util::method("protogate.testing.v1.Bookstore.UpdateBook");
    let get = |path: &str| rule(Pattern::Get(path.into()));
    let cases: Vec<(HttpRule, &str)> = vec![
        (HttpRule::default(), "the rule sets no HTTP method and path"),
        (get("v1/books"), "a template starts with '/'"),
        (get("/v1/{nope}"), "field \"nope\" does not exist in protogate.testing.v1.UpdateBookRequest"),
        (get("/v1/{book.nope}"), "field \"book.nope\" does not exist in protogate.testing.v1.Book"),
        (get("/v1/{book.name.x}"), "field \"book.name\" is not a singular message"),
        (get("/v1/{book}"), "binds a message"),
        (get("/v1/{book.tags}"), "must bind a singular field"),
        (HttpRule { body: "nope".into(), ..get("/v1/x") }, "body \"nope\" is not a top-level field"),
        (HttpRule { response_body: "nope".into(), ..get("/v1/x") }, "response_body \"nope\" is not a top-level field"),
        (
            rule(Pattern::Custom(CustomHttpPattern { kind: "NOT A METHOD".into(), path: "/x".into() })),
            "is not a valid HTTP method",
        ),
        (
            HttpRule {
                additional_bindings: vec![HttpRule { additional_bindings: vec![get("/a")], ..get("/b") }],
                ..get("/c")
            },
            "additional_bindings[0]: additional bindings cannot nest",
        ),
        (HttpRule { additional_bindings: vec![get("/v1/{x}")], ..get("/c") }, "additional_bindings[0]: field \"x\""),
    ];
    for (rule, needle) in cases {
        let err = expand_rule(&method, &rule).expect_err(needle);
        assert_eq!(err.method, "protogate.testing.v1.Bookstore.UpdateBook");
        assert!(err.reason.contains(needle), "{needle:?} not in {:?}", err.reason);
    }
}

#[test]
fn wrappers_and_timestamps_may_be_path_variables() {
    let method = test_util::method("protogate.testing.v1.EverythingService.Echo");
    for path in
        ["/v1/{wrapped_int64}", "/v1/{timestamp}", "/v1/{duration}", "/v1/{enum_value}", "/v1/{nested.child.name}"]
    {
        expand_rule(&method, &rule(Pattern::Get(path.into()))).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    for path in ["/v1/{struct_value}", "/v1/{nested}", "/v1/{string_map}", "/v1/{repeated_string}"] {
        assert!(expand_rule(&method, &rule(Pattern::Get(path.into()))).is_err(), "{path}");
    }
}
