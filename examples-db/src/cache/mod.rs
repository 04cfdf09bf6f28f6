//! An async read-through cache: TTL, LRU capacity, single-flight loads.
//!
//! Ports seed Example 12. The Python `AsyncCache` holds one `asyncio.Lock`
//! across every operation *including its simulated I/O*, so a slow `get`
//! blocks every other `get`, `set` and `delete`: the cache serialises the
//! program it was meant to speed up. It also has no expiry, no size bound,
//! and nothing stops 100 concurrent misses from loading the same key 100
//! times (a "cache stampede").
//!
//! Here:
//!
//! - **No lock across an `.await`.** The map sits behind a std `Mutex`;
//!   `get`, `set` and `delete` are plain (non-async) methods whose critical
//!   sections are a hash lookup and a few pointer moves. Only loading a
//!   missing value is async, and it runs with the lock released.
//! - **TTL on `tokio::time::Instant`**, checked lazily on access, so tests
//!   drive expiry with `tokio::time::advance` instead of sleeping.
//! - **A capacity bound with LRU eviction**: an O(1) slab-backed list (`lru.rs`).
//! - **Single-flight [`Cache::get_or_load`]**: the first miss for a key
//!   becomes the *leader* and runs the loader; concurrent misses *follow*
//!   it through a `tokio::sync::watch` channel and receive its result. A
//!   loader error reaches every follower and is not cached, so the next
//!   call retries. If the leader is cancelled, its drop guard unregisters
//!   the flight and closes the channel; followers wake and one of them
//!   leads a fresh load. No outcome poisons the key.
//! - **Counters**: hits, misses, evictions, expirations, loads, load
//!   failures, coalesced (followers served by another's load).
//!
//! **The seed's real lesson.** Seed Example 12 is titled "testing async code
//! with pytest-asyncio": the cache is only its subject. That lesson, the
//! seed's four tests ported and made to mean something (a concurrency test
//! that fails against a racy cache, the paused clock, cancellation at every
//! await, fakes behind a trait), is `docs/testing-async.md` in the
//! workspace, compiled as doctests; this module's tests
//! (`examples-db/tests/cache.rs`) are its worked examples.
//!
//! Production: **moka** (`future::Cache`): concurrent (sharded, lock-free
//! reads), TinyLFU admission (better hit ratios than LRU on skewed loads),
//! per-entry expiry, eviction listeners, and `get_with`/`try_get_with` with
//! the same single-flight guarantee. Reach for it in a service; this module
//! shows the mechanism, and is fast enough for one process
//! (`async-cache --bench`, code in `demo/bench.rs`).
//!
//! # Hostile behaviour it defends against
//!
//! - **A stampede** of concurrent misses: one load per key, the rest wait.
//! - **A failing loader**: its error reaches every waiter and is not
//!   cached, so the next call retries. **A panicking loader** (in its
//!   future or in the closure itself) unregisters its flight on unwind and
//!   counts as a failed load; followers take over.
//! - **A cancelled leader**: its drop guard hands the load to a follower.
//! - **A loader that asks for its own key** (it would wait for itself
//!   forever): refused with [`Reentrant`].
//! - **A TTL too long for the clock** (`Duration::MAX`): means "never
//!   expire" instead of panicking on `Instant + ttl`.
//! - Not defended: **a loader that hangs** keeps its followers waiting as
//!   long as it runs. Bound the loader (`tokio::time::timeout` inside it)
//!   or each caller's wait.
//!
//! ```text
//! cargo run --bin async-cache
//! cargo test -p examples-db --test cache --test cancellation
//! cargo run --release --bin async-cache -- --bench
//! ```

mod lru;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use lru::Lru;

/// A loader failed. Cloned to every caller waiting on that load; the
/// original error is kept (`source()`, or [`LoadError::inner`] to downcast).
#[derive(Debug, Clone, thiserror::Error)]
#[error("loading the value failed")]
pub struct LoadError(#[source] Arc<dyn std::error::Error + Send + Sync>);

impl LoadError {
    fn new<E: std::error::Error + Send + Sync + 'static>(err: E) -> Self {
        Self(Arc::new(err))
    }

    /// True when a loader asked the cache for the key it is loading (see
    /// [`Reentrant`]).
    pub fn is_reentrant(&self) -> bool {
        self.0.downcast_ref::<Reentrant>().is_some()
    }

    /// The loader's error, for `downcast_ref`.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

/// A loader asked the cache for the very key it is loading, in the same
/// task. Following that load would wait for itself forever (the seed's
/// `asyncio.Lock` deadlocks the same way on re-entry), so the inner call
/// fails at once with this error instead (issue 15.18).
///
/// Detected with a task-local list of the loads the current task leads,
/// so it catches a loader that calls `get_or_load` directly, however
/// deeply nested. It cannot see through a task the loader *spawns* and
/// then awaits: task-locals do not cross `tokio::spawn`, so that shape
/// still deadlocks. Do not wait on another task for your own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a loader asked the cache for its own key (re-entrant load)")]
pub struct Reentrant;

tokio::task_local! {
    /// The loads the current task is leading: (cache id, flight id).
    static LEADING: Vec<(u64, u64)>;
}

/// Tells caches apart in [`LEADING`] (flight ids are per cache).
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(0);

/// Counters since the cache was created (and its current size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Entries now stored (expired ones count until touched or evicted).
    pub len: usize,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that found nothing fresh (each `get_or_load` call counts once).
    pub misses: u64,
    /// Entries pushed out by the capacity bound.
    pub evictions: u64,
    /// Entries found expired and dropped.
    pub expirations: u64,
    /// Loader runs.
    pub loads: u64,
    /// Loader runs that returned an error or panicked.
    pub load_failures: u64,
    /// Misses served by another caller's load instead of their own.
    pub coalesced: u64,
}

