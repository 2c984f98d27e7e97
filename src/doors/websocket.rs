//! Streaming methods over WebSocket, on the route's own path: one JSON message per text frame
//! each way, and the call's final status in the close frame (RFC 6455 §5.5.1), as
//! `google.rpc.Status` JSON: `{"code": 0, "message": ""}` when it succeeded.
//!
//! - Client and bidirectional streams: each text frame is a request message; an empty text
//!   frame ends the request stream (the WebSocket has no half-close of its own), after which
//!   the responses still arrive.
//! - Server streams: the request message comes from the path and query, as over plain HTTP.
//! - The client closing the socket, or vanishing, cancels the call.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use futures_util::{SinkExt, StreamExt};
use http::header::{HOST, ORIGIN, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, Response};
use serde::Serialize;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::metadata::Peer;
use crate::metadata::origin::OriginPattern;
use crate::pipeline::{self, CallKind};
use crate::policy::Access;
use crate::upstream::{PendingResponse, RequestSink};

/// The longest close reason a close frame can carry: 125 bytes less the 2-byte code.
const MAX_CLOSE_REASON: usize = 123;

/// Whether the request is a WebSocket handshake.
pub fn is_upgrade(parts: &Parts) -> bool {
    parts
        .headers
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}

/// Answers the handshake and runs the call on the socket. Everything that can fail before
/// the call starts (the handshake itself, metadata, a server stream's request message) fails
/// as an HTTP error instead.
pub async fn upgrade(
    gateway: Arc<Gateway>,
    index: usize,
    values: Vec<String>,
    mut parts: Parts,
    peer: Peer,
    access: &Access<'_>,
) -> Result<Response<Body>, GatewayError> {
    // Browsers let any page open a WebSocket anywhere; the Origin is the only guard.
    if !origin_allowed(&gateway, &parts.headers) {
        let origin = parts.headers.get(ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        return Err(GatewayError::OriginRefused { origin });
    }
    let handshake = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|rejection| GatewayError::WebSocketHandshake { reason: rejection.body_text() })?;
    let route = gateway.route_at(index);
    // A server stream's one request message comes from the path and query.
    let request = if route.method.is_client_streaming() {
        None
    } else {
        Some(gateway.transcoder().decode(index, route, &values, parts.uri.query(), b"")?)
    };
    let call = pipeline::http_call_target(&gateway, index, &parts, peer, CallKind::Stream, access)?;
    // The client's stream seat is taken before the handshake (a 429 refuses it) and held
    // for the whole session.
    let (metadata, deadline, seat) = (call.metadata, call.deadline, call.seat);
    let query = parts.uri.query().map(str::to_owned);
    let max_message = gateway.max_body_bytes();
    Ok(handshake.max_message_size(max_message).on_upgrade(move |socket| async move {
        let session = Session { gateway, index, values, query };
        session.run(socket, request, metadata, deadline).await;
        drop(seat);
    }))
}

