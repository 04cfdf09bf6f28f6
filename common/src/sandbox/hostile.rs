//! `/hostile/{mode}`: a catalogue of misbehaving HTTP servers, on the
//! sandbox's own port.
//!
//! Several of these behaviours cannot be produced by a correct HTTP stack
//! (axum/hyper will not write a garbage status line, lie about a
//! Content-Length or end headers early), so the sandbox's listener
//! (`SplitListener`) peeks at the request line of every new connection:
//! `/hostile/...` connections go to the raw writer in this module, every
//! other connection goes to axum unchanged. Each hostile connection serves
//! exactly one request and then closes (or hangs, where that is the point).
//!
//! A keep-alive connection that already served a normal request cannot be
//! handed over; a `/hostile/` request arriving on one gets a `307` to the
//! same URL with `Connection: close`, so a redirect-following client
//! retries on a fresh connection and meets the hostile mode.
//!
//! Server resources stay bounded in every mode: bodies and headers are
//! written from small static buffers (never accumulated), endless modes stop
//! at the first failed write (the client went away), hanging modes stop when
//! the client closes, every connection ends after [`MAX_DELAY`] or at
//! [`Sandbox::shutdown`](super::Sandbox::shutdown), and at most
//! [`MAX_HOSTILE_CONNECTIONS`] hostile connections are open at once.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::{MAX_BYTES, MAX_DELAY, SharedState, pattern_byte};

/// Every mode, with what it does (the sandbox docs and `sandbox-server`
/// print this table).
pub const HOSTILE_MODES: &[(&str, &str)] = &[
    (
        "garbage-status",
        "`HTTP/1.1 two-hundred OKish`: a status line that is not HTTP",
    ),
    (
        "close-mid-headers",
        "a status line and half a header, then close",
    ),
    (
        "slow-body",
        "200 with Content-Length N (`?bytes=N`, default 1000), body at 1 byte/s",
    ),
    (
        "short-body-close",
        "Content-Length N (`?bytes=`), N/2 bytes sent, then close",
    ),
    (
        "short-body-hang",
        "Content-Length N (`?bytes=`), N/2 bytes sent, then the connection hangs open",
    ),
    ("endless-chunked", "200 chunked, a body that never ends"),
    (
        "endless-length",
        "200 with Content-Length 1 PiB and a body that never ends",
    ),
    (
        "huge-headers",
        "one 1 MiB header (`X-Huge`), then a 2-byte body",
    ),
    (
        "endless-headers",
        "a status line, then header lines forever",
    ),
    (
        "gzip-bomb",
        "`Content-Encoding: gzip`, ~1 MiB on the wire that inflates to 1 GiB of zeros",
    ),
    (
        "retry-after-max",
        "429 (`?status=503`) with `Retry-After: 18446744073709551615` and a small JSON body",
    ),
    (
        "retry-after-huge",
        "429 (`?status=503`) with `Retry-After: 999999999`",
    ),
    (
        "retry-after-past-date",
        "429 (`?status=503`) with `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`",
    ),
    (
        "retry-after-garbage",
        "429 (`?status=503`) with `Retry-After: soon, maybe`",
    ),
    (
        "retry-after-negative",
        "429 (`?status=503`) with `Retry-After: -5`",
    ),
    ("redirect-loop", "302 to itself, forever"),
    (
        "bad-range",
        "N bytes (`?bytes=`, >= 16); any Range gets a 206 whose Content-Range is 7 bytes off the request",
    ),
    (
        "changing",
        "N bytes (`?bytes=`) whose content and ETag change on every request; Range and If-Range honoured",
    ),
    (
        "no-length-cut",
        "no Content-Length, not chunked: N bytes (`?bytes=`) then a clean close (undetectable truncation)",
    ),
    ("hang", "reads the request and never answers"),
];

