//! Streams in progress: server-stream bodies, client-stream calls, WebSocket sessions and
//! gRPC pass-through calls, counted while they last.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Streams in progress, for operators and for tests that check nothing is left behind when
/// a client goes away.
#[derive(Debug, Default, Clone)]
pub struct StreamCounter(Arc<AtomicUsize>);

/// One stream in progress: counted until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl StreamCounter {
    /// Counts a stream until the returned guard is dropped.
    pub fn start(&self) -> InFlight {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlight(self.0.clone())
    }

    /// How many are in progress.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
