//! The supervisor loop: owns every task in a `JoinSet`, notices each end
//! the moment it happens, applies restart policies, and runs the stop.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use common::backoff::Delays;
use rand::rngs::StdRng;
use tokio::sync::oneshot;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    DEFAULT_GRACE, Event, ExitReason, RestartPolicy, Shared, StatusReport, TaskContext, TaskSpec,
    TaskState,
};

/// How one spawned run ended, as seen from inside the task.
pub(super) enum RunOutcome {
    /// The task's future returned.
    Finished(anyhow::Result<()>),
    /// Stop was requested during the backoff sleep; the run never began.
    NotStarted,
}

/// The supervisor loop: owns the tasks, restarts them, stops them.
pub(super) struct Runner {
    specs: Vec<TaskSpec>,
    shared: Arc<Shared>,
    // The JoinSet is the whole point: we await *every* task, all the time.
    tasks: JoinSet<RunOutcome>,
    ids: HashMap<Id, usize>,
    cancel: CancellationToken,
    // Per task, the delays of its current crash loop (None: no loop yet,
    // or a healthy run ended the last one). Stateful because jittered
    // schedules draw each delay from the one before.
    crash_loops: Vec<Option<Delays<StdRng>>>,
}

impl Runner {
    pub(super) fn start_all(specs: Vec<TaskSpec>, shared: Arc<Shared>) -> Self {
        let mut runner = Self {
            crash_loops: specs.iter().map(|_| None).collect(),
            specs,
            shared,
            tasks: JoinSet::new(),
            ids: HashMap::new(),
            cancel: CancellationToken::new(),
        };
        for index in 0..runner.specs.len() {
            runner.spawn_run(index, Duration::ZERO);
        }
        runner
    }

    fn spawn_run(&mut self, index: usize, delay: Duration) {
        let ctx = TaskContext {
            index,
            cancel: self.cancel.clone(),
            shared: Arc::clone(&self.shared),
        };
        let make = Arc::clone(&self.specs[index].make);
        let name = self.specs[index].name.clone();
        let handle = self.tasks.spawn(async move {
            // The backoff sleeps inside the new task, so the supervisor loop
            // is never blocked and keeps noticing the other tasks at once.
            tokio::select! {
                () = ctx.cancel.cancelled() => return RunOutcome::NotStarted,
                () = tokio::time::sleep(delay) => {}
            }
            let run = ctx.shared.update(ctx.index, |status| {
                status.runs += 1;
                status.state = TaskState::Running;
                status.running_since = Some(Instant::now());
                status.runs
            });
            ctx.shared.emit(Event::Started { task: name, run });
            // `make` runs inside the task too: a panic while building the
            // future is caught like any other panic in the task.
            RunOutcome::Finished(make(ctx).await)
        });
        self.ids.insert(handle.id(), index);
    }

    pub(super) async fn supervise(
        mut self,
        mut stop_rx: oneshot::Receiver<Duration>,
    ) -> StatusReport {
        let grace = loop {
            tokio::select! {
                // `Some(..)` pattern: an empty set (every task ended for good)
                // disables this branch and we simply wait for the stop.
                Some(joined) = self.tasks.join_next_with_id() => self.on_exit(joined),
                // Err: the Supervisor was dropped without stop(); stop anyway.
                grace = &mut stop_rx => break grace.unwrap_or(DEFAULT_GRACE),
            }
        };
        self.shutdown(grace).await
    }

