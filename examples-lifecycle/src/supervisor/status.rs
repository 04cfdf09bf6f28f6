//! What the supervisor knows about each task, and the status report.
//!
//! Liveness is the point: "the task exists" says nothing (the seed's tasks
//! exist until shutdown even when they are dead or stuck). Each task calls
//! [`TaskContext::tick`](super::TaskContext::tick) after a unit of work; the
//! report shows how long ago that was and flags a task as STALE when it is
//! older than the task's `stale_after`.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Why a run of a task ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum ExitReason {
    /// It returned `Ok(())` on its own, before any stop request.
    Completed,
    /// It returned an error (the cause chain, `{err:#}`).
    Failed(String),
    /// It panicked (the panic message).
    Panicked(String),
    /// It returned after a stop request, within the deadline.
    Stopped,
    /// It overran the stop deadline and was aborted.
    Aborted,
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Completed => f.write_str("completed"),
            Self::Failed(err) => write!(f, "failed: {err}"),
            Self::Panicked(message) => write!(f, "panicked: {message}"),
            Self::Stopped => f.write_str("stopped"),
            Self::Aborted => f.write_str("aborted after the stop deadline"),
        }
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Spawned, waiting for its first poll.
    Starting,
    /// A run is in progress.
    Running,
    /// Waiting out the backoff before the next run.
    BackingOff {
        /// When the next run starts.
        until: Instant,
    },
    /// Ended for good (policy or stop).
    Exited(ExitReason),
}

/// One task's line in a status report.
#[derive(Debug, Clone)]
pub struct TaskStatus {
    /// The task's name.
    pub name: String,
    /// Its current state.
    pub state: TaskState,
    /// How many runs began (1 after the first start).
    pub runs: u32,
    /// How many restarts the policy scheduled.
    pub restarts: u32,
    /// Units of work reported through `tick()`, across all runs.
    pub ticks: u64,
    /// When the task last ticked.
    pub last_tick: Option<Instant>,
    /// When the current (or last) run began.
    pub running_since: Option<Instant>,
    /// The most recent error or panic message, kept after a restart.
    pub last_failure: Option<String>,
    /// Silence longer than this marks a running task stale.
    pub stale_after: Option<Duration>,
}

impl TaskStatus {
    pub(super) fn new(name: &str, stale_after: Option<Duration>) -> Self {
        Self {
            name: name.to_owned(),
            state: TaskState::Starting,
            runs: 0,
            restarts: 0,
            ticks: 0,
            last_tick: None,
            running_since: None,
            last_failure: None,
            stale_after,
        }
    }

    pub(super) fn record_failure(&mut self, reason: &ExitReason) {
        if let ExitReason::Failed(text) | ExitReason::Panicked(text) = reason {
            self.last_failure = Some(text.clone());
        }
    }

    /// How long since the task last showed life (its last tick, or the
    /// start of its run if it has not ticked in this run yet).
    pub fn silent_for(&self, now: Instant) -> Option<Duration> {
        let last_sign = match (self.last_tick, self.running_since) {
            (Some(tick), Some(since)) => tick.max(since),
            (tick, since) => tick.or(since)?,
        };
        Some(now.saturating_duration_since(last_sign))
    }

    /// A running task that has been silent longer than its `stale_after`.
    pub fn is_stale(&self, now: Instant) -> bool {
        match (&self.state, self.stale_after, self.silent_for(now)) {
            (TaskState::Running, Some(limit), Some(silent)) => silent > limit,
            _ => false,
        }
    }
}

/// A snapshot of every task, taken at one instant.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// When the snapshot was taken.
    pub at: Instant,
    /// One entry per task, in the order they were given to the supervisor.
    pub tasks: Vec<TaskStatus>,
}

impl StatusReport {
    pub(super) fn new(tasks: Vec<TaskStatus>) -> Self {
        Self {
            at: Instant::now(),
            tasks,
        }
    }

    /// The status of the task called `name`.
    pub fn task(&self, name: &str) -> Option<&TaskStatus> {
        self.tasks.iter().find(|task| task.name == name)
    }

    /// The summary `--json` prints: per task its exit reason (null while
    /// still alive), runs, restarts, ticks and last failure.
    pub fn to_json(&self) -> serde_json::Value {
        let tasks: Vec<_> = self
            .tasks
            .iter()
            .map(|task| {
                let exit = match &task.state {
                    TaskState::Exited(reason) => Some(reason),
                    _ => None,
                };
                serde_json::json!({
                    "name": task.name,
                    "exit": exit,
                    "runs": task.runs,
                    "restarts": task.restarts,
                    "ticks": task.ticks,
                    "last_failure": task.last_failure,
                })
            })
            .collect();
        serde_json::json!({ "tasks": tasks })
    }

    /// Whether every task that should be running is running and not stale.
    pub fn healthy(&self) -> bool {
        self.tasks.iter().all(|task| match &task.state {
            TaskState::Running => !task.is_stale(self.at),
            TaskState::Exited(reason) => *reason == ExitReason::Completed,
            TaskState::Starting | TaskState::BackingOff { .. } => false,
        })
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  {:<16} {:<34} {:>4} {:>8} {:>6}  liveness",
            "task", "state", "runs", "restarts", "ticks"
        )?;
        for task in &self.tasks {
            let state = match &task.state {
                TaskState::Starting => "starting".to_owned(),
                TaskState::Running => "running".to_owned(),
                TaskState::BackingOff { until } => {
                    let wait = until.saturating_duration_since(self.at);
                    format!("restarting in {:.1}s", wait.as_secs_f64())
                }
                TaskState::Exited(reason) => format!("exited: {reason}"),
            };
            // Long panic messages would break the table; the event line
            // above the report has the full text.
            let state: String = state.chars().take(34).collect();
            let liveness = match task.silent_for(self.at) {
                Some(silent) if task.is_stale(self.at) => {
                    format!("STALE, silent for {:.1}s", silent.as_secs_f64())
                }
                Some(_) if task.last_tick.is_some() => {
                    let ago = task
                        .last_tick
                        .map_or(Duration::ZERO, |t| self.at.saturating_duration_since(t));
                    format!("last tick {:.1}s ago", ago.as_secs_f64())
                }
                Some(_) => "no tick yet".to_owned(),
                None => "-".to_owned(),
            };
            writeln!(
                f,
                "  {:<16} {:<34} {:>4} {:>8} {:>6}  {liveness}",
                task.name, state, task.runs, task.restarts, task.ticks
            )?;
        }
        Ok(())
    }
}
