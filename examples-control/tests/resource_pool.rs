//! Behaviour of `ResourcePool`: exclusivity, the high-water mark, FIFO
//! fairness, timeouts, cancellation and close. Timer logic runs on tokio's
//! paused clock, so waits are exact and instant.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use examples_control::demo::timeline::{self, Span};
use examples_control::resource_pool::{PoolError, ResourcePool};
use tokio::task::JoinSet;
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(3600);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Yields until `pool` reports `n` queued waiters (the spawned tasks have
/// run up to their `.await` on the semaphore).
async fn until_waiting<T>(pool: &ResourcePool<T>, n: usize) {
    while pool.stats().waiting != n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_users_never_push_the_high_water_mark_past_the_pool_size() {
    let pool = ResourcePool::new((0..5).collect::<Vec<usize>>(), LONG);
    let mut users = JoinSet::new();
    for user in 0..1_000u64 {
        let pool = pool.clone();
        users.spawn(async move {
            let resource = pool.acquire().await?;
            tokio::time::sleep(ms(1 + user % 7)).await;
            Ok::<usize, PoolError>(*resource)
        });
    }
    let mut served = 0;
    while let Some(joined) = users.join_next().await {
        assert!(joined.unwrap().unwrap() < 5);
        served += 1;
    }
    let stats = pool.stats();
    assert_eq!(served, 1_000);
    assert_eq!(stats.high_water, 5);
    assert_eq!(
        (stats.acquired, stats.in_use, stats.waiting, stats.timeouts),
        (1_000, 0, 0, 0)
    );
    assert_eq!(pool.idle(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_resource_is_ever_held_by_two_users_at_once_on_two_threads() {
    const SIZE: usize = 4;
    let holders: Arc<Vec<AtomicUsize>> = Arc::new((0..SIZE).map(|_| AtomicUsize::new(0)).collect());
    let concurrent = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let pool = ResourcePool::new((0..SIZE).collect::<Vec<usize>>(), Duration::from_secs(30));
    let mut users = JoinSet::new();
    for _ in 0..1_000 {
        let (pool, holders) = (pool.clone(), Arc::clone(&holders));
        let (concurrent, max_seen) = (Arc::clone(&concurrent), Arc::clone(&max_seen));
        users.spawn(async move {
            let resource = pool.acquire().await.unwrap();
            // Nobody else may hold this very resource right now.
            assert_eq!(holders[*resource].fetch_add(1, Ordering::SeqCst), 0);
            let now = concurrent.fetch_add(1, Ordering::SeqCst) + 1;
            max_seen.fetch_max(now, Ordering::SeqCst);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            concurrent.fetch_sub(1, Ordering::SeqCst);
            holders[*resource].fetch_sub(1, Ordering::SeqCst);
        });
    }
    while let Some(joined) = users.join_next().await {
        joined.unwrap();
    }
    assert!(max_seen.load(Ordering::SeqCst) <= SIZE);
    assert!(pool.stats().high_water <= SIZE);
    assert_eq!(pool.stats().acquired, 1_000);
    assert_eq!(pool.idle(), SIZE);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order_and_newcomers_cannot_barge() {
    let pool = ResourcePool::new(vec!["the only one"], LONG);
    let held = pool.acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = JoinSet::new();
    for id in 0..10 {
        let (user_pool, order) = (pool.clone(), Arc::clone(&order));
        waiters.spawn(async move {
            let _resource = user_pool.acquire().await.unwrap();
            order.lock().unwrap().push(id);
        });
        until_waiting(&pool, id + 1).await; // id is queued before id + 1 starts
    }
    drop(held);
    // The permit went straight to waiter 0; a newcomer's fast path finds none.
    assert_eq!(
        pool.acquire_within(Duration::ZERO).await.unwrap_err(),
        PoolError::Timeout(Duration::ZERO)
    );
    while let Some(joined) = waiters.join_next().await {
        joined.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_leaks_no_permit() {
    let pool = ResourcePool::new(vec![1u32], LONG);
    let held = pool.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|_| ()) }
    });
    until_waiting(&pool, 1).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    assert_eq!(pool.stats().waiting, 0);
    drop(held);
    assert_eq!(pool.idle(), 1);
    let again = pool.acquire_within(Duration::ZERO).await.unwrap();
    assert_eq!(again.waited(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_cancelled_after_its_permit_was_granted_leaks_nothing() {
    let pool = ResourcePool::new(vec![1u32], LONG);
    let held = pool.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|_| ()) }
    });
    until_waiting(&pool, 1).await;
    // The release hands the permit to the queued waiter, which is aborted
    // before it ever runs again to collect it.
    drop(held);
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    assert_eq!((pool.idle(), pool.stats().in_use), (1, 0));
    assert!(pool.acquire_within(Duration::ZERO).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn acquire_gives_up_after_exactly_the_timeout() {
    let pool = ResourcePool::new(vec![()], ms(250));
    let held = pool.acquire().await.unwrap();
    let started = Instant::now();
    assert_eq!(
        pool.acquire().await.unwrap_err(),
        PoolError::Timeout(ms(250))
    );
    assert_eq!(started.elapsed(), ms(250));
    let stats = pool.stats();
    assert_eq!((stats.timeouts, stats.waiting, stats.acquired), (1, 0, 1));
    drop(held);
    assert!(pool.acquire().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn close_wakes_every_waiter_with_closed_and_holders_still_return() {
    let pool = ResourcePool::new(vec!['a', 'b'], LONG);
    let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    let mut waiters = JoinSet::new();
    for n in 0..5 {
        let user_pool = pool.clone();
        waiters.spawn(async move { user_pool.acquire().await.map(|_| ()) });
        until_waiting(&pool, n + 1).await;
    }
    let closed_at = Instant::now();
    pool.close();
    while let Some(joined) = waiters.join_next().await {
        assert_eq!(joined.unwrap(), Err(PoolError::Closed));
    }
    assert_eq!(closed_at.elapsed(), Duration::ZERO, "waiters woke at once");
    assert_eq!(pool.acquire().await.unwrap_err(), PoolError::Closed);
    drop((a, b));
    let stats = pool.stats();
    assert_eq!(
        (stats.rejected_closed, stats.in_use, stats.waiting),
        (6, 0, 0)
    );
    assert_eq!(pool.idle(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_guard_hands_back_the_same_object_it_lent() {
    let pool = ResourcePool::new(vec![String::from("conn-1")], LONG);
    pool.acquire().await.unwrap().push_str(" (used)");
    assert_eq!(*pool.acquire().await.unwrap(), "conn-1 (used)");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_holder_still_returns_its_resource() {
    let pool = ResourcePool::new(vec![7u8], LONG);
    let holder = tokio::spawn({
        let pool = pool.clone();
        async move {
            let _resource = pool.acquire().await.unwrap();
            panic!("user code failed while holding the resource");
        }
    });
    assert!(holder.await.unwrap_err().is_panic());
    assert_eq!((pool.idle(), pool.stats().in_use), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn wait_times_are_measured_and_summarised() {
    let pool = ResourcePool::new(vec![()], LONG);
    let held = pool.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.unwrap().waited() }
    });
    tokio::time::sleep(ms(100)).await;
    drop(held);
    assert_eq!(waiter.await.unwrap(), ms(100));
    let wait = pool.stats().wait;
    assert_eq!(wait.count, 2);
    // HDR histograms keep three significant digits: 100 ms within 0.1%.
    assert!(wait.max.abs_diff(ms(100)) <= ms(100) / 1000, "{wait:?}");
}

#[test]
fn the_timeline_draws_each_holder_in_its_row_and_finds_overlaps() {
    let span = |user, resource, start, end| Span {
        user,
        resource,
        start: ms(start),
        end: ms(end),
    };
    let spans = [span(0, 0, 0, 50), span(1, 0, 50, 100), span(11, 1, 0, 100)];
    let chart = timeline::render(&spans, 2, 10);
    assert!(chart.contains("R0  |0000011111|"), "{chart}");
    assert!(chart.contains("R1  |bbbbbbbbbb|"), "{chart}");
    assert_eq!(timeline::first_overlap(&spans), None);
    let clash = [span(0, 0, 0, 50), span(1, 0, 40, 100)];
    assert_eq!(timeline::first_overlap(&clash), Some((clash[0], clash[1])));
}

/// The gauges a caller reads: `is_closed`, `in_use`, `idle` and `stats`
/// follow what the pool is doing.
#[tokio::test(start_paused = true)]
async fn the_gauges_follow_holders_and_close() {
    let pool = ResourcePool::new(vec![1u8, 2, 3], ms(100));
    assert!(!pool.is_closed());
    assert_eq!((pool.in_use(), pool.idle()), (0, 3));
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    assert_eq!((pool.in_use(), pool.idle()), (2, 1));
    let stats = pool.stats();
    assert_eq!(
        (stats.size, stats.in_use, stats.high_water, stats.acquired),
        (3, 2, 2, 2)
    );
    drop(a);
    assert_eq!((pool.in_use(), pool.idle()), (1, 2));
    pool.close();
    assert!(pool.is_closed());
    assert_eq!(pool.acquire().await.unwrap_err(), PoolError::Closed);
    assert_eq!(pool.stats().rejected_closed, 1);
    drop(b);
    assert_eq!((pool.in_use(), pool.idle()), (0, 3));
}
