//! The typed API client against the loopback sandbox (real time, generous
//! bounds): typed values, typed errors, and 429 handling.

use std::time::Duration;

use common::{Sandbox, SandboxConfig};
use examples_http::api::{ApiClient, ApiError, User};
use examples_http::rate_limit::{RateLimiter, Throttle};

async fn sandbox(api_rps: Option<f64>, api_burst: u32) -> Sandbox {
    let config = SandboxConfig {
        api_rps,
        api_burst,
        api_latency: Duration::from_millis(5),
        ..SandboxConfig::default()
    };
    Sandbox::start(config).await.unwrap()
}

fn client(
    sandbox: &Sandbox,
    path: &str,
    limiter: Option<RateLimiter>,
    timeout: Duration,
) -> ApiClient {
    common::init_crypto();
    let base = reqwest::Url::parse(&sandbox.url(path)).unwrap();
    ApiClient::new(
        reqwest::Client::new(),
        base,
        Throttle::new(limiter, 4),
        timeout,
        2,
    )
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn users_decode_into_typed_values_and_are_counted() {
    let sandbox = sandbox(None, 1).await;
    let api = client(&sandbox, "/api", None, LONG);
    let user = api.user("octocat").await.unwrap();
    assert_eq!(user.login, "octocat");
    assert_eq!(user.name.as_deref(), Some("User octocat"));
    // The sandbox's figures are deterministic per login.
    assert_eq!(api.user("octocat").await.unwrap(), user);
    let stats = api.stats();
    assert_eq!(
        (stats.requests, stats.ok, stats.errors, stats.rate_limited),
        (2, 2, 0, 0)
    );
}

#[tokio::test]
async fn http_errors_and_bad_json_become_typed_errors() {
    let sandbox = sandbox(None, 1).await;
    let api = client(&sandbox, "/api", None, LONG);
    let missing = api.user("-not-a-login-").await.unwrap_err();
    assert_eq!(
        missing,
        ApiError::Status {
            status: 404,
            message: "Not Found".to_owned()
        }
    );
    let broken = api
        .get::<User>(&["users", "octocat"], &[("malformed", "1")])
        .await
        .unwrap_err();
    assert!(matches!(broken, ApiError::Decode(_)), "{broken:?}");
    // A path segment is encoded, never interpreted: `../health` stays one segment.
    let escaped = api.user("../health").await.unwrap_err();
    assert!(
        matches!(escaped, ApiError::Status { status: 404, .. }),
        "{escaped:?}"
    );
    assert_eq!(api.stats().errors, 3);
}

#[tokio::test]
async fn a_slow_response_is_a_timeout_error() {
    let sandbox = sandbox(None, 1).await;
    let api = client(&sandbox, "/delay/5000", None, Duration::from_millis(200));
    let err = api.get::<serde_json::Value>(&[], &[]).await.unwrap_err();
    assert_eq!(err, ApiError::Timeout(Duration::from_millis(200)));
}

#[tokio::test]
async fn without_a_limiter_a_429_is_reported_with_its_retry_after() {
    let sandbox = sandbox(Some(1.0), 1).await;
    let api = client(&sandbox, "/api", None, LONG);
    api.user("first").await.unwrap();
    let err = api.user("second").await.unwrap_err();
    assert_eq!(
        err,
        ApiError::RateLimited {
            retry_after: Some(Duration::from_secs(1))
        }
    );
    assert_eq!(api.stats().rate_limited, 1);
}

#[tokio::test]
async fn with_a_limiter_a_429_pauses_the_schedule_and_the_retry_succeeds() {
    // The client is configured too fast for the server (100 vs 2 rps).
    let sandbox = sandbox(Some(2.0), 1).await;
    let api = client(
        &sandbox,
        "/api",
        Some(RateLimiter::new(100.0, 1).unwrap()),
        LONG,
    );
    api.user("first").await.unwrap();
    let started = tokio::time::Instant::now();
    api.user("second").await.unwrap();
    // Retry-After is 1 s (whole seconds): the retry waited for it.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let stats = api.stats();
    assert_eq!(
        (stats.ok, stats.errors, stats.rate_limited, stats.requests),
        (2, 0, 1, 3)
    );
}

#[tokio::test]
async fn a_limited_client_under_the_server_limit_never_sees_a_429() {
    let sandbox = sandbox(Some(62.5), 10).await;
    let api = client(
        &sandbox,
        "/api",
        Some(RateLimiter::new(50.0, 5).unwrap()),
        LONG,
    );
    let calls = (0..40).map(|i| {
        let api = &api;
        async move { api.user(&format!("user-{i}")).await }
    });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(sandbox.stats().api_rate_limited, 0);
    assert_eq!(api.stats().rate_limited, 0);
    assert!(api.stats().peak_in_flight <= 4);
}

// ---- Hostile servers (issue 14): a tiny raw HTTP server on loopback ----

/// What the local hostile server answers to every request.
#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// 429 with this `Retry-After` value.
    RetryAfter(&'static str),
    /// 200 with a chunked body that never ends.
    EndlessChunked,
    /// 200 claiming a body of 10 GiB.
    HugeLength,
    /// Reads the request, then never answers.
    Hang,
    /// 200 whose body arrives one byte every 200 ms.
    SlowBody,
    /// 200 with a valid user padded with spaces to exactly this many bytes,
    /// framed by Content-Length (`chunked: false`) or in 1000-byte chunks.
    Exact { len: usize, chunked: bool },
}

/// A valid `User` padded with trailing spaces (still valid JSON) to `len` bytes.
fn padded_user(len: usize) -> String {
    let user = r#"{"login":"x","id":1,"name":null,"public_repos":0,"followers":0}"#;
    format!("{user:<len$}")
}

/// Serves `mode` on an ephemeral loopback port; returns the base URL.
async fn hostile(mode: Hostile) -> reqwest::Url {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if request.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                // Write errors end the connection; the client judges the rest.
                match mode {
                    Hostile::RetryAfter(value) => {
                        let head = format!(
                            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {value}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                    }
                    Hostile::EndlessChunked => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                        let _ = socket.write_all(head.as_bytes()).await;
                        let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
                        while socket.write_all(chunk.as_bytes()).await.is_ok() {}
                    }
                    Hostile::HugeLength => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10737418240\r\n\r\n{";
                        let _ = socket.write_all(head.as_bytes()).await;
                        std::future::pending::<()>().await;
                    }
                    Hostile::Hang => std::future::pending::<()>().await,
                    Hostile::Exact { len, chunked } => {
                        let body = padded_user(len);
                        let framing = if chunked {
                            "transfer-encoding: chunked".to_owned()
                        } else {
                            format!("content-length: {len}")
                        };
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n"
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                        if chunked {
                            for piece in body.as_bytes().chunks(1000) {
                                let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                                chunk.extend_from_slice(piece);
                                chunk.extend_from_slice(b"\r\n");
                                let _ = socket.write_all(&chunk).await;
                                let _ = socket.flush().await;
                            }
                            let _ = socket.write_all(b"0\r\n\r\n").await;
                        } else {
                            let _ = socket.write_all(body.as_bytes()).await;
                        }
                    }
                    Hostile::SlowBody => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
                        let _ = socket.write_all(head.as_bytes()).await;
                        loop {
                            if socket.write_all(b" ").await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
        }
    });
    reqwest::Url::parse(&format!("http://{addr}/api")).unwrap()
}