/// The most hostile connections open at once; more are closed at accept.
pub const MAX_HOSTILE_CONNECTIONS: usize = 1024;
/// The body length modes default to without `?bytes=`.
pub const DEFAULT_BYTES: u64 = 1000;
/// What `gzip-bomb` inflates to.
pub const GZIP_BOMB_INFLATED: u64 = 1 << 30;
/// The Content-Length `endless-length` announces (1 PiB).
pub const ENDLESS_LENGTH: u64 = 1 << 50;
/// The size of the one header `huge-headers` sends.
pub const HUGE_HEADER_BYTES: usize = 1 << 20;
/// `slow-body` is capped so one request cannot hold a connection for days.
const MAX_SLOW_BYTES: u64 = 86_400;
/// How long the listener waits for a new connection's request line before
/// handing it to axum anyway.
const CLASSIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of request head the raw writer reads.
const MAX_HEAD: usize = 64 * 1024;
const CHUNK: usize = 16 * 1024;
const PREFIX: &[u8] = b"/hostile/";

/// What the hostile modes share across connections.
#[derive(Debug)]
pub(super) struct HostileState {
    /// `changing`'s version: one step per request.
    version: AtomicU64,
    /// Bounds the open hostile connections.
    slots: Arc<Semaphore>,
}

impl Default for HostileState {
    fn default() -> Self {
        Self {
            version: AtomicU64::new(0),
            slots: Arc::new(Semaphore::new(MAX_HOSTILE_CONNECTIONS)),
        }
    }
}

type Conn = (TcpStream, SocketAddr);

/// The sandbox's listener: hands `/hostile/` connections to the raw writer
/// and yields every other connection to axum.
pub(super) struct SplitListener {
    listener: TcpListener,
    state: SharedState,
    normal_tx: mpsc::Sender<Conn>,
    normal_rx: mpsc::Receiver<Conn>,
}

impl SplitListener {
    pub(super) fn new(listener: TcpListener, state: SharedState) -> Self {
        let (normal_tx, normal_rx) = mpsc::channel(64);
        Self {
            listener,
            state,
            normal_tx,
            normal_rx,
        }
    }
}

