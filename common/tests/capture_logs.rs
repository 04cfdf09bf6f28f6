//! `capture_logs` against tracing's process-wide callsite cache, in a test
//! binary of its own so that no other test's subscriber is registered.
//!
//! tracing caches one `Interest` per callsite for the whole process. While
//! a single `Dispatch` exists, tracing-core 0.1.36 computes it from the
//! default subscriber of whichever thread reaches the callsite first
//! (tokio-rs/tracing#3611). A sibling test thread with no subscriber then
//! caches "never", and the capturing thread's later event at that line is
//! dropped before any subscriber sees it: CI saw a supervisor test capture
//! 0 of 4 "task died" lines that way.

#[test]
fn events_first_reached_on_a_thread_without_a_subscriber_are_still_captured() {
    fn before() {
        tracing::warn!("a line reached before the capture began");
    }
    fn during() {
        tracing::warn!("a line reached while the capture runs");
    }
    // Other threads, with no subscriber of their own, reach each line
    // first: one before any subscriber exists, one while ours does.
    std::thread::spawn(before).join().unwrap();
    let (logs, _guard) = common::testing::capture_logs();
    std::thread::spawn(during).join().unwrap();
    assert_eq!(logs.text(), "", "another thread's events are not ours");
    before();
    during();
    let text = logs.text();
    assert!(
        text.contains("a line reached before the capture began"),
        "{text:?}"
    );
    assert!(
        text.contains("a line reached while the capture runs"),
        "{text:?}"
    );
}
