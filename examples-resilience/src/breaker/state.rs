//! The breaker's state machine: the transition table and the bookkeeping
//! behind it, free of async so every rule can be read (and tested) alone.
//!
//! | from | trigger | to |
//! |---|---|---|
//! | Closed | N consecutive failures, or failure rate over the window (with at least `min_calls`) | Open |
//! | Open | the cool-down elapsed (checked lazily by the next caller) | HalfOpen |
//! | HalfOpen | a probe failed | Open (the cool-down grows) |
//! | HalfOpen | `success_threshold` probes succeeded | Closed |
//!
//! Every other pair is refused by [`next_state`]; a test walks all of them.
//!
//! Each transition bumps a *generation*. A call remembers the generation it
//! was admitted in, and its outcome only counts if the breaker is still in
//! that generation: a slow call admitted while Closed that fails after the
//! breaker reopened and went half-open must not knock the probes over.
//!
//! Probe *permits* are not per generation: a probe admitted in one
//! half-open spell that is still running when the next spell begins keeps
//! its permit, so at most K probes ever hit the recovering service at once.

use std::fmt;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::window::Window;
use super::{BreakerConfig, BreakerMetrics, CircuitOpen};

/// The three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls fail fast with [`CircuitOpen`] until the cool-down ends.
    Open,
    /// A few probes test the water; everyone else fails fast.
    HalfOpen,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        })
    }
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// This many failures in a row (Closed -> Open).
    ConsecutiveFailures(u32),
    /// `failures` of the last `calls` in the window (Closed -> Open).
    FailureRate {
        /// Failures in the window.
        failures: u32,
        /// Calls in the window.
        calls: u32,
    },
    /// The cool-down elapsed (Open -> HalfOpen).
    CoolDownElapsed,
    /// A probe failed (HalfOpen -> Open).
    ProbeFailed,
    /// This many probes succeeded (HalfOpen -> Closed).
    ProbesSucceeded(u32),
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Trigger::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
            Trigger::FailureRate { failures, calls } => {
                let pct = f64::from(failures) * 100.0 / f64::from(calls.max(1));
                write!(
                    f,
                    "failure rate {pct:.0}% ({failures}/{calls} calls in the window)"
                )
            }
            Trigger::CoolDownElapsed => f.write_str("cool-down elapsed"),
            Trigger::ProbeFailed => f.write_str("a probe failed"),
            Trigger::ProbesSucceeded(n) => write!(f, "{n} probes succeeded"),
        }
    }
}

/// The transition table: where `trigger` takes `from`, or `None` if that
/// trigger means nothing in that state.
pub const fn next_state(from: State, trigger: Trigger) -> Option<State> {
    use State::*;
    match (from, trigger) {
        (Closed, Trigger::ConsecutiveFailures(_) | Trigger::FailureRate { .. }) => Some(Open),
        (Open, Trigger::CoolDownElapsed) => Some(HalfOpen),
        (HalfOpen, Trigger::ProbeFailed) => Some(Open),
        (HalfOpen, Trigger::ProbesSucceeded(_)) => Some(Closed),
        _ => None,
    }
}

/// One state change, as given to the transition hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Why.
    pub trigger: Trigger,
    /// When (tokio clock).
    pub at: Instant,
    /// For Open: how long it stays open.
    pub cool_down: Option<Duration>,
}

/// A hook called, in order, for every transition.
pub(crate) type Hook = Box<dyn Fn(&Transition) + Send + Sync>;

/// Proof of admission: the generation and whether it holds a probe permit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    generation: u64,
    probe: bool,
}

/// The breaker's mutable state; lives behind the breaker's mutex.
pub(crate) struct Machine {
    pub(crate) config: BreakerConfig,
    state: State,
    generation: u64,
    consecutive_failures: u32,
    window: Option<Window>,
    open_until: Instant,
    /// Opens since the last close: the exponent of the cool-down growth.
    reopens: u32,
    probes_in_flight: u32,
    probe_successes: u32,
    pub(crate) metrics: BreakerMetrics,
    pub(crate) hook: Option<Hook>,
    pub(crate) state_tx: watch::Sender<State>,
}

impl Machine {
    pub(crate) fn new(config: BreakerConfig, now: Instant) -> Self {
        Self {
            window: config.failure_rate.map(|r| Window::new(r.window, now)),
            config,
            state: State::Closed,
            generation: 0,
            consecutive_failures: 0,
            open_until: now,
            reopens: 0,
            probes_in_flight: 0,
            probe_successes: 0,
            metrics: BreakerMetrics::default(),
            hook: None,
            state_tx: watch::Sender::new(State::Closed),
        }
    }

    /// The state at `now`, moving Open to HalfOpen if the cool-down is over.
    pub(crate) fn state(&mut self, now: Instant) -> State {
        if self.state == State::Open && now >= self.open_until {
            self.transition(Trigger::CoolDownElapsed, now);
        }
        self.state
    }