impl CacheStats {
    /// hits / (hits + misses), or 0 before any lookup.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// A bounded, expiring map with single-flight loading. Share it with
/// `Arc<Cache<K, V>>`; every method takes `&self`.
pub struct Cache<K, V> {
    /// This cache's number in [`LEADING`].
    id: u64,
    ttl: Duration,
    /// std Mutex: never held across an `.await` (the point of this port).
    state: Mutex<State<K, V>>,
}

struct Entry<V> {
    value: V,
    /// `None`: never expires (a TTL too long for the clock, e.g.
    /// `Duration::MAX`).
    expires_at: Option<Instant>,
}

/// When an entry stored now with `ttl` expires: `None` (never) when
/// `now + ttl` does not fit in an `Instant`. `Instant + Duration` panics
/// on overflow, and a TTL comes from the caller (a flag, a config file),
/// so it is never added unchecked (issue 15.17).
fn expiry(now: Instant, ttl: Duration) -> Option<Instant> {
    now.checked_add(ttl)
}

/// What the followers of a load receive: `None` until the leader answers.
type Outcome<V> = Option<Result<V, LoadError>>;

/// A load in progress for one key.
struct Flight<V> {
    /// Tells this flight from a later one for the same key.
    id: u64,
    /// Cloned by each follower; the leader holds the sender.
    outcome: watch::Receiver<Outcome<V>>,
}

struct State<K, V> {
    entries: Lru<K, Entry<V>>,
    flights: HashMap<K, Flight<V>>,
    next_flight: u64,
    stats: CacheStats,
}

impl<K: Hash + Eq + Clone, V: Clone> State<K, V> {
    /// A fresh value for `key`, counting the hit, or the miss when `count`.
    fn lookup<Q>(&mut self, key: &Q, now: Instant, count: bool) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = match self.entries.get_mut(key) {
            Some(entry) if entry.expires_at.is_none_or(|at| at > now) => Some(entry.value.clone()),
            Some(_) => {
                self.entries.remove(key);
                self.stats.expirations += 1;
                None
            }
            None => None,
        };
        match (&found, count) {
            (Some(_), _) => self.stats.hits += 1,
            (None, true) => self.stats.misses += 1,
            (None, false) => {}
        }
        found
    }

    fn store(&mut self, key: K, value: V, expires_at: Option<Instant>) {
        if self
            .entries
            .insert(key, Entry { value, expires_at })
            .is_some()
        {
            self.stats.evictions += 1;
        }
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// A cache of at most `capacity` entries, each living `ttl` after it is
    /// stored (a zero `ttl` stores nothing usefully: entries expire at once).
    pub fn new(capacity: NonZeroUsize, ttl: Duration) -> Self {
        Self {
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            ttl,
            state: Mutex::new(State {
                entries: Lru::new(capacity.get()),
                flights: HashMap::new(),
                next_flight: 0,
                stats: CacheStats::default(),
            }),
        }
    }

    /// True when the current task leads flight `id` of this cache.
    fn leading(&self, id: u64) -> bool {
        LEADING
            .try_with(|leading| leading.contains(&(self.id, id)))
            .unwrap_or(false)
    }

    fn state(&self) -> MutexGuard<'_, State<K, V>> {
        // Critical sections only move values and bump counters; a panic in
        // one (a `Hash` impl, an allocation failure) leaves the map usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value for `key` if present and not expired.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Read the clock before locking: keep the critical section short.
        let now = Instant::now();
        self.state().lookup(key, now, true)
    }

    /// Stores `value` for the cache's TTL, evicting the least recently used
    /// entry if full. A load in flight for `key` will not overwrite it.
    pub fn set(&self, key: K, value: V) {
        self.set_with_ttl(key, value, self.ttl);
    }

    /// As [`Cache::set`], with this entry's own time to live.
    pub fn set_with_ttl(&self, key: K, value: V, ttl: Duration) {
        let expires_at = expiry(Instant::now(), ttl);
        let mut state = self.state();
        // Detach a running load: its (older) result must not replace ours.
        state.flights.remove(&key);
        state.store(key, value, expires_at);
    }

