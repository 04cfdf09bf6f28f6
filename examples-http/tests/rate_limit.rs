//! The GCRA limiter and the throttle, driven without sockets on tokio's
//! paused clock: every start time is exact.

use std::sync::Arc;
use std::time::Duration;

use examples_http::rate_limit::{MAX_PAUSE, RateLimitError, RateLimiter, Starts, Throttle};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Starts `n` callers at once (in order) and returns each one's start offset.
async fn start_offsets(limiter: Arc<RateLimiter>, n: usize) -> Vec<Duration> {
    let t0 = Instant::now();
    let calls = (0..n).map(|_| {
        let limiter = limiter.clone();
        async move {
            limiter.acquire().await;
            t0.elapsed()
        }
    });
    // join_all polls in order, so caller i reserves the i-th slot.
    futures::future::join_all(calls).await
}

#[tokio::test(start_paused = true)]
async fn calls_start_exactly_on_the_token_schedule() {
    let limiter = Arc::new(RateLimiter::new(4.0, 3).unwrap());
    let offsets = start_offsets(limiter, 8).await;
    // Burst of 3 at once, then one every 250 ms.
    let expected: Vec<Duration> = [0, 0, 0, 250, 500, 750, 1000, 1250]
        .into_iter()
        .map(ms)
        .collect();
    assert_eq!(offsets, expected);
}

#[tokio::test(start_paused = true)]
async fn a_rate_below_one_per_second_works() {
    let limiter = Arc::new(RateLimiter::new(0.5, 1).unwrap());
    let offsets = start_offsets(limiter, 3).await;
    assert_eq!(offsets, vec![ms(0), ms(2000), ms(4000)]);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let limiter = Arc::new(RateLimiter::new(10.0, 1).unwrap());
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for id in 0..6 {
        let (limiter, order) = (limiter.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            limiter.acquire().await;
            order.lock().unwrap().push(id);
        }));
        // Let this task reserve before the next one is spawned.
        tokio::task::yield_now().await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn an_idle_limiter_banks_at_most_one_burst() {
    let limiter = Arc::new(RateLimiter::new(10.0, 2).unwrap());
    start_offsets(limiter.clone(), 2).await;
    tokio::time::sleep(Duration::from_secs(60)).await; // a long idle spell
    let offsets = start_offsets(limiter, 4).await;
    assert_eq!(offsets, vec![ms(0), ms(0), ms(100), ms(200)]);
}

#[tokio::test(start_paused = true)]
async fn pause_until_pushes_every_later_start_back_without_a_burst() {
    let limiter = Arc::new(RateLimiter::new(10.0, 5).unwrap());
    limiter.pause_until(Instant::now() + Duration::from_secs(3));
    let offsets = start_offsets(limiter, 3).await;
    assert_eq!(offsets, vec![ms(3000), ms(3100), ms(3200)]);
}

#[test]
fn a_rate_of_zero_or_less_or_not_finite_is_refused() {
    for rps in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-320] {
        assert!(
            matches!(
                RateLimiter::new(rps, 1),
                Err(RateLimitError::InvalidRate(_))
            ),
            "{rps}"
        );
    }
    assert_eq!(
        RateLimiter::new(1.0, 0).unwrap_err(),
        RateLimitError::ZeroBurst
    );
}

#[tokio::test(start_paused = true)]
async fn in_flight_never_exceeds_the_cap() {
    let throttle = Arc::new(Throttle::new(None, 3));
    let t0 = Instant::now();
    // An async block: a bare `sleep(..)` would fix its deadline when created,
    // not when the throttle lets it start.
    let ops = (0..10).map(|_| throttle.run(async { tokio::time::sleep(ms(100)).await }));
    futures::future::join_all(ops).await;
    assert_eq!(throttle.peak_in_flight(), 3);
    // ceil(10 / 3) = 4 waves of 100 ms.
    assert_eq!(t0.elapsed(), ms(400));
}

#[tokio::test(start_paused = true)]
async fn rate_and_cap_hold_together_and_the_sustained_rate_is_the_configured_one() {
    // 20 rps, burst 4, at most 2 in flight, each call 30 ms: the cap allows
    // 66 calls/s, so the rate is the binding limit after the burst.
    let throttle = Throttle::new(Some(RateLimiter::new(20.0, 4).unwrap()), 2);
    let t0 = Instant::now();
    let ops = (0..24).map(|_| {
        throttle.run(async {
            let started = t0.elapsed();
            tokio::time::sleep(ms(30)).await;
            started
        })
    });
    let starts = futures::future::join_all(ops).await;
    assert_eq!(throttle.peak_in_flight(), 2);
    // Never more than 4 (the burst) + 20 per second since t0.
    for (i, start) in starts.iter().enumerate() {
        let allowed = 4.0 + 20.0 * start.as_secs_f64();
        assert!(
            (i + 1) as f64 <= allowed + 1e-9,
            "call {i} started at {start:?}"
        );
    }
    let sustained = throttle.starts().sustained_rate(4).unwrap();
    assert!((sustained - 20.0).abs() < 0.5, "{sustained}");
}

