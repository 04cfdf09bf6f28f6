//! `circuit-breaker`: seed Example 14 with concurrent callers against the
//! sandbox's `/flaky` endpoint, whose failure rate changes phase by phase.
//!
//! Prints a timeline of the breaker's transitions as they happen and, per
//! phase, the calls made, failed, and spared by the open circuit. With
//! `--bench` it measures the closed breaker's overhead per call. The pattern
//! lives in `examples_resilience::breaker`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use clap::Parser;
use examples_resilience::bench;
use examples_resilience::breaker::{BreakerConfig, CallError, CircuitBreaker, RateTrip};
use examples_resilience::http::{self, HttpError, Target};
use serde_json::json;
use tokio::time::Instant;

/// A circuit breaker shared by concurrent callers of a flaky HTTP endpoint
/// (ports seed Example 14 of the asyncio cookbook). With no arguments it
/// starts the in-process sandbox and runs four phases: healthy, degraded
/// (60% errors), outage (95% errors and hangs), recovered.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Base URL of a sandbox-compatible server (default: start one in-process).
    #[arg(long)]
    url: Option<String>,
    /// Concurrent callers sharing the breaker.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: u32,
    /// Length of each phase in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    phase_ms: u64,
    /// Pause between one worker's calls in milliseconds (paces the load).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pace_ms: u64,
    /// Seed for `/flaky`.
    #[arg(long, default_value_t = 14)]
    seed: u64,
    /// Measure the closed breaker's overhead (1, 2 and 64 tasks) instead (use --release).
    #[arg(long)]
    bench: bool,
    /// Calls per variant and round in --bench.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1000..))]
    bench_calls: u64,
    #[command(flatten)]
    output: common::OutputArgs,
}

/// (name, fail_rate, extra query): the service's health over time.
const PHASES: [(&str, f64, &str); 4] = [
    ("healthy", 0.02, ""),
    ("degraded", 0.6, ""),
    ("outage", 0.95, "&hang_rate=0.05&hang_ms=400"),
    ("recovered", 0.0, ""),
];

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.output.log_format);
    common::exit_code(run(args, common::shutdown_signal()).await)
}

async fn run(args: Args, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Timings scale with the phase, so a short run still shows a recovery.
    let phase_len = Duration::from_millis(args.phase_ms);
    let config = BreakerConfig {
        consecutive_failures: Some(10),
        failure_rate: Some(RateTrip {
            threshold: 0.5,
            window: phase_len / 2,
            min_calls: 20,
        }),
        cool_down: phase_len / 5,
        cool_down_growth: 2.0,
        max_cool_down: phase_len * 2 / 5,
        half_open_probes: 2,
        success_threshold: 3,
        slow_call: Some(Duration::from_millis(250)),
    };
    let breaker = CircuitBreaker::new(config)?;
    if args.bench {
        let rounds = bench::rounds(3, || async {
            let mut row = Vec::new();
            for tasks in [1, 2, 64] {
                row.push(bench::breaker_closed(&breaker, tasks, args.bench_calls).await);
            }
            row
        })
        .await;
        return bench::report("closed circuit breaker", &rounds, args.output.json);
    }
    let breaker = breaker.with_classifier(HttpError::is_server_fault);
    let client = http::client(Duration::from_millis(300))?;
    let target = Arc::new(Target::start(args.url.as_deref(), &client).await?);
    let started = Instant::now();
    let json = args.output.json;

    // The hook runs under the breaker's lock: print and keep, nothing slow.
    let timeline = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = timeline.clone();
    breaker.on_transition(move |t| {
        let at = (t.at - started).as_millis() as u64;
        let open_for = t
            .cool_down
            .map(|c| format!(", open for {c:?}"))
            .unwrap_or_default();
        if !json {
            println!(
                "  +{at:>5} ms  {:<9} -> {:<9} ({}{open_for})",
                t.from.to_string(),
                t.to.to_string(),
                t.trigger
            );
        }
        // Poisoning needs a panic while holding this lock; none can happen.
        kept.lock().unwrap().push(
            json!({ "at_ms": at, "from": t.from, "to": t.to, "trigger": t.trigger.to_string() }),
        );
    });

    // Per phase: [attempted, ok, failed, spared].
    let counts: Arc<[[AtomicU64; 4]; PHASES.len()]> = Arc::new(Default::default());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.workers {
        let (breaker, client, target, counts) = (
            breaker.clone(),
            client.clone(),
            target.clone(),
            counts.clone(),
        );
        let (pace, seed) = (Duration::from_millis(args.pace_ms), args.seed);
        workers.spawn(async move {
            let mut tick = tokio::time::interval(pace);
            loop {
                tick.tick().await;
                let phase = (started.elapsed().as_nanos() / phase_len.as_nanos()) as usize;
                let Some((_, rate, extra)) = PHASES.get(phase) else {
                    return;
                };
                let url = format!("{}/flaky?fail_rate={rate}&seed={seed}{extra}", target.base);
                let slot = match breaker
                    .call(|| http::get_json(&client, &url, http::DEFAULT_MAX_BODY))
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
    if !json {
        println!(
            "{} workers, one call each every {} ms; phases of {phase_len:?}; timeline:",
            args.workers, args.pace_ms
        );
    }
    tokio::select! {
        () = async { while workers.join_next().await.is_some() {} } => {}
        () = shutdown => { workers.abort_all(); if !json { println!("interrupted: stopping early"); } }
    }

    let (metrics, _) = breaker.metrics();
    let mut phases = Vec::new();
    if !json {
        println!(
            "\n{:<14} {:>9} {:>9} {:>6} {:>7} {:>7}",
            "phase", "fail rate", "attempted", "ok", "failed", "spared"
        );
    }
    for (i, (name, rate, _)) in PHASES.iter().enumerate() {
        let [attempted, ok, failed, spared] = counts[i].each_ref().map(|c| c.load(Relaxed));
        if !json {
            println!("{name:<14} {rate:>9.2} {attempted:>9} {ok:>6} {failed:>7} {spared:>7}");
        }
        phases.push(json!({ "name": name, "fail_rate": rate, "attempted": attempted, "ok": ok, "failed": failed, "spared": spared }));
    }
    // The lock is only taken by the hook, which cannot panic.
    let transitions = std::mem::take(&mut *timeline.lock().unwrap());
    if json {
        println!(
            "{}",
            json!({ "phases": phases, "transitions": transitions, "metrics": metrics })
        );
    } else {
        println!(
            "\nbreaker: {} calls made, {} spared by the open circuit, {} slow, {} transitions",
            metrics.permitted, metrics.rejected, metrics.slow_calls, metrics.transitions
        );
    }
    Ok(())
}
