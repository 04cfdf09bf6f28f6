//! End to end: `semaphore-pool` and `bank-account` (crate examples-control)
//! run the way a user runs them.

use std::time::Duration;

use e2e::{run, spawn};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

fn json_line(stdout: &str) -> Value {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "--json prints exactly one line:\n{stdout}");
    serde_json::from_str(lines[0]).expect("the line is JSON")
}

fn assert_one_line_error(stderr: &str, needle: &str) {
    assert!(
        stderr.contains(needle),
        "stderr lacks {needle:?}:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{stderr}"
    );
}

#[tokio::test]
async fn semaphore_pool_demo_serves_twenty_users_with_five_resources() {
    let output = run("semaphore-pool", &[], LIMIT).await.unwrap();
    output.assert_code(0);
    let out = &output.stdout;
    for needle in [
        "20 users, 5 resources",
        "timeline:",
        "R4  |",
        "served 20 of 20, timed out 0, refused (closed) 0; high-water 5/5; in use now 0",
        "after close(): a late acquire fails at once: pool is closed",
    ] {
        assert!(out.contains(needle), "missing {needle:?}:\n{out}");
    }
}

#[tokio::test]
async fn semaphore_pool_json_reports_timeouts_when_holds_outlast_the_wait() {
    // 5 users get a resource for 100 ms; the other 15 give up after 50 ms.
    let args = [
        "--timeout-ms",
        "50",
        "--hold-min-ms",
        "100",
        "--hold-max-ms",
        "100",
        "--json",
    ];
    let output = run("semaphore-pool", &args, LIMIT).await.unwrap();
    output.assert_code(0);
    let summary = json_line(&output.stdout);
    assert_eq!(summary["served"], 5);
    assert_eq!(summary["timed_out"], 15);
    assert_eq!(summary["pool"]["high_water"], 5);
    assert_eq!(summary["pool"]["timeouts"], 15);
    assert!(summary["pool"]["wait"]["p99_ms"].is_number());
}

#[tokio::test]
async fn semaphore_pool_bench_prints_rates_as_json() {
    let args = ["--bench", "--bench-ops", "1000", "--runs", "1", "--json"];
    let output = run("semaphore-pool", &args, LIMIT).await.unwrap();
    output.assert_code(0);
    let summary = json_line(&output.stdout);
    assert!(summary["pool_per_sec"].as_f64().unwrap() > 0.0);
    assert!(summary["semaphore_per_sec"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn semaphore_pool_sigterm_closes_the_pool_and_reports_every_user() {
    // One resource, 200 users x 50 ms: 10 s if left alone. The acquire
    // timeout is longer than that, so on a loaded machine nobody times out
    // before the signal lands and every unserved user is a refusal.
    let args = [
        "--users",
        "200",
        "--resources",
        "1",
        "--hold-min-ms",
        "50",
        "--hold-max-ms",
        "50",
        "--timeout-ms",
        "60000",
    ];
    let mut child = spawn("semaphore-pool", &args).unwrap();
    child.wait_for_line("user  1 got", LIMIT).await.unwrap();
    child.sigterm().unwrap();
    let output = child.wait(Duration::from_secs(30)).await.unwrap();
    output.assert_code(0);
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
        line.contains(&format!("refused (closed) {}", 200 - served)),
        "{line}"
    );
}

#[tokio::test]
async fn semaphore_pool_rejects_bad_input() {
    let output = run("semaphore-pool", &["--resources", "0"], LIMIT)
        .await
        .unwrap();
    output.assert_code(2);
    assert!(!output.stderr.contains("panicked"), "{}", output.stderr);
    let args = ["--hold-min-ms", "500", "--hold-max-ms", "100"];
    let output = run("semaphore-pool", &args, LIMIT).await.unwrap();
    output.assert_code(1);
    assert_one_line_error(
        &output.stderr,
        "--hold-min-ms (500) must not exceed --hold-max-ms (100)",
    );
}

#[tokio::test]
async fn bank_account_demo_checks_all_three_designs() {
    let output = run("bank-account", &[], LIMIT).await.unwrap();
    output.assert_code(0);
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
    let output = run(
        "bank-account",
        &["--json", "--tasks", "20", "--ops", "50"],
        LIMIT,
    )
    .await
    .unwrap();
    output.assert_code(0);
    let summary = json_line(&output.stdout);
    assert_eq!(summary["mode"], "demo");
    let designs = summary["designs"].as_array().unwrap();
    assert_eq!(designs.len(), 3);
    for design in designs {
        assert_eq!(design["report"]["ops"], 1000);
        assert_eq!(design["opposite_transfers_done"], 2000);
        assert!(design["ledger"]["entries"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn bank_account_demo_race_shows_the_bug_then_the_fix() {
    let output = run("bank-account", &["--demo-race"], LIMIT).await.unwrap();
    output.assert_code(0);
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
    output.assert_code(0);
    let summary = json_line(&output.stdout);
    assert_eq!(summary["outcomes"][2]["variant"], "locked");
    assert_eq!(summary["outcomes"][2]["closing"], 1000);
}

#[tokio::test]
async fn bank_account_bench_mode_reports_ops_per_second() {
    let args = [
        "--bench", "--tasks", "4", "--ops", "200", "--runs", "1", "--design", "actor", "--json",
    ];
    let output = run("bank-account", &args, LIMIT).await.unwrap();
    output.assert_code(0);
    let summary = json_line(&output.stdout);
    assert_eq!(summary["mode"], "bench");
    assert_eq!(summary["designs"][0]["design"], "actor");
    assert!(summary["designs"][0]["ops_per_sec"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn bank_account_rejects_bad_input() {
    for args in [
        &["--tasks", "0"][..],
        &["--demo-race", "--bench"],
        &["--design", "rwlock"],
    ] {
        let output = run("bank-account", args, LIMIT).await.unwrap();
        output.assert_code(2);
        assert!(
            !output.stderr.contains("panicked"),
            "{args:?}: {}",
            output.stderr
        );
    }
}
