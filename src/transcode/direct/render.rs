//! Protobuf wire bytes → JSON text, in one pass per message, driven by plans: no
//! `DynamicMessage`, no intermediate JSON value.
//!
//! The output is what prost-reflect's serde mapping writes for the same bytes: fields in
//! field-number order, defaults omitted (or all of them with `emit_unpopulated`), the last
//! value of a repeated singular field, merged messages, the last member of a oneof, and
//! deduplicated map keys. Each message's fields are first indexed (number, value slice); the
//! common case — fields in order, each once — is then written straight through.

use std::borrow::Cow;

use super::json::{
    write_base64, write_f32_field, write_f64_field, write_f64_plain, write_int, write_int_quoted, write_str, write_utf8,
};
use super::plan::{FieldPlan, Kind, Label, MessagePlan, PlanId, Plans, Wkt};
use super::wire::{
    self, FIXED32, FIXED64, LEN, RawField, WireError, next_field, next_fixed32, next_fixed64, next_key,
    next_len_delimited, next_value, next_varint, zigzag32, zigzag64,
};

/// The JSON options the renderer honours.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// Write every field without presence, defaults included.
    pub emit_unpopulated: bool,
    /// Keys are proto field names rather than JSON names.
    pub use_proto_names: bool,
    /// Enums are numbers rather than names.
    pub enums_as_ints: bool,
}

/// Nested messages allowed below the top one, as prost decodes.
const RECURSION_LIMIT: u32 = 100;

/// Renders the message `id` encoded in `wire` as JSON into `out`.
pub fn render(
    plans: &Plans,
    id: PlanId,
    wire: &[u8],
    options: RenderOptions,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    Renderer { plans, options, entries: Vec::new(), budget: RECURSION_LIMIT }.message(plans.message(id), wire, out)
}

/// Renders only the value of field `field` (an index into the plan's fields) of the message
/// `id` encoded in `wire`: the `response_body` of a route.
pub fn render_field(
    plans: &Plans,
    id: PlanId,
    field: usize,
    wire: &[u8],
    options: RenderOptions,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let mut renderer = Renderer { plans, options, entries: Vec::new(), budget: RECURSION_LIMIT };
    let plan = plans.message(id);
    let range = renderer.index(plan, wire)?;
    let found = renderer.entries[range.clone()].iter().position(|e| e.field as usize == field);
    let Some(f) = plan.fields.get(field) else { return Err(WireError::new("no such response field")) };
    match found {
        Some(first) => {
            let group = range.start + first..range.end;
            let group_end =
                group.start + renderer.entries[group.clone()].iter().take_while(|e| e.field as usize == field).count();
            renderer.value_of_group(f, group.start..group_end, wire, out)
        }
        None => renderer.default_value(f, out),
    }
}

/// A known field's value within the message being rendered.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Index into the plan's fields; `u16::MAX` once dropped (a losing oneof member).
    field: u16,
    wire_type: u8,
    /// The value's byte range in the message.
    start: u32,
    end: u32,
}

const DROPPED: u16 = u16::MAX;

struct Renderer<'p> {
    plans: &'p Plans,
    options: RenderOptions,
    /// Field index of every message being rendered, nested ones stacked on top.
    entries: Vec<Entry>,
    budget: u32,
}

/// Whether [`Renderer::stream`] finished the message or found it needs the indexed path.
enum Streamed {
    Done,
    NeedsIndex,
}

