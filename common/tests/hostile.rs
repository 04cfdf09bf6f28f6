//! The hostile catalogue (`/hostile/{mode}`), over real loopback sockets:
//! each mode does what the sandbox docs say, on the wire (raw `TcpStream`)
//! and as reqwest sees it.
//!
//! Real time, generous timeouts; where "nothing more arrives" is the
//! behaviour, a short read timeout is the assertion.

use std::time::Duration;

use common::sandbox::{HOSTILE_MODES, changing_byte, pattern};
use common::{Sandbox, SandboxConfig};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, ETAG, RETRY_AFTER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GENEROUS: Duration = Duration::from_secs(10);
/// Long enough that data the server meant to send has arrived on loopback.
const QUIET: Duration = Duration::from_millis(400);

async fn start() -> (Sandbox, reqwest::Client) {
    common::init_crypto();
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("bind loopback");
    let client = reqwest::Client::builder()
        .timeout(GENEROUS)
        .build()
        .expect("client");
    (sandbox, client)
}

/// Opens a connection and sends one GET with `extra` header lines.
async fn raw_get(sb: &Sandbox, path: &str, extra: &str) -> TcpStream {
    let mut stream = TcpStream::connect(sb.addr()).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: sandbox\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    stream
}

/// Reads until EOF, `limit` bytes, or `quiet` without data; returns the
/// bytes and whether the server closed.
async fn read_some(stream: &mut TcpStream, limit: usize, quiet: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while out.len() < limit {
        match tokio::time::timeout(quiet, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
    (out, false)
}

/// Splits a raw response into head text and body bytes.
fn split(response: &[u8]) -> (String, Vec<u8>) {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    (
        String::from_utf8_lossy(&response[..end]).into_owned(),
        response[end + 4..].to_vec(),
    )
}

#[tokio::test]
async fn garbage_status_is_not_http() {
    let (sb, client) = start().await;
    let mut stream = raw_get(&sb, "/hostile/garbage-status", "").await;
    let (bytes, closed) = read_some(&mut stream, 1 << 20, GENEROUS).await;
    assert!(closed);
    assert!(bytes.starts_with(b"HTTP/1.1 two-hundred OKish\r\n"));
    let err = client
        .get(sb.url("/hostile/garbage-status"))
        .send()
        .await
        .expect_err("not HTTP");
    assert!(!err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn close_mid_headers_closes_inside_the_head() {
    let (sb, client) = start().await;
    let mut stream = raw_get(&sb, "/hostile/close-mid-headers", "").await;
    let (bytes, closed) = read_some(&mut stream, 1 << 20, GENEROUS).await;
    assert!(closed);
    assert_eq!(bytes, b"HTTP/1.1 200 OK\r\nContent-Type: application/js");
    assert!(
        client
            .get(sb.url("/hostile/close-mid-headers"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn slow_body_sends_one_byte_per_second() {
    let (sb, client) = start().await;
    let mut stream = raw_get(&sb, "/hostile/slow-body", "").await;
    // The head and the first byte come at once, then the body stalls.
    let (first, closed) = read_some(&mut stream, 1 << 20, QUIET).await;
    assert!(!closed);
    let (head, body) = split(&first);
    assert!(head.contains("Content-Length: 1000"), "{head}");
    assert_eq!(body, pattern(0, 1));
    let (next, _) = read_some(&mut stream, 1, GENEROUS).await;
    assert_eq!(next, pattern(1, 1));

    let body = client
        .get(sb.url("/hostile/slow-body?bytes=3"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), pattern(0, 3));
}

#[tokio::test]
async fn short_body_close_sends_half_the_promised_length_then_closes() {
    let (sb, client) = start().await;
    let mut stream = raw_get(&sb, "/hostile/short-body-close", "").await;
    let (bytes, closed) = read_some(&mut stream, 1 << 20, GENEROUS).await;
    assert!(closed);
    let (head, body) = split(&bytes);
    assert!(head.contains("Content-Length: 1000"), "{head}");
    assert_eq!(body, pattern(0, 500));

    let response = client
        .get(sb.url("/hostile/short-body-close?bytes=4000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.content_length(), Some(4000));
    let err = response
        .bytes()
        .await
        .expect_err("body shorter than its length");
    assert!(!err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn short_body_hang_sends_half_then_stays_open() {
    let (sb, _) = start().await;
    let mut stream = raw_get(&sb, "/hostile/short-body-hang?bytes=100", "").await;
    let mut bytes = Vec::new();
    while bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .is_none_or(|p| bytes.len() < p + 4 + 50)
    {
        let (more, closed) = read_some(&mut stream, 1 << 20, GENEROUS).await;
        assert!(!closed && !more.is_empty());
        bytes.extend(more);
    }
    let (head, body) = split(&bytes);
    assert!(head.contains("Content-Length: 100"), "{head}");
    assert_eq!(body, pattern(0, 50));
    let (more, closed) = read_some(&mut stream, 1, QUIET).await;
    assert!(more.is_empty() && !closed, "the connection hangs open");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let response = client
        .get(sb.url("/hostile/short-body-hang"))
        .send()
        .await
        .unwrap();
    let err = response.bytes().await.expect_err("hangs");
    assert!(err.is_timeout(), "{err:?}");
}

async fn read_stream(response: reqwest::Response, limit: usize) -> usize {
    use futures::StreamExt;
    let mut body = response.bytes_stream();
    let mut total = 0;
    while total < limit {
        let chunk = body.next().await.expect("endless").expect("a chunk");
        total += chunk.len();
    }
    total
}

#[tokio::test]
async fn endless_bodies_never_end_and_stop_when_the_client_goes() {
    let (sb, client) = start().await;
    let chunked = client
        .get(sb.url("/hostile/endless-chunked"))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), StatusCode::OK);
    assert_eq!(chunked.content_length(), None);
    assert!(read_stream(chunked, 8 << 20).await >= 8 << 20);

    let length = client
        .get(sb.url("/hostile/endless-length"))
        .send()
        .await
        .unwrap();
    assert_eq!(length.content_length(), Some(1 << 50));
    assert!(read_stream(length, 8 << 20).await >= 8 << 20);
    // Both responses are dropped: the writers fail and end, so the
    // shutdown does not wait out its drain.
    let started = std::time::Instant::now();
    sb.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn huge_headers_send_one_mebibyte_header() {
    let (sb, client) = start().await;
    let mut stream = raw_get(&sb, "/hostile/huge-headers", "").await;
    let (bytes, closed) = read_some(&mut stream, 4 << 20, GENEROUS).await;
    assert!(closed);
    let (head, body) = split(&bytes);
    let huge = head
        .lines()
        .find(|l| l.starts_with("X-Huge: "))
        .expect("the huge header");
    assert_eq!(huge.len(), "X-Huge: ".len() + (1 << 20));
    assert_eq!(body, b"ok");
    assert!(
        client
            .get(sb.url("/hostile/huge-headers"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn endless_headers_never_end_the_head() {
    let (sb, client) = start().await;
    let mut stream = raw_get(&sb, "/hostile/endless-headers", "").await;
    let (bytes, closed) = read_some(&mut stream, 4 << 20, GENEROUS).await;
    assert!(!closed);
    assert!(bytes.len() >= 4 << 20);
    assert!(bytes.starts_with(b"HTTP/1.1 200 OK\r\nX-Endless-0: "));
    assert!(!bytes.windows(4).any(|w| w == b"\r\n\r\n"));
    assert!(
        client
            .get(sb.url("/hostile/endless-headers"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn gzip_bomb_is_small_on_the_wire_and_inflates_to_a_gibibyte() {
    let (sb, client) = start().await;
    let response = client
        .get(sb.url("/hostile/gzip-bomb"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_ENCODING], "gzip");
    // This reqwest has no gzip feature, so the body arrives as sent.
    let body = response.bytes().await.unwrap();
    assert!(body.len() < 2 << 20, "{} bytes on the wire", body.len());
    assert_eq!(&body[..2], &[0x1f, 0x8b]);

    // Inflate with the system's gzip, which also checks CRC and length.
    let Ok(mut child) = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("no gzip on PATH: inflation not checked");
        return;
    };
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&body).unwrap();
    });
    let mut stdout = child.stdout.take().unwrap();
    let (mut total, mut nonzero) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        use std::io::Read;
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        nonzero += buf[..n].iter().filter(|&&b| b != 0).count() as u64;
    }
    feeder.join().unwrap();
    assert!(child.wait().unwrap().success(), "gzip rejected the bomb");
    assert_eq!(total, 1 << 30);
    assert_eq!(nonzero, 0);
}

#[tokio::test]
async fn retry_after_modes_send_the_hostile_value() {
    let (sb, client) = start().await;
    for (mode, value) in [
        ("retry-after-max", "18446744073709551615"),
        ("retry-after-huge", "999999999"),
        ("retry-after-past-date", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ("retry-after-garbage", "soon, maybe"),
        ("retry-after-negative", "-5"),
    ] {
        for (query, status) in [
            ("", StatusCode::TOO_MANY_REQUESTS),
            ("?status=503", StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let response = client
                .get(sb.url(&format!("/hostile/{mode}{query}")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{mode}{query}");
            assert_eq!(response.headers()[RETRY_AFTER], value, "{mode}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["retry_after"], value);
        }
    }
    let wrong = client
        .get(sb.url("/hostile/retry-after-max?status=500"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn redirect_loop_redirects_to_itself() {
    let (sb, client) = start().await;
    let err = client
        .get(sb.url("/hostile/redirect-loop"))
        .send()
        .await
        .expect_err("too many redirects");
    assert!(err.is_redirect(), "{err:?}");

    let manual = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = manual
        .get(sb.url("/hostile/redirect-loop?n=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "/hostile/redirect-loop?n=1");
}

#[tokio::test]
async fn bad_range_answers_a_range_that_was_not_asked_for() {
    let (sb, client) = start().await;
    let response = client
        .get(sb.url("/hostile/bad-range"))
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes 107-206/1000");
    assert_eq!(response.bytes().await.unwrap().as_ref(), pattern(107, 100));

    let open_ended = client
        .get(sb.url("/hostile/bad-range?bytes=500"))
        .header("Range", "bytes=495-")
        .send()
        .await
        .unwrap();
    assert_eq!(open_ended.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(open_ended.headers()[CONTENT_RANGE], "bytes 2-6/500");

    let whole = client
        .get(sb.url("/hostile/bad-range"))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.bytes().await.unwrap().as_ref(), pattern(0, 1000));
}

#[tokio::test]
async fn changing_changes_content_and_etag_and_honours_if_range() {
    let (sb, client) = start().await;
    let url = sb.url("/hostile/changing?bytes=300");
    let first = client.get(&url).send().await.unwrap();
    assert_eq!(first.headers()[ETAG], "\"v0\"");
    let first = first.bytes().await.unwrap();
    let second = client.get(&url).send().await.unwrap();
    assert_eq!(second.headers()[ETAG], "\"v1\"");
    let second = second.bytes().await.unwrap();
    assert_eq!(first.len(), 300);
    assert!(
        first.iter().zip(&second).all(|(a, b)| a != b),
        "every byte changed"
    );
    assert_eq!(first[10], changing_byte(0, 10));
    assert_eq!(second[10], changing_byte(1, 10));

    // A resume naming the old version gets the new one whole.
    let stale = client
        .get(&url)
        .header("Range", "bytes=100-")
        .header("If-Range", "\"v0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.headers()[ETAG], "\"v2\"");
    assert_eq!(stale.content_length(), Some(300));

    // A Range without If-Range (or naming the current version) is honoured.
    for (version, if_range) in [(3, None), (4, Some("\"v4\""))] {
        let mut request = client.get(&url).header("Range", "bytes=100-109");
        if let Some(tag) = if_range {
            request = request.header("If-Range", tag);
        }
        let partial = request.send().await.unwrap();
        assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(partial.headers()[CONTENT_RANGE], "bytes 100-109/300");
        let body = partial.bytes().await.unwrap();
        let expected: Vec<u8> = (100..110).map(|i| changing_byte(version, i)).collect();
        assert_eq!(body.as_ref(), expected);
    }
    let beyond = client
        .get(&url)
        .header("Range", "bytes=300-")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn no_length_cut_is_a_close_delimited_body() {
    let (sb, client) = start().await;
    let mut stream = raw_get(&sb, "/hostile/no-length-cut", "").await;
    let (bytes, closed) = read_some(&mut stream, 1 << 20, GENEROUS).await;
    assert!(closed);
    let (head, body) = split(&bytes);
    let head = head.to_ascii_lowercase();
    assert!(!head.contains("content-length") && !head.contains("transfer-encoding"));
    assert_eq!(body, pattern(0, 1000));

    // A client cannot tell it from a complete body.
    let response = client
        .get(sb.url("/hostile/no-length-cut?bytes=5000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(CONTENT_LENGTH).is_none());
    assert_eq!(response.bytes().await.unwrap().as_ref(), pattern(0, 5000));
}

#[tokio::test]
async fn hang_never_answers() {
    let (sb, _) = start().await;
    let mut stream = raw_get(&sb, "/hostile/hang", "").await;
    let (bytes, closed) = read_some(&mut stream, 1, QUIET).await;
    assert!(bytes.is_empty() && !closed);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = client
        .get(sb.url("/hostile/hang"))
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn every_mode_is_served_and_unknown_modes_are_listed() {
    let (sb, client) = start().await;
    for (mode, _) in HOSTILE_MODES {
        let mut stream = raw_get(&sb, &format!("/hostile/{mode}"), "").await;
        let (bytes, _) = read_some(&mut stream, 64, QUIET).await;
        assert!(!bytes.starts_with(b"HTTP/1.1 404"), "{mode}");
        assert!(!bytes.starts_with(b"HTTP/1.1 400"), "{mode}");
    }
    let response = client.get(sb.url("/hostile/nope")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["modes"].as_array().unwrap().len(), HOSTILE_MODES.len());
    let bad = client
        .get(sb.url("/hostile/slow-body?bytes=-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_reused_keep_alive_connection_is_redirected_to_a_fresh_one() {
    let (sb, client) = start().await;
    let health = client.get(sb.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    health.bytes().await.unwrap(); // back into the pool
    let response = client
        .get(sb.url("/hostile/retry-after-huge"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[RETRY_AFTER], "999999999");
    // /health, the 307 on the reused connection, the hostile answer.
    assert_eq!(sb.stats().requests, 3);
}

#[tokio::test]
async fn shutdown_ends_hanging_and_endless_connections() {
    let (sb, _) = start().await;
    let mut open = Vec::new();
    for mode in [
        "hang",
        "short-body-hang",
        "slow-body",
        "endless-chunked",
        "endless-headers",
    ] {
        let mut stream = raw_get(&sb, &format!("/hostile/{mode}"), "").await;
        // Let the server start on it (and fill the buffers, unread).
        let (_, closed) = read_some(&mut stream, 1, QUIET).await;
        assert!(!closed, "{mode}");
        open.push((mode, stream));
    }
    tokio::time::timeout(Duration::from_secs(4), sb.shutdown())
        .await
        .expect("shutdown does not wait for hostile connections")
        .unwrap();
    for (mode, mut stream) in open {
        let (_, closed) = read_some(&mut stream, usize::MAX, GENEROUS).await;
        assert!(closed, "{mode} still open after shutdown");
    }
}
