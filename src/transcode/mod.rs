//! Transcoding between HTTP/JSON and protobuf messages: requests (step 2) and responses
//! (step 5), with the JSON mapping options they share. [`Transcoder`] picks, per route, the
//! direct transcoder or prost-reflect's mapping (the reference).

pub mod direct;
pub mod engine;
pub mod fields;
pub mod http_body;
pub mod json;
pub mod request;
pub mod response;

pub use engine::{Engine, Transcoder};
pub use json::JsonOptions;
pub use request::{TranscodeError, decode};
pub use response::render;
