//! What a retry loop hands back: the value with its stats, or the reason
//! it gave up with every attempt it made.
//!
//! The seed raises only the last exception and drops its stats on failure;
//! an operator debugging "why did this take 40 s?" wants the whole story:
//! when each attempt started, how long it ran, what it failed with, and how
//! long the loop slept after it.

use std::fmt;
use std::time::Duration;

/// Why the loop gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GiveUp {
    /// The classifier said [`Decision::Stop`](super::Decision::Stop).
    NotRetryable,
    /// `max_attempts` attempts all failed.
    AttemptsExhausted,
    /// The deadline passed, or the next delay would have crossed it.
    DeadlineExceeded,
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GiveUp::NotRetryable => "not retryable",
            GiveUp::AttemptsExhausted => "attempts exhausted",
            GiveUp::DeadlineExceeded => "deadline exceeded",
        })
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
