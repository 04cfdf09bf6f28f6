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
    let mut signals = StopSignals::listen();
    async move {
        let name = signals.recv().await;
        tracing::info!("{name} received, shutting down");
    }
}

/// The stop signals as a stream: Ctrl-C (SIGINT) and, on unix, SIGTERM,
/// each listened for from [`StopSignals::listen`] on. Use one of these,
/// not two [`shutdown_signal`] futures, to tell a first signal from a
/// second: two signals that arrive together (a SIGTERM and, before it was
/// noticed, a SIGINT) are two `recv`s here, where a second listener created
/// after the first signal would miss one. (Two of the *same* signal that
/// arrive before either is noticed are one, as tokio delivers them.)
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Installs the handlers now, synchronously (see [`shutdown_signal`]).
    /// A handler that cannot be installed is a warning and a source that
    /// never fires. Must be called inside a tokio runtime.
    pub fn listen() -> Self {
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
            Self {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// The next stop signal, by name ("Ctrl-C" or "SIGTERM"). Never
    /// returns if neither can be listened for.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            // A missing stream never fires; `recv` returning None (the
            // driver gone) is treated the same way.
            async fn next(stream: &mut Option<tokio::signal::unix::Signal>) {
                if let Some(stream) = stream
                    && stream.recv().await.is_some()
                {
                    return;
                }
                std::future::pending::<()>().await
            }
            tokio::select! {
                () = next(&mut self.interrupt) => "Ctrl-C",
                () = next(&mut self.terminate) => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::warn!("cannot listen for Ctrl-C: {err}");
                std::future::pending::<()>().await;
            }
            "Ctrl-C"
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
