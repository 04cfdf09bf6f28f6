//! Timing: a stopwatch, `timed(..)`, and a latency summary.
//!
//! Everything here reads `tokio::time::Instant`, not `std::time::Instant`.
//! Under `#[tokio::test(start_paused = true)]` the tokio clock only moves when
//! the test advances it (or the runtime auto-advances to the next timer), so
//! a paused-clock test sees *exact* durations: a fake operation that sleeps
//! 100 ms measures 100 ms, not 100.07 ms. `std::time::Instant` would keep
//! ticking in real time and make such assertions flaky.
//!
//! [`LatencyRecorder`] wraps an HDR histogram: recording is O(1) and memory
//! is fixed (a few tens of KiB) whatever the sample count, and percentiles
//! stay within 0.1% relative error. The Python seed computes means only,
//! which hide exactly the tail a user feels.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// Measures elapsed time on the tokio clock.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    started: Instant,
}

impl Stopwatch {
    /// Starts a stopwatch now.
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    /// Time since [`Stopwatch::start`].
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The instant the stopwatch was started.
    pub fn started(&self) -> Instant {
        self.started
    }
}

/// Awaits `fut` and returns its output together with how long it took.
///
/// The `label` is logged at `debug` level with the duration, so
/// `RUST_LOG=debug` shows every timed step without extra code in the caller.
pub async fn timed<F: Future>(label: &str, fut: F) -> (F::Output, Duration) {
    let watch = Stopwatch::start();
    let output = fut.await;
    let elapsed = watch.elapsed();
    tracing::debug!(label, elapsed_ms = elapsed.as_secs_f64() * 1e3, "timed");
    (output, elapsed)
}

/// The largest latency recorded exactly: one hour. Longer samples are
/// clamped to it (and still counted), so recording never fails.
const MAX_TRACKED_NANOS: u64 = 3_600 * 1_000_000_000;

/// Collects latency samples into an HDR histogram (nanosecond resolution,
/// three significant digits).
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts (low >= 1,
        // high >= 2 * low, sigfig <= 5), so this cannot fail.
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKED_NANOS, 3)
            .expect("constant histogram bounds are valid");
        Self { histogram }
    }

    /// Records one sample.
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.histogram
            .saturating_record(nanos.clamp(1, MAX_TRACKED_NANOS));
    }

    /// Adds every sample of `other` (for per-task recorders merged at the end).
    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Both histograms have the same bounds, so adding cannot go out of range.
        self.histogram
            .add(&other.histogram)
            .expect("recorders share bounds");
    }

    /// Number of samples recorded.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// Count, mean, p50, p90, p99 and max of what was recorded.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        // HDR buckets a value with others within 0.1%; report the middle of
        // the bucket rather than its top edge, so 2 ms reads 2.000, not 2.001.
        let mid = |v: u64| Duration::from_nanos(h.median_equivalent(v));
        let at = |q: f64| mid(h.value_at_quantile(q));
        LatencySummary {
            count: h.len(),
            mean: Duration::from_nanos(h.mean().round() as u64),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: mid(h.max()),
        }
    }
}

/// A latency distribution in the few numbers people compare.
///
/// Prints as a one-line table row (see [`LatencySummary::HEADER`]) and
/// serialises to JSON with every duration in milliseconds:
/// `{"count":100,"mean_ms":1.2,"p50_ms":1.1,"p90_ms":1.9,"p99_ms":3.0,"max_ms":4.2}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Arithmetic mean.
    #[serde(rename = "mean_ms", serialize_with = "as_millis")]
    pub mean: Duration,
    /// Median.
    #[serde(rename = "p50_ms", serialize_with = "as_millis")]
    pub p50: Duration,
    /// 90th percentile.
    #[serde(rename = "p90_ms", serialize_with = "as_millis")]
    pub p90: Duration,
    /// 99th percentile.
    #[serde(rename = "p99_ms", serialize_with = "as_millis")]
    pub p99: Duration,
    /// Largest sample.
    #[serde(rename = "max_ms", serialize_with = "as_millis")]
    pub max: Duration,
}

impl LatencySummary {
    /// Column titles matching the `Display` row.
    pub const HEADER: &'static str =
        "    count    mean ms     p50 ms     p90 ms     p99 ms     max ms";

    /// The summary of a slice of samples (convenience for small sets).
    pub fn from_samples(samples: &[Duration]) -> Self {
        let mut recorder = LatencyRecorder::new();
        for sample in samples {
            recorder.record(*sample);
        }
        recorder.summary()
    }
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "{:>9} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
            self.count,
            ms(self.mean),
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Milliseconds as a float rounded to the microsecond: readable in JSON and
/// precise enough for any latency this workspace measures.
fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}
