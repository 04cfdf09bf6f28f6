//! What a retry loop hands back: the value with its stats, or the reason
//! it gave up with every attempt it made.
//!
//! The seed raises only the last exception and drops its stats on failure;
//! an operator debugging "why did this take 40 s?" wants the whole story:
//! when each attempt started, how long it ran, what it failed with, and how
//! long the loop slept after it.

use std::fmt;
use std::time::Duration;

pub use common::retry_after::TooLong;

/// Why the loop gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The classifier said [`Decision::Stop`](super::Decision::Stop).
    NotRetryable,
    /// `max_attempts` attempts all failed.
    AttemptsExhausted,
    /// The deadline passed, or the next delay would have crossed it.
    DeadlineExceeded,
    /// The server demanded (`Retry-After`) a wait longer than the time left
    /// before the deadline: the loop gave up at once instead of sleeping
    /// past its own limit. Names the demand and what was left.
    RetryAfterTooLong(TooLong),
}

impl GiveUp {
    /// The reason as one snake_case word, for JSON and logs.
    pub fn name(&self) -> &'static str {
        match self {
            GiveUp::NotRetryable => "not_retryable",
            GiveUp::AttemptsExhausted => "attempts_exhausted",
            GiveUp::DeadlineExceeded => "deadline_exceeded",
            GiveUp::RetryAfterTooLong(_) => "retry_after_too_long",
        }
    }
}

/// Serialized as its [`GiveUp::name`], one string whatever the variant.
impl serde::Serialize for GiveUp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GiveUp::NotRetryable => f.write_str("not retryable"),
            GiveUp::AttemptsExhausted => f.write_str("attempts exhausted"),
            GiveUp::DeadlineExceeded => f.write_str("deadline exceeded"),
            GiveUp::RetryAfterTooLong(too_long) => too_long.fmt(f),
        }
    }
}

/// Counters for one run of the loop (success or failure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryStats {
    /// Attempts started.
    pub attempts: u32,
    /// Time spent sleeping between attempts.
    pub total_delay: Duration,
    /// Time from the first attempt to the result.
    pub elapsed: Duration,
}

/// One failed attempt, as kept in [`RetryError::history`].
#[derive(Debug)]
pub struct Attempt<E> {
    /// 1-based attempt number.
    pub number: u32,
    /// When it started, relative to the first attempt.
    pub started: Duration,
    /// How long it ran.
    pub took: Duration,
    /// Its error; `None` if the deadline cut it short.
    pub error: Option<E>,
    /// The sleep that followed it; `None` for the last attempt.
    pub delay: Option<Duration>,
}

/// The loop gave up: why, every attempt, and the stats.
#[derive(Debug)]
pub struct RetryError<E> {
    /// Why it stopped.
    pub reason: GiveUp,
    /// Every attempt in order (at most `max_attempts`).
    pub history: Vec<Attempt<E>>,
    /// Attempts, total delay, elapsed.
    pub stats: RetryStats,
}

impl<E> RetryError<E> {
    /// The error of the last attempt that returned one.
    pub fn last_error(&self) -> Option<&E> {
        self.history.iter().rev().find_map(|a| a.error.as_ref())
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RetryStats {
            attempts, elapsed, ..
        } = self.stats;
        write!(
            f,
            "gave up ({}) after {attempts} attempt(s) in {elapsed:.2?}",
            self.reason
        )?;
        match self.last_error() {
            Some(err) => write!(f, "; last error: {err}"),
            None => Ok(()),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.last_error().map(|e| e as _)
    }
}

/// A success, with the stats of the loop that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried<T> {
    /// The operation's output.
    pub value: T,
    /// Attempts, total delay, elapsed.
    pub stats: RetryStats,
}