// ---- Boundaries (mutation testing found these untested) ----

fn starts(count: u64, span_ms: Option<u64>) -> Starts {
    let first = Instant::now();
    Starts {
        count,
        first: span_ms.map(|_| first),
        last: span_ms.map(|ms| first + Duration::from_millis(ms)),
    }
}

#[tokio::test(start_paused = true)]
async fn the_sustained_rate_leaves_out_the_burst_and_needs_a_span() {
    // 10 starts over 2 s with a burst of 4: 6 paced starts / 2 s.
    assert_eq!(starts(10, Some(2000)).sustained_rate(4), Some(3.0));
    // Exactly one paced start is enough.
    assert_eq!(starts(5, Some(500)).sustained_rate(4), Some(2.0));
    // No paced start at all: only the burst went.
    assert_eq!(starts(4, Some(500)).sustained_rate(4), None);
    // Fewer starts than the burst: no underflow, no rate.
    assert_eq!(starts(3, Some(500)).sustained_rate(4), None);
    // Paced starts but no span (all at one instant): no rate, no infinity.
    assert_eq!(starts(10, Some(0)).sustained_rate(4), None);
    // No starts recorded.
    assert_eq!(starts(0, None).sustained_rate(1), None);
    assert_eq!(Starts::default().sustained_rate(0), None);
}

