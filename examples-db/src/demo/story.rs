//! Demo support: the human story the two binaries print (not under
//! `--json`), and the figures of their envelope.

use common::{LatencySummary, Report};
use serde_json::json;

use std::time::Duration;

use super::db::Database;
use super::workload::{LookupReport, WorkloadReport};
use crate::cache::CacheStats;
use crate::pool::{CloseReport, PoolStats};

/// `connection-pool`'s opening lines, once the table exists.
pub fn pool_opening(db: &Database, rows: i64, concurrency: usize, requests: usize, hold: Duration) {
    let config = db.pool.config();
    println!("connection-pool (seed 6): {}", db.label);
    println!(
        "pool: size {} + overflow {}, acquire timeout {:?}",
        config.size, config.max_overflow, config.acquire_timeout
    );
    println!(
        "opened {} connections; table {}: {rows} rows",
        config.size,
        db.table.name()
    );
    println!(
        "{concurrency} workers, {requests} requests (SELECT + UPDATE, holding the connection {hold:?})"
    );
}

/// What `connection-pool` ran, as the envelope's figures (failed if any
/// request failed), printed first as its closing lines when `story`.
pub fn pool_report(
    db: &Database,
    concurrency: usize,
    report: &WorkloadReport,
    [before_close, after]: [PoolStats; 2],
    close: CloseReport,
    story: bool,
) -> Report {
    if story {
        pool_summary(report, &before_close, &close, &after);
    }
    let (ok, failed) = (report.ok, report.failed);
    let failure =
        (failed > 0).then(|| format!("{failed} of {} requests failed (see the log)", ok + failed));
    Report::ok()
        .figures(json!({
            "backend": db.backend, "concurrency": concurrency, "requests": ok + failed + report.skipped,
            "requests_ok": ok, "requests_failed": failed, "requests_skipped": report.skipped,
            "run_s": report.elapsed_s, "requests_per_s": ok as f64 / report.elapsed_s.max(1e-9),
            "latency": report.latency, "pool": before_close, "close": close,
            "connections_created": after.created, "connections_closed": after.closed,
        }))
        .fail_if(failure)
}

/// `connection-pool`'s closing lines: the requests, their latency, the
/// acquire waits and what the pool opened and closed.
fn pool_summary(
    report: &WorkloadReport,
    before_close: &PoolStats,
    close: &CloseReport,
    after: &PoolStats,
) {
    let (ok, failed, skipped, secs) = (report.ok, report.failed, report.skipped, report.elapsed_s);
    let rate = ok as f64 / secs.max(1e-9);
    println!(
        "done: {ok} requests ok, {failed} failed, {skipped} skipped in {secs:.2} s ({rate:.0} requests/s)"
    );
    let header = LatencySummary::HEADER;
    println!(
        "request latency (acquire + SELECT + UPDATE + hold):\n{header}\n{}",
        report.latency
    );
    println!("acquire wait:\n{header}\n{}", before_close.wait);
    println!(
        "pool: created {}, closed {} before shutdown (overflow returned), health-check failures {}, timeouts {}",
        before_close.created,
        before_close.closed,
        before_close.health_check_failures,
        before_close.timeouts
    );
    println!(
        "closed: {} idle connections, {} still in use; created {} = closed {}",
        close.closed_idle, close.still_in_use, after.created, after.closed
    );
}

/// `async-cache`'s opening lines.
pub fn cache_opening(db: &Database, keys: i64, lookups: usize, concurrency: usize, cache: &str) {
    println!(
        "async-cache (seed 12): read-through cache over {}, {keys} rows",
        db.backend
    );
    println!("{lookups} lookups by {concurrency} workers, skewed to low ids; {cache}");
}

/// What `async-cache` ran, both phases, as the envelope's figures (failed
/// if any lookup failed), printed first as its closing lines when `story`.
pub fn cache_report(
    db: &Database,
    concurrency: usize,
    [direct, cached]: [LookupReport; 2],
    stats: CacheStats,
    story: bool,
) -> Report {
    let speedup = direct.latency.mean.as_secs_f64() / cached.latency.mean.as_secs_f64().max(1e-12);
    if story {
        cache_summary(&direct, &cached, &stats, speedup);
    }
    let failed = direct.failed + cached.failed;
    let lookups = direct.ok + direct.failed + direct.skipped;
    Report::ok()
        .figures(json!({
            "backend": db.backend, "lookups": lookups, "concurrency": concurrency,
            "direct": direct, "cached": cached, "hit_ratio": stats.hit_ratio(), "cache": stats,
            "mean_speedup": speedup,
        }))
        .fail_if((failed > 0).then(|| format!("{failed} lookups failed (see the log)")))
}

/// `async-cache`'s closing lines: both phases, the cache's counters and
/// the speed-up.
fn cache_summary(direct: &LookupReport, cached: &LookupReport, stats: &CacheStats, speedup: f64) {
    for (name, report) in [
        ("direct (pool + SELECT)", direct),
        ("through the cache", cached),
    ] {
        let (ok, failed, skipped, secs) =
            (report.ok, report.failed, report.skipped, report.elapsed_s);
        let rate = ok as f64 / secs.max(1e-9);
        println!(
            "{name}: {ok} ok, {failed} failed, {skipped} skipped in {secs:.3} s ({rate:.0} lookups/s)"
        );
        println!("{}\n{}", LatencySummary::HEADER, report.latency);
    }
    println!(
        "cache: hit ratio {:.1}% ({} hits, {} misses), {} loads ({} misses coalesced into another's load), {} evictions, {} entries",
        stats.hit_ratio() * 100.0,
        stats.hits,
        stats.misses,
        stats.loads,
        stats.coalesced,
        stats.evictions,
        stats.len
    );
    println!("mean lookup latency: {speedup:.1}x lower through the cache");
}
