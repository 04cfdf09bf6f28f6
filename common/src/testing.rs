//! Test helpers shared by every crate's tests: systematic cancellation,
//! and [`capture_logs`] for the warnings that are a pattern's only output.
//!
//! A pattern is only right under cancellation if it keeps its invariants
//! when its future is dropped at *any* await point, not only at the one the
//! author thought of. [`cancel_at_every_await`] makes that systematic: it
//! builds the operation afresh for N = 0, 1, 2, ..., lets it run normally
//! (woken by the runtime as usual) until it has returned `Pending` N times,
//! drops it there, and runs the caller's invariant check; it stops at the
//! first N at which the operation completes on its own.
//!
//! ```
//! use std::sync::Arc;
//! use tokio::sync::Semaphore;
//! use common::testing::cancel_at_every_await;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let sem = Arc::new(Semaphore::new(1));
//! let held = sem.clone().try_acquire_owned().unwrap();
//! let release = tokio::spawn(async move { tokio::task::yield_now().await; drop(held); });
//! let polls = cancel_at_every_await(
//!     |_n| {
//!         let sem = sem.clone();
//!         async move { let _permit = sem.acquire().await.unwrap(); }
//!     },
//!     async |_n| assert_eq!(sem.available_permits(), 1.min(sem.available_permits())),
//! )
//! .await;
//! assert!(polls >= 1);
//! # release.await.unwrap(); }
//! ```

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;

/// The most pending points [`cancel_at_every_await`] walks through before
/// it declares the operation endless.
pub const MAX_POLLS: usize = 10_000;

/// Runs `fut` until it has returned `Pending` `n` times, then drops it
/// (`None`); or returns its output if it completes first. Between pending
/// points it waits for `fut`'s own wake-up, as a real caller would: a
/// future that is never woken keeps it waiting.
pub async fn poll_n_then_drop<F: Future>(fut: F, n: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut pending = 0;
    std::future::poll_fn(|cx| {
        if pending >= n {
            return Poll::Ready(None);
        }
        match fut.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending => {
                pending += 1;
                if pending >= n {
                    // Dropped at this await point: do not wait for a wake-up.
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                }
            }
        }
    })
    .await
}

/// For N = 0, 1, 2, ...: builds the operation with `make(N)`, drops it at
/// its Nth pending point, then awaits `check(N)` (assert the invariants
/// there). Returns the N at which the operation completed by itself.
///
/// `make(0)` is dropped before its first poll. Panics if the operation is
/// still pending after [`MAX_POLLS`] points.
pub async fn cancel_at_every_await<Fut, M, C>(mut make: M, mut check: C) -> usize
where
    Fut: Future,
    M: FnMut(usize) -> Fut,
    C: AsyncFnMut(usize),
{
    for n in 0..=MAX_POLLS {
        let fut = make(n);
        let completed = if n == 0 {
            drop(fut);
            false
        } else {
            poll_n_then_drop(fut, n).await.is_some()
        };
        check(n).await;
        if completed {
            return n;
        }
    }
    panic!("operation still pending after {MAX_POLLS} polls");
}

/// What [`capture_logs`] has captured so far.
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Every line logged so far, without colours.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Captures every `tracing` event at DEBUG and above that is logged on
/// this thread until the guard drops. A warning that is a pattern's only
/// sign of trouble (a drain that timed out, say) is behaviour, and a test
/// can pin it.
///
/// The subscriber is this thread's default, not the global one: use it in
/// a `current_thread` runtime (`#[tokio::test]`'s default), where spawned
/// tasks run on this thread too, and tests running in parallel on other
/// threads are not captured.
///
/// Safe beside parallel tests that log at the same lines: a second, inert
/// subscriber stays registered (see the private `Anchor` for why).
#[must_use = "logs are captured only while the guard lives"]
pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    static ANCHOR: OnceLock<tracing::Dispatch> = OnceLock::new();
    ANCHOR.get_or_init(|| tracing::Dispatch::new(Anchor));
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// A subscriber that records nothing and is kept registered for the rest
/// of the process, so that the capturing subscriber is never the only one.
///
/// tracing caches one `Interest` per callsite, process-wide. While just
/// one `Dispatch` exists, tracing-core (0.1.36, tokio-rs/tracing#3611)
/// computes it from the default subscriber of whichever thread reaches the
/// callsite first: a parallel test's thread, with no subscriber, caches
/// "never", and the capturing thread's event at that line is dropped. With
/// two or more, the interest combines every registered subscriber, and this
/// one answers "sometimes" for every callsite: each event then asks its own
/// thread's subscriber. Tests only; it keeps every level enabled.
struct Anchor;

impl tracing::Subscriber for Anchor {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1) // never called: enabled() is false
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn walks_every_pending_point_then_stops_at_completion() {
        let started = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let checks = Arc::new(AtomicUsize::new(0));
        let n = cancel_at_every_await(
            |_| {
                let (started, finished) = (started.clone(), finished.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    for _ in 0..3 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            },
            async |_| {
                checks.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await;
        // Three sleeps are three pending points: dropped after 0, 1, 2 and
        // 3 pendings would leave it unfinished; n = 4 lets it finish.
        assert_eq!(n, 4);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert_eq!(started.load(Ordering::SeqCst), 4); // n = 0 never polled
        assert_eq!(checks.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn logs_are_captured_on_this_thread_and_only_while_the_guard_lives() {
        let (logs, guard) = capture_logs();
        tracing::warn!(count = 2, "drain timed out");
        tokio::spawn(async { tracing::debug!("from a task") })
            .await
            .unwrap();
        // Another thread logs to its own default (none): not captured here.
        std::thread::spawn(|| tracing::warn!("elsewhere"))
            .join()
            .unwrap();
        drop(guard);
        tracing::warn!("after the guard");
        let text = logs.text();
        assert!(text.contains("WARN") && text.contains("drain timed out count=2"));
        assert!(text.contains("from a task"), "{text}");
        assert!(!text.contains("elsewhere") && !text.contains("after the guard"));
        assert!(!text.contains('\x1b'), "no colours: {text:?}");
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[tokio::test]
    async fn a_ready_future_completes_at_one() {
        assert_eq!(cancel_at_every_await(|_| async {}, async |_| {}).await, 1);
        assert_eq!(poll_n_then_drop(async { 7 }, 1).await, Some(7));
        // Three yields are three pending points, each woken at once.
        let yields = async {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        };
        assert_eq!(poll_n_then_drop(yields, 3).await, None);
        // Dropped at its first pending point, even if never woken again.
        assert_eq!(
            poll_n_then_drop(std::future::pending::<()>(), 1).await,
            None
        );
    }
}
