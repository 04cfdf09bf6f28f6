//! Circuit breaker: stop calling a service that is failing, and find out
//! cheaply when it has recovered.
//!
//! Ports seed Example 14. When a dependency is down, every call to it waits
//! for a timeout, holds a connection and a task, and adds load to a service
//! trying to restart. A breaker counts failures; past a threshold it *opens*
//! and fails calls at once (a typed [`CircuitOpen`] with `retry_in`), and
//! after a cool-down lets a few *probes* through (half-open) to decide
//! between closing again and another cool-down.
//!
//! What the Python gets wrong, and what this version does instead:
//!
//! - Half-open lets *every* concurrent call through as a probe: a herd hits
//!   the recovering service. Here at most `half_open_probes` (K) probes run
//!   at once; the rest fail fast.
//! - A probe that is cancelled (a caller's timeout, a dropped request) has
//!   no way to report back. Here the admission is a guard whose `Drop`
//!   returns the permit, so the breaker cannot get stuck half-open.
//! - Only consecutive failures trip it (`failure_count` resets on any
//!   success, so 50% errors never trip). Here a failure rate over a sliding
//!   time window with a minimum number of calls can trip it too.
//! - `datetime.now()` is wall-clock time and can jump; here
//!   `tokio::time::Instant` is monotonic and tests run on the paused clock.
//! - Slow calls count as successes; here calls slower than `slow_call`
//!   count as failures (a service at 10x latency is not healthy).
//! - Every exception counts (a 404 included) and state changes are
//!   `print`ed. Here a [`Classifier`] decides what is a failure, transitions
//!   go to a hook and a `watch` channel, and [`BreakerMetrics`] counts
//!   everything, including the calls the open circuit spared.
//! - The states live in ad-hoc `if`s; here [`state::next_state`] is the
//!   whole transition table.
//!
//! Shared across tasks: [`CircuitBreaker`] is a cheap `Clone` (an `Arc`).
//! State sits behind a std `Mutex`: it is held for a few counter updates,
//! never across an `.await`, so an async mutex would only add cost.
//!
//! Tokio primitives: `tokio::time::Instant`, `tokio::sync::watch`.
//!
//! Production: [`failsafe`](https://docs.rs/failsafe) (policies and
//! failure-rate windows, futures support), [`tower-resilience`](https://docs.rs/tower-resilience)
//! (a tower layer modelled on Resilience4j, composes with retry and
//! timeouts in a service stack) and, for the design vocabulary,
//! Resilience4j (count- and time-based windows, slow-call thresholds,
//! permitted calls in half-open) which this module follows. Ours is shown
//! so you can see the moving parts in a few hundred lines.
//!
//! ```text
//! cargo run --bin circuit-breaker
//! cargo run --release --bin circuit-breaker -- --bench
//! cargo test -p examples-resilience --test breaker
//! ```

mod config;
pub mod state;
mod window;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::time::Instant;

pub use config::{
    AnyError, BreakerConfig, BreakerMetrics, CallError, CircuitOpen, Classifier, InvalidConfig,
    RateTrip,
};
use state::{Machine, Ticket};
pub use state::{State, Transition, Trigger, next_state};

/// A circuit breaker shared by every task that calls one service.
#[derive(Debug, Clone)]
pub struct CircuitBreaker<C = AnyError> {
    machine: Arc<Mutex<Machine>>,
    slow_call: Option<Duration>,
    classifier: C,
}

impl CircuitBreaker<AnyError> {
    /// A closed breaker where every error counts as a failure.
    pub fn new(config: BreakerConfig) -> Result<Self, InvalidConfig> {
        config.validate()?;
        Ok(Self {
            machine: Arc::new(Mutex::new(Machine::new(config, Instant::now()))),
            slow_call: config.slow_call,
            classifier: AnyError,
        })
    }
}

impl<C> CircuitBreaker<C> {
    /// The same breaker with another classifier.
    pub fn with_classifier<C2>(self, classifier: C2) -> CircuitBreaker<C2> {
        CircuitBreaker {
            machine: self.machine,
            slow_call: self.slow_call,
            classifier,
        }
    }

