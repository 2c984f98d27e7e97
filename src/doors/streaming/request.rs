//! Client streams from HTTP: the request body is NDJSON, one message per line, and each line
//! goes upstream as soon as it has arrived; a body of any length passes in bounded memory.
//! A JSON body is accepted too: an array is a stream of its elements, anything else one
//! message.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::HeaderMap;
use http::header::CONTENT_TYPE;

use super::response::NDJSON;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::pipeline::{self, MediaType};
use crate::route::Route;
use crate::transcode::http_body::RawTarget;
use crate::upstream::RequestSink;

/// How a client stream's messages are laid out in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFormat {
    /// One JSON message per line.
    Ndjson,
    /// One JSON document: an array of messages, or one message.
    Json,
    /// Raw bytes into `google.api.HttpBody` messages, one per chunk as it arrives.
    Raw(RawTarget),
}

impl RequestFormat {
    /// From `Content-Type`: NDJSON or JSON; none at all reads as NDJSON (an empty body is an
    /// empty stream); anything else is 415.
    pub fn of(headers: &HeaderMap) -> Result<RequestFormat, GatewayError> {
        let Some(value) = headers.get(CONTENT_TYPE) else { return Ok(RequestFormat::Ndjson) };
        match MediaType::of(headers) {
            Some(media) if media.is(NDJSON) => Ok(RequestFormat::Ndjson),
            Some(media) if media.is_json() => Ok(RequestFormat::Json),
            _ => Err(GatewayError::UnsupportedMediaType { content_type: value.to_str().unwrap_or("").to_owned() }),
        }
    }
}

/// Turns a client stream's body into request messages for one route.
pub struct Messages<'a> {
    /// The gateway.
    pub gateway: &'a Gateway,
    /// The route's index.
    pub index: usize,
    /// The route, as its messages see it ([`super::message_route`]).
    pub route: std::borrow::Cow<'a, Route>,
    /// The path variables, applied to every message.
    pub values: &'a [String],
    /// The query string, applied to every message.
    pub query: Option<&'a str>,
    /// The request's content type, for raw (`google.api.HttpBody`) messages.
    pub content_type: &'a str,
}

impl Messages<'_> {
    /// Sends every message of `body` to `sink`, then ends the request stream. Stops at the
    /// first line that does not transcode.
    pub async fn pump(&self, format: RequestFormat, body: Body, sink: &mut RequestSink) -> Result<(), GatewayError> {
        match format {
            RequestFormat::Ndjson => self.pump_lines(body, sink).await?,
            RequestFormat::Json => self.pump_document(body, sink).await?,
            RequestFormat::Raw(target) => self.pump_raw(target, body, sink).await?,
        }
        sink.finish()?;
        Ok(())
    }

    async fn pump_lines(&self, body: Body, sink: &mut RequestSink) -> Result<(), GatewayError> {
        let mut lines = Lines::new(self.gateway.max_body_bytes());
        let mut chunks = body.into_data_stream();
        // The messages of the lines a chunk completes leave together: one write, not one each.
        let mut frames = BytesMut::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| pipeline::body_error(&e))?;
            lines.push(&chunk);
            while let Some((number, line)) = lines.next_line()? {
                self.encode(number, &line, &mut frames)?;
            }
            if !frames.is_empty() {
                sink.send_frames(frames.split().freeze()).await?;
            }
        }
        if let Some((number, line)) = lines.finish() {
            self.encode(number, &line, &mut frames)?;
            sink.send_frames(frames.freeze()).await?;
        }
        Ok(())
    }

    async fn pump_raw(&self, target: RawTarget, body: Body, sink: &mut RequestSink) -> Result<(), GatewayError> {
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| pipeline::body_error(&e))?;
            if chunk.is_empty() {
                continue;
            }
            let message = self.gateway.transcoder().encode_raw(
                &self.route,
                target,
                self.values,
                self.query,
                self.content_type,
                chunk,
            )?;
            sink.send(&message).await?;
        }
        Ok(())
    }

    async fn pump_document(&self, body: Body, sink: &mut RequestSink) -> Result<(), GatewayError> {
        let limit = self.gateway.max_body_bytes();
        let bytes = pipeline::collect_limited(body, limit).await?;
        if bytes.trim_ascii().is_empty() {
            return Ok(());
        }
        if bytes.trim_ascii_start().first() != Some(&b'[') {
            return self.send(1, &bytes, sink).await;
        }
        let elements: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&bytes).map_err(|e| {
            GatewayError::Transcode(crate::transcode::TranscodeError::InvalidJson {
                field: None,
                reason: e.to_string(),
            })
        })?;
        for (i, element) in elements.iter().enumerate() {
            self.send(i + 1, element.get().as_bytes(), sink).await?;
        }
        Ok(())
    }

    async fn send(&self, number: usize, line: &[u8], sink: &mut RequestSink) -> Result<(), GatewayError> {
        let mut frame = BytesMut::new();
        self.encode(number, line, &mut frame)?;
        sink.send_frames(frame.freeze()).await?;
        Ok(())
    }

    /// Transcodes line `number` and appends it, framed, to `frames`.
    fn encode(&self, number: usize, line: &[u8], frames: &mut BytesMut) -> Result<(), GatewayError> {
        let message = self
            .gateway
            .transcoder()
            .decode(self.index, &self.route, self.values, self.query, line)
            .map_err(|error| GatewayError::InvalidLine { line: number, error })?;
        crate::upstream::grpc::put_frame(frames, &message);
        Ok(())
    }
}

