use prost_reflect::{DynamicMessage, SerializeOptions};
use serde_json::{Value, json};

use super::*;
use crate::config::JsonConfig;
use crate::test_util::pool;

fn everything() -> MessageDescriptor {
    pool().get_message_by_name("protogate.testing.v1.Everything").unwrap()
}

/// The schemas `options` give for Everything, as one document whose root is its schema.
fn document(options: &JsonOptions) -> Value {
    let mut schemas = Schemas::new(options);
    let root = schemas.message(&everything());
    let mut doc = json!({ "components": { "schemas": schemas.finish() } });
    doc["$ref"] = root["$ref"].clone();
    doc
}

fn property<'d>(doc: &'d Value, name: &str) -> &'d Value {
    &doc["components"]["schemas"]["protogate.testing.v1.Everything"]["properties"][name]
}

#[test]
fn fields_take_the_json_mapping_s_forms() {
    let doc = document(&JsonOptions::default());
    assert_eq!(property(&doc, "int64Value")["type"], "string", "64-bit integers are strings");
    assert_eq!(property(&doc, "int32Value")["type"], "integer");
    assert_eq!(property(&doc, "bytesValue")["contentEncoding"], "base64");
    assert_eq!(property(&doc, "enumValue")["enum"], json!(["COLOR_UNSPECIFIED", "RED", "GREEN", "BLUE"]));
    assert_eq!(property(&doc, "timestamp")["format"], "date-time");
    assert_eq!(property(&doc, "wrappedInt64")["type"], "string");
    assert_eq!(property(&doc, "renamedField")["type"], "string", "json_name is the name");
    assert_eq!(property(&doc, "boolMap")["propertyNames"]["pattern"], "^(true|false)$");
    assert_eq!(property(&doc, "repeatedNested")["items"]["$ref"], "#/components/schemas/protogate.testing.v1.Nested");
    let nested = &doc["components"]["schemas"]["protogate.testing.v1.Nested"];
    assert!(nested["properties"]["child"]["$ref"].is_string(), "a recursive message refers to itself: {nested}");
    let oneof = &doc["components"]["schemas"]["protogate.testing.v1.Everything"]["allOf"];
    assert_eq!(oneof[0]["oneOf"].as_array().unwrap().len(), 4, "one of three, or none: {oneof}");

    let proto_names =
        JsonOptions::from_config(&JsonConfig { use_proto_names: true, enums_as_ints: true, ..JsonConfig::default() });
    let doc = document(&proto_names);
    assert!(property(&doc, "int64_value").is_object() && property(&doc, "int64Value").is_null());
    assert_eq!(property(&doc, "enum_value")["enum"], json!([0, 1, 2, 3]));
}

/// The oracle: prost-reflect's own JSON of the same messages, under each option, fits the
/// schema; and JSON that breaks the mapping does not.
#[test]
fn prost_reflect_s_json_fits_the_schemas() {
    let sample = json!({
        "doubleValue": 1.5, "floatValue": "NaN", "int32Value": -3, "int64Value": "-9007199254740993",
        "uint32Value": 7, "uint64Value": "18446744073709551615", "boolValue": true, "stringValue": "s",
        "bytesValue": "aGk=", "enumValue": "GREEN", "nested": {"name": "n", "child": {"name": "c"}},
        "repeatedString": ["a"], "repeatedInt64": ["1", "2"], "repeatedEnum": ["RED"],
        "repeatedNested": [{"name": "x"}], "stringMap": {"k": "v"}, "intMap": {"-1": {"name": "m"}},
        "boolMap": {"true": "BLUE"}, "choiceNumber": "5", "timestamp": "2024-01-01T00:00:00Z",
        "duration": "1.5s", "fieldMask": "a.b,c", "structValue": {"k": [1, null]}, "value": 3,
        "listValue": [1, "x"], "empty": {}, "wrappedDouble": 2.5, "wrappedInt64": "4", "wrappedBool": false,
        "wrappedBytes": "AA==", "repeatedTimestamp": ["2024-01-01T00:00:00Z"], "renamedField": "r",
        "optionalInt32": 0
    });
    let message = DynamicMessage::deserialize(everything(), sample).unwrap();
    for config in [
        JsonConfig::default(),
        JsonConfig { emit_unpopulated: Some(true), ..JsonConfig::default() },
        JsonConfig { use_proto_names: true, enums_as_ints: true, ..JsonConfig::default() },
    ] {
        let options = JsonOptions::from_config(&config);
        let serialize = SerializeOptions::new()
            .skip_default_fields(!options.emit_unpopulated)
            .use_proto_field_name(options.use_proto_names)
            .use_enum_numbers(options.enums_as_ints)
            .stringify_64_bit_integers(true);
        let json = message.serialize_with_options(serde_json::value::Serializer, &serialize).unwrap();
        let schema = document(&options);
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&json).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{config:?}: {errors:?}\n{json}");
    }
    let schema = document(&JsonOptions::default());
    for wrong in [
        json!({"int64Value": 3}),
        json!({"enumValue": "PURPLE"}),
        json!({"choiceText": "a", "choiceNumber": "1"}),
        json!({"noSuchField": 1}),
        json!({"boolMap": {"maybe": "RED"}}),
    ] {
        assert!(!jsonschema::is_valid(&schema, &wrong), "{wrong} should not fit");
    }
}