    /// Calls `hook` for every transition, in order, with the breaker's lock
    /// held: keep it short (log, `try_send` to a bounded channel) and never
    /// call back into the breaker from it (that would deadlock).
    pub fn on_transition(&self, hook: impl Fn(&Transition) + Send + Sync + 'static) {
        self.lock().hook = Some(Box::new(hook));
    }

    /// A `watch` receiver of the current state (Open -> HalfOpen shows when a
    /// caller or [`CircuitBreaker::state`] notices the cool-down ended).
    pub fn subscribe(&self) -> watch::Receiver<State> {
        self.lock().state_tx.subscribe()
    }

    /// The state now.
    pub fn state(&self) -> State {
        self.lock().state(Instant::now())
    }

    /// The counters so far, and the current window's `(calls, failures)`.
    pub fn metrics(&self) -> (BreakerMetrics, (u32, u32)) {
        let machine = self.lock();
        (machine.metrics, machine.window_totals(Instant::now()))
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // A panic can only come from the user's hook, after the state was
        // fully updated; the counters are still consistent, so carry on.
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `op` if the circuit allows it and records the outcome.
    ///
    /// `op` is only called when admitted, so an open circuit costs no
    /// request at all. Dropping the returned future mid-call (a timeout, a
    /// `select!`) gives a probe permit back and records nothing. A panic in
    /// `op` (building the future or polling it) or in the classifier counts
    /// as a failure and is then resumed in the caller.
    pub async fn call<T, E, F, Fut>(&self, op: F) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classifier<E>,
    {
        let started = Instant::now();
        let ticket = self.lock().admit(started).map_err(CallError::Open)?;
        // From here until the outcome is recorded, the guard owns the ticket.
        let mut admission = Admission {
            machine: &self.machine,
            ticket: Some(ticket),
        };
        // catch_unwind around both the call and the future: a panic
        // unwinds through `poll`, not through this frame's locals, so the
        // guard alone would see it later as a plain drop ("cancelled").
        // AssertUnwindSafe: on a panic we only record it and resume it;
        // nothing the panic may have left half-done is touched again.
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(op)) {
            Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
            Err(payload) => Err(payload),
        };
        let finished = Instant::now();
        let verdict = outcome.map(|result| {
            let slow = self
                .slow_call
                .is_some_and(|limit| finished - started > limit);
            let classify =
                AssertUnwindSafe(|| result.as_ref().err().map(|e| self.classifier.is_failure(e)));
            (std::panic::catch_unwind(classify), slow, result)
        });
        let mut machine = self.lock();
        let Some(ticket) = admission.ticket.take() else {
            unreachable!("the ticket is taken only here or in Drop")
        };
        match verdict {
            Ok((Ok(failed_error), slow, result)) => {
                machine.metrics.slow_calls += u64::from(slow);
                machine.metrics.ignored_errors += u64::from(failed_error == Some(false));
                machine.record(ticket, slow || failed_error == Some(true), finished);
                drop(machine);
                result.map_err(CallError::Failed)
            }
            Ok((Err(payload), _, _)) | Err(payload) => {
                machine.record_panic(ticket, finished);
                // Unlock before unwinding: a panic with the guard held
                // would poison the mutex for nothing.
                drop(machine);
                std::panic::resume_unwind(payload)
            }
        }
    }

    /// Probes running now, from any half-open spell (at most K): for tests
    /// and metrics.
    pub fn probes_in_flight(&self) -> u32 {
        self.lock().probes_in_flight()
    }
}

/// Holds an admission while the call runs; if the call's future is dropped
/// first, `Drop` hands the ticket (and a probe's permit) back.
struct Admission<'a> {
    machine: &'a Mutex<Machine>,
    ticket: Option<Ticket>,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            // Same poisoning argument as CircuitBreaker::lock.
            self.machine
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .release(ticket);
        }
    }
}