impl axum::serve::Listener for SplitListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> Conn {
        loop {
            tokio::select! {
                Some(conn) = self.normal_rx.recv() => return conn,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let state = self.state.clone();
                        let normal = self.normal_tx.clone();
                        self.state.tasks.spawn(route(stream, addr, state, normal));
                    }
                    Err(err) => {
                        // Out of descriptors and the like: back off, as axum does.
                        tracing::warn!("sandbox accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Classifies one new connection and serves or forwards it.
async fn route(
    stream: TcpStream,
    addr: SocketAddr,
    state: SharedState,
    normal: mpsc::Sender<Conn>,
) {
    let hostile = tokio::select! {
        hostile = is_hostile(&stream) => hostile,
        () = state.shutdown.cancelled() => return,
    };
    if !hostile {
        tokio::select! {
            // Err: axum stopped accepting (shutdown); the connection closes.
            _sent = normal.send((stream, addr)) => {}
            () = state.shutdown.cancelled() => {}
        }
        return;
    }
    let Ok(_slot) = state.hostile.slots.clone().try_acquire_owned() else {
        tracing::warn!("more than {MAX_HOSTILE_CONNECTIONS} hostile connections; closing one");
        return;
    };
    serve(stream, &state).await;
}

/// Peeks (without consuming) until the request target is known to start
/// with `/hostile/` or not.
async fn is_hostile(stream: &TcpStream) -> bool {
    let deadline = Instant::now() + CLASSIFY_TIMEOUT;
    let mut buf = [0u8; 64];
    let mut pause = Duration::from_millis(1);
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        if let Some(decided) = decide(&buf[..n]) {
            return decided;
        }
        if n == buf.len() || Instant::now() + pause > deadline {
            return false;
        }
        // Peek returns at once while the first bytes sit in the buffer, so
        // wait a little for the rest of the request line.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// `Some(true)` once `prefix` is `METHOD /hostile/`, `Some(false)` once it
/// cannot be, `None` while it is too short to tell.
fn decide(prefix: &[u8]) -> Option<bool> {
    let Some(space) = prefix.iter().position(|&b| b == b' ') else {
        let could_be_method = prefix.len() <= 16 && prefix.iter().all(u8::is_ascii_uppercase);
        return if could_be_method { None } else { Some(false) };
    };
    if space == 0 {
        return Some(false);
    }
    let target = &prefix[space + 1..];
    let k = target.len().min(PREFIX.len());
    if target[..k] != PREFIX[..k] {
        Some(false)
    } else if k == PREFIX.len() {
        Some(true)
    } else {
        None
    }
}

/// The axum route for `/hostile/...` on a reused keep-alive connection: a
/// 307 to the same URL that closes this connection, so the retry arrives on
/// a fresh one and reaches the raw writer.
pub(super) async fn reused_connection(uri: Uri) -> Response {
    let location = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), ToString::to_string);
    let mut response = (
        StatusCode::TEMPORARY_REDIRECT,
        "hostile modes are served on a fresh connection; retry this URL\n",
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    response
}

/// One parsed request head.
#[derive(Debug)]
struct Head {
    mode: String,
    query: HashMap<String, String>,
    /// Lower-case names.
    headers: HashMap<String, String>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Serves one hostile request on `stream`, bounded by [`MAX_DELAY`] and the
/// sandbox's shutdown.
async fn serve(mut stream: TcpStream, state: &SharedState) {
    // Err: the peer is already gone; the writes below will say so.
    let _nodelay = stream.set_nodelay(true);
    let head = tokio::select! {
        head = read_head(&mut stream) => head,
        () = state.shutdown.cancelled() => return,
    };
    let Some(head) = head else {
        return;
    };
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    let outcome = tokio::select! {
        outcome = respond(&mut stream, &head, state) => outcome,
        () = state.shutdown.cancelled() => Ok(()),
        () = tokio::time::sleep(MAX_DELAY) => Ok(()),
    };
    if let Err(err) = outcome {
        // The expected end of every endless mode: the client went away.
        tracing::debug!("hostile {} ended: {err}", head.mode);
    }
    // A FIN, not a reset, so a close-delimited body arrives whole. Err: the
    // peer is gone already, which is also a close.
    let _closed = stream.shutdown().await;
}

/// Reads and parses the request head (and discards a small body), or
/// `None` if the peer sent something unusable or went away.
async fn read_head(stream: &mut TcpStream) -> Option<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = tokio::time::timeout(CLASSIFY_TIMEOUT, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mode = path.strip_prefix("/hostile/")?.to_owned();
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    // A request body (unusual for these GETs) is read and dropped, up to a
    // bound, so closing afterwards sends a FIN rather than a reset.
    let body_len = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_HEAD);
    let mut left = body_len.saturating_sub(buf.len() - end - 4);
    while left > 0 {
        let want = left.min(chunk.len());
        let n = tokio::time::timeout(CLASSIFY_TIMEOUT, stream.read(&mut chunk[..want]))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        left -= n;
    }
    Some(Head {
        mode,
        query,
        headers,
    })
}

/// `?bytes=N` within `min..=max`, or an error message.
fn bytes_param(head: &Head, min: u64, max: u64) -> Result<u64, String> {
    match head.query.get("bytes") {
        None => Ok(DEFAULT_BYTES.clamp(min, max)),
        Some(raw) => match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "bytes must be an integer in {min}..={max}, got {raw:?}"
            )),
        },
    }
}

async fn respond(stream: &mut TcpStream, head: &Head, state: &SharedState) -> io::Result<()> {
    let result = match head.mode.as_str() {
        "garbage-status" => {
            stream
                .write_all(b"HTTP/1.1 two-hundred OKish\r\nContent-Length: 2\r\n\r\nok")
                .await
        }
        "close-mid-headers" => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/js")
                .await
        }
        "slow-body" => match bytes_param(head, 1, MAX_SLOW_BYTES) {
            Ok(n) => slow_body(stream, n).await,
            Err(message) => bad_request(stream, &message).await,
        },
        "short-body-close" | "short-body-hang" => match bytes_param(head, 2, MAX_BYTES) {
            Ok(n) => {
                write_head(stream, "200 OK", &[("Content-Length", n.to_string())]).await?;
                write_pattern(stream, 0, n / 2, 0).await?;
                if head.mode == "short-body-hang" {
                    wait_for_close(stream).await;
                }
                Ok(())
            }
            Err(message) => bad_request(stream, &message).await,
        },
        "endless-chunked" => endless_chunked(stream).await,
        "endless-length" => {
            write_head(
                stream,
                "200 OK",
                &[("Content-Length", ENDLESS_LENGTH.to_string())],
            )
            .await?;
            write_pattern(stream, 0, ENDLESS_LENGTH, 0).await
        }
        "huge-headers" => huge_headers(stream).await,
        "endless-headers" => endless_headers(stream).await,
        "gzip-bomb" => {
            let bomb = gzip_bomb();
            write_head(
                stream,
                "200 OK",
                &[
                    ("Content-Type", "application/json".to_owned()),
                    ("Content-Encoding", "gzip".to_owned()),
                    ("Content-Length", bomb.len().to_string()),
                ],
            )
            .await?;
            stream.write_all(bomb).await
        }
        "retry-after-max" => retry_after(stream, head, "18446744073709551615").await,
        "retry-after-huge" => retry_after(stream, head, "999999999").await,
        "retry-after-past-date" => retry_after(stream, head, "Wed, 21 Oct 2015 07:28:00 GMT").await,
        "retry-after-garbage" => retry_after(stream, head, "soon, maybe").await,
        "retry-after-negative" => retry_after(stream, head, "-5").await,
        "redirect-loop" => {
            let mut location = "/hostile/redirect-loop".to_owned();
            let query: Vec<String> = head.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if !query.is_empty() {
                location.push('?');
                location.push_str(&query.join("&"));
            }
            write_head(
                stream,
                "302 Found",
                &[("Location", location), ("Content-Length", "0".to_owned())],
            )
            .await
        }
        "bad-range" => match bytes_param(head, 16, MAX_BYTES) {
            Ok(n) => bad_range(stream, head, n).await,
            Err(message) => bad_request(stream, &message).await,
        },
        "changing" => match bytes_param(head, 1, MAX_BYTES) {
            Ok(n) => {
                let version = state.hostile.version.fetch_add(1, Ordering::Relaxed);
                changing(stream, head, n, version).await
            }
            Err(message) => bad_request(stream, &message).await,
        },
        "no-length-cut" => match bytes_param(head, 1, MAX_BYTES) {
            Ok(n) => {
                write_head(
                    stream,
                    "200 OK",
                    &[("Content-Type", "application/octet-stream".to_owned())],
                )
                .await?;
                write_pattern(stream, 0, n, 0).await
            }
            Err(message) => bad_request(stream, &message).await,
        },
        "hang" => {
            wait_for_close(stream).await;
            Ok(())
        }
        other => {
            let names: Vec<&str> = HOSTILE_MODES.iter().map(|(name, _)| *name).collect();
            let body = serde_json::json!({
                "message": format!("no hostile mode {other:?}"),
                "modes": names,
            })
            .to_string();
            write_json(stream, "404 Not Found", &[], &body).await
        }
    };
    stream.flush().await?;
    result
}

