//! Differential tests: the direct transcoder against prost-reflect's serde mapping, the
//! reference, on random messages of every field kind and on non-canonical wire encodings.

use proptest::prelude::*;
use prost::Message;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind as RKind, MapKey, MessageDescriptor, SerializeOptions, Value,
};

use super::*;
use crate::test_util;

// === a small deterministic generator, seeded by proptest ===

use crate::test_util::Gen;

const STRINGS: &[&str] =
    &["", "a", "snow ☃", "quote \" backslash \\ slash /", "ctl \u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f}", "日本語", "🦀"];

fn gen_i64(g: &mut Gen) -> i64 {
    match g.below(6) {
        0 => 0,
        1 => i64::MIN,
        2 => i64::MAX,
        3 => -1,
        _ => g.next() as i64 >> g.below(60),
    }
}

fn gen_f64(g: &mut Gen) -> f64 {
    match g.below(9) {
        0 => 0.0,
        1 => -0.0,
        2 => f64::NAN,
        3 => f64::INFINITY,
        4 => f64::NEG_INFINITY,
        5 => 1e300,
        6 => 1.5,
        7 => f64::MIN_POSITIVE,
        _ => f64::from_bits(g.next()),
    }
}

fn gen_scalar(g: &mut Gen, kind: &RKind) -> Value {
    match kind {
        RKind::Double => Value::F64(gen_f64(g)),
        RKind::Float => Value::F32(gen_f64(g) as f32),
        RKind::Int32 | RKind::Sint32 | RKind::Sfixed32 => Value::I32(gen_i64(g) as i32),
        RKind::Int64 | RKind::Sint64 | RKind::Sfixed64 => Value::I64(gen_i64(g)),
        RKind::Uint32 | RKind::Fixed32 => Value::U32(gen_i64(g) as u32),
        RKind::Uint64 | RKind::Fixed64 => Value::U64(gen_i64(g) as u64),
        RKind::Bool => Value::Bool(g.chance(50)),
        RKind::String => Value::String(g.pick(STRINGS).to_owned()),
        RKind::Bytes => Value::Bytes((0..g.below(7)).map(|_| g.next() as u8).collect::<Vec<u8>>().into()),
        RKind::Enum(e) => {
            if g.chance(80) {
                let values: Vec<i32> = e.values().map(|v| v.number()).collect();
                Value::EnumNumber(g.pick(&values))
            } else {
                Value::EnumNumber(g.below(1000) as i32 - 500)
            }
        }
        RKind::Message(m) => Value::Message(gen_message(g, m, 3)),
    }
}

fn gen_map_key(g: &mut Gen, kind: &RKind) -> MapKey {
    match gen_scalar(g, kind) {
        Value::Bool(b) => MapKey::Bool(b),
        Value::I32(n) => MapKey::I32(n),
        Value::I64(n) => MapKey::I64(n),
        Value::U32(n) => MapKey::U32(n),
        Value::U64(n) => MapKey::U64(n),
        Value::String(s) => MapKey::String(s),
        _ => MapKey::String(String::new()),
    }
}

/// A random message; well-known types get values their JSON form can carry.
fn gen_message(g: &mut Gen, desc: &MessageDescriptor, depth: u32) -> DynamicMessage {
    let mut message = DynamicMessage::new(desc.clone());
    if let Some(encoded) = gen_wkt(g, desc) {
        return DynamicMessage::decode(desc.clone(), encoded.as_slice()).unwrap();
    }
    for field in desc.fields() {
        if !g.chance(if depth == 0 { 0 } else { 55 }) {
            continue;
        }
        let value = gen_field(g, &field, depth);
        message.set_field(&field, value);
    }
    message
}

fn gen_field(g: &mut Gen, field: &FieldDescriptor, depth: u32) -> Value {
    let kind = field.kind();
    let child_depth = depth.saturating_sub(1);
    let one = |g: &mut Gen, kind: &RKind| match kind {
        RKind::Message(m) => Value::Message(gen_message(g, m, child_depth)),
        k => gen_scalar(g, k),
    };
    if field.is_map() {
        let entry = kind.as_message().cloned().unwrap();
        let (key_kind, value_kind) = (entry.map_entry_key_field().kind(), entry.map_entry_value_field().kind());
        let map = (0..g.below(4)).map(|_| (gen_map_key(g, &key_kind), one(g, &value_kind))).collect();
        Value::Map(map)
    } else if field.is_list() {
        Value::List((0..g.below(4)).map(|_| one(g, &kind)).collect())
    } else {
        one(g, &kind)
    }
}

