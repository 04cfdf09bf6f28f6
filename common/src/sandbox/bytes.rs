//! `/delay/{ms}`, `/bytes/{n}` and `/status/{code}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::{MAX_BYTES, MAX_DELAY, SharedState, bad_request, sleep_or_shutdown, splitmix64};

/// The pattern repeats every 251 bytes: a prime, so it never lines up with
/// power-of-two chunk sizes and an offset error shows up in a comparison.
const PERIOD: u64 = 251;
const DEFAULT_CHUNK: usize = 64 * 1024;
const MAX_CHUNK: usize = 1 << 20;
/// How long a `fail_after` body stalls before the cut (see [`chunks`]).
const CUT_FLUSH_PAUSE: Duration = Duration::from_millis(20);

/// Byte `offset` of every `/bytes/{n}` body: `offset % 251`.
pub fn pattern_byte(offset: u64) -> u8 {
    (offset % PERIOD) as u8
}

/// Bytes `start .. start + len` of the pattern, for comparing downloads.
pub fn pattern(start: u64, len: usize) -> Vec<u8> {
    (start..start + len as u64).map(pattern_byte).collect()
}

/// One period-aligned copy of the pattern long enough for the largest chunk
/// from any offset; every chunk is a zero-copy slice of it, which is what
/// lets one core serve the pattern at several GB/s.
fn pattern_buffer() -> &'static Bytes {
    static BUFFER: OnceLock<Bytes> = OnceLock::new();
    BUFFER.get_or_init(|| Bytes::from(pattern(0, MAX_CHUNK + PERIOD as usize)))
}

#[derive(Debug, Deserialize)]
pub(super) struct DelayQuery {
    #[serde(default)]
    jitter_ms: u64,
    #[serde(default)]
    seed: u64,
}

/// Jitter draws use one counter for the whole sandbox, so concurrent
/// requests with the same seed still get a deterministic multiset of delays.
static JITTER_COUNTER: AtomicU64 = AtomicU64::new(0);

pub(super) async fn delay(
    State(state): State<SharedState>,
    Path(ms): Path<u64>,
    Query(query): Query<DelayQuery>,
) -> Response {
    let jitter = if query.jitter_ms == 0 {
        0
    } else {
        let n = JITTER_COUNTER.fetch_add(1, Ordering::Relaxed);
        splitmix64(query.seed ^ splitmix64(n)) % (query.jitter_ms + 1)
    };
    let total = Duration::from_millis(ms.saturating_add(jitter));
    if total > MAX_DELAY {
        return bad_request(format!("delay capped at {} ms", MAX_DELAY.as_millis()));
    }
    if !sleep_or_shutdown(&state, total).await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(serde_json::json!({ "delay_ms": total.as_millis() as u64 })).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct StatusQuery {
    retry_after: Option<u64>,
}

pub(super) async fn status(Path(code): Path<u16>, Query(query): Query<StatusQuery>) -> Response {
    // 1xx are not final responses; hyper would not send one as an answer.
    let Some(status) = (200..=599)
        .contains(&code)
        .then(|| StatusCode::from_u16(code).ok())
        .flatten()
    else {
        return bad_request("status must be 200..=599");
    };
    let mut response = (status, Json(serde_json::json!({ "status": code }))).into_response();
    if let Some(secs) = query.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct BytesQuery {
    chunk_size: Option<usize>,
    #[serde(default)]
    chunk_delay_ms: u64,
    fail_after: Option<u64>,
    #[serde(default)]
    no_length: u8,
    #[serde(default)]
    ignore_range: u8,
    /// `no_etag=1`: no ETag, like a server with no validator to offer.
    #[serde(default)]
    no_etag: u8,
}

pub(super) async fn bytes(
    State(state): State<SharedState>,
    Path(n): Path<u64>,
    Query(query): Query<BytesQuery>,
    headers: HeaderMap,
) -> Response {
    if n > MAX_BYTES {
        return bad_request(format!("at most {MAX_BYTES} bytes"));
    }
    let chunk_size = query.chunk_size.unwrap_or(DEFAULT_CHUNK);
    if chunk_size == 0 || chunk_size > MAX_CHUNK {
        return bad_request(format!("chunk_size must be 1..={MAX_CHUNK}"));
    }
    let chunk_delay = Duration::from_millis(query.chunk_delay_ms);
    if chunk_delay > MAX_DELAY {
        return bad_request("chunk_delay_ms too large");
    }

    // The content depends on n alone, so `"bytes-{n}"` is a strong ETag; a
    // resuming client sends it back in If-Range.
    let etag = format!("\"bytes-{n}\"");
    // Ranges are honoured only where a real server would: with a known
    // length, and (RFC 9110 §13.1.5) only while an If-Range still matches.
    let if_range_matches = headers
        .get(header::IF_RANGE)
        .is_none_or(|value| value.as_bytes() == etag.as_bytes());
    let honour_range = query.no_length == 0 && query.ignore_range == 0 && if_range_matches;
    let range = match headers.get(header::RANGE) {
        Some(value) if honour_range => match parse_range(value, n) {
            RangeOutcome::Satisfiable(start, end) => Some((start, end)),
            RangeOutcome::Ignore => None,
            RangeOutcome::Unsatisfiable => {
                return (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{n}"))],
                )
                    .into_response();
            }
        },
        _ => None,
    };
    let (start, end) = range.unwrap_or((0, n)); // end exclusive

    let body = Body::from_stream(chunks(
        state.clone(),
        start,
        end,
        chunk_size,
        chunk_delay,
        query.fail_after,
    ));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if query.no_length == 0 {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if query.no_etag == 0
            && let Ok(value) = HeaderValue::from_str(&etag)
        {
            h.insert(header::ETAG, value);
        }
    }
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let value = format!("bytes {start}-{}/{n}", end - 1);
        // Digits, '-', '/' and a space: always a valid header value.
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).expect("ascii header"),
        );
    }
    response
}

