//! Behaviour of the retry loop, on tokio's paused clock with seeded jitter:
//! every delay below is exact, and no test sleeps in real time (except the
//! one loopback test against the sandbox, which asserts outcomes only).

use std::cell::Cell;
use std::time::Duration;

use examples_resilience::http::{self, HttpError};
use examples_resilience::retry::{
    Backoff, Decision, GiveUp, Jitter, Retry, RetryNotice, RetryPolicy, TooLong,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::StatusCode;
use tokio::time::{self, Instant};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// base 100 ms, factor 2, cap 1 s.
fn policy(max_attempts: u32, jitter: Jitter, deadline: Option<Duration>) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff: Backoff {
            base: ms(100),
            factor: 2.0,
            max_delay: ms(1000),
            jitter,
        },
        deadline,
        ..RetryPolicy::default()
    }
}

fn always(decision: Decision) -> impl Fn(&&'static str) -> Decision {
    move |_| decision
}

/// Runs `retry` against an operation that always fails, and returns the
/// gaps between attempt starts (zero-time attempts, so gaps == delays).
async fn gaps<N: examples_resilience::retry::Notify<&'static str>>(
    retry: &Retry<impl Fn(&&'static str) -> Decision, N>,
) -> Vec<Duration> {
    let mut starts = Vec::new();
    let result = retry
        .run(|| {
            starts.push(Instant::now());
            async { Err::<(), _>("down") }
        })
        .await;
    assert!(result.is_err());
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn without_jitter_the_delays_double_up_to_the_cap() {
    let retry = Retry::new(policy(7, Jitter::None, None), always(Decision::Retry));
    assert_eq!(
        gaps(&retry).await,
        [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
    );
}

#[tokio::test(start_paused = true)]
async fn seeded_full_jitter_sleeps_exactly_the_schedule_it_draws() {
    let retry = Retry::new(policy(6, Jitter::Full, None), always(Decision::Retry)).seed(7);
    let slept = gaps(&retry).await;
    let drawn: Vec<Duration> = policy(6, Jitter::Full, None)
        .backoff
        .delays(StdRng::seed_from_u64(7))
        .take(5)
        .collect();
    assert_eq!(slept, drawn);
    // The same seed gives the same delays on every run (and every machine).
    let millis: Vec<u128> = slept.iter().map(Duration::as_millis).collect();
    assert_eq!(millis, SEED_7_FULL_JITTER_MS);
    assert_eq!(gaps(&retry).await, slept);
}

/// Pinned from StdRng (ChaCha12, stable across platforms) seeded with 7.
const SEED_7_FULL_JITTER_MS: [u128; 5] = [3, 61, 57, 434, 272];

#[test]
fn the_cap_holds_for_every_jitter_far_down_the_sequence() {
    for jitter in [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
    ] {
        let backoff = policy(1, jitter, None).backoff;
        for (n, delay) in backoff
            .delays(StdRng::seed_from_u64(1))
            .take(1000)
            .enumerate()
        {
            assert!(delay <= ms(1000), "{jitter:?} delay {n} = {delay:?}");
            if jitter == Jitter::Decorrelated {
                assert!(
                    delay >= ms(100),
                    "decorrelated never goes below base: {delay:?}"
                );
            }
            if jitter == Jitter::Equal {
                assert!(
                    delay >= backoff.exponential(n as u32) / 2,
                    "equal keeps half: {delay:?}"
                );
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn no_sleep_follows_the_last_attempt() {
    let retry = Retry::new(policy(3, Jitter::None, None), always(Decision::Retry));
    let start = Instant::now();
    let err = retry
        .run(|| async { Err::<(), _>("down") })
        .await
        .unwrap_err();
    assert_eq!(err.reason, GiveUp::AttemptsExhausted);
    assert_eq!(err.stats.attempts, 3);
    // 100 + 200 ms of sleep, and nothing after the third failure.
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(err.stats.total_delay, ms(300));
    let delays: Vec<_> = err.history.iter().map(|a| a.delay).collect();
    assert_eq!(delays, [Some(ms(100)), Some(ms(200)), None]);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_stops_before_a_sleep_that_would_cross_it() {
    let retry = Retry::new(
        policy(10, Jitter::None, Some(ms(250))),
        always(Decision::Retry),
    );
    let start = Instant::now();
    let err = retry
        .run(|| async { Err::<(), _>("down") })
        .await
        .unwrap_err();
    // Attempts at 0 and 100 ms; the next delay (200 ms) would end at 300 ms.
    assert_eq!(err.reason, GiveUp::DeadlineExceeded);
    assert_eq!(err.stats.attempts, 2);
    assert_eq!(start.elapsed(), ms(100));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_an_attempt_that_hangs() {
    let retry = Retry::new(
        policy(10, Jitter::None, Some(ms(1000))),
        always(Decision::Retry),
    );
    let start = Instant::now();
    let err = retry
        .run(|| async {
            time::sleep(Duration::from_secs(60)).await;
            Ok::<(), &'static str>(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason, GiveUp::DeadlineExceeded);
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(err.history.len(), 1);
    assert!(
        err.history[0].error.is_none(),
        "a cut attempt has no error of its own"
    );
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_returns_after_one_attempt() {
    let calls = Cell::new(0);
    let retry = Retry::new(policy(5, Jitter::Full, None), always(Decision::Stop));
    let start = Instant::now();
    let err = retry
        .run(|| {
            calls.set(calls.get() + 1);
            async { Err::<(), _>("404") }
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason, GiveUp::NotRetryable);
    assert_eq!(calls.get(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        err.to_string(),
        "gave up (not retryable) after 1 attempt(s) in 0.00ns; last error: 404"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_the_floor_of_the_next_delay() {
    let classify = |e: &&'static str| match *e {
        "long" => Decision::RetryAfter(Duration::from_secs(5)),
        "short" => Decision::RetryAfter(ms(10)),
        _ => Decision::Retry,
    };
    let mut errors = ["long", "short"].into_iter();
    let retry = Retry::new(policy(3, Jitter::None, None), classify);
    let mut starts = Vec::new();
    retry
        .run(|| {
            starts.push(Instant::now());
            let next = errors.next();
            async move { next.map_or(Ok(()), Err) }
        })
        .await
        .unwrap();
    // 5 s (the server's word beats our 100 ms), then our 200 ms (beats 10 ms).
    assert_eq!(starts[1] - starts[0], Duration::from_secs(5));
    assert_eq!(starts[2] - starts[1], ms(200));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_caller_mid_sleep_stops_the_loop() {
    let calls = Cell::new(0);
    let retry = Retry::new(policy(10, Jitter::None, None), always(Decision::Retry));
    let run = retry.run(|| {
        calls.set(calls.get() + 1);
        async { Err::<(), _>("down") }
    });
    // Attempts at 0 and 100 ms; at 150 ms the loop is asleep until 300 ms.
    assert!(time::timeout(ms(150), run).await.is_err());
    time::sleep(Duration::from_secs(60)).await;
    assert_eq!(calls.get(), 2, "no attempt after the caller gave up");
}

#[tokio::test(start_paused = true)]
async fn success_reports_attempts_and_total_delay() {
    let mut left = 2;
    let retry = Retry::new(policy(5, Jitter::None, None), always(Decision::Retry));
    let ok = retry
        .run(|| {
            left -= 1;
            let fail = left >= 0;
            async move { if fail { Err("down") } else { Ok(42) } }
        })
        .await
        .unwrap();
    assert_eq!(ok.value, 42);
    assert_eq!(
        (ok.stats.attempts, ok.stats.total_delay, ok.stats.elapsed),
        (3, ms(300), ms(300))
    );
}

#[tokio::test(start_paused = true)]
async fn the_final_error_keeps_every_attempt_and_the_hook_saw_each_retry() {
    let seen = std::sync::Mutex::new(Vec::new());
    let mut errors = ["e1", "e2", "e3"].into_iter();
    let retry = Retry::new(policy(3, Jitter::None, None), always(Decision::Retry)).on_retry(
        |n: &RetryNotice<'_, &'static str>| {
            seen.lock().unwrap().push((n.attempt, *n.error, n.delay))
        },
    );
    let err = retry
        .run(|| {
            let e = errors.next().unwrap_or("unexpected");
            async move { Err::<(), _>(e) }
        })
        .await
        .unwrap_err();
    let history: Vec<_> = err
        .history
        .iter()
        .map(|a| (a.number, a.started, a.error.unwrap()))
        .collect();
    assert_eq!(
        history,
        [(1, ms(0), "e1"), (2, ms(100), "e2"), (3, ms(300), "e3")]
    );
    assert_eq!(err.last_error(), Some(&"e3"));
    assert_eq!(
        *seen.lock().unwrap(),
        [(1, "e1", ms(100)), (2, "e2", ms(200))]
    );
}

#[test]
fn http_errors_are_classified_for_retry_and_for_the_breaker() {
    let status = |code: u16, retry_after: Option<u64>| HttpError::Status {
        status: StatusCode::from_u16(code).unwrap(),
        retry_after: retry_after.map(Duration::from_secs),
    };
    assert_eq!(
        status(503, Some(3)).retry_decision(),
        Decision::RetryAfter(Duration::from_secs(3))
    );
    assert_eq!(status(500, None).retry_decision(), Decision::Retry);
    assert_eq!(status(429, None).retry_decision(), Decision::Retry);
    assert_eq!(status(404, None).retry_decision(), Decision::Stop);
    assert_eq!(status(400, None).retry_decision(), Decision::Stop);
    assert_eq!(status(501, None).retry_decision(), Decision::Stop);
    assert!(status(503, None).is_server_fault());
    assert!(status(429, None).is_server_fault());
    assert!(!status(404, None).is_server_fault());
}

/// Real loopback sockets, so real time: the sandbox's `/flaky` with seed
/// 129 fails twice (500, 503) and then answers; a 404 stops at once.
#[tokio::test]
async fn retries_the_sandbox_until_it_answers_and_stops_on_404() {
    let client = http::client(Duration::from_secs(10)).unwrap();
    let sandbox = common::Sandbox::start(common::SandboxConfig::default())
        .await
        .unwrap();
    let policy = RetryPolicy {
        max_attempts: 5,
        backoff: Backoff {
            base: ms(1),
            ..Backoff::default()
        },
        ..RetryPolicy::default()
    };
    let retry = Retry::new(policy, HttpError::retry_decision);

    let url = sandbox.url("/flaky?fail_rate=0.6&seed=129");
    let ok = retry
        .run(|| http::get_json(&client, &url, http::DEFAULT_MAX_BODY))
        .await
        .unwrap();
    assert_eq!(ok.stats.attempts, 3);
    assert_eq!(ok.value["n"], 2);

    let url = sandbox.url("/status/404");
    let err = retry
        .run(|| http::get_json(&client, &url, http::DEFAULT_MAX_BODY))
        .await
        .unwrap_err();
    assert_eq!((err.reason, err.stats.attempts), (GiveUp::NotRetryable, 1));
    assert!(matches!(
        err.last_error(),
        Some(HttpError::Status {
            status: StatusCode::NOT_FOUND,
            ..
        })
    ));
    assert_eq!(sandbox.stats().requests, 4);
}

/// Issue 14: `Retry-After: 18446744073709551615` on a 503 with a deadline
/// set used to panic (`now + delay` overflowed). It must give up at once.
#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_with_a_deadline_gives_up_at_once_naming_the_demand() {
    let huge = Duration::from_secs(u64::MAX);
    let retry = Retry::new(
        policy(5, Jitter::None, Some(Duration::from_secs(10))),
        always(Decision::RetryAfter(huge)),
    );
    let start = Instant::now();
    let err = retry
        .run(|| async { Err::<(), _>("503") })
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "no sleep at all");
    assert_eq!(err.stats.attempts, 1);
    check_too_long(&err, huge, Duration::from_secs(10));
}

/// Issue 14: `Retry-After: 999999999` without a deadline used to sleep the
/// whole demand (31 years); it is clamped to the policy's maximum.
#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_the_clamp_sleeps_only_the_clamp() {
    let retry = Retry::new(
        policy(2, Jitter::None, None),
        always(Decision::RetryAfter(Duration::from_secs(999_999_999))),
    );
    assert_eq!(gaps(&retry).await, [common::retry_after::DEFAULT_MAX]);
}

/// A deadline of `Duration::MAX` (a library caller's "no limit") must not
/// overflow `Instant + Duration`.
#[tokio::test(start_paused = true)]
async fn a_deadline_of_duration_max_means_no_deadline() {
    let retry = Retry::new(
        policy(3, Jitter::None, Some(Duration::MAX)),
        always(Decision::Retry),
    );
    assert_eq!(gaps(&retry).await, [ms(100), ms(200)]);
}

fn check_too_long<E: std::fmt::Display>(
    err: &examples_resilience::retry::RetryError<E>,
    demanded: Duration,
    remaining: Duration,
) {
    let expected = TooLong {
        demanded,
        remaining,
    };
    assert_eq!(err.reason, GiveUp::RetryAfterTooLong(expected));
    assert_eq!(err.reason.name(), "retry_after_too_long");
    assert!(
        err.to_string().contains("server demanded a wait of"),
        "{err}"
    );
}

/// Dropped at every await point, the loop leaves nothing behind: no
/// attempt starts after the drop.
#[tokio::test(start_paused = true)]
async fn the_loop_dropped_at_every_await_point_makes_no_further_attempt() {
    use common::testing::cancel_at_every_await;
    let calls = std::sync::atomic::AtomicU32::new(0);
    let retry = Retry::new(
        policy(4, Jitter::None, Some(Duration::from_secs(10))),
        always(Decision::Retry),
    );
    let polls = cancel_at_every_await(
        |_| {
            calls.store(0, std::sync::atomic::Ordering::SeqCst);
            retry.run(|| {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async {
                    time::sleep(ms(5)).await;
                    Err::<(), _>("down")
                }
            })
        },
        async |_| {
            let before = calls.load(std::sync::atomic::Ordering::SeqCst);
            time::sleep(Duration::from_secs(60)).await;
            assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), before);
        },
    )
    .await;
    assert_eq!(polls, 8, "4 attempts + 3 sleeps, then done");
}

/// A panic in the operation, the classifier or the hook reaches the
/// caller, and the same `Retry` keeps working afterwards.
#[tokio::test(start_paused = true)]
async fn panics_in_every_callback_reach_the_caller_and_the_retrier_stays_usable() {
    use futures::FutureExt;
    use std::panic::AssertUnwindSafe;
    let classify = |e: &&'static str| match *e {
        "classifier" => panic!("classifier"),
        _ => Decision::Retry,
    };
    let retry = Retry::new(policy(3, Jitter::None, None), classify).on_retry(
        |n: &RetryNotice<'_, &'static str>| {
            if *n.error == "hook" {
                panic!("hook")
            }
        },
    );
    for which in ["op", "classifier", "hook"] {
        let run = retry.run(|| async move {
            if which == "op" {
                panic!("op");
            }
            Err::<(), _>(which)
        });
        let caught = AssertUnwindSafe(run).catch_unwind().await;
        assert!(caught.is_err(), "{which}: the panic reaches the caller");
    }
    let ok = retry.run(|| async { Ok::<_, &str>(7) }).await.unwrap();
    assert_eq!(ok.value, 7);
}

#[tokio::test(start_paused = true)]
async fn the_give_up_error_chains_to_the_last_operation_error() {
    use std::error::Error as _;
    let retry = Retry::new(policy(2, Jitter::None, None), |_: &std::io::Error| {
        Decision::Retry
    });
    let err = retry
        .run(|| async { Err::<(), _>(std::io::Error::other("disk on fire")) })
        .await
        .unwrap_err();
    let source = err.source().expect("the last error is the source");
    assert_eq!(source.to_string(), "disk on fire");
}

#[test]
fn the_policy_in_use_is_the_one_given() {
    let given = policy(4, Jitter::Full, Some(ms(2500)));
    let retry = Retry::new(given, always(Decision::Retry));
    assert_eq!(retry.policy().max_attempts, 4);
    assert_eq!(retry.policy().deadline, Some(ms(2500)));
    assert_eq!(retry.policy().backoff.max_delay, ms(1000));
}