/// Encoded values for well-known types, or `None` for ordinary messages.
fn gen_wkt(g: &mut Gen, desc: &MessageDescriptor) -> Option<Vec<u8>> {
    Some(match desc.full_name() {
        "google.protobuf.Timestamp" => (prost_types::Timestamp {
            seconds: g.pick(&[0, -62_135_596_800, 253_402_300_799, 1_700_000_000, 253_402_300_800]),
            nanos: g.pick(&[0, 1, 500_000_000, 21_000_000, 999_999_999, 123_000]),
        })
        .encode_to_vec(),
        "google.protobuf.Duration" => {
            let sign = if g.chance(30) { -1 } else { 1 };
            prost_types::Duration {
                seconds: sign * g.pick(&[0, 1, 3, 315_576_000_000]),
                nanos: sign as i32 * g.pick(&[0, 1, 500_000_000, 1_000]),
            }
            .encode_to_vec()
        }
        "google.protobuf.FieldMask" => prost_types::FieldMask {
            paths: (0..g.below(3))
                .map(|_| g.pick(&["a", "b_c", "user.display_name", "x.y_z", "Bad"]).to_owned())
                .collect(),
        }
        .encode_to_vec(),
        "google.protobuf.Struct" => gen_struct(g, 2).encode_to_vec(),
        "google.protobuf.Value" => gen_value(g, 2).encode_to_vec(),
        "google.protobuf.ListValue" => {
            prost_types::ListValue { values: (0..g.below(3)).map(|_| gen_value(g, 1)).collect() }.encode_to_vec()
        }
        _ => return None,
    })
}

fn gen_struct(g: &mut Gen, depth: u32) -> prost_types::Struct {
    prost_types::Struct {
        fields: (0..g.below(3)).map(|_| (g.pick(STRINGS).to_owned(), gen_value(g, depth.saturating_sub(1)))).collect(),
    }
}

fn gen_value(g: &mut Gen, depth: u32) -> prost_types::Value {
    use prost_types::value::Kind as V;
    let kind = match g.below(if depth == 0 { 4 } else { 6 }) {
        0 => V::NullValue(0),
        1 => V::BoolValue(g.chance(50)),
        2 => V::NumberValue(if g.chance(90) { gen_f64(g).clamp(-1e300, 1e300) } else { f64::NAN }),
        3 => V::StringValue(g.pick(STRINGS).to_owned()),
        4 => {
            V::ListValue(prost_types::ListValue { values: (0..g.below(3)).map(|_| gen_value(g, depth - 1)).collect() })
        }
        _ => V::StructValue(gen_struct(g, depth - 1)),
    };
    prost_types::Value { kind: Some(kind) }
}

// === wire transforms: what other encoders (or broken upstreams) may send ===

/// Splits an encoding into its top-level fields.
fn fields_of(mut wire: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let before = wire;
        if wire::next_field(&mut wire).is_err() {
            break;
        }
        out.push(before[..before.len() - wire.len()].to_vec());
    }
    out
}

fn transform(g: &mut Gen, wire: Vec<u8>, other: Vec<u8>) -> Vec<u8> {
    match g.below(8) {
        // Fields in reverse order.
        0 => fields_of(&wire).into_iter().rev().flatten().collect(),
        // Two messages concatenated: the second merges into the first.
        1 => [wire, other].concat(),
        // Unknown fields sprinkled in.
        2 => {
            let mut out = vec![0xf8, 0x07, 0x2a]; // field 127, varint 42
            out.extend(wire);
            out.extend([0x8a, 0x7f, 0x02, b'h', b'i']); // field 2033, bytes "hi"
            out
        }
        // A byte flipped.
        3 if !wire.is_empty() => {
            let mut out = wire;
            let i = g.below(out.len() as u64) as usize;
            out[i] ^= 1 << g.below(8);
            out
        }
        // Truncated.
        4 if !wire.is_empty() => {
            let mut out = wire;
            out.truncate(g.below(out.len() as u64) as usize);
            out
        }
        // Every field twice.
        5 => fields_of(&wire).into_iter().flat_map(|f| [f.clone(), f]).flatten().collect(),
        _ => wire,
    }
}

// === the comparison ===

fn options(bits: u8) -> (RenderOptions, SerializeOptions) {
    let render =
        RenderOptions { emit_unpopulated: bits & 1 != 0, use_proto_names: bits & 2 != 0, enums_as_ints: bits & 4 != 0 };
    let reference = SerializeOptions::new()
        .stringify_64_bit_integers(true)
        .skip_default_fields(!render.emit_unpopulated)
        .use_proto_field_name(render.use_proto_names)
        .use_enum_numbers(render.enums_as_ints);
    (render, reference)
}

