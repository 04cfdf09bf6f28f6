//! A future that completes when the process is asked to stop.
//!
//! Binaries pass it to their `run(.., shutdown: impl Future)` so tests can
//! inject their own trigger (a oneshot, a `CancellationToken`) instead.

use std::future::Future;

/// Listens for Ctrl-C (SIGINT) and, on unix, SIGTERM; the returned future
/// resolves on the first of them.
///
/// **Call it before announcing readiness.** The handlers are installed when
/// this function is *called*, not when the future is first polled: tokio
/// delivers a signal only to listeners that exist when it arrives, and until
/// one exists the default disposition applies, so a SIGTERM sent right after
/// a "listening on ..." line would kill the process outright instead of
/// starting a graceful stop. (An `async fn` would register lazily, on first
/// poll; that is the trap this signature avoids.)
///
/// The Python seed uses `loop.add_signal_handler`; here the signals are
/// streams. If a handler cannot be installed (rare: no signal support in a
/// sandbox) that source is treated as never firing, with a warning, rather
/// than stopping at once. Must be called inside a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(err) => {
                tracing::warn!("cannot listen for {name}: {err}");
                None
            }
        };
        // Registered here, synchronously: from this line on no signal is missed.
        let interrupt = listen(SignalKind::interrupt(), "SIGINT");
        let terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            // A missing stream never fires; `recv` returning None (the
            // driver gone) is treated the same way.
            let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
                if let Some(mut stream) = stream
                    && stream.recv().await.is_some()
                {
                    return;
                }
                std::future::pending::<()>().await
            };
            tokio::select! {
                () = wait(interrupt) => tracing::info!("Ctrl-C received, shutting down"),
                () = wait(terminate) => tracing::info!("SIGTERM received, shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::warn!("cannot listen for Ctrl-C: {err}");
                std::future::pending::<()>().await;
            }
            tracing::info!("Ctrl-C received, shutting down");
        }
    }
}

/// A `CancellationToken` that is cancelled on the first Ctrl-C or SIGTERM:
/// the shape to use when many tasks must all notice the stop.
///
/// The handlers are installed by this call (see [`shutdown_signal`]); a
/// small task waits for the signal for the rest of the process's life.
/// Must be called inside a tokio runtime.
pub fn shutdown_token() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let signal = shutdown_signal();
    let cancel = token.clone();
    // Detached on purpose: it lives as long as the process and holds nothing.
    drop(tokio::spawn(async move {
        signal.await;
        cancel.cancel();
    }));
    token
}