/// Whether a handshake's `Origin` may open a socket: any origin `[cors]` allows, or without
/// `[cors]` only the gateway's own. Clients that are not browsers send no `Origin`.
fn origin_allowed(gateway: &Gateway, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else { return headers.get(ORIGIN).is_none() };
    match gateway.cors() {
        Some(cors) => cors
            .allow_origins
            .iter()
            .filter_map(|pattern| OriginPattern::parse(pattern).ok())
            .any(|pattern| pattern.matches(origin)),
        None => {
            let host = headers.get(HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
            origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
        }
    }
}

/// One call on one socket.
struct Session {
    gateway: Arc<Gateway>,
    index: usize,
    values: Vec<String>,
    query: Option<String>,
}

/// How a session ended.
enum End {
    /// The call ended with this status (OK or not): tell the client in the close frame.
    Status(Result<(), GatewayError>),
    /// The client closed the socket or went away: nobody to tell.
    ClientLeft,
}

impl Session {
    async fn run(
        self,
        socket: WebSocket,
        request: Option<bytes::Bytes>,
        metadata: HeaderMap,
        deadline: Option<std::time::Duration>,
    ) {
        let _in_flight = self.gateway.streams().start();
        let (mut outgoing, mut incoming) = socket.split();
        let end = async {
            let route = self.gateway.route_at(self.index);
            let upstream = match pipeline::upstream_for(&self.gateway, self.index) {
                Ok(upstream) => upstream,
                Err(e) => return End::Status(Err(e)),
            };
            let (mut sink, pending) = match upstream.open(route.grpc_path.clone(), metadata, deadline).await {
                Ok(call) => call,
                Err(e) => return End::Status(Err(e.into())),
            };
            if let Some(message) = request {
                let sent = match sink.send(&message).await {
                    Ok(()) => sink.finish(),
                    Err(e) => Err(e),
                };
                if let Err(e) = sent {
                    return End::Status(Err(e.into()));
                }
            }
            tokio::select! {
                status = self.responses(pending, &mut outgoing) => status,
                end = self.requests(&mut incoming, &mut sink) => end,
            }
        }
        .await;
        if let End::Status(status) = end {
            let frame = self.close_frame(status);
            // The client may be gone already; there is nobody left to tell then.
            let _ = outgoing.send(Message::Close(Some(frame))).await;
        }
    }

    /// Upstream messages to text frames, until the call ends.
    async fn responses(
        &self,
        pending: PendingResponse,
        outgoing: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    ) -> End {
        let mut responses = match pending.headers().await {
            Ok(responses) => responses,
            Err(e) => return End::Status(Err(e.into())),
        };
        let route = self.gateway.route_at(self.index);
        loop {
            let wire = match responses.next().await {
                Ok(Some(wire)) => wire,
                Ok(None) => return End::Status(Ok(())),
                Err(e) => return End::Status(Err(e.into())),
            };
            let json = match self.gateway.transcoder().render(self.index, route, &wire) {
                Ok(json) => json,
                Err(e) => return End::Status(Err(e.into())),
            };
            let Ok(text) = Utf8Bytes::try_from(json) else {
                return End::Status(Err(GatewayError::WebSocketFrame { reason: "a response is not UTF-8".into() }));
            };
            if outgoing.send(Message::Text(text)).await.is_err() {
                return End::ClientLeft;
            }
        }
    }

    /// Text frames to upstream messages, until the client leaves or sends something wrong.
    /// Never ends with success: the call's end comes from the responses.
    async fn requests(
        &self,
        incoming: &mut futures_util::stream::SplitStream<WebSocket>,
        sink: &mut RequestSink,
    ) -> End {
        let route = pipeline::message_route(self.gateway.route_at(self.index));
        let mut open = route.method.is_client_streaming();
        let mut number = 0;
        while let Some(frame) = incoming.next().await {
            let text = match frame {
                Ok(Message::Text(text)) => text,
                Ok(Message::Binary(_)) => {
                    let reason = "binary frames are not accepted: send each message as JSON in a text frame".into();
                    return End::Status(Err(GatewayError::WebSocketFrame { reason }));
                }
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) | Err(_) => return End::ClientLeft,
            };
            number += 1;
            if !open {
                let reason = format!("frame {number}: the request stream has already ended");
                return End::Status(Err(GatewayError::WebSocketFrame { reason }));
            }
            if text.as_str().trim().is_empty() {
                open = false;
                if let Err(e) = sink.finish() {
                    return End::Status(Err(e.into()));
                }
                continue;
            }
            let query = self.query.as_deref();
            let decoded = self.gateway.transcoder().decode(self.index, &route, &self.values, query, text.as_bytes());
            let message = match decoded {
                Ok(message) => message,
                Err(error) => return End::Status(Err(GatewayError::InvalidLine { line: number, error })),
            };
            if let Err(e) = sink.send(&message).await {
                // The upstream stopped reading: its status, from the responses, says why.
                tracing::debug!("request stream closed by the upstream: {e}");
                std::future::pending::<()>().await;
            }
        }
        End::ClientLeft
    }

    /// The close frame for the call's status.
    fn close_frame(&self, status: Result<(), GatewayError>) -> CloseFrame {
        let (code, reason) = match status {
            Ok(()) => (close_code::NORMAL, close_reason(0, "", None)),
            Err(error) => {
                let code = match error {
                    GatewayError::WebSocketFrame { .. } | GatewayError::InvalidLine { .. } => close_code::INVALID,
                    _ => close_code::ERROR,
                };
                let (grpc, _) = error.code();
                // A close reason holds 123 bytes: no room for the request id's detail.
                let response = self.gateway.error_response(error, None);
                let details = serde_json::from_slice::<serde_json::Value>(response.body()).ok();
                let message = details.as_ref().and_then(|d| d["message"].as_str()).unwrap_or("").to_owned();
                (code, close_reason(grpc as i32, &message, details.as_ref().map(|d| &d["details"])))
            }
        };
        CloseFrame { code, reason: reason.into() }
    }
}

/// The status JSON for a close frame, shortened to fit: the details go first, then the
/// message is cut (at a character boundary) until it fits.
fn close_reason(code: i32, message: &str, details: Option<&serde_json::Value>) -> String {
    #[derive(Serialize)]
    struct Reason<'a> {
        code: i32,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        details: Option<&'a serde_json::Value>,
    }
    let render = |message: &str, details| serde_json::to_string(&Reason { code, message, details }).unwrap_or_default();
    let full = render(message, details.filter(|d| d.as_array().is_some_and(|a| !a.is_empty())));
    if full.len() <= MAX_CLOSE_REASON {
        return full;
    }
    let mut message = message.to_owned();
    loop {
        let text = render(&message, None);
        if text.len() <= MAX_CLOSE_REASON || message.is_empty() {
            return text;
        }
        message.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_in_a_close_frame() {
        assert_eq!(close_reason(0, "", None), r#"{"code":0,"message":""}"#);
        let long = "é".repeat(200);
        let reason = close_reason(5, &long, None);
        assert!(reason.len() <= MAX_CLOSE_REASON, "{}", reason.len());
        let parsed: serde_json::Value = serde_json::from_str(&reason).unwrap();
        assert_eq!(parsed["code"], 5);
        assert!(long.starts_with(parsed["message"].as_str().unwrap()));
        let details = serde_json::json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "X"}]);
        let with_details = close_reason(9, "short", Some(&details));
        assert!(with_details.contains("ErrorInfo"), "{with_details}");
        let dropped = close_reason(9, &"m".repeat(100), Some(&details));
        assert!(!dropped.contains("details") && dropped.len() <= MAX_CLOSE_REASON, "{dropped}");
    }
}
