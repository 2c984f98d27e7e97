//! The proto3 JSON mapping, both ways, for every field kind and well-known type.

use serde_json::{Value, json};

use crate::support::Harness;

/// Every field of `Everything` set, in canonical output form.
fn everything() -> Value {
    json!({
        "doubleValue": 1.5,
        "floatValue": -0.25,
        "int32Value": -32,
        "int64Value": "-9223372036854775808",
        "uint32Value": 4294967295u32,
        "uint64Value": "18446744073709551615",
        "sint32Value": -1,
        "sint64Value": "-2",
        "fixed32Value": 3,
        "fixed64Value": "4",
        "sfixed32Value": -5,
        "sfixed64Value": "-6",
        "boolValue": true,
        "stringValue": "snow ☃ \"quoted\"",
        "bytesValue": "AAEC/w==",
        "enumValue": "GREEN",
        "nested": {"name": "n", "amount": 1, "child": {"name": "c", "color": "BLUE"}},
        "repeatedString": ["a", ""],
        "repeatedInt64": ["1", "-1"],
        "repeatedEnum": ["RED", "BLUE"],
        "repeatedNested": [{"name": "x"}, {}],
        "repeatedBytes": ["aGk="],
        "stringMap": {"k": "v", "": "empty key"},
        "intMap": {"7": {"name": "seven"}, "-1": {}},
        "boolMap": {"true": "RED", "false": "GREEN"},
        "choiceNested": {"amount": 9},
        "timestamp": "1972-01-01T10:00:20.021Z",
        "duration": "-3.000000001s",
        "fieldMask": "a.b,cD",
        "structValue": {"s": "x", "n": 1.5, "b": false, "z": null, "l": [0.5, "two"], "o": {"deep": [{}]}},
        "value": [-1.25, {"a": null}],
        "listValue": ["x", 2.75, true, null],
        "empty": {},
        "wrappedDouble": 2.5,
        "wrappedFloat": 0.5,
        "wrappedInt64": "-64",
        "wrappedUint64": "64",
        "wrappedInt32": -32,
        "wrappedUint32": 32,
        "wrappedBool": false,
        "wrappedString": "",
        "wrappedBytes": "",
        "repeatedTimestamp": ["2000-01-01T00:00:00Z"],
        "renamedField": "json_name",
        "fieldWithCAPS": "caps",
        "LeadingUnderscore": 1,
        "optionalInt32": 0,
        "optionalString": ""
    })
}

#[tokio::test]
async fn every_field_kind_round_trips() {
    let h = Harness::start().await;
    let response = h.post_json("/v1/everything", everything()).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    // JSON objects compare without regard to key order (map fields have none).
    assert_eq!(h.upstream.last_call().request, everything(), "what the upstream decoded");
    assert_eq!(response.json(), everything(), "what came back");
}