/// Writes a status line, `headers` and `Connection: close`.
async fn write_head(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
) -> io::Result<()> {
    let mut text = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    stream.write_all(text.as_bytes()).await
}

async fn write_json(
    stream: &mut TcpStream,
    status: &str,
    extra: &[(&str, String)],
    body: &str,
) -> io::Result<()> {
    let mut headers = extra.to_vec();
    headers.push(("Content-Type", "application/json".to_owned()));
    headers.push(("Content-Length", body.len().to_string()));
    write_head(stream, status, &headers).await?;
    stream.write_all(body.as_bytes()).await
}

async fn bad_request(stream: &mut TcpStream, message: &str) -> io::Result<()> {
    let body = serde_json::json!({ "message": message }).to_string();
    write_json(stream, "400 Bad Request", &[], &body).await
}

/// Writes pattern bytes `start .. start + len`, each XORed with `xor`, in
/// chunks from one small heap buffer.
async fn write_pattern(stream: &mut TcpStream, start: u64, len: u64, xor: u8) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut offset = start;
    let end = start.saturating_add(len);
    while offset < end {
        let n = (end - offset).min(CHUNK as u64) as usize;
        for (i, byte) in buf[..n].iter_mut().enumerate() {
            *byte = pattern_byte(offset + i as u64) ^ xor;
        }
        stream.write_all(&buf[..n]).await?;
        offset += n as u64;
    }
    Ok(())
}

/// Returns when the client closes (or resets) the connection; whatever it
/// sends meanwhile is read into a small buffer and dropped.
async fn wait_for_close(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            return;
        }
    }
}

