//! The `circuit-breaker` demo: concurrent callers share one breaker in
//! front of `/flaky`, whose failure rate changes phase by phase (healthy,
//! degraded, outage, recovered); the transitions print as they happen.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::breaker::{BreakerConfig, CallError, CircuitBreaker, RateTrip};
use crate::http::{self, HttpError};

/// (name, fail_rate, extra query): the service's health over time.
pub const PHASES: [(&str, f64, &str); 4] = [
    ("healthy", 0.02, ""),
    ("degraded", 0.6, ""),
    ("outage", 0.95, "&hang_rate=0.05&hang_ms=400"),
    ("recovered", 0.0, ""),
];

/// The demo's breaker: timings scale with the phase, so a short run still
/// shows a recovery.
pub fn config(phase: Duration) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: Some(10),
        failure_rate: Some(RateTrip {
            threshold: 0.5,
            window: phase / 2,
            min_calls: 20,
        }),
        cool_down: phase / 5,
        cool_down_growth: 2.0,
        max_cool_down: phase * 2 / 5,
        half_open_probes: 2,
        success_threshold: 3,
        slow_call: Some(Duration::from_millis(250)),
    }
}

/// How the load is shaped.
#[derive(Debug, Clone)]
pub struct Load {
    /// Base URL of the sandbox.
    pub base: String,
    /// Concurrent callers.
    pub concurrency: u32,
    /// Length of each phase.
    pub phase: Duration,
    /// Pause between one caller's calls.
    pub pace: Duration,
    /// Seed for `/flaky`.
    pub seed: u64,
    /// Response-body cap.
    pub max_body: u64,
}

/// What the run saw: per phase `[attempted, ok, failed, spared]`, and the
/// transitions in order.
#[derive(Debug)]
pub struct Outcome {
    /// Per phase: attempted, ok, failed, spared by the open circuit.
    pub counts: Vec<[u64; 4]>,
    /// One JSON object per transition (`at_ms`, `from`, `to`, `trigger`).
    pub transitions: Vec<Value>,
}

/// Runs the phases (or until `stop`), printing transitions with `say`.
pub async fn play(
    breaker: CircuitBreaker<fn(&HttpError) -> bool>,
    client: reqwest::Client,
    load: Load,
    stop: &CancellationToken,
    say: impl Fn(String) + Send + Sync + 'static,
) -> Outcome {
    let started = Instant::now();
    // The hook runs under the breaker's lock: print and keep, nothing slow.
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&timeline);
    breaker.on_transition(move |t| {
        let at = (t.at - started).as_millis() as u64;
        let open_for = t
            .cool_down
            .map(|c| format!(", open for {c:?}"))
            .unwrap_or_default();
        say(format!(
            "  +{at:>5} ms  {:<9} -> {:<9} ({}{open_for})",
            t.from.to_string(),
            t.to.to_string(),
            t.trigger
        ));
        kept.lock().unwrap_or_else(PoisonError::into_inner).push(
            json!({ "at_ms": at, "from": t.from, "to": t.to, "trigger": t.trigger.to_string() }),
        );
    });
    let counts: Arc<[[AtomicU64; 4]; PHASES.len()]> = Arc::new(Default::default());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..load.concurrency {
        let (breaker, client, load, counts) = (
            breaker.clone(),
            client.clone(),
            load.clone(),
            counts.clone(),
        );
        workers.spawn(async move {
            let mut tick = tokio::time::interval(load.pace);
            loop {
                tick.tick().await;
                let phase = (started.elapsed().as_nanos() / load.phase.as_nanos().max(1)) as usize;
                let Some((_, rate, extra)) = PHASES.get(phase) else {
                    return;
                };
                let url = format!(
                    "{}/flaky?fail_rate={rate}&seed={}{extra}",
                    load.base, load.seed
                );
                let slot = match breaker
                    .call(|| http::get_json(&client, &url, load.max_body))
                    .await
                {
                    Ok(_) => 1,
                    Err(CallError::Failed(_)) => 2,
                    Err(CallError::Open(_)) => 3,
                };
                counts[phase][0].fetch_add(1, Relaxed);
                counts[phase][slot].fetch_add(1, Relaxed);
            }
        });
    }
    tokio::select! {
        () = async { while workers.join_next().await.is_some() {} } => {}
        // Dropping the calls mid-flight returns their permits (the guard).
        () = stop.cancelled() => workers.abort_all(),
    }
    let counts = counts
        .iter()
        .map(|phase| phase.each_ref().map(|c| c.load(Relaxed)))
        .collect();
    let transitions = std::mem::take(&mut *timeline.lock().unwrap_or_else(PoisonError::into_inner));
    Outcome {
        counts,
        transitions,
    }
}

/// Prints the per-phase table with `say`; returns it as JSON (`name`,
/// `fail_rate`, `attempted`, `ok`, `failed`, `spared` per phase).
pub fn phase_table(outcome: &Outcome, say: &impl Fn(String)) -> Vec<Value> {
    say(format!(
        "\n{:<14} {:>9} {:>9} {:>6} {:>7} {:>7}",
        "phase", "fail rate", "attempted", "ok", "failed", "spared"
    ));
    let mut phases = Vec::new();
    for ((name, rate, _), [attempted, ok, failed, spared]) in PHASES.iter().zip(&outcome.counts) {
        say(format!(
            "{name:<14} {rate:>9.2} {attempted:>9} {ok:>6} {failed:>7} {spared:>7}"
        ));
        phases.push(json!({ "name": name, "fail_rate": rate, "attempted": attempted, "ok": ok, "failed": failed, "spared": spared }));
    }
    phases
}
