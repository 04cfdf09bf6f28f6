//! Rate limiting: at most `rps` requests *started* per second, with a burst.
//!
//! Ports seed Example 2. The Python version pairs `Semaphore(int(rps))` with
//! `sleep(1 / rps)` inside the semaphore. That caps *concurrency*, not rate:
//! with slow responses it starts far fewer than `rps` requests a second, with
//! fast ones the sleeps overlap and bursts slip through; and for `rps < 1`,
//! `int(0.5) == 0` makes a semaphore no one can ever acquire: a deadlock.
//!
//! [`RateLimiter`] is GCRA (the generic cell rate algorithm, the "virtual
//! scheduling" form of a token bucket). It keeps one number, the theoretical
//! arrival time `tat` of the next request. Each caller *reserves* a start
//! slot under a lock in O(1), releases the lock, and sleeps until its slot:
//!
//! - **Rate**: slots are spaced by the emission interval `T = 1 / rps`, so
//!   fractional rates (0.5 rps = one every 2 s) just work.
//! - **Burst**: a slot may be up to `tau = (burst - 1) * T` earlier than
//!   `tat`, so an idle limiter lets `burst` requests go at once, then paces.
//! - **FIFO**: slots are handed out in lock order and only move forward, so
//!   waiters start in the order they asked; there is no wake-up-and-retry
//!   loop and no thundering herd, each waiter has exactly one timer.
//! - **Back-pressure from the server**: [`RateLimiter::pause_until`] pushes
//!   the schedule back (a 429's `Retry-After`), so every later caller waits.
//!   The wait comes from a peer, so [`RateLimiter::pause_for`] clamps it to
//!   [`MAX_PAUSE`] and adds it to `now` with `checked_add`: a hostile
//!   `Retry-After: 18446744073709551615` cannot overflow an `Instant`.
//!
//! The in-flight cap is a separate `tokio::sync::Semaphore` (see
//! [`crate::api`]): rate and concurrency are independent limits. Both sit in
//! a [`Throttle`], which is generic over where its slots come from (the
//! [`Limiter`] trait): this in-process limiter, or one budget shared by many
//! processes through Redis ([`crate::shared_limit`]).
//!
//! tokio primitives: `tokio::time::{Instant, sleep_until}`. The state sits
//! in a `std::sync::Mutex`: the guard only covers a few float operations and
//! is dropped before the `.await` (a guard held across an await would make
//! the future `!Send`, and block every other caller while we sleep).
//! A caller cancelled while waiting leaves its slot unused: the limiter errs
//! on the side of sending *fewer* requests, never more.
//!
//! Production: `governor` (GCRA, lock-free, keyed limiters) or
//! `tower::limit::RateLimit`. This module shows the mechanism in a page so
//! you can see what those crates do for you.
//!
//! ```text
//! cargo run --bin rate-limited-client -- --rate 20 --burst 5 --count 100
//! cargo test -p examples-http --test rate_limit
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The longest pause [`RateLimiter::pause_for`] applies: 7 days, the same
/// bound as every duration flag (`common::args::MAX_DURATION`). Callers
/// clamp a server's demand far lower (`--max-retry-after`); this is the
/// last line that keeps `Instant::now() + wait` from overflowing.
pub const MAX_PAUSE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A rate limit that cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    /// `rps` must be a finite number above zero.
    #[error("rate must be a finite number of requests per second > 0, got {0}")]
    InvalidRate(f64),
    /// `burst` must be at least one.
    #[error("burst must be at least 1")]
    ZeroBurst,
}

