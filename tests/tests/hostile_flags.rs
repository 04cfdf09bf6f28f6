//! Every numeric flag of every binary, fed the values that used to panic
//! (`1e19` seconds into an `Instant`, `1e-300` requests per second, a
//! `u64::MAX` concurrency): each run must end in a usage error (exit 2) or a
//! documented acceptance, never a panic (exit 101) and never a hang.
//!
//! The flags come from each binary's own `--help`, so a flag added
//! tomorrow is covered without anyone remembering to list it here. String
//! flags (URLs, paths, names, enums) are skipped: they are not numbers, and
//! feeding `0` to `--output` would write a file named `0`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use e2e::{bin_names, exit, run, spawn};
use tokio::sync::Semaphore;

/// The values the hidden matrix feeds: zero, negative, u64::MAX, not a
/// number, infinity, tiny and huge.
const HOSTILE: [&str; 7] = [
    "0",
    "-1",
    "18446744073709551615",
    "NaN",
    "inf",
    "1e-300",
    "1e19",
];

/// Options that take a string, a path, a URL or an enum, not a number.
const NOT_NUMERIC: [&str; 25] = [
    "--url",
    "--urls-file",
    "--output",
    "--output-dir",
    "--dir",
    "--database-url",
    "--log-format",
    "--host",
    "--bus",
    "--store",
    "--role",
    "--queue",
    "--limit-key",
    "--shared-limit",
    "--sha256",
    "--jitter",
    "--design",
    "--mode",
    "--svg",
    "--server-bin",
    "--channel",
    "--only",
    "--out",
    "--journal",
    "--users",
];

/// `(binary, flag, value)` runs that are allowed to be accepted (exit 0, 1
/// or 130 after a SIGINT) instead of rejected, each for a reason its
/// `--help` gives: a seed is any number, a port of 0 means "pick one", a
/// fraction may be as small as it likes, and a zero that means "none" or
/// "off".
fn accepted(bin: &str, flag: &str, value: &str) -> bool {
    let fraction = matches!(
        flag,
        "--error-rate" | "--fail-rate" | "--max-error-rate" | "--failure-rate"
    );
    match (bin, flag, value) {
        (_, "--seed", "0" | "18446744073709551615") => true,
        (_, "--port", "0") => true,
        (_, _, "0" | "1e-300") if fraction => true,
        ("sandbox-server", "--api-rate", "0") => true,
        (_, "--retries", "0") => true,
        ("bank-account", "--opening-cents", "0") => true,
        ("benchmark", "--warmup", "0") => true,
        ("connection-pool", "--max-overflow", "0") => true,
        ("streaming-download", "--min-rate", "0") => true,
        ("ws-broadcast-server", "--lag-limit", "0") => true,
        _ => false,
    }
}

/// Flags added to every run of a binary so runs do not collide: the
/// sandbox server's default port is fixed.
fn base_args(bin: &str) -> &'static [&'static str] {
    match bin {
        "sandbox-server" => &["--port=0"],
        _ => &[],
    }
}

/// `--name <VALUE>` options listed in a `--help` text.
fn value_flags(help: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in help.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        let mut words = line.split_whitespace().peekable();
        while let Some(word) = words.next() {
            let word = word.trim_end_matches(',');
            if let Some(name) = word.strip_prefix("--")
                && !name.is_empty()
                && words.peek().is_some_and(|next| next.starts_with('<'))
            {
                flags.insert(format!("--{name}"));
            }
        }
    }
    flags
}

#[test]
fn value_flags_are_read_from_help() {
    let help = "Options:\n      --count <N>  how many\n  -c, --concurrency <N>\n      --json  one line\n      --timeout <DUR>\n";
    let flags: Vec<String> = value_flags(help).into_iter().collect();
    assert_eq!(flags, ["--concurrency", "--count", "--timeout"]);
}

/// What one run did, for the failure table.
#[derive(Debug)]
struct Outcome {
    bin: &'static str,
    flag: String,
    value: &'static str,
    what: String,
}

/// Runs `bin flag value`; a run still going after `soft` gets a SIGINT and
/// must then end within `hard`.
async fn one(bin: &'static str, flag: String, value: &'static str) -> Option<Outcome> {
    const SOFT: Duration = Duration::from_secs(20);
    const HARD: Duration = Duration::from_secs(10);
    let arg = format!("{flag}={value}");
    let mut argv: Vec<&str> = base_args(bin).to_vec();
    argv.extend([arg.as_str(), "--json"]);
    let running = match spawn(bin, &argv) {
        Ok(running) => running,
        Err(err) => {
            return Some(Outcome {
                bin,
                flag,
                value,
                what: format!("spawn failed: {err}"),
            });
        }
    };
    let pid = i32::try_from(running.pid()).unwrap_or(0);
    let interrupt = tokio::spawn(async move {
        tokio::time::sleep(SOFT).await;
        // SAFETY: kill(2) with a pid and a signal number has no memory
        // effects; the child is ours (kill_on_drop also ends it).
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    });
    let result = running.wait(SOFT + HARD).await;
    interrupt.abort();
    let output = match result {
        Ok(output) => output,
        Err(err) => {
            return Some(Outcome {
                bin,
                flag,
                value,
                what: format!("hang: {err}"),
            });
        }
    };
    let code = output.code.unwrap_or(-1);
    let panicked = output.stderr.contains("panicked") || code == 101;
    let ok = if panicked {
        false
    } else if code == exit::USAGE {
        // A rejection names the flag.
        output.stderr.contains(&flag) || output.stderr.contains("error:")
    } else {
        accepted(bin, &flag, value) && [exit::OK, exit::FAILED, exit::INTERRUPTED].contains(&code)
    };
    (!ok).then(|| Outcome {
        bin,
        flag,
        value,
        what: format!(
            "exit {code}: {}",
            output
                .stderr
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ")
        ),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_numeric_flag_rejects_hostile_values_without_panic_or_hang() {
    let mut jobs = Vec::new();
    // Four at a time: most runs are rejected in milliseconds; the accepted
    // ones run a demo.
    let slots = Arc::new(Semaphore::new(4));
    for bin in bin_names() {
        let help = run(bin, &["--help"], Duration::from_secs(30))
            .await
            .expect("--help runs");
        for flag in value_flags(&help.stdout) {
            if NOT_NUMERIC.contains(&flag.as_str()) {
                continue;
            }
            for value in HOSTILE {
                let slots = slots.clone();
                let flag = flag.clone();
                jobs.push(tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await.expect("never closed");
                    one(bin, flag, value).await
                }));
            }
        }
    }
    let total = jobs.len();
    let mut failures = Vec::new();
    for job in jobs {
        if let Some(outcome) = job.await.expect("no panic in the runner") {
            failures.push(outcome);
        }
    }
    assert!(total > 100, "only {total} runs: are the flags discovered?");
    assert!(
        failures.is_empty(),
        "{} of {total} hostile flag values were mishandled:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|o| format!("  {} {}={}: {}", o.bin, o.flag, o.value, o.what))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
