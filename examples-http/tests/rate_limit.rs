//! The GCRA limiter and the throttle, driven without sockets on tokio's
//! paused clock: every start time is exact.

use std::sync::Arc;
use std::time::Duration;

use examples_http::rate_limit::{RateLimitError, RateLimiter, Throttle};
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
