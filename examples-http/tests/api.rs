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
