//! Behaviour of every sandbox endpoint, over real loopback sockets.
//!
//! These run in real time (the paused clock auto-advances while the runtime
//! waits on sockets, see DEPENDENCIES.md), so they assert outcomes and use
//! generous timeouts, never durations.

use std::time::Duration;

use common::sandbox::{SandboxStats, pattern};
use common::{Sandbox, SandboxConfig};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE, RETRY_AFTER};
use tokio_tungstenite::tungstenite::Message;

const GENEROUS: Duration = Duration::from_secs(10);

async fn sandbox(config: SandboxConfig) -> (Sandbox, reqwest::Client) {
    common::init_crypto();
    let sandbox = Sandbox::start(config).await.expect("bind loopback");
    let client = reqwest::Client::builder()
        .timeout(GENEROUS)
        .build()
        .expect("client");
    (sandbox, client)
}

async fn default_sandbox() -> (Sandbox, reqwest::Client) {
    sandbox(SandboxConfig::default()).await
}

#[tokio::test]
async fn health_answers_ok() {
    let (sb, client) = default_sandbox().await;
    let body: serde_json::Value = client
        .get(sb.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ok");
    sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn delay_reports_its_delay_and_rejects_absurd_ones() {
    let (sb, client) = default_sandbox().await;
    let body: serde_json::Value = client
        .get(sb.url("/delay/30"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["delay_ms"], 30);

    let jittered: serde_json::Value = client
        .get(sb.url("/delay/10?jitter_ms=20&seed=3"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let total = jittered["delay_ms"].as_u64().unwrap();
    assert!((10..=30).contains(&total), "delay {total}");

    let too_long = client.get(sb.url("/delay/99999999")).send().await.unwrap();
    assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bytes_serves_the_exact_pattern_with_length() {
    let (sb, client) = default_sandbox().await;
    let n = 300_000;
    let response = client
        .get(sb.url(&format!("/bytes/{n}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_LENGTH], n.to_string().as_str());
    let body = response.bytes().await.unwrap();
    assert_eq!(body.as_ref(), pattern(0, n).as_slice());
}

#[tokio::test]
async fn bytes_honours_ranges() {
    let (sb, client) = default_sandbox().await;
    let url = sb.url("/bytes/1000");
    let get = |range: &'static str| client.get(&url).header(RANGE, range).send();

    let mid = get("bytes=100-199").await.unwrap();
    assert_eq!(mid.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(mid.headers()[CONTENT_RANGE], "bytes 100-199/1000");
    assert_eq!(
        mid.bytes().await.unwrap().as_ref(),
        pattern(100, 100).as_slice()
    );

    let open = get("bytes=990-").await.unwrap();
    assert_eq!(open.headers()[CONTENT_RANGE], "bytes 990-999/1000");
    assert_eq!(
        open.bytes().await.unwrap().as_ref(),
        pattern(990, 10).as_slice()
    );

    let suffix = get("bytes=-5").await.unwrap();
    assert_eq!(
        suffix.bytes().await.unwrap().as_ref(),
        pattern(995, 5).as_slice()
    );

    let past_end = get("bytes=1000-").await.unwrap();
    assert_eq!(past_end.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(past_end.headers()[CONTENT_RANGE], "bytes */1000");

    let ignored = client
        .get(sb.url("/bytes/1000?ignore_range=1"))
        .header(RANGE, "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(ignored.status(), StatusCode::OK);
    assert_eq!(ignored.bytes().await.unwrap().len(), 1000);
}

#[tokio::test]
async fn bytes_fail_after_cuts_the_body_short() {
    let (sb, client) = default_sandbox().await;
    let response = client
        .get(sb.url("/bytes/100000?fail_after=40000&chunk_size=8192"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_LENGTH], "100000");
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "a cut body must end in an error, not a clean EOF");
    assert_eq!(received, pattern(0, 40_000));
}

#[tokio::test]
async fn bytes_no_length_uses_chunked_transfer() {
    let (sb, client) = default_sandbox().await;
    let response = client
        .get(sb.url("/bytes/5000?no_length=1&chunk_size=1000&chunk_delay_ms=1"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get(CONTENT_LENGTH).is_none());
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    assert_eq!(response.content_length(), None);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        pattern(0, 5000).as_slice()
    );
}

#[tokio::test]
async fn status_returns_the_requested_code() {
    let (sb, client) = default_sandbox().await;
    for code in [200u16, 404, 418, 500, 503] {
        let response = client
            .get(sb.url(&format!("/status/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), code);
    }
    let with_retry = client
        .get(sb.url("/status/429?retry_after=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_retry.headers()[RETRY_AFTER], "3");
    let bad = client.get(sb.url("/status/99")).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

async fn flaky_statuses(sb: &Sandbox, client: &reqwest::Client, query: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        let response = client
            .get(sb.url(&format!("/flaky?{query}")))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn flaky_is_seeded_and_deterministic() {
    let (a, client) = default_sandbox().await;
    let (b, _) = default_sandbox().await;
    let first = flaky_statuses(&a, &client, "fail_rate=0.5&seed=11", 40).await;
    let again = flaky_statuses(&b, &client, "fail_rate=0.5&seed=11", 40).await;
    assert_eq!(first, again, "same seed, same sequence on a fresh sandbox");
    let failures = first.iter().filter(|s| **s >= 500).count();
    assert!((8..=32).contains(&failures), "{failures} of 40 failed");
    assert!(first.iter().all(|s| [200, 500, 503].contains(s)));
    assert_eq!(a.stats().flaky_failures, failures as u64);

    let never = flaky_statuses(&a, &client, "fail_rate=0", 10).await;
    assert!(never.iter().all(|s| *s == 200));
    let always = flaky_statuses(&a, &client, "fail_rate=1&retry_after=2", 10).await;
    assert!(always.iter().all(|s| *s >= 500));

    let bad = client
        .get(a.url("/flaky?fail_rate=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn flaky_hangs_past_a_client_timeout() {
    let (sb, client) = default_sandbox().await;
    let result = client
        .get(sb.url("/flaky?fail_rate=0&hang_rate=1&hang_ms=60000"))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    let err = result.expect_err("a hung response must time out");
    assert!(err.is_timeout(), "{err}");
    // Shutdown must not wait out the 60 s hang.
    tokio::time::timeout(GENEROUS, sb.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn api_users_are_deterministic_json() {
    let config = SandboxConfig {
        api_rps: None,
        api_latency: Duration::ZERO,
        ..Default::default()
    };
    let (sb, client) = sandbox(config).await;
    let get = |name: &str| client.get(sb.url(&format!("/api/users/{name}"))).send();
    let one: serde_json::Value = get("octocat").await.unwrap().json().await.unwrap();
    let two: serde_json::Value = get("octocat").await.unwrap().json().await.unwrap();
    assert_eq!(one, two);
    assert_eq!(one["login"], "octocat");
    assert!(one["public_repos"].is_u64());

    assert_eq!(
        get("no_such!user").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let malformed = client
        .get(sb.url("/api/users/octocat?malformed=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::OK);
    assert!(malformed.json::<serde_json::Value>().await.is_err());
}

#[tokio::test]
async fn api_rate_limit_answers_429_with_retry_after() {
    let config = SandboxConfig {
        api_rps: Some(1.0),
        api_burst: 3,
        api_latency: Duration::ZERO,
        ..Default::default()
    };
    let (sb, client) = sandbox(config).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..6 {
        let response = client
            .get(sb.url(&format!("/api/users/u{i}")))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = Some(response.headers()[RETRY_AFTER].to_str().unwrap().to_owned());
        }
        statuses.push(response.status().as_u16());
    }
    // The burst of 3 passes; at 1 rps the rest, sent back to back, cannot.
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let stats = sb.stats();
    assert_eq!((stats.api_ok, stats.api_rate_limited), (3, 3));
}

#[tokio::test]
async fn ws_echo_echoes_text_and_binary() {
    let (sb, _client) = default_sandbox().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(sb.ws_url("/ws/echo"))
        .await
        .unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    ws.send(Message::Ping(vec![9u8].into())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Pong(vec![9u8].into())
    );
    ws.close(None).await.unwrap();
    assert_eq!(sb.stats().ws_connections, 1);
}

#[tokio::test]
async fn ws_echo_drops_after_n_messages() {
    let (sb, _client) = default_sandbox().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(sb.ws_url("/ws/echo?drop_after=2"))
        .await
        .unwrap();
    for i in 0..3 {
        // The third send may or may not reach the socket before the drop.
        let _ = ws.send(Message::text(format!("m{i}"))).await;
    }
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("m0"));
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("m1"));
    // An abrupt drop: the stream ends in an error or EOF, never a third echo.
    let end = tokio::time::timeout(GENEROUS, ws.next()).await.unwrap();
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");

    let (mut polite, _) =
        tokio_tungstenite::connect_async(sb.ws_url("/ws/echo?drop_after=0&drop_mode=close"))
            .await
            .unwrap();
    match polite.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1012),
        other => panic!("expected Close 1012, got {other:?}"),
    }
}

#[tokio::test]
async fn ws_echo_ignore_pings_goes_silent() {
    let (sb, _client) = default_sandbox().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(sb.ws_url("/ws/echo?ignore_pings=1"))
        .await
        .unwrap();
    ws.send(Message::Ping(vec![1u8].into())).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
    assert!(waited.is_err(), "no pong may arrive: {waited:?}");
    // Shutdown still ends the silent session promptly.
    tokio::time::timeout(GENEROUS, sb.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn stats_count_every_request() {
    let (sb, client) = default_sandbox().await;
    for _ in 0..5 {
        client.get(sb.url("/health")).send().await.unwrap();
    }
    assert_eq!(
        sb.stats(),
        SandboxStats {
            requests: 5,
            ..Default::default()
        }
    );
}

/// `/bytes/{n}` is deterministic, so it carries a strong ETag, and a Range
/// with a matching If-Range is honoured while a stale one gets the whole body.
#[tokio::test]
async fn bytes_carry_an_etag_and_honour_if_range() {
    common::init_crypto();
    let sandbox = common::Sandbox::start(common::SandboxConfig::default())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let url = sandbox.url("/bytes/100");
    let full = client.get(&url).send().await.unwrap();
    assert_eq!(full.headers()["etag"], "\"bytes-100\"");
    let resumed = client
        .get(&url)
        .header("range", "bytes=40-")
        .header("if-range", "\"bytes-100\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 206);
    assert_eq!(resumed.bytes().await.unwrap().len(), 60);
    let stale = client
        .get(&url)
        .header("range", "bytes=40-")
        .header("if-range", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.bytes().await.unwrap().len(), 100);
    sandbox.shutdown().await.unwrap();
}