fn hostile_client(base: reqwest::Url, timeout: Duration, retries: u32) -> ApiClient {
    common::init_crypto();
    ApiClient::new(
        reqwest::Client::new(),
        base,
        Throttle::new(Some(RateLimiter::new(100.0, 1).unwrap()), 4),
        timeout,
        retries,
    )
}

/// Fails the test instead of hanging it.
async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .expect("the call must end by itself, not hang")
}

#[tokio::test]
async fn a_retry_after_of_u64_max_gives_up_at_once_naming_the_demand() {
    let api = hostile_client(
        hostile(Hostile::RetryAfter("18446744073709551615")).await,
        Duration::from_secs(5),
        2,
    );
    let err = within(LONG, api.user("x")).await.unwrap_err();
    let ApiError::RetryAfterTooLong(too_long) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(too_long.demanded, Duration::from_secs(u64::MAX));
    assert!(too_long.remaining <= Duration::from_secs(5));
    assert!(err.to_string().contains("18446744073709551615 s"), "{err}");
    // One request: it did not retry into a demand it cannot honour.
    assert_eq!(api.stats().requests, 1);
    assert_eq!(api.stats().rate_limited, 1);
}

#[tokio::test]
async fn a_retry_after_of_999999999_never_sleeps_past_the_timeout() {
    let api = hostile_client(
        hostile(Hostile::RetryAfter("999999999")).await,
        Duration::from_secs(2),
        2,
    );
    let err = within(LONG, api.user("x")).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::RetryAfterTooLong(t) if t.demanded == Duration::from_secs(999_999_999)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_huge_retry_after_is_clamped_to_the_configured_maximum() {
    // Clamped to 100 ms, which fits in 30 s: it waits 100 ms, retries, and
    // reports the 429 (with the server's unclamped demand) once retries end.
    let api = hostile_client(hostile(Hostile::RetryAfter("999999999")).await, LONG, 2)
        .with_max_retry_after(Duration::from_millis(100));
    let err = within(LONG, api.user("x")).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::RateLimited {
            retry_after: Some(Duration::from_secs(999_999_999))
        }
    );
    assert_eq!(api.stats().requests, 3);
}

