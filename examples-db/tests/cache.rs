//! Behaviour tests of the cache: the seed's four pytest cases ported, then
//! TTL, LRU eviction and single-flight loading on the paused clock.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use examples_db::cache::Cache;
use tokio::sync::Notify;
use tokio::time;

fn cache(capacity: usize, ttl_secs: u64) -> Cache<String, String> {
    let capacity = NonZeroUsize::new(capacity).expect("non-zero capacity");
    Cache::new(capacity, Duration::from_secs(ttl_secs))
}

fn key(s: &str) -> String {
    s.to_owned()
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the database said no")]
struct LoadFailed;

/// Lets other tasks run until `done` holds (bounded: a bug fails the test).
async fn settle(done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition not reached");
}

// --- The seed's four tests ---------------------------------------------

/// Seed `test_cache_set_get`.
#[test]
fn a_set_value_can_be_read_back() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // Instant::now() in the cache needs a runtime context for the clock.
    let _entered = rt.enter();
    let cache = cache(10, 60);
    cache.set(key("key1"), key("value1"));
    assert_eq!(cache.get("key1").as_deref(), Some("value1"));
}

/// Seed `test_cache_get_missing`.
#[tokio::test(start_paused = true)]
async fn a_missing_key_reads_as_none() {
    let cache = cache(10, 60);
    assert_eq!(cache.get("nonexistent"), None);
    assert_eq!(cache.stats().misses, 1);
}

/// Seed `test_cache_delete`.
#[tokio::test(start_paused = true)]
async fn delete_returns_the_value_and_removes_it() {
    let cache = cache(10, 60);
    cache.set(key("key1"), key("value1"));
    assert_eq!(cache.delete("key1").as_deref(), Some("value1"));
    assert_eq!(cache.get("key1"), None);
    assert_eq!(cache.delete("key1"), None);
}

/// Seed `test_concurrent_access`: 10 workers x 10 keys, on real threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_workers_writing_ten_keys_each_all_read_back() {
    let cache = Arc::new(cache(1_000, 60));
    let workers: Vec<_> = (0..10)
        .map(|worker| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                for i in 0..10 {
                    let (k, v) = (format!("key_{worker}_{i}"), format!("value_{worker}_{i}"));
                    cache.set(k.clone(), v.clone());
                    assert_eq!(cache.get(&k), Some(v));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker finished");
    }
    for worker in 0..10 {
        for i in 0..10 {
            assert_eq!(
                cache.get(&format!("key_{worker}_{i}")),
                Some(format!("value_{worker}_{i}"))
            );
        }
    }
    let stats = cache.stats();
    assert_eq!((stats.len, stats.hits, stats.misses), (100, 200, 0));
}

// --- TTL and capacity ---------------------------------------------------

/// An entry lives exactly its TTL on the tokio clock.
#[tokio::test(start_paused = true)]
async fn an_entry_expires_after_its_ttl() {
    let cache = cache(10, 30);
    cache.set(key("k"), key("v"));
    time::advance(Duration::from_secs(30) - Duration::from_millis(1)).await;
    assert_eq!(cache.get("k").as_deref(), Some("v"));
    time::advance(Duration::from_millis(1)).await;
    assert_eq!(cache.get("k"), None);
    let stats = cache.stats();
    assert_eq!((stats.expirations, stats.len), (1, 0));
}

/// Per-entry TTLs override the default.
#[tokio::test(start_paused = true)]
async fn set_with_ttl_overrides_the_default_ttl() {
    let cache = cache(10, 30);
    cache.set_with_ttl(key("short"), key("v"), Duration::from_secs(1));
    cache.set(key("long"), key("v"));
    time::advance(Duration::from_secs(2)).await;
    assert_eq!(cache.get("short"), None);
    assert!(cache.get("long").is_some());
}

/// The least recently *used* entry goes first, not the oldest inserted.
#[tokio::test(start_paused = true)]
async fn the_least_recently_used_entry_is_evicted_first() {
    let cache = cache(3, 60);
    for k in ["a", "b", "c"] {
        cache.set(key(k), key(k));
    }
    assert!(cache.get("a").is_some()); // order now (LRU first): b, c, a
    cache.set(key("d"), key("d")); // evicts b
    assert_eq!(cache.get("b"), None);
    cache.set(key("e"), key("e")); // evicts c
    assert_eq!(cache.get("c"), None);
    for k in ["a", "d", "e"] {
        assert!(cache.get(k).is_some(), "{k} survives");
    }
    let stats = cache.stats();
    assert_eq!((stats.len, stats.evictions), (3, 2));
}

/// Replacing a key does not evict anything.
#[tokio::test(start_paused = true)]
async fn overwriting_a_key_keeps_the_size_and_evicts_nothing() {
    let cache = cache(2, 60);
    cache.set(key("a"), key("1"));
    cache.set(key("b"), key("1"));
    cache.set(key("a"), key("2"));
    assert_eq!(cache.get("a").as_deref(), Some("2"));
    assert_eq!(cache.get("b").as_deref(), Some("1"));
    assert_eq!(cache.stats().evictions, 0);
}

