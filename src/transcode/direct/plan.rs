//! Build time: a transcoding plan per message type — field numbers, wire types, JSON keys and
//! nested plans, laid out for the direct transcoder to look up by index instead of by name.
//!
//! Plans are compiled once for every message a route can send or receive. A plan is
//! `supported` when the direct transcoder reproduces prost-reflect's mapping for it and for
//! every message it contains; otherwise the route uses prost-reflect. Unsupported today:
//! `google.protobuf.Any` (its payload type is only known at run time), proto2 groups, and
//! messages that extensions in the pool extend.

use std::collections::HashMap;

use prost_reflect::{Cardinality, EnumDescriptor, FieldDescriptor, Kind as ReflectKind, MessageDescriptor};
use rustc_hash::FxHashMap;

/// Index of a message plan in [`Plans`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanId(u32);

/// Index of an enum plan in [`Plans`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnumId(u32);

/// Every plan, compiled together so recursive types can refer to each other.
#[derive(Debug, Default)]
pub struct Plans {
    messages: Vec<MessagePlan>,
    enums: Vec<EnumPlan>,
    message_ids: HashMap<String, PlanId>,
    enum_ids: HashMap<String, EnumId>,
}

/// How to transcode one message type.
#[derive(Debug)]
pub struct MessagePlan {
    /// The full message name.
    pub full_name: Box<str>,
    /// Set for well-known types with a special JSON form.
    pub wkt: Option<Wkt>,
    /// Fields in field-number order (the order JSON output uses).
    pub fields: Box<[FieldPlan]>,
    /// Whether the direct transcoder handles this message and everything it contains.
    pub supported: bool,
    /// Names of the message's oneofs, by index.
    pub oneofs: Box<[Box<str>]>,
    /// The descriptor, kept for `Struct`, `Value` and `ListValue`, which are decoded as
    /// prost-reflect decodes them (its map parsing is lenient about wire types).
    pub descriptor: Option<MessageDescriptor>,
    by_number: NumberIndex,
    by_name: FxHashMap<Box<[u8]>, u16>,
    /// By field index: whether the field's JSON name finds that field in `by_name` (it does
    /// unless another field's name takes it), so a key equal to it needs no hash lookup.
    json_name_finds: Box<[bool]>,
}

#[derive(Debug)]
enum NumberIndex {
    /// `index[number]`, for messages whose field numbers are small.
    Dense(Box<[u16]>),
    Sparse(FxHashMap<u32, u16>),
}

const NO_FIELD: u16 = u16::MAX;
const DENSE_LIMIT: u32 = 256;

/// How to transcode one field.
#[derive(Debug)]
pub struct FieldPlan {
    /// The field number.
    pub number: u32,
    /// The JSON name (lowerCamelCase unless `json_name` says otherwise).
    pub json_name: Box<str>,
    /// The name in the .proto file.
    pub proto_name: Box<str>,
    /// `,"jsonName":` ready to write (without its comma for the first key of an object).
    pub json_key: Key,
    /// `,"proto_name":` ready to write.
    pub proto_key: Key,
    /// The wire type a value of this field has (length-delimited for maps); a list of
    /// packable scalars may also arrive length-delimited.
    pub wire_type: u8,
    /// The value type.
    pub kind: Kind,
    /// Singular, repeated or map.
    pub label: Label,
    /// Index of the containing oneof, if any.
    pub oneof: Option<u16>,
    /// Whether an unset field is distinguishable from one holding its default value.
    pub presence: bool,
    /// Singular and outside any oneof: the common field, which the renderer writes as it
    /// reads it when it arrives in order.
    pub plain: bool,
    /// The encoded key with the field's natural wire type.
    pub tag: Box<[u8]>,
    /// The encoded key with the length-delimited wire type (packed lists, strings, messages).
    pub len_tag: Box<[u8]>,
    /// The default enum number, for enum fields written with `emit_unpopulated`.
    pub default_enum: i32,
}

/// The shape of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// One value.
    Singular,
    /// A list; `packable` scalars may arrive packed or not.
    Repeated {
        /// Whether the element type is a numeric scalar, bool or enum.
        packable: bool,
        /// Whether the list is written packed.
        packed: bool,
    },
    /// A map: entries are messages with the key as field 1 and the value as field 2.
    Map {
        /// The key type (an integer, bool or string kind).
        key: Kind,
        /// The value type.
        value: Kind,
    },
}

