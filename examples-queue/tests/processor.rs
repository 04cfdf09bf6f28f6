//! Behaviour of the producer/consumer pipeline: nothing lost under random
//! errors and panics, retries then dead letters, shutdown with a drain, and
//! the monitor.
//!
//! Equivalent mutants (cargo mutants on `src/processor.rs`):
//! - `MonitorGuard::drop` emptied (no `abort`): its `DropGuard` cancels the
//!   token, and the monitor's biased `select!` then returns before another
//!   tick; the abort only frees the idle task a little sooner.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use examples_queue::demo::SimulatedWork;
use examples_queue::processor::{self, Config, Handler, Snapshot, Task};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

fn config(tasks: u64) -> Config {
    Config {
        producers: 3,
        consumers: 5,
        tasks,
        capacity: 20,
        aging: None,
        max_retries: 2,
        batch: 1,
        seed: 7,
        monitor_interval: None,
        drain_timeout: Duration::from_secs(10),
    }
}

fn work(error_rate: f64) -> SimulatedWork {
    SimulatedWork {
        processing: Duration::from_millis(1)..=Duration::from_millis(20),
        error_rate,
        seed: 7,
    }
}

/// With a 30% error rate every produced task is either completed or
/// dead-lettered after exactly max_retries + 1 attempts, and the queue ends empty.
#[tokio::test(start_paused = true)]
async fn nothing_is_lost_under_random_errors() {
    for (seed, batch) in [(1, 1), (2, 4), (3, 16)] {
        let config = Config {
            seed,
            batch,
            ..config(2_000)
        };
        let report = timeout(
            LIMIT,
            processor::run(config, work(0.3), |_: &Snapshot| {}, std::future::pending()),
        )
        .await
        .unwrap()
        .unwrap();
        let c = report.counts;
        assert!(report.all_done(), "{report:?}");
        assert_eq!(c.produced, 2_000);
        assert_eq!(c.completed + c.dead_lettered, 2_000);
        assert!(c.dead_lettered > 0 && c.completed > 0, "{c:?}");
        // Every failure is followed by either a retry or a dead letter.
        assert_eq!(c.failed, c.retried + c.dead_lettered);
        assert_eq!(report.dead_letters.len() as u64, c.dead_lettered);
        assert!(
            report
                .dead_letters
                .iter()
                .all(|letter| letter.task.failures == 3)
        );
        assert_eq!(
            report.wait.count,
            c.completed + c.failed,
            "one wait sample per attempt"
        );
        assert!(!report.interrupted);
    }
}

/// Fails or panics on every attempt of some tasks; succeeds on the others.
struct Faulty;

impl Handler for Faulty {
    fn handle(&self, task: &Task) -> impl Future<Output = anyhow::Result<()>> + Send {
        let id = task.id;
        async move {
            tokio::task::yield_now().await;
            match id % 10 {
                3 => panic!("boom on task {id}"),
                7 => anyhow::bail!("bad input in task {id}"),
                _ => Ok(()),
            }
        }
    }
}

