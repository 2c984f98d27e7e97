//! The HTTP server: the router (everything goes to the gateway), its layers, the listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::gateway::Gateway;
use crate::layers;
use crate::metadata::Peer;

/// The router: every method and path goes to the gateway, behind the layer stack.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let edge = gateway.edge().clone();
    let settings = layers::Settings {
        cors: edge.cors.as_ref(),
        compression: edge.compression,
        max_concurrent_requests: edge.max_concurrent_requests,
    };
    layers::apply(Router::new().fallback(handle).with_state(gateway), settings)
}

async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    // Present when served by `serve`; absent when the router is driven without a socket.
    let ip = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    gateway.handle(request, Peer { ip, tls: false }).await
}

/// Serves HTTP/1.1 and HTTP/2 (cleartext) on `listener` until `shutdown` completes, then lets
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(gateway).into_make_service_with_connect_info::<SocketAddr>();
    // Responses are written whole; Nagle's algorithm would only hold their last segment back.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
