//! One HTTP/2 connection per upstream endpoint: opened on first use, shared by every request
//! (streams multiplex on it), opened again after it fails.
//!
//! The h2 crate is driven directly, with no request queue or dispatch task in front: a
//! request's HEADERS and DATA frames are queued by the caller in one poll and leave in one
//! write. (Through tonic's channel or hyper's client they take two, plus a task hop.)

use std::future::Future;
use std::io;
use std::pin::Pin;
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

    async fn connect(&self) -> Result<SendRequest<Bytes>, ConnectError> {
        let error = |e: &dyn std::fmt::Display| ConnectError(format!("connecting to {}: {e}", self.endpoint));
        let io = tokio::time::timeout(self.connect_timeout, (self.connector)(&self.endpoint))
            .await
            .map_err(|_| error(&format!("no connection within {:?}", self.connect_timeout)))?
            .map_err(|e| error(&e))?;
        let (sender, connection) = Builder::new()
            .initial_connection_window_size(CONNECTION_WINDOW)
            .initial_window_size(STREAM_WINDOW)
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
