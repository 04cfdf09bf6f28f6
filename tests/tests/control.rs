//! End to end: `semaphore-pool` and `bank-account` (crate examples-control)
//! run the way a user runs them: the demo, `--json`, `--bench`, signals,
//! work that fails, and bad values.

use std::time::{Duration, Instant};

use e2e::{exit, run, spawn};

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn semaphore_pool_demo_serves_twenty_users_with_five_resources() {
    let output = run("semaphore-pool", &[], LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let out = &output.stdout;
    for needle in [
        "20 users, 5 resources",
        "timeline:",
        "R4  |",
        "served 20 of 20, timed out 0, refused (closed) 0, cancelled 0; high-water 5/5; in use now 0",
        "after close(): a late acquire fails at once: pool is closed",
    ] {
        assert!(out.contains(needle), "missing {needle:?}:\n{out}");
    }
}

/// Users that time out are failed units of work: exit 1, with the report.
#[tokio::test]
async fn semaphore_pool_users_timing_out_exit_1_with_the_envelope() {
    // 5 users get a resource for 2 s; the other 15 give up after 50 ms.
    // (With 100 ms holds, a stalled process could see a release before a
    // waiter's timeout, and serve a sixth user.)
    let args = [
        "--timeout",
        "50ms",
        "--hold-min",
        "2s",
        "--hold-max",
        "2s",
        "--json",
    ];
    let output = run("semaphore-pool", &args, LIMIT).await.unwrap();
    output.assert_code(exit::FAILED);
    let summary = output.json_envelope("semaphore-pool");
    assert_eq!(
        (summary["seed"].as_u64(), summary["ok"].as_bool()),
        (Some(8), Some(false))
    );
    assert_eq!(summary["served"], 5);
    assert_eq!(summary["timed_out"], 15);
    assert_eq!(summary["pool"]["high_water"], 5);
    assert_eq!(summary["pool"]["timeouts"], 15);
    assert!(summary["pool"]["wait"]["p99_ms"].is_number());
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .contains("15 users timed out"),
        "{summary}"
    );
}

