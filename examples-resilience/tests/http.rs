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
