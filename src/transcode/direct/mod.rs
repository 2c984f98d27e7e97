//! The direct transcoder: JSON text ↔ protobuf wire bytes, driven by plans compiled when routes
//! are built, with no `DynamicMessage` or JSON value in between — the design Envoy's
//! transcoding library uses.
//!
//! prost-reflect's serde mapping is the reference: the differential tests hold the two to the
//! same output for the same input, and routes whose messages the plans do not cover (see
//! [`plan`]) keep using prost-reflect.

pub mod decode;
pub mod json;
pub mod plan;
pub mod render;
pub mod wire;
pub mod wkt;

pub use decode::{DecodeError, DecodeOptions, decode_field, decode_message};
pub use plan::{PlanId, Plans};
pub use render::{RenderOptions, render, render_field};
pub use wire::WireError;

#[cfg(test)]
mod tests;
