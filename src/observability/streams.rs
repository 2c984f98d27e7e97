//! Streams in progress: server-stream bodies, client-stream calls, WebSocket sessions and
//! gRPC pass-through calls, counted while they last — in all, and per client against
//! `[limits] max_streams_per_client`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Streams in progress, for operators and for tests that check nothing is left behind when
/// a client goes away; and each client's streaming calls, so that one client cannot hold an
/// unbounded number open (each holds a seat on an upstream stream lane).
#[derive(Debug, Default, Clone)]
pub struct StreamCounter(Arc<AtomicUsize>, Arc<Mutex<HashMap<IpAddr, usize>>>);

/// A client's place among its streaming calls: given back when dropped.
#[derive(Debug)]
pub struct ClientSeat {
    clients: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl Drop for ClientSeat {
    fn drop(&mut self) {
        let Ok(mut clients) = self.clients.lock() else { return };
        if let Some(open) = clients.get_mut(&self.client) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

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

    /// A seat for one more streaming call of `client`, unless it has `limit` open already
    /// (`Err` with the limit). A request with no known client (no socket) is not counted.
    pub fn seat(&self, client: Option<IpAddr>, limit: usize) -> Result<Option<ClientSeat>, usize> {
        let Some(client) = client else { return Ok(None) };
        let Ok(mut clients) = self.1.lock() else { return Ok(None) };
        let open = clients.entry(client).or_default();
        if *open >= limit {
            return Err(limit);
        }
        *open += 1;
        Ok(Some(ClientSeat { clients: self.1.clone(), client }))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_seats_given_back_when_dropped() {
        let streams = StreamCounter::default();
        let (a, b) = (Some("192.0.2.1".parse().unwrap()), Some("192.0.2.2".parse().unwrap()));
        let first = streams.seat(a, 2).unwrap();
        let second = streams.seat(a, 2).unwrap();
        assert_eq!(streams.seat(a, 2).unwrap_err(), 2);
        assert!(streams.seat(b, 2).unwrap().is_some(), "another client");
        drop(first);
        assert!(streams.seat(a, 2).is_ok(), "a seat given back");
        drop(second);
        assert!(streams.seat(None, 0).unwrap().is_none(), "no client, not counted");
    }
}
