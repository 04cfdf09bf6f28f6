//! `http::get_json` against hostile servers (issue 14), on real loopback
//! sockets (real time, generous limits, outcomes asserted, not durations).
//!
//! A tiny raw-TCP server here writes exactly the bytes each case needs; the
//! sandbox's `/hostile/<mode>` catalogue is exercised by the table at the end.

use std::time::Duration;

use examples_resilience::http::{self, HttpError};
use examples_resilience::retry::{Backoff, GiveUp, Jitter, Retry, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(20);

/// Serves every connection with `respond`: reads the request head, then
/// writes what `respond` returns, then (if `endless`) 4 KiB chunks until the
/// peer goes away.
async fn tiny_server(head: &'static str, endless: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("1000\r\n{}\r\n", "x".repeat(4096));
                while endless && socket.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    format!("http://{addr}/")
}

fn client() -> reqwest::Client {
    http::client(Duration::from_secs(10)).unwrap()
}

#[tokio::test]
async fn an_endless_chunked_body_stops_at_the_cap() {
    let url = tiny_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        true,
    )
    .await;
    let result = tokio::time::timeout(LIMIT, http::get_json(&client(), &url, 64 * 1024))
        .await
        .expect("the cap ends the read, not the timeout");
    assert!(
        matches!(result, Err(HttpError::TooLarge { limit: 65536 })),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_content_length_above_the_cap_fails_before_the_body() {
    let url = tiny_server(
        "HTTP/1.1 200 OK\r\ncontent-length: 999999999999\r\n\r\n",
        false,
    )
    .await;
    let result = tokio::time::timeout(LIMIT, http::get_json(&client(), &url, 1024))
        .await
        .unwrap();
    assert!(
        matches!(result, Err(HttpError::TooLarge { limit: 1024 })),
        "{result:?}"
    );
}

#[tokio::test]
async fn retry_after_is_parsed_in_both_forms_and_garbage_is_absent() {
    for (header, expected) in [
        ("18446744073709551615", Some(Duration::from_secs(u64::MAX))),
        ("2", Some(Duration::from_secs(2))),
        ("Sun, 06 Nov 1994 08:49:37 GMT", Some(Duration::ZERO)),
        ("-1", None),
        ("soon", None),
    ] {
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: {header}\r\ncontent-length: 0\r\n\r\n"
        );
        let url = tiny_server(Box::leak(head.into_boxed_str()), false).await;
        match http::get_json(&client(), &url, 1024).await {
            Err(HttpError::Status {
                status,
                retry_after,
            }) => {
                assert_eq!(status, 503);
                assert_eq!(retry_after, expected, "{header}");
            }
            other => panic!("{header}: {other:?}"),
        }
    }
}

/// The repro: u64::MAX on a 503 with a deadline panicked the loop.
#[tokio::test]
async fn a_huge_retry_after_on_a_503_gives_up_at_once_under_a_deadline() {
    let url = tiny_server(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 18446744073709551615\r\ncontent-length: 0\r\n\r\n",
        false,
    )
    .await;
    let client = client();
    let retry = Retry::new(
        RetryPolicy {
            max_attempts: 5,
            deadline: Some(Duration::from_secs(5)),
            backoff: Backoff {
                jitter: Jitter::None,
                ..Backoff::default()
            },
            ..RetryPolicy::default()
        },
        HttpError::retry_decision,
    );
    let err = tokio::time::timeout(LIMIT, retry.run(|| http::get_json(&client, &url, 1024)))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.stats.attempts, 1);
    assert!(
        matches!(err.reason, GiveUp::RetryAfterTooLong(t) if t.demanded == Duration::from_secs(u64::MAX)),
        "{err}"
    );
}

/// Issue 14's table: every mode of the sandbox's hostile catalogue, through
/// the retry loop (5 s deadline) and the breaker. Each ends in bounded time
/// with an error, never a panic, a hang or an unbounded body; the huge
/// `Retry-After`s give up at once naming the demand.
#[tokio::test]
async fn every_hostile_mode_ends_in_an_error_within_the_deadline() {
    use examples_resilience::breaker::{BreakerConfig, CallError, CircuitBreaker};
    let sandbox = common::Sandbox::start(common::SandboxConfig::default())
        .await
        .unwrap();
    let client = http::client(Duration::from_secs(2)).unwrap();
    let deadline = Duration::from_secs(5);
    let retry = Retry::new(
        RetryPolicy {
            max_attempts: 3,
            deadline: Some(deadline),
            backoff: Backoff {
                base: Duration::from_millis(10),
                ..Backoff::default()
            },
            ..RetryPolicy::default()
        },
        HttpError::retry_decision,
    );
    let breaker = CircuitBreaker::new(BreakerConfig {
        consecutive_failures: Some(1000),
        ..BreakerConfig::default()
    })
    .unwrap()
    .with_classifier(HttpError::is_server_fault);
    for &(mode, _) in common::sandbox::hostile::HOSTILE_MODES {
        for status in ["", "?status=503"] {
            if !status.is_empty() && !mode.starts_with("retry-after") {
                continue;
            }
            let url = sandbox.url(&format!("/hostile/{mode}{status}"));
            let started = std::time::Instant::now();
            let err = tokio::time::timeout(
                LIMIT,
                retry.run(|| http::get_json(&client, &url, 64 * 1024)),
            )
            .await
            .unwrap_or_else(|_| panic!("{mode}{status}: hung past {LIMIT:?}"))
            .expect_err(mode);
            // The deadline, plus one client timeout for an attempt in flight.
            assert!(
                started.elapsed() < deadline + Duration::from_secs(3),
                "{mode}{status}: {err}"
            );
            if matches!(mode, "retry-after-max" | "retry-after-huge") {
                assert!(
                    matches!(err.reason, GiveUp::RetryAfterTooLong(_)),
                    "{mode}{status}: {err}"
                );
                assert_eq!(err.stats.attempts, 1, "{mode}{status}: gave up at once");
            }
            let called = tokio::time::timeout(
                LIMIT,
                breaker.call(|| http::get_json(&client, &url, 64 * 1024)),
            )
            .await
            .unwrap_or_else(|_| panic!("{mode}{status}: breaker call hung"));
            assert!(
                matches!(called, Err(CallError::Failed(_))),
                "{mode}{status}: {called:?}"
            );
        }
    }
}

