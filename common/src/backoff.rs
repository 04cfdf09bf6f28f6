//! Backoff schedules: how long to wait before retry number n.
//!
//! The delay grows geometrically from `base` by `factor` and is capped at
//! `max_delay`; jitter then spreads the clients out. Without jitter, every
//! client that failed at the same moment (a deploy, a blip) retries at the
//! same moment too, and the recovering server meets the same spike again.
//! The four strategies are the ones in the AWS Architecture Blog post
//! "Exponential Backoff and Jitter" (Marc Brooker, 2015):
//!
//! | jitter | delay for retry n (exp = min(cap, base * factor^n)) |
//! |---|---|
//! | `None` | `exp`: predictable, and synchronised across clients |
//! | `Full` (default) | uniform in `[0, exp]`: the least total load |
//! | `Equal` | `exp / 2 + uniform[0, exp / 2]`: never shorter than half |
//! | `Decorrelated` | `min(cap, uniform[base, 3 * previous])`: grows from the last delay, not from n |
//!
//! The seed's `delay * (0.5 + random() * 0.5)` is "equal jitter" applied to
//! the capped delay; we keep it as one option among four and make full
//! jitter the default, as the AWS measurements recommend.
//!
//! The random source is passed in, so a test with a seeded RNG gets the same
//! delays every run (see `examples-resilience/tests/retry.rs`).
//!
//! One type for the whole workspace: the retry loop (seed 10), the
//! WebSocket client's reconnects (seed 4) and the supervisor's restarts
//! (seed 11) all draw their delays from a [`Backoff`].

use std::time::Duration;

use rand::{Rng, RngExt};

/// How the exponential delay is randomised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// No randomness: exactly `min(cap, base * factor^n)`.
    None,
    /// Uniform in `[0, exp]` (AWS "full jitter"): the default.
    #[default]
    Full,
    /// Half fixed, half random: `exp / 2 + uniform[0, exp / 2]`.
    Equal,
    /// `min(cap, uniform[base, 3 * previous delay])` (AWS "decorrelated jitter").
    Decorrelated,
}

/// An exponential backoff schedule with a cap and a jitter strategy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry (before jitter).
    pub base: Duration,
    /// Growth per retry; 2.0 doubles the delay each time. Must be >= 1.
    pub factor: f64,
    /// No delay is ever longer than this, jitter included.
    pub max_delay: Duration,
    /// How the delay is randomised.
    pub jitter: Jitter,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            factor: 2.0,
            max_delay: Duration::from_secs(10),
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// The un-jittered, capped delay before retry `n` (0-based).
    pub fn exponential(&self, n: u32) -> Duration {
        // f64 keeps fractional factors (the seed's 1.5) simple. A huge n
        // overflows to infinity, which `try_from_secs_f64` rejects: that
        // also means "past the cap".
        let exp = self.factor.powi(i32::try_from(n).unwrap_or(i32::MAX));
        // Rounded to whole milliseconds, the timer's resolution (see `uniform`).
        Duration::try_from_secs_f64((self.base.as_secs_f64() * exp * 1e3).round() / 1e3)
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// The infinite sequence of delays this schedule produces with `rng`.
    pub fn delays<R: Rng>(&self, rng: R) -> Delays<R> {
        Delays {
            backoff: *self,
            rng,
            n: 0,
            previous: self.base,
        }
    }
}

/// The delays of one retry loop, in order (an endless iterator).
///
/// Stateful because decorrelated jitter depends on the previous delay.
#[derive(Debug, Clone)]
pub struct Delays<R> {
    backoff: Backoff,
    rng: R,
    n: u32,
    previous: Duration,
}

impl<R: Rng> Iterator for Delays<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let b = &self.backoff;
        let exp = b.exponential(self.n);
        let delay = match b.jitter {
            Jitter::None => exp,
            Jitter::Full => uniform(&mut self.rng, Duration::ZERO, exp),
            Jitter::Equal => exp / 2 + uniform(&mut self.rng, Duration::ZERO, exp - exp / 2),
            Jitter::Decorrelated => {
                // Grows by up to 3x from the previous delay rather than from
                // n; the cap applies after the draw so it always holds.
                let high = self.previous.saturating_mul(3).max(b.base);
                uniform(&mut self.rng, b.base, high).min(b.max_delay)
            }
        };
        self.previous = delay;
        self.n = self.n.saturating_add(1);
        Some(delay)
    }
}

/// A uniform duration in `[low, high]`, in whole milliseconds.
///
/// tokio's timer has millisecond resolution (a sleep ends on the next
/// millisecond tick), so whole milliseconds make the delay we report the
/// delay actually slept, which is what lets tests assert exact sequences.
fn uniform<R: Rng>(rng: &mut R, low: Duration, high: Duration) -> Duration {
    // Any delay under ~584 million years fits u64 milliseconds; saturating
    // keeps a silly config from panicking.
    let low_ms = u64::try_from(low.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    let high_ms = u64::try_from(high.as_millis()).unwrap_or(u64::MAX);
    if low_ms > high_ms {
        return high; // the range is narrower than a millisecond
    }
    Duration::from_millis(rng.random_range(low_ms..=high_ms))
}