/// A value type, resolved to plan indices. Variants are the protobuf types of the same name.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
    Enum(EnumId),
    Message(PlanId),
}

/// Well-known types whose JSON form is not an object of their fields, named as in
/// `google/protobuf`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wkt {
    Timestamp,
    Duration,
    FieldMask,
    Struct,
    Value,
    ListValue,
    Empty,
    DoubleValue,
    FloatValue,
    Int64Value,
    UInt64Value,
    Int32Value,
    UInt32Value,
    BoolValue,
    StringValue,
    BytesValue,
}

/// An object key with its separators, `,"name":`, ready to write.
///
/// Keys are written once per field per message, and most are short: those of up to
/// [`KEY_BLOCK`] bytes are stored padded to that length and written as one copy of that fixed
/// size, which compiles to a few vector moves, where a copy of the key's own length is a call
/// into `memcpy` that costs more than the key.
#[derive(Debug)]
pub struct Key {
    /// The key; when it is at most [`KEY_BLOCK`] bytes, padded with zeros to one byte more, so
    /// that a block starts after the leading comma too.
    bytes: Box<[u8]>,
    len: usize,
}

/// Keys up to this long are written as one fixed-size block.
const KEY_BLOCK: usize = 32;

impl Key {
    fn new(name: &str) -> Key {
        let mut bytes = quoted_key(name).into_vec();
        let len = bytes.len();
        if len <= KEY_BLOCK {
            bytes.resize(KEY_BLOCK + 1, 0);
        }
        Key { bytes: bytes.into(), len }
    }

    /// The key as it stands in an object: `"name":`, without the comma.
    #[inline]
    pub fn quoted(&self) -> &[u8] {
        self.bytes.get(1..self.len).unwrap_or_default()
    }

    /// Appends the key; the first key of an object goes without its leading comma.
    #[inline]
    pub fn write(&self, first: bool, out: &mut Vec<u8>) {
        let skip = usize::from(first);
        let block: Option<&[u8; KEY_BLOCK]> =
            self.bytes.get(skip..skip + KEY_BLOCK).and_then(|block| block.try_into().ok());
        match block {
            Some(block) if self.len <= KEY_BLOCK => {
                // The padding written past the key is taken back at once.
                let start = out.len();
                out.extend_from_slice(block);
                out.truncate(start + self.len - skip);
            }
            _ => out.extend_from_slice(self.bytes.get(skip..self.len).unwrap_or_default()),
        }
    }
}

/// How to transcode one enum type.
#[derive(Debug)]
pub struct EnumPlan {
    /// The full enum name.
    pub full_name: Box<str>,
    /// `google.protobuf.NullValue`, whose JSON form is `null`.
    pub is_null_value: bool,
    names: FxHashMap<i32, Box<str>>,
    /// `"NAME"`, by number, for numbers 0..64 (the common case), ready to write.
    quoted: Box<[Option<Box<[u8]>>]>,
    numbers: FxHashMap<Box<[u8]>, i32>,
}

// === impl Plans ===

impl Plans {
    /// Plans for every message reachable from `roots`.
    pub fn build(roots: impl IntoIterator<Item = MessageDescriptor>) -> Plans {
        let mut plans = Plans::default();
        let mut pending: Vec<MessageDescriptor> = Vec::new();
        for root in roots {
            plans.message_id(&root, &mut pending);
        }
        while let Some(message) = pending.pop() {
            let plan = plans.compile(&message, &mut pending);
            let id = plans.message_ids[message.full_name()];
            plans.messages[id.0 as usize] = plan;
        }
        plans.propagate_support();
        plans
    }

    /// The plan of a message type, if it was compiled.
    pub fn id(&self, full_name: &str) -> Option<PlanId> {
        self.message_ids.get(full_name).copied()
    }

    /// The plan with this id.
    pub fn message(&self, id: PlanId) -> &MessagePlan {
        &self.messages[id.0 as usize]
    }

    /// The enum plan with this id.
    pub fn enumeration(&self, id: EnumId) -> &EnumPlan {
        &self.enums[id.0 as usize]
    }

