//! Every binary in the workspace behaves like a well-mannered CLI.

use std::time::Duration;

use e2e::{bin_names, run};

const LIMIT: Duration = Duration::from_secs(60);

/// `--help` exits 0 and names the seed example it ports (or says it is a
/// workspace tool). The list comes from `cargo metadata`, so a new binary is
/// checked without anyone remembering to add it here.
#[tokio::test]
async fn every_binary_answers_help() {
    let names = bin_names();
    assert!(names.contains(&"sandbox-server"), "{names:?}");
    for name in names {
        let output = run(name, &["--help"], LIMIT).await.unwrap();
        output.assert_code(0);
        assert!(
            output.stdout.contains("Usage:"),
            "{name} --help printed no usage:\n{}",
            output.stdout
        );
    }
}

/// The seed example each binary ports; the tools say they are tools.
const SEEDS: [(&str, Option<u8>); 18] = [
    ("concurrent-fetch", Some(1)),
    ("rate-limited-client", Some(2)),
    ("streaming-download", Some(3)),
    ("ws-reconnecting-client", Some(4)),
    ("ws-broadcast-server", Some(5)),
    ("connection-pool", Some(6)),
    ("priority-queue", Some(7)),
    ("semaphore-pool", Some(8)),
    ("bank-account", Some(9)),
    ("backoff-retry", Some(10)),
    ("background-tasks", Some(11)),
    ("async-cache", Some(12)),
    ("benchmark", Some(13)),
    ("circuit-breaker", Some(14)),
    ("graceful-shutdown", Some(15)),
    ("ws-load", None),
    ("sandbox-server", None),
    ("perf-suite", None),
];

/// `--help` opens with the line the harness adds: the bin name and the
/// seed example it ports ("ports seed Example N"), or that it is a tool.
#[tokio::test]
async fn every_help_names_its_seed_example_first() {
    let names = bin_names();
    assert_eq!(names.len(), SEEDS.len(), "{names:?}");
    for (name, seed) in SEEDS {
        let output = run(name, &["--help"], LIMIT).await.unwrap();
        output.assert_code(0);
        let first = output.stdout.lines().next().unwrap_or_default();
        let expected = match seed {
            Some(n) => format!("{name}: ports seed Example {n} of the asyncio cookbook"),
            None => format!("{name}: a tool"),
        };
        assert!(
            first.starts_with(&expected),
            "{name} --help must open with {expected:?}, got {first:?}"
        );
        // The doc comment, not the crate description, follows it.
        assert!(
            !output
                .stdout
                .contains("tokio patterns ported from the asyncio cookbook:"),
            "{name} --help shows the crate description instead of the example:\n{}",
            output.stdout
        );
    }
}

/// An unknown flag is a usage error: exit 2, a message on stderr, no panic.
#[tokio::test]
async fn every_binary_rejects_an_unknown_flag() {
    for name in bin_names() {
        let output = run(name, &["--no-such-flag"], LIMIT).await.unwrap();
        output.assert_code(2);
        assert!(
            output.stderr.contains("error:"),
            "{name}: {}",
            output.stderr
        );
        assert!(
            !output.stderr.contains("panicked"),
            "{name}: {}",
            output.stderr
        );
    }
}

/// Every binary with `--json` and no other flag runs its demo (or serves)
/// and prints exactly one envelope line: if it is still running after a few
/// seconds it gets a SIGINT, and must then stop with exit 130 and
/// `"interrupted":true`; if it finished by itself, exit 0 and
/// `"interrupted":false`. This is the shared contract the perf suite and
/// scripts rely on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_prints_one_envelope_and_stops_on_sigint() {
    let mut jobs = Vec::new();
    for name in bin_names() {
        jobs.push(tokio::spawn(async move {
            // perf-suite would build and run everything: give it nothing to run.
            let args: &[&str] = if name == "perf-suite" {
                &["--json", "--no-build", "--only", "no-such-workload"]
            } else {
                &["--json"]
            };
            let running = e2e::spawn(name, args).unwrap();
            let pid = i32::try_from(running.pid()).unwrap();
            let interrupt = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(8)).await;
                // SAFETY: kill(2) has no memory effects; the child is ours.
                unsafe { libc::kill(pid, libc::SIGINT) };
                true
            });
            let output = running.wait(Duration::from_secs(40)).await.unwrap();
            let sent = interrupt.is_finished();
            interrupt.abort();
            let envelope = output.json_envelope(name);
            match output.code {
                Some(130) => assert_eq!(envelope["interrupted"], true, "{name}: {}", output.stdout),
                Some(0) => {
                    assert!(!sent || envelope["interrupted"] == false, "{name}");
                    assert_eq!(envelope["ok"], true, "{name}: {}", output.stdout);
                }
                other => panic!(
                    "{name} --json exited {other:?}\n--- stdout\n{}\n--- stderr\n{}",
                    output.stdout, output.stderr
                ),
            }
        }));
    }
    for job in jobs {
        job.await.unwrap();
    }
}