#[tokio::test]
async fn any_round_trips_with_its_type() {
    let h = Harness::start().await;
    let body = json!({
        "any": {"@type": "type.googleapis.com/protogate.testing.v1.Nested", "name": "inside", "color": "RED"},
        "note": "n"
    });
    let response = h.post_json("/v1/any", body.clone()).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    assert_eq!(h.upstream.last_call().request, body);
    assert_eq!(response.json(), body);
    let wkt = json!({"any": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1.500s"}});
    assert_eq!(h.post_json("/v1/any", wkt.clone()).await.json(), wkt);
    let unknown = h.post_json("/v1/any", json!({"any": {"@type": "type.googleapis.com/acme.Unknown"}})).await;
    let json = unknown.assert_error(400, 3);
    assert_eq!(json["details"][0]["fieldViolations"][0]["field"], "any");
}

#[tokio::test]
async fn input_accepts_proto_names_numbers_as_strings_and_enum_numbers() {
    let h = Harness::start().await;
    let body = json!({
        "int32_value": "7",
        "int64_value": 8,
        "enum_value": 3,
        "nested": {"color": "RED"},
        "custom_json": "by proto name",
        "float_value": "Infinity",
        "uint64_value": "1000",
        "bytes_value": "-_8",
        "string_value": null
    });
    let response = h.post_json("/v1/everything", body).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    assert_eq!(
        h.upstream.last_call().request,
        json!({
            "floatValue": "Infinity",
            "int32Value": 7,
            "int64Value": "8",
            "uint64Value": "1000",
            "bytesValue": "+/8=",
            "enumValue": "BLUE",
            "nested": {"color": "RED"},
            "renamedField": "by proto name"
        })
    );
}

#[tokio::test]
async fn output_options_come_from_config() {
    let body = json!({"int32Value": 0, "enumValue": "GREEN", "nested": {"name": "n"}, "renamedField": "r"});
    let names = Harness::start_with("[json]\nuse_proto_names = true\nenums_as_ints = true").await;
    let response = names.post_json("/v1/everything", body.clone()).await;
    assert_eq!(response.json(), json!({"enum_value": 2, "nested": {"name": "n"}, "custom_json": "r"}));

    let all = Harness::start_with("[json]\nemit_unpopulated = true").await;
    let json = all.post_json("/v1/everything", json!({})).await.json();
    assert_eq!(json["int64Value"], "0");
    assert_eq!(json["stringValue"], "");
    assert_eq!(json["enumValue"], "COLOR_UNSPECIFIED");
    assert_eq!(json["repeatedString"], json!([]));
    assert_eq!(json["stringMap"], json!({}));
    assert_eq!(json["nested"], Value::Null, "unset messages are null");
}

#[tokio::test]
async fn wrong_types_and_values_are_400_naming_the_field() {
    let h = Harness::start().await;
    let cases = [
        (json!({"int32Value": "seven"}), "int32Value"),
        (json!({"int32Value": 2147483648i64}), "int32Value"),
        (json!({"uint32Value": -1}), "uint32Value"),
        (json!({"int64Value": "9223372036854775808"}), "int64Value"),
        (json!({"floatValue": 1e39}), "floatValue"),
        (json!({"bytesValue": "not base64!"}), "bytesValue"),
        (json!({"enumValue": "PURPLE"}), "enumValue"),
        (json!({"boolValue": "yes"}), "boolValue"),
        (json!({"timestamp": "2024-13-01T00:00:00Z"}), "timestamp"),
        (json!({"duration": "5 minutes"}), "duration"),
        (json!({"nested": {"amount": []}}), "nested.amount"),
        (json!({"repeatedNested": [{}, {"child": {"amount": "x"}}]}), "repeatedNested[1].child.amount"),
        (json!({"intMap": {"x": {}}}), "intMap"),
        (json!({"nested": {"colour": "RED"}}), "nested.colour"),
        (json!({"unknownField": 1}), "unknownField"),
        (json!({"repeatedString": "not a list"}), "repeatedString"),
    ];
    for (body, field) in cases {
        let response = h.post_json("/v1/everything", body.clone()).await;
        let json = response.assert_error(400, 3);
        let message = json["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("invalid JSON for field \"{field}\": ")), "{body} → {message}");
        assert_eq!(json["details"][0]["fieldViolations"][0]["field"], field, "{body}");
    }
    assert!(h.upstream.calls().is_empty());
}

#[tokio::test]
async fn unknown_fields_are_accepted_when_configured() {
    let h = Harness::start_with("[json]\nignore_unknown_fields = true").await;
    let response = h.post_json("/v1/everything", json!({"unknownField": 1, "nested": {"x": 2, "name": "n"}})).await;
    assert_eq!(response.status, 200);
    assert_eq!(h.upstream.last_call().request, json!({"nested": {"name": "n"}}));
}

#[tokio::test]
async fn the_grpc_gateway_preset_keeps_what_its_clients_saw_and_options_still_win() {
    let h = Harness::start_with("[json]\npreset = \"grpc-gateway\"").await;
    let response = h.post_json("/v1/everything", json!({"unknownField": 1, "int32Value": 5})).await;
    assert_eq!(response.status, 200, "unknown fields are discarded, as grpc-gateway does");
    let json = response.json();
    assert_eq!(json["int32Value"], 5);
    assert_eq!(json["int64Value"], "0", "unpopulated fields are emitted, as grpc-gateway does");
    assert_eq!(json["repeatedString"], json!([]));

    // Its query and header conventions: map entries as name[key]=value, unknown parameters
    // skipped, the standard headers also sent as grpcgateway-<name>.
    let response = h
        .request("GET", "/v1/everything?string_map[env]=prod&int32_value=3&utm_source=mail")
        .header("user-agent", "legacy-client/2")
        .header("accept-language", "de")
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let call = h.upstream.last_call();
    assert_eq!(call.request, json!({"int32Value": 3, "stringMap": {"env": "prod"}}));
    assert_eq!(call.metadata["grpcgateway-user-agent"], "legacy-client/2");
    assert_eq!(call.metadata["grpcgateway-accept-language"], "de");

    let tuned = Harness::start_with("[json]\npreset = \"grpc-gateway\"\nemit_unpopulated = false").await;
    let json = tuned.post_json("/v1/everything", json!({"unknownField": 1, "int32Value": 5})).await.json();
    assert_eq!(json, json!({"int32Value": 5}), "an explicit option wins over the preset");
}
