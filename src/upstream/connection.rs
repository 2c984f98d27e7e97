//! The HTTP/2 connections to one upstream endpoint: opened on first use, opened again after
//! they fail.
//!
//! Unary calls share one connection (they multiplex on it). A streaming call relays a client
//! that reads at its own pace: a client that stops reading leaves its stream's data unread,
//! and unread data holds HTTP/2 flow-control window — the stream's, and the connection's. So
//! streams never share the unary calls' connection: they go on stream lanes, connections of
//! their own that each carry at most [`STREAMS_PER_LANE`] streams, whose windows are sized so
//! that even that many stalled streams cannot exhaust the lane's. A lane that fills up gets a
//! neighbour; idle lanes beyond one close. No stalled client can then hold back a call on
//! another stream.
//!
//! The h2 crate is driven directly, with no request queue or dispatch task in front: a
//! request's HEADERS and DATA frames are queued by the caller in one poll and leave in one
//! write. (Through tonic's channel or hyper's client they take two, plus a task hop.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use h2::client::{Builder, SendRequest};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Endpoint;

/// HTTP/2 flow-control window of each upstream connection, and of each stream on it: large, as
/// every WINDOW_UPDATE frame a small window forces is one more write.
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Streams on one stream lane, at most.
pub const STREAMS_PER_LANE: usize = 4;
/// A stream lane's windows: as many stream windows as it carries streams, so the connection's
/// never runs out before each stream's own has.
const LANE_STREAM_WINDOW: u32 = 1024 * 1024;
const LANE_CONNECTION_WINDOW: u32 = LANE_STREAM_WINDOW * STREAMS_PER_LANE as u32;
/// TCP keep-alive finds dead connections before requests do.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// A byte stream to an endpoint.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Opens a byte stream to an endpoint: TCP by default; embedders and benchmarks may bring
/// another transport (an in-memory pipe, say).
pub type Connector = Arc<dyn Fn(&Endpoint) -> ConnectFuture + Send + Sync>;

/// A connection being opened.
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<Box<dyn Io>>> + Send>>;

