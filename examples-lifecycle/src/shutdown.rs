//! Graceful shutdown in three phases, under one deadline.
//!
//! Ports seed Example 15. The Python version, on a signal, sets an event,
//! sleeps a fixed 2 s "to let tasks finish", then cancels everything. That
//! sleep is both too long (nothing may be running) and too short (a job may
//! need 3 s), the cancel throws away whatever a worker held, nothing stops
//! new requests arriving meanwhile, and a second Ctrl-C does nothing at all
//! because the handler replaced Python's default. Here, after the signal:
//!
//! 1. **Stop intake.** axum's graceful shutdown leaves its accept loop and
//!    drops the listener; [`IntakeListener`] reports that drop, so "intake
//!    stopped" is a fact, not a hope: from then on a new connection is
//!    refused by the kernel. Idle keep-alive connections are closed.
//! 2. **Drain.** Requests already being handled complete (including those
//!    waiting on a job), then the queue is closed and the workers finish the
//!    job in hand and every queued job, then exit.
//! 3. **Close resources.** The journal is flushed and synced, only after
//!    the workers that write to it are gone.
//!
//! Phases 1 and 2 share one deadline (`--drain-timeout`, what Kubernetes
//! calls `terminationGracePeriodSeconds`). When it expires, what remains is
//! aborted and *reported* (which jobs were in progress, which never ran),
//! phase 3 still runs (with its own short bound), and the report says the
//! deadline expired so the binary exits non-zero. A second signal exits
//! immediately (the driver harness, `common::driver`, does that for every
//! binary).
//!
//! Two races this module closes (issue 15):
//!
//! - **The listen backlog.** Connections the kernel accepted before the
//!   signal, request already sent, are handed to axum and served before the
//!   socket closes, and counted (`connections_from_backlog`); see
//!   [`IntakeListener`].
//! - **A late submission.** The service's [`Drain::stop_work_intake`] must
//!   guarantee no work is accepted after it returns; and
//!   [`Drain::abort_work`] runs after a clean finish too, so anything that
//!   slipped in anyway is reported, never silently dropped.
//!
//! [`serve_until`] takes any service implementing [`Drain`]; the demo's
//! `JobService` is one.
//!
//! Primitives: `axum::serve(..).with_graceful_shutdown`, a custom
//! `axum::serve::Listener`, `CancellationToken`, `tokio::sync::Notify`,
//! `tokio::time::timeout_at`.
//!
//! Production: this is what `tokio-graceful-shutdown` or a tower/hyper
//! server with a `TaskTracker` gives you; the phases and the deadline are
//! the part you still have to design, and they are the subject here.
//!
//! ```text
//! cargo run --bin graceful-shutdown                       # demo: load, shutdown, report
//! cargo run --bin graceful-shutdown -- --serve --drain-timeout 5s  # then Ctrl-C (twice to force)
//! cargo test -p examples-lifecycle --test graceful_shutdown
//! cargo test -p e2e --test lifecycle
//! ```

mod listener;
mod report;

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use listener::{ConnectionCounters, CountedStream, FIRST_READ_WAIT, IntakeListener};
pub use report::{Closed, Drained, IntakeStopped, Phase, ShutdownReport};

/// How long closing resources may take, on top of the grace period: it must
/// run even after the grace period expired, or the journal is lost too.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Aborts the task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a grace too large for the clock (`Duration::MAX`) becomes: a
/// century, which no `Instant` on a 64-bit clock overflows.
const NO_DEADLINE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Accepted units of work that were not finished, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unfinished {
    /// Work in hand when it was aborted.
    pub in_progress: Vec<u64>,
    /// Work accepted but never started.
    pub queued: Vec<u64>,
}

impl Unfinished {
    /// Nothing was lost.
    pub fn is_empty(&self) -> bool {
        self.in_progress.is_empty() && self.queued.is_empty()
    }
}

/// A service's own work counts, as each phase reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorkStats {
    /// Requests whose handler is running.
    pub requests_in_flight: u64,
    /// Requests answered over the service's life (any status).
    pub requests_answered: u64,
    /// Units of work accepted, not yet started.
    pub queued: u64,
    /// Units of work being done.
    pub in_progress: u64,
    /// Units of work finished over the service's life.
    pub finished: u64,
}

/// What [`serve_until`] needs from a service: its routes, its counts, and
/// a hook for each shutdown phase. The demo's `JobService` is one; any
/// service with a queue (or none) and a resource to close can be another.
pub trait Drain: Send + 'static {
    /// The HTTP routes.
    fn router(&self) -> axum::Router;
    /// The connection counters the listener keeps (shared, e.g. for `/stats`).
    fn connections(&self) -> Arc<ConnectionCounters>;
    /// The service's work counts now.
    fn work(&self) -> WorkStats;
    /// Phase 2, once the HTTP side drained (or timed out): refuse new work.
    /// After this returns no submission may be accepted any more.
    fn stop_work_intake(&mut self);
    /// Waits until all accepted work is done. Cancel-safe: it is dropped
    /// when the grace deadline passes.
    fn finish_work(&mut self) -> impl Future<Output = ()> + Send;
    /// Aborts whatever still runs and lists every accepted unit of work not
    /// finished. Called after `finish_work` too, so nothing that slipped in
    /// is lost unreported.
    fn abort_work(&mut self) -> impl Future<Output = Unfinished> + Send;
    /// Phase 3: closes resources (flush, sync); returns records written.
    fn close(self) -> impl Future<Output = anyhow::Result<u64>> + Send;
}

