//! Demo support: the human story the two binaries print at the end of a
//! run (not under `--json`, where the same figures go in the envelope).

use common::LatencySummary;

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

/// `connection-pool`'s closing lines: the requests, their latency, the
/// acquire waits and what the pool opened and closed.
pub fn pool_summary(
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

/// `async-cache`'s closing lines: both phases, the cache's counters and
/// the speed-up.
pub fn cache_summary(
    direct: &LookupReport,
    cached: &LookupReport,
    stats: &CacheStats,
    speedup: f64,
) {
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
