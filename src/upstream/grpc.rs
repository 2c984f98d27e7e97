//! The gRPC protocol over HTTP/2 (PROTOCOL-HTTP2.md): request headers, length-prefixed message
//! frames both ways, and the status in the trailers (or in the headers of a trailers-only
//! response).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, TE, USER_AGENT};
use http::{HeaderMap, HeaderValue, StatusCode};
use tonic::{Code, Status};

/// `Content-Type` of a gRPC request.
pub const GRPC_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/grpc");
const GRPC_STATUS: &str = "grpc-status";
const TRAILERS: HeaderValue = HeaderValue::from_static("trailers");
const AGENT: HeaderValue = HeaderValue::from_static(concat!("protogate/", env!("CARGO_PKG_VERSION")));

/// One message behind gRPC's five-byte prefix (not compressed, length as big-endian u32): a
/// unary request's whole body, or one message of a stream.
pub fn frame(message: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(5 + message.len());
    put_frame(&mut body, message);
    body.freeze()
}

/// Appends one framed message to `out`: several messages of a stream, sent as one write.
pub fn put_frame(out: &mut BytesMut, message: &[u8]) {
    out.reserve(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
}

/// Adds the headers gRPC requires to the request's metadata. A gRPC client's own content
/// type (`application/grpc+proto`, say) and user agent, passed through, are kept.
pub fn request_headers(headers: &mut HeaderMap, deadline: Option<Duration>) {
    headers.entry(CONTENT_TYPE).or_insert(GRPC_CONTENT_TYPE);
    headers.insert(TE, TRAILERS);
    headers.entry(USER_AGENT).or_insert(AGENT);
    if let Some(deadline) = deadline
        && let Ok(value) = HeaderValue::from_str(&timeout_header(deadline))
    {
        headers.insert(crate::metadata::GRPC_TIMEOUT, value);
    }
}

/// A `grpc-timeout` value: at most eight digits, in the finest unit that fits.
pub fn timeout_header(deadline: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = deadline.as_nanos();
    let candidates = [(1, 'n'), (1_000, 'u'), (1_000_000, 'm'), (1_000_000_000, 'S'), (60_000_000_000, 'M')];
    for (unit, suffix) in candidates {
        // Rounded up: a deadline is never sent shorter than it is.
        let value = nanos.div_ceil(unit);
        if value <= MAX {
            return format!("{value}{suffix}");
        }
    }
    format!("{}H", nanos.div_ceil(3_600_000_000_000).min(MAX))
}

/// What went wrong with a response, before the status: the call failed as gRPC says it fails.
pub fn status_for_http(status: StatusCode) -> Status {
    // PROTOCOL-HTTP2.md, "HTTP to gRPC Status Code Mapping".
    let code = match status {
        StatusCode::BAD_REQUEST => Code::Internal,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::Unimplemented,
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("the upstream answered HTTP {status} instead of a gRPC response"))
}

/// The status in a header block (the response headers of a trailers-only response, or the
/// trailers), if it holds one: `Ok` for success, the failure otherwise.
pub fn status_in(headers: &HeaderMap) -> Option<Result<(), Status>> {
    // Success, nearly every call, needs no `Status` (whose parsing allocates).
    if headers.get(GRPC_STATUS).is_some_and(|code| code == "0") {
        return Some(Ok(()));
    }
    let status = Status::from_header_map(headers)?;
    Some(if status.code() == Code::Ok { Ok(()) } else { Err(status) })
}

/// The one message of a unary response body, without its prefix.
pub fn single_message(mut body: Bytes, limit: usize) -> Result<Bytes, Status> {
    if body.is_empty() {
        return Err(Status::internal("the upstream sent no response message"));
    }
    if body.len() < 5 {
        return Err(Status::internal("the upstream's response ends inside a message prefix"));
    }
    if body[0] != 0 {
        // No `grpc-accept-encoding` is sent, so a compressed message breaks the protocol.
        return Err(Status::internal("the upstream compressed its response without being asked to"));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if len > limit {
        return Err(Status::out_of_range(format!(
            "the upstream's response message is {len} bytes, over the {limit}-byte limit"
        )));
    }
    if body.len() < 5 + len {
        return Err(Status::internal("the upstream's response ends inside a message"));
    }
    if body.len() > 5 + len {
        return Err(Status::internal("the upstream sent more than one response message"));
    }
    let _prefix = body.split_to(5);
    Ok(body)
}

/// Splits a response body, as its DATA frames arrive, into the messages of a stream.
#[derive(Debug)]
pub struct MessageReader {
    buffer: BytesMut,
    limit: usize,
}

impl MessageReader {
    /// A reader that refuses messages over `limit` bytes.
    pub fn new(limit: usize) -> MessageReader {
        MessageReader { buffer: BytesMut::new(), limit }
    }

    /// Adds the bytes of a DATA frame.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next whole message, if one is buffered.
    pub fn take(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buffer.len() < 5 {
            return Ok(None);
        }
        if self.buffer[0] != 0 {
            return Err(Status::internal("the upstream compressed a message without being asked to"));
        }
        let len = u32::from_be_bytes([self.buffer[1], self.buffer[2], self.buffer[3], self.buffer[4]]) as usize;
        if len > self.limit {
            return Err(Status::out_of_range(format!(
                "the upstream's response message is {len} bytes, over the {}-byte limit",
                self.limit
            )));
        }
        if self.buffer.len() < 5 + len {
            // Room for the rest, so the frames still to come extend it without reallocating.
            self.buffer.reserve(5 + len - self.buffer.len());
            return Ok(None);
        }
        let _prefix = self.buffer.split_to(5);
        Ok(Some(self.buffer.split_to(len).freeze()))
    }

    /// At the end of the body: an error if it stopped inside a message.
    pub fn finish(&self) -> Result<(), Status> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(Status::internal("the upstream's response ends inside a message"))
        }
    }
}

