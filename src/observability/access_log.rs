//! The access log: one line per request, written when its response ends — JSON (one object
//! per line, for log pipelines) or a human format (for a terminal).
//!
//! A line holds what an operator needs to follow a request and find who failed it: time,
//! request id, trace id, client address, method, path, route template, gRPC method, upstream
//! and endpoint, HTTP and gRPC status, bytes each way, durations and, for a refusal or a
//! failure, why. No header value is logged — not `Authorization`, not cookies — and the path
//! is logged without its query string, which may carry tokens.
//!
//! Lines are formatted on the request's thread into a shared buffer, which a background thread
//! writes out every 100 ms: a request never waits on the output, and never pays for waking a
//! writer (a channel to a writer thread costs a futex wake-up per line, about 5% of a small
//! request's CPU). When the output falls 8 MiB behind, further lines are dropped and counted
//! (`protogate_access_log_dropped_lines_total`) rather than holding requests back.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{AccessLogConfig, AccessLogFormat};

/// How often the buffered lines are written out, at the latest.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Queued bytes that wake the writer before the interval is up. The two buffers lines pass
/// through (the queue, and the batch being written) then stay about this size at any request
/// rate; at 36,000 requests a second, 100 ms of lines would be 1.6 MB, held twice.
const WAKE_AT: usize = 64 * 1024;
/// The most bytes waiting to be written; lines beyond are dropped.
const MAX_PENDING: usize = 8 * 1024 * 1024;

/// The longest path logged; longer ones are cut (and marked with `…`).
const MAX_PATH: usize = 1024;
/// The longest error message logged.
const MAX_ERROR: usize = 512;

/// Where and how lines are written.
#[derive(Debug)]
pub struct AccessLog {
    human: bool,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// What the request threads and the writer thread share.
#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    stop: AtomicBool,
}

/// One request, as its line tells it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// When the request arrived (RFC 3339, UTC, milliseconds).
    pub time: SystemTime,
    /// The correlation id.
    pub request_id: &'a str,
    /// The W3C trace id.
    pub trace_id: &'a str,
    /// The client's address (through trusted proxies).
    pub client_ip: Option<IpAddr>,
    /// The HTTP method.
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The route template matched.
    pub route: Option<&'a str>,
    /// `pkg.Service/Method`.
    pub grpc_method: Option<&'a str>,
    /// The upstream's name.
    pub upstream: Option<&'a str>,
    /// The upstream endpoint the call went to.
    pub endpoint: Option<&'a str>,
    /// The HTTP status.
    pub status: u16,
    /// The gRPC status code name.
    pub grpc_status: Option<&'static str>,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes written.
    pub bytes_out: u64,
    /// Time to the end of the response, in milliseconds.
    pub duration_ms: Duration,
    /// Time the upstream took, in milliseconds.
    pub upstream_ms: Option<Duration>,
    /// False when the client went away before the response ended.
    pub completed: bool,
    /// Why the request was refused or failed.
    pub error: Option<&'a str>,
    /// The client's `User-Agent`.
    pub user_agent: Option<&'a str>,
}

impl AccessLog {
    /// Opens the configured output; `None` when the log is off.
    pub fn open(config: &AccessLogConfig) -> Result<Option<AccessLog>, String> {
        AccessLog::open_flushing_every(config, FLUSH_INTERVAL)
    }

    /// [`AccessLog::open`], with the writer's longest wait between writes.
    fn open_flushing_every(config: &AccessLogConfig, interval: Duration) -> Result<Option<AccessLog>, String> {
        let human = match config.format {
            AccessLogFormat::Off => return Ok(None),
            AccessLogFormat::Json => false,
            AccessLogFormat::Human => true,
        };
        let output: Box<dyn Write + Send> = match &config.path {
            Some(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Box::new(file)
            }
            None => Box::new(std::io::stdout()),
        };
        let shared = Arc::new(Shared::default());
        let writer = std::thread::Builder::new()
            .name("protogate-access-log".into())
            .spawn({
                let shared = shared.clone();
                move || write_out(&shared, output, interval)
            })
            .map_err(|e| format!("cannot start the access log writer: {e}"))?;
        Ok(Some(AccessLog { human, shared, writer: Some(writer) }))
    }