async fn slow_body(stream: &mut TcpStream, n: u64) -> io::Result<()> {
    write_head(
        stream,
        "200 OK",
        &[
            ("Content-Type", "application/octet-stream".to_owned()),
            ("Content-Length", n.to_string()),
        ],
    )
    .await?;
    for offset in 0..n {
        stream.write_all(&[pattern_byte(offset)]).await?;
        stream.flush().await?;
        if offset + 1 < n {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(())
}

async fn endless_chunked(stream: &mut TcpStream) -> io::Result<()> {
    write_head(
        stream,
        "200 OK",
        &[
            ("Content-Type", "application/octet-stream".to_owned()),
            ("Transfer-Encoding", "chunked".to_owned()),
        ],
    )
    .await?;
    let mut chunk = format!("{CHUNK:x}\r\n").into_bytes();
    chunk.extend((0..CHUNK as u64).map(pattern_byte));
    chunk.extend_from_slice(b"\r\n");
    loop {
        stream.write_all(&chunk).await?;
    }
}

async fn huge_headers(stream: &mut TcpStream) -> io::Result<()> {
    stream.write_all(b"HTTP/1.1 200 OK\r\nX-Huge: ").await?;
    static FILLER: [u8; CHUNK] = [b'a'; CHUNK];
    for _ in 0..HUGE_HEADER_BYTES / CHUNK {
        stream.write_all(&FILLER).await?;
    }
    stream
        .write_all(b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .await
}

async fn endless_headers(stream: &mut TcpStream) -> io::Result<()> {
    stream.write_all(b"HTTP/1.1 200 OK\r\n").await?;
    let mut batch = String::with_capacity(CHUNK + 128);
    let mut line = 0u64;
    loop {
        batch.clear();
        while batch.len() < CHUNK {
            batch.push_str(&format!(
                "X-Endless-{line}: and-then-another-header-and-another-one\r\n"
            ));
            line += 1;
        }
        stream.write_all(batch.as_bytes()).await?;
    }
}

async fn retry_after(stream: &mut TcpStream, head: &Head, value: &str) -> io::Result<()> {
    let status = match head.query.get("status").map(String::as_str) {
        None | Some("429") => "429 Too Many Requests",
        Some("503") => "503 Service Unavailable",
        Some(other) => {
            return bad_request(stream, &format!("status must be 429 or 503, got {other:?}")).await;
        }
    };
    let body = serde_json::json!({
        "message": "slow down",
        "retry_after": value,
    })
    .to_string();
    write_json(stream, status, &[("Retry-After", value.to_owned())], &body).await
}

/// A single `bytes=` range as a half-open interval within `len`:
/// `Some(Ok(..))` satisfiable, `Some(Err(()))` unsatisfiable, `None` absent
/// or malformed (answered with the whole body, as real servers do).
fn parse_range(value: Option<&str>, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value?.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().ok()?;
            if suffix == 0 {
                return Some(Err(()));
            }
            (len.saturating_sub(suffix), len)
        }
        (start, "") => (start.parse().ok()?, len),
        (start, end) => {
            let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
            if end < start {
                return None;
            }
            (start, end.saturating_add(1).min(len))
        }
    };
    if start < len {
        Some(Ok((start, end)))
    } else {
        Some(Err(()))
    }
}

async fn bad_range(stream: &mut TcpStream, head: &Head, n: u64) -> io::Result<()> {
    let etag = ("ETag", "\"bad-range\"".to_owned());
    let ranges = ("Accept-Ranges", "bytes".to_owned());
    match parse_range(head.header("range"), n) {
        Some(Ok((start, end))) => {
            // Seven bytes off the request (wrapping), the same length where
            // it fits: a plausible answer that is not the one asked for.
            let claimed = (start + 7) % n;
            let claimed_end = claimed.saturating_add(end - start).min(n);
            write_head(
                stream,
                "206 Partial Content",
                &[
                    etag,
                    ranges,
                    (
                        "Content-Range",
                        format!("bytes {claimed}-{}/{n}", claimed_end - 1),
                    ),
                    ("Content-Length", (claimed_end - claimed).to_string()),
                ],
            )
            .await?;
            write_pattern(stream, claimed, claimed_end - claimed, 0).await
        }
        _ => {
            write_head(
                stream,
                "200 OK",
                &[etag, ranges, ("Content-Length", n.to_string())],
            )
            .await?;
            write_pattern(stream, 0, n, 0).await
        }
    }
}

/// `changing`'s body byte at `offset` for `version`: the `/bytes` pattern
/// XORed with a version-dependent non-zero byte, so consecutive versions
/// differ at every offset.
pub fn changing_byte(version: u64, offset: u64) -> u8 {
    pattern_byte(offset) ^ changing_xor(version)
}

fn changing_xor(version: u64) -> u8 {
    (version % 255 + 1) as u8
}

async fn changing(stream: &mut TcpStream, head: &Head, n: u64, version: u64) -> io::Result<()> {
    let etag = format!("\"v{version}\"");
    let xor = changing_xor(version);
    // A real server honours Range only while If-Range (if sent) still names
    // the current representation; here it never does for long.
    let if_range_holds = head.header("if-range").is_none_or(|v| v == etag);
    let range = if if_range_holds {
        parse_range(head.header("range"), n)
    } else {
        None
    };
    let etag = ("ETag", etag);
    let ranges = ("Accept-Ranges", "bytes".to_owned());
    match range {
        Some(Ok((start, end))) => {
            write_head(
                stream,
                "206 Partial Content",
                &[
                    etag,
                    ranges,
                    ("Content-Range", format!("bytes {start}-{}/{n}", end - 1)),
                    ("Content-Length", (end - start).to_string()),
                ],
            )
            .await?;
            write_pattern(stream, start, end - start, xor).await
        }
        Some(Err(())) => {
            write_head(
                stream,
                "416 Range Not Satisfiable",
                &[
                    etag,
                    ("Content-Range", format!("bytes */{n}")),
                    ("Content-Length", "0".to_owned()),
                ],
            )
            .await
        }
        None => {
            write_head(
                stream,
                "200 OK",
                &[etag, ranges, ("Content-Length", n.to_string())],
            )
            .await?;
            write_pattern(stream, 0, n, xor).await
        }
    }
}

/// The `gzip-bomb` body, built once: a valid gzip member whose single
/// dynamic-Huffman deflate block encodes [`GZIP_BOMB_INFLATED`] zero bytes
/// in about 1 MiB (two bits per 258-byte match, deflate's best ratio).
pub fn gzip_bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| build_gzip_zeros(GZIP_BOMB_INFLATED))
}