/// TCP with `TCP_NODELAY` (requests are written whole; Nagle's algorithm would only delay
/// them) and keep-alive probes.
pub fn tcp_connector() -> Connector {
    Arc::new(|endpoint: &Endpoint| {
        let (host, port, address) = (endpoint.host().to_owned(), endpoint.port(), endpoint.address());
        Box::pin(async move {
            let stream = match address {
                Some(address) => tokio::net::TcpStream::connect(address).await?,
                None => tokio::net::TcpStream::connect((host.as_str(), port)).await?,
            };
            stream.set_nodelay(true)?;
            let keepalive = socket2::TcpKeepalive::new().with_time(KEEP_ALIVE_IDLE).with_interval(KEEP_ALIVE_INTERVAL);
            socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    })
}

/// `inner`'s byte streams, wrapped in TLS for `https://` endpoints (ALPN `h2`), verified
/// against `client`'s roots under `server_name` or the endpoint's host.
pub fn tls_connector(inner: Connector, client: Arc<rustls::ClientConfig>, server_name: Option<String>) -> Connector {
    let connector = tokio_rustls::TlsConnector::from(client);
    Arc::new(move |endpoint: &Endpoint| {
        let tcp = inner(endpoint);
        if endpoint.uri().scheme_str() != Some("https") {
            return tcp;
        }
        let host = endpoint.uri().host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let name = server_name.clone().unwrap_or(host);
        let connector = connector.clone();
        Box::pin(async move {
            let name = rustls::pki_types::ServerName::try_from(name)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = connector.connect(name, tcp.await?).await?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    })
}

/// The connection to one endpoint.
pub struct EndpointConnection {
    endpoint: Endpoint,
    /// The endpoint's URL, for logs and spans.
    label: Arc<str>,
    connector: Connector,
    connect_timeout: Duration,
    current: Mutex<Option<SendRequest<Bytes>>>,
    /// Held while connecting, so concurrent first requests share one connection attempt.
    connecting: tokio::sync::Mutex<()>,
    /// The connections streaming calls go on.
    lanes: Mutex<Vec<Lane>>,
    /// Held while opening a lane, so a burst of streams opens lanes one at a time.
    opening_lane: tokio::sync::Mutex<()>,
}

/// A connection for streaming calls, and how many it carries now.
#[derive(Clone)]
struct Lane {
    sender: SendRequest<Bytes>,
    streams: Arc<AtomicUsize>,
}

/// A streaming call's place on a lane, given back when the call ends (dropped).
#[derive(Debug)]
pub struct LaneSeat(Arc<AtomicUsize>);

impl Drop for LaneSeat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why no request could be sent.
#[derive(Debug)]
pub struct ConnectError(pub String);

impl EndpointConnection {
    /// A connection that will be opened on first use.
    pub fn new(endpoint: Endpoint, connector: Connector, connect_timeout: Duration) -> EndpointConnection {
        EndpointConnection {
            label: endpoint.to_string().into(),
            endpoint,
            connector,
            connect_timeout,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            lanes: Mutex::new(Vec::new()),
            opening_lane: tokio::sync::Mutex::new(()),
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The endpoint's URL.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// A handle to send requests on the open connection, opening it first if needed.
    pub async fn sender(&self) -> Result<SendRequest<Bytes>, ConnectError> {
        if let Some(sender) = self.open() {
            return Ok(sender);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(sender) = self.open() {
            return Ok(sender);
        }
        let sender = self.connect().await?;
        if let Ok(mut current) = self.current.lock() {
            *current = Some(sender.clone());
        }
        Ok(sender)
    }

    /// Forgets the connection after a failure on it, so the next request opens a new one.
    pub fn reset(&self) {
        if let Ok(mut current) = self.current.lock() {
            *current = None;
        }
    }

    fn open(&self) -> Option<SendRequest<Bytes>> {
        let current = self.current.lock().ok()?;
        current.clone()
    }

    /// A handle to send a streaming call on, ready for it, and the call's seat on its lane:
    /// a lane with a seat free, or a new one.
    pub async fn stream_sender(&self) -> Result<(SendRequest<Bytes>, LaneSeat), ConnectError> {
        // A lane that closed (the upstream restarted, say) is dropped on the way.
        for _ in 0..2 {
            let Some((sender, seat)) = self.free_seat() else { break };
            match sender.ready().await {
                Ok(sender) => return Ok((sender, seat)),
                Err(_) => self.drop_lane(&seat.0),
            }
        }
        let _opening = self.opening_lane.lock().await;
        if let Some((sender, seat)) = self.free_seat() {
            if let Ok(sender) = sender.ready().await {
                return Ok((sender, seat));
            }
            self.drop_lane(&seat.0);
        }
        let sender = self.handshake(LANE_CONNECTION_WINDOW, LANE_STREAM_WINDOW).await?;
        let lane = Lane { sender: sender.clone(), streams: Arc::new(AtomicUsize::new(1)) };
        let seat = LaneSeat(lane.streams.clone());
        if let Ok(mut lanes) = self.lanes.lock() {
            lanes.push(lane);
        }
        let sender = sender.ready().await.map_err(|e| ConnectError(format!("connecting to {}: {e}", self.endpoint)))?;
        Ok((sender, seat))
    }

    /// Takes a seat on the first lane that has one, closing the idle lanes but one.
    fn free_seat(&self) -> Option<(SendRequest<Bytes>, LaneSeat)> {
        let mut lanes = self.lanes.lock().ok()?;
        let mut kept_idle = false;
        lanes.retain(|lane| {
            let idle = lane.streams.load(Ordering::Relaxed) == 0;
            let keep = !idle || !kept_idle;
            kept_idle |= idle;
            keep
        });
        let lane = lanes.iter().find(|lane| lane.streams.load(Ordering::Relaxed) < STREAMS_PER_LANE)?;
        lane.streams.fetch_add(1, Ordering::Relaxed);
        Some((lane.sender.clone(), LaneSeat(lane.streams.clone())))
    }

    /// Forgets the lane whose seat count is `streams` (its connection closed).
    fn drop_lane(&self, streams: &Arc<AtomicUsize>) {
        if let Ok(mut lanes) = self.lanes.lock() {
            lanes.retain(|lane| !Arc::ptr_eq(&lane.streams, streams));
        }
    }

    /// Stream lanes open now (idle ones beyond one close at the next streaming call).
    pub fn lanes(&self) -> usize {
        self.lanes.lock().map_or(0, |lanes| lanes.len())
    }

    async fn connect(&self) -> Result<SendRequest<Bytes>, ConnectError> {
        self.handshake(CONNECTION_WINDOW, STREAM_WINDOW).await
    }

    /// A new connection with these flow-control windows.
    async fn handshake(&self, connection_window: u32, stream_window: u32) -> Result<SendRequest<Bytes>, ConnectError> {
        let error = |e: &dyn std::fmt::Display| ConnectError(format!("connecting to {}: {e}", self.endpoint));
        let io = tokio::time::timeout(self.connect_timeout, (self.connector)(&self.endpoint))
            .await
            .map_err(|_| error(&format!("no connection within {:?}", self.connect_timeout)))?
            .map_err(|e| error(&e))?;
        let (sender, connection) = Builder::new()
            .initial_connection_window_size(connection_window)
            .initial_window_size(stream_window)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| error(&e))?;
        // Drives the connection until it closes; requests on it then fail and reconnect.
        let endpoint = self.endpoint.to_string();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection to {endpoint} closed: {e}");
            }
        });
        Ok(sender)
    }
}

impl std::fmt::Debug for EndpointConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConnection").field("endpoint", &self.endpoint.to_string()).finish_non_exhaustive()
    }
}
