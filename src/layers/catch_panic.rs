//! A panic while handling a request becomes a 500 with code 13 (INTERNAL) in the contract's
//! JSON shape, and the connection keeps serving.

use std::any::Any;

use axum::body::Body;
use http::{Response, StatusCode};
use tonic::Code;

use crate::error::json_response;
use crate::status::StatusBody;

/// The 500 for a caught panic (its payload logged, never sent).
pub fn response_for(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no message");
    tracing::error!(panic = detail, "request handler panicked");
    let body =
        StatusBody { code: Code::Internal as i32, message: "internal error in the gateway", details: Vec::new() };
    json_response(StatusCode::INTERNAL_SERVER_ERROR, body.to_json()).map(Body::from)
}
