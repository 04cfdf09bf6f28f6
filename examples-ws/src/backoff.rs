//! Reconnect delays: capped exponential backoff with full jitter.
//!
//! Ports the reconnect schedule of seed Example 4. The Python client sleeps a
//! fixed `reconnect_interval` between attempts, so after a server restart
//! every client comes back in the same instant (a thundering herd) and keeps
//! hammering a server that is down at the same rate. Here attempt `n` waits a
//! uniformly random time in `[0, min(cap, initial * 2^n)]` ("full jitter",
//! from the AWS Architecture Blog post "Exponential Backoff And Jitter"):
//! the expected wait still doubles, but clients spread out over the window.
//!
//! The generator is a seeded [`StdRng`], so a test (or a reader comparing two
//! runs) sees exactly the same schedule for the same seed.
//!
//! Production: `backon` or `backoff` give the same schedule with more knobs;
//! this is the ~60 lines they save you.
//!
//! ```text
//! cargo test -p examples-ws --test client reconnect_delays
//! ```

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The shape of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Upper bound of the first delay's window.
    pub initial: Duration,
    /// No delay ever exceeds this, however many attempts failed.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

/// A seeded full-jitter schedule.
#[derive(Debug)]
pub struct Backoff {
    config: BackoffConfig,
    rng: StdRng,
}

impl Backoff {
    /// A schedule whose jitter comes from `seed`.
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The largest delay attempt `attempt` (0-based) may draw:
    /// `min(max, initial * 2^attempt)`, computed without overflow.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // 2^31 is already far past any sane cap; clamping the exponent keeps
        // checked_mul from overflowing into a panic on attempt 1,000.
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.config
            .initial
            .checked_mul(factor)
            .unwrap_or(self.config.max)
            .min(self.config.max)
    }

    /// The delay before retry number `attempt` (0-based): uniform in
    /// `[0, ceiling(attempt)]`, in whole milliseconds (tokio's timer
    /// resolution, so a sleep lasts exactly the delay drawn).
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.rng.random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ceiling_doubles_then_stays_at_the_cap() {
        let backoff = Backoff::new(
            BackoffConfig {
                initial: ms(100),
                max: ms(1_000),
            },
            1,
        );
        let ceilings: Vec<_> = (0..6).map(|n| backoff.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000)]
        );
        assert_eq!(backoff.ceiling(u32::MAX), ms(1_000));
    }

    #[test]
    fn same_seed_gives_the_same_delays_within_the_window() {
        let config = BackoffConfig {
            initial: ms(100),
            max: ms(1_000),
        };
        let (mut a, mut b) = (Backoff::new(config, 7), Backoff::new(config, 7));
        for attempt in 0..20 {
            let delay = a.delay(attempt);
            assert_eq!(delay, b.delay(attempt));
            assert!(delay <= a.ceiling(attempt), "attempt {attempt}: {delay:?}");
        }
    }
}
