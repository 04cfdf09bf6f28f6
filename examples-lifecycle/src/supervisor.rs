//! A small supervisor: named background tasks, restart policies, liveness,
//! and a stop with a deadline.
//!
//! Ports seed Example 11 ("Application with Background Tasks"). The Python
//! version starts three `create_task` loops and only looks at them again at
//! shutdown: if one raises after a minute, the exception sits in a finished
//! task nobody awaits, the app keeps printing heartbeats and looks healthy,
//! and the failure surfaces (at best) as "Task exception was never
//! retrieved" when the process exits. Here every task lives in one
//! `JoinSet` that the supervisor awaits all the time, so an error or a panic
//! is seen the moment it happens, reported as an [`Event`], and handled by
//! the task's [`RestartPolicy`]. Each task records its ticks, so a status
//! report shows *when it last did something*, not just that it exists.
//!
//! Three Rust traps this module is built around:
//!
//! - **Dropping a `JoinHandle` detaches the task.** It keeps running and
//!   nobody sees its result (the mirror image of asyncio, where an
//!   unreferenced task can be garbage-collected). The supervisor owns every
//!   task in a `JoinSet`, and dropping a `JoinSet` aborts its tasks.
//! - **A panic surfaces only as a `JoinError`.** It does not stop the
//!   program; the panic hook prints a line on stderr and the panic payload
//!   waits in the join result of whoever awaits the task. `join_next_with_id`
//!   hands it to us together with the task id, so we know which task died.
//! - **`abort()` is not recursive**, and it lands only at an `.await`. A task
//!   that spawned children of its own must stop them itself (give them a
//!   `child_token()` or own them in a `JoinSet`), and a task that blocks a
//!   thread without awaiting cannot be aborted at all.
//!
//! Stopping: [`Supervisor::stop`] cancels a `CancellationToken` (a polite
//! request that each task sees in its `select!`), waits until a deadline,
//! aborts whatever overran, and returns each task's [`ExitReason`].
//!
//! Primitives: `tokio::task::JoinSet`, `tokio_util::sync::CancellationToken`,
//! `tokio::time::{sleep, timeout_at}`, `tokio::sync::{broadcast, oneshot}`.
//!
//! Production: for a whole service tree reach for `tokio-graceful-shutdown`
//! (subsystems, nested shutdown, error propagation) or an actor framework
//! such as `ractor` (supervision trees). This module is ~300 lines so the
//! mechanism they hide is visible.
//!
//! ```text
//! cargo run --bin background-tasks -- --duration 8s --crash-after 2.5s
//! cargo test -p examples-lifecycle --test supervisor
//! ```

mod runner;
mod status;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use runner::Runner;
pub use status::{ExitReason, StatusReport, TaskState, TaskStatus};

/// The grace period used when a [`Supervisor`] is dropped without `stop`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// How many events a slow subscriber may fall behind before it is told it
/// lagged (a `broadcast` channel never blocks the supervisor).
const EVENT_BUFFER: usize = 256;

/// What the supervisor does when a task's future ends on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RestartPolicy {
    /// Leave it ended, whatever the outcome (a one-shot warm-up job).
    Never,
    /// Restart after an error or a panic; a clean return is final.
    OnFailure(Backoff),
    /// Restart after any end, even `Ok(())`: the task is meant to run forever.
    Always(Backoff),
}

/// The restart delays: the workspace's one backoff schedule. With
/// `Jitter::None` the delays are `base`, `base * factor`, ... up to
/// `max_delay`; a run that lasted at least `max_delay` counts as healthy,
/// and the next failure starts again from `base`.
pub use common::backoff::{Backoff, Jitter};

/// Something the supervisor saw, broadcast to every subscriber at once.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A run of `task` began (run 1 is the first start).
    Started {
        /// The task's name.
        task: String,
        /// Which run this is.
        run: u32,
    },
    /// A run of `task` ended; `restart_in` is set when the policy restarts it.
    Exited {
        /// The task's name.
        task: String,
        /// Why the run ended.
        reason: ExitReason,
        /// The backoff before the next run, if there is one.
        restart_in: Option<Duration>,
    },
}

/// What a supervised task gets: a cancellation signal and a liveness probe.
#[derive(Debug, Clone)]
pub struct TaskContext {
    index: usize,
    cancel: CancellationToken,
    shared: Arc<Shared>,
}