    /// Queues one request's line.
    pub fn write(&self, entry: &Entry<'_>) {
        let line = if self.human { human_line(entry) } else { json_line(entry) };
        let Ok(mut pending) = self.shared.pending.lock() else { return };
        let queued = pending.len();
        if queued + line.len() > MAX_PENDING {
            drop(pending);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.extend_from_slice(&line);
        drop(pending);
        if queued < WAKE_AT
            && queued + line.len() >= WAKE_AT
            && let Some(writer) = &self.writer
        {
            writer.thread().unpark();
        }
    }

    /// Lines dropped so far because the output fell behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for AccessLog {
    /// Writes out what is queued before the log goes.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(writer) = self.writer.take() {
            writer.thread().unpark();
            let _ = writer.join();
        }
    }
}

/// The writer thread: every `interval`, or when woken by [`WAKE_AT`] bytes queued, whatever has
/// been queued goes to `output` in one write; once more after a stop.
fn write_out(shared: &Shared, mut output: Box<dyn Write + Send>, interval: Duration) {
    let mut batch = Vec::new();
    let mut failing = false;
    loop {
        std::thread::park_timeout(interval);
        let stopping = shared.stop.load(Ordering::Relaxed);
        if let Ok(mut pending) = shared.pending.lock() {
            std::mem::swap(&mut *pending, &mut batch);
        }
        if !batch.is_empty() {
            match output.write_all(&batch).and_then(|()| output.flush()) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("the access log cannot be written: {e}");
                }
                Err(_) => {}
            }
            // Keeps its capacity for the next swap, unless a burst (an output that fell
            // behind) grew it past what the wake-ups keep it to.
            batch.clear();
            if batch.capacity() > 4 * WAKE_AT {
                batch.shrink_to(2 * WAKE_AT);
            }
        }
        if stopping {
            return;
        }
    }
}

/// The JSON line: one object, then a newline. Written field by field rather than through
/// serde's derive, which spent half of a request's logging time on 17 fields.
pub fn json_line(entry: &Entry<'_>) -> Vec<u8> {
    let mut line = JsonLine(Vec::with_capacity(512));
    line.0.extend_from_slice(b"{\"time\":\"");
    write_time(&mut line.0, entry.time);
    line.0.push(b'"');
    line.string("request_id", entry.request_id);
    line.string("trace_id", entry.trace_id);
    if let Some(ip) = entry.client_ip {
        line.key("client_ip");
        let _ = write!(line.0, "\"{ip}\"");
    }
    line.string("method", entry.method);
    line.string("path", &truncated(entry.path, MAX_PATH));
    line.optional("route", entry.route);
    line.optional("grpc_method", entry.grpc_method);
    line.optional("upstream", entry.upstream);
    line.optional("endpoint", entry.endpoint);
    line.number("status", u64::from(entry.status));
    line.optional("grpc_status", entry.grpc_status);
    line.number("bytes_in", entry.bytes_in);
    line.number("bytes_out", entry.bytes_out);
    line.millis("duration_ms", entry.duration_ms);
    if let Some(upstream) = entry.upstream_ms {
        line.millis("upstream_ms", upstream);
    }
    line.key("completed");
    line.0.extend_from_slice(if entry.completed { b"true" } else { b"false" });
    if let Some(error) = entry.error {
        line.string("error", &truncated(error, MAX_ERROR));
    }
    line.optional("user_agent", entry.user_agent);
    line.0.extend_from_slice(b"}\n");
    line.0
}

/// A JSON object being written; every key is a plain identifier.
struct JsonLine(Vec<u8>);

impl JsonLine {
    fn key(&mut self, key: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        // Most values (ids, routes, paths) need no escaping: copied as they are.
        if value.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
            self.0.push(b'"');
            self.0.extend_from_slice(value.as_bytes());
            self.0.push(b'"');
        } else {
            let _ = serde_json::to_writer(&mut self.0, value);
        }
    }

    fn optional(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.string(key, value);
        }
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        self.0.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// Milliseconds with microsecond precision: `1.234`.
    fn millis(&mut self, key: &str, duration: Duration) {
        self.key(key);
        let micros = duration.as_micros();
        self.0.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
        self.0.push(b'.');
        push_three_digits(&mut self.0, (micros % 1000) as u32);
    }
}

