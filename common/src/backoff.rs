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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn schedule(base_ms: u64, factor: f64, max_ms: u64, jitter: Jitter) -> Backoff {
        Backoff {
            base: MS * u32::try_from(base_ms).unwrap(),
            factor,
            max_delay: MS * u32::try_from(max_ms).unwrap(),
            jitter,
        }
    }

    #[test]
    fn default_is_100ms_doubling_to_10s_with_full_jitter() {
        let b = Backoff::default();
        assert_eq!(b.base, Duration::from_millis(100));
        assert_eq!(b.factor, 2.0);
        assert_eq!(b.max_delay, Duration::from_secs(10));
        assert_eq!(b.jitter, Jitter::Full);
        assert_eq!(Jitter::default(), Jitter::Full);
    }

    #[test]
    fn exponential_grows_by_factor_rounds_to_ms_and_caps() {
        let b = schedule(100, 2.0, 1000, Jitter::None);
        let got: Vec<u128> = (0..6).map(|n| b.exponential(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.exponential(u32::MAX), b.max_delay, "overflow is the cap");
        // 1 ms * 1.5 = 1.5 ms rounds to 2 ms; * 1.5^2 = 2.25 ms rounds to 2 ms.
        let b = schedule(1, 1.5, 1000, Jitter::None);
        assert_eq!(b.exponential(1), 2 * MS);
        assert_eq!(b.exponential(2), 2 * MS);
        assert_eq!(b.exponential(3), 3 * MS, "3.375 ms");
        // No jitter: the sequence is the exponential one.
        let b = schedule(10, 3.0, 500, Jitter::None);
        let got: Vec<Duration> = b.delays(StdRng::seed_from_u64(1)).take(5).collect();
        assert_eq!(got, [10 * MS, 30 * MS, 90 * MS, 270 * MS, 500 * MS]);
    }

    /// Draws many delays for retry `n` and returns (min, max) seen.
    fn spread(b: Backoff, n: u32) -> (Duration, Duration) {
        let mut seen = (Duration::MAX, Duration::ZERO);
        for seed in 0..400 {
            let delay = b
                .delays(StdRng::seed_from_u64(seed))
                .nth(n as usize)
                .unwrap();
            seen = (seen.0.min(delay), seen.1.max(delay));
        }
        seen
    }

    #[test]
    fn full_jitter_spans_zero_to_the_exponential_delay() {
        let b = schedule(100, 2.0, 10_000, Jitter::Full);
        let (low, high) = spread(b, 2); // exp = 400 ms
        assert!(low < 40 * MS, "{low:?}");
        assert!(high > 360 * MS && high <= 400 * MS, "{high:?}");
    }

    #[test]
    fn equal_jitter_is_never_below_half() {
        let b = schedule(100, 2.0, 10_000, Jitter::Equal);
        let (low, high) = spread(b, 2); // exp = 400 ms: [200, 400]
        assert!(low >= 200 * MS && low < 220 * MS, "{low:?}");
        assert!(high > 380 * MS && high <= 400 * MS, "{high:?}");
        // An odd exp: 3 ms = 1.5 ms + [0, 1.5] ms drawn in whole ms: 1.5 or 2.5 ms.
        let b = schedule(3, 1.0, 10_000, Jitter::Equal);
        let us = Duration::from_micros;
        assert_eq!(spread(b, 0), (us(1500), us(2500)));
    }

    #[test]
    fn decorrelated_grows_from_the_previous_delay_within_base_and_cap() {
        let b = schedule(10, 2.0, 5_000, Jitter::Decorrelated);
        let mut grew_past_three_bases = false;
        for seed in 0..50 {
            let mut previous = b.base;
            for delay in b.delays(StdRng::seed_from_u64(seed)).take(20) {
                assert!(delay >= b.base, "{delay:?} < base");
                assert!(delay <= b.max_delay, "{delay:?} > cap");
                assert!(delay <= previous * 3, "{delay:?} > 3 x {previous:?}");
                grew_past_three_bases |= delay > 3 * b.base;
                previous = delay;
            }
        }
        assert!(
            grew_past_three_bases,
            "the draw must use the previous delay, not base"
        );
        // A cap below base still holds: the cap wins after the draw.
        let b = schedule(100, 2.0, 50, Jitter::Decorrelated);
        assert!(
            b.delays(StdRng::seed_from_u64(3))
                .take(5)
                .all(|d| d == 50 * MS)
        );
    }

    #[test]
    fn uniform_is_inclusive_whole_ms_and_survives_a_sub_ms_range() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut seen = [false; 3];
        for _ in 0..200 {
            let d = uniform(&mut rng, Duration::from_micros(1500), 4 * MS);
            // low rounds up to 2 ms: draws are 2, 3 or 4 ms.
            let ms = usize::try_from(d.as_millis()).unwrap();
            assert_eq!(d, MS * u32::try_from(ms).unwrap(), "whole ms");
            seen[ms - 2] = true;
        }
        assert_eq!(seen, [true; 3], "both ends are included");
        let narrow = Duration::from_micros(700);
        assert_eq!(
            uniform(&mut rng, Duration::from_micros(500), narrow),
            narrow
        );
        assert_eq!(uniform(&mut rng, 5 * MS, 5 * MS), 5 * MS);
        // One whole millisecond fits (4.5 ms rounds up to 5, 5.7 ms down to 5).
        let us = Duration::from_micros;
        assert_eq!(uniform(&mut rng, us(4500), us(5700)), 5 * MS);
    }

    #[test]
    fn retry_count_saturates_instead_of_overflowing() {
        let b = schedule(1, 2.0, 100, Jitter::None);
        let mut delays = b.delays(StdRng::seed_from_u64(0));
        delays.n = u32::MAX;
        assert_eq!(delays.next(), Some(100 * MS));
        assert_eq!(delays.n, u32::MAX);
        assert_eq!(delays.next(), Some(100 * MS));
    }
}