/// The body as a stream of zero-copy slices. An `Err` item makes hyper
/// abort the connection, which is how `fail_after` cuts a body mid-way: the
/// client has seen Content-Length and gets fewer bytes.
fn chunks(
    state: SharedState,
    start: u64,
    end: u64,
    chunk_size: usize,
    chunk_delay: Duration,
    fail_after: Option<u64>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let cut_at = fail_after.map(|k| start.saturating_add(k));
    let state: Arc<_> = state;
    futures::stream::unfold(start, move |pos| {
        let state = state.clone();
        async move {
            if cut_at.is_some_and(|cut| pos >= cut) && pos < end {
                // Pause first: while the body is pending hyper flushes what it
                // has, so the client really receives the first K bytes before
                // the cut (an immediate error could abort before the headers).
                tokio::time::sleep(CUT_FLUSH_PAUSE).await;
                return Some((
                    Err(std::io::Error::other("fail_after: connection cut")),
                    end,
                ));
            }
            if pos >= end {
                return None;
            }
            if !chunk_delay.is_zero()
                && pos > start
                && !sleep_or_shutdown(&state, chunk_delay).await
            {
                return Some((Err(std::io::Error::other("sandbox shutting down")), end));
            }
            let mut len = (end - pos).min(chunk_size as u64);
            if let Some(cut) = cut_at {
                len = len.min(cut - pos);
            }
            let offset = (pos % PERIOD) as usize;
            let chunk = pattern_buffer().slice(offset..offset + len as usize);
            Some((Ok(chunk), pos + len))
        }
    })
}

enum RangeOutcome {
    Satisfiable(u64, u64),
    Ignore,
    Unsatisfiable,
}

/// Parses a single `bytes=` range (`a-b`, `a-`, `-suffix`) into a half-open
/// interval. Multiple ranges and malformed values are ignored (a 200 with
/// the whole body), which RFC 9110 allows.
fn parse_range(value: &HeaderValue, len: u64) -> RangeOutcome {
    let Some(spec) = value.to_str().ok().and_then(|v| v.strip_prefix("bytes=")) else {
        return RangeOutcome::Ignore;
    };
    if spec.contains(',') {
        return RangeOutcome::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeOutcome::Ignore;
    };
    let parsed = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(a), Ok(b)) if a <= b => Some((a, b.saturating_add(1).min(len))),
        (Ok(a), Err(_)) if last.is_empty() => Some((a, len)),
        (Err(_), Ok(suffix)) if first.is_empty() => {
            if suffix == 0 {
                return RangeOutcome::Unsatisfiable;
            }
            Some((len.saturating_sub(suffix), len))
        }
        _ => return RangeOutcome::Ignore,
    };
    match parsed {
        Some((start, end)) if start < len => RangeOutcome::Satisfiable(start, end),
        _ => RangeOutcome::Unsatisfiable,
    }
}