/// Serves `service` on `listener` until `shutdown` resolves, then shuts down
/// in phases within `grace`, calling `on_phase` as each phase completes.
///
/// Returns an error only if the server stops on its own before `shutdown`.
pub async fn serve_until<S: Drain>(
    listener: TcpListener,
    mut service: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    mut on_phase: impl FnMut(&Phase),
) -> anyhow::Result<ShutdownReport> {
    let connections = service.connections();
    let stop_intake = CancellationToken::new();
    let listener_closed = CancellationToken::new();
    let listener = IntakeListener::new(
        listener,
        Arc::clone(&connections),
        stop_intake.clone(),
        listener_closed.clone(),
    );
    // axum's graceful shutdown starts only once the listener has handed
    // over its backlog and closed, and every connection has read its
    // request (see `listener`): hyper drops a connection told to stop
    // before its first read, which would reset a request already sent.
    let gate = {
        let (closed, connections) = (listener_closed.clone(), Arc::clone(&connections));
        async move {
            closed.cancelled().await;
            connections.first_reads(FIRST_READ_WAIT).await;
        }
    };
    let server = axum::serve(listener, service.router())
        .with_graceful_shutdown(gate)
        .into_future();
    // Spawned so it keeps serving while this function waits on `shutdown`,
    // and so it can be aborted if the drain overruns. The guard aborts it
    // if this future is dropped (its caller was cancelled): a dropped
    // JoinHandle would detach the server and leave it accepting.
    let mut server = AbortOnDrop(tokio::spawn(server));
    let server = &mut server.0;

    tokio::select! {
        () = shutdown => {}
        ended = &mut *server => anyhow::bail!("server stopped on its own: {ended:?}"),
    }
    let started = Instant::now();
    // A flag-parsed grace is at most 7 days; a library caller's
    // Duration::MAX means "no deadline", not an overflow panic.
    let deadline = started
        .checked_add(grace)
        .unwrap_or_else(|| started + NO_DEADLINE);
    let before = service.work();

    // Phase 1: stop intake; the listener drains its backlog, then closes.
    stop_intake.cancel();
    let listener_closed = tokio::time::timeout_at(deadline, listener_closed.cancelled())
        .await
        .is_ok();
    let at_close = service.work();
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let intake = IntakeStopped {
        listener_closed,
        connections_accepted: load(&connections.accepted),
        connections_open: load(&connections.open),
        connections_from_backlog: load(&connections.from_backlog),
        requests_in_flight: at_close.requests_in_flight,
        jobs_queued: at_close.queued,
        jobs_in_progress: at_close.in_progress,
    };
    on_phase(&Phase::IntakeStopped(intake.clone()));

    // Phase 2: drain. First the HTTP side (its handlers may be waiting on
    // workers, which keep running), then the queue and the workers.
    let http_drained = tokio::time::timeout_at(deadline, &mut *server)
        .await
        .is_ok();
    if !http_drained {
        // Stops axum's serve future; connection tasks it spawned end with the
        // process. Their clients get no answer: that is the deadline's price.
        server.abort();
    }
    service.stop_work_intake();
    let workers_done = tokio::time::timeout_at(deadline, service.finish_work())
        .await
        .is_ok();
    // Always: after a clean finish it must find nothing, and if something
    // slipped in anyway it is reported rather than lost (issue 15.20).
    let unfinished = service.abort_work().await;
    let after = service.work();
    let drained = Drained {
        elapsed: started.elapsed(),
        requests_answered: after.requests_answered - before.requests_answered,
        requests_answered_total: after.requests_answered,
        jobs_finished: after.finished - before.finished,
        connections_abandoned: if http_drained {
            0
        } else {
            load(&connections.open)
        },
        connections_closed_unread: load(&connections.closed_unread),
        unfinished,
    };
    on_phase(&Phase::Drained(drained.clone()));

    // Phase 3: close resources, in dependency order (workers are gone).
    let closed = match tokio::time::timeout(CLOSE_TIMEOUT, service.close()).await {
        Ok(Ok(records)) => Closed {
            journal_records: records,
            journal_error: None,
        },
        Ok(Err(err)) => Closed {
            journal_records: 0,
            journal_error: Some(format!("journal: {err:#}")),
        },
        Err(_) => Closed {
            journal_records: 0,
            journal_error: Some(format!("journal did not close within {CLOSE_TIMEOUT:?}")),
        },
    };
    on_phase(&Phase::Closed(closed.clone()));

    Ok(ShutdownReport {
        deadline_expired: !(http_drained
            && workers_done
            && listener_closed
            && drained.unfinished.is_empty()),
        intake,
        drained,
        closed,
        grace,
    })
}