/// Appends `time` as humantime's `format_rfc3339_millis` writes it (`2026-12-02T21:54:16.123Z`).
/// The part up to the second is kept per thread and written anew only when the second changes:
/// a busy gateway writes thousands of lines a second, and the calendar arithmetic and the
/// formatting machinery cost more than the rest of the line.
fn write_time(out: &mut Vec<u8>, time: SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<Option<(u64, [u8; 19])>> = const { std::cell::Cell::new(None) };
    }
    let Ok(since_epoch) = time.duration_since(UNIX_EPOCH) else {
        // A clock set before 1970, which humantime cannot write (it panics): the epoch instead.
        return write_time(out, UNIX_EPOCH);
    };
    let seconds = since_epoch.as_secs();
    let prefix = match SECOND.get() {
        Some((cached, prefix)) if cached == seconds => Some(prefix),
        _ => {
            // `YYYY-MM-DDTHH:MM:SSZ`. Past the year 9999 humantime writes nothing and says so;
            // the line then has an empty time rather than none at all.
            // (Into a `String`: `io::Write` would panic on the formatter's error.)
            let mut whole = String::with_capacity(20);
            let second = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds));
            let written = std::fmt::Write::write_fmt(&mut whole, format_args!("{second}"));
            let prefix = written.ok().and_then(|()| <[u8; 19]>::try_from(whole.as_bytes().get(..19)?).ok());
            if let Some(prefix) = prefix {
                SECOND.set(Some((seconds, prefix)));
            }
            prefix
        }
    };
    if let Some(prefix) = prefix {
        out.extend_from_slice(&prefix);
        out.push(b'.');
        push_three_digits(out, since_epoch.subsec_millis());
        out.push(b'Z');
    }
}

/// Appends `n` (below 1,000) as three digits, zeros first.
fn push_three_digits(out: &mut Vec<u8>, n: u32) {
    let digit = |d: u32| b'0' + (d % 10) as u8;
    out.extend_from_slice(&[digit(n / 100), digit(n / 10), digit(n)]);
}

