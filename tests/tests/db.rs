//! End-to-end runs of the database examples (`connection-pool`,
//! `async-cache`) as a user runs them: the embedded SQLite default, the
//! `--json` envelope, `--bench`, SIGINT, bad input, and PostgreSQL when
//! `DATABASE_URL` is set (`cargo test -p e2e --test db -- --ignored needs_postgres`).

use std::time::Duration;

use e2e::exit;

const LIMIT: Duration = Duration::from_secs(60);

/// No arguments: the SQLite demo runs, shows live stats and closes cleanly.
#[tokio::test]
async fn connection_pool_demo_runs_on_sqlite_and_closes_every_connection() {
    let out = e2e::run("connection-pool", &[], LIMIT).await.expect("ran");
    out.assert_code(exit::OK);
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

/// `--json`: one envelope line whose counts add up.
#[tokio::test]
async fn connection_pool_json_envelope_accounts_for_every_request() {
    let args = [
        "--json",
        "--concurrency",
        "12",
        "--count",
        "60",
        "--size",
        "2",
        "--max-overflow",
        "2",
        "--hold",
        "2ms",
    ];
    let out = e2e::run("connection-pool", &args, LIMIT)
        .await
        .expect("ran");
    out.assert_code(exit::OK);
    let json = out.json_envelope("connection-pool");
    assert_eq!(
        (json["seed"].as_u64(), json["ok"].as_bool()),
        (Some(6), Some(true))
    );
    assert_eq!(json["backend"], "sqlite");
    assert_eq!(json["requests_ok"], 60);
    assert_eq!(
        (
            json["requests_failed"].as_u64(),
            json["requests_skipped"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(json["pool"]["in_use"], 0);
    assert!(json["pool"]["created"].as_u64().expect("created") <= 4);
    assert_eq!(json["connections_created"], json["connections_closed"]);
    assert_eq!(json["close"]["still_in_use"], 0);
    for key in ["count", "p50_ms", "p99_ms"] {
        assert!(json["latency"][key].is_number(), "latency.{key}");
    }
    assert!(json["requests_per_s"].as_f64().expect("rate") > 0.0);
}

/// Bad values are usage errors (exit 2) naming the flag; an unreachable
/// server fails every request: one clear line, exit 1.
#[tokio::test]
async fn connection_pool_rejects_bad_input_and_fails_cleanly() {
    for (args, needle) in [
        (&["--size", "0"][..], "--size"),
        (&["--database-url", "mysql://x"], "unsupported database URL"),
        (&["--hold", "20"], "--hold"),
        (&["--timeout", "0s"], "--timeout"),
        (&["--concurrency", "18446744073709551615"], "--concurrency"),
        (&["--runs", "3"], "--bench"),
        (
            &["--bench", "--database-url", "postgres://x@127.0.0.1/db"],
            "cannot be used",
        ),
    ] {
        let out = e2e::run("connection-pool", args, LIMIT).await.expect("ran");
        out.assert_code(exit::USAGE);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }

    // Port 1 on loopback: nothing listens, the connect is refused at once.
    let args = [
        "--database-url",
        "postgres://postgres@127.0.0.1:1/test",
        "--timeout",
        "5s",
        "--json",
    ];
    let out = e2e::run("connection-pool", &args, LIMIT)
        .await
        .expect("ran");
    out.assert_clear_error(exit::FAILED, "open the pool's connections");
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{}",
        out.stderr
    );
    let json = out.json_envelope("connection-pool");
    assert_eq!(json["ok"], false);
    assert!(json["error"].as_str().is_some(), "{json}");
}

/// `--bench`: ours beside deadpool, through the envelope.
#[tokio::test]
async fn connection_pool_bench_reports_ours_beside_deadpool() {
    let args = ["--bench", "--count", "2000", "--runs", "1", "--json"];
    let out = e2e::run("connection-pool", &args, LIMIT)
        .await
        .expect("ran");
    out.assert_code(exit::OK);
    let json = out.json_envelope("connection-pool");
    let cases = json["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 3, "{json}");
    for case in cases {
        for key in [
            "ours_per_s",
            "deadpool_per_s",
            "deadpool_wait_timeout_per_s",
        ] {
            assert!(case[key].as_f64().expect(key) > 0.0, "{case}");
        }
    }
}

/// SIGINT mid-demo and mid-bench: a clean stop, exit 130, a report.
#[tokio::test]
async fn connection_pool_sigint_stops_the_demo_and_the_bench_with_130() {
    let args = [
        "--concurrency",
        "4",
        "--count",
        "1000000",
        "--hold",
        "5ms",
        "--size",
        "2",
    ];
    let mut running = e2e::spawn("connection-pool", &args).expect("spawned");
    running
        .wait_for_line("in use", LIMIT)
        .await
        .expect("live stats");
    running.signal(libc::SIGINT).expect("signalled");
    let out = running.wait(Duration::from_secs(10)).await.expect("exited");
    out.assert_code(exit::INTERRUPTED);
    assert!(out.stdout.contains("skipped"), "{}", out.stdout);
    assert!(out.stdout.contains("0 still in use"), "{}", out.stdout);

    let args = ["--bench", "--count", "1000000000", "--json"];
    let running = e2e::spawn("connection-pool", &args).expect("spawned");
    tokio::time::sleep(Duration::from_millis(500)).await; // let it start
    running.signal(libc::SIGINT).expect("signalled");
    let out = running.wait(Duration::from_secs(10)).await.expect("exited");
    out.assert_code(exit::INTERRUPTED);
    assert_eq!(out.json_envelope("connection-pool")["interrupted"], true);
}

/// No arguments: the cache demo shows both phases and a real hit ratio.
#[tokio::test]
async fn async_cache_demo_shows_hits_and_the_latency_difference() {
    let out = e2e::run("async-cache", &[], LIMIT).await.expect("ran");
    out.assert_code(exit::OK);
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
async fn async_cache_json_envelope_has_consistent_counters() {
    let args = [
        "--json",
        "--count",
        "2000",
        "--keys",
        "50",
        "--capacity",
        "50",
        "--concurrency",
        "8",
        "--ttl",
        "1h",
    ];
    let out = e2e::run("async-cache", &args, LIMIT).await.expect("ran");
    out.assert_code(exit::OK);
    let json = out.json_envelope("async-cache");
    assert_eq!(json["seed"], 12);
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

/// `--bench`: hits per second through the envelope; SIGINT stops it.
#[tokio::test]
async fn async_cache_bench_reports_hits_and_stops_on_sigint() {
    let args = ["--bench", "--count", "20000", "--runs", "1", "--json"];
    let out = e2e::run("async-cache", &args, LIMIT).await.expect("ran");
    out.assert_code(exit::OK);
    let json = out.json_envelope("async-cache");
    let cases = json["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 3, "{json}");
    for case in cases {
        assert!(case["hits_per_s"].as_f64().expect("hits") > 0.0, "{case}");
    }
    assert!(json["floor_lookups_per_s"].as_f64().expect("floor") > 0.0);

    let args = ["--bench", "--count", "1000000000", "--json"];
    let running = e2e::spawn("async-cache", &args).expect("spawned");
    tokio::time::sleep(Duration::from_millis(500)).await; // let it start
    running.signal(libc::SIGINT).expect("signalled");
    let out = running.wait(Duration::from_secs(10)).await.expect("exited");
    out.assert_code(exit::INTERRUPTED);
    assert_eq!(out.json_envelope("async-cache")["interrupted"], true);
}

/// Bad input for the cache demo; an unreachable database exits 1.
#[tokio::test]
async fn async_cache_rejects_bad_values_and_fails_cleanly() {
    for args in [
        ["--capacity", "0"],
        ["--concurrency", "0"],
        ["--ttl", "0s"],
        ["--ttl", "1e19s"],
        ["--count", "1e19"],
    ] {
        let out = e2e::run("async-cache", &args, LIMIT).await.expect("ran");
        out.assert_code(exit::USAGE);
        assert!(out.stderr.contains(args[0]), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    let args = ["--database-url", "postgres://postgres@127.0.0.1:1/test"];
    let out = e2e::run("async-cache", &args, LIMIT).await.expect("ran");
    out.assert_clear_error(exit::FAILED, "open the pool's connections");
}

/// Both demos against PostgreSQL, their connections named.
#[tokio::test]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn both_demos_run_on_postgres_needs_postgres() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL is set");
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}application_name=e2e-db-test");
    let out = e2e::run(
        "connection-pool",
        &["--json", "--database-url", &url],
        LIMIT,
    )
    .await
    .expect("ran");
    out.assert_code(exit::OK);
    let json = out.json_envelope("connection-pool");
    assert_eq!(
        (json["backend"].as_str(), json["requests_ok"].as_u64()),
        (Some("postgres"), Some(100))
    );

    let out = e2e::run(
        "async-cache",
        &["--json", "--database-url", &url, "--count", "1000"],
        LIMIT,
    )
    .await
    .expect("ran");
    out.assert_code(exit::OK);
    let json = out.json_envelope("async-cache");
    assert_eq!(
        (json["backend"].as_str(), json["cached"]["ok"].as_u64()),
        (Some("postgres"), Some(1000))
    );
}
