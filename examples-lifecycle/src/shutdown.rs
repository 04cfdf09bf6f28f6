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
//! Phases 1 and 2 share one deadline (`--grace`, what Kubernetes calls
//! `terminationGracePeriodSeconds`). When it expires, what remains is
//! aborted and *reported* (which jobs were in progress, which never ran),
//! phase 3 still runs (with its own short bound), and the report says the
//! deadline expired so the binary exits non-zero. A second signal, handled
//! by [`spawn_signal_watcher`], exits immediately.
//!
//! Primitives: `axum::serve(..).with_graceful_shutdown`, a custom
//! `axum::serve::Listener`, `CancellationToken`, `tokio::time::timeout_at`,
//! `tokio::signal::unix`.
//!
//! Production: this is what `tokio-graceful-shutdown` or a tower/hyper
//! server with a `TaskTracker` gives you; the phases and the deadline are
//! the part you still have to design, and they are the subject here.
//!
//! ```text
//! cargo run --bin graceful-shutdown                       # demo: load, shutdown, report
//! cargo run --bin graceful-shutdown -- --serve --grace 5  # then Ctrl-C (twice to force)
//! cargo test -p examples-lifecycle --test graceful_shutdown
//! cargo test -p e2e --test lifecycle
//! ```

mod listener;
mod report;

use std::future::{Future, IntoFuture};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::jobs::JobService;

pub use listener::IntakeListener;
pub use report::{Closed, Drained, IntakeStopped, Phase, ShutdownReport};

/// How long closing resources may take, on top of the grace period: it must
/// run even after the grace period expired, or the journal is lost too.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `service` on `listener` until `shutdown` resolves, then shuts down
/// in phases within `grace`, calling `on_phase` as each phase completes.
///
/// Returns an error only if the server stops on its own before `shutdown`.
pub async fn serve_until(
    listener: TcpListener,
    mut service: JobService,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    mut on_phase: impl FnMut(&Phase),
) -> anyhow::Result<ShutdownReport> {
    let (closed_tx, closed_rx) = oneshot::channel();
    let listener = IntakeListener::new(listener, service.counters(), closed_tx);
    let stop_intake = CancellationToken::new();
    let server = axum::serve(listener, service.router())
        .with_graceful_shutdown(stop_intake.clone().cancelled_owned())
        .into_future();
    // Spawned so it keeps serving while this function waits on `shutdown`,
    // and so it can be aborted if the drain overruns.
    let mut server = tokio::spawn(server);

    tokio::select! {
        () = shutdown => {}
        ended = &mut server => anyhow::bail!("server stopped on its own: {ended:?}"),
    }
    let started = Instant::now();
    let deadline = started + grace;
    let before = service.stats();

    // Phase 1: stop intake. Err from the oneshot or the timeout would mean
    // the listener was not dropped in time; the report says so.
    stop_intake.cancel();
    let listener_closed = matches!(
        tokio::time::timeout_at(deadline, closed_rx).await,
        Ok(Ok(()))
    );
    let at_close = service.stats();
    let intake = IntakeStopped {
        listener_closed,
        connections_accepted: at_close.connections_accepted,
        connections_open: at_close.connections_open,
        requests_in_flight: at_close.requests_in_flight,
        jobs_queued: at_close.jobs_queued,
        // Relaxed counters read one by one can be momentarily inconsistent:
        // saturate rather than underflow.
        jobs_in_progress: at_close
            .jobs_accepted
            .saturating_sub(at_close.jobs_finished)
            .saturating_sub(at_close.jobs_queued),
    };
    on_phase(&Phase::IntakeStopped(intake.clone()));

    // Phase 2: drain. First the HTTP side (its handlers may be waiting on
    // workers, which keep running), then the queue and the workers.
    let http_drained = tokio::time::timeout_at(deadline, &mut server).await.is_ok();
    if !http_drained {
        // Stops axum's serve future; connection tasks it spawned end with the
        // process. Their clients get no answer: that is the deadline's price.
        server.abort();
    }
    service.close_queue();
    let workers_done = tokio::time::timeout_at(deadline, service.join_workers())
        .await
        .is_ok();
    let unfinished = if workers_done {
        Default::default()
    } else {
        service.abort_workers().await
    };
    let after = service.stats();
    let drained = Drained {
        elapsed: started.elapsed(),
        requests_answered: after.requests_answered - before.requests_answered,
        requests_answered_total: after.requests_answered,
        jobs_finished: after.jobs_finished - before.jobs_finished,
        connections_abandoned: if http_drained {
            0
        } else {
            after.connections_open
        },
        unfinished,
    };
    on_phase(&Phase::Drained(drained.clone()));

    // Phase 3: close resources, in dependency order (workers are gone).
    let closed = match tokio::time::timeout(CLOSE_TIMEOUT, service.close_journal()).await {
        Ok(Ok(records)) => Closed {
            journal_records: records,
            journal_error: None,
        },
        Ok(Err(err)) => Closed {
            journal_records: 0,
            journal_error: Some(format!("journal: {err}")),
        },
        Err(_) => Closed {
            journal_records: 0,
            journal_error: Some(format!("journal did not close within {CLOSE_TIMEOUT:?}")),
        },
    };
    on_phase(&Phase::Closed(closed.clone()));

    Ok(ShutdownReport {
        intake,
        deadline_expired: !(http_drained && workers_done && listener_closed),
        drained,
        closed,
        grace,
    })
}

/// Listens for SIGINT and SIGTERM: the first cancels `token` (a graceful
/// shutdown), the second runs `on_force` (keep it tiny: remove a temp file)
/// and exits the process at once with 128 + the signal number (130 for
/// Ctrl-C, 143 for SIGTERM), the shell convention. `process::exit` runs no
/// destructors and waits for no task: that is what "immediately" means.
///
/// Why not `common::shutdown_signal()` twice: tokio delivers a signal only
/// to listeners that exist when it arrives, so a second listener created
/// after the first signal could miss a quick second one. Both streams are
/// registered here, up front, before this function returns.
#[cfg(unix)]
pub fn spawn_signal_watcher(
    token: CancellationToken,
    on_force: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered here, synchronously: from this line on no signal is missed.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        let (name, _) = next_signal(&mut interrupt, &mut terminate).await;
        tracing::info!("{name} received: graceful shutdown (send it again to force)");
        token.cancel();
        let (name, kind) = next_signal(&mut interrupt, &mut terminate).await;
        // eprintln, not tracing: this is the last thing the process says.
        eprintln!("second signal ({name}): exiting now without draining");
        on_force();
        std::process::exit(128 + kind.as_raw_value());
    });
    Ok(())
}

/// Waits for the next SIGINT or SIGTERM; returns its name and kind.
#[cfg(unix)]
async fn next_signal(
    interrupt: &mut tokio::signal::unix::Signal,
    terminate: &mut tokio::signal::unix::Signal,
) -> (&'static str, tokio::signal::unix::SignalKind) {
    use tokio::signal::unix::SignalKind;
    tokio::select! {
        _ = interrupt.recv() => ("SIGINT", SignalKind::interrupt()),
        _ = terminate.recv() => ("SIGTERM", SignalKind::terminate()),
    }
}