/// The human line: time, client, request line, status, size and duration, then `key=value`
/// pairs.
pub fn human_line(entry: &Entry<'_>) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(256);
    let client = entry.client_ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
    let _ = write!(
        line,
        "{} {client} \"{} {}\" {} {} {}B {:.3}ms id={}",
        humantime::format_rfc3339_millis(entry.time),
        entry.method,
        escape(&truncated(entry.path, MAX_PATH)),
        entry.status,
        entry.grpc_status.unwrap_or("-"),
        entry.bytes_out,
        entry.duration_ms.as_secs_f64() * 1000.0,
        entry.request_id,
    );
    let pairs = [
        ("route", entry.route),
        ("grpc", entry.grpc_method),
        ("upstream", entry.upstream),
        ("endpoint", entry.endpoint),
    ];
    for (key, value) in pairs {
        if let Some(value) = value {
            let _ = write!(line, " {key}={}", escape(value));
        }
    }
    if let Some(upstream) = entry.upstream_ms {
        let _ = write!(line, " upstream_ms={:.3}", upstream.as_secs_f64() * 1000.0);
    }
    if entry.bytes_in > 0 {
        let _ = write!(line, " in={}B", entry.bytes_in);
    }
    if !entry.completed {
        line.push_str(" incomplete");
    }
    let _ = write!(line, " trace={}", entry.trace_id);
    if let Some(error) = entry.error {
        let _ = write!(line, " error=\"{}\"", escape(&truncated(error, MAX_ERROR)).replace('"', "'"));
    }
    line.push('\n');
    line.into_bytes()
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// Control characters written as escapes: one request, one line.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars().flat_map(char::escape_default).collect::<String>().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            request_id: "req-1",
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            client_ip: "203.0.113.9".parse().ok(),
            method: "GET",
            path: "/v1/users/7",
            route: Some("/v1/users/{id}"),
            grpc_method: Some("example.users.v1.UserService/GetUser"),
            upstream: Some("users"),
            endpoint: Some("http://127.0.0.1:50051"),
            status: 404,
            grpc_status: Some("NOT_FOUND"),
            bytes_in: 0,
            bytes_out: 87,
            duration_ms: Duration::from_micros(1234),
            upstream_ms: Some(Duration::from_micros(1001)),
            completed: true,
            error: Some("upstream users answered NOT_FOUND: no user 7"),
            user_agent: Some("curl/8.5.0"),
        }
    }

    #[test]
    fn the_json_line_is_one_object() {
        let line = json_line(&entry());
        assert_eq!(line.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(value["request_id"], "req-1");
        assert_eq!(value["route"], "/v1/users/{id}");
        assert_eq!(value["status"], 404);
        assert_eq!(value["grpc_status"], "NOT_FOUND");
        assert_eq!(value["duration_ms"], 1.234);
        assert_eq!(value["upstream_ms"], 1.001);
        assert_eq!(value["client_ip"], "203.0.113.9");
        assert_eq!(value["completed"], true);
        assert_eq!(value["user_agent"], "curl/8.5.0");
        assert_eq!(value.as_object().unwrap().len(), 19, "{value}");
    }

    #[test]
    fn times_are_written_as_humantime_writes_them() {
        let mut random = crate::test_util::Gen::new(7);
        let mut times = Vec::new();
        for _ in 0..20_000 {
            // Up to the year 2200, each followed by a time up to a second later: mostly the
            // same second (the kept part), sometimes the next.
            let time = SystemTime::UNIX_EPOCH + Duration::from_micros(random.below(7_258_118_400_000_000));
            times.extend([time, time + Duration::from_millis(random.below(1_000))]);
        }
        times.push(SystemTime::UNIX_EPOCH);
        for (time, text) in [
            (SystemTime::UNIX_EPOCH - Duration::from_secs(1), "1970-01-01T00:00:00.000Z"),
            (SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_800), ""),
        ] {
            let mut out = Vec::new();
            write_time(&mut out, time);
            assert_eq!(String::from_utf8(out).unwrap(), text, "a time humantime cannot write");
        }
        times.push(SystemTime::UNIX_EPOCH + Duration::from_millis(999));
        for time in times {
            let mut out = Vec::new();
            write_time(&mut out, time);
            assert_eq!(String::from_utf8(out).unwrap(), humantime::format_rfc3339_millis(time).to_string());
        }
    }

    #[test]
    fn durations_are_milliseconds_to_the_microsecond() {
        for (micros, text) in [(0, "0.000"), (7, "0.007"), (1_234, "1.234"), (1_000_050, "1000.050")] {
            let mut line = JsonLine(Vec::new());
            line.millis("d", Duration::from_micros(micros));
            assert_eq!(String::from_utf8(line.0).unwrap(), format!(",\"d\":{text}"));
        }
    }

    #[test]
    fn strings_that_need_escaping_are_escaped() {
        let agent = "quote\" back\\ tab\t é \u{1} end";
        let line = json_line(&Entry { user_agent: Some(agent), upstream: None, upstream_ms: None, ..entry() });
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["user_agent"], agent);
        assert!(value.get("upstream").is_none() && value.get("upstream_ms").is_none());
        let short = json_line(&Entry { duration_ms: Duration::from_micros(7), ..entry() });
        let value: serde_json::Value = serde_json::from_slice(&short).unwrap();
        assert_eq!(value["duration_ms"], 0.007);
    }

    #[test]
    fn the_human_line_reads_left_to_right() {
        let line = String::from_utf8(human_line(&entry())).unwrap();
        assert!(
            line.starts_with(
                "2023-11-14T22:13:20.123Z 203.0.113.9 \"GET /v1/users/7\" 404 NOT_FOUND 87B 1.234ms id=req-1 route=/v1/users/{id}"
            ),
            "{line}"
        );
        assert!(line.ends_with("error=\"upstream users answered NOT_FOUND: no user 7\"\n"), "{line}");
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn a_queue_past_the_wake_mark_is_written_before_the_interval_is_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig { format: AccessLogFormat::Json, path: Some(path.clone()) };
        // An interval no test waits out: only the wake-up can write these lines.
        let log = AccessLog::open_flushing_every(&config, Duration::from_secs(3600)).unwrap().unwrap();
        let line = json_line(&entry()).len();
        // The last line crosses the mark, so every line is queued before the wake-up.
        let lines = WAKE_AT.div_ceil(line);
        for _ in 0..lines {
            log.write(&entry());
        }
        let written = || std::fs::metadata(&path).map_or(0, |m| m.len() as usize);
        for _ in 0..500 {
            if written() >= lines * line {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(written(), lines * line);
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn long_or_odd_values_stay_on_one_bounded_line() {
        let path = format!("/{}", "é".repeat(2000));
        let error = "line one\nline two";
        let long = Entry { path: &path, error: Some(error), ..entry() };
        let line = json_line(&long);
        assert!(line.len() < 2 * MAX_PATH + MAX_ERROR + 1024);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let human = human_line(&long);
        assert_eq!(human.iter().filter(|b| **b == b'\n').count(), 1);
    }
}
