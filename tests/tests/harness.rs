//! The e2e harness itself: a signal reaches the binary's handlers, not the
//! default action, however soon after the spawn it is sent.

use std::time::Duration;

use e2e::{catches, exit, spawn};

/// `catches` reads the handler mask: a plain `sleep` catches nothing, this
/// test process catches SIGINT once tokio listens for it, and a process
/// that is gone cannot be told.
#[tokio::test]
async fn catches_tells_a_handled_signal_from_a_default_one() {
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    assert_eq!(catches(sleeper.id(), libc::SIGINT), Some(false));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_eq!(catches(sleeper.id(), libc::SIGINT), None, "reaped");

    let me = std::process::id();
    assert_eq!(catches(me, libc::SIGUSR2), Some(false));
    let _listening =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2()).unwrap();
    assert_eq!(catches(me, libc::SIGUSR2), Some(true));
}

/// Signalled the moment it is spawned, the binary still stops cleanly:
/// `signal` waits until its handlers are in place. (Sent at once, SIGINT
/// killed it by default before it had installed them.)
#[tokio::test]
async fn a_signal_sent_right_after_the_spawn_reaches_the_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let args = ["--bench", "--count", "1000000000", "--json"];
        let running = spawn("semaphore-pool", &args).unwrap();
        running.signal(signal).unwrap();
        let output = running.wait(Duration::from_secs(30)).await.unwrap();
        output.assert_code(exit::INTERRUPTED);
        assert_eq!(output.json_envelope("semaphore-pool")["interrupted"], true);
    }
}