impl Renderer<'_> {
    fn message(&mut self, plan: &MessagePlan, wire: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
        if let Some(wkt) = plan.wkt {
            return self.well_known(wkt, plan, wire, out);
        }
        let mark = out.len();
        let entries = self.entries.len();
        match self.stream(plan, wire, out) {
            Ok(Streamed::Done) => Ok(()),
            // An error too: a value that failed may be one a later occurrence merges into or
            // replaces, which only the indexed path sees.
            Ok(Streamed::NeedsIndex) | Err(_) => {
                out.truncate(mark);
                self.entries.truncate(entries);
                self.indexed(plan, wire, out)
            }
        }
    }

    /// The common case in one pass: fields in field order, each singular field once, lists and
    /// maps in one run each, one member per oneof — what protobuf encoders write. Anything else
    /// is handed to [`Self::indexed`].
    fn stream(&mut self, plan: &MessagePlan, wire: &[u8], out: &mut Vec<u8>) -> Result<Streamed, WireError> {
        out.push(b'{');
        let mut first = true;
        // Fields before this index are done: written, skipped as default, or absent.
        let mut next_field = 0usize;
        let mut run: Option<Run> = None;
        let mut oneofs = 0u64;
        let mut buf = wire;
        while !buf.is_empty() {
            let (number, wire_type) = next_key(&mut buf)?;
            let Some(i) = plan.field_by_number(number) else {
                next_value(&mut buf, number, wire_type)?;
                continue;
            };
            let field = &plan.fields[i];
            // The common field — singular, outside any oneof, in field order, with its own wire
            // type — needs none of the checks below, which lists, maps and oneofs do.
            if field.plain
                && wire_type == field.wire_type
                && i >= next_field
                && run.is_none()
                && !self.options.emit_unpopulated
            {
                let value = next_value(&mut buf, number, wire_type)?;
                next_field = i + 1;
                self.singular(field, value, &mut first, out)?;
                continue;
            }
            let value = if wire_type == field.wire_type {
                next_value(&mut buf, number, wire_type)?
            } else if matches!(field.label, Label::Map { .. }) {
                // prost-reflect reads a map entry's length whatever wire type its key names.
                next_len_delimited(&mut buf)?
            } else {
                let value = next_value(&mut buf, number, wire_type)?;
                check_wire_type(field, &RawField { number, wire_type, value })?;
                value
            };
            if let Some(open) = &mut run
                && open.field == i
            {
                self.extend_run(open, field, wire_type, value, wire, out)?;
                continue;
            }
            if i < next_field {
                return Ok(Streamed::NeedsIndex);
            }
            if let Some(open) = run.take() {
                self.close_run(open, plan, wire, &mut first, out)?;
            }
            if self.options.emit_unpopulated {
                self.write_absent(plan, next_field..i, &mut first, out)?;
            }
            next_field = i + 1;
            if let Some(oneof) = field.oneof {
                let bit = 1u64.checked_shl(u32::from(oneof)).unwrap_or(0);
                if bit == 0 || oneofs & bit != 0 {
                    return Ok(Streamed::NeedsIndex);
                }
                oneofs |= bit;
            }
            match field.label {
                Label::Singular => self.singular(field, value, &mut first, out)?,
                Label::Repeated { .. } => {
                    let mut open = Run { field: i, rewind: out.len(), first_before: first, count: 0, entries: 0 };
                    self.key(field, &mut first, out);
                    out.push(b'[');
                    self.extend_run(&mut open, field, wire_type, value, wire, out)?;
                    run = Some(open);
                }
                Label::Map { .. } => {
                    let mut open =
                        Run { field: i, rewind: out.len(), first_before: first, count: 0, entries: self.entries.len() };
                    self.extend_run(&mut open, field, wire_type, value, wire, out)?;
                    run = Some(open);
                }
            }
        }
        if let Some(open) = run.take() {
            self.close_run(open, plan, wire, &mut first, out)?;
        }
        self.write_absent(plan, next_field..plan.fields.len(), &mut first, out)?;
        out.push(b'}');
        Ok(Streamed::Done)
    }

    /// A singular field's value with its key, or nothing when it holds its default and has no
    /// presence: each value read once, where the general path reads it to find its end, again
    /// to compare it with the default, and again to write it. Always inlined: the field loop
    /// calls it from two places, and out of line it costs a call per field.
    #[inline(always)]
    fn singular(
        &mut self,
        field: &FieldPlan,
        value: &[u8],
        first: &mut bool,
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        let omit_default = !field.presence && !self.options.emit_unpopulated;
        match field.kind {
            Kind::String | Kind::Bytes if omit_default && value.is_empty() => Ok(()),
            Kind::String | Kind::Bytes | Kind::Message(_) => {
                self.key(field, first, out);
                self.scalar_or_message(field.kind, value, out)
            }
            kind => {
                let n = number(kind, value)?;
                if !(omit_default && is_default_number(kind, n, field.default_enum)) {
                    self.key(field, first, out);
                    self.number_value(kind, n, out);
                }
                Ok(())
            }
        }
    }

    /// Adds one occurrence to the open list or map.
    fn extend_run(
        &mut self,
        run: &mut Run,
        field: &FieldPlan,
        wire_type: u8,
        value: &[u8],
        wire: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        if let Label::Map { .. } = field.label {
            // Entries are kept until the run ends: a later entry may repeat a key.
            let start = value.as_ptr() as usize - wire.as_ptr() as usize;
            let index = u16::try_from(run.field).map_err(|_| WireError::new("too many fields"))?;
            self.entries.push(Entry {
                field: index,
                wire_type,
                start: offset(start)?,
                end: offset(start + value.len())?,
            });
            return Ok(());
        }
        let mut first = run.count == 0;
        if wire_type == LEN && is_packable(field.kind) {
            let before = out.len();
            self.packed(field.kind, value, &mut first, out)?;
            if out.len() > before {
                run.count += 1;
            }
        } else {
            if !first {
                out.push(b',');
            }
            self.scalar_or_message(field.kind, value, out)?;
            run.count += 1;
        }
        Ok(())
    }

    /// Ends the open list or map: writes the map, or takes back a list that stayed empty.
    fn close_run(
        &mut self,
        run: Run,
        plan: &MessagePlan,
        wire: &[u8],
        first: &mut bool,
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        let field = &plan.fields[run.field];
        match field.label {
            Label::Map { key, value } => {
                self.key(field, first, out);
                let group = run.entries..self.entries.len();
                let result = self.map(key, value, group, wire, out);
                self.entries.truncate(run.entries);
                result
            }
            _ if run.count == 0 && !self.options.emit_unpopulated => {
                // Only empty packed data arrived: an empty list, which is not written.
                out.truncate(run.rewind);
                *first = run.first_before;
                Ok(())
            }
            _ => {
                out.push(b']');
                Ok(())
            }
        }
    }

    /// With `emit_unpopulated`, writes the defaults of absent fields without presence.
    fn write_absent(
        &mut self,
        plan: &MessagePlan,
        fields: std::ops::Range<usize>,
        first: &mut bool,
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        if !self.options.emit_unpopulated {
            return Ok(());
        }
        for field in &plan.fields[fields] {
            if !field.presence {
                self.key(field, first, out);
                self.default_value(field, out)?;
            }
        }
        Ok(())
    }

    /// Any message, in two passes: index its fields, then write them in field order with
    /// protobuf's rules for repeats, merges and oneofs.
    fn indexed(&mut self, plan: &MessagePlan, wire: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
        let range = self.index(plan, wire)?;
        out.push(b'{');
        let mut first = true;
        let mut next = range.start;
        for (i, field) in plan.fields.iter().enumerate() {
            let group_start = next;
            while next < range.end && self.entries[next].field as usize == i {
                next += 1;
            }
            if group_start == next {
                if self.options.emit_unpopulated && !field.presence {
                    self.key(field, &mut first, out);
                    self.default_value(field, out)?;
                }
                continue;
            }
            if !field.presence && !self.options.emit_unpopulated && self.is_default(field, group_start..next, wire)? {
                continue;
            }
            self.key(field, &mut first, out);
            self.value_of_group(field, group_start..next, wire, out)?;
        }
        out.push(b'}');
        self.entries.truncate(range.start);
        Ok(())
    }

    /// Indexes the known fields of a message, sorted by field and with oneof losers dropped.
    fn index(&mut self, plan: &MessagePlan, wire: &[u8]) -> Result<std::ops::Range<usize>, WireError> {
        let base = self.entries.len();
        let mut buf = wire;
        let mut ordered = true;
        let mut last_field = 0u16;
        while !buf.is_empty() {
            let (number, wire_type) = next_key(&mut buf)?;
            let Some(i) = plan.field_by_number(number) else {
                next_value(&mut buf, number, wire_type)?;
                continue;
            };
            let field = &plan.fields[i];
            let value = if matches!(field.label, Label::Map { .. }) {
                // prost-reflect reads a map entry's length whatever wire type its key names.
                next_len_delimited(&mut buf)?
            } else {
                next_value(&mut buf, number, wire_type)?
            };
            let raw = RawField { number, wire_type, value };
            check_wire_type(field, &raw)?;
            let start = raw.value.as_ptr() as usize - wire.as_ptr() as usize;
            let index = u16::try_from(i).map_err(|_| WireError::new("too many fields"))?;
            let in_order = self.entries.len() == base
                || index > last_field
                || (index == last_field && field.label != Label::Singular);
            // A second member of a oneof: only the last one written counts.
            let oneof_clash = field.oneof.is_some_and(|o| {
                self.entries[base..].iter().any(|e| e.field != index && plan.fields[e.field as usize].oneof == Some(o))
            });
            ordered &= in_order && !oneof_clash;
            last_field = index;
            self.entries.push(Entry {
                field: index,
                wire_type: raw.wire_type,
                start: offset(start)?,
                end: offset(start + raw.value.len())?,
            });
        }
        if !ordered {
            self.check_unrendered(plan, base, wire)?;
            self.normalize(plan, base);
        }
        let mut end = self.entries.len();
        while end > base && self.entries[end - 1].field == DROPPED {
            end -= 1;
        }
        Ok(base..end)
    }

    /// Values that lose to a later one (an earlier occurrence of a singular field, another
    /// member of a oneof) are not written, but prost-reflect decodes them all: a malformed one
    /// is an error all the same.
    fn check_unrendered(&mut self, plan: &MessagePlan, base: usize, wire: &[u8]) -> Result<(), WireError> {
        let mut scratch = Vec::new();
        for i in base..self.entries.len() {
            let entry = self.entries[i];
            let field = &plan.fields[entry.field as usize];
            let later = &self.entries[i + 1..];
            let superseded = match (field.label, field.kind) {
                (Label::Singular, Kind::Message(_)) => {
                    // Merged with the other occurrences, unless another oneof member wins.
                    field.oneof.is_some_and(|o| {
                        later.iter().any(|e| e.field != entry.field && plan.fields[e.field as usize].oneof == Some(o))
                    })
                }
                (Label::Singular, _) => later.iter().any(|e| {
                    e.field == entry.field
                        || field.oneof.is_some_and(|o| plan.fields[e.field as usize].oneof == Some(o))
                }),
                _ => field.oneof.is_some(),
            };
            if superseded && matches!(field.kind, Kind::String | Kind::Message(_)) {
                scratch.clear();
                self.scalar_or_message(field.kind, slice(wire, entry), &mut scratch)?;
            }
        }
        Ok(())
    }

    /// Brings out-of-order or repeated fields into field order, keeping wire order within a
    /// field, and keeps only the last-written member of each oneof.
    fn normalize(&mut self, plan: &MessagePlan, base: usize) {
        let entries = &mut self.entries[base..];
        // The last occurrence of each oneof, by wire position.
        let mut winners: Vec<(u16, u16, u32)> = Vec::new();
        for e in entries.iter() {
            if let Some(oneof) = plan.fields[e.field as usize].oneof {
                match winners.iter_mut().find(|(o, ..)| *o == oneof) {
                    Some(w) => *w = (oneof, e.field, e.start),
                    None => winners.push((oneof, e.field, e.start)),
                }
            }
        }
        for e in entries.iter_mut() {
            if let Some(oneof) = plan.fields[e.field as usize].oneof
                && winners.iter().any(|&(o, f, _)| o == oneof && f != e.field)
            {
                e.field = DROPPED;
            }
        }
        entries.sort_by_key(|e| e.field);
    }

    #[inline]
    fn key(&self, field: &FieldPlan, first: &mut bool, out: &mut Vec<u8>) {
        let key = if self.options.use_proto_names { &field.proto_key } else { &field.json_key };
        key.write(*first, out);
        *first = false;
    }

    /// Whether a present field without presence holds its default value (and so is omitted).
    fn is_default(&self, field: &FieldPlan, group: std::ops::Range<usize>, wire: &[u8]) -> Result<bool, WireError> {
        match field.label {
            Label::Repeated { .. } | Label::Map { .. } => {
                // A present list is empty only if all it got was packed data of length zero.
                Ok(is_packable(field.kind)
                    && self.entries[group].iter().all(|e| e.wire_type == LEN && e.start == e.end))
            }
            Label::Singular => is_default_value(field, slice(wire, self.entries[group.end - 1])),
        }
    }

    /// Writes a present field's value: the last of a singular field, the merge of a singular
    /// message, every element of a list, the deduplicated entries of a map.
    fn value_of_group(
        &mut self,
        field: &FieldPlan,
        group: std::ops::Range<usize>,
        wire: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        match field.label {
            Label::Singular => match field.kind {
                Kind::Message(id) if group.len() > 1 => {
                    // Several occurrences of a message merge: the concatenation of their encodings.
                    let mut merged = Vec::new();
                    for i in group {
                        merged.extend_from_slice(slice(wire, self.entries[i]));
                    }
                    self.nested(id, &merged, out)
                }
                kind => {
                    let last = self.entries[group.end - 1];
                    self.scalar_or_message(kind, slice(wire, last), out)
                }
            },
            Label::Repeated { .. } => {
                out.push(b'[');
                let mut first = true;
                for i in group {
                    let e = self.entries[i];
                    let bytes = slice(wire, e);
                    if e.wire_type == LEN && is_packable(field.kind) {
                        self.packed(field.kind, bytes, &mut first, out)?;
                    } else {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        self.scalar_or_message(field.kind, bytes, out)?;
                    }
                }
                out.push(b']');
                Ok(())
            }
            Label::Map { key, value } => self.map(key, value, group, wire, out),
        }
    }

    fn packed(&mut self, kind: Kind, mut bytes: &[u8], first: &mut bool, out: &mut Vec<u8>) -> Result<(), WireError> {
        while !bytes.is_empty() {
            if !*first {
                out.push(b',');
            }
            *first = false;
            match natural_width(kind) {
                Width::Fixed32 => self.fixed32_value(kind, next_fixed32(&mut bytes)?, out),
                Width::Fixed64 => self.fixed64_value(kind, next_fixed64(&mut bytes)?, out),
                Width::Varint => self.varint_value(kind, next_varint(&mut bytes)?, out),
            }
        }
        Ok(())
    }

    fn map(
        &mut self,
        key_kind: Kind,
        value_kind: Kind,
        group: std::ops::Range<usize>,
        wire: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        let mut entries: Vec<MapEntry<'_>> = Vec::with_capacity(group.len());
        for i in group {
            entries.push(map_entry(key_kind, value_kind, slice(wire, self.entries[i]))?);
        }
        out.push(b'{');
        let mut first = true;
        let mut scratch = Vec::new();
        for (i, (key, value)) in entries.iter().enumerate() {
            // A key written again later wins: skip this one, though its value must still decode.
            if entries[i + 1..].iter().any(|(later, _)| later == key) {
                if let Some(bytes) = value {
                    scratch.clear();
                    self.scalar_or_message(value_kind, bytes, &mut scratch)?;
                }
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            key.write(out);
            out.push(b':');
            match value {
                Some(bytes) => self.scalar_or_message(value_kind, bytes, out)?,
                // An entry without a value holds the value type's default.
                None => self.default_of_kind(value_kind, 0, out)?,
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// One value of `kind`, given its wire bytes.
    #[inline]
    fn scalar_or_message(&mut self, kind: Kind, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
        match kind {
            Kind::Message(id) => self.nested(id, bytes, out),
            Kind::String => write_utf8(out, bytes).map_err(|_| not_utf8()),
            Kind::Bytes => {
                write_base64(out, bytes);
                Ok(())
            }
            _ => {
                self.number_value(kind, number(kind, bytes)?, out);
                Ok(())
            }
        }
    }

    /// A scalar's value, given as [`number`] reads it.
    #[inline]
    fn number_value(&self, kind: Kind, n: u64, out: &mut Vec<u8>) {
        match natural_width(kind) {
            Width::Varint => self.varint_value(kind, n, out),
            Width::Fixed64 => self.fixed64_value(kind, n, out),
            Width::Fixed32 => self.fixed32_value(kind, truncate_u32(n), out),
        }
    }

    fn nested(&mut self, id: PlanId, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
        if self.budget == 0 {
            return Err(WireError::new("recursion limit reached"));
        }
        self.budget -= 1;
        let result = self.message(self.plans.message(id), bytes, out);
        self.budget += 1;
        result
    }

    fn varint_value(&self, kind: Kind, n: u64, out: &mut Vec<u8>) {
        match kind {
            Kind::Int32 => write_int(out, truncate_i32(n)),
            Kind::Int64 => write_int_quoted(out, n as i64),
            Kind::Uint32 => write_int(out, truncate_u32(n)),
            Kind::Uint64 => write_int_quoted(out, n),
            Kind::Sint32 => write_int(out, zigzag32(n)),
            Kind::Sint64 => write_int_quoted(out, zigzag64(n)),
            Kind::Bool => out.extend_from_slice(if n != 0 { b"true" } else { b"false" }),
            Kind::Enum(id) => self.enum_value(id, truncate_i32(n), out),
            _ => out.extend_from_slice(b"null"),
        }
    }

    fn fixed32_value(&self, kind: Kind, n: u32, out: &mut Vec<u8>) {
        match kind {
            Kind::Float => write_f32_field(out, f32::from_bits(n)),
            Kind::Fixed32 => write_int(out, n),
            Kind::Sfixed32 => write_int(out, n as i32),
            _ => out.extend_from_slice(b"null"),
        }
    }

    fn fixed64_value(&self, kind: Kind, n: u64, out: &mut Vec<u8>) {
        match kind {
            Kind::Double => write_f64_field(out, f64::from_bits(n)),
            Kind::Fixed64 => write_int_quoted(out, n),
            Kind::Sfixed64 => write_int_quoted(out, n as i64),
            _ => out.extend_from_slice(b"null"),
        }
    }

    fn enum_value(&self, id: super::plan::EnumId, n: i32, out: &mut Vec<u8>) {
        let plan = self.plans.enumeration(id);
        if plan.is_null_value {
            out.extend_from_slice(b"null");
        } else if self.options.enums_as_ints {
            write_int(out, n);
        } else {
            match plan.quoted_name(n) {
                Some(quoted) => out.extend_from_slice(&quoted),
                None => write_int(out, n),
            }
        }
    }

    /// The value an absent field without presence shows with `emit_unpopulated`.
    fn default_value(&mut self, field: &FieldPlan, out: &mut Vec<u8>) -> Result<(), WireError> {
        match field.label {
            Label::Repeated { .. } => out.extend_from_slice(b"[]"),
            Label::Map { .. } => out.extend_from_slice(b"{}"),
            Label::Singular => self.default_of_kind(field.kind, field.default_enum, out)?,
        }
        Ok(())
    }

    fn default_of_kind(&mut self, kind: Kind, default_enum: i32, out: &mut Vec<u8>) -> Result<(), WireError> {
        match kind {
            Kind::Message(id) => self.nested(id, &[], out)?,
            Kind::String => out.extend_from_slice(b"\"\""),
            Kind::Bytes => out.extend_from_slice(b"\"\""),
            Kind::Enum(id) => self.enum_value(id, default_enum, out),
            kind => self.number_value(kind, 0, out),
        }
        Ok(())
    }

    // === well-known types ===

    fn well_known(&mut self, wkt: Wkt, plan: &MessagePlan, wire: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
        use prost::Message;
        // Struct, Value and ListValue hold maps, which prost-reflect decodes leniently: decode
        // them its way, then render the canonical message.
        let lenient = |wire: &[u8]| -> Result<Vec<u8>, WireError> {
            match &plan.descriptor {
                Some(descriptor) => {
                    Ok(prost_reflect::DynamicMessage::decode(descriptor.clone(), wire)?.encode_to_vec())
                }
                None => Ok(wire.to_vec()),
            }
        };
        match wkt {
            Wkt::Timestamp => {
                let (seconds, nanos) = seconds_and_nanos(wire)?;
                if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds) {
                    return Err(WireError::new("timestamp out of range"));
                }
                super::wkt::write_timestamp(out, seconds, nanos);
            }
            Wkt::Duration => {
                let (seconds, nanos) = seconds_and_nanos(wire)?;
                if seconds.unsigned_abs() > MAX_DURATION_SECONDS || nanos.unsigned_abs() > MAX_DURATION_NANOS {
                    return Err(WireError::new("duration out of range"));
                }
                super::wkt::write_duration(out, seconds, nanos);
            }
            Wkt::FieldMask => {
                let mask = prost_types::FieldMask::decode(wire)?;
                let mut text = String::new();
                for path in &mask.paths {
                    if !text.is_empty() {
                        text.push(',');
                    }
                    super::wkt::snake_path_to_camel(&mut text, path)
                        .map_err(|_| WireError::new("cannot roundtrip field name through camelcase"))?;
                }
                write_str(out, &text);
            }
            Wkt::Struct => write_struct(&prost_types::Struct::decode(lenient(wire)?.as_slice())?, out)?,
            Wkt::Value => write_value(&prost_types::Value::decode(lenient(wire)?.as_slice())?, out)?,
            Wkt::ListValue => write_list(&prost_types::ListValue::decode(lenient(wire)?.as_slice())?, out)?,
            Wkt::Empty => out.extend_from_slice(b"{}"),
            // A wrapper is its value's JSON: non-finite values are strings, as in a double field
            // (prost-reflect, the oracle, writes `null` here; the mapping says otherwise).
            Wkt::DoubleValue => write_f64_field(out, f64::decode(wire)?),
            Wkt::FloatValue => write_f32_field(out, f32::decode(wire)?),
            Wkt::Int64Value => write_int_quoted(out, i64::decode(wire)?),
            Wkt::UInt64Value => write_int_quoted(out, u64::decode(wire)?),
            Wkt::Int32Value => write_int(out, i32::decode(wire)?),
            Wkt::UInt32Value => write_int(out, u32::decode(wire)?),
            Wkt::BoolValue => out.extend_from_slice(if bool::decode(wire)? { b"true" } else { b"false" }),
            Wkt::StringValue => write_str(out, &String::decode(wire)?),
            Wkt::BytesValue => write_base64(out, &Vec::<u8>::decode(wire)?),
        }
        Ok(())
    }
}

/// `int64 seconds = 1; int32 nanos = 2;` of a Timestamp or Duration, decoded as prost does.
fn seconds_and_nanos(mut wire: &[u8]) -> Result<(i64, i32), WireError> {
    if let Some(pair) = canonical_seconds_and_nanos(wire) {
        return Ok(pair);
    }
    let (mut seconds, mut nanos) = (0i64, 0i32);
    while !wire.is_empty() {
        let (number, wire_type) = next_key(&mut wire)?;
        match number {
            1 | 2 if wire_type != wire::VARINT => {
                return Err(WireError::new(format!("invalid wire type: {wire_type} (expected {})", wire::VARINT)));
            }
            1 => seconds = next_varint(&mut wire)? as i64,
            2 => nanos = truncate_i32(next_varint(&mut wire)?),
            _ => {
                next_value(&mut wire, number, wire_type)?;
            }
        }
    }
    Ok((seconds, nanos))
}

/// The encoding every protobuf encoder writes: seconds, then nanos, each once and left out
/// when zero, with a positive seconds (a negative one is a ten-byte varint). Anything else is
/// `None`, and [`seconds_and_nanos`] reads it field by field.
#[inline]
fn canonical_seconds_and_nanos(mut wire: &[u8]) -> Option<(i64, i32)> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    if let [0x08, rest @ ..] = wire {
        let (value, rest) = wire::short_varint(rest)?;
        // Below 2⁶³: a nine-byte varint holds 63 bits.
        seconds = value as i64;
        wire = rest;
    }
    if let [0x10, rest @ ..] = wire {
        let (value, rest) = wire::short_varint(rest)?;
        nanos = truncate_i32(value);
        wire = rest;
    }
    wire.is_empty().then_some((seconds, nanos))
}

const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;
const MAX_DURATION_NANOS: u32 = 999_999_999;

fn write_struct(value: &prost_types::Struct, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.push(b'{');
    for (i, (key, value)) in value.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_value(value, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_list(value: &prost_types::ListValue, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.push(b'[');
    for (i, value) in value.values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(value, out)?;
    }
    out.push(b']');
    Ok(())
}

fn write_value(value: &prost_types::Value, out: &mut Vec<u8>) -> Result<(), WireError> {
    use prost_types::value::Kind as V;
    match &value.kind {
        None | Some(V::NullValue(_)) => out.extend_from_slice(b"null"),
        Some(V::BoolValue(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(V::NumberValue(n)) if n.is_finite() => write_f64_plain(out, *n),
        Some(V::NumberValue(_)) => {
            return Err(WireError::new("cannot serialize non-finite double in google.protobuf.Value"));
        }
        Some(V::StringValue(s)) => write_str(out, s),
        Some(V::ListValue(list)) => write_list(list, out)?,
        Some(V::StructValue(s)) => write_struct(s, out)?,
    }
    Ok(())
}

/// A list or map being written in [`Renderer::stream`].
struct Run {
    /// Index of its field in the plan.
    field: usize,
    /// Where the output stood before its key, to take an empty list back.
    rewind: usize,
    first_before: bool,
    /// Elements written so far (lists).
    count: usize,
    /// Where its entries start in the renderer's index (maps).
    entries: usize,
}

/// Whether a singular value's bytes hold its type's default.
#[inline]
fn is_default_value(field: &FieldPlan, bytes: &[u8]) -> Result<bool, WireError> {
    Ok(match field.kind {
        Kind::String | Kind::Bytes => bytes.is_empty(),
        Kind::Message(_) => false,
        kind => is_default_number(kind, number(kind, bytes)?, field.default_enum),
    })
}

/// A scalar's number off the wire: a varint, or fixed bytes (a fixed32 in the low half).
#[inline(always)]
fn number(kind: Kind, bytes: &[u8]) -> Result<u64, WireError> {
    match natural_width(kind) {
        Width::Varint => wire::varint(bytes),
        Width::Fixed64 => Ok(u64::from_le_bytes(fixed::<8>(bytes)?)),
        Width::Fixed32 => Ok(u64::from(u32::from_le_bytes(fixed::<4>(bytes)?))),
    }
}

/// Whether a scalar's number, as [`number`] reads it, is its kind's default.
#[inline(always)]
fn is_default_number(kind: Kind, n: u64, default_enum: i32) -> bool {
    match kind {
        Kind::Double => f64::from_bits(n) == 0.0,
        Kind::Float => f32::from_bits(truncate_u32(n)) == 0.0,
        Kind::Enum(_) => truncate_i32(n) == default_enum,
        Kind::Int32 | Kind::Sint32 | Kind::Uint32 | Kind::Fixed32 | Kind::Sfixed32 => truncate_u32(n) == 0,
        _ => n == 0,
    }
}

/// A decoded map key, compared by value so differently encoded duplicates are found.
#[derive(Debug, PartialEq)]
enum MapKey<'a> {
    Str(&'a str),
    Signed(i64),
    Unsigned(u64),
    Bool(bool),
}

impl MapKey<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            MapKey::Str(s) => write_str(out, s),
            MapKey::Signed(n) => write_int_quoted(out, *n),
            MapKey::Unsigned(n) => write_int_quoted(out, *n),
            MapKey::Bool(b) => out.extend_from_slice(if *b { b"\"true\"" } else { b"\"false\"" }),
        }
    }
}

/// A map entry's key and, if present, its value bytes.
type MapEntry<'a> = (MapKey<'a>, Option<Cow<'a, [u8]>>);

/// Reads one map entry: its key (the default if absent) and its value bytes, if present. A
/// message value that occurs twice is merged, which needs a copy.
fn map_entry(key_kind: Kind, value_kind: Kind, mut entry: &[u8]) -> Result<MapEntry<'_>, WireError> {
    let mut key: &[u8] = &[];
    let mut value: Option<Cow<'_, [u8]>> = None;
    while !entry.is_empty() {
        let raw = next_field(&mut entry)?;
        match raw.number {
            1 => {
                check_kind_wire_type(key_kind, raw.wire_type, false)?;
                key = raw.value;
            }
            2 => {
                check_kind_wire_type(value_kind, raw.wire_type, false)?;
                value = match (value, value_kind) {
                    (Some(earlier), Kind::Message(_)) => {
                        let mut merged = earlier.into_owned();
                        merged.extend_from_slice(raw.value);
                        Some(Cow::Owned(merged))
                    }
                    _ => Some(Cow::Borrowed(raw.value)),
                };
            }
            _ => {}
        }
    }
    Ok((map_key(key_kind, key)?, value))
}

