use super::*;
use crate::test_util;

fn field(name: &str) -> FieldDescriptor {
    test_util::pool().get_message_by_name("protogate.testing.v1.Everything").unwrap().get_field_by_name(name).unwrap()
}

fn parse(name: &str, text: &str) -> Result<Value, String> {
    parse_field_value(&field(name), text)
}

#[test]
fn scalars_parse_from_text() {
    assert_eq!(parse("double_value", "1.5"), Ok(Value::F64(1.5)));
    assert_eq!(parse("double_value", "-Infinity"), Ok(Value::F64(f64::NEG_INFINITY)));
    assert!(matches!(parse("double_value", "NaN"), Ok(Value::F64(v)) if v.is_nan()));
    assert_eq!(parse("float_value", "0.25"), Ok(Value::F32(0.25)));
    assert_eq!(parse("int32_value", "-7"), Ok(Value::I32(-7)));
    assert_eq!(parse("sint32_value", "7"), Ok(Value::I32(7)));
    assert_eq!(parse("int64_value", "-9223372036854775808"), Ok(Value::I64(i64::MIN)));
    assert_eq!(parse("uint64_value", "18446744073709551615"), Ok(Value::U64(u64::MAX)));
    assert_eq!(parse("fixed32_value", "4294967295"), Ok(Value::U32(u32::MAX)));
    assert_eq!(parse("bool_value", "true"), Ok(Value::Bool(true)));
    assert_eq!(parse("bool_value", "0"), Ok(Value::Bool(false)));
    assert_eq!(parse("string_value", "a b"), Ok(Value::String("a b".into())));
    assert_eq!(parse("bytes_value", "aGk="), Ok(Value::Bytes("hi".into())));
    assert_eq!(parse("bytes_value", "_-8"), Ok(Value::Bytes(vec![0xff, 0xef].into())));
    assert_eq!(parse("enum_value", "GREEN"), Ok(Value::EnumNumber(2)));
    assert_eq!(parse("enum_value", "3"), Ok(Value::EnumNumber(3)));
    assert_eq!(parse("repeated_int64", "5"), Ok(Value::I64(5)), "one element of a repeated field");
}

#[test]
fn bad_scalars_say_why() {
    for (name, text, reason) in [
        ("int32_value", "2147483648", "\"2147483648\" is not a 32-bit integer"),
        ("int32_value", "1.5", "is not a 32-bit integer"),
        ("uint32_value", "-1", "is not an unsigned 32-bit integer"),
        ("int64_value", "12abc", "is not a 64-bit integer"),
        ("float_value", "1e39", "out of range for a 32-bit float"),
        ("double_value", "1e999", "is not a number"),
        ("double_value", "x", "is not a number"),
        ("bool_value", "yes", "is not a boolean"),
        ("bytes_value", "!!", "is not valid base64"),
        (
            "enum_value",
            "PURPLE",
            "\"PURPLE\" is not a value of protogate.testing.v1.Color (one of COLOR_UNSPECIFIED, RED, GREEN, BLUE)",
        ),
        ("nested", "x", "cannot be given as one text value"),
        ("struct_value", "{}", "cannot be given as one text value"),
    ] {
        let err = parse(name, text).expect_err(name);
        assert!(err.contains(reason), "{name}={text}: {err}");
    }
}

#[test]
fn well_known_types_parse_from_their_json_strings() {
    let message = |name: &str, text: &str| match parse(name, text) {
        Ok(Value::Message(m)) => m,
        other => panic!("{name}: {other:?}"),
    };
    let ts = message("timestamp", "2024-02-29T12:00:00.5Z");
    assert_eq!(ts.get_field_by_name("seconds").unwrap().as_i64(), Some(1_709_208_000));
    assert_eq!(ts.get_field_by_name("nanos").unwrap().as_i32(), Some(500_000_000));
    let d = message("duration", "1.5s");
    assert_eq!(d.get_field_by_name("seconds").unwrap().as_i64(), Some(1));
    let mask = message("field_mask", "displayName,address.city");
    let paths: Vec<String> = mask
        .get_field_by_name("paths")
        .unwrap()
        .as_list()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths, ["display_name", "address.city"]);
    assert_eq!(message("wrapped_int64", "-5").get_field_by_number(1).unwrap().as_i64(), Some(-5));
    assert_eq!(message("wrapped_bool", "true").get_field_by_number(1).unwrap().as_bool(), Some(true));
    assert_eq!(message("wrapped_string", "x").get_field_by_number(1).unwrap().as_str(), Some("x"));
    assert!(parse("timestamp", "yesterday").is_err());
    assert!(parse("wrapped_uint32", "-1").is_err());
}

#[test]
fn string_forms_are_known() {
    assert!(has_string_form(&field("int64_value")));
    assert!(has_string_form(&field("timestamp")));
    assert!(has_string_form(&field("wrapped_bytes")));
    assert!(!has_string_form(&field("nested")));
    assert!(!has_string_form(&field("struct_value")));
}
