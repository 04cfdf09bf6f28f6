//! Behaviour of the circuit breaker on tokio's paused clock: every
//! transition, the probe permits under concurrency and cancellation, the
//! windowed rate, slow calls, the classifier and the event order.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use examples_resilience::breaker::{
    BreakerConfig, CallError, CircuitBreaker, CircuitOpen, RateTrip, State, Trigger, next_state,
};
use examples_resilience::http::{self, HttpError};
use tokio::time::{self, Instant};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn config(consecutive: u32) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: Some(consecutive),
        cool_down: secs(30),
        max_cool_down: secs(30),
        ..BreakerConfig::default()
    }
}

async fn fail(breaker: &CircuitBreaker) -> Result<(), CallError<&'static str>> {
    breaker.call(|| async { Err("boom") }).await
}

async fn succeed(breaker: &CircuitBreaker) -> Result<(), CallError<&'static str>> {
    breaker.call(|| async { Ok(()) }).await
}

/// A call that takes `d` and succeeds.
async fn slow_ok(breaker: &CircuitBreaker, d: Duration) -> Result<(), CallError<&'static str>> {
    breaker
        .call(|| async move {
            time::sleep(d).await;
            Ok(())
        })
        .await
}

#[test]
fn the_transition_table_allows_exactly_four_moves() {
    use State::*;
    let triggers = [
        Trigger::ConsecutiveFailures(1),
        Trigger::FailureRate {
            failures: 1,
            calls: 1,
        },
        Trigger::CoolDownElapsed,
        Trigger::ProbeFailed,
        Trigger::ProbesSucceeded(1),
    ];
    let mut allowed = Vec::new();
    for from in [Closed, Open, HalfOpen] {
        for trigger in triggers {
            if let Some(to) = next_state(from, trigger) {
                allowed.push((from, trigger, to));
            }
        }
    }
    assert_eq!(
        allowed,
        [
            (Closed, triggers[0], Open),
            (Closed, triggers[1], Open),
            (Open, Trigger::CoolDownElapsed, HalfOpen),
            (HalfOpen, Trigger::ProbeFailed, Open),
            (HalfOpen, triggers[4], Closed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn n_consecutive_failures_open_it_and_a_success_resets_the_count() {
    let breaker = CircuitBreaker::new(config(3)).unwrap();
    for _ in 0..2 {
        assert_eq!(fail(&breaker).await, Err(CallError::Failed("boom")));
    }
    succeed(&breaker).await.unwrap();
    for _ in 0..2 {
        fail(&breaker).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Closed);
    fail(&breaker).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_fails_fast_with_the_time_left_and_never_calls() {
    let breaker = CircuitBreaker::new(config(1)).unwrap();
    fail(&breaker).await.unwrap_err();
    time::advance(secs(10)).await;
    let called = AtomicU32::new(0);
    let result = breaker
        .call(|| {
            called.fetch_add(1, Ordering::Relaxed);
            async { Ok::<(), &str>(()) }
        })
        .await;
    assert_eq!(
        result,
        Err(CallError::Open(CircuitOpen { retry_in: secs(20) }))
    );
    assert_eq!(called.load(Ordering::Relaxed), 0);
    assert_eq!(breaker.metrics().0.rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn after_the_cool_down_enough_probe_successes_close_it() {
    let breaker = CircuitBreaker::new(BreakerConfig {
        success_threshold: 2,
        ..config(1)
    })
    .unwrap();
    fail(&breaker).await.unwrap_err();
    time::advance(secs(30)).await;
    assert_eq!(breaker.state(), State::HalfOpen);
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), State::HalfOpen, "one success of two");
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_at_once_with_a_growing_cool_down() {
    let cfg = BreakerConfig {
        cool_down: secs(10),
        cool_down_growth: 2.0,
        max_cool_down: secs(25),
        ..config(1)
    };
    let breaker = CircuitBreaker::new(cfg).unwrap();
    fail(&breaker).await.unwrap_err();
    let mut open_for = Vec::new();
    for _ in 0..3 {
        let Err(CallError::Open(open)) = succeed(&breaker).await else {
            panic!("expected open")
        };
        open_for.push(open.retry_in);
        time::advance(open.retry_in).await;
        fail(&breaker).await.unwrap_err(); // the probe fails: open again
        assert_eq!(breaker.state(), State::Open);
    }
    assert_eq!(open_for, [secs(10), secs(20), secs(25)]);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_k_probes_under_concurrency() {
    let breaker = CircuitBreaker::new(BreakerConfig {
        half_open_probes: 2,
        success_threshold: 5,
        ..config(1)
    })
    .unwrap();
    fail(&breaker).await.unwrap_err();
    time::advance(secs(30)).await;
    let calls: Vec<_> = (0..10).map(|_| slow_ok(&breaker, secs(1))).collect();
    let results = futures::future::join_all(calls).await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    let spared = results
        .iter()
        .filter(|r| {
            **r == Err(CallError::Open(CircuitOpen {
                retry_in: Duration::ZERO,
            }))
        })
        .count();
    assert_eq!((admitted, spared), (2, 8));
    // Their permits came back: two more probes may go now.
    assert_eq!(
        futures::future::join_all((0..3).map(|_| slow_ok(&breaker, secs(1))))
            .await
            .iter()
            .filter(|r| r.is_ok())
            .count(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_returns_its_permit() {
    let breaker = CircuitBreaker::new(config(1)).unwrap();
    fail(&breaker).await.unwrap_err();
    time::advance(secs(30)).await;
    // The only probe is cut by its caller's timeout: nothing is recorded...
    assert!(
        time::timeout(secs(1), slow_ok(&breaker, secs(60)))
            .await
            .is_err()
    );
    assert_eq!(breaker.state(), State::HalfOpen);
    // ...and its permit is back, so the next caller can probe (and close it).
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().0.cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn the_failure_rate_trips_only_with_min_calls_in_the_window() {
    let rate = RateTrip {
        threshold: 0.5,
        window: secs(10),
        min_calls: 10,
    };
    let cfg = BreakerConfig {
        consecutive_failures: None,
        failure_rate: Some(rate),
        ..config(1)
    };
    let breaker = CircuitBreaker::new(cfg).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    breaker.on_transition(move |t| seen.lock().unwrap().push(t.trigger));
    // 4 failures in 4 calls is 100%, but below min_calls: no verdict.
    for _ in 0..4 {
        fail(&breaker).await.unwrap_err();
    }
    for _ in 0..5 {
        succeed(&breaker).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed, "4 of 9");
    fail(&breaker).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open, "5 of 10");
    assert_eq!(
        *events.lock().unwrap(),
        [Trigger::FailureRate {
            failures: 5,
            calls: 10
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn failures_older_than_the_window_no_longer_count() {
    let rate = RateTrip {
        threshold: 0.5,
        window: secs(10),
        min_calls: 10,
    };
    let cfg = BreakerConfig {
        consecutive_failures: None,
        failure_rate: Some(rate),
        ..config(1)
    };
    let breaker = CircuitBreaker::new(cfg).unwrap();
    for _ in 0..9 {
        fail(&breaker).await.unwrap_err();
    }
    time::advance(secs(11)).await;
    assert_eq!(breaker.metrics().1, (0, 0), "the nine failures slid out");
    for _ in 0..6 {
        succeed(&breaker).await.unwrap();
    }
    for _ in 0..4 {
        fail(&breaker).await.unwrap_err();
    }
    assert_eq!(breaker.metrics().1, (10, 4));
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_count_as_failures_but_keep_their_result() {
    let breaker = CircuitBreaker::new(BreakerConfig {
        slow_call: Some(secs(1)),
        ..config(2)
    })
    .unwrap();
    slow_ok(&breaker, Duration::from_millis(1000))
        .await
        .unwrap(); // at the limit: not slow
    assert_eq!(breaker.metrics().0.slow_calls, 0);
    for _ in 0..2 {
        assert_eq!(slow_ok(&breaker, secs(2)).await, Ok(()));
    }
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.metrics().0.slow_calls, 2);
}

#[tokio::test(start_paused = true)]
async fn the_classifier_decides_which_errors_count() {
    let breaker = CircuitBreaker::new(config(3))
        .unwrap()
        .with_classifier(|e: &&str| *e != "404");
    for _ in 0..10 {
        let result = breaker.call(|| async { Err::<(), _>("404") }).await;
        assert_eq!(result, Err(CallError::Failed("404")));
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().0.ignored_errors, 10);
    for _ in 0..3 {
        breaker
            .call(|| async { Err::<(), _>("500") })
            .await
            .unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn events_arrive_in_order_through_the_hook_and_the_watch_channel() {
    let breaker = CircuitBreaker::new(config(1)).unwrap();
    let start = Instant::now();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    breaker.on_transition(move |t| {
        seen.lock()
            .unwrap()
            .push((t.from, t.to, t.trigger, t.at - start))
    });
    let mut state_rx = breaker.subscribe();

    fail(&breaker).await.unwrap_err();
    assert!(state_rx.has_changed().unwrap());
    assert_eq!(*state_rx.borrow_and_update(), State::Open);
    time::advance(secs(30)).await;
    fail(&breaker).await.unwrap_err(); // half-open, then the probe fails
    time::advance(secs(30)).await;
    succeed(&breaker).await.unwrap();
    assert_eq!(*state_rx.borrow_and_update(), State::Closed);

    use State::*;
    assert_eq!(
        *events.lock().unwrap(),
        [
            (Closed, Open, Trigger::ConsecutiveFailures(1), secs(0)),
            (Open, HalfOpen, Trigger::CoolDownElapsed, secs(30)),
            (HalfOpen, Open, Trigger::ProbeFailed, secs(30)),
            (Open, HalfOpen, Trigger::CoolDownElapsed, secs(60)),
            (HalfOpen, Closed, Trigger::ProbesSucceeded(1), secs(60)),
        ]
    );
    assert_eq!(breaker.metrics().0.transitions, 5);
}

#[tokio::test(start_paused = true)]
async fn a_late_failure_from_before_the_trip_does_not_knock_over_the_probes() {
    let breaker = CircuitBreaker::new(BreakerConfig {
        success_threshold: 2,
        ..config(1)
    })
    .unwrap();
    // Admitted while closed; fails 40 s later, long after the trip.
    let late = breaker.call(|| async {
        time::sleep(secs(40)).await;
        Err::<(), _>("late")
    });
    let rest = async {
        fail(&breaker).await.unwrap_err(); // trips at 0 s
        time::advance(secs(30)).await;
        succeed(&breaker).await.unwrap(); // first probe succeeds at 30 s
    };
    let (late, ()) = tokio::join!(late, rest);
    assert_eq!(late, Err(CallError::Failed("late")));
    assert_eq!(
        breaker.state(),
        State::HalfOpen,
        "the stale failure was ignored"
    );
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn configurations_that_cannot_work_are_refused() {
    let none = BreakerConfig {
        consecutive_failures: None,
        failure_rate: None,
        ..config(1)
    };
    assert!(CircuitBreaker::new(none).is_err());
    assert!(
        CircuitBreaker::new(BreakerConfig {
            half_open_probes: 0,
            ..config(1)
        })
        .is_err()
    );
    let bad_rate = RateTrip {
        threshold: 1.5,
        window: secs(1),
        min_calls: 1,
    };
    let err = CircuitBreaker::new(BreakerConfig {
        failure_rate: Some(bad_rate),
        ..config(1)
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid circuit breaker config: failure_rate"),
        "{err}"
    );
}

/// Real loopback sockets (real time; nothing here depends on timing): a
/// 500-answering endpoint opens the circuit after three requests, and the
/// fourth call never reaches the server.
#[tokio::test]
async fn against_the_sandbox_the_open_circuit_spares_the_server() {
    let client = http::client(secs(10)).unwrap();
    let sandbox = common::Sandbox::start(common::SandboxConfig::default())
        .await
        .unwrap();
    let breaker = CircuitBreaker::new(config(3))
        .unwrap()
        .with_classifier(HttpError::is_server_fault);
    let not_found = sandbox.url("/status/404");
    breaker
        .call(|| http::get_json(&client, &not_found, http::DEFAULT_MAX_BODY))
        .await
        .unwrap_err();
    let url = sandbox.url("/flaky?fail_rate=1&seed=1");
    for _ in 0..3 {
        let err = breaker
            .call(|| http::get_json(&client, &url, http::DEFAULT_MAX_BODY))
            .await
            .unwrap_err();
        assert!(
            matches!(err, CallError::Failed(HttpError::Status { .. })),
            "{err}"
        );
    }
    let err = breaker
        .call(|| http::get_json(&client, &url, http::DEFAULT_MAX_BODY))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Open(_)), "{err}");
    assert_eq!(
        sandbox.stats().requests,
        4,
        "one 404 and three 5xx; the fifth call was spared"
    );
}

/// Issue 15.14: re-entering half-open must not forget probes of the
/// previous spell that are still running. With K = 2: probe A fails fast
/// (reopens), probe B hangs on; after the next cool-down only one new
/// probe may join B, never two.
#[tokio::test(start_paused = true)]
async fn probes_from_an_earlier_half_open_spell_still_hold_their_permits() {
    let breaker = CircuitBreaker::new(BreakerConfig {
        half_open_probes: 2,
        success_threshold: 5,
        ..config(1)
    })
    .unwrap();
    let running = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let probe = |d: Duration, ok: bool| {
        let (breaker, running, peak) = (breaker.clone(), running.clone(), peak.clone());
        async move {
            breaker
                .call(|| async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    time::sleep(d).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    if ok { Ok(()) } else { Err("boom") }
                })
                .await
        }
    };
    fail(&breaker).await.unwrap_err();
    time::advance(secs(30)).await;
    let slow_b = tokio::spawn(probe(secs(100), true));
    let fast_a = tokio::spawn(probe(secs(1), false));
    assert_eq!(fast_a.await.unwrap(), Err(CallError::Failed("boom")));
    assert_eq!(breaker.state(), State::Open);
    time::advance(secs(30)).await;
    assert_eq!(breaker.state(), State::HalfOpen);
    let late: Vec<_> = (0..3)
        .map(|_| tokio::spawn(probe(secs(10), true)))
        .collect();
    let mut admitted = 0;
    for call in late {
        if call.await.unwrap().is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 1, "only one permit was free");
    assert_eq!(breaker.probes_in_flight(), 1, "B still holds its permit");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "never more than K probes at once"
    );
    slow_b.abort();
}

/// Issue 15.15: a panicking operation counts as a failure (it trips the
/// breaker) and the panic reaches the caller unchanged.
#[tokio::test(start_paused = true)]
async fn a_panicking_operation_counts_as_a_failure_and_the_panic_goes_on() {
    let breaker = CircuitBreaker::new(config(2)).unwrap();
    for _ in 0..2 {
        let b = breaker.clone();
        let joined = tokio::spawn(async move {
            b.call(|| async { panic!("op exploded") as Result<(), &str> })
                .await
        })
        .await;
        let payload = joined.unwrap_err().into_panic();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"op exploded"));
    }
    assert_eq!(breaker.state(), State::Open);
    let (metrics, _) = breaker.metrics();
    assert_eq!(
        (metrics.failures, metrics.panics, metrics.cancelled),
        (2, 2, 0)
    );
    // A panic while *building* the future counts the same way.
    let b = CircuitBreaker::new(config(1)).unwrap();
    let b2 = b.clone();
    let joined = tokio::spawn(async move {
        b2.call(|| -> std::future::Ready<Result<(), &str>> { panic!("before the future") })
            .await
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(b.state(), State::Open);
}

/// The breaker's invariants after a call is dropped at any await point:
/// every admitted call is accounted for exactly once (succeeded, failed or
/// cancelled) and no probe permit leaks.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_at_every_await_point_keeps_the_counts_and_permits() {
    use common::testing::cancel_at_every_await;
    let breaker = CircuitBreaker::new(BreakerConfig {
        half_open_probes: 2,
        success_threshold: 100,
        ..config(1)
    })
    .unwrap();
    fail(&breaker).await.unwrap_err();
    time::advance(secs(30)).await;
    assert_eq!(breaker.state(), State::HalfOpen);
    let polls = cancel_at_every_await(
        |_| {
            let breaker = breaker.clone();
            async move {
                breaker
                    .call(|| async {
                        time::sleep(secs(1)).await;
                        tokio::task::yield_now().await;
                        time::sleep(secs(1)).await;
                        Ok::<_, &str>(())
                    })
                    .await
            }
        },
        async |_| {
            let (m, _) = breaker.metrics();
            assert_eq!(
                breaker.probes_in_flight(),
                0,
                "a dropped probe returned its permit"
            );
            assert_eq!(m.permitted, m.successes + m.failures + m.cancelled, "{m:?}");
            assert_eq!(breaker.state(), State::HalfOpen);
        },
    )
    .await;
    assert!(polls >= 3, "{polls}");
}

/// A panic in the classifier or the transition hook leaves the breaker
/// usable, its counts consistent, and the panic reaches the caller.
#[tokio::test(start_paused = true)]
async fn panics_in_the_classifier_and_the_hook_leave_the_breaker_usable() {
    let breaker = CircuitBreaker::new(config(3))
        .unwrap()
        .with_classifier(|e: &&str| {
            if *e == "bomb" {
                panic!("classifier")
            } else {
                true
            }
        });
    let b = breaker.clone();
    let joined = tokio::spawn(async move { b.call(|| async { Err::<(), _>("bomb") }).await }).await;
    assert!(joined.unwrap_err().is_panic());
    let (m, _) = breaker.metrics();
    assert_eq!(
        (m.permitted, m.failures, m.panics, m.cancelled),
        (1, 1, 1, 0)
    );
    // Still works: two more failures trip it (3 in a row, the panic counted).
    for _ in 0..2 {
        breaker
            .call(|| async { Err::<(), _>("down") })
            .await
            .unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);

    let hooked = CircuitBreaker::new(config(1)).unwrap();
    hooked.on_transition(|_| panic!("hook"));
    let h = hooked.clone();
    let joined = tokio::spawn(async move { fail(&h).await }).await;
    assert!(joined.unwrap_err().is_panic());
    // The transition happened before the hook ran; the lock is not poisoned for good.
    assert_eq!(hooked.state(), State::Open);
    assert!(matches!(fail(&hooked).await, Err(CallError::Open(_))));
}

/// Each trigger and state reads as the transition log prints it; the
/// breaker's Debug shows its state and probes.
#[tokio::test]
async fn triggers_and_states_display_as_the_log_prints_them() {
    let states = [State::Closed, State::Open, State::HalfOpen].map(|s| s.to_string());
    assert_eq!(states, ["closed", "open", "half-open"]);
    let debug = format!("{:?}", CircuitBreaker::new(config(1)).unwrap());
    assert!(
        debug.contains("state: Closed") && debug.contains("probes_in_flight: 0"),
        "{debug}"
    );
    let shown = [
        Trigger::ConsecutiveFailures(3),
        Trigger::FailureRate {
            failures: 3,
            calls: 4,
        },
        Trigger::FailureRate {
            failures: 0,
            calls: 0,
        },
        Trigger::CoolDownElapsed,
        Trigger::ProbeFailed,
        Trigger::ProbesSucceeded(2),
    ]
    .map(|t| t.to_string());
    assert_eq!(
        shown,
        [
            "3 consecutive failures",
            "failure rate 75% (3/4 calls in the window)",
            "failure rate 0% (0/0 calls in the window)",
            "cool-down elapsed",
            "a probe failed",
            "2 probes succeeded",
        ]
    );
}

#[test]
fn validate_rejects_each_broken_rule_alone_and_accepts_its_boundary() {
    let rate = |threshold: f64, window: Duration, min_calls: u32| BreakerConfig {
        failure_rate: Some(RateTrip {
            threshold,
            window,
            min_calls,
        }),
        ..BreakerConfig::default()
    };
    let base = BreakerConfig::default();
    let accepted = [
        ("the default", base),
        (
            "rate only",
            BreakerConfig {
                consecutive_failures: None,
                ..rate(0.5, secs(10), 5)
            },
        ),
        ("threshold 1", rate(1.0, secs(10), 1)),
        (
            "growth 1, max == cool-down",
            BreakerConfig {
                cool_down_growth: 1.0,
                ..config(3)
            },
        ),
    ];
    for (what, config) in accepted {
        assert_eq!(config.validate(), Ok(()), "{what}");
    }
    let rejected = [
        (
            "no trip rule",
            BreakerConfig {
                consecutive_failures: None,
                ..base
            },
        ),
        ("zero consecutive", config(0)),
        ("threshold 0", rate(0.0, secs(10), 5)),
        ("threshold above 1", rate(1.01, secs(10), 5)),
        ("threshold NaN", rate(f64::NAN, secs(10), 5)),
        ("zero window", rate(0.5, Duration::ZERO, 5)),
        ("zero min calls", rate(0.5, secs(10), 0)),
        (
            "zero probes",
            BreakerConfig {
                half_open_probes: 0,
                ..base
            },
        ),
        (
            "zero successes",
            BreakerConfig {
                success_threshold: 0,
                ..base
            },
        ),
        (
            "growth NaN",
            BreakerConfig {
                cool_down_growth: f64::NAN,
                ..base
            },
        ),
        (
            "growth below 1",
            BreakerConfig {
                cool_down_growth: 0.99,
                ..base
            },
        ),
        (
            "max below cool-down",
            BreakerConfig {
                max_cool_down: secs(29),
                ..base
            },
        ),
    ];
    for (what, config) in rejected {
        assert!(config.validate().is_err(), "{what} was accepted");
    }
}

#[tokio::test(start_paused = true)]
async fn closing_forgets_the_failures_that_opened_the_circuit() {
    let rate = RateTrip {
        threshold: 0.5,
        window: secs(600),
        min_calls: 4,
    };
    let cfg = BreakerConfig {
        consecutive_failures: None,
        failure_rate: Some(rate),
        ..config(1)
    };
    let breaker = CircuitBreaker::new(cfg).unwrap();
    for _ in 0..4 {
        fail(&breaker).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);
    time::advance(secs(31)).await;
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    // Still inside the 600 s window, but a closed circuit starts afresh.
    assert_eq!(breaker.metrics().1, (0, 0));
    for _ in 0..3 {
        fail(&breaker).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Closed, "3 calls: below min_calls");
}

/// An operation error with a cause of its own.
#[derive(Debug)]
struct Outer(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outer")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn a_call_error_reads_as_its_cause_and_chains_past_it() {
    use std::error::Error as _;
    let failed: CallError<Outer> = CallError::Failed(Outer(std::io::Error::other("inner")));
    assert_eq!(failed.to_string(), "outer");
    assert_eq!(failed.source().unwrap().to_string(), "inner");
    let open: CallError<Outer> = CallError::Open(CircuitOpen { retry_in: secs(3) });
    assert_eq!(open.to_string(), "circuit open; retry in 3s");
    assert!(open.source().is_none());
}