impl TaskContext {
    /// Records that the task did a unit of work now (its liveness).
    pub fn tick(&self) {
        self.shared.update(self.index, |status| {
            status.ticks += 1;
            status.last_tick = Some(Instant::now());
        });
    }

    /// Resolves when the supervisor asks the task to stop. Cancel-safe: use
    /// it as a `select!` branch beside the task's timer or channel.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Whether a stop was requested.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// Builds one run of a task. A factory, not a future, so it can restart.
type MakeRun = Arc<dyn Fn(TaskContext) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// A named task, its restart policy, and how to start a run of it.
pub struct TaskSpec {
    name: String,
    policy: RestartPolicy,
    stale_after: Option<Duration>,
    make: MakeRun,
}

impl std::fmt::Debug for TaskSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSpec")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TaskSpec {
    /// A task called `name` whose runs are made by `make`. Generic over the
    /// future, so tests pass fakes and the binary passes the seed's loops.
    pub fn new<F, Fut>(name: impl Into<String>, policy: RestartPolicy, make: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name: name.into(),
            policy,
            stale_after: None,
            make: Arc::new(move |ctx| Box::pin(make(ctx))),
        }
    }

    /// Marks the task stale in status reports when it has not ticked for
    /// this long (a hung task looks alive to a plain "is it running" check).
    pub fn stale_after(mut self, period: Duration) -> Self {
        self.stale_after = Some(period);
        self
    }
}

/// State read by status reports and written by tasks and the supervisor.
#[derive(Debug)]
struct Shared {
    // std Mutex: every critical section is a few field writes with no
    // .await inside, so a tokio Mutex would only add overhead.
    statuses: Mutex<Vec<TaskStatus>>,
    events: broadcast::Sender<Event>,
}

impl Shared {
    fn update<R>(&self, index: usize, change: impl FnOnce(&mut TaskStatus) -> R) -> R {
        // A poisoned lock means a panic mid-update of plain counters; the
        // data is still usable, and liveness reporting must not die with it.
        let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut statuses[index])
    }

    fn emit(&self, event: Event) {
        // Err only means nobody is subscribed right now: nothing to deliver.
        let _ = self.events.send(event);
    }
}

/// A running set of supervised tasks.
#[derive(Debug)]
pub struct Supervisor {
    shared: Arc<Shared>,
    stop_tx: oneshot::Sender<Duration>,
    runner: JoinHandle<StatusReport>,
}

impl Supervisor {
    /// Starts every task now and returns the supervisor and an event stream.
    ///
    /// Must be called inside a tokio runtime.
    pub fn start(specs: Vec<TaskSpec>) -> (Self, broadcast::Receiver<Event>) {
        let (events, events_rx) = broadcast::channel(EVENT_BUFFER);
        let statuses = specs
            .iter()
            .map(|spec| TaskStatus::new(&spec.name, spec.stale_after))
            .collect();
        let shared = Arc::new(Shared {
            statuses: Mutex::new(statuses),
            events,
        });
        // Every task is spawned here, before returning: none can end
        // unobserved, and the caller's event receiver already exists.
        let runner = Runner::start_all(specs, Arc::clone(&shared));
        let (stop_tx, stop_rx) = oneshot::channel();
        let runner = tokio::spawn(runner.supervise(stop_rx));
        let supervisor = Self {
            shared,
            stop_tx,
            runner,
        };
        (supervisor, events_rx)
    }

    /// Another subscriber to the event stream (sees events from now on).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// A snapshot of every task: state, restarts, ticks and last tick.
    pub fn status(&self) -> StatusReport {
        let statuses = self
            .shared
            .statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        StatusReport::new(statuses.clone())
    }

    /// Asks every task to stop, waits up to `grace`, aborts the rest, and
    /// returns the final report (each task's [`ExitReason`]).
    pub async fn stop(self, grace: Duration) -> StatusReport {
        // Err means the runner already ended, which only a stop request
        // causes; its report is still waiting in the JoinHandle.
        let _ = self.stop_tx.send(grace);
        match self.runner.await {
            Ok(report) => report,
            // The runner is our own code: a panic there is a bug to surface.
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => panic!("supervisor runner was cancelled: {err}"),
        }
    }
}
