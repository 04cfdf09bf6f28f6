//! `StopSignals` against real signals sent to this test process, in a
//! binary of its own: no other test here listens for SIGINT or SIGTERM.

#![cfg(unix)]

use std::time::Duration;

use common::StopSignals;
use common::testing::poll_n_then_drop;
use tokio::time::timeout;

/// Sends `signal` to this process with `kill(1)`, and waits for it to run.
fn kill(signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

/// Two different signals sent before either is noticed are two `recv`s,
/// and a `recv` dropped at its await point loses neither.
#[tokio::test]
async fn two_signals_sent_together_are_two_recvs_even_after_a_dropped_recv() {
    let mut signals = StopSignals::listen();
    assert_eq!(
        poll_n_then_drop(signals.recv(), 1).await,
        None,
        "nothing sent yet"
    );
    // The current-thread runtime does not run while `kill` blocks: both
    // signals are pending before the next `recv` is polled.
    kill("-TERM");
    kill("-INT");
    let limit = Duration::from_secs(10);
    let mut got = [
        timeout(limit, signals.recv()).await.expect("the first"),
        timeout(limit, signals.recv()).await.expect("the second"),
    ];
    got.sort_unstable();
    assert_eq!(got, ["Ctrl-C", "SIGTERM"]);
    // Nothing else is pending.
    assert_eq!(poll_n_then_drop(signals.recv(), 1).await, None);
}
