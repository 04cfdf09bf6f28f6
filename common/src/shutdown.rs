//! A future that completes when the process is asked to stop.
//!
//! Binaries pass it to their `run(.., shutdown: impl Future)` so tests can
//! inject their own trigger (a oneshot, a `CancellationToken`) instead.

/// Resolves on the first Ctrl-C (SIGINT) or, on unix, SIGTERM.
///
/// The Python seed installs handlers with `loop.add_signal_handler`; here the
/// signals are streams that tokio registers on first use. If a handler cannot
/// be installed (rare: no signal support in a sandbox) that source is treated
/// as never firing, and a warning is logged, instead of stopping at once.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {err}");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(err) => {
                tracing::warn!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