    /// Removes `key`, returning the value it had (expired or not), like
    /// Python's `dict.pop(key, None)`. A load in flight will not re-add it.
    pub fn delete<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut state = self.state();
        state.flights.remove(key);
        state.entries.remove(key).map(|entry| entry.value)
    }

    /// Counters and current size.
    pub fn stats(&self) -> CacheStats {
        let state = self.state();
        CacheStats {
            len: state.entries.len(),
            ..state.stats
        }
    }

    /// The value for `key`, loading it with `load` on a miss. Concurrent
    /// misses for the same key share one load (see the module docs).
    ///
    /// Cancel-safe: dropping this future as a follower just stops waiting;
    /// as the leader, it hands the load over to a follower.
    pub async fn get_or_load<F, Fut, E>(&self, key: K, load: F) -> Result<V, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut load = Some(load);
        let mut first_try = true;
        loop {
            let now = Instant::now();
            // Decide our role under the lock, then release it before any
            // `.await` (the block ends the guard's life).
            let role = {
                let mut state = self.state();
                if let Some(value) = state.lookup(&key, now, first_try) {
                    return Ok(value);
                }
                let following = state.flights.get(&key).map(|f| (f.id, f.outcome.clone()));
                match following {
                    Some((id, _)) if self.leading(id) => {
                        return Err(LoadError::new(Reentrant));
                    }
                    Some((_, outcome)) => {
                        if first_try {
                            state.stats.coalesced += 1;
                        }
                        Role::Follow(outcome)
                    }
                    None => {
                        let id = state.next_flight;
                        state.next_flight += 1;
                        state.stats.loads += 1;
                        let (tx, outcome) = watch::channel(None);
                        state.flights.insert(key.clone(), Flight { id, outcome });
                        Role::Lead(FlightGuard {
                            cache: self,
                            key: &key,
                            id,
                            tx,
                        })
                    }
                }
            };
            first_try = false;
            match role {
                Role::Follow(mut outcome) => {
                    // Err: the leader was dropped without an answer. Loop:
                    // its guard has unregistered the flight, so we (or
                    // another follower) take the lead.
                    if let Ok(answer) = outcome.wait_for(Option::is_some).await {
                        // wait_for only returns a value matching is_some.
                        return answer.clone().expect("outcome is set");
                    }
                }
                Role::Lead(flight) => {
                    // A caller leads at most once: leading always returns
                    // (or the whole future is dropped), so `load` is unused.
                    let load = load.take().expect("a caller leads at most once");
                    // Run the loader with this flight added to the task's
                    // list of loads it leads, so a re-entrant call for the
                    // same key can tell (see [`Reentrant`]).
                    let mut leading = LEADING.try_with(Vec::clone).unwrap_or_default();
                    leading.push((self.id, flight.id));
                    let outcome = LEADING
                        .scope(leading, async move { load().await })
                        .await
                        .map_err(LoadError::new);
                    flight.finish(&outcome, self.ttl);
                    return outcome;
                }
            }
        }
    }
}

enum Role<'a, K: Hash + Eq + Clone, V: Clone> {
    Lead(FlightGuard<'a, K, V>),
    Follow(watch::Receiver<Outcome<V>>),
}

/// Owned by the leader while its loader runs. Dropped unfinished (the
/// leader was cancelled, or its loader panicked), it unregisters the flight
/// and then, by dropping the sender, wakes the followers to retry.
struct FlightGuard<'a, K: Hash + Eq + Clone, V: Clone> {
    cache: &'a Cache<K, V>,
    key: &'a K,
    id: u64,
    /// Dropped after `Drop::drop` has unregistered the flight (fields drop
    /// after the body), so a woken follower never finds the dead flight.
    tx: watch::Sender<Outcome<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> FlightGuard<'_, K, V> {
    /// Publishes the loader's outcome: cached on success (unless `set` or
    /// `delete` detached the flight meanwhile), sent to every follower.
    fn finish(self, outcome: &Result<V, LoadError>, ttl: Duration) {
        let expires_at = expiry(Instant::now(), ttl);
        {
            let mut state = self.cache.state();
            if state.flights.get(self.key).is_some_and(|f| f.id == self.id) {
                state.flights.remove(self.key);
                if let Ok(value) = outcome {
                    state.store(self.key.clone(), value.clone(), expires_at);
                }
            }
            if outcome.is_err() {
                state.stats.load_failures += 1;
            }
        }
        // Followers may all be gone; send_replace stores the value anyway.
        self.tx.send_replace(Some(outcome.clone()));
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for FlightGuard<'_, K, V> {
    fn drop(&mut self) {
        // After `finish` the flight is already gone (or replaced by a newer
        // one with another id), so this is a no-op then.
        let mut state = self.cache.state();
        if state.flights.get(self.key).is_some_and(|f| f.id == self.id) {
            state.flights.remove(self.key);
        }
        // A loader that panicked is a failed load: counted, so the panic
        // shows in the stats as well as in the caller's task.
        if std::thread::panicking() {
            state.stats.load_failures += 1;
        }
    }
}