    /// Identifies the task, classifies the end, and applies its policy.
    fn on_exit(&mut self, joined: Result<(Id, RunOutcome), JoinError>) {
        let (index, reason) = self.classify(joined);
        let now = Instant::now();
        let spec = &self.specs[index];
        let backoff = match (spec.policy, &reason) {
            (RestartPolicy::Always(backoff), _) => Some(backoff),
            (
                RestartPolicy::OnFailure(backoff),
                ExitReason::Failed(_) | ExitReason::Panicked(_),
            ) => Some(backoff),
            _ => None,
        };
        let name = spec.name.clone();
        let restart_in = backoff.map(|backoff| {
            let ran_for = self.shared.update(index, |status| {
                status
                    .running_since
                    .map_or(Duration::ZERO, |since| now - since)
            });
            let crash_loop = &mut self.crash_loops[index];
            // A long healthy run forgives earlier failures.
            if ran_for >= backoff.max_delay {
                *crash_loop = None;
            }
            crash_loop
                .get_or_insert_with(|| backoff.delays(rand::make_rng()))
                .next()
                // The schedule is endless; the cap is the safe answer anyway.
                .unwrap_or(backoff.max_delay)
        });
        self.shared.update(index, |status| {
            status.record_failure(&reason);
            status.state = match restart_in {
                // checked_add: `max_delay` is the caller's; an absurd one
                // must not panic here (the sleep itself saturates).
                Some(delay) => TaskState::BackingOff {
                    until: now.checked_add(delay).unwrap_or(now),
                },
                None => TaskState::Exited(reason.clone()),
            };
            if restart_in.is_some() {
                status.restarts += 1;
            }
        });
        match &reason {
            ExitReason::Failed(_) | ExitReason::Panicked(_) => {
                tracing::error!(task = %name, %reason, ?restart_in, "task died");
            }
            _ => tracing::info!(task = %name, %reason, ?restart_in, "task ended"),
        }
        self.shared.emit(Event::Exited {
            task: name,
            reason,
            restart_in,
        });
        if let Some(delay) = restart_in {
            self.spawn_run(index, delay);
        }
    }

    /// Maps a join result to (task index, reason). Panics and aborts arrive
    /// as a `JoinError`, which still carries the task id.
    fn classify(&mut self, joined: Result<(Id, RunOutcome), JoinError>) -> (usize, ExitReason) {
        let stopping = self.cancel.is_cancelled();
        let (id, reason) = match joined {
            Ok((id, RunOutcome::Finished(Ok(())))) if stopping => (id, ExitReason::Stopped),
            Ok((id, RunOutcome::Finished(Ok(())))) => (id, ExitReason::Completed),
            Ok((id, RunOutcome::Finished(Err(err)))) => {
                (id, ExitReason::Failed(format!("{err:#}")))
            }
            Ok((id, RunOutcome::NotStarted)) => (id, ExitReason::Stopped),
            Err(err) if err.is_panic() => (err.id(), ExitReason::Panicked(panic_message(err))),
            Err(err) => (err.id(), ExitReason::Aborted),
        };
        // Every id in the set was inserted by spawn_run before the task
        // could finish, and is removed exactly once, here.
        let index = self
            .ids
            .remove(&id)
            .expect("joined task was spawned by spawn_run");
        (index, reason)
    }

    /// Cancel, wait until the deadline, abort the rest, report.
    async fn shutdown(mut self, grace: Duration) -> StatusReport {
        self.cancel.cancel();
        // checked_add: a grace too large for the clock means "wait for
        // every task", which is what `timeout_at` far away would do.
        let now = Instant::now();
        let deadline = now.checked_add(grace);
        let mut deadline_passed = false;
        loop {
            let joined = if let (false, Some(deadline)) = (deadline_passed, deadline) {
                match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                    Ok(joined) => joined,
                    Err(_elapsed) => {
                        // Overran: abort. Each aborted task then joins with
                        // a cancelled JoinError, classified as Aborted.
                        tracing::warn!(
                            remaining = self.tasks.len(),
                            "stop deadline passed, aborting"
                        );
                        self.tasks.abort_all();
                        deadline_passed = true;
                        continue;
                    }
                }
            } else {
                self.tasks.join_next_with_id().await
            };
            let Some(joined) = joined else { break };
            let (index, reason) = self.classify(joined);
            tracing::info!(task = %self.specs[index].name, %reason, "task stopped");
            self.shared.update(index, |status| {
                status.record_failure(&reason);
                status.state = TaskState::Exited(reason.clone());
            });
            self.shared.emit(Event::Exited {
                task: self.specs[index].name.clone(),
                reason,
                restart_in: None,
            });
        }
        let statuses = self
            .shared
            .statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        StatusReport::new(statuses.clone())
    }
}

/// The text of a panic (`panic!("...")` payloads are `&str` or `String`).
fn panic_message(err: JoinError) -> String {
    let payload = err.into_panic();
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
