//! What the in-process demo prints: the banner, one monitor row per tick,
//! the final report, and the same report as `--json` figures. Also the
//! `--processing` range parser. Demo support, not a pattern.

use std::ops::RangeInclusive;
use std::time::Duration;

use common::LatencySummary;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::SimulatedWork;
use crate::processor::{self, Config, LEVELS, Report, Snapshot};

/// The longest `--processing` time accepted.
pub const MAX_PROCESSING: Duration = Duration::from_secs(3600);

/// `--processing`: `MIN-MAX` or one duration, each with a unit (`2ms-20ms`,
/// `5ms`), MIN <= MAX <= 1h.
pub fn processing(text: &str) -> Result<RangeInclusive<Duration>, String> {
    let parse = |part: &str| {
        common::args::parse_duration(part).and_then(|d| {
            if d <= MAX_PROCESSING {
                Ok(d)
            } else {
                Err(format!("{part} is out of range: at most 1h"))
            }
        })
    };
    let (min, max) = match text.split_once('-') {
        Some((min, max)) => (parse(min)?, parse(max)?),
        None => (parse(text)?, parse(text)?),
    };
    if min > max {
        return Err(format!("the minimum {min:?} is above the maximum {max:?}"));
    }
    Ok(min..=max)
}

/// Runs the in-process pipeline until done or `stop`, printing the story
/// unless `quiet`, and turns its [`Report`] into the harness's report: ok
/// when every task completed (a dead letter is a failed unit of work) and,
/// after a stop, when the drain lost nothing.
pub async fn run(
    config: Config,
    work: SimulatedWork,
    quiet: bool,
    stop: CancellationToken,
) -> anyhow::Result<common::Report> {
    if !quiet {
        banner(&config, &work);
    }
    let on_snapshot = move |snapshot: &Snapshot| {
        if !quiet {
            self::snapshot(snapshot);
        }
    };
    let report = processor::run(config, work, on_snapshot, stop.cancelled_owned()).await?;
    if !quiet {
        print(&report);
    }
    let c = report.counts;
    let failure = if !report.invariant_holds() {
        Some(format!(
            "invariant violated: produced {} != completed {} + dead-lettered {} + queued {} + in flight {}",
            c.produced, c.completed, c.dead_lettered, report.left_queued, report.left_in_flight
        ))
    } else if !report.all_done() {
        Some(format!(
            "the stop lost work: {} tasks left queued and {} in flight after the drain timeout",
            report.left_queued, report.left_in_flight
        ))
    } else if c.dead_lettered > 0 {
        Some(format!(
            "{} of {} tasks were dead-lettered",
            c.dead_lettered, c.produced
        ))
    } else {
        None
    };
    Ok(common::Report::ok()
        .figures(figures(&report))
        .fail_if(failure))
}

fn banner(config: &Config, work: &SimulatedWork) {
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

fn snapshot(s: &Snapshot) {
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

fn print(report: &Report) {
    let c = report.counts;
    println!();
    match (report.interrupted, report.all_done()) {
        (true, true) => {
            println!("Interrupted: production stopped early; every accepted task was drained.")
        }
        (true, false) => {
            println!("Interrupted: production stopped early; the drain timed out with work left.")
        }
        (false, _) => {}
    }
    let verdict = if report.all_done() {
        "holds"
    } else if report.invariant_holds() {
        "holds, with work left"
    } else {
        "VIOLATED"
    };
    println!(
        "produced {} = completed {} + dead-lettered {} + queued {} + in flight {}: {verdict}",
        c.produced, c.completed, c.dead_lettered, report.left_queued, report.left_in_flight
    );
    println!(
        "failed attempts {}, retried {}; {:.2} s, {:.0} tasks/s",
        c.failed,
        c.retried,
        report.elapsed.as_secs_f64(),
        tasks_per_s(report)
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
            let level = LEVELS.get(usize::from(t.level)).unwrap_or(&"?");
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

fn tasks_per_s(report: &Report) -> f64 {
    report.counts.completed as f64 / report.elapsed.as_secs_f64().max(1e-9)
}

/// The report as envelope figures.
pub fn figures(report: &Report) -> serde_json::Value {
    let by_level: serde_json::Map<_, _> = LEVELS
        .iter()
        .zip(&report.wait_by_level)
        .map(|(name, summary)| ((*name).to_owned(), json!(summary)))
        .collect();
    json!({
        "mode": "run",
        "produced": report.counts.produced,
        "completed": report.counts.completed,
        "failed": report.counts.failed,
        "retried": report.counts.retried,
        "dead_lettered": report.counts.dead_lettered,
        "left_queued": report.left_queued,
        "left_in_flight": report.left_in_flight,
        "invariant_holds": report.invariant_holds(),
        "callback_panics": report.callback_panics,
        "tasks_per_s": tasks_per_s(report),
        "wait": report.wait,
        "wait_by_level": by_level,
        "dead_letters": report.dead_letters,
    })
}
