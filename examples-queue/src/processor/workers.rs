//! The three kinds of task of the pipeline: producer, consumer, monitor.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use common::{LatencyRecorder, Stopwatch};
use futures::FutureExt as _;
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{DeadLetter, Handler, LEVELS, Shared, Snapshot, Task};
use crate::priority_queue::{Claim, Closed};

/// Makes `count` tasks with seeded random levels and pushes them, in batches
/// of `config.batch`. Stops early when the queue is closed (shutdown); only
/// tasks the queue accepted count as produced.
pub(super) async fn produce<H: Handler>(shared: Arc<Shared<H>>, index: usize, count: u64) {
    let config = &shared.config;
    // One seeded generator per producer: reproducible whatever the interleaving.
    let mut rng = StdRng::seed_from_u64(config.seed.wrapping_add(index as u64));
    let producers = config.producers as u64;
    let mut made = 0;
    while made < count {
        let size = (count - made).min(config.batch as u64);
        let mut batch: Vec<(u8, Task)> = (made..made + size)
            .map(|k| {
                let level = rng.random_range(0..LEVELS.len() as u8);
                // Interleaved ids are unique across producers with no shared counter.
                let id = k * producers + index as u64;
                (
                    level,
                    Task {
                        id,
                        producer: index,
                        level,
                        failures: 0,
                    },
                )
            })
            .collect();
        made += size;
        let accepted = if batch.len() == 1 {
            // A single item: plain push, no Vec round trip on the rejection path.
            let (level, task) = batch.pop().expect("batch of one");
            match shared.queue.push(level, task).await {
                Ok(()) => 1,
                Err(Closed(_)) => 0,
            }
        } else {
            match shared.queue.push_many(batch).await {
                Ok(()) => size,
                Err(Closed(rest)) => size - rest.len() as u64,
            }
        };
        shared.counters.produced.fetch_add(accepted, Relaxed);
        if accepted < size {
            tracing::debug!(producer = index, "queue closed; producer stops");
            return;
        }
    }
    tracing::debug!(producer = index, count, "producer finished");
}

/// Takes tasks until the queue is closed and drained, runs the handler on
/// each, and returns this consumer's queue-wait histograms per level.
pub(super) async fn consume<H: Handler>(
    shared: Arc<Shared<H>>,
    index: usize,
) -> Vec<LatencyRecorder> {
    let mut by_level = vec![LatencyRecorder::new(); LEVELS.len()];
    let mut claims = Vec::with_capacity(shared.config.batch);
    while shared
        .queue
        .pop_many(shared.config.batch, &mut claims)
        .await
        > 0
    {
        // Counted before any await: an abort from here on leaves them in flight.
        shared
            .counters
            .in_flight
            .fetch_add(claims.len() as u64, Relaxed);
        let now = Instant::now();
        {
            // Our own window recorder: only the monitor ever contends for it.
            let mut window = shared.windows[index]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for claim in &claims {
                let waited = now.saturating_duration_since(claim.enqueued_at);
                window.record(waited);
                // Producers only push levels below LEVELS.len().
                by_level[usize::from(claim.priority)].record(waited);
            }
        }
        for claim in claims.drain(..) {
            attempt(&shared, claim).await;
        }
    }
    tracing::debug!(consumer = index, "queue closed and drained; consumer stops");
    by_level
}

/// One attempt at one task: complete it, retry it, or dead-letter it. The
/// claim's `Done` guard drops at the end of this function (or travels with
/// the task on requeue), after the counters are updated, so a `join()` that
/// returns sees final counts.
async fn attempt<H: Handler>(shared: &Shared<H>, mut claim: Claim<Task>) {
    // AssertUnwindSafe: after a panic we only read the task, which the
    // handler saw by shared reference, and count the failure. Two catches:
    // `handle` itself may panic before it returns its future, and the
    // future may panic when polled.
    let outcome =
        match std::panic::catch_unwind(AssertUnwindSafe(|| shared.handler.handle(&claim.item))) {
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
            Err(panic) => Err(panic),
        };
    let counters = &shared.counters;
    let error = match outcome {
        Ok(Ok(())) => {
            counters.completed.fetch_add(1, Relaxed);
            counters.in_flight.fetch_sub(1, Relaxed);
            return;
        }
        Ok(Err(err)) => format!("{err:#}"),
        Err(panic) => format!("handler panicked: {}", panic_message(panic.as_ref())),
    };
    shared.counters.failed.fetch_add(1, Relaxed);
    claim.item.failures += 1;
    if claim.item.failures <= shared.config.max_retries {
        tracing::debug!(task = claim.item.id, failures = claim.item.failures, %error, "retrying");
        shared.counters.retried.fetch_add(1, Relaxed);
        // Queued again before it stops counting in flight: the final report
        // can only see it twice for an instant, never in neither.
        shared.queue.requeue(claim);
        shared.counters.in_flight.fetch_sub(1, Relaxed);
    } else {
        tracing::debug!(task = claim.item.id, failures = claim.item.failures, %error, "dead-lettered");
        let letter = DeadLetter {
            task: claim.item.clone(),
            error,
        };
        shared
            .dead_letters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(letter);
        shared.counters.dead_lettered.fetch_add(1, Relaxed);
        shared.counters.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The text of a panic payload (`&str` or `String`, as `panic!` makes).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}

/// Calls `on_snapshot` every `every` until `stop` is cancelled; returns
/// how many of those calls panicked (each is logged, and the monitor goes on).
pub(super) async fn monitor<H: Handler>(
    shared: Arc<Shared<H>>,
    every: Duration,
    watch: Stopwatch,
    stop: CancellationToken,
    mut on_snapshot: impl FnMut(&Snapshot),
) -> u64 {
    let mut panics = 0;
    let mut ticker = tokio::time::interval(every);
    // A late tick (busy runtime) shifts the schedule instead of bursting.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            // Stop first: once the run is over (or dropped), no tick that
            // is also due may call `on_snapshot` again.
            biased;
            () = stop.cancelled() => return panics,
            _ = ticker.tick() => {}
        }
        let mut window = LatencyRecorder::new();
        for slot in &shared.windows {
            // Allocate the replacement outside the consumer's lock.
            let fresh = LatencyRecorder::new();
            let part = std::mem::replace(
                &mut *slot.lock().unwrap_or_else(PoisonError::into_inner),
                fresh,
            );
            window.merge(&part);
        }
        let snapshot = Snapshot {
            elapsed: watch.elapsed(),
            queue: shared.queue.stats(),
            counts: shared.counters.read(),
            wait: window.summary(),
        };
        // AssertUnwindSafe: the callback is the caller's; after a panic we
        // call it again as the caller's own state allows (documented).
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| on_snapshot(&snapshot))) {
            panics += 1;
            tracing::error!("on_snapshot panicked: {}", panic_message(panic.as_ref()));
        }
    }
}