/// A handler that panics does not kill its consumer or hang the run: the
/// panic counts as a failed attempt and the task is dead-lettered.
#[tokio::test(start_paused = true)]
async fn panicking_handlers_are_retried_then_dead_lettered() {
    let report = timeout(
        LIMIT,
        processor::run(
            config(100),
            Faulty,
            |_: &Snapshot| {},
            std::future::pending(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let c = report.counts;
    assert!(report.all_done(), "{report:?}");
    assert_eq!((c.produced, c.completed, c.dead_lettered), (100, 80, 20));
    assert_eq!(c.failed, 20 * 3);
    assert_eq!(c.retried, 20 * 2);
    let mut letters: Vec<(u64, bool)> = report
        .dead_letters
        .iter()
        .map(|letter| {
            (
                letter.task.id,
                letter.error.starts_with("handler panicked: boom"),
            )
        })
        .collect();
    letters.sort_unstable();
    let expected: Vec<(u64, bool)> = (0..100)
        .filter(|id| id % 10 == 3 || id % 10 == 7)
        .map(|id| (id, id % 10 == 3))
        .collect();
    assert_eq!(letters, expected);
}

/// A shutdown request stops production early; the accepted tasks are
/// drained, so the invariant still holds.
#[tokio::test(start_paused = true)]
async fn shutdown_stops_producers_and_drains_accepted_tasks() {
    let shutdown = tokio::time::sleep(Duration::from_millis(200));
    let report = timeout(
        LIMIT,
        processor::run(config(100_000), work(0.1), |_: &Snapshot| {}, shutdown),
    )
    .await
    .unwrap()
    .unwrap();
    let c = report.counts;
    assert!(report.interrupted);
    assert!(report.all_done(), "{report:?}");
    assert!(c.produced > 0 && c.produced < 100_000, "{c:?}");
}

/// With batched pushes, a shutdown that closes the queue mid-batch counts
/// only the part of the batch the queue accepted: the invariant still holds.
/// The producers stop at the close (2^40 tasks would never finish).
#[tokio::test(start_paused = true)]
async fn a_shutdown_mid_batch_counts_only_the_accepted_part() {
    let config = Config {
        batch: 8,
        ..config(1 << 40)
    };
    let shutdown = tokio::time::sleep(Duration::from_millis(200));
    let report = timeout(
        LIMIT,
        processor::run(config, work(0.1), |_: &Snapshot| {}, shutdown),
    )
    .await
    .unwrap()
    .unwrap();
    let c = report.counts;
    assert!(report.interrupted);
    assert!(c.produced > 0 && c.produced < 100_000, "{c:?}");
    assert!(report.all_done(), "{report:?}");
}

/// The two predicates of the report, on a report that breaks them.
#[tokio::test(start_paused = true)]
async fn the_report_says_when_a_task_is_unaccounted_for_or_left_over() {
    let never = std::future::pending::<()>();
    let report = processor::run(config(30), work(0.0), |_: &Snapshot| {}, never)
        .await
        .unwrap();
    assert!(report.invariant_holds() && report.all_done(), "{report:?}");
    let mut lost = report.clone();
    lost.counts.produced += 1;
    assert!(!lost.invariant_holds(), "one produced task is in no count");
    assert!(!lost.all_done());
    // Accounted for, but not done: one task left queued, or in flight.
    let mut queued = report.clone();
    queued.counts.produced += 1;
    queued.left_queued = 1;
    assert!(queued.invariant_holds() && !queued.all_done());
    let mut in_flight = report.clone();
    in_flight.counts.produced += 1;
    in_flight.left_in_flight = 1;
    assert!(in_flight.invariant_holds() && !in_flight.all_done());
}

/// When consumers cannot drain in time, the run ends anyway and every task
/// is still accounted for: the ones the aborted consumers held are reported
/// in flight, not silently dropped (produced = completed + dead + queued +
/// in flight), and the run is reported as not all done.
#[tokio::test(start_paused = true)]
async fn a_drain_timeout_keeps_every_task_accounted_for() {
    let slow = SimulatedWork {
        processing: Duration::from_secs(60)..=Duration::from_secs(60),
        error_rate: 0.0,
        seed: 1,
    };
    let config = Config {
        drain_timeout: Duration::from_secs(1),
        ..config(1_000)
    };
    let shutdown = tokio::time::sleep(Duration::from_millis(10));
    let report = timeout(
        LIMIT,
        processor::run(config, slow, |_: &Snapshot| {}, shutdown),
    )
    .await
    .unwrap()
    .unwrap();
    let c = report.counts;
    assert!(report.interrupted);
    assert_eq!(
        report.left_in_flight, 5,
        "each consumer held one task: {report:?}"
    );
    assert_eq!(report.left_queued, 20, "the queue was full: {report:?}");
    assert_eq!(c.produced, 25, "{c:?}");
    assert_eq!(
        c.produced,
        c.completed + c.dead_lettered + report.left_queued as u64 + report.left_in_flight as u64
    );
    assert!(report.invariant_holds(), "{report:?}");
    assert!(!report.all_done());
}

/// The producer's side of the same rule, at every point a batch can be cut:
/// one producer pushing batches of 8 into a queue of each capacity from 1 to
/// 16, consumers stuck on their first task. The close finds the producer
/// blocked with 1 to 8 items of its batch left, and only the part the queue
/// took is produced (with 3 producers the miscounts can cancel out).
#[tokio::test(start_paused = true)]
async fn a_batch_cut_by_the_close_counts_exactly_what_the_queue_took() {
    for capacity in 1..=16 {
        let stuck = SimulatedWork {
            processing: Duration::from_secs(60)..=Duration::from_secs(60),
            error_rate: 0.0,
            seed: 1,
        };
        let config = Config {
            producers: 1,
            consumers: 2,
            capacity,
            batch: 8,
            drain_timeout: Duration::from_secs(1),
            ..config(1_000)
        };
        let shutdown = tokio::time::sleep(Duration::from_millis(10));
        let report = timeout(
            LIMIT,
            processor::run(config, stuck, |_: &Snapshot| {}, shutdown),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            report.left_queued, capacity,
            "capacity {capacity}: {report:?}"
        );
        assert_eq!(
            report.counts.produced,
            (capacity + report.left_in_flight) as u64,
            "capacity {capacity}: {report:?}"
        );
        assert!(report.invariant_holds(), "capacity {capacity}: {report:?}");
    }
}

/// Panics in `handle` itself (before it returns a future).
struct EarlyPanic;

impl Handler for EarlyPanic {
    fn handle(&self, task: &Task) -> impl Future<Output = anyhow::Result<()>> + Send {
        assert!(task.id % 10 != 3, "early boom on task {}", task.id);
        let id = task.id;
        async move {
            tokio::task::yield_now().await;
            anyhow::ensure!(id % 10 != 7, "bad input in task {id}");
            Ok(())
        }
    }
}

/// A handler that panics before returning its future is a failed attempt
/// like any other: retried, then dead-lettered; the run completes.
#[tokio::test(start_paused = true)]
async fn a_handler_that_panics_before_returning_its_future_is_retried_then_dead_lettered() {
    let report = timeout(
        LIMIT,
        processor::run(
            config(100),
            EarlyPanic,
            |_: &Snapshot| {},
            std::future::pending(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let c = report.counts;
    assert!(report.all_done(), "{report:?}");
    assert_eq!((c.produced, c.completed, c.dead_lettered), (100, 80, 20));
    assert_eq!((c.failed, c.retried), (60, 40));
    let early = report
        .dead_letters
        .iter()
        .filter(|l| l.error.starts_with("handler panicked: early boom on task"))
        .count();
    assert_eq!(early, 10);
}

/// Succeeds after a yield, counting the handler futures alive.
#[derive(Clone, Default)]
struct Counted(Arc<AtomicUsize>);

struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Handler for Counted {
    fn handle(&self, _task: &Task) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.0.fetch_add(1, SeqCst);
        let alive = Alive(Arc::clone(&self.0));
        async move {
            let _alive = alive;
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        }
    }
}

/// `run` dropped at every await point (its caller timed out, or was itself
/// cancelled) leaves nothing behind: no handler future keeps running and
/// the monitor stops calling `on_snapshot`.
#[tokio::test(start_paused = true)]
async fn run_cancelled_anywhere_leaves_no_monitor_or_handler_behind() {
    let snapshots = Arc::new(AtomicUsize::new(0));
    let handler = Counted::default();
    let config = Config {
        monitor_interval: Some(Duration::from_millis(1)),
        ..config(30)
    };
    let polls = common::testing::cancel_at_every_await(
        |_| {
            let sink = Arc::clone(&snapshots);
            processor::run(
                config.clone(),
                handler.clone(),
                move |_: &Snapshot| {
                    sink.fetch_add(1, SeqCst);
                },
                std::future::pending(),
            )
        },
        async |n| {
            // Aborted tasks are dropped at their next poll: give them one.
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(
                handler.0.load(SeqCst),
                0,
                "a handler outlived run (n = {n})"
            );
            let before = snapshots.load(SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(
                snapshots.load(SeqCst),
                before,
                "the monitor outlived run (n = {n})"
            );
        },
    )
    .await;
    assert!(polls > 3, "{polls}");
}

/// A panicking `on_snapshot` does not fail the run or stop the work: the
/// panics are counted in the report and the monitor keeps going.
#[tokio::test(start_paused = true)]
async fn a_panicking_monitor_callback_is_reported_and_the_run_completes() {
    let calls = Arc::new(AtomicUsize::new(0));
    let sink = Arc::clone(&calls);
    let config = Config {
        monitor_interval: Some(Duration::from_millis(50)),
        ..config(200)
    };
    let report = timeout(
        LIMIT,
        processor::run(
            config,
            work(0.0),
            move |_: &Snapshot| {
                let n = sink.fetch_add(1, SeqCst);
                assert!(n % 2 == 1, "on_snapshot call {n} panics");
            },
            std::future::pending(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(report.all_done(), "{report:?}");
    let calls = calls.load(SeqCst) as u64;
    assert!(calls >= 4, "{calls}");
    assert_eq!(report.callback_panics, calls.div_ceil(2));
}

/// The monitor reports on its interval with depth per priority and counts
/// that only grow.
#[tokio::test(start_paused = true)]
async fn the_monitor_reports_depths_and_growing_counts() {
    let snapshots = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&snapshots);
    let config = Config {
        monitor_interval: Some(Duration::from_millis(100)),
        ..config(500)
    };
    let report = timeout(
        LIMIT,
        processor::run(
            config,
            work(0.1),
            move |s: &Snapshot| sink.lock().unwrap().push(s.clone()),
            std::future::pending(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let snapshots = snapshots.lock().unwrap();
    assert!(snapshots.len() >= 5, "{} snapshots", snapshots.len());
    let first = &snapshots[0];
    assert_eq!(first.elapsed, Duration::from_millis(100));
    assert_eq!(first.queue.depths.iter().sum::<usize>(), first.queue.queued);
    assert_eq!(
        first.queue.queued, 20,
        "producers outpace consumers: the queue is full"
    );
    assert!(first.queue.in_flight <= 5 && first.wait.count > 0);
    assert!(
        snapshots
            .windows(2)
            .all(|w| w[0].counts.completed <= w[1].counts.completed)
    );
    assert!(snapshots.last().unwrap().counts.completed <= report.counts.completed);
}

/// Zero producers or consumers is a clear error, not a hang.
#[tokio::test(start_paused = true)]
async fn zero_workers_is_an_error() {
    let config = Config {
        consumers: 0,
        ..config(10)
    };
    let err = processor::run(config, work(0.0), |_: &Snapshot| {}, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least 1"), "{err}");
}