fn map_key(kind: Kind, bytes: &[u8]) -> Result<MapKey<'_>, WireError> {
    if kind == Kind::String {
        return Ok(MapKey::Str(utf8(bytes)?));
    }
    if bytes.is_empty() {
        // Absent: the key type's zero.
        return Ok(match kind {
            Kind::Bool => MapKey::Bool(false),
            Kind::Uint32 | Kind::Uint64 | Kind::Fixed32 | Kind::Fixed64 => MapKey::Unsigned(0),
            _ => MapKey::Signed(0),
        });
    }
    Ok(match kind {
        Kind::Bool => MapKey::Bool(wire::varint(bytes)? != 0),
        Kind::Int32 => MapKey::Signed(i64::from(truncate_i32(wire::varint(bytes)?))),
        Kind::Int64 => MapKey::Signed(wire::varint(bytes)? as i64),
        Kind::Sint32 => MapKey::Signed(i64::from(zigzag32(wire::varint(bytes)?))),
        Kind::Sint64 => MapKey::Signed(zigzag64(wire::varint(bytes)?)),
        Kind::Uint32 => MapKey::Unsigned(u64::from(truncate_u32(wire::varint(bytes)?))),
        Kind::Uint64 => MapKey::Unsigned(wire::varint(bytes)?),
        Kind::Fixed32 => MapKey::Unsigned(u64::from(u32::from_le_bytes(fixed::<4>(bytes)?))),
        Kind::Fixed64 => MapKey::Unsigned(u64::from_le_bytes(fixed::<8>(bytes)?)),
        Kind::Sfixed32 => MapKey::Signed(i64::from(i32::from_le_bytes(fixed::<4>(bytes)?))),
        Kind::Sfixed64 => MapKey::Signed(i64::from_le_bytes(fixed::<8>(bytes)?)),
        _ => return Err(WireError::new("invalid map key type")),
    })
}

