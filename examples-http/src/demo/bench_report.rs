//! Demo support for `benchmark`: the printed tables and the error verdict.

use common::LatencySummary;

use crate::bench::{ErrorKinds, OpenLoopRun, SweepConfig, SweepPoint, error_rate};

/// Prints the sweep table.
pub fn print_sweep(target: &str, config: &SweepConfig, points: &[SweepPoint]) {
    println!(
        "target: {target}; {} requests x {} runs per setting, after {} warm-up\n",
        config.requests, config.rounds, config.warmup
    );
    println!(
        "{:>6} {:>11} {:>8} {:>6} {:>7}{}",
        "conc",
        "ok req/s",
        "speedup",
        "ideal",
        "errors",
        LatencySummary::HEADER
    );
    for p in points {
        println!(
            "{:>6} {:>11.1} {:>7.2}x {:>5.0}x {:>7}{}",
            p.concurrency, p.throughput_per_s, p.speedup, p.ideal_speedup, p.errors, p.latency
        );
    }
}

/// Prints the open-loop result.
pub fn print_open_loop(target: &str, max_in_flight: usize, run: &OpenLoopRun) {
    println!(
        "open loop: {} requests at {} req/s, at most {max_in_flight} in flight ({target})",
        run.requests, run.rate_per_s
    );
    println!(
        "achieved {:.1} ok req/s, {} errors, {} requests sent late (> 1 ms)\n",
        run.achieved_per_s, run.errors, run.late_starts
    );
    println!("{:<28}{}", "latency measured from", LatencySummary::HEADER);
    println!("{:<28}{}", "intended start (response)", run.response);
    println!("{:<28}{}", "actual send (service)", run.service);
    println!(
        "\nA closed-loop tool reports the second row; users arriving on schedule see the first."
    );
}

/// Errors over all sweep points, by kind.
pub fn sweep_errors(points: &[SweepPoint]) -> (u64, ErrorKinds) {
    let requests = points.iter().map(|p| p.requests).sum();
    let mut kinds = ErrorKinds::default();
    for p in points {
        for (kind, n) in &p.error_kinds.0 {
            *kinds.0.entry(kind.clone()).or_default() += n;
        }
    }
    (requests, kinds)
}

/// The failure line when the error rate passes `max`, else None.
pub fn verdict(requests: u64, kinds: &ErrorKinds, max: f64) -> Option<String> {
    let errors = kinds.total();
    let rate = error_rate(errors, requests);
    (rate > max).then(|| {
        let kinds: Vec<String> = kinds.0.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!(
            "error rate {:.1}% ({errors} of {requests}: {}) is above --max-error-rate {max}",
            rate * 100.0,
            kinds.join(", ")
        )
    })
}