    /// Reserves an id (and queues compilation) the first time a message is seen.
    fn message_id(&mut self, message: &MessageDescriptor, pending: &mut Vec<MessageDescriptor>) -> PlanId {
        if let Some(&id) = self.message_ids.get(message.full_name()) {
            return id;
        }
        let id = PlanId(u32::try_from(self.messages.len()).unwrap_or(u32::MAX));
        self.messages.push(MessagePlan::placeholder(message.full_name()));
        self.message_ids.insert(message.full_name().to_owned(), id);
        pending.push(message.clone());
        id
    }

    fn enum_id(&mut self, descriptor: &EnumDescriptor) -> EnumId {
        if let Some(&id) = self.enum_ids.get(descriptor.full_name()) {
            return id;
        }
        let id = EnumId(u32::try_from(self.enums.len()).unwrap_or(u32::MAX));
        self.enums.push(EnumPlan::compile(descriptor));
        self.enum_ids.insert(descriptor.full_name().to_owned(), id);
        id
    }

    fn kind(&mut self, kind: &ReflectKind, pending: &mut Vec<MessageDescriptor>) -> Kind {
        match kind {
            ReflectKind::Double => Kind::Double,
            ReflectKind::Float => Kind::Float,
            ReflectKind::Int32 => Kind::Int32,
            ReflectKind::Int64 => Kind::Int64,
            ReflectKind::Uint32 => Kind::Uint32,
            ReflectKind::Uint64 => Kind::Uint64,
            ReflectKind::Sint32 => Kind::Sint32,
            ReflectKind::Sint64 => Kind::Sint64,
            ReflectKind::Fixed32 => Kind::Fixed32,
            ReflectKind::Fixed64 => Kind::Fixed64,
            ReflectKind::Sfixed32 => Kind::Sfixed32,
            ReflectKind::Sfixed64 => Kind::Sfixed64,
            ReflectKind::Bool => Kind::Bool,
            ReflectKind::String => Kind::String,
            ReflectKind::Bytes => Kind::Bytes,
            ReflectKind::Enum(e) => Kind::Enum(self.enum_id(e)),
            ReflectKind::Message(m) => Kind::Message(self.message_id(m, pending)),
        }
    }

    fn compile(&mut self, message: &MessageDescriptor, pending: &mut Vec<MessageDescriptor>) -> MessagePlan {
        let wkt = Wkt::of(message.full_name());
        let mut supported = message.full_name() != "google.protobuf.Any" && message.extensions().len() == 0;
        let mut fields = Vec::with_capacity(message.fields().len());
        for field in message.fields() {
            supported &= !field.is_group();
            let plan = self.field(&field, pending);
            fields.push(plan);
        }
        let mut plan = MessagePlan::new(message.full_name(), wkt, fields, supported);
        plan.oneofs = message.oneofs().map(|o| o.name().into()).collect();
        if matches!(wkt, Some(Wkt::Struct | Wkt::Value | Wkt::ListValue)) {
            plan.descriptor = Some(message.clone());
        }
        plan
    }

    fn field(&mut self, field: &FieldDescriptor, pending: &mut Vec<MessageDescriptor>) -> FieldPlan {
        let label = if field.is_map() {
            match field.kind() {
                ReflectKind::Message(entry) => {
                    let key = entry.map_entry_key_field().kind();
                    let value = entry.map_entry_value_field().kind();
                    Label::Map { key: self.kind(&key, pending), value: self.kind(&value, pending) }
                }
                _ => Label::Singular,
            }
        } else if field.cardinality() == Cardinality::Repeated {
            Label::Repeated {
                packable: !matches!(field.kind(), ReflectKind::String | ReflectKind::Bytes | ReflectKind::Message(_)),
                packed: field.is_packed(),
            }
        } else {
            Label::Singular
        };
        let kind = self.kind(&field.kind(), pending);
        let default_enum = match field.default_value() {
            prost_reflect::Value::EnumNumber(n) => n,
            _ => 0,
        };
        FieldPlan {
            number: field.number(),
            json_name: field.json_name().into(),
            proto_name: field.name().into(),
            json_key: Key::new(field.json_name()),
            proto_key: Key::new(field.name()),
            wire_type: if matches!(label, Label::Map { .. }) { 2 } else { natural_wire_type(kind) },
            kind,
            label,
            oneof: oneof_index(field),
            presence: field.supports_presence(),
            plain: label == Label::Singular && oneof_index(field).is_none(),
            tag: encode_key(field.number(), natural_wire_type(kind)),
            len_tag: encode_key(field.number(), 2),
            default_enum,
        }
    }

