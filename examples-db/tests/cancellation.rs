//! Systematic cancellation and panic tests (issue 15) for the pool and the
//! cache: every public async operation is dropped at each of its await
//! points in turn (`common::testing::cancel_at_every_await`), and the
//! pattern's invariants are checked after every drop; a panic in every
//! user callback (manager hooks, loader) leaves the pattern usable.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::testing::cancel_at_every_await;
use examples_db::cache::Cache;
use examples_db::pool::{Manager, Pool, PoolConfig, PoolError, PoolStats};
use futures::FutureExt;

/// A manager whose hooks each yield a few times (so they have await
/// points to be cancelled at) and can be told to panic.
#[derive(Default)]
struct Yielding {
    created: AtomicU64,
    panic_in_create: AtomicBool,
    panic_in_recycle: AtomicBool,
    panic_in_close: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

async fn yields(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

impl Manager for Yielding {
    type Connection = u64;
    type Error = Never;

    async fn create(&self) -> Result<u64, Never> {
        yields(2).await;
        assert!(!self.panic_in_create.load(Ordering::SeqCst), "create bug");
        Ok(self.created.fetch_add(1, Ordering::SeqCst))
    }

    async fn recycle(&self, _conn: &mut u64) -> Result<(), Never> {
        yields(2).await;
        assert!(!self.panic_in_recycle.load(Ordering::SeqCst), "recycle bug");
        Ok(())
    }

    async fn close(&self, _conn: u64) {
        yields(1).await;
        assert!(!self.panic_in_close.load(Ordering::SeqCst), "close bug");
    }
}

fn pool(size: usize, max_overflow: usize) -> Pool<Yielding> {
    let config = PoolConfig {
        size,
        max_overflow,
        acquire_timeout: Duration::from_secs(5),
    };
    Pool::new(Yielding::default(), config).expect("valid config")
}

/// At rest: nothing checked out or queued, every live connection idle,
/// and no more idle than `size`.
fn assert_at_rest(stats: &PoolStats) {
    assert_eq!((stats.in_use, stats.waiting), (0, 0), "{stats:?}");
    assert_eq!(stats.created - stats.closed, stats.idle as u64, "{stats:?}");
    assert!(stats.idle <= stats.size, "{stats:?}");
}

/// Every permit is still there: `size + max_overflow` checkouts at once
/// succeed, then one more times out.
async fn assert_full_capacity(pool: &Pool<Yielding>) {
    let config = pool.config();
    let mut held = Vec::new();
    for _ in 0..config.size + config.max_overflow {
        held.push(pool.get().await.expect("a permit was leaked"));
    }
    let extra = tokio::time::timeout(Duration::from_millis(10), pool.get()).await;
    assert!(extra.is_err(), "more permits than size + max_overflow");
    drop(held);
}

/// `get` on both of its paths (an idle connection's health check, then a
/// new connection), dropped at every await point.
#[tokio::test(start_paused = true)]
async fn get_keeps_its_invariants_when_dropped_at_every_await() {
    let pool = pool(1, 1);
    pool.fill().await.expect("fill");
    let completed_at = cancel_at_every_await(
        |_| {
            let pool = pool.clone();
            async move {
                let first = pool.get().await.expect("idle one");
                let second = pool.get().await.expect("overflow one");
                drop((first, second));
            }
        },
        async |n| {
            assert_at_rest(&pool.stats());
            assert_full_capacity(&pool).await;
            assert_at_rest(&pool.stats());
            let _ = n; // every n is checked the same way
        },
    )
    .await;
    assert!(completed_at > 4, "the walk saw the awaits ({completed_at})");
}

/// A `get` queued behind a holder, dropped at every await point: it never
/// keeps the slot, and `waiting` goes back to zero.
#[tokio::test(start_paused = true)]
async fn a_queued_get_dropped_at_every_await_leaves_no_waiter() {
    let pool = pool(1, 0);
    cancel_at_every_await(
        |_| {
            let pool = pool.clone();
            async move {
                let held = pool.get().await.expect("the only slot");
                let releaser = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    drop(held);
                });
                let second = pool.get().await.expect("after the release");
                drop(second);
                releaser.await.expect("released");
            }
        },
        async |_| {
            // Let an orphaned releaser finish before checking.
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_at_rest(&pool.stats());
            assert_full_capacity(&pool).await;
        },
    )
    .await;
}

/// `close`, dropped at every await point (closing idle connections,
/// waiting for the one in use): the pool is closed, refuses acquires, and
/// every connection is still counted exactly once.
#[tokio::test(start_paused = true)]
async fn close_dropped_at_every_await_leaves_a_closed_consistent_pool() {
    let current: RefCell<Option<Pool<Yielding>>> = RefCell::new(None);
    cancel_at_every_await(
        |_| {
            let pool = pool(3, 0);
            *current.borrow_mut() = Some(pool.clone());
            async move {
                pool.fill().await.expect("fill");
                let held = pool.get().await.expect("one in use");
                let closing = pool.close(Duration::from_secs(5));
                let release = async {
                    yields(3).await;
                    drop(held);
                };
                let (report, ()) = tokio::join!(closing, release);
                assert_eq!(report.still_in_use, 0);
            }
        },
        async |n| {
            let pool = current.borrow_mut().take().expect("made");
            let stats = pool.stats();
            assert_eq!((stats.in_use, stats.waiting), (0, 0), "n={n} {stats:?}");
            assert_eq!(
                stats.created - stats.closed,
                stats.idle as u64,
                "n={n} {stats:?}"
            );
            // A cancelled close can be run again, to the end.
            let report = pool.close(Duration::from_secs(5)).await;
            assert_eq!(report.still_in_use, 0, "n={n}");
            let stats = pool.stats();
            assert_eq!(
                (stats.created, stats.idle),
                (stats.closed, 0),
                "n={n} {stats:?}"
            );
            assert!(matches!(pool.get().await, Err(PoolError::Closed)), "n={n}");
        },
    )
    .await;
}