#[tokio::test]
async fn malformed_and_negative_retry_after_mean_absent_and_a_past_date_means_now() {
    for value in ["soon", "-5", "1.5"] {
        let api = hostile_client(hostile(Hostile::RetryAfter(value)).await, LONG, 1);
        let err = within(LONG, api.user("x")).await.unwrap_err();
        assert_eq!(err, ApiError::RateLimited { retry_after: None }, "{value}");
        assert_eq!(api.stats().requests, 2, "{value}");
    }
    let past = hostile(Hostile::RetryAfter("Sun, 06 Nov 1994 08:49:37 GMT")).await;
    let api = hostile_client(past, LONG, 1);
    let err = within(LONG, api.user("x")).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::RateLimited {
            retry_after: Some(Duration::ZERO)
        }
    );
}

#[tokio::test]
async fn an_absent_retry_after_that_does_not_fit_the_timeout_gives_up_at_once() {
    // The default wait (1 s) is longer than the 300 ms timeout.
    let api = hostile_client(
        hostile(Hostile::RetryAfter("garbage")).await,
        Duration::from_millis(300),
        2,
    );
    let err = within(LONG, api.user("x")).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::RetryAfterTooLong(t) if t.demanded == Duration::from_secs(1)),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_cap() {
    let api =
        hostile_client(hostile(Hostile::EndlessChunked).await, LONG, 0).with_max_body(64 << 10);
    let err = within(LONG, api.user("x")).await.unwrap_err();
    assert_eq!(err, ApiError::BodyTooLarge);
}

#[tokio::test]
async fn a_body_of_exactly_the_cap_is_accepted_either_framing() {
    const CAP: usize = 8000;
    for chunked in [false, true] {
        let at_cap = hostile(Hostile::Exact { len: CAP, chunked }).await;
        let api = hostile_client(at_cap, LONG, 0).with_max_body(CAP);
        let user = within(LONG, api.user("x")).await;
        assert_eq!(
            user.map(|u| u.login),
            Ok("x".to_owned()),
            "chunked: {chunked}"
        );
        let over = hostile(Hostile::Exact {
            len: CAP + 1,
            chunked,
        })
        .await;
        let api = hostile_client(over, LONG, 0).with_max_body(CAP);
        let err = within(LONG, api.user("x")).await.unwrap_err();
        assert_eq!(err, ApiError::BodyTooLarge, "chunked: {chunked}");
    }
}

#[tokio::test]
async fn a_declared_length_above_the_cap_is_refused_before_reading() {
    let api = hostile_client(hostile(Hostile::HugeLength).await, LONG, 0);
    let err = within(LONG, api.user("x")).await.unwrap_err();
    assert_eq!(err, ApiError::BodyTooLarge);
}

