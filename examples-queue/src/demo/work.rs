//! Demo support: the seed's stand-in for real work, the handler the binary,
//! its `--store` roles and the tests run. Not a pattern: a real handler
//! does I/O; this one sleeps and fails on a seeded schedule.

use std::future::Future;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::processor::{Handler, Task};

/// The seed's stand-in for real work: sleep a time from `processing`, then
/// fail with probability `error_rate`.
///
/// Both draws are a hash of (seed, task id, attempt) rather than a shared
/// RNG, so a given seed fails the same attempts whatever order the consumers
/// happen to run in.
#[derive(Debug, Clone)]
pub struct SimulatedWork {
    /// Processing time range (inclusive); `ZERO..=ZERO` does no sleeping.
    pub processing: RangeInclusive<Duration>,
    /// Probability in `[0, 1]` that an attempt fails.
    pub error_rate: f64,
    /// Seed for the draws.
    pub seed: u64,
}

impl Handler for SimulatedWork {
    fn handle(&self, task: &Task) -> impl Future<Output = anyhow::Result<()>> + Send {
        let key = self.seed
            ^ task.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ u64::from(task.failures) << 56;
        let (lo, hi) = (*self.processing.start(), *self.processing.end());
        let span = hi.saturating_sub(lo);
        let sleep = lo + span.mul_f64(unit(splitmix64(key)));
        let fails = unit(splitmix64(key ^ 0xA5A5_A5A5)) < self.error_rate;
        let attempt = task.failures + 1;
        async move {
            if !sleep.is_zero() {
                tokio::time::sleep(sleep).await;
            }
            anyhow::ensure!(!fails, "simulated processing error (attempt {attempt})");
            Ok(())
        }
    }
}

/// SplitMix64: a fast, well-mixed 64-bit hash.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The top 53 bits as a float in `[0, 1)`.
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
