//! A cap on requests in progress per listener: beyond it, a fast 503 (code 14, UNAVAILABLE)
//! instead of a queue that grows until everything is slow. A stream counts until its
//! response headers are sent.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderValue, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::GatewayError;
use crate::gateway::Gateway;

/// The requests in progress, at most the cap.
#[derive(Debug)]
pub struct Overload(Arc<Semaphore>);

impl Overload {
    /// At most `max` requests in progress.
    pub fn new(max: usize) -> Overload {
        Overload(Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))))
    }

    /// A seat for one request, held until it is dropped; `None` when all are taken.
    pub fn enter(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

/// The 503 of a request shed.
pub fn refused(gateway: &Gateway, request_id: Option<&HeaderValue>) -> Response<Body> {
    gateway.error_response(GatewayError::Overloaded, request_id).map(Body::from)
}