#[tokio::test]
async fn a_server_that_hangs_or_trickles_is_a_timeout() {
    for mode in [Hostile::Hang, Hostile::SlowBody] {
        let api = hostile_client(hostile(mode).await, Duration::from_millis(500), 0);
        let err = within(LONG, api.user("x")).await.unwrap_err();
        assert_eq!(
            err,
            ApiError::Timeout(Duration::from_millis(500)),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn a_call_dropped_at_any_await_gives_back_its_permit_and_slot() {
    let sandbox = sandbox(None, 1).await;
    let api = client(
        &sandbox,
        "/api",
        Some(RateLimiter::new(1000.0, 1).unwrap()),
        LONG,
    );
    let polls = common::testing::cancel_at_every_await(
        |_| api.user("octocat"),
        async |n| {
            let throttle = api.throttle();
            assert_eq!(throttle.in_flight(), 0, "after {n} polls");
            assert_eq!(throttle.available_permits(), 4, "after {n} polls");
            let stats = api.stats();
            // A dropped call is neither ok nor an error.
            assert_eq!(stats.errors, 0, "after {n} polls");
            assert!(stats.ok <= 1, "after {n} polls");
        },
    )
    .await;
    assert!(polls >= 2, "the call has await points: {polls}");
    assert_eq!(api.stats().ok, 1);
}

/// Issue 14: every mode of the sandbox's hostile catalogue ends in one
/// bounded, typed error (no panic, no hang, no unbounded body).
#[tokio::test]
async fn every_hostile_mode_of_the_sandbox_ends_in_one_typed_error() {
    use ApiError::*;
    let sandbox = sandbox(None, 1).await;
    let timeout = Duration::from_secs(5);
    let base = reqwest::Url::parse(&sandbox.url("/hostile")).unwrap();
    type Check = fn(&ApiError) -> bool;
    let table: &[(&str, Check)] = &[
        ("garbage-status", |e| matches!(e, Transport(_))),
        ("close-mid-headers", |e| matches!(e, Transport(_))),
        ("slow-body", |e| matches!(e, Timeout(_))),
        ("short-body-close", |e| matches!(e, Transport(_))),
        ("short-body-hang", |e| matches!(e, Timeout(_))),
        ("endless-chunked", |e| matches!(e, BodyTooLarge)),
        ("endless-length", |e| matches!(e, BodyTooLarge)),
        ("huge-headers", |e| matches!(e, Transport(_))),
        ("endless-headers", |e| matches!(e, Transport(_))),
        // No gzip decoding here: the ~1 MiB on the wire is capped or not JSON.
        ("gzip-bomb", |e| matches!(e, BodyTooLarge | Decode(_))),
        (
            "retry-after-max",
            |e| matches!(e, RetryAfterTooLong(t) if t.demanded == Duration::from_secs(u64::MAX)),
        ),
        (
            "retry-after-huge",
            |e| matches!(e, RetryAfterTooLong(t) if t.demanded == Duration::from_secs(999_999_999)),
        ),
        ("retry-after-past-date", |e| {
            *e == RateLimited {
                retry_after: Some(Duration::ZERO),
            }
        }),
        ("retry-after-garbage", |e| {
            *e == RateLimited { retry_after: None }
        }),
        ("retry-after-negative", |e| {
            *e == RateLimited { retry_after: None }
        }),
        ("redirect-loop", |e| matches!(e, Transport(_))),
        ("bad-range", |e| matches!(e, Decode(_))),
        ("changing", |e| matches!(e, Decode(_))),
        ("no-length-cut", |e| matches!(e, Decode(_))),
        ("hang", |e| matches!(e, Timeout(_))),
    ];
    let runs = table.iter().map(|(mode, check)| {
        let api = hostile_client(base.clone(), timeout, 2);
        async move {
            let result = within(LONG, api.get::<serde_json::Value>(&[mode], &[])).await;
            (mode, check, result, api.stats())
        }
    });
    for (mode, check, result, stats) in futures::future::join_all(runs).await {
        let err = result.expect_err(mode);
        assert!(check(&err), "{mode}: {err:?}");
        assert_eq!((stats.ok, stats.errors), (0, 1), "{mode}");
    }
}
