//! The e2e harness itself: a signal reaches the binary's handlers, not the
//! default action, however soon after the spawn it is sent.

use std::time::Duration;

use e2e::{catches, exit, spawn};

const LIMIT: Duration = Duration::from_secs(60);

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

/// Two different signals back to back, before the binary has noticed the
/// first: the second still exits at once. (The second-signal listener was
/// created only after the first was noticed, so it missed a SIGINT that had
/// already arrived, and the drain ran its full 60 s.)
#[tokio::test]
async fn sigterm_then_sigint_back_to_back_still_exits_at_once() {
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
    for _ in 0..3 {
        let mut child = spawn("semaphore-pool", &args).unwrap();
        for _ in 0..2 {
            child.wait_for_line(" got    R", LIMIT).await.unwrap();
        }
        // Raw kill(2), one right after the other (`signal` reads /proc
        // first, which leaves the child time to notice the first).
        let pid = libc::pid_t::try_from(child.pid()).unwrap();
        // SAFETY: kill(2) has no memory effects; the child is ours, unreaped.
        unsafe {
            assert_eq!(libc::kill(pid, libc::SIGTERM), 0);
            assert_eq!(libc::kill(pid, libc::SIGINT), 0);
        }
        let output = child.wait(Duration::from_secs(10)).await.unwrap();
        output.assert_code(exit::INTERRUPTED);
        assert!(
            output.stderr.contains("second signal: exiting now"),
            "{}",
            output.stderr
        );
    }
}