/// The status a stream reset by the upstream ends with (PROTOCOL-HTTP2.md, "Errors").
pub fn status_for_reset(reason: h2::Reason) -> Status {
    let code = match reason {
        h2::Reason::REFUSED_STREAM => Code::Unavailable,
        h2::Reason::CANCEL => Code::Cancelled,
        h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
        h2::Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
        _ => Code::Internal,
    };
    Status::new(code, format!("the upstream reset the stream: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_use_the_finest_unit_that_fits() {
        for (deadline, header) in [
            (Duration::from_nanos(1), "1n"),
            (Duration::from_millis(250), "250000u"),
            (Duration::from_secs(10), "10000000u"),
            (Duration::from_secs(1_000), "1000000m"),
            (Duration::from_secs(100_000), "100000S"),
            (Duration::from_secs(200_000_000), "3333334M"),
        ] {
            assert_eq!(timeout_header(deadline), header);
            let parsed = crate::metadata::parse_grpc_timeout(header).unwrap();
            assert!(parsed >= deadline, "never shorter than the deadline");
        }
        assert_eq!(timeout_header(Duration::from_secs(u64::MAX)), "99999999H", "saturates");
    }

    #[test]
    fn a_unary_body_holds_exactly_one_message() {
        let body = frame(b"hello");
        assert_eq!(&body[..], b"\x00\x00\x00\x00\x05hello");
        assert_eq!(single_message(body.clone(), 100).unwrap(), Bytes::from_static(b"hello"));
        assert_eq!(single_message(Bytes::new(), 100).unwrap_err().code(), Code::Internal);
        assert_eq!(single_message(body.slice(..7), 100).unwrap_err().code(), Code::Internal);
        assert_eq!(
            single_message([body.clone(), body.clone()].concat().into(), 100).unwrap_err().code(),
            Code::Internal
        );
        assert_eq!(single_message(body.clone(), 4).unwrap_err().code(), Code::OutOfRange);
        assert_eq!(
            single_message(Bytes::from_static(b"\x01\x00\x00\x00\x00"), 100).unwrap_err().code(),
            Code::Internal
        );
    }

    #[test]
    fn a_stream_body_splits_into_messages_whatever_the_frame_boundaries() {
        let body: Vec<u8> = [frame(b"one"), frame(b""), frame(&[7; 300])].concat();
        for chunk in [1, 2, 5, 8, 64, body.len()] {
            let mut reader = MessageReader::new(1_000);
            let mut messages = Vec::new();
            for piece in body.chunks(chunk) {
                reader.push(piece);
                while let Some(message) = reader.take().unwrap() {
                    messages.push(message);
                }
            }
            reader.finish().unwrap();
            assert_eq!(messages, [&b"one"[..], b"", &[7; 300]], "chunks of {chunk}");
        }
        let mut reader = MessageReader::new(1_000);
        reader.push(&frame(b"cut")[..6]);
        assert_eq!(reader.take().unwrap(), None);
        assert_eq!(reader.finish().unwrap_err().code(), Code::Internal);
        let mut reader = MessageReader::new(2);
        reader.push(&frame(b"big"));
        assert_eq!(reader.take().unwrap_err().code(), Code::OutOfRange);
    }

    #[test]
    fn http_errors_map_as_grpc_specifies() {
        assert_eq!(status_for_http(StatusCode::NOT_FOUND).code(), Code::Unimplemented);
        assert_eq!(status_for_http(StatusCode::SERVICE_UNAVAILABLE).code(), Code::Unavailable);
        assert_eq!(status_for_http(StatusCode::IM_A_TEAPOT).code(), Code::Unknown);
    }
}