// === helpers ===

enum Width {
    Varint,
    Fixed32,
    Fixed64,
}

fn natural_width(kind: Kind) -> Width {
    match super::plan::natural_wire_type(kind) {
        FIXED32 => Width::Fixed32,
        FIXED64 => Width::Fixed64,
        _ => Width::Varint,
    }
}

fn is_packable(kind: Kind) -> bool {
    !matches!(kind, Kind::String | Kind::Bytes | Kind::Message(_))
}

/// The wire types prost accepts for a field: its natural one, or packed data for a list of
/// packable scalars; map entries are read as length-delimited whatever the key says.
fn check_wire_type(field: &FieldPlan, raw: &RawField<'_>) -> Result<(), WireError> {
    match field.label {
        Label::Map { .. } => Ok(()),
        Label::Repeated { .. } => check_kind_wire_type(field.kind, raw.wire_type, true),
        Label::Singular => check_kind_wire_type(field.kind, raw.wire_type, false),
    }
}

fn check_kind_wire_type(kind: Kind, wire_type: u8, list: bool) -> Result<(), WireError> {
    let expected = super::plan::natural_wire_type(kind);
    if wire_type == expected || (list && wire_type == LEN && is_packable(kind)) {
        Ok(())
    } else {
        Err(WireError::new(format!("invalid wire type: {wire_type} (expected {expected})")))
    }
}

#[inline]
fn slice(wire: &[u8], entry: Entry) -> &[u8] {
    wire.get(entry.start as usize..entry.end as usize).unwrap_or_default()
}

#[inline]
fn offset(n: usize) -> Result<u32, WireError> {
    u32::try_from(n).map_err(|_| WireError::new("message larger than 4 GiB"))
}

#[inline]
fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], WireError> {
    bytes.try_into().map_err(|_| WireError::new("buffer underflow"))
}

#[inline]
fn utf8(bytes: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(bytes).map_err(|_| not_utf8())
}

#[cold]
fn not_utf8() -> WireError {
    WireError::new("invalid string value: data is not UTF-8 encoded")
}

/// prost reads 32-bit varints as 64 bits and keeps the low half.
#[inline]
fn truncate_i32(n: u64) -> i32 {
    #[allow(clippy::cast_possible_truncation)]
    let n = n as i32;
    n
}

#[inline]
fn truncate_u32(n: u64) -> u32 {
    #[allow(clippy::cast_possible_truncation)]
    let n = n as u32;
    n
}