/// Splits a body into lines as its chunks arrive. Blank lines are skipped (but counted); a
/// line may not be longer than the body limit.
#[derive(Debug)]
pub struct Lines {
    buffer: BytesMut,
    /// How much of `buffer` is known to hold no line end.
    scanned: usize,
    /// Lines taken so far.
    number: usize,
    limit: usize,
}

impl Lines {
    /// Lines of at most `limit` bytes.
    pub fn new(limit: usize) -> Lines {
        Lines { buffer: BytesMut::new(), scanned: 0, number: 0, limit }
    }

    /// Adds a chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete, non-blank line and its number (from 1).
    pub fn next_line(&mut self) -> Result<Option<(usize, Bytes)>, GatewayError> {
        loop {
            let Some(end) = memchr::memchr(b'\n', &self.buffer[self.scanned..]).map(|i| self.scanned + i) else {
                self.scanned = self.buffer.len();
                if self.buffer.len() > self.limit {
                    return Err(GatewayError::LineTooLong { line: self.number + 1, limit: self.limit });
                }
                return Ok(None);
            };
            self.scanned = 0;
            self.number += 1;
            let line = self.buffer.split_to(end + 1).freeze();
            if line.len() - 1 > self.limit {
                return Err(GatewayError::LineTooLong { line: self.number, limit: self.limit });
            }
            if !line.trim_ascii().is_empty() {
                return Ok(Some((self.number, line)));
            }
        }
    }

    /// At the end of the body: its last line, if it did not end with a newline.
    pub fn finish(&mut self) -> Option<(usize, Bytes)> {
        if self.buffer.trim_ascii().is_empty() {
            return None;
        }
        self.number += 1;
        Some((self.number, self.buffer.split().freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(body: &[u8], chunk: usize, limit: usize) -> Result<Vec<(usize, String)>, GatewayError> {
        let mut lines = Lines::new(limit);
        let mut out = Vec::new();
        for piece in body.chunks(chunk) {
            lines.push(piece);
            while let Some((n, line)) = lines.next_line()? {
                out.push((n, String::from_utf8_lossy(line.trim_ascii()).into_owned()));
            }
        }
        if let Some((n, line)) = lines.finish() {
            out.push((n, String::from_utf8_lossy(line.trim_ascii()).into_owned()));
        }
        Ok(out)
    }

    #[test]
    fn lines_split_wherever_the_chunks_end_and_keep_their_numbers() {
        let body = b"{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}";
        for chunk in [1, 2, 3, 7, body.len()] {
            let lines = split(body, chunk, 100).unwrap();
            let expected = [(1, "{\"a\":1}"), (4, "{\"b\":2}"), (5, "{\"c\":3}")];
            assert_eq!(lines, expected.map(|(n, l)| (n, l.to_owned())), "chunks of {chunk}");
        }
        assert!(split(b"", 1, 10).unwrap().is_empty());
        assert!(split(b"\n\n", 1, 10).unwrap().is_empty());
    }

    #[test]
    fn a_line_over_the_limit_is_refused_with_its_number() {
        let error = split(b"{}\n{\"long\":\"xxxxxxxxxxxx\"}\n", 4, 10).unwrap_err();
        assert!(matches!(error, GatewayError::LineTooLong { line: 2, limit: 10 }), "{error:?}");
        // Refused before its end arrives: an endless line is not buffered.
        let mut lines = Lines::new(10);
        lines.push(&[b'x'; 11]);
        assert!(matches!(lines.next_line(), Err(GatewayError::LineTooLong { line: 1, .. })));
    }

    #[test]
    fn the_content_type_picks_the_format() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            RequestFormat::of(&headers)
        };
        assert_eq!(RequestFormat::of(&HeaderMap::new()).unwrap(), RequestFormat::Ndjson);
        assert_eq!(with("application/x-ndjson; charset=utf-8").unwrap(), RequestFormat::Ndjson);
        assert_eq!(with("application/json").unwrap(), RequestFormat::Json);
        assert!(matches!(with("text/plain"), Err(GatewayError::UnsupportedMediaType { .. })));
    }
}
