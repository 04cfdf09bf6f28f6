//! What `priority-queue` prints: argument parsers, the story on stdout, the
//! `--json` line, and the `--bench` table.

use std::time::Duration;

use common::LatencySummary;
use examples_queue::bench::{self, Contender, Shape};
use examples_queue::processor::{Config, LEVELS, Report, SimulatedWork, Snapshot};
use serde_json::json;

use crate::Args;

/// `--error-rate`: a probability in [0, 1].
pub(crate) fn probability(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is outside 0..=1"))
    }
}

/// `--processing-ms`: "MIN-MAX" or a single value, MIN <= MAX, at most an hour.
pub(crate) fn ms_range(text: &str) -> Result<(u64, u64), String> {
    let parse = |part: &str| {
        part.trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms <= 3_600_000)
            .ok_or_else(|| format!("{part:?} is not a whole number of ms (at most 3600000)"))
    };
    let (min, max) = match text.split_once('-') {
        Some((min, max)) => (parse(min)?, parse(max)?),
        None => (parse(text)?, parse(text)?),
    };
    if min > max {
        return Err(format!("the minimum {min} is above the maximum {max}"));
    }
    Ok((min, max))
}

pub(crate) fn banner(config: &Config, work: &SimulatedWork) {
    let ms = |d: &Duration| d.as_millis();
    let aging = config.aging.map_or("off".to_owned(), |step| {
        format!("one level per {} ms", step.as_millis())
    });
    println!(
        "priority-queue: {} producers, {} consumers, {} tasks, capacity {}, batch {}",
        config.producers, config.consumers, config.tasks, config.capacity, config.batch
    );
    println!(
        "  processing {}-{} ms, error rate {:.0}%, up to {} retries, ageing {aging}",
        ms(work.processing.start()),
        ms(work.processing.end()),
        work.error_rate * 100.0,
        config.max_retries
    );
    println!();
    println!(
        "{:>7} {:>27} {:>9} {:>8} {:>9} {:>6} {:>7} {:>5} {:>9} {:>9}",
        "time",
        "depth urgent/high/norm/low",
        "in flight",
        "blocked",
        "completed",
        "failed",
        "retried",
        "dead",
        "wait p50",
        "wait p99"
    );
}

pub(crate) fn snapshot(s: &Snapshot) {
    let depth = |level: usize| s.queue.depths.get(level).copied().unwrap_or(0);
    let depths = format!("{}/{}/{}/{}", depth(0), depth(1), depth(2), depth(3));
    let c = s.counts;
    println!(
        "{:>6.2}s {depths:>27} {:>9} {:>8} {:>9} {:>6} {:>7} {:>5} {:>6.1} ms {:>6.1} ms",
        s.elapsed.as_secs_f64(),
        s.queue.in_flight,
        s.queue.waiting_producers,
        c.completed,
        c.failed,
        c.retried,
        c.dead_lettered,
        millis(s.wait.p50),
        millis(s.wait.p99),
    );
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn report(report: &Report) {
    let c = report.counts;
    println!();
    if report.interrupted {
        println!("Interrupted: production stopped early; every accepted task was drained.");
    }
    let verdict = if report.invariant_holds() {
        "holds"
    } else {
        "VIOLATED"
    };
    println!(
        "produced {} = completed {} + dead-lettered {}: {verdict} (left queued {}, in flight {})",
        c.produced, c.completed, c.dead_lettered, report.left_queued, report.left_in_flight
    );
    println!(
        "failed attempts {}, retried {}; {:.2} s, {:.0} tasks/s",
        c.failed,
        c.retried,
        report.elapsed.as_secs_f64(),
        c.completed as f64 / report.elapsed.as_secs_f64().max(1e-9)
    );
    println!();
    println!("queue wait by priority (ms; a retried task counts once per attempt)");
    println!("{:<8}{}", "", LatencySummary::HEADER);
    for (name, summary) in LEVELS.iter().zip(&report.wait_by_level) {
        println!("{name:<8}{summary}");
    }
    println!("{:<8}{}", "all", report.wait);
    if !report.dead_letters.is_empty() {
        println!();
        println!("dead letters ({}):", report.dead_letters.len());
        for letter in report.dead_letters.iter().take(10) {
            let t = &letter.task;
            let level = LEVELS[usize::from(t.level)];
            println!(
                "  task {} (producer {}, {level}) after {} attempts: {}",
                t.id, t.producer, t.failures, letter.error
            );
        }
        if report.dead_letters.len() > 10 {
            println!(
                "  ... and {} more (all in --json)",
                report.dead_letters.len() - 10
            );
        }
    }
}

pub(crate) fn report_json(report: &Report) -> anyhow::Result<()> {
    let by_level: serde_json::Map<_, _> = LEVELS
        .iter()
        .zip(&report.wait_by_level)
        .map(|(name, summary)| ((*name).to_owned(), json!(summary)))
        .collect();
    let line = json!({
        "mode": "run",
        "produced": report.counts.produced,
        "completed": report.counts.completed,
        "failed": report.counts.failed,
        "retried": report.counts.retried,
        "dead_lettered": report.counts.dead_lettered,
        "left_queued": report.left_queued,
        "left_in_flight": report.left_in_flight,
        "invariant_holds": report.invariant_holds(),
        "interrupted": report.interrupted,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "tasks_per_sec": report.counts.completed as f64 / report.elapsed.as_secs_f64().max(1e-9),
        "wait": report.wait,
        "wait_by_level": by_level,
        "dead_letters": report.dead_letters,
    });
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}

pub(crate) async fn bench(args: &Args) -> anyhow::Result<()> {
    let shape = Shape {
        producers: args.producers.into(),
        consumers: args.consumers.into(),
        tasks: args.tasks.unwrap_or(1_000_000),
        capacity: args.capacity as usize,
        batch: if args.batch > 1 {
            args.batch as usize
        } else {
            64.min(args.capacity as usize)
        },
    };
    if !args.output.json {
        println!(
            "bench: {} producers, {} consumers, {} tasks, capacity {}, batch {}, no processing time; median of {} runs",
            shape.producers, shape.consumers, shape.tasks, shape.capacity, shape.batch, args.runs
        );
        println!(
            "{:<38} {:>14}   runs (tasks/s)",
            "contender", "median tasks/s"
        );
    }
    let mut results = Vec::new();
    for contender in Contender::ALL {
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            runs.push(bench::run_once(contender, shape).await?);
        }
        let rate = |d: Duration| shape.tasks as f64 / d.as_secs_f64().max(1e-9);
        let median = rate(bench::median(runs.clone()));
        let each: Vec<f64> = runs.iter().map(|d| rate(*d).round()).collect();
        if !args.output.json {
            let listed: Vec<String> = each.iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "{:<38} {median:>14.0}   {}",
                contender.label(),
                listed.join(", ")
            );
        }
        results.push(json!({"contender": contender, "median_tasks_per_sec": median.round(), "runs_tasks_per_sec": each}));
    }
    if args.output.json {
        println!(
            "{}",
            json!({"mode": "bench", "shape": shape, "runs": args.runs, "results": results})
        );
    }
    Ok(())
}