/// Where a [`Throttle`]'s start slots come from: the in-process
/// [`RateLimiter`], or a budget shared by many processes
/// ([`crate::shared_limit::SharedLimiter`]), whose every decision is a
/// network call and can fail.
pub trait Limiter: Send + Sync {
    /// Why a slot could not be had (`Infallible` in-process).
    type Error: std::error::Error + Send + Sync + 'static;
    /// Waits for this caller's start slot. Dropping the future forfeits it.
    fn acquire_slot(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Pushes every later slot back by `wait` (a server's `Retry-After`),
    /// with no burst after it.
    fn pause(&self, wait: Duration) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A GCRA rate limiter: `rps` starts per second, `burst` at once when idle.
#[derive(Debug)]
pub struct RateLimiter {
    /// Emission interval: the time between two starts at the sustained rate.
    interval: Duration,
    /// How far ahead of the schedule a caller may start (the burst tolerance).
    tolerance: Duration,
    // std Mutex: held for a comparison and an addition, never across .await.
    schedule: Mutex<Schedule>,
}

#[derive(Debug)]
struct Schedule {
    /// Theoretical arrival time of the next request at the sustained rate.
    tat: Instant,
}

impl RateLimiter {
    /// A limiter of `rps` starts per second (fractional allowed) letting
    /// `burst` requests through back to back when it has been idle.
    pub fn new(rps: f64, burst: u32) -> Result<Self, RateLimitError> {
        if !(rps.is_finite() && rps > 0.0) {
            return Err(RateLimitError::InvalidRate(rps));
        }
        if burst == 0 {
            return Err(RateLimitError::ZeroBurst);
        }
        // try_from_secs_f64 rejects what would overflow a Duration (a rate
        // like 1e-300); report it as the invalid rate it is. The interval
        // is bounded by MAX_PAUSE too, so `tat + interval` stays far from
        // overflowing an Instant.
        let interval = Duration::try_from_secs_f64(1.0 / rps)
            .ok()
            .filter(|interval| *interval <= MAX_PAUSE)
            .ok_or(RateLimitError::InvalidRate(rps))?;
        Ok(Self {
            interval,
            tolerance: interval.saturating_mul(burst - 1).min(MAX_PAUSE),
            schedule: Mutex::new(Schedule {
                tat: Instant::now(),
            }),
        })
    }

    /// Time between two starts at the sustained rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How far ahead of the sustained schedule a start may be (the burst).
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Reserves the next start slot and returns it, without waiting. The
    /// caller must not start before the returned instant.
    pub fn reserve(&self) -> Instant {
        let now = Instant::now();
        // Poisoning needs a panic while the lock is held; the critical
        // section is arithmetic that cannot leave `tat` half-updated, so the
        // value inside is still valid.
        let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        // An idle limiter does not bank credit beyond the burst: the
        // schedule never lags behind "now".
        let tat = schedule.tat.max(now);
        // The earliest this caller may go: `tau` ahead of schedule, not
        // before now. Later callers always get later (or equal) slots.
        let slot = tat.checked_sub(self.tolerance).unwrap_or(now).max(now);
        // `tat` is at most one pause (<= MAX_PAUSE + tolerance) plus one
        // interval per reservation ahead of now: decades from overflow.
        schedule.tat = tat + self.interval;
        slot
    }

    /// Waits for this caller's start slot. Cancel-safe: dropping the future
    /// only forfeits the slot.
    pub async fn acquire(&self) {
        let slot = self.reserve();
        // One timer per waiter, no polling: the runtime wakes us at the slot.
        tokio::time::sleep_until(slot).await;
    }

    /// Pushes the schedule back so that no caller *reserving from now on*
    /// starts before `until`, and no burst follows the pause (the server
    /// asked us to slow down; it gets the sustained rate, not a stampede).
    /// Slots already handed out are kept: those callers are already asleep.
    /// A pause that ends before the current schedule changes nothing.
    pub fn pause_until(&self, until: Instant) {
        // Same invariant as in `reserve`: the value survives poisoning.
        let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        // slot = tat - tau, so tat = until + tau puts the next slot at
        // `until`. Checked: `until` may come from anywhere; at the edge of
        // the clock the pause ends at `until` itself.
        let paused = until.checked_add(self.tolerance).unwrap_or(until);
        if paused > schedule.tat {
            schedule.tat = paused;
        }
    }

    /// [`pause_until`](Self::pause_until) `now + wait`, for a wait that came
    /// from outside (a `Retry-After`): clamped to [`MAX_PAUSE`] and added
    /// with `checked_add`, so no value can panic. Returns when the pause
    /// ends.
    pub fn pause_for(&self, wait: Duration) -> Instant {
        let now = Instant::now();
        // MAX_PAUSE is 7 days: checked_add only fails on a clock that is
        // itself near the end of time; then pause as far as it can go.
        let until = now.checked_add(wait.min(MAX_PAUSE)).unwrap_or(now);
        self.pause_until(until);
        until
    }
}

impl Limiter for RateLimiter {
    type Error = Infallible;

    async fn acquire_slot(&self) -> Result<(), Infallible> {
        self.acquire().await;
        Ok(())
    }

    async fn pause(&self, wait: Duration) -> Result<(), Infallible> {
        self.pause_for(wait);
        Ok(())
    }
}

/// Both limits around an operation: at most `max_concurrent` in flight,
/// and (when a limiter is set) starts on the limiter's schedule. Tracks the
/// peak in flight so a run can prove the cap held.
#[derive(Debug)]
pub struct Throttle<L = RateLimiter> {
    limiter: Option<L>,
    permits: Semaphore,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    // std Mutex: three assignments per start, never held across .await.
    starts: Mutex<Starts>,
}

/// When operations started: enough to compute the achieved rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Starts {
    /// Operations started.
    pub count: u64,
    /// The first start.
    pub first: Option<Instant>,
    /// The latest start.
    pub last: Option<Instant>,
}

impl Starts {
    /// Starts per second between the first and the last start, leaving out
    /// the first `burst` (which GCRA lets through at once by design): the
    /// sustained rate, comparable to the configured `rps`. `None` until at
    /// least one paced start happened after a non-zero span.
    pub fn sustained_rate(&self, burst: u32) -> Option<f64> {
        let span = self.last?.duration_since(self.first?).as_secs_f64();
        let paced = self.count.checked_sub(u64::from(burst))?;
        (span > 0.0 && paced > 0).then(|| paced as f64 / span)
    }
}

impl Throttle<RateLimiter> {
    /// A throttle with an optional in-process rate limit and an in-flight
    /// cap (>= 1).
    pub fn new(limiter: Option<RateLimiter>, max_concurrent: usize) -> Self {
        Self::with_limiter(limiter, max_concurrent)
    }

    /// Runs `op` once a permit is free and its start slot has come (see
    /// [`try_run`](Self::try_run); the in-process limiter cannot fail).
    pub async fn run<F: Future>(&self, op: F) -> F::Output {
        match self.try_run(op).await {
            Ok(output) => output,
            Err(never) => match never {},
        }
    }
}

impl<L: Limiter> Throttle<L> {
    /// A throttle whose slots come from any [`Limiter`] (e.g. one shared
    /// through Redis), with an in-flight cap (>= 1).
    pub fn with_limiter(limiter: Option<L>, max_concurrent: usize) -> Self {
        Self {
            limiter,
            permits: Semaphore::new(max_concurrent.max(1)),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            starts: Mutex::new(Starts::default()),
        }
    }

    /// When the operations started so far.
    pub fn starts(&self) -> Starts {
        // Same poisoning argument as in RateLimiter::reserve.
        *self.starts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rate limiter, if any (e.g. to [`RateLimiter::pause_until`]).
    pub fn limiter(&self) -> Option<&L> {
        self.limiter.as_ref()
    }

    /// The most operations that were ever in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    /// Operations in flight now (started, not yet finished or dropped).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Permits free now: the cap minus the callers holding one (waiting
    /// for a slot or running).
    pub fn available_permits(&self) -> usize {
        self.permits.available_permits()
    }

    /// Runs `op` once a permit is free and its start slot has come; an
    /// `Err` when the limiter could not give a slot (`op` then never runs).
    ///
    /// The permit comes first, the slot second: a slot taken before the
    /// permit could expire while we queue for the permit, and several late
    /// callers would then start back to back, a burst the server sees as
    /// a rate violation. This way a start is never later than its slot
    /// except by timer resolution, and at most `max_concurrent` callers hold
    /// reservations at a time.
    ///
    /// Dropped at any await, or unwound by a panic in `op`, it gives the
    /// permit back and leaves the in-flight count as it found it (RAII
    /// guards, not code after the await).
    pub async fn try_run<F: Future>(&self, op: F) -> Result<F::Output, L::Error> {
        // The semaphore is owned by self and never closed, so acquire
        // cannot fail.
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closed");
        if let Some(limiter) = &self.limiter {
            limiter.acquire_slot().await?;
        }
        {
            let now = Instant::now();
            // The guard is dropped at the end of this block, before op.await.
            let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
            starts.count += 1;
            starts.first.get_or_insert(now);
            starts.last = Some(now);
        }
        let now_in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight
            .fetch_max(now_in_flight, Ordering::Relaxed);
        // Decrement even if `op` is cancelled mid-way (the guard's Drop runs).
        let _in_flight = InFlight(&self.in_flight);
        Ok(op.await)
    }
}

/// Decrements the in-flight count when the operation ends or is dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
