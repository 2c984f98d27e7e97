//! Path, body and query binding; the PATCH field mask.

use serde_json::json;

use crate::support::Harness;

#[tokio::test]
async fn query_parameters_fill_fields_not_bound_elsewhere() {
    let h = Harness::start().await;
    let response = h
        .get("/v1/everything?string_value=hi&int64Value=-9007199254740993&uint64_value=18446744073709551615&enum_value=BLUE&repeated_enum=RED&repeated_enum=2&bool_value=true&nested.child.name=deep&repeated_string=a&repeated_string=b&bytes_value=aGk%3D&double_value=NaN&wrapped_bool=false&timestamp=2024-02-29T10:00:00.25Z&duration=-1.5s&field_mask=a.b,cD&renamedField=r&field_with_CAPS=c&_leading_underscore=3&optional_int32=0")
        .await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    assert_eq!(
        h.upstream.last_call().request,
        json!({
            "int64Value": "-9007199254740993",
            "uint64Value": "18446744073709551615",
            "boolValue": true,
            "stringValue": "hi",
            "bytesValue": "aGk=",
            "doubleValue": "NaN",
            "enumValue": "BLUE",
            "nested": {"child": {"name": "deep"}},
            "repeatedString": ["a", "b"],
            "repeatedEnum": ["RED", "GREEN"],
            "timestamp": "2024-02-29T10:00:00.250Z",
            "duration": "-1.500s",
            "fieldMask": "a.b,cD",
            "wrappedBool": false,
            "renamedField": "r",
            "fieldWithCAPS": "c",
            "LeadingUnderscore": 3,
            "optionalInt32": 0
        })
    );
}

#[tokio::test]
async fn unknown_query_parameters_are_400_naming_them() {
    let h = Harness::start().await;
    let response = h.get("/v1/shelves?page_size=1&colour=red").await;
    let json = response.assert_error(400, 3);
    assert_eq!(
        json["message"],
        "unknown query parameter \"colour\": it names no field of protogate.testing.v1.ListShelvesRequest"
    );
    assert_eq!(json["details"][0]["@type"], "type.googleapis.com/google.rpc.BadRequest");
    assert_eq!(json["details"][0]["fieldViolations"][0]["field"], "colour");
    let bad_value = h.get("/v1/shelves?page_size=ten").await.assert_error(400, 3);
    assert_eq!(bad_value["message"], "invalid value for field \"page_size\": \"ten\" is not a 32-bit integer");
    assert!(h.upstream.calls().is_empty());
}

#[tokio::test]
async fn ignored_parameters_and_lenient_mode_come_from_config() {
    let h = Harness::start_with("[json]\nignored_query_parameters = [\"_\", \"callback\"]").await;
    assert_eq!(h.get("/v1/shelves?_=1700000000&callback=cb&page_size=3").await.status, 200);
    assert_eq!(h.upstream.last_call().request, json!({"pageSize": 3}));
    h.get("/v1/shelves?other=1").await.assert_error(400, 3);

    let lenient = Harness::start_with("[json]\nignore_unknown_fields = true").await;
    assert_eq!(lenient.get("/v1/shelves?other=1&page_size=3").await.status, 200);
    assert_eq!(lenient.upstream.last_call().request, json!({"pageSize": 3}));
}

#[tokio::test]
async fn body_binds_the_whole_message_or_one_field() {
    let h = Harness::start().await;
    assert_eq!(h.post_json("/v1/shelves?requestId=abc", json!({"theme": "art", "bookCount": 2})).await.status, 200);
    assert_eq!(h.upstream.last_call().request, json!({"shelf": {"theme": "art", "bookCount": 2}, "requestId": "abc"}));
    assert_eq!(h.post_json("/v1/shelves/1/books/2:tag", json!(["x", "y"])).await.status, 200);
    assert_eq!(h.upstream.last_call().request, json!({"name": "shelves/1/books/2", "tags": ["x", "y"]}));
    // The path beats the body for the field it binds.
    assert_eq!(h.request("PUT", "/v1/shelves/7").json(&json!({"id": "8"})).send().await.status, 200);
    assert_eq!(h.upstream.last_call().request, json!({"shelf": {"id": "7"}}));
}

#[tokio::test]
async fn patch_fills_the_update_mask_from_body_keys() {
    let h = Harness::start().await;
    let response = h
        .request("PATCH", "/v1/shelves/1/books/2")
        .json(&json!({"title": "New", "publish_time": "2020-01-01T00:00:00Z", "archived": false}))
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        h.upstream.last_call().request,
        json!({
            "book": {"name": "shelves/1/books/2", "title": "New", "publishTime": "2020-01-01T00:00:00Z"},
            "updateMask": "title,publishTime,archived"
        })
    );
    // A mask given in the query is kept as it is.
    h.request("PATCH", "/v1/shelves/1/books/2?update_mask=title")
        .json(&json!({"title": "T", "archived": true}))
        .send()
        .await;
    assert_eq!(h.upstream.last_call().request["updateMask"], "title");
}
