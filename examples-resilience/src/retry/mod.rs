//! Retry with exponential backoff, for any async operation.
//!
//! Ports seed Example 10. A call that fails for a passing reason (a timeout,
//! a 503, a 429) often succeeds a moment later; retrying at once, or all
//! clients at the same instant, makes the overload that caused the failure
//! worse. The fix is to wait longer after each failure, with randomness, and
//! to give up in bounded time.
//!
//! What the Python gets wrong, and what this version does instead:
//!
//! - It retries *every* exception, `TypeError` and 404 included. Here a
//!   classifier ([`Decision`]) decides: timeouts, 5xx and 429 are retried;
//!   other 4xx and programming errors stop at once.
//! - It has a retry count but no deadline: 5 retries of a 30 s timeout is
//!   minutes. Here `deadline` bounds the whole loop, cuts an attempt still
//!   running when it passes, and refuses to sleep past it (no useless wait).
//! - It ignores `Retry-After`; here the classifier can return
//!   [`Decision::RetryAfter`], which becomes the floor of the next delay.
//! - It prints from inside the helper; here a notify hook sees each retry
//!   (the demo logs it with `tracing`).
//! - On failure only the last exception survives and the stats are lost;
//!   here [`RetryError`] carries every attempt, the reason it stopped and
//!   the stats.
//! - Its jitter uses the global `random` module, so no test can pin the
//!   delays; here [`Retry::seed`] makes them exact (`tests/retry.rs`).
//!
//! Cancellation is free in Rust: [`Retry::run`] is a future, and dropping it
//! (a `select!` losing, a `timeout`, Ctrl-C in the demo) drops the attempt
//! or the `tokio::time::sleep` it is waiting on. No task is left behind.
//!
//! Tokio primitives: `tokio::time::{sleep, timeout_at, Instant}` (the
//! paused test clock drives all of them).
//!
//! Production: [`backon`](https://docs.rs/backon) (maintained, builder API,
//! `Retryable` on any async fn), [`tokio-retry2`](https://docs.rs/tokio-retry2)
//! (strategy iterators, like [`backoff::Delays`]),
//! [`reqwest-retry`](https://docs.rs/reqwest-retry) (middleware for
//! reqwest with a transient-error classifier) or `tower::retry` (a
//! `Policy` trait inside a tower stack; budgets limit retry storms). The
//! once-popular `backoff` crate is unmaintained (RUSTSEC-2025-0012) and
//! should not be picked for new code. This module shows the loop in a
//! couple of hundred lines so you can see what those crates decide for you.
//!
//! ```text
//! cargo run --bin backoff-retry
//! cargo run --bin backoff-retry -- --json
//! cargo run --release --bin backoff-retry -- --bench
//! cargo test -p examples-resilience --test retry
//! ```

/// The backoff schedule lives in `common` so that the retry loop, the
/// WebSocket client's reconnects and the supervisor's restarts share one type.
pub use common::backoff;
mod outcome;

use std::future::Future;
use std::time::Duration;

use common::retry_after::Demand;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::{self, Instant};

pub use backoff::{Backoff, Delays, Jitter};
pub use outcome::{Attempt, GiveUp, Retried, RetryError, RetryStats, TooLong};

/// What to do after a failed attempt; the classifier's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A passing failure: wait the backoff delay and try again.
    Retry,
    /// The server said when (`Retry-After`): wait at least this long.
    RetryAfter(Duration),
    /// Retrying cannot help (404, bad input, a bug): give up now.
    Stop,
}

/// How many attempts, how far apart, and for how long in total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (the seed's `max_retries + 1`).
    /// Also bounds the attempt history kept in [`RetryError`].
    pub max_attempts: u32,
    /// The delay schedule between attempts.
    pub backoff: Backoff,
    /// Budget for the whole loop, attempts and sleeps together. A budget
    /// too large for the clock (`Duration::MAX`) means no deadline.
    pub deadline: Option<Duration>,
    /// The longest `Retry-After` obeyed: a longer demand is clamped to this
    /// (and, when even the clamp is past the deadline, the loop gives up at
    /// once with [`GiveUp::RetryAfterTooLong`]).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            backoff: Backoff::default(),
            deadline: None,
            max_retry_after: common::retry_after::DEFAULT_MAX,
        }
    }
}

/// What the notify hook sees before each sleep.
#[derive(Debug)]
pub struct RetryNotice<'a, E> {
    /// The attempt that just failed (1-based).
    pub attempt: u32,
    /// Its error.
    pub error: &'a E,
    /// The sleep before the next attempt.
    pub delay: Duration,
    /// Time since the first attempt started.
    pub elapsed: Duration,
}