// --- Single flight ------------------------------------------------------

/// The stampede: 100 concurrent misses for one key run the loader once.
#[tokio::test(start_paused = true)]
async fn one_hundred_concurrent_misses_run_the_loader_once() {
    let cache = Arc::new(cache(10, 60));
    let loads = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let (cache, loads) = (Arc::clone(&cache), Arc::clone(&loads));
            tokio::spawn(async move {
                cache
                    .get_or_load(key("user:7"), || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        time::sleep(Duration::from_millis(50)).await; // the query
                        Ok::<_, LoadFailed>(key("Ada"))
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(
            caller.await.expect("joined").expect("loaded").as_str(),
            "Ada"
        );
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let stats = cache.stats();
    assert_eq!(
        (stats.loads, stats.misses, stats.coalesced, stats.hits),
        (1, 100, 99, 0)
    );
    // And now it is cached.
    assert_eq!(cache.get("user:7").as_deref(), Some("Ada"));
}

/// A loader error reaches every waiter, is not cached, and the next call
/// runs the loader again.
#[tokio::test(start_paused = true)]
async fn a_loader_error_reaches_every_waiter_and_the_next_call_retries() {
    let cache = Arc::new(cache(10, 60));
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get_or_load(key("k"), || async {
                        time::sleep(Duration::from_millis(10)).await;
                        Err::<String, _>(LoadFailed)
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        let err = caller.await.expect("joined").expect_err("the load failed");
        assert_eq!(err.inner().downcast_ref::<LoadFailed>(), Some(&LoadFailed));
        assert!(
            !err.is_reentrant(),
            "an ordinary failure is not a re-entrant load"
        );
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.loads, stats.load_failures, stats.coalesced, stats.len),
        (1, 1, 9, 0)
    );

    let value = cache
        .get_or_load(key("k"), || async { Ok::<_, LoadFailed>(key("v")) })
        .await;
    assert_eq!(value.expect("the retry loads").as_str(), "v");
    assert_eq!(cache.stats().loads, 2);
}

/// Cancelling the leader mid-load hands the load to a follower: nobody is
/// left waiting on a load that will never finish.
#[tokio::test(start_paused = true)]
async fn cancelling_the_leader_does_not_wedge_the_followers() {
    let cache = Arc::new(cache(10, 60));
    let leader_started = Arc::new(Notify::new());
    let leader = {
        let (cache, started) = (Arc::clone(&cache), Arc::clone(&leader_started));
        tokio::spawn(async move {
            cache
                .get_or_load(key("k"), || async move {
                    started.notify_one();
                    std::future::pending::<Result<String, LoadFailed>>().await
                })
                .await
        })
    };
    leader_started.notified().await;
    let followers: Vec<_> = (0..5)
        .map(|n| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get_or_load(key("k"), move || async move {
                        time::sleep(Duration::from_millis(10)).await;
                        Ok::<_, LoadFailed>(format!("from follower {n}"))
                    })
                    .await
            })
        })
        .collect();
    settle(|| cache.stats().coalesced == 5).await;
    leader.abort();
    let mut values = Vec::new();
    for follower in followers {
        let value = time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("followers are not wedged")
            .expect("joined")
            .expect("loaded");
        values.push(value);
    }
    // Exactly one follower took over; everyone got its value.
    assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.load_failures), (2, 0));
    assert_eq!(cache.get("k"), Some(values[0].clone()));
}

/// A `delete` while a load is in flight wins: the stale result is returned
/// to its callers but not cached.
#[tokio::test(start_paused = true)]
async fn a_delete_during_a_load_keeps_the_loaded_value_out_of_the_cache() {
    let cache = Arc::new(cache(10, 60));
    let loading = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            cache
                .get_or_load(key("k"), || async {
                    time::sleep(Duration::from_millis(10)).await;
                    Ok::<_, LoadFailed>(key("stale"))
                })
                .await
        })
    };
    settle(|| cache.stats().loads == 1).await;
    cache.delete("k");
    assert_eq!(
        loading.await.expect("joined").expect("loaded").as_str(),
        "stale"
    );
    assert_eq!(cache.get("k"), None);
}

/// A panicking loader does not poison the key either.
#[tokio::test(start_paused = true)]
async fn a_panicking_loader_does_not_poison_the_key() {
    let cache = Arc::new(cache(10, 60));
    let crashed = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            cache
                .get_or_load(key("k"), || async {
                    panic!("loader bug");
                    #[allow(unreachable_code)]
                    Ok::<String, LoadFailed>(key("never"))
                })
                .await
        })
    };
    assert!(crashed.await.expect_err("the loader panicked").is_panic());
    // Reported: a panicked load counts as a failed one.
    assert_eq!((cache.stats().loads, cache.stats().load_failures), (1, 1));
    let value = cache
        .get_or_load(key("k"), || async { Ok::<_, LoadFailed>(key("v")) })
        .await;
    assert_eq!(value.expect("a fresh load").as_str(), "v");
}