#[tokio::test(start_paused = true)]
async fn a_pause_that_ends_before_the_schedule_does_not_pull_it_forward() {
    let limiter = Arc::new(RateLimiter::new(1.0, 1).unwrap());
    // Reserve four slots: 0, 1, 2, 3 s; the schedule is now at 4 s.
    for _ in 0..4 {
        limiter.reserve();
    }
    limiter.pause_until(Instant::now() + Duration::from_secs(2));
    assert_eq!(limiter.reserve(), Instant::now() + Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn a_pause_equal_to_the_schedule_changes_nothing() {
    let limiter = RateLimiter::new(2.0, 1).unwrap();
    let t0 = Instant::now();
    assert_eq!(limiter.reserve(), t0);
    // The schedule is at 500 ms; a pause to exactly there keeps it.
    limiter.pause_until(t0 + ms(500));
    assert_eq!(limiter.reserve(), t0 + ms(500));
    assert_eq!(limiter.reserve(), t0 + ms(1000));
}

#[tokio::test(start_paused = true)]
async fn a_pause_adds_the_burst_tolerance_so_exactly_one_slot_opens_at_its_end() {
    let limiter = RateLimiter::new(10.0, 3).unwrap();
    assert_eq!(limiter.tolerance(), ms(200));
    assert_eq!(limiter.interval(), ms(100));
    let t0 = Instant::now();
    limiter.pause_until(t0 + ms(1000));
    // After the pause: one start at 1 s, then the sustained rate.
    assert_eq!(limiter.reserve(), t0 + ms(1000));
    assert_eq!(limiter.reserve(), t0 + ms(1100));
    assert_eq!(limiter.reserve(), t0 + ms(1200));
}

#[tokio::test(start_paused = true)]
async fn pause_for_a_hostile_duration_is_clamped_and_never_panics() {
    let limiter = RateLimiter::new(10.0, 1).unwrap();
    let t0 = Instant::now();
    for wait in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(999_999_999),
    ] {
        assert_eq!(limiter.pause_for(wait), t0 + MAX_PAUSE, "{wait:?}");
    }
    assert_eq!(limiter.reserve(), t0 + MAX_PAUSE);
    // An Instant at the edge of the clock cannot overflow either.
    let far = t0 + Duration::from_secs(u64::MAX / 4);
    limiter.pause_until(far);
    assert_eq!(limiter.reserve(), far);
    // A short pause does what it says.
    let limiter = RateLimiter::new(10.0, 1).unwrap();
    assert_eq!(limiter.pause_for(ms(300)), t0 + ms(300));
    assert_eq!(limiter.reserve(), t0 + ms(300));
}

#[test]
fn a_rate_slower_than_one_start_per_max_pause_is_refused() {
    assert!(RateLimiter::new(1.0 / MAX_PAUSE.as_secs_f64(), 1).is_ok());
    assert!(matches!(
        RateLimiter::new(1e-6, 1),
        Err(RateLimitError::InvalidRate(_))
    ));
    assert!(matches!(
        RateLimiter::new(1e-19, 1),
        Err(RateLimitError::InvalidRate(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_throttle_counts_each_start_and_its_first_and_last_instant() {
    let throttle = Throttle::new(Some(RateLimiter::new(10.0, 1).unwrap()), 1);
    let t0 = Instant::now();
    for _ in 0..3 {
        // While it runs, the op is in flight and holds the only permit.
        let inside = throttle.run(async { (throttle.in_flight(), throttle.available_permits()) });
        assert_eq!(inside.await, (1, 0));
    }
    let starts = throttle.starts();
    assert_eq!(starts.count, 3);
    assert_eq!(starts.first, Some(t0));
    assert_eq!(starts.last, Some(t0 + ms(200)));
    assert_eq!(throttle.in_flight(), 0);
    assert_eq!(throttle.available_permits(), 1);
    assert_eq!(throttle.peak_in_flight(), 1);
    assert_eq!(throttle.limiter().map(RateLimiter::interval), Some(ms(100)));
    assert!(Throttle::new(None, 1).limiter().is_none());
    // A cap of zero is read as one: a throttle that admits nothing would hang.
    assert_eq!(Throttle::new(None, 0).available_permits(), 1);
}

// ---- Cancellation (issue 15): dropped at every await point ----

#[tokio::test(start_paused = true)]
async fn acquire_dropped_at_any_await_only_forfeits_its_slot() {
    let limiter = Arc::new(RateLimiter::new(10.0, 1).unwrap());
    let t0 = Instant::now();
    let polls = common::testing::cancel_at_every_await(
        |_| limiter.acquire(),
        async |n| {
            // Every attempt reserved a slot (or, for n = 0, did not run): the
            // next reservation is never earlier than one interval per try.
            let next = limiter.reserve();
            assert!(next >= t0 + ms(100) * n as u32, "after {n} polls: {next:?}");
        },
    )
    .await;
    assert!(polls >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_throttled_run_dropped_at_any_await_gives_back_its_permit_and_count() {
    let throttle = Throttle::new(Some(RateLimiter::new(10.0, 1).unwrap()), 2);
    let polls = common::testing::cancel_at_every_await(
        |_| {
            throttle.run(async {
                tokio::time::sleep(ms(50)).await;
                tokio::task::yield_now().await;
            })
        },
        async |n| {
            assert_eq!(throttle.in_flight(), 0, "after {n} polls");
            assert_eq!(throttle.available_permits(), 2, "after {n} polls");
        },
    )
    .await;
    assert!(
        polls >= 3,
        "slot, sleep and yield are await points: {polls}"
    );
    let starts = throttle.starts();
    // Runs dropped before their slot came never counted as started.
    assert!(starts.count <= polls as u64, "{starts:?}");
}

// ---- Panics (issue 15): a panicking operation leaves the throttle usable ----

#[tokio::test(start_paused = true)]
async fn a_panicking_operation_releases_its_permit_and_in_flight_count() {
    use futures::FutureExt;
    let throttle = Throttle::new(Some(RateLimiter::new(100.0, 1).unwrap()), 1);
    let panicked = std::panic::AssertUnwindSafe(throttle.run(async {
        tokio::task::yield_now().await;
        panic!("user operation failed");
    }))
    .catch_unwind()
    .await;
    assert!(panicked.is_err());
    assert_eq!(throttle.in_flight(), 0);
    assert_eq!(throttle.available_permits(), 1);
    // Still usable, and still paced.
    let t0 = Instant::now();
    assert_eq!(throttle.run(async { 7 }).await, 7);
    assert_eq!(t0.elapsed(), ms(10));
    assert_eq!(throttle.starts().count, 2);
}

#[test]
fn the_pause_clamp_is_the_flag_bound_of_seven_days() {
    assert_eq!(MAX_PAUSE, common::args::MAX_DURATION);
    assert_eq!(MAX_PAUSE, Duration::from_secs(604_800));
}

#[tokio::test(start_paused = true)]
async fn the_limiter_trait_acquires_and_pauses_like_the_inherent_methods() {
    use examples_http::rate_limit::Limiter;
    let limiter = RateLimiter::new(10.0, 1).unwrap();
    let t0 = Instant::now();
    Limiter::pause(&limiter, Duration::from_secs(1))
        .await
        .unwrap();
    Limiter::acquire_slot(&limiter).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
    Limiter::acquire_slot(&limiter).await.unwrap();
    assert_eq!(t0.elapsed(), ms(1100));
}

// Equivalent mutants cargo-mutants reports (checked by hand):
// - `paused > schedule.tat` -> `>=` in `RateLimiter::pause_until`: when
//   equal, assigning the same instant changes nothing.