/// Both renderings of `wire` as message `name`: `Ok(json)` or `Err(())`.
fn both(
    plans: &Plans,
    desc: &MessageDescriptor,
    wire: &[u8],
    bits: u8,
) -> (Result<String, String>, Result<String, String>) {
    let (render_options, reference_options) = options(bits);
    let reference = DynamicMessage::decode(desc.clone(), wire).map_err(|e| e.to_string()).and_then(|m| {
        let mut out = Vec::new();
        m.serialize_with_options(&mut serde_json::Serializer::new(&mut out), &reference_options)
            .map(|()| String::from_utf8(out).unwrap())
            .map_err(|e| e.to_string())
    });
    let id = plans.id(desc.full_name()).unwrap();
    let mut out = Vec::new();
    let direct = render(plans, id, wire, render_options, &mut out)
        .map(|()| String::from_utf8(out).unwrap())
        .map_err(|e| e.message().to_owned());
    (reference, direct)
}

fn assert_same(plans: &Plans, desc: &MessageDescriptor, wire: &[u8], bits: u8) {
    let (reference, direct) = both(plans, desc, wire, bits);
    match (&reference, &direct) {
        (Ok(r), Ok(d)) => {
            // Objects compare without regard to order (map fields have none); the text of
            // everything else must agree exactly.
            let mut rv: serde_json::Value = serde_json::from_str(r).unwrap();
            let dv: serde_json::Value =
                serde_json::from_str(d).unwrap_or_else(|e| panic!("direct output is not JSON ({e}): {d}"));
            let gaps = close_known_gap(&mut rv, &dv);
            assert_eq!(rv, dv, "options {bits:03b}\nwire {wire:02x?}\nreference {r}\ndirect    {d}");
            if gaps == 0 && (!r.contains('{') || !desc.fields().any(|f| f.is_map())) {
                assert_eq!(r.len(), d.len(), "options {bits:03b}: same text length\nreference {r}\ndirect    {d}");
            }
        }
        (Err(_), Err(_)) => {}
        _ => panic!("options {bits:03b}\nwire {wire:02x?}\nreference {reference:?}\ndirect    {direct:?}"),
    }
}

/// Where the oracle strays from the proto3 JSON mapping, the expected answer is the mapping's:
/// prost-reflect writes a `DoubleValue`/`FloatValue` holding ±Infinity or NaN as `null`, the
/// mapping (and the direct renderer) as `"Infinity"`, `"-Infinity"`, `"NaN"`. Only a `null`
/// facing one of those strings is taken as the gap; returns how many were.
fn close_known_gap(reference: &mut serde_json::Value, direct: &serde_json::Value) -> usize {
    use serde_json::Value;
    match (reference, direct) {
        (reference @ Value::Null, Value::String(s)) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => {
            *reference = Value::String(s.clone());
            1
        }
        (Value::Object(r), Value::Object(d)) => {
            r.iter_mut().filter_map(|(k, v)| Some(close_known_gap(v, d.get(k)?))).sum()
        }
        (Value::Array(r), Value::Array(d)) => r.iter_mut().zip(d).map(|(r, d)| close_known_gap(r, d)).sum(),
        _ => 0,
    }
}

fn fixture(name: &str) -> (&'static Plans, MessageDescriptor) {
    // Built once: every case of every property test shares them.
    static FIXTURES: std::sync::LazyLock<(prost_reflect::DescriptorPool, Plans)> = std::sync::LazyLock::new(|| {
        let pool = test_util::pool();
        let plans = Plans::build(pool.all_messages());
        (pool, plans)
    });
    let desc = FIXTURES.0.get_message_by_name(name).unwrap();
    (&FIXTURES.1, desc)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn render_matches_prost_reflect(seed in any::<u64>(), bits in 0u8..8) {
        let (plans, desc) = fixture("protogate.testing.v1.Everything");
        let mut g = Gen::new(seed);
        let wire = gen_message(&mut g, &desc, 3).encode_to_vec();
        assert_same(plans, &desc, &wire, bits);
    }

    #[test]
    fn render_matches_prost_reflect_on_odd_encodings(seed in any::<u64>(), bits in 0u8..8) {
        let (plans, desc) = fixture("protogate.testing.v1.Everything");
        let mut g = Gen::new(seed);
        let wire = gen_message(&mut g, &desc, 3).encode_to_vec();
        let other = gen_message(&mut g, &desc, 2).encode_to_vec();
        let wire = transform(&mut g, wire, other);
        assert_same(plans, &desc, &wire, bits);
    }

    #[test]
    fn render_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64), bits in 0u8..8) {
        let (plans, desc) = fixture("protogate.testing.v1.Everything");
        let (_, _) = both(plans, &desc, &bytes, bits);
    }
}