/// `tiny_server` for a response built at run time.
async fn serving(response: String) -> String {
    tiny_server(Box::leak(response.into_boxed_str()), false).await
}

/// A JSON string body of exactly `len` bytes (quotes included).
fn json_of_len(len: usize) -> String {
    format!("\"{}\"", "x".repeat(len - 2))
}

#[tokio::test]
async fn the_cap_allows_a_body_of_exactly_max_body_bytes_framed_either_way() {
    for (len, fits) in [(10, true), (11, false)] {
        let body = json_of_len(len);
        let sized = serving(format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n{body}"
        ))
        .await;
        let chunked = serving(format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{len:x}\r\n{body}\r\n0\r\n\r\n"
        ))
        .await;
        for url in [sized, chunked] {
            let result = timeout(http::get_json(&client(), &url, 10)).await;
            match (fits, result) {
                (true, Ok(value)) => {
                    assert_eq!(value, serde_json::Value::String(body[1..len - 1].into()))
                }
                (false, Err(HttpError::TooLarge { limit: 10 })) => {}
                (_, other) => panic!("{len} bytes at {url}: {other:?}"),
            }
        }
    }
}

/// The default cap is 4 MiB: a 3 MiB answer is read whole.
#[tokio::test]
async fn the_default_cap_reads_a_3_mib_body() {
    let len = 3 * 1024 * 1024;
    let url = serving(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n{}",
        json_of_len(len)
    ))
    .await;
    let value = timeout(http::get_json(&client(), &url, http::DEFAULT_MAX_BODY))
        .await
        .unwrap();
    assert_eq!(value.as_str().map(str::len), Some(len - 2));
}

async fn timeout<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("within the limit")
}

/// Transport errors are sorted by what a retry can do about them: a refused
/// connection and a body cut short are `Connect` (retryable), a redirect
/// loop is `Other` (stop).
#[tokio::test]
async fn transport_errors_are_classified_for_the_retry() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}/", listener.local_addr().unwrap())
        // dropped here: the port refuses
    };
    let err = timeout(http::get_json(&client(), &closed, 1024))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Connect(_)), "refused: {err:?}");
    let cut = serving("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"a\"".into()).await;
    let err = timeout(http::get_json(&client(), &cut, 1024))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Connect(_)), "cut short: {err:?}");
    let looping =
        serving("HTTP/1.1 302 Found\r\nlocation: /\r\ncontent-length: 0\r\n\r\n".into()).await;
    let err = timeout(http::get_json(&client(), &looping, 1024))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Other(_)), "redirect loop: {err:?}");
}

/// What counts against the breaker: the server's faults (5xx, 429, an
/// oversized or malformed answer), not the caller's (other 4xx).
#[test]
fn only_server_faults_count_against_the_breaker() {
    let status = |code: u16| HttpError::Status {
        status: reqwest::StatusCode::from_u16(code).unwrap(),
        retry_after: None,
    };
    for (err, fault) in [
        (status(500), true),
        (status(503), true),
        (status(429), true),
        (status(404), false),
        (status(400), false),
        (HttpError::TooLarge { limit: 1 }, true),
    ] {
        assert_eq!(err.is_server_fault(), fault, "{err:?}");
    }
}

/// `Target::start` takes an http(s) base whose `/health` answers, and
/// refuses any other scheme up front.
#[tokio::test]
async fn a_target_must_be_http_and_healthy() {
    let healthy = serving("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".into()).await;
    let target = http::Target::start(Some(&healthy), &client())
        .await
        .unwrap();
    assert_eq!(target.base, healthy.trim_end_matches('/'));
    assert!(target.sandbox.is_none());
    let err = http::Target::start(Some("ftp://example.com"), &client())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expected http://host"), "{err:#}");
}