#[tokio::test]
async fn semaphore_pool_bench_prints_rates_in_the_envelope_and_stops_on_sigint() {
    let args = ["--bench", "--count", "1000", "--runs", "1", "--json"];
    let output = run("semaphore-pool", &args, LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let summary = output.json_envelope("semaphore-pool");
    assert!(summary["pool_per_s"].as_f64().unwrap() > 0.0);
    assert!(summary["semaphore_per_s"].as_f64().unwrap() > 0.0);

    let args = ["--bench", "--count", "1000000000", "--json"];
    let running = spawn("semaphore-pool", &args).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // let it start
    running.signal(libc::SIGINT).unwrap();
    let output = running.wait(Duration::from_secs(10)).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    assert_eq!(output.json_envelope("semaphore-pool")["interrupted"], true);
}

/// SIGINT: the pool closes, waiters are refused, holders finish within
/// the drain timeout: a clean stop (130) that reports every user.
#[tokio::test]
async fn semaphore_pool_sigint_closes_the_pool_and_reports_every_user() {
    // One resource, 200 users x 50 ms: 10 s if left alone. The acquire
    // timeout is longer than that, so on a loaded machine nobody times out
    // before the signal lands and every unserved user is a refusal.
    let args = [
        "--count",
        "200",
        "--resources",
        "1",
        "--hold-min",
        "50ms",
        "--hold-max",
        "50ms",
        "--timeout",
        "60s",
    ];
    let mut child = spawn("semaphore-pool", &args).unwrap();
    // The first acquisition, whoever makes it: users start together on a
    // multi-thread runtime, so any one of them (user 1 too) may be last of
    // the 200 to get the one resource, which is 10 s after the start.
    child.wait_for_line(" got    R", LIMIT).await.unwrap();
    child.signal(libc::SIGINT).unwrap();
    let output = child.wait(Duration::from_secs(30)).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    let line = output
        .stdout
        .lines()
        .find(|l| l.starts_with("served "))
        .unwrap_or_else(|| panic!("no final tally:\n{}\n{}", output.stdout, output.stderr));
    let served: usize = line["served ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(served < 200, "{line}");
    assert!(
        line.contains(&format!("refused (closed) {}, cancelled 0", 200 - served)),
        "{line}"
    );
}

/// Issue 15.22: holders that outlast the drain timeout are cancelled, so a
/// SIGTERM with minute-long holds ends within about the drain timeout
/// (exit 1: work was cut short), and reports them.
#[tokio::test]
async fn semaphore_pool_sigterm_cancels_holders_after_the_drain_timeout() {
    let args = [
        "--count",
        "3",
        "--resources",
        "2",
        "--hold-min",
        "60s",
        "--hold-max",
        "60s",
        "--drain-timeout",
        "300ms",
        "--timeout",
        "60s",
    ];
    // In prose, so the signal can wait for both holders (a fixed sleep
    // is a guess on a loaded machine; --json prints only at the end).
    let mut child = spawn("semaphore-pool", &args).unwrap();
    for _ in 0..2 {
        child.wait_for_line(" got    R", LIMIT).await.unwrap();
    }
    let signalled = Instant::now();
    child.sigterm().unwrap();
    let output = child.wait(Duration::from_secs(20)).await.unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "not bounded by the drain"
    );
    output.assert_code(exit::FAILED);
    let tally = output
        .stdout
        .lines()
        .find(|l| l.starts_with("served "))
        .unwrap_or_else(|| panic!("no final tally:\n{}\n{}", output.stdout, output.stderr));
    assert!(
        tally.contains("refused (closed) 1, cancelled 2") && tally.ends_with("in use now 0"),
        "{tally}"
    );
}

/// A second signal during the drain exits at once (the harness).
#[tokio::test]
async fn semaphore_pool_second_signal_during_the_drain_exits_at_once() {
    let args = [
        "--count",
        "2",
        "--resources",
        "2",
        "--hold-min",
        "60s",
        "--hold-max",
        "60s",
        "--drain-timeout",
        "60s",
    ];
    let mut child = spawn("semaphore-pool", &args).unwrap();
    child.wait_for_line("user  1 got", LIMIT).await.unwrap();
    child.sigterm().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.signal(libc::SIGINT).unwrap();
    let output = child.wait(Duration::from_secs(10)).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
}

#[tokio::test]
async fn semaphore_pool_rejects_bad_values_with_exit_2() {
    for (args, needle) in [
        (&["--resources", "0"][..], "--resources"),
        (
            &["--hold-min", "500ms", "--hold-max", "100ms"],
            "--hold-min (500ms) must not exceed --hold-max (100ms)",
        ),
        (&["--hold-min", "100"], "--hold-min"),
        (&["--timeout", "1e19s"], "--timeout"),
        (&["--drain-timeout", "NaNs"], "--drain-timeout"),
        (&["--count", "18446744073709551615"], "--count"),
        (&["--count", "1000000"], "at most 100000 users"),
        (&["--runs", "2"], "--bench"),
    ] {
        let output = run("semaphore-pool", args, LIMIT).await.unwrap();
        output.assert_code(exit::USAGE);
        assert!(
            output.stderr.contains(needle),
            "{args:?}: {}",
            output.stderr
        );
        assert!(!output.stderr.contains("panicked"), "{}", output.stderr);
    }
}

#[tokio::test]
async fn bank_account_demo_checks_all_three_designs() {
    let output = run("bank-account", &[], LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let out = &output.stdout;
    for design in ["std-mutex", "tokio-mutex", "actor"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(design))
            .unwrap_or_else(|| panic!("no {design} row:\n{out}"));
        assert!(row.ends_with(": ok"), "{row}");
    }
    assert_eq!(
        out.matches("1,000 each: 2000 done, no deadlock").count(),
        3,
        "{out}"
    );
    assert!(
        out.contains("Err(InsufficientFunds): insufficient funds in account 0"),
        "{out}"
    );
}

#[tokio::test]
async fn bank_account_json_has_a_verified_ledger_per_design() {
    let args = ["--json", "--concurrency", "20", "--count", "1000"];
    let output = run("bank-account", &args, LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let summary = output.json_envelope("bank-account");
    assert_eq!(summary["seed"], 9);
    assert_eq!(summary["mode"], "demo");
    let designs = summary["designs"].as_array().unwrap();
    assert_eq!(designs.len(), 3);
    for design in designs {
        assert_eq!(design["report"]["ops"], 1000);
        assert_eq!(design["opposite_transfers_done"], 2000);
        assert!(design["ledger"]["entries"].as_u64().unwrap() > 0);
        assert_eq!(design["ledger"]["totals_saturated"], false);
    }
}

#[tokio::test]
async fn bank_account_demo_race_shows_the_bug_then_the_fix() {
    let output = run("bank-account", &["--demo-race"], LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let out = &output.stdout;
    assert!(out.contains("LOST UPDATE"), "{out}");
    assert!(out.contains("OVERDRAWN"), "{out}");
    let fixed = out
        .lines()
        .find(|l| l.starts_with("locked (fix)"))
        .expect("the fix row");
    assert!(
        fixed.contains("approved  3, refused  7") && fixed.ends_with("consistent"),
        "{fixed}"
    );

    let output = run("bank-account", &["--demo-race", "--json"], LIMIT)
        .await
        .unwrap();
    output.assert_code(exit::OK);
    let summary = output.json_envelope("bank-account");
    assert_eq!(summary["outcomes"][2]["variant"], "locked");
    assert_eq!(summary["outcomes"][2]["closing"], 1000);
}

#[tokio::test]
async fn bank_account_bench_reports_ops_per_second_and_stops_on_sigint() {
    let args = [
        "--bench",
        "--concurrency",
        "4",
        "--count",
        "800",
        "--runs",
        "1",
        "--design",
        "actor",
        "--json",
    ];
    let output = run("bank-account", &args, LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let summary = output.json_envelope("bank-account");
    assert_eq!(summary["mode"], "bench");
    assert_eq!(summary["designs"][0]["design"], "actor");
    assert!(summary["designs"][0]["ops_per_s"].as_f64().unwrap() > 0.0);

    let args = ["--bench", "--count", "10000000", "--runs", "100", "--json"];
    let running = spawn("bank-account", &args).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // let it start
    running.signal(libc::SIGINT).unwrap();
    let output = running.wait(Duration::from_secs(10)).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    let summary = output.json_envelope("bank-account");
    assert_eq!(summary["interrupted"], true);
    assert_eq!(summary["designs"][0]["report"]["stopped_early"], true);
}

#[tokio::test]
async fn bank_account_rejects_bad_values_with_exit_2() {
    for (args, needle) in [
        (&["--concurrency", "0"][..], "--concurrency"),
        (&["--tasks", "4"], "--tasks"),
        (&["--demo-race", "--bench"], "cannot be used"),
        (&["--demo-race", "--count", "5"], "cannot be used"),
        (&["--design", "rwlock"], "--design"),
        (&["--count", "1e19"], "--count"),
        (
            &["--opening-cents", "18446744073709551615"],
            "--opening-cents",
        ),
        (&["--max-amount-cents", "0"], "--max-amount-cents"),
    ] {
        let output = run("bank-account", args, LIMIT).await.unwrap();
        output.assert_code(exit::USAGE);
        assert!(
            output.stderr.contains(needle),
            "{args:?}: {}",
            output.stderr
        );
        assert!(
            !output.stderr.contains("panicked"),
            "{args:?}: {}",
            output.stderr
        );
    }
}
