//! The shared GCRA limiter against a real Redis (`REDIS_URL`), and its
//! fail-closed policy against an unreachable one. Keys and client names are
//! unique per test, so tests never share a budget with anyone.

use std::sync::Arc;
use std::time::Duration;

use common::{Sandbox, SandboxConfig};
use examples_http::api::ApiClient;
use examples_http::rate_limit::{Limiter, Throttle};
use examples_http::shared_limit::{SharedLimitError, SharedLimiter};
use tokio::time::Instant;

fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("REDIS_URL")
}

/// A key (and client-name stem) no other test or process uses.
fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{test}-{}-{nanos}", std::process::id())
}

async fn limiter(key: &str, name: &str, rate: f64, burst: u32) -> SharedLimiter {
    SharedLimiter::connect(&redis_url(), key, name, rate, burst)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_unreachable_redis_fails_closed_with_a_clear_error() {
    let err = SharedLimiter::connect("redis://127.0.0.1:1", "k", "n", 10.0, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SharedLimitError::Unavailable { url, .. } if url == "redis://127.0.0.1:1"),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("Redis unavailable"), "{err}");
    // A password never reaches the message.
    let err = SharedLimiter::connect("redis://:hunter2@127.0.0.1:1", "k", "n", 10.0, 1)
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn invalid_rates_are_refused_before_connecting() {
    for rate in [0.0, -1.0, f64::NAN, 1e-19] {
        let err = SharedLimiter::connect("redis://127.0.0.1:1", "k", "n", rate, 1)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SharedLimitError::Invalid(_)),
            "{rate}: {err:?}"
        );
    }
    let err = SharedLimiter::connect("redis://127.0.0.1:1", "k", "n", 20_000.0, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, SharedLimitError::TooFast(_)), "{err:?}");
    // Exactly the maximum is allowed: it gets as far as connecting (and the
    // closed port refuses that).
    let err = SharedLimiter::connect("redis://127.0.0.1:1", "k", "n", 10_000.0, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SharedLimitError::Unavailable { .. }),
        "{err:?}"
    );
}

#[tokio::test]
#[ignore = "needs Redis: set REDIS_URL"]
async fn the_shared_schedule_gives_the_burst_then_paces_needs_redis() {
    let key = unique("schedule");
    let limiter = limiter(&key, &key, 10.0, 3).await;
    assert_eq!(limiter.key(), key);
    // Debug names the key and the schedule (and never a password).
    let shown = format!("{limiter:?}");
    assert!(
        shown.starts_with("SharedLimiter") && shown.contains(&key) && shown.contains("100000"),
        "{shown}"
    );
    let clock = Clock::start();
    let mut calls = Vec::new();
    for _ in 0..5 {
        calls.push(clock.timed(limiter.reserve()).await);
    }
    // Three at once, then one every 100 ms after the first arrived.
    let waits: Vec<Duration> = calls.iter().map(|c| c.wait).collect();
    assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
    calls[3].assert_slot(&calls[0], Duration::from_millis(100));
    calls[4].assert_slot(&calls[0], Duration::from_millis(200));
}

/// Local time since the test began, so that the checks below add durations
/// (never to an `Instant`).
struct Clock(Instant);

/// One decision, with the local clock read just before and after it: the
/// server decided somewhere in between, so the slot it gave (arrival plus
/// `wait`) lies in `[before + wait, after + wait]`.
struct Call {
    before: Duration,
    wait: Duration,
    after: Duration,
}

impl Clock {
    fn start() -> Self {
        Self(Instant::now())
    }

    async fn timed<E: std::fmt::Debug>(
        &self,
        call: impl Future<Output = Result<Duration, E>>,
    ) -> Call {
        let before = self.0.elapsed();
        let wait = call.await.unwrap();
        let after = self.0.elapsed();
        assert!(wait <= Duration::from_secs(10), "{wait:?}");
        Call {
            before,
            wait,
            after,
        }
    }
}

impl Call {
    /// This call's slot is `offset` after the moment `reference` reached
    /// the server, within 1 ms (Redis TIME is in microseconds), however
    /// slow the round trips were. (Waits measured alone, e.g. `wait > 80
    /// ms`, assumed the round trips took under 20 ms.)
    fn assert_slot(&self, reference: &Call, offset: Duration) {
        const ROUNDING: Duration = Duration::from_millis(1);
        let (earliest, latest) = (self.before + self.wait, self.after + self.wait);
        let (expected_from, expected_to) = (reference.before + offset, reference.after + offset);
        assert!(
            earliest <= expected_to + ROUNDING && expected_from <= latest + ROUNDING,
            "slot in {earliest:?}..={latest:?}, expected {offset:?} after the reference: \
             {expected_from:?}..={expected_to:?}"
        );
    }
}

