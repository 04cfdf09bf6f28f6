//! End-to-end runs of the database examples (`connection-pool`,
//! `async-cache`) as a user runs them: the embedded SQLite default, the
//! `--json` summary, bad input, and PostgreSQL when `DATABASE_URL` is set.

use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn json_line(stdout: &str) -> serde_json::Value {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "--json prints exactly one line:\n{stdout}");
    serde_json::from_str(lines[0]).expect("the line is JSON")
}

fn assert_clean_failure(out: &e2e::Output, needle: &str) {
    assert_ne!(out.code, Some(0), "expected failure:\n{}", out.stderr);
    assert!(
        out.stderr.contains(needle),
        "stderr lacks {needle:?}:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// No arguments: the SQLite demo runs, shows live stats and closes cleanly.
#[tokio::test]
async fn connection_pool_demo_runs_on_sqlite_and_closes_every_connection() {
    let out = e2e::run("connection-pool", &[], LIMIT).await.expect("ran");
    out.assert_code(0);
    for needle in [
        "(seed 6): SQLite file",
        "(WAL)",
        "in use",
        "done: 100 requests ok, 0 failed, 0 skipped",
        "0 still in use",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle:?}:\n{}",
            out.stdout
        );
    }
}

/// `--json`: one parseable line whose counts add up.
#[tokio::test]
async fn connection_pool_json_summary_accounts_for_every_request() {
    let args = [
        "--json",
        "--workers",
        "12",
        "--requests",
        "5",
        "--size",
        "2",
        "--max-overflow",
        "2",
        "--hold-ms",
        "2",
    ];
    let out = e2e::run("connection-pool", &args, LIMIT)
        .await
        .expect("ran");
    out.assert_code(0);
    let json = json_line(&out.stdout);
    assert_eq!(json["backend"], "sqlite");
    assert_eq!(json["ok"], 60);
    assert_eq!(
        (json["failed"].as_u64(), json["skipped"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(json["pool"]["in_use"], 0);
    assert!(json["pool"]["created"].as_u64().expect("created") <= 4);
    assert_eq!(json["connections_created"], json["connections_closed"]);
    assert_eq!(json["close"]["still_in_use"], 0);
    for key in ["count", "p50_ms", "p99_ms"] {
        assert!(json["latency"][key].is_number(), "latency.{key}");
    }
}

/// Bad input: clap rejects zero sizes (exit 2); a non-PostgreSQL URL and an
/// unreachable server fail with one clear line (exit 1).
#[tokio::test]
async fn connection_pool_rejects_bad_input_with_one_clear_line() {
    let out = e2e::run("connection-pool", &["--size", "0"], LIMIT)
        .await
        .expect("ran");
    assert_eq!(out.code, Some(2));
    assert_clean_failure(&out, "--size");

    let out = e2e::run("connection-pool", &["--database-url", "mysql://x"], LIMIT)
        .await
        .expect("ran");
    assert_eq!(out.code, Some(1));
    assert_clean_failure(&out, "unsupported --database-url");

    // Port 1 on loopback: nothing listens, the connect is refused at once.
    let args = [
        "--database-url",
        "postgres://postgres@127.0.0.1:1/test",
        "--acquire-timeout-ms",
        "5000",
    ];
    let out = e2e::run("connection-pool", &args, LIMIT)
        .await
        .expect("ran");
    assert_eq!(out.code, Some(1));
    assert_clean_failure(&out, "error: open the pool's connections");
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1
    );
}

/// No arguments: the cache demo shows both phases and a real hit ratio.
#[tokio::test]
async fn async_cache_demo_shows_hits_and_the_latency_difference() {
    let out = e2e::run("async-cache", &[], LIMIT).await.expect("ran");
    out.assert_code(0);
    for needle in [
        "(seed 12)",
        "direct (pool + SELECT): 5000 ok",
        "through the cache: 5000 ok",
        "hit ratio",
        "lower through the cache",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle:?}:\n{}",
            out.stdout
        );
    }
}

/// `--json`: counters that agree with each other.
#[tokio::test]
async fn async_cache_json_summary_has_consistent_counters() {
    let args = [
        "--json",
        "--requests",
        "2000",
        "--keys",
        "50",
        "--capacity",
        "50",
        "--workers",
        "8",
    ];
    let out = e2e::run("async-cache", &args, LIMIT).await.expect("ran");
    out.assert_code(0);
    let json = json_line(&out.stdout);
    let cache = &json["cache"];
    let (hits, misses) = (
        cache["hits"].as_u64().expect("hits"),
        cache["misses"].as_u64().expect("misses"),
    );
    assert_eq!(hits + misses, 2000);
    // Every key fits: each is loaded at most once, so at most 50 loads.
    assert!(cache["loads"].as_u64().expect("loads") <= 50, "{cache}");
    assert_eq!(cache["evictions"], 0);
    assert_eq!(json["cached"]["ok"], 2000);
    assert_eq!(json["direct"]["ok"], 2000);
    assert!(json["hit_ratio"].as_f64().expect("ratio") > 0.9);
}

/// Bad input for the cache demo.
#[tokio::test]
async fn async_cache_rejects_zero_capacity_and_workers() {
    for args in [["--capacity", "0"], ["--workers", "0"]] {
        let out = e2e::run("async-cache", &args, LIMIT).await.expect("ran");
        assert_eq!(out.code, Some(2), "{args:?}");
        assert_clean_failure(&out, args[0]);
    }
}

/// Both demos against PostgreSQL.
#[tokio::test]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn both_demos_run_on_postgres() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL is set");
    let out = e2e::run(
        "connection-pool",
        &["--json", "--database-url", &url],
        LIMIT,
    )
    .await
    .expect("ran");
    out.assert_code(0);
    let json = json_line(&out.stdout);
    assert_eq!(
        (json["backend"].as_str(), json["ok"].as_u64()),
        (Some("postgres"), Some(100))
    );

    let out = e2e::run(
        "async-cache",
        &["--json", "--database-url", &url, "--requests", "1000"],
        LIMIT,
    )
    .await
    .expect("ran");
    out.assert_code(0);
    let json = json_line(&out.stdout);
    assert_eq!(
        (json["backend"].as_str(), json["cached"]["ok"].as_u64()),
        (Some("postgres"), Some(1000))
    );
}

/// SIGTERM mid-run: the workers stop between requests, the pool closes,
/// and the summary accounts for the skipped requests.
#[cfg(unix)]
#[tokio::test]
async fn connection_pool_stops_cleanly_on_sigterm() {
    let args = [
        "--workers",
        "4",
        "--requests",
        "100000",
        "--hold-ms",
        "5",
        "--size",
        "2",
    ];
    let mut running = e2e::spawn("connection-pool", &args).expect("spawned");
    running
        .wait_for_line("in use", LIMIT)
        .await
        .expect("live stats");
    running.sigterm().expect("signalled");
    let out = running.wait(LIMIT).await.expect("exited");
    out.assert_code(0);
    assert!(out.stdout.contains("skipped"), "{}", out.stdout);
    assert!(out.stdout.contains("0 still in use"), "{}", out.stdout);
}
