//! Transcoding between HTTP/JSON and protobuf messages: requests (step 2) and responses
//! (step 5), with the JSON mapping options they share.

pub mod direct;
pub mod json;
pub mod request;
pub mod response;

pub use json::JsonOptions;
pub use request::{TranscodeError, decode};
pub use response::render;