#[test]
fn wrapped_floats_that_are_not_finite_render_as_their_names() {
    let (plans, desc) = fixture("protogate.testing.v1.Everything");
    let id = plans.id(desc.full_name()).unwrap();
    let wrapped_float = desc.get_field_by_name("wrapped_float").unwrap().number();
    let wrapped_double = desc.get_field_by_name("wrapped_double").unwrap().number();
    for (bits, name) in [(f32::INFINITY, "Infinity"), (f32::NEG_INFINITY, "-Infinity"), (f32::NAN, "NaN")] {
        // `float value = 1;` and `double value = 1;`: prost's own types for the wrappers.
        let (float, double) = (bits.encode_to_vec(), f64::from(bits).encode_to_vec());
        let mut wire = Vec::new();
        for (number, inner) in [(wrapped_float, float), (wrapped_double, double)] {
            prost::encoding::bytes::encode(number, &inner, &mut wire);
        }
        let mut out = Vec::new();
        render(plans, id, &wire, RenderOptions::default(), &mut out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json, serde_json::json!({"wrappedFloat": name, "wrappedDouble": name}));
    }
}

/// Every way seconds and nanos can arrive — as encoders write them (read in one pass), or
/// with zeros written, fields reversed or repeated, unknown fields, padded varints, cut short
/// (read field by field) — renders as prost-reflect renders it, or fails where it fails.
#[test]
fn timestamps_and_durations_render_as_prost_reflect_renders_them_however_encoded() {
    fn put_varint(out: &mut Vec<u8>, value: u64, padded: bool) {
        let start = out.len();
        prost::encoding::encode_varint(value, out);
        if padded && out.len() - start < 10 {
            // A longer, still valid encoding of the same value.
            if let Some(last) = out.last_mut() {
                *last |= 0x80;
            }
            out.push(0);
        }
    }
    let mut g = Gen::new(0x7157);
    for name in ["google.protobuf.Timestamp", "google.protobuf.Duration"] {
        let (plans, desc) = fixture(name);
        for _ in 0..20_000 {
            let seconds = match g.below(4) {
                0 => 0,
                1 => g.below(253_402_300_800) as i64,
                2 => -(g.below(315_576_000_001) as i64),
                _ => gen_i64(&mut g),
            };
            let nanos = match g.below(4) {
                0 => 0,
                1 => g.below(1_000_000_000) as i32,
                2 => -(g.below(1_000) as i32 * 1_000_000),
                _ => gen_i64(&mut g) as i32,
            };
            let mut fields: Vec<(u8, u64)> = [(1u8, seconds as u64), (2, i64::from(nanos) as u64)]
                .into_iter()
                .filter(|&(_, v)| v != 0 || g.chance(20))
                .collect();
            if g.chance(20) {
                fields.reverse();
            }
            if g.chance(10) && !fields.is_empty() {
                let again = (fields[0].0, gen_i64(&mut g) as u64 >> g.below(64));
                fields.push(again);
            }
            let mut wire = Vec::new();
            for (number, value) in fields {
                wire.push(number << 3);
                put_varint(&mut wire, value, g.chance(10));
            }
            if g.chance(10) {
                // An unknown field: a string numbered 3.
                wire.extend_from_slice(&[0x1a, 2, b'h', b'i']);
            }
            if g.chance(10) {
                wire.truncate(g.below(wire.len() as u64 + 1) as usize);
            }
            assert_same(plans, &desc, &wire, g.below(8) as u8);
        }
    }
}

#[test]
fn plans_mark_any_as_unsupported() {
    let (plans, _) = fixture("protogate.testing.v1.Everything");
    assert!(!plans.message(plans.id("protogate.testing.v1.AnyHolder").unwrap()).supported, "it holds an Any");
    assert!(plans.message(plans.id("protogate.testing.v1.Everything").unwrap()).supported);
    let (plans, _) = fixture("protogate.bench.v1.ListItemsResponse");
    assert!(plans.message(plans.id("protogate.bench.v1.ListItemsResponse").unwrap()).supported);
}

