//! Behaviour of the supervisor, on the paused clock: ticks, restarts with
//! backoff, liveness, and a stop that aborts what overruns its deadline.
//!
//! Equivalent mutants (cargo mutants on `src/supervisor.rs`):
//! - The `err.is_panic()` guard in `Supervisor::stop` -> `false`: a panic
//!   of the runner task itself is then re-raised as "runner was
//!   cancelled" instead of with its own payload. Both panic; only the
//!   message differs, and the runner catches every task's panic, so only a
//!   bug in the runner itself could get there.

use std::time::Duration;

use examples_lifecycle::demo::background::{self, DemoOptions};
use examples_lifecycle::supervisor::{
    Backoff, Event, ExitReason, RestartPolicy, Supervisor, TaskContext, TaskSpec, TaskState,
};
use tokio::sync::broadcast;
use tokio::time::{self, Instant};

/// The old supervisor schedule: double from `base` up to `max_delay`.
fn doubling(base: Duration, max_delay: Duration) -> Backoff {
    Backoff {
        base,
        factor: 2.0,
        max_delay,
        jitter: examples_lifecycle::supervisor::Jitter::None,
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A well-behaved periodic task: ticks every `period` until asked to stop.
async fn ticking(ctx: TaskContext, period: Duration) -> anyhow::Result<()> {
    let mut ticker = time::interval_at(Instant::now() + period, period);
    loop {
        tokio::select! {
            () = ctx.cancelled() => return Ok(()),
            _ = ticker.tick() => ctx.tick(),
        }
    }
}

/// Receives the next event (the paused clock jumps to it).
async fn next(events: &mut broadcast::Receiver<Event>) -> Event {
    // The supervisor keeps its sender while running, so recv only fails on
    // a lag, which these small tests cannot cause.
    events.recv().await.expect("event stream open")
}

fn exit_reason(state: &TaskState) -> Option<&ExitReason> {
    match state {
        TaskState::Exited(reason) => Some(reason),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn tasks_tick_at_their_intervals() {
    let specs = vec![
        TaskSpec::new("fast", RestartPolicy::Never, |ctx| ticking(ctx, secs(1))),
        TaskSpec::new("slow", RestartPolicy::Never, |ctx| ticking(ctx, secs(3))),
    ];
    let (supervisor, _events) = Supervisor::start(specs);
    let started = Instant::now();
    time::sleep(Duration::from_millis(10_500)).await;

    let status = supervisor.status();
    assert_eq!(status.task("fast").unwrap().ticks, 10);
    assert_eq!(status.task("slow").unwrap().ticks, 3);
    assert_eq!(
        status.task("slow").unwrap().last_tick,
        Some(started + secs(9))
    );
    assert!(status.healthy());
}

#[tokio::test(start_paused = true)]
async fn the_seed_tasks_tick_at_the_seed_periods_and_warmup_completes() {
    let (supervisor, _events) = Supervisor::start(background::demo_tasks(DemoOptions::default()));
    time::sleep(Duration::from_millis(10_500)).await;

    let status = supervisor.status();
    assert_eq!(status.task("data-processor").unwrap().ticks, 5); // every 2 s
    assert_eq!(status.task("cleanup").unwrap().ticks, 2); // every 5 s
    assert_eq!(status.task("heartbeat").unwrap().ticks, 10); // every 1 s
    let warmup = status.task("cache-warmup").unwrap();
    assert_eq!(exit_reason(&warmup.state), Some(&ExitReason::Completed));
    assert!(status.healthy(), "{status}");

    let report = supervisor.stop(secs(2)).await;
    for name in ["data-processor", "cleanup", "heartbeat"] {
        let task = report.task(name).unwrap();
        assert_eq!(
            exit_reason(&task.state),
            Some(&ExitReason::Stopped),
            "{name}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_task_is_restarted_with_backoff_and_reported() {
    let (logs, _capture) = common::testing::capture_logs();
    let backoff = doubling(secs(1), secs(8));
    let specs = vec![TaskSpec::new(
        "crashy",
        RestartPolicy::OnFailure(backoff),
        |_ctx| async {
            panic!("bad batch");
        },
    )];
    let (supervisor, mut events) = Supervisor::start(specs);
    let started = Instant::now();

    let mut starts = Vec::new();
    let mut delays = Vec::new();
    while delays.len() < 4 {
        match next(&mut events).await {
            Event::Started { run, .. } => starts.push((run, Instant::now() - started)),
            Event::Exited {
                reason, restart_in, ..
            } => {
                // Noticed at once: the same instant the run started.
                assert_eq!(reason, ExitReason::Panicked("bad batch".to_owned()));
                delays.push(restart_in.expect("OnFailure restarts after a panic"));
            }
        }
    }
    assert_eq!(delays, [secs(1), secs(2), secs(4), secs(8)]);
    assert_eq!(
        starts,
        [(1, secs(0)), (2, secs(1)), (3, secs(3)), (4, secs(7))]
    );

    let status = supervisor.status();
    let crashy = status.task("crashy").unwrap();
    assert_eq!(crashy.restarts, 4);
    assert_eq!(crashy.last_failure.as_deref(), Some("bad batch"));
    assert!(matches!(crashy.state, TaskState::BackingOff { .. }));
    assert!(!status.healthy());
    // A death is an error in the log, every time.
    let text = logs.text();
    let died: Vec<_> = text.lines().filter(|l| l.contains("task died")).collect();
    assert_eq!(died.len(), 4, "{text}");
    assert!(
        died.iter()
            .all(|l| l.contains("ERROR") && l.contains("task=crashy")),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_healthy_run_resets_the_backoff() {
    let backoff = doubling(secs(1), secs(4));
    // Each run fails after 5 s, longer than `max`: never a crash loop.
    let specs = vec![TaskSpec::new(
        "flaky",
        RestartPolicy::OnFailure(backoff),
        |_ctx| async {
            time::sleep(secs(5)).await;
            anyhow::bail!("lost the connection")
        },
    )];
    let (_supervisor, mut events) = Supervisor::start(specs);
    let mut delays = Vec::new();
    while delays.len() < 3 {
        if let Event::Exited {
            reason, restart_in, ..
        } = next(&mut events).await
        {
            assert_eq!(reason, ExitReason::Failed("lost the connection".to_owned()));
            delays.extend(restart_in);
        }
    }
    assert_eq!(delays, [secs(1), secs(1), secs(1)]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_task_with_policy_never_stays_down_and_is_reported() {
    let specs = vec![
        TaskSpec::new("once", RestartPolicy::Never, |_ctx| async {
            Err(anyhow::anyhow!("disk full").context("write snapshot"))
        }),
        TaskSpec::new("steady", RestartPolicy::Never, |ctx| ticking(ctx, secs(1))),
    ];
    let (supervisor, mut events) = Supervisor::start(specs);
    loop {
        if let Event::Exited {
            task,
            reason,
            restart_in,
        } = next(&mut events).await
        {
            assert_eq!(task, "once");
            assert_eq!(
                reason,
                ExitReason::Failed("write snapshot: disk full".to_owned())
            );
            assert_eq!(restart_in, None);
            break;
        }
    }
    time::sleep(secs(30)).await;
    let status = supervisor.status();
    assert_eq!(status.task("once").unwrap().runs, 1);
    assert!(!status.healthy(), "a dead task must make the app unhealthy");
}

#[tokio::test(start_paused = true)]
async fn always_restarts_a_task_that_returns_ok() {
    let (logs, _capture) = common::testing::capture_logs();
    let backoff = doubling(secs(2), secs(60));
    let specs = vec![TaskSpec::new(
        "loop",
        RestartPolicy::Always(backoff),
        |_ctx| async { Ok(()) },
    )];
    let (supervisor, mut events) = Supervisor::start(specs);
    let mut restarts = Vec::new();
    while restarts.len() < 2 {
        if let Event::Exited {
            reason, restart_in, ..
        } = next(&mut events).await
        {
            assert_eq!(reason, ExitReason::Completed);
            restarts.extend(restart_in);
        }
    }
    assert_eq!(restarts, [secs(2), secs(4)]);
    assert_eq!(supervisor.status().task("loop").unwrap().restarts, 2);
    // A run that returns Ok is news, not an error.
    let text = logs.text();
    let ended: Vec<_> = text.lines().filter(|l| l.contains("task ended")).collect();
    assert!(ended.len() >= 2, "{text}");
    assert!(ended.iter().all(|l| l.contains(" INFO ")), "{text}");
    assert!(
        !text.contains("task died") && !text.contains("ERROR"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_task_is_flagged_stale() {
    let specs = vec![
        TaskSpec::new("hung", RestartPolicy::Never, |ctx| async move {
            ctx.tick();
            // Stuck on something that never answers, but still "running".
            std::future::pending::<()>().await;
            Ok(())
        })
        .stale_after(secs(3)),
    ];
    let (supervisor, _events) = Supervisor::start(specs);
    time::sleep(secs(2)).await;
    assert!(supervisor.status().healthy());
    time::sleep(secs(2)).await;
    let status = supervisor.status();
    let hung = status.task("hung").unwrap();
    assert_eq!(hung.state, TaskState::Running);
    assert!(hung.is_stale(status.at));
    assert!(!status.healthy());
    assert!(
        status.to_string().contains("STALE, silent for 4.0s"),
        "{status}"
    );
}

#[tokio::test(start_paused = true)]
async fn stop_completes_within_the_deadline_when_tasks_cooperate() {
    let specs = vec![
        TaskSpec::new("a", RestartPolicy::Never, |ctx| ticking(ctx, secs(1))),
        // Needs 1 s of async cleanup after the stop request: within 5 s.
        TaskSpec::new("b", RestartPolicy::Never, |ctx| async move {
            ctx.cancelled().await;
            time::sleep(secs(1)).await;
            Ok(())
        }),
    ];
    let (supervisor, _events) = Supervisor::start(specs);
    time::sleep(secs(3)).await;
    let asked = Instant::now();
    let report = supervisor.stop(secs(5)).await;
    assert_eq!(Instant::now() - asked, secs(1));
    for task in &report.tasks {
        assert_eq!(
            exit_reason(&task.state),
            Some(&ExitReason::Stopped),
            "{}",
            task.name
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_that_overruns_the_deadline_is_aborted_and_reported() {
    let specs = vec![
        TaskSpec::new("polite", RestartPolicy::Never, |ctx| ticking(ctx, secs(1))),
        // Ignores the token entirely.
        TaskSpec::new("stubborn", RestartPolicy::Never, |_ctx| async {
            time::sleep(secs(3600)).await;
            Ok(())
        }),
    ];
    let (supervisor, _events) = Supervisor::start(specs);
    let asked = Instant::now();
    let report = supervisor.stop(secs(2)).await;
    assert_eq!(Instant::now() - asked, secs(2));
    let reason = |name| exit_reason(&report.task(name).unwrap().state).cloned();
    assert_eq!(reason("polite"), Some(ExitReason::Stopped));
    assert_eq!(reason("stubborn"), Some(ExitReason::Aborted));
}

#[tokio::test(start_paused = true)]
async fn a_task_backing_off_when_stop_arrives_is_not_run_again() {
    let backoff = doubling(secs(10), secs(60));
    let specs = vec![TaskSpec::new(
        "crashy",
        RestartPolicy::OnFailure(backoff),
        |_ctx| async { anyhow::bail!("boom") },
    )];
    let (supervisor, mut events) = Supervisor::start(specs);
    while !matches!(next(&mut events).await, Event::Exited { .. }) {}
    let report = supervisor.stop(secs(1)).await;
    let crashy = report.task("crashy").unwrap();
    assert_eq!(crashy.runs, 1);
    assert_eq!(exit_reason(&crashy.state), Some(&ExitReason::Stopped));
    assert_eq!(crashy.last_failure.as_deref(), Some("boom"));
}

/// `stop` dropped at any await point (its caller timed out, say) still
/// stops every task: no run outlives the stop deadline, none is restarted.
#[tokio::test(start_paused = true)]
async fn stop_dropped_at_every_await_point_still_stops_every_task() {
    use common::testing::cancel_at_every_await;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    /// Counts live runs; the count drops when a run ends or is aborted.
    struct Live(Arc<AtomicUsize>);
    impl Drop for Live {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let live = Arc::new(AtomicUsize::new(0));
    let polls = cancel_at_every_await(
        |_| {
            let live = Arc::clone(&live);
            let specs = vec![
                TaskSpec::new(
                    "polite",
                    RestartPolicy::Always(doubling(secs(1), secs(4))),
                    {
                        let live = Arc::clone(&live);
                        move |ctx| {
                            live.fetch_add(1, Ordering::SeqCst);
                            let guard = Live(Arc::clone(&live));
                            async move {
                                let _guard = guard;
                                ticking(ctx, secs(1)).await
                            }
                        }
                    },
                ),
                TaskSpec::new("stubborn", RestartPolicy::Never, move |_ctx| {
                    live.fetch_add(1, Ordering::SeqCst);
                    let guard = Live(Arc::clone(&live));
                    async move {
                        let _guard = guard;
                        time::sleep(secs(3600)).await;
                        Ok(())
                    }
                }),
            ];
            let (supervisor, _events) = Supervisor::start(specs);
            async move {
                // Let the runs start, then stop with a 2 s deadline.
                tokio::task::yield_now().await;
                supervisor.stop(secs(2)).await
            }
        },
        async |_| {
            // Whatever point the stop was dropped at, 2 s later (plus the
            // default grace for a supervisor dropped before `stop` ran)
            // every run has ended or been aborted.
            time::sleep(examples_lifecycle::supervisor::DEFAULT_GRACE + secs(3)).await;
            assert_eq!(live.load(Ordering::SeqCst), 0, "a run outlived the stop");
        },
    )
    .await;
    assert!(polls >= 2, "{polls}");
}

/// `is_cancelled` is the polling form of `cancelled()`: false while the
/// task runs, true once the stop is asked. A task that polls it (a CPU loop
/// with no await to put in a `select!`) stops in time.
#[tokio::test(start_paused = true)]
async fn is_cancelled_turns_true_when_the_stop_is_asked() {
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let specs = vec![TaskSpec::new("poller", RestartPolicy::Never, move |ctx| {
        let seen_tx = seen_tx.clone();
        async move {
            // Err: the test's receiver is gone (it failed already).
            let _ = seen_tx.send(ctx.is_cancelled());
            while !ctx.is_cancelled() {
                time::sleep(Duration::from_millis(100)).await;
            }
            let _ = seen_tx.send(ctx.is_cancelled());
            Ok(())
        }
    })];
    let (supervisor, _events) = Supervisor::start(specs);
    time::sleep(secs(1)).await;
    assert_eq!(seen_rx.recv().await, Some(false), "running: not cancelled");
    let report = supervisor.stop(secs(5)).await;
    assert_eq!(seen_rx.recv().await, Some(true), "after the stop");
    assert_eq!(
        exit_reason(&report.task("poller").unwrap().state),
        Some(&ExitReason::Stopped)
    );
}

#[test]
fn a_task_spec_debugs_as_its_name_and_policy() {
    let spec = TaskSpec::new("heartbeat", RestartPolicy::Never, |_ctx| async { Ok(()) });
    let debug = format!("{spec:?}");
    assert!(
        debug.contains("\"heartbeat\"") && debug.contains("Never"),
        "{debug}"
    );
}

/// One task's status line, built by hand: the report's rules on their own.
fn status(name: &str, state: TaskState, at: Instant) -> examples_lifecycle::supervisor::TaskStatus {
    examples_lifecycle::supervisor::TaskStatus {
        name: name.to_owned(),
        state,
        runs: 1,
        restarts: 0,
        ticks: 0,
        last_tick: None,
        running_since: Some(at),
        last_failure: None,
        stale_after: Some(secs(5)),
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_is_stale_only_once_its_silence_passes_the_limit() {
    let start = Instant::now();
    let task = status("quiet", TaskState::Running, start);
    assert!(
        !task.is_stale(start + secs(5)),
        "exactly the limit is not stale"
    );
    assert!(task.is_stale(start + secs(5) + Duration::from_millis(1)));
    let exited = status("done", TaskState::Exited(ExitReason::Completed), start);
    assert!(
        !exited.is_stale(start + secs(60)),
        "only a running task is stale"
    );
}

#[test]
fn exit_reasons_read_as_words() {
    let words: Vec<String> = [
        ExitReason::Completed,
        ExitReason::Failed("disk full".into()),
        ExitReason::Panicked("boom".into()),
        ExitReason::Stopped,
        ExitReason::Aborted,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        words,
        [
            "completed",
            "failed: disk full",
            "panicked: boom",
            "stopped",
            "aborted after the stop deadline"
        ]
    );
}

/// The table and the `--json` summary say what each task is doing.
#[tokio::test(start_paused = true)]
async fn the_report_prints_liveness_and_a_json_summary() {
    use examples_lifecycle::supervisor::StatusReport;
    let start = Instant::now();
    let at = start + secs(8);
    let mut ticking = status("ticking", TaskState::Running, start);
    ticking.last_tick = Some(start + secs(6));
    ticking.ticks = 3;
    let silent = status("silent", TaskState::Running, start);
    let mut fresh = status("fresh", TaskState::Running, start + secs(7));
    fresh.stale_after = None;
    let mut failed = status(
        "failed",
        TaskState::Exited(ExitReason::Failed("no db".into())),
        start,
    );
    failed.running_since = None;
    failed.last_failure = Some("no db".into());
    let report = StatusReport {
        at,
        tasks: vec![ticking, silent, fresh, failed],
    };
    let table = report.to_string();
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}: {table}"))
            .to_owned()
    };
    assert!(line("ticking").ends_with("last tick 2.0s ago"), "{table}");
    assert!(
        line("silent").ends_with("STALE, silent for 8.0s"),
        "{table}"
    );
    assert!(line("fresh").ends_with("no tick yet"), "{table}");
    assert!(line("failed").contains("exited: failed: no db"), "{table}");
    assert!(line("failed").ends_with(" -"), "{table}");
    assert!(!report.healthy());
    let json = report.to_json();
    assert_eq!(json["tasks"][0]["name"], "ticking");
    assert_eq!(json["tasks"][0]["ticks"], 3);
    assert_eq!(json["tasks"][0]["exit"], serde_json::Value::Null);
    assert_eq!(json["tasks"][3]["last_failure"], "no db");
    assert_eq!(json["tasks"][3]["runs"], 1);
    assert_eq!(json["tasks"][3]["restarts"], 0);
    assert_eq!(
        json["tasks"][3]["exit"],
        serde_json::json!({"kind": "failed", "detail": "no db"})
    );
}