/// Issue 15.17: a TTL of `Duration::MAX` means "never expire"; it used to
/// panic on the first store (`Instant + Duration::MAX` overflows).
#[tokio::test(start_paused = true)]
async fn a_ttl_of_duration_max_never_expires_and_does_not_panic() {
    let cache: Cache<String, String> =
        Cache::new(NonZeroUsize::new(4).expect("non-zero"), Duration::MAX);
    cache.set(key("a"), key("1"));
    cache.set_with_ttl(key("b"), key("2"), Duration::MAX);
    let loaded = cache
        .get_or_load(key("c"), || async { Ok::<_, LoadFailed>(key("3")) })
        .await;
    assert_eq!(loaded.expect("loaded"), "3");
    time::advance(Duration::from_secs(10 * 365 * 24 * 3600)).await;
    assert_eq!(cache.get("a"), Some(key("1")));
    assert_eq!(cache.get("b"), Some(key("2")));
    assert_eq!(cache.get("c"), Some(key("3")));
    assert_eq!(cache.stats().expirations, 0);
}

/// Issue 15.18: a loader that asks the cache for its own key would wait
/// for itself forever; it gets an error at once instead, and the outer
/// load still completes (here with the loader's fallback).
#[tokio::test(start_paused = true)]
async fn a_loader_asking_for_its_own_key_gets_an_error_not_a_deadlock() {
    let cache = Arc::new(cache(10, 60));
    let inner_error = Arc::new(std::sync::Mutex::new(None));
    let outer = {
        let (cache, inner_error) = (Arc::clone(&cache), Arc::clone(&inner_error));
        let cache2 = Arc::clone(&cache);
        async move {
            cache
                .get_or_load(key("k"), || async move {
                    let inner = cache2
                        .get_or_load(key("k"), || async { Ok::<_, LoadFailed>(key("inner")) })
                        .await;
                    let err = inner.expect_err("re-entrant load refused");
                    assert!(err.is_reentrant(), "{err}");
                    *inner_error.lock().unwrap() = Some(err.inner().to_string());
                    Ok::<_, LoadFailed>(key("outer"))
                })
                .await
        }
    };
    let value = time::timeout(Duration::from_secs(5), outer)
        .await
        .expect("no deadlock")
        .expect("the outer load succeeds");
    assert_eq!(value, "outer");
    let message = inner_error.lock().unwrap().clone().expect("inner ran");
    assert!(message.contains("its own key"), "{message}");
    assert_eq!(cache.get("k"), Some(key("outer")));
    // Another key from inside a loader is fine (no false positive).
    let nested = cache
        .get_or_load(key("x"), || {
            let cache = Arc::clone(&cache);
            async move {
                let y = cache
                    .get_or_load(key("y"), || async { Ok::<_, LoadFailed>(key("Y")) })
                    .await
                    .expect("another key loads");
                Ok::<_, LoadFailed>(format!("x+{y}"))
            }
        })
        .await;
    assert_eq!(nested.expect("loaded"), "x+Y");
}

/// `hit_ratio` is hits / (hits + misses), and 0 before any lookup.
#[test]
fn the_hit_ratio_is_hits_over_lookups() {
    let cache = cache(4, 60);
    assert_eq!(cache.stats().hit_ratio(), 0.0);
    cache.set(key("a"), key("1"));
    for _ in 0..3 {
        assert!(cache.get("a").is_some());
    }
    assert!(cache.get("b").is_none());
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (3, 1));
    assert_eq!(stats.hit_ratio(), 0.75);
}

/// A loader may wait on another task's load of a different key: only a
/// load this task leads is re-entrant (flight ids tell loads apart).
#[tokio::test(start_paused = true)]
async fn a_loader_may_follow_another_tasks_load_of_another_key() {
    let cache = Arc::new(cache(10, 60));
    let release = Arc::new(Notify::new());
    // Task A leads the load of "b" and holds it until released.
    let leader = {
        let (cache, release) = (Arc::clone(&cache), Arc::clone(&release));
        tokio::spawn(async move {
            cache
                .get_or_load(key("b"), || async move {
                    release.notified().await;
                    Ok::<_, LoadFailed>(key("from A"))
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    assert_eq!(cache.stats().loads, 1, "A leads the load of b");
    // Task B leads "a", and its loader follows A's load of "b".
    let follower = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            let inner = Arc::clone(&cache);
            cache
                .get_or_load(key("a"), || async move {
                    let b = inner
                        .get_or_load(key("b"), || async { Ok::<_, LoadFailed>(key("from B")) })
                        .await
                        .map_err(|_| LoadFailed)?;
                    Ok::<_, LoadFailed>(format!("a after {b}"))
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    release.notify_one();
    assert_eq!(leader.await.unwrap().unwrap(), "from A");
    let a = follower.await.unwrap().expect("not a re-entrant load");
    assert_eq!(a, "a after from A");
    assert_eq!(cache.stats().coalesced, 1);
}