#[test]
fn render_field_gives_one_field() {
    let (plans, desc) = fixture("protogate.testing.v1.Book");
    let mut book = DynamicMessage::new(desc.clone());
    book.set_field_by_name("title", Value::String("Dune".into()));
    book.set_field_by_name("authors", Value::List(vec![Value::String("a".into()), Value::String("b".into())]));
    let wire = book.encode_to_vec();
    let id = plans.id("protogate.testing.v1.Book").unwrap();
    let field = |name: &str| plans.message(id).fields.iter().position(|f| &*f.proto_name == name).unwrap();
    let text = |name: &str| {
        let mut out = Vec::new();
        render_field(plans, id, field(name), &wire, RenderOptions::default(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    assert_eq!(text("title"), "\"Dune\"");
    assert_eq!(text("authors"), "[\"a\",\"b\"]");
    assert_eq!(text("name"), "\"\"", "absent: the default");
    assert_eq!(
        text("publish_time"),
        "\"1970-01-01T00:00:00Z\"",
        "absent message: its default, as prost-reflect renders it"
    );
}

// === JSON → wire ===

/// The canonical JSON of a decoded message, or the field an error names.
type Outcome = Result<String, Option<String>>;

/// What each path makes of `json` as message `desc`: the canonical JSON of the decoded
/// message, or the field the error names. `None` when the direct decoder declines.
fn decode_both(
    plans: &Plans,
    desc: &MessageDescriptor,
    json: &[u8],
    deny_unknown_fields: bool,
) -> (Outcome, Option<Outcome>) {
    let canonical = |m: &DynamicMessage| {
        let mut out = Vec::new();
        m.serialize_with_options(&mut serde_json::Serializer::new(&mut out), &SerializeOptions::new()).unwrap();
        String::from_utf8(out).unwrap()
    };
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(deny_unknown_fields);
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut track = serde_path_to_error::Track::new();
    let reference = DynamicMessage::deserialize_with_options(
        desc.clone(),
        serde_path_to_error::Deserializer::new(&mut de, &mut track),
        &options,
    )
    .map_err(|e| crate::transcode::request::json_error(track.path(), &e))
    .and_then(|m| {
        de.end()
            .map(|()| m)
            .map_err(|e| crate::transcode::request::json_error(serde_path_to_error::Track::new().path(), &e))
    })
    .map(|m| canonical(&m))
    .map_err(|e| e.field().map(str::to_owned));
    let id = plans.id(desc.full_name()).unwrap();
    let mut wire = Vec::new();
    let direct = match decode_message(plans, id, json, DecodeOptions { deny_unknown_fields }, &mut wire) {
        Ok(()) => Some(Ok(canonical(
            &DynamicMessage::decode(desc.clone(), wire.as_slice()).expect("the direct output decodes"),
        ))),
        Err(DecodeError::Invalid { field, .. }) => Some(Err(field)),
        Err(DecodeError::Declined) => None,
    };
    (reference, direct)
}

fn assert_same_decode(plans: &Plans, desc: &MessageDescriptor, json: &[u8], deny: bool) -> bool {
    let (reference, direct) = decode_both(plans, desc, json, deny);
    let Some(direct) = direct else { return false };
    match (&reference, &direct) {
        (Ok(r), Ok(d)) => {
            let rv: serde_json::Value = serde_json::from_str(r).unwrap();
            let dv: serde_json::Value = serde_json::from_str(d).unwrap();
            assert_eq!(rv, dv, "input {}\nreference {r}\ndirect    {d}", String::from_utf8_lossy(json));
        }
        (Err(r), Err(d)) => assert_eq!(r, d, "error paths differ for input {}", String::from_utf8_lossy(json)),
        _ => panic!("input {}\nreference {reference:?}\ndirect    {direct:?}", String::from_utf8_lossy(json)),
    }
    true
}

/// Replacement values that probe each field type's accepted forms.
fn odd_value(g: &mut Gen) -> serde_json::Value {
    use serde_json::json;
    g.pick(&[
        json!(null),
        json!(true),
        json!("true"),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(-0.0),
        json!(1e3),
        json!(2.5e-3),
        json!(4_294_967_296u64),
        json!(-2_147_483_649i64),
        json!(18_446_744_073_709_551_615u64),
        json!(9.3e18),
        json!("12"),
        json!("-12"),
        json!("+7"),
        json!("1e3"),
        json!(" 5"),
        json!("NaN"),
        json!("Infinity"),
        json!("-Infinity"),
        json!("inf"),
        json!("3.5"),
        json!(""),
        json!("aGk="),
        json!("aGk"),
        json!("-_8"),
        json!("a+/="),
        json!("!!"),
        json!("RED"),
        json!("PURPLE"),
        json!("NULL_VALUE"),
        json!([]),
        json!([1, "RED", null]),
        json!({}),
        json!({"name": 1}),
        json!({"a": {"b": [null]}}),
        json!("2024-02-29T10:00:00.25Z"),
        json!("2024-02-29t10:00:00Z"),
        json!("1.5s"),
        json!("-0.000000001s"),
        json!("99999999999999s"),
        json!("a.bC,dE"),
        json!("a_b"),
        json!("é \u{1F980} \\ \" \n"),
        json!(1e308),
        json!(3.4e38),
        json!(3.5e38),
        json!(-9223372036854775808i64),
        json!(9223372036854775807i64),
    ])
}

/// Mutates one random leaf (or key) of a JSON document.
fn mutate(g: &mut Gen, value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() && g.chance(70) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys[g.below(keys.len() as u64) as usize].clone();
            match g.below(10) {
                0 => {
                    map.insert("unknownField".into(), odd_value(g));
                }
                1 => {
                    let v = map.remove(&key).unwrap();
                    map.insert(key.to_uppercase(), v);
                }
                _ => mutate(g, map.get_mut(&key).unwrap()),
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() && g.chance(70) => {
            let i = g.below(items.len() as u64) as usize;
            mutate(g, &mut items[i]);
        }
        leaf => *leaf = odd_value(g),
    }
}

/// Text-level changes no `serde_json::Value` can express: duplicate keys, escapes, whitespace,
/// corruption.
fn mutate_text(g: &mut Gen, text: String) -> String {
    match g.below(7) {
        0 if text.starts_with('{') && text.len() > 2 => {
            // Repeat the first key with another value.
            let end = text.find(':').unwrap_or(1);
            format!("{{{}:{},{}", &text[1..end], odd_value(g), &text[1..])
        }
        1 => text.replace('a', "\\u0061").replace('e', "\\u0065"),
        2 => text.replace(',', " ,\n\t").replace(':', " : "),
        3 if !text.is_empty() => {
            let mut bytes = text.into_bytes();
            let i = g.below(bytes.len() as u64) as usize;
            bytes[i] = g.pick(b"{}[]\",:0-e.\\ nt\x01\xff");
            String::from_utf8_lossy(&bytes).into_owned()
        }
        4 if !text.is_empty() => {
            let cut = g.below(text.len() as u64) as usize;
            text.char_indices().take_while(|(i, _)| *i < cut).map(|(_, c)| c).collect()
        }
        _ => text,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    #[test]
    fn decode_matches_prost_reflect(seed in any::<u64>(), bits in 0u8..16) {
        let (plans, desc) = fixture("protogate.testing.v1.Everything");
        let mut g = Gen::new(seed);
        let message = gen_message(&mut g, &desc, 3);
        let (_, serialize) = options(bits & 7);
        let mut json = Vec::new();
        if message.serialize_with_options(&mut serde_json::Serializer::new(&mut json), &serialize).is_err() {
            return Ok(()); // Not representable in JSON (e.g. a non-finite number in a Value).
        }
        let deny = bits & 8 == 0;
        assert_same_decode(plans, &desc, &json, deny);
        // The canonical rendering of a valid message always decodes the direct way.
        let (reference, direct) = decode_both(plans, &desc, &json, deny);
        prop_assert!(reference.is_ok() && direct.is_some(), "{}", String::from_utf8_lossy(&json));
    }

    #[test]
    fn decode_matches_prost_reflect_on_odd_input(seed in any::<u64>(), deny in any::<bool>()) {
        let (plans, desc) = fixture("protogate.testing.v1.Everything");
        let mut g = Gen::new(seed);
        let message = gen_message(&mut g, &desc, 3);
        let Ok(mut value) = serde_json::to_value(&message) else { return Ok(()) };
        for _ in 0..=g.below(3) {
            mutate(&mut g, &mut value);
        }
        let text = mutate_text(&mut g, value.to_string());
        assert_same_decode(plans, &desc, text.as_bytes(), deny);
    }

    #[test]
    fn decode_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let (plans, desc) = fixture("protogate.testing.v1.Everything");
        let _ = decode_both(plans, &desc, &bytes, true);
    }
}

#[test]
fn an_unknown_field_is_skipped_whatever_its_number_says() {
    // serde_json checks a skipped number's syntax, not its range: so does the direct decoder.
    let (plans, desc) = fixture("protogate.testing.v1.Everything");
    assert!(assert_same_decode(plans, &desc, br#"{"unknown":[-1e996117,{"x":1e999}],"int32Value":1}"#, false));
    assert!(assert_same_decode(plans, &desc, br#"{"doubleValue":1e999}"#, false), "a field's own number is checked");
}

#[test]
fn decode_declines_repeated_keys() {
    let (plans, desc) = fixture("protogate.testing.v1.Everything");
    let (reference, direct) = decode_both(plans, &desc, br#"{"nested":{"name":"a"},"nested":{"amount":1}}"#, true);
    assert_eq!(reference.unwrap(), r#"{"nested":{"amount":1}}"#, "prost-reflect replaces");
    assert!(direct.is_none(), "declined rather than merged");
}

#[test]
fn decode_field_binds_a_body_to_one_field() {
    let (plans, desc) = fixture("protogate.testing.v1.CreateShelfRequest");
    let id = plans.id(desc.full_name()).unwrap();
    let field = plans.message(id).fields.iter().position(|f| &*f.proto_name == "shelf").unwrap();
    let mut wire = Vec::new();
    decode_field(
        plans,
        id,
        field,
        br#"{"id":"7","theme":"t"}"#,
        DecodeOptions { deny_unknown_fields: true },
        &mut wire,
    )
    .unwrap();
    let message = DynamicMessage::decode(desc.clone(), wire.as_slice()).unwrap();
    assert_eq!(serde_json::to_string(&message).unwrap(), r#"{"shelf":{"id":"7","theme":"t"}}"#);
    let err =
        decode_field(plans, id, field, br#"{"id":"x"}"#, DecodeOptions { deny_unknown_fields: true }, &mut Vec::new());
    assert!(matches!(err, Err(DecodeError::Invalid { field: Some(f), .. }) if f == "shelf.id"));
}

#[test]
fn a_map_entry_keyed_with_another_wire_type_is_read_as_prost_reflect_reads_it() {
    let (plans, desc) = fixture("protogate.testing.v1.Everything");
    // int_map (field 31) with a varint key: prost-reflect reads the varint as the entry length.
    let mut wire = vec![0xf8, 0x01, 0x04];
    wire.extend([0x08, 0x01, 0x12, 0x00]); // key 1, empty Nested value
    for bits in 0..8 {
        assert_same(plans, &desc, &wire, bits);
    }
    let (reference, _) = both(plans, &desc, &wire, 0);
    assert_eq!(reference.unwrap(), r#"{"intMap":{"1":{}}}"#);
}

#[test]
fn strings_are_checked_for_utf8_wherever_a_bad_byte_falls() {
    // A body is checked to be UTF-8 once, up front; one that is not is read with a check of
    // each string where it ends, so that it fails where serde_json fails: a bad byte must be
    // caught in a chunk of eight, in the bytes after the last chunk, after valid non-ASCII, in
    // a key, in a skipped value, and not before a syntax error that comes first.
    let (plans, desc) = fixture("protogate.testing.v1.Everything");
    for json in [
        &b"{\"string\xffValue\":\"a\"}"[..],
        b"{\"unknown\":[\"\xff\"],\"stringValue\":\"a\"}",
        b"{\"stringValue\":\"a\",,\"bytesValue\":\"\xff\"}",
        b"{\"stringValue\":\"a\",\"int32Value\":1.5,\"bytesValue\":\"\xff\"}",
        b"{\"stringValue\":\"a\"}\xff",
        b"{\"stringValue\":\"a\"} \"\xff\"",
    ] {
        for deny in [false, true] {
            assert!(assert_same_decode(plans, &desc, json, deny), "{}", String::from_utf8_lossy(json));
        }
    }
    let strings: [&[u8]; 8] = [
        b"plain ascii, longer than eight bytes",
        "caf\u{e9} au lait, \u{65e5}\u{672c}".as_bytes(),
        b"\xff at the start of a long string",
        b"a long string, then at the end \xff",
        b"ab\xff",
        b"\xc3\xa9t\xc3\xa9, then a bad byte: \xff",
        b"\xc3",
        b"twelve bytes\xe6\x97",
    ];
    for string in strings {
        let mut json = br#"{"stringValue":""#.to_vec();
        json.extend_from_slice(string);
        json.extend_from_slice(br#""}"#);
        assert!(assert_same_decode(plans, &desc, &json, true), "{}", String::from_utf8_lossy(&json));
    }
}

#[test]
fn a_skipped_value_is_checked_as_serde_json_checks_it() {
    // serde_json skips an unknown field's value without a nesting limit (and without
    // recursion) and without checking what its strings' bytes and escapes encode.
    let (plans, desc) = fixture("protogate.testing.v1.Everything");
    let deep = |n: usize| format!(r#"{{"unknown":{}1{},"stringValue":"a"}}"#, "[".repeat(n), "]".repeat(n));
    let deep_objects = |n: usize| format!(r#"{{"unknown":{}1{},"int32Value":2}}"#, r#"{"k":"#.repeat(n), "}".repeat(n));
    let cases = [
        deep(200),
        deep(100_000),
        deep_objects(200),
        deep(200).replace("1]", "1,]"),
        deep(200).replacen("]", "", 1),
        r#"{"unknown":"\ud800","stringValue":"a"}"#.to_owned(),
        r#"{"unknown":{"\udc00x":[true,false,null,-0.5e3,{}]},"stringValue":"a"}"#.to_owned(),
        r#"{"unknown":{"a" 1},"stringValue":"a"}"#.to_owned(),
        r#"{"unknown":{1:1},"stringValue":"a"}"#.to_owned(),
        r#"{"unknown":"\x","stringValue":"a"}"#.to_owned(),
        r#"{"unknown":"\u12g4"}"#.to_owned(),
        r#"{"unknown":[1 2]}"#.to_owned(),
        r#"{"unknown":[tru]}"#.to_owned(),
        r#"{"unknown":{"a":1,}}"#.to_owned(),
        r#"{"unknown":["#.to_owned(),
        r#"{"unknown":{"a""#.to_owned(),
    ];
    for json in &cases {
        assert!(assert_same_decode(plans, &desc, json.as_bytes(), false), "{json}");
    }
    assert_eq!(decode_both(plans, &desc, deep(100_000).as_bytes(), false).0, Ok(r#"{"stringValue":"a"}"#.to_owned()));
}

#[test]
fn integers_at_the_edges_of_their_types_decode_as_prost_reflect_decodes_them() {
    // Integers of up to 19 digits are read without the standard parser; longer ones, and
    // magnitudes past i64's, go the way serde_json sends them (to a float, then the field).
    let (plans, desc) = fixture("protogate.testing.v1.Everything");
    let numbers = [
        "0",
        "-0",
        "7",
        "-1",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "9999999999999999999",
        "-9999999999999999999",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901",
        "1e3",
        "1.0",
    ];
    let fields =
        ["int32Value", "int64Value", "uint32Value", "uint64Value", "sint64Value", "fixed64Value", "doubleValue"];
    for field in fields {
        for number in numbers {
            for json in [format!(r#"{{"{field}":{number}}}"#), format!(r#"{{"{field}":"{number}"}}"#)] {
                assert!(assert_same_decode(plans, &desc, json.as_bytes(), true), "{json}");
            }
        }
    }
}

#[test]
fn an_expected_key_names_the_field_the_name_lookup_finds() {
    let (plans, desc) = fixture("protogate.testing.v1.Everything");
    let plan = plans.message(plans.id(desc.full_name()).unwrap());
    assert!(plan.fields.len() > 20, "a message with many fields");
    let mut expected = 0;
    for guess in 0..=plan.fields.len() + 1 {
        let Some(quoted) = plan.expected_key(guess) else { continue };
        expected += 1;
        let (key, colon) = quoted.split_at(quoted.len() - 1);
        assert_eq!(colon, b":");
        let name: String = serde_json::from_slice(key).unwrap();
        assert_eq!(plan.field_by_name(name.as_bytes()), Some(guess), "{name}");
        assert_eq!(&*plan.fields[guess].json_name, name);
    }
    assert!(expected > 20, "{expected} fields expected by their keys");
}

#[test]
fn keys_read_in_one_comparison_decode_as_keys_read_one_by_one() {
    let (plans, desc) = fixture("protogate.testing.v1.Everything");
    // Keys in field order (compared whole), out of order, spaced, escaped, under their proto
    // names, and followed by a malformed colon or value: each decoded directly and compared.
    let bodies = [
        r#"{"doubleValue":1.5,"floatValue":2,"int32Value":3,"int64Value":"4","renamedField":"r"}"#,
        r#"{"int32Value":3,"doubleValue":1.5}"#,
        r#"{ "doubleValue" : 1.5 ,	"floatValue":	2 , "int32Value"
            :3 }"#,
        r#"{"doubleValue":1.5,"floatVal\u0075e":2,"int32_value":3,"int64_value":"4"}"#,
        r#"{"doubleValue":1.5,"floatValue"2}"#,
        r#"{"doubleValue":1.5,"floatValue":}"#,
        r#"{"doubleValue":1.5,"floatValue"::2}"#,
        r#"{"doubleValue":1.5,"floatValue":"x"}"#,
        r#"{"doubleValue":1.5,"floatValue":2,"int32Value""#,
        r#"{"doubleValue":1.5,"floatValue":2,"int32Value":"#,
        r#"{"doubleValue":1.5,"floatValue":2,"int32Valu"#,
        r#"{"doubleValue":1.5,"floatValue":2,"unknown":3,"int32Value":3}"#,
    ];
    // A key repeated, whether compared whole or read: left to prost-reflect (which keeps the
    // last value), so never decoded differently.
    let repeated = [
        r#"{"int32Value":3,"doubleValue":1.5,"int32Value":4}"#,
        r#"{"doubleValue":1.5,"doubleValue":2.5}"#,
        r#"{"doubleValue":1.5,"nested":{"name":"a","name":"b"}}"#,
    ];
    for deny in [true, false] {
        for body in bodies {
            assert!(assert_same_decode(plans, &desc, body.as_bytes(), deny), "decoded directly: {body}");
        }
        for body in repeated {
            assert!(!assert_same_decode(plans, &desc, body.as_bytes(), deny), "declined: {body}");
        }
    }
}
