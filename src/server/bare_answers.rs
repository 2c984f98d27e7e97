//! hyper answers an HTTP/1.1 request it cannot parse by itself — 400 for a malformed request
//! line or header, 414 for a URI too long, 431 for a head over its buffer — with a status line
//! and no body, and closes the connection. The gateway's every answer is the contract's JSON,
//! so the connection's writes pass through [`JsonAnswers`], which replaces such a bare answer
//! with the same status and a `google.rpc.Status` body.
//!
//! Only those answers are touched: an answer hyper writes alone (no handler ran), with one of
//! those statuses and `content-length: 0`. The gateway's own errors always carry a body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};

/// An HTTP/1.1 connection's I/O whose bare parse-error answers are given JSON bodies.
pub struct JsonAnswers<T> {
    inner: T,
    /// A replacement answer still to be written, and how much of it is.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> JsonAnswers<T> {
    /// Wraps a connection's I/O.
    pub fn new(inner: T) -> Self {
        JsonAnswers { inner, pending: None }
    }
}

/// The JSON answer for hyper's bare answer `head`, if it is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    // Every write passes here: a bare answer is small, written in one piece, and a 4xx.
    if head.len() > 512 || !head.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let (status_line, rest) = text.split_once("\r\n")?;
    let status = status_line.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let message = match status {
        "400" => "the request is not well-formed HTTP/1.1",
        "414" => "the request URI is too long",
        "431" => "the request headers are over the limit",
        _ => return None,
    };
    if !rest.ends_with("\r\n\r\n") || !rest.lines().any(|line| line.eq_ignore_ascii_case("content-length: 0")) {
        return None;
    }
    // 400 → INVALID_ARGUMENT (3); 414 and 431 → RESOURCE_EXHAUSTED (8).
    let code = if status == "400" { 3 } else { 8 };
    let body = format!(r#"{{"code":{code},"message":"{message}","details":[]}}"#);
    let headers: String = rest
        .lines()
        .filter(|line| !line.is_empty() && !line.to_ascii_lowercase().starts_with("content-length:"))
        .map(|line| format!("{line}\r\n"))
        .collect();
    Some(
        format!(
            "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: Write + Unpin> JsonAnswers<T> {
    /// Writes what is left of a replacement answer; ready once it is all written.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: Read + Unpin> Read for JsonAnswers<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for JsonAnswers<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.pending.is_some() {
            std::task::ready!(self.poll_pending(cx))?;
        }
        if let Some(answer) = replacement(buf) {
            self.pending = Some((answer, 0));
            std::task::ready!(self.poll_pending(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A bare answer is one buffer: the head alone.
        if let [only] = bufs {
            return self.poll_write(cx, only);
        }
        if self.pending.is_some() {
            std::task::ready!(self.poll_pending(cx))?;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_parse_error_answers_get_a_json_body() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 07:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(replacement(bare).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{head}");
        assert!(head.contains("content-type: application/json") && head.contains("date: Wed"), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], 8);
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let bad = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert!(String::from_utf8(replacement(bad).unwrap()).unwrap().ends_with(r#""details":[]}"#));
    }

    #[test]
    fn every_other_write_is_left_alone() {
        for other in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n",
            b"{\"code\":3}",
        ] {
            assert!(replacement(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }
}