/// Deflate's bits go out least-significant first.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    fn put(&mut self, value: u64, count: u32) {
        self.acc |= value << self.bits;
        self.bits += count;
        while self.bits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.bits -= 8;
        }
    }

    /// A Huffman code: its bits go out most-significant first.
    fn code(&mut self, code: u64, len: u32) {
        let reversed = (0..len).fold(0, |r, i| (r << 1) | ((code >> i) & 1));
        self.put(reversed, len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bits > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A gzip member of `len` zero bytes (see [`gzip_bomb`]).
///
/// The block's literal/length code has three symbols: 285 (length 258) is
/// `0`, literal 0 is `10`, end-of-block is `11`; the distance code has one
/// symbol, distance 1, as `0`. The code-length code uses 18 (a run of
/// zeros) as `0`, lengths 1 and 2 as `10` and `11`.
fn build_gzip_zeros(len: u64) -> Vec<u8> {
    let mut w = BitWriter {
        out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
        acc: 0,
        bits: 0,
    };
    w.put(1, 1); // BFINAL
    w.put(2, 2); // BTYPE = dynamic
    w.put(29, 5); // HLIT: 286 literal/length codes
    w.put(0, 5); // HDIST: 1 distance code
    w.put(14, 4); // HCLEN: 18 code-length code lengths
    const ORDER: [usize; 18] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1];
    for symbol in ORDER {
        let length = match symbol {
            18 => 1,
            1 | 2 => 2,
            _ => 0,
        };
        w.put(length, 3);
    }
    let zeros = |w: &mut BitWriter, run: u64| {
        w.code(0, 1); // code-length symbol 18
        w.put(run - 11, 7);
    };
    w.code(0b11, 2); // literal 0: length 2
    zeros(&mut w, 138); // literals 1..=138
    zeros(&mut w, 117); // literals 139..=255
    w.code(0b11, 2); // 256 (end of block): length 2
    zeros(&mut w, 28); // 257..=284
    w.code(0b10, 2); // 285: length 1
    w.code(0b10, 2); // distance 1: length 1

    let literal = |w: &mut BitWriter| w.code(0b10, 2);
    if len > 0 {
        literal(&mut w);
        let rest = len - 1;
        for _ in 0..rest / 258 {
            w.code(0, 1); // length 258
            w.code(0, 1); // distance 1
        }
        for _ in 0..rest % 258 {
            literal(&mut w);
        }
    }
    w.code(0b11, 2); // end of block
    let mut out = w.finish();
    out.extend_from_slice(&crc32_of_zeros(len).to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes()); // ISIZE: len mod 2^32
    out
}

/// CRC-32 (the gzip one) of `len` zero bytes without touching `len` bytes:
/// one zero bit is a linear map of the register, so `8 * len` of them is
/// that map's matrix raised to a power by squaring.
fn crc32_of_zeros(len: u64) -> u32 {
    type Matrix = [u32; 32];
    fn times(m: &Matrix, mut v: u32) -> u32 {
        let mut sum = 0;
        let mut i = 0;
        while v != 0 {
            if v & 1 != 0 {
                sum ^= m[i];
            }
            v >>= 1;
            i += 1;
        }
        sum
    }
    fn square(m: &Matrix) -> Matrix {
        let mut out = [0; 32];
        for (i, col) in out.iter_mut().enumerate() {
            *col = times(m, m[i]);
        }
        out
    }
    // Column i: the register after one zero bit when it held only bit i.
    let mut step: Matrix = [0; 32];
    for (i, col) in step.iter_mut().enumerate() {
        let r = 1u32 << i;
        *col = if r & 1 != 0 {
            (r >> 1) ^ 0xEDB8_8320
        } else {
            r >> 1
        };
    }
    let mut register = 0xFFFF_FFFFu32;
    let mut power = step;
    let mut bits = u128::from(len) * 8;
    while bits != 0 {
        if bits & 1 != 0 {
            register = times(&power, register);
        }
        power = square(&power);
        bits >>= 1;
    }
    register ^ 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc32_naive(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        crc ^ 0xFFFF_FFFF
    }

    #[test]
    fn crc_of_zeros_matches_the_byte_at_a_time_crc() {
        for len in [0, 1, 2, 7, 258, 1000, 4097] {
            assert_eq!(
                crc32_of_zeros(len),
                crc32_naive(&vec![0; len as usize]),
                "len {len}"
            );
        }
        assert_eq!(crc32_naive(b"123456789"), 0xCBF4_3926); // the standard check value
    }

    #[test]
    fn request_lines_are_classified_from_their_prefix() {
        assert_eq!(decide(b"GET /hostile/hang HTTP/1.1\r\n"), Some(true));
        assert_eq!(decide(b"POST /hostile/"), Some(true));
        assert_eq!(decide(b"GET /health HTTP/1.1\r\n"), Some(false));
        assert_eq!(decide(b"GET /host"), None);
        assert_eq!(decide(b"GE"), None);
        assert_eq!(decide(b"\x16\x03\x01"), Some(false)); // a TLS hello
        assert_eq!(decide(b" /hostile/"), Some(false));
    }

    #[test]
    fn ranges_parse_like_a_server() {
        assert_eq!(parse_range(Some("bytes=0-99"), 1000), Some(Ok((0, 100))));
        assert_eq!(parse_range(Some("bytes=900-"), 1000), Some(Ok((900, 1000))));
        assert_eq!(parse_range(Some("bytes=-10"), 1000), Some(Ok((990, 1000))));
        assert_eq!(
            parse_range(Some("bytes=990-5000"), 1000),
            Some(Ok((990, 1000)))
        );
        assert_eq!(parse_range(Some("bytes=1000-"), 1000), Some(Err(())));
        assert_eq!(parse_range(Some("bytes=5-1"), 1000), None);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 1000), None);
        assert_eq!(parse_range(Some("items=0-1"), 1000), None);
        assert_eq!(parse_range(None, 1000), None);
    }
}