/// A panic in `create` or `recycle` reaches the caller, and the pool stays
/// usable: the slot is freed, the half-checked connection is closed.
#[tokio::test(start_paused = true)]
async fn a_panicking_manager_hook_leaves_the_pool_usable() {
    let pool = pool(1, 0);
    pool.manager().panic_in_create.store(true, Ordering::SeqCst);
    let crashed = std::panic::AssertUnwindSafe(pool.get())
        .catch_unwind()
        .await;
    assert!(crashed.is_err(), "the create panic reaches the caller");
    assert_at_rest(&pool.stats());
    pool.manager()
        .panic_in_create
        .store(false, Ordering::SeqCst);
    drop(pool.get().await.expect("the slot was freed"));
    assert_eq!(pool.stats().idle, 1);

    pool.manager()
        .panic_in_recycle
        .store(true, Ordering::SeqCst);
    let crashed = std::panic::AssertUnwindSafe(pool.get())
        .catch_unwind()
        .await;
    assert!(crashed.is_err(), "the recycle panic reaches the caller");
    let stats = pool.stats();
    assert_at_rest(&stats);
    assert_eq!(
        (stats.idle, stats.closed),
        (0, 1),
        "checked connection closed: {stats:?}"
    );
    pool.manager()
        .panic_in_recycle
        .store(false, Ordering::SeqCst);
    assert_full_capacity(&pool).await;

    pool.manager().panic_in_close.store(true, Ordering::SeqCst);
    let crashed = std::panic::AssertUnwindSafe(pool.close(Duration::from_secs(1)))
        .catch_unwind()
        .await;
    assert!(crashed.is_err(), "the close panic reaches the caller");
    let stats = pool.stats();
    assert_eq!(
        (stats.in_use, stats.idle, stats.created),
        (0, 0, stats.closed),
        "{stats:?}"
    );
    assert!(matches!(pool.get().await, Err(PoolError::Closed)));
}

fn cache() -> Cache<String, String> {
    Cache::new(
        NonZeroUsize::new(8).expect("non-zero"),
        Duration::from_secs(60),
    )
}

#[derive(Debug, thiserror::Error)]
#[error("load failed")]
struct LoadFailed;

/// `get_or_load`, as the leader and with a follower waiting, dropped at
/// every await point: the key is never wedged, the follower always gets
/// a value, and the loads counted match the loads run.
#[tokio::test(start_paused = true)]
async fn get_or_load_dropped_at_every_await_never_wedges_the_key() {
    let current: RefCell<Option<Arc<Cache<String, String>>>> = RefCell::new(None);
    let runs = Arc::new(AtomicU64::new(0));
    let follower: RefCell<Option<tokio::task::JoinHandle<String>>> = RefCell::new(None);
    cancel_at_every_await(
        |_| {
            let cache = Arc::new(cache());
            *current.borrow_mut() = Some(Arc::clone(&cache));
            runs.store(0, Ordering::SeqCst);
            let runs = Arc::clone(&runs);
            let loader = move |value: &'static str| {
                let runs = Arc::clone(&runs);
                move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    yields(3).await;
                    Ok::<_, LoadFailed>(value.to_owned())
                }
            };
            let waiting = {
                let (cache, load) = (Arc::clone(&cache), loader("follower"));
                tokio::spawn(async move {
                    yields(1).await; // arrive after the leader
                    cache
                        .get_or_load("k".to_owned(), load)
                        .await
                        .expect("loaded")
                })
            };
            *follower.borrow_mut() = Some(waiting);
            let load = loader("leader");
            async move {
                let value = cache.get_or_load("k".to_owned(), load).await;
                assert_eq!(value.expect("loaded"), "leader");
            }
        },
        async |n| {
            let cache = current.borrow_mut().take().expect("made");
            let waiting = follower.borrow_mut().take().expect("spawned");
            let value = tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .expect("the follower is not wedged")
                .expect("joined");
            assert!(value == "leader" || value == "follower", "n={n}: {value}");
            assert_eq!(cache.get("k"), Some(value.clone()), "n={n}");
            let stats = cache.stats();
            assert_eq!(stats.loads, runs.load(Ordering::SeqCst), "n={n} {stats:?}");
            assert_eq!(stats.load_failures, 0, "n={n} {stats:?}");
        },
    )
    .await;
}

/// A loader *closure* that panics before it returns its future (not only
/// a future that panics) leaves the key usable, and waiting followers
/// take over.
#[tokio::test(start_paused = true)]
async fn a_loader_panicking_before_its_future_leaves_the_key_usable() {
    let cache = Arc::new(cache());
    let leader = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            cache
                .get_or_load(
                    "k".to_owned(),
                    || -> std::future::Ready<Result<String, LoadFailed>> {
                        panic!("loader bug before its future")
                    },
                )
                .await
        })
    };
    assert!(leader.await.expect_err("panicked").is_panic());
    assert_eq!(cache.stats().load_failures, 1, "the panic is reported");
    let value = cache
        .get_or_load("k".to_owned(), || async {
            Ok::<_, LoadFailed>("v".to_owned())
        })
        .await;
    assert_eq!(value.expect("a fresh load").as_str(), "v");
}
