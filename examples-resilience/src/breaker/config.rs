//! The breaker's vocabulary: what it is told (config, classifier) and what
//! it answers (the fast-failure error, the call error, the metrics).

use std::fmt;
use std::time::Duration;

/// Trip on the failure rate over a sliding time window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateTrip {
    /// Fraction of failed calls (0 < threshold <= 1) that opens the circuit.
    pub threshold: f64,
    /// The window the rate is computed over (slides in tenths).
    pub window: Duration,
    /// No verdict on fewer calls than this: 1 failure in 1 call is not 100%.
    pub min_calls: u32,
}

/// How the breaker decides (see the module docs for each rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Trip after this many failures in a row.
    pub consecutive_failures: Option<u32>,
    /// Trip on the failure rate over a window.
    pub failure_rate: Option<RateTrip>,
    /// How long the circuit stays open the first time.
    pub cool_down: Duration,
    /// Multiplier for each re-open without a close in between (1.0: fixed).
    pub cool_down_growth: f64,
    /// Upper bound for the grown cool-down.
    pub max_cool_down: Duration,
    /// K: probes allowed at once in half-open.
    pub half_open_probes: u32,
    /// Successful probes needed to close.
    pub success_threshold: u32,
    /// Calls slower than this count as failures (their result is still returned).
    pub slow_call: Option<Duration>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            failure_rate: None,
            cool_down: Duration::from_secs(30),
            cool_down_growth: 1.0,
            max_cool_down: Duration::from_secs(30),
            half_open_probes: 1,
            success_threshold: 1,
            slow_call: None,
        }
    }
}

impl BreakerConfig {
    /// Checks the numbers make sense (a breaker that can never trip or
    /// never close is a configuration bug worth failing loudly on).
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let bad = |why| Err(InvalidConfig(why));
        if self.consecutive_failures.is_none() && self.failure_rate.is_none() {
            return bad("set consecutive_failures, failure_rate or both");
        }
        if self.consecutive_failures == Some(0) {
            return bad("consecutive_failures must be at least 1");
        }
        if let Some(rate) = self.failure_rate
            && (!(rate.threshold > 0.0 && rate.threshold <= 1.0)
                || rate.window.is_zero()
                || rate.min_calls == 0)
        {
            return bad(
                "failure_rate needs 0 < threshold <= 1, a non-zero window and min_calls >= 1",
            );
        }
        if self.half_open_probes == 0 || self.success_threshold == 0 {
            return bad("half_open_probes and success_threshold must be at least 1");
        }
        if self.cool_down_growth.is_nan()
            || self.cool_down_growth < 1.0
            || self.max_cool_down < self.cool_down
        {
            return bad("cool_down_growth must be >= 1 and max_cool_down >= cool_down");
        }
        Ok(())
    }
}

/// A configuration that cannot work; says which rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid circuit breaker config: {0}")]
pub struct InvalidConfig(&'static str);

/// The fast failure: the call was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open; retry in {retry_in:?}")]
pub struct CircuitOpen {
    /// Time left in the cool-down; zero when half-open with every probe
    /// permit taken (try again once a probe reports).
    pub retry_in: Duration,
}

/// What [`CircuitBreaker::call`](super::CircuitBreaker::call) returns on failure.
#[derive(Debug, PartialEq, Eq)]
pub enum CallError<E> {
    /// Rejected without calling: the circuit is open.
    Open(CircuitOpen),
    /// The operation ran and failed.
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Open(open) => open.fmt(f),
            CallError::Failed(err) => err.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Open(_) => None,
            CallError::Failed(err) => err.source(),
        }
    }
}

/// Decides whether an error says the service is unhealthy.
pub trait Classifier<E> {
    /// True if `error` should count against the service.
    fn is_failure(&self, error: &E) -> bool;
}

/// The default classifier: every error counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyError;

impl<E> Classifier<E> for AnyError {
    fn is_failure(&self, _error: &E) -> bool {
        true
    }
}

impl<E, F: Fn(&E) -> bool> Classifier<E> for F {
    fn is_failure(&self, error: &E) -> bool {
        self(error)
    }
}

/// Counters since the breaker was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BreakerMetrics {
    /// Calls let through (probes included).
    pub permitted: u64,
    /// Calls refused with [`CircuitOpen`]: the load the service was spared.
    pub rejected: u64,
    /// Finished calls that counted as successes.
    pub successes: u64,
    /// Finished calls that counted as failures (slow ones included).
    pub failures: u64,
    /// Calls slower than `slow_call` (a subset of `failures`).
    pub slow_calls: u64,
    /// Errors the classifier did not count as failures (in `successes`).
    pub ignored_errors: u64,
    /// Operations that panicked (a subset of `failures`; the panic was
    /// resumed in the caller after it was counted).
    pub panics: u64,
    /// Calls dropped before finishing (their permits were returned).
    pub cancelled: u64,
    /// State changes.
    pub transitions: u64,
}