/// A hook called before each retry sleep (logging, metrics).
pub trait Notify<E> {
    /// Called once per retry, before sleeping.
    fn notify(&self, notice: &RetryNotice<'_, E>);
}

/// The default hook: does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotify;

impl<E> Notify<E> for NoNotify {
    fn notify(&self, _notice: &RetryNotice<'_, E>) {}
}

impl<E, F: Fn(&RetryNotice<'_, E>)> Notify<E> for F {
    fn notify(&self, notice: &RetryNotice<'_, E>) {
        self(notice);
    }
}

/// A retry policy with its classifier and hook, reusable for many calls.
///
/// `C: Fn(&E) -> Decision` classifies errors; `N` is the notify hook.
#[derive(Debug, Clone)]
pub struct Retry<C, N = NoNotify> {
    policy: RetryPolicy,
    classify: C,
    notify: N,
    seed: Option<u64>,
}

impl<C> Retry<C, NoNotify> {
    /// A retrier with `policy`, deciding with `classify`.
    pub fn new(policy: RetryPolicy, classify: C) -> Self {
        Self {
            policy,
            classify,
            notify: NoNotify,
            seed: None,
        }
    }
}

impl<C, N> Retry<C, N> {
    /// Seeds the jitter, so each run draws the same delays (tests, demos).
    /// Leave it unset in production: many clients with one seed would
    /// retry in lockstep, which is what jitter exists to prevent.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Calls `hook` before every retry sleep.
    pub fn on_retry<H>(self, hook: H) -> Retry<C, H> {
        Retry {
            policy: self.policy,
            classify: self.classify,
            notify: hook,
            seed: self.seed,
        }
    }

    /// The policy in use.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Runs `op` until it succeeds, the classifier says stop, the attempts
    /// run out or the deadline passes. `op` is called once per attempt and
    /// returns a fresh future each time (a future can only be awaited once).
    pub async fn run<T, E, Op, Fut>(&self, mut op: Op) -> Result<Retried<T>, RetryError<E>>
    where
        Op: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Fn(&E) -> Decision,
        N: Notify<E>,
    {
        let started = Instant::now();
        // checked_add: a deadline beyond the clock's range is no deadline.
        let deadline = self.policy.deadline.and_then(|d| started.checked_add(d));
        let mut stats = RetryStats::default();
        // Vec::new does not allocate: the happy path stays allocation-free.
        let mut history = Vec::new();
        // Created on the first failure only, for the same reason.
        let mut delays: Option<Delays<StdRng>> = None;
        let give_up = |reason, history, mut stats: RetryStats| {
            stats.elapsed = started.elapsed();
            Err(RetryError {
                reason,
                history,
                stats,
            })
        };

        loop {
            stats.attempts += 1;
            let number = stats.attempts;
            // The first attempt starts with the loop: one clock read saved
            // on the happy path.
            let attempt_started = if number == 1 { started } else { Instant::now() };
            let result = match deadline {
                None => op().await,
                // timeout_at drops (cancels) the attempt when the budget ends.
                Some(at) => match time::timeout_at(at, op()).await {
                    Ok(result) => result,
                    Err(_elapsed) => {
                        let took = attempt_started.elapsed();
                        let started_at = attempt_started - started;
                        history.push(Attempt {
                            number,
                            started: started_at,
                            took,
                            error: None,
                            delay: None,
                        });
                        return give_up(GiveUp::DeadlineExceeded, history, stats);
                    }
                },
            };
            let error = match result {
                Ok(value) => {
                    stats.elapsed = started.elapsed();
                    return Ok(Retried { value, stats });
                }
                Err(error) => error,
            };
            let now = Instant::now();
            let mut record = Attempt {
                number,
                started: attempt_started - started,
                took: now - attempt_started,
                error: None,
                delay: None,
            };
            let decision = (self.classify)(&error);
            // Stop before computing a delay: no sleep after the last attempt.
            let stop = match decision {
                Decision::Stop => Some(GiveUp::NotRetryable),
                _ if number >= self.policy.max_attempts => Some(GiveUp::AttemptsExhausted),
                _ => None,
            };
            if let Some(reason) = stop {
                record.error = Some(error);
                history.push(record);
                return give_up(reason, history, stats);
            }
            let schedule = delays.get_or_insert_with(|| self.policy.backoff.delays(self.rng()));
            // The iterator is endless, so next() always has a value.
            let backoff = schedule.next().unwrap_or(self.policy.backoff.max_delay);
            let delay = match decision {
                // Retry-After is untrusted input: clamped to our maximum,
                // and a demand longer than what the deadline leaves ends
                // the loop now, naming the demand, rather than sleeping
                // into a certain DeadlineExceeded. Then it is a floor: the
                // server knows when it will be ready, and our own backoff
                // may already be longer.
                Decision::RetryAfter(after) => {
                    let remaining = deadline.map(|at| at.saturating_duration_since(now));
                    match Demand(after).plan(self.policy.max_retry_after, remaining) {
                        Ok(wait) => wait.max(backoff),
                        Err(too_long) => {
                            record.error = Some(error);
                            history.push(record);
                            return give_up(GiveUp::RetryAfterTooLong(too_long), history, stats);
                        }
                    }
                }
                _ => backoff,
            };
            // Sleeping into (or past) the deadline only to be cut off is
            // pure waste: give up now and tell the caller sooner. An end
            // past the clock's range certainly crosses it.
            if deadline.is_some_and(|at| now.checked_add(delay).is_none_or(|end| end >= at)) {
                record.error = Some(error);
                history.push(record);
                return give_up(GiveUp::DeadlineExceeded, history, stats);
            }
            self.notify.notify(&RetryNotice {
                attempt: number,
                error: &error,
                delay,
                elapsed: now - started,
            });
            record.error = Some(error);
            record.delay = Some(delay);
            history.push(record);
            time::sleep(delay).await;
            stats.total_delay += delay;
        }
    }

    fn rng(&self) -> StdRng {
        match self.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            // Seeded from the thread-local generator; the temporary
            // ThreadRng (which is !Send) is gone before the next .await.
            None => rand::make_rng(),
        }
    }
}
