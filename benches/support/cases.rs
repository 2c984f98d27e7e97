//! The transcoding benches' messages: one catalog item (~470 B of JSON), a page of 50
//! (~24 KB) and a page of 3,000 (~1.4 MB), each as protobuf wire bytes and as the JSON
//! prost-reflect's serde mapping (the reference) writes for them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs, unreachable_pub)]

use super::catalog;

use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};

pub struct Case {
    pub name: &'static str,
    pub descriptor: MessageDescriptor,
    pub wire: Vec<u8>,
    pub json: Vec<u8>,
}

pub fn cases() -> Vec<Case> {
    let pool = protogate::descriptors::load(&[concat!(env!("OUT_DIR"), "/testing.binpb").into()]).unwrap().pool;
    let item = pool.get_message_by_name("protogate.bench.v1.Item").unwrap();
    let list = pool.get_message_by_name("protogate.bench.v1.ListItemsResponse").unwrap();
    [
        ("item", item, catalog::item(7).encode_to_vec()),
        ("page_50", list.clone(), catalog::page(50).encode_to_vec()),
        ("page_3000", list, catalog::page(3_000).encode_to_vec()),
    ]
    .into_iter()
    .map(|(name, descriptor, wire)| {
        let message = DynamicMessage::decode(descriptor.clone(), wire.as_slice()).unwrap();
        let mut json = Vec::new();
        message.serialize_with_options(&mut serde_json::Serializer::new(&mut json), &reference_options()).unwrap();
        Case { name, descriptor, wire, json }
    })
    .collect()
}

/// The JSON options the gateway writes with by default: 64-bit integers as strings.
pub fn reference_options() -> SerializeOptions {
    SerializeOptions::new().stringify_64_bit_integers(true)
}