#[tokio::test]
#[ignore = "needs Redis: set REDIS_URL"]
async fn a_pause_from_one_client_slows_every_client_on_the_key_needs_redis() {
    let key = unique("pause");
    let a = limiter(&key, &format!("{key}-a"), 100.0, 5).await;
    let b = limiter(&key, &format!("{key}-b"), 100.0, 5).await;
    let clock = Clock::start();
    let pause = clock
        .timed(async {
            a.pause(Duration::from_secs(2)).await?;
            Ok::<_, SharedLimitError>(Duration::ZERO)
        })
        .await;
    // b's first slot is where a's pause ends...
    let first = clock.timed(b.reserve()).await;
    assert!(first.wait <= Duration::from_secs(2), "{:?}", first.wait);
    first.assert_slot(&pause, Duration::from_secs(2));
    // ...and no burst follows the pause: the next slot is one interval later.
    let next = clock.timed(b.reserve()).await;
    next.assert_slot(&first, first.wait + Duration::from_millis(10));
}

#[tokio::test]
#[ignore = "needs Redis: set REDIS_URL"]
async fn the_connection_is_named_and_recovers_after_client_kill_needs_redis() {
    let key = unique("kill");
    let limiter = limiter(&key, &key, 1000.0, 1).await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(list.contains(&format!("name={key} ")), "{list}");
    // Kill only our own, named connection.
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg("default")
        .arg("SKIPME")
        .arg("yes")
        .arg("ID")
        .arg(client_id(&list, &key))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    // Fail closed meanwhile, then back: within a few tries a slot is had,
    // on a connection named again.
    let mut recovered = false;
    for _ in 0..20 {
        if limiter.reserve().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered);
    limiter.reserve().await.unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(list.contains(&format!("name={key} ")), "{list}");
}

fn client_id(list: &str, name: &str) -> String {
    list.lines()
        .find(|line| line.contains(&format!("name={name} ")))
        .and_then(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .expect("our connection is listed")
        .to_owned()
}

#[tokio::test]
#[ignore = "needs Redis: set REDIS_URL"]
async fn an_acquire_dropped_at_any_await_leaves_the_limiter_usable_needs_redis() {
    let key = unique("cancel");
    let limiter = limiter(&key, &key, 50.0, 1).await;
    let polls = common::testing::cancel_at_every_await(
        |_| limiter.acquire_slot(),
        async |n| {
            // Forfeited slots only push the schedule later: never a slot
            // earlier than now, and the next decision still answers.
            let wait = limiter.reserve().await.unwrap();
            assert!(wait < Duration::from_secs(5), "after {n} polls: {wait:?}");
        },
    )
    .await;
    assert!(polls >= 1);
}

/// Issue 16: three clients on separate connections share 60 rps; the
/// sandbox enforces 60 rps itself, so any overspend would earn 429s.
#[tokio::test]
#[ignore = "needs Redis: set REDIS_URL"]
async fn three_clients_on_separate_connections_share_60_rps_needs_redis() {
    common::init_crypto();
    let key = unique("three");
    let sandbox = Sandbox::start(SandboxConfig {
        api_rps: Some(60.0),
        api_burst: 10,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let base = reqwest::Url::parse(&sandbox.url("/api")).unwrap();
    let mut clients = Vec::new();
    for i in 0..3 {
        let limiter = limiter(&key, &format!("{key}-{i}"), 60.0, 5).await;
        clients.push(Arc::new(ApiClient::new(
            reqwest::Client::new(),
            base.clone(),
            Throttle::with_limiter(Some(limiter), 10),
            Duration::from_secs(30),
            2,
        )));
    }
    // 100 calls each: 300 starts, about 5 s at 60 rps.
    let calls = clients.iter().flat_map(|client| {
        (0..100).map(move |i| {
            let client = client.clone();
            async move { client.user(&format!("user-{i}")).await }
        })
    });
    let t0 = Instant::now();
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    let starts: Vec<_> = clients.iter().map(|c| c.throttle().starts()).collect();
    let first = starts.iter().filter_map(|s| s.first).min().unwrap();
    let last = starts.iter().filter_map(|s| s.last).max().unwrap();
    let count: u64 = starts.iter().map(|s| s.count).sum();
    let combined = (count - 5) as f64 / last.duration_since(first).as_secs_f64();
    // Above the rate would be overspending: 2 % at most. Below it, a last
    // start woken late on a loaded machine stretches the span: 5 %.
    assert!(
        combined < 60.0 * 1.02 && combined > 60.0 * 0.95,
        "combined {combined:.2} rps in {:?}",
        t0.elapsed()
    );
    assert_eq!(sandbox.stats().api_rate_limited, 0);
    assert!(clients.iter().all(|c| c.stats().rate_limited == 0));
}
