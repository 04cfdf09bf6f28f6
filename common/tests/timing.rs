//! The timing helpers measure the tokio clock exactly under a paused runtime.

use std::time::Duration;

use common::{LatencyRecorder, LatencySummary, Stopwatch, timed};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `timed` reports exactly the virtual time the future slept.
#[tokio::test(start_paused = true)]
async fn timed_measures_virtual_time_exactly() {
    let (value, elapsed) = timed("sleep", async {
        tokio::time::sleep(ms(250)).await;
        7
    })
    .await;
    assert_eq!(value, 7);
    assert_eq!(elapsed, ms(250));
}

/// A stopwatch moves only when the paused clock is advanced.
#[tokio::test(start_paused = true)]
async fn stopwatch_follows_advance() {
    let watch = Stopwatch::start();
    assert_eq!(watch.elapsed(), Duration::ZERO);
    tokio::time::advance(ms(1500)).await;
    assert_eq!(watch.elapsed(), ms(1500));
}

/// Percentiles of 1..=100 ms land on the expected samples (within HDR's
/// 0.1% precision).
#[test]
fn summary_percentiles_of_a_uniform_set() {
    let samples: Vec<_> = (1..=100).map(ms).collect();
    let s = LatencySummary::from_samples(&samples);
    let close = |d: Duration, want: u64| {
        let got = d.as_secs_f64() * 1e3;
        assert!(
            (got - want as f64).abs() <= want as f64 * 0.001,
            "{got} != {want}"
        );
    };
    assert_eq!(s.count, 100);
    close(s.p50, 50);
    close(s.p90, 90);
    close(s.p99, 99);
    close(s.max, 100);
    let mean_ms = s.mean.as_secs_f64() * 1e3;
    assert!((mean_ms - 50.5).abs() < 0.05, "mean {mean_ms}");
}

/// Merging two recorders is the same as recording everything in one.
#[test]
fn merged_recorders_equal_one_recorder() {
    let mut a = LatencyRecorder::new();
    let mut b = LatencyRecorder::new();
    let mut all = LatencyRecorder::new();
    for i in 1..=1000u64 {
        let d = Duration::from_micros(i * 37);
        if i % 2 == 0 { &mut a } else { &mut b }.record(d);
        all.record(d);
    }
    a.merge(&b);
    assert_eq!(a.summary(), all.summary());
    assert_eq!(a.len(), 1000);
}

/// An empty recorder summarises to zeros rather than panicking.
#[test]
fn empty_summary_is_zero() {
    let s = LatencyRecorder::new().summary();
    assert_eq!(s, LatencySummary::default());
    assert_eq!(s.count, 0);
}

/// JSON uses milliseconds with fixed field names.
#[test]
fn summary_serialises_in_milliseconds() {
    let s = LatencySummary::from_samples(&[ms(2), ms(2), ms(2)]);
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["count"], 3);
    assert_eq!(json["p50_ms"], 2.0);
    assert_eq!(json["max_ms"], 2.0);
    let line = s.to_string();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        ["3", "2.000", "2.000", "2.000", "2.000", "2.000"]
    );
}