    /// A message is supported only if everything it contains is: iterate to a fixed point,
    /// since types may be recursive.
    fn propagate_support(&mut self) {
        loop {
            let mut changed = false;
            for i in 0..self.messages.len() {
                if !self.messages[i].supported {
                    continue;
                }
                let contains_unsupported = self.messages[i].fields.iter().any(|f| {
                    let kinds = match f.label {
                        Label::Map { key, value } => [Some(key), Some(value)],
                        _ => [Some(f.kind), None],
                    };
                    kinds
                        .into_iter()
                        .flatten()
                        .any(|k| matches!(k, Kind::Message(id) if !self.messages[id.0 as usize].supported))
                });
                if contains_unsupported {
                    self.messages[i].supported = false;
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }
}

// === impl MessagePlan ===

impl MessagePlan {
    fn placeholder(name: &str) -> MessagePlan {
        MessagePlan::new(name, None, Vec::new(), false)
    }

    fn new(name: &str, wkt: Option<Wkt>, fields: Vec<FieldPlan>, supported: bool) -> MessagePlan {
        let max = fields.iter().map(|f| f.number).max().unwrap_or(0);
        let by_number = if max < DENSE_LIMIT {
            let mut index = vec![NO_FIELD; max as usize + 1];
            for (i, f) in fields.iter().enumerate() {
                index[f.number as usize] = u16::try_from(i).unwrap_or(NO_FIELD);
            }
            NumberIndex::Dense(index.into())
        } else {
            NumberIndex::Sparse(
                fields.iter().enumerate().map(|(i, f)| (f.number, u16::try_from(i).unwrap_or(NO_FIELD))).collect(),
            )
        };
        // JSON names win over proto names when the two collide, as prost-reflect looks them up.
        let mut by_name = FxHashMap::default();
        for (i, f) in fields.iter().enumerate() {
            by_name.insert(f.proto_name.as_bytes().into(), u16::try_from(i).unwrap_or(NO_FIELD));
        }
        for (i, f) in fields.iter().enumerate() {
            by_name.insert(f.json_name.as_bytes().into(), u16::try_from(i).unwrap_or(NO_FIELD));
        }
        let json_name_finds = fields
            .iter()
            .enumerate()
            .map(|(i, f)| by_name.get(f.json_name.as_bytes()).is_some_and(|&found| usize::from(found) == i))
            .collect();
        MessagePlan {
            full_name: name.into(),
            wkt,
            fields: fields.into(),
            supported,
            oneofs: Box::default(),
            descriptor: None,
            by_number,
            by_name,
            json_name_finds,
        }
    }

    /// The index of the field with this number.
    #[inline]
    pub fn field_by_number(&self, number: u32) -> Option<usize> {
        let index = match &self.by_number {
            NumberIndex::Dense(index) => *index.get(number as usize)?,
            NumberIndex::Sparse(index) => *index.get(&number)?,
        };
        (index != NO_FIELD).then_some(index as usize)
    }

    /// The index of the field with this JSON or proto name.
    #[inline]
    pub fn field_by_name(&self, name: &[u8]) -> Option<usize> {
        self.by_name.get(name).map(|&i| i as usize)
    }

    /// The key `"jsonName":` of the field at `guess`, if that key finds it (a proto name may
    /// shadow a JSON name): a decoder compares the input with it before reading a key.
    #[inline]
    pub fn expected_key(&self, guess: usize) -> Option<&[u8]> {
        match (self.fields.get(guess), self.json_name_finds.get(guess)) {
            (Some(field), Some(true)) => Some(field.json_key.quoted()),
            _ => None,
        }
    }
}

// === impl EnumPlan ===

impl EnumPlan {
    fn compile(descriptor: &EnumDescriptor) -> EnumPlan {
        let mut names: FxHashMap<i32, Box<str>> = FxHashMap::default();
        let mut numbers = FxHashMap::default();
        for value in descriptor.values() {
            numbers.insert(value.name().as_bytes().into(), value.number());
            // The name prost-reflect prints for a number, aliases included.
            if let Some(canonical) = descriptor.get_value(value.number()) {
                names.insert(value.number(), canonical.name().into());
            }
        }
        let quoted = (0..64)
            .map(|n| {
                names.get(&n).map(|name| {
                    let mut out = Vec::with_capacity(name.len() + 2);
                    super::json::write_str(&mut out, name);
                    out.into_boxed_slice()
                })
            })
            .collect();
        EnumPlan {
            full_name: descriptor.full_name().into(),
            is_null_value: descriptor.full_name() == "google.protobuf.NullValue",
            names,
            quoted,
            numbers,
        }
    }

    /// The name of a value, if the enum defines one with this number.
    #[inline]
    pub fn name(&self, number: i32) -> Option<&str> {
        self.names.get(&number).map(|n| &**n)
    }

    /// The name of a value as a JSON string, quotes included, if the enum defines one.
    #[inline]
    pub fn quoted_name(&self, number: i32) -> Option<std::borrow::Cow<'_, [u8]>> {
        if let Some(Some(quoted)) = usize::try_from(number).ok().and_then(|n| self.quoted.get(n)) {
            return Some(std::borrow::Cow::Borrowed(quoted));
        }
        let name = self.names.get(&number)?;
        let mut out = Vec::with_capacity(name.len() + 2);
        super::json::write_str(&mut out, name);
        Some(std::borrow::Cow::Owned(out))
    }

    /// The number of a value by name.
    #[inline]
    pub fn number(&self, name: &[u8]) -> Option<i32> {
        self.numbers.get(name).copied()
    }
}

// === impl Wkt ===

impl Wkt {
    fn of(full_name: &str) -> Option<Wkt> {
        Some(match full_name {
            "google.protobuf.Timestamp" => Wkt::Timestamp,
            "google.protobuf.Duration" => Wkt::Duration,
            "google.protobuf.FieldMask" => Wkt::FieldMask,
            "google.protobuf.Struct" => Wkt::Struct,
            "google.protobuf.Value" => Wkt::Value,
            "google.protobuf.ListValue" => Wkt::ListValue,
            "google.protobuf.Empty" => Wkt::Empty,
            "google.protobuf.DoubleValue" => Wkt::DoubleValue,
            "google.protobuf.FloatValue" => Wkt::FloatValue,
            "google.protobuf.Int64Value" => Wkt::Int64Value,
            "google.protobuf.UInt64Value" => Wkt::UInt64Value,
            "google.protobuf.Int32Value" => Wkt::Int32Value,
            "google.protobuf.UInt32Value" => Wkt::UInt32Value,
            "google.protobuf.BoolValue" => Wkt::BoolValue,
            "google.protobuf.StringValue" => Wkt::StringValue,
            "google.protobuf.BytesValue" => Wkt::BytesValue,
            _ => return None,
        })
    }
}

/// The position of the field's oneof among its message's oneofs.
fn oneof_index(field: &FieldDescriptor) -> Option<u16> {
    let oneof = field.containing_oneof()?;
    let position = oneof.parent_message().oneofs().position(|o| o.name() == oneof.name())?;
    u16::try_from(position).ok()
}

/// The wire type a value of this kind has on its own (not packed).
pub fn natural_wire_type(kind: Kind) -> u8 {
    match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => 1,
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => 5,
        Kind::String | Kind::Bytes | Kind::Message(_) => 2,
        _ => 0,
    }
}

fn encode_key(number: u32, wire_type: u8) -> Box<[u8]> {
    let mut out = Vec::with_capacity(5);
    prost::encoding::encode_varint(u64::from(number) << 3 | u64::from(wire_type), &mut out);
    out.into()
}

fn quoted_key(name: &str) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 4);
    out.push(b',');
    super::json::write_str(&mut out, name);
    out.push(b':');
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_length_are_written_whole() {
        // Around the block size: shorter keys go as a padded block, longer ones as they are.
        for length in 1..2 * KEY_BLOCK {
            let name = "k".repeat(length);
            let key = Key::new(&name);
            let mut out = Vec::new();
            key.write(true, &mut out);
            key.write(false, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{name}\":,\"{name}\":"), "a name of {length}");
        }
    }
}