    /// May a call start at `now`? Probes take one of the K permits.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<Ticket, CircuitOpen> {
        let admitted = match self.state(now) {
            State::Closed => Ok(Ticket {
                generation: self.generation,
                probe: false,
            }),
            State::Open => Err(CircuitOpen {
                retry_in: self.open_until - now,
            }),
            State::HalfOpen if self.probes_in_flight < self.config.half_open_probes => {
                self.probes_in_flight += 1;
                Ok(Ticket {
                    generation: self.generation,
                    probe: true,
                })
            }
            // All K probes are out; their verdict decides what happens next.
            State::HalfOpen => Err(CircuitOpen {
                retry_in: Duration::ZERO,
            }),
        };
        match admitted {
            Ok(_) => self.metrics.permitted += 1,
            Err(_) => self.metrics.rejected += 1,
        }
        admitted
    }

    /// A call was dropped before it finished: give its permit back.
    pub(crate) fn release(&mut self, ticket: Ticket) {
        self.metrics.cancelled += 1;
        self.return_permit(ticket);
    }

    fn return_permit(&mut self, ticket: Ticket) {
        // Every probe still running holds a permit, whichever half-open
        // spell admitted it: a probe of an earlier spell that is still
        // hitting the recovering service counts against K just the same
        // (issue 15.14: resetting the count on re-entry let K + 1 run).
        if ticket.probe {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    /// A call's operation panicked: count it as a failure (the caller then
    /// resumes the panic).
    pub(crate) fn record_panic(&mut self, ticket: Ticket, now: Instant) {
        self.metrics.panics += 1;
        self.record(ticket, true, now);
    }

    /// Probes running now (from any half-open spell); at most K.
    pub(crate) fn probes_in_flight(&self) -> u32 {
        self.probes_in_flight
    }

    /// A call finished at `now`; `failed` is the classifier's verdict
    /// (slow calls included).
    pub(crate) fn record(&mut self, ticket: Ticket, failed: bool, now: Instant) {
        self.return_permit(ticket);
        if failed {
            self.metrics.failures += 1;
        } else {
            self.metrics.successes += 1;
        }
        if ticket.generation != self.generation {
            return; // admitted under an earlier state: its verdict is stale
        }
        match self.state {
            State::Closed => {
                self.consecutive_failures = if failed {
                    self.consecutive_failures + 1
                } else {
                    0
                };
                if let Some(trigger) = self.trip_check(now, failed) {
                    self.transition(trigger, now);
                }
            }
            State::HalfOpen if failed => self.transition(Trigger::ProbeFailed, now),
            State::HalfOpen => {
                self.probe_successes += 1;
                if self.probe_successes >= self.config.success_threshold {
                    self.transition(Trigger::ProbesSucceeded(self.probe_successes), now);
                }
            }
            // Same generation as Open means admitted while Open: impossible.
            State::Open => {}
        }
    }

    /// Counts the call in the window and says whether Closed should trip.
    fn trip_check(&mut self, now: Instant, failed: bool) -> Option<Trigger> {
        if let Some(window) = &mut self.window {
            window.record(now, failed);
        }
        let consecutive = self.consecutive_failures;
        if self
            .config
            .consecutive_failures
            .is_some_and(|n| consecutive >= n)
        {
            return Some(Trigger::ConsecutiveFailures(consecutive));
        }
        let (window, rate) = self.window.as_ref().zip(self.config.failure_rate)?;
        let (calls, failures) = window.totals(now);
        let tripped =
            calls >= rate.min_calls && f64::from(failures) >= rate.threshold * f64::from(calls);
        tripped.then_some(Trigger::FailureRate { failures, calls })
    }

    /// Applies a transition from the table, publishes it, runs the hook.
    fn transition(&mut self, trigger: Trigger, now: Instant) {
        let Some(to) = next_state(self.state, trigger) else {
            // The callers above only fire triggers valid in the current state.
            debug_assert!(false, "no transition from {} on {trigger:?}", self.state);
            return;
        };
        let from = std::mem::replace(&mut self.state, to);
        self.generation += 1;
        self.metrics.transitions += 1;
        let mut cool_down = None;
        match to {
            State::Open => {
                let c = &self.config;
                let grown = c.cool_down.as_secs_f64()
                    * c.cool_down_growth.powi(self.reopens.min(64) as i32);
                let wait = Duration::try_from_secs_f64(grown)
                    .map_or(c.max_cool_down, |d| d.min(c.max_cool_down));
                self.open_until = now + wait;
                self.reopens += 1;
                cool_down = Some(wait);
            }
            State::HalfOpen => {
                // Not `probes_in_flight = 0`: probes of the previous spell
                // may still be running, and they keep their permits until
                // they return (their verdicts are stale and ignored).
                self.probe_successes = 0;
            }
            State::Closed => {
                self.consecutive_failures = 0;
                self.reopens = 0;
                if let Some(window) = &mut self.window {
                    window.clear();
                }
            }
        }
        self.state_tx.send_replace(to);
        let event = Transition {
            from,
            to,
            trigger,
            at: now,
            cool_down,
        };
        tracing::debug!(%from, %to, %trigger, "circuit breaker transition");
        if let Some(hook) = &self.hook {
            hook(&event);
        }
    }

    /// Window totals at `now`, for metrics.
    pub(crate) fn window_totals(&self, now: Instant) -> (u32, u32) {
        self.window.as_ref().map_or((0, 0), |w| w.totals(now))
    }
}

impl fmt::Debug for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine")
            .field("state", &self.state)
            .field("generation", &self.generation)
            .field("probes_in_flight", &self.probes_in_flight)
            .finish_non_exhaustive()
    }
}
