//! What goes wrong when check and act are split by an `.await`.
//!
//! `withdraw` must *check* the balance and *act* on it as one step. Release
//! the lock in between, and any `.await` there (an audit write, a database
//! call, a log flush) lets every other task run its own check against the
//! same old balance:
//!
//! - [`Variant::LostUpdate`]: each task writes back `seen - amount`,
//!   computed from the stale balance it read. Ten withdrawals of $30 from
//!   $100 are all approved, $300 is paid out, and the balance ends at $70.
//! - [`Variant::Overdraft`]: each task subtracts from the *current* balance,
//!   so no update is lost, but every check passed before any debit: the
//!   account ends at -$200, money the bank does not have.
//! - [`Variant::Locked`], the fix: one `tokio::sync::Mutex` guard held from
//!   check through the await to the update (the seed's `async with lock:`).
//!   Three withdrawals succeed, seven are refused, $10 is left.
//!
//! Note that there is no data race in the Rust sense: every access goes
//! through a `Mutex`, and the compiler is satisfied. This is a *logic* race,
//! which no type system catches; the rule "check and act under one guard"
//! is yours to keep. The balance here is a signed `i64` only so the
//! overdraft can be shown; the real designs use unsigned [`super::Cents`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;

/// How the withdrawal is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Check, release the lock, await, write back `seen - amount`.
    LostUpdate,
    /// Check, release the lock, await, subtract from the current balance.
    Overdraft,
    /// Check, await and update under one async lock.
    Locked,
}

/// What a race produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RaceOutcome {
    /// Which withdrawal code ran.
    pub variant: Variant,
    /// Balance before, in cents.
    pub opening: i64,
    /// Withdrawals approved (money handed out).
    pub approved: usize,
    /// Withdrawals refused for insufficient funds.
    pub refused: usize,
    /// Money handed out, in cents.
    pub paid_out: i64,
    /// Balance after, in cents.
    pub closing: i64,
}

impl RaceOutcome {
    /// True when the books balance: closing = opening - paid out, and the
    /// account never goes below zero.
    pub fn consistent(&self) -> bool {
        self.closing == self.opening - self.paid_out && self.closing >= 0
    }
}

/// Runs `attempts` concurrent withdrawals of `amount` cents from an account
/// holding `opening` cents; each awaits `audit_delay` between check and act.
pub async fn withdraw_race(
    variant: Variant,
    opening: i64,
    attempts: usize,
    amount: i64,
    audit_delay: Duration,
) -> RaceOutcome {
    // std Mutex for the racy variants: the guard is dropped before the
    // await, which is exactly the bug being shown. tokio Mutex for the fix:
    // its guard is meant to be held across the await.
    let racy = Arc::new(Mutex::new(opening));
    let locked = Arc::new(tokio::sync::Mutex::new(opening));
    // Every withdrawal starts at the same moment, as requests arriving
    // together would; without it, a spawning loop slowed down on a busy
    // machine could let the first finish before the last begins.
    let start = Arc::new(tokio::sync::Barrier::new(attempts));
    let mut withdrawals = JoinSet::new();
    for _ in 0..attempts {
        let (racy, locked, start) = (Arc::clone(&racy), Arc::clone(&locked), Arc::clone(&start));
        withdrawals.spawn(async move {
            start.wait().await;
            // A poisoned lock cannot happen: nothing panics while holding it.
            let read = |m: &Mutex<i64>| *m.lock().unwrap_or_else(PoisonError::into_inner);
            match variant {
                Variant::LostUpdate => {
                    let seen = read(&racy); // check ... (lock released here)
                    if seen < amount {
                        return false;
                    }
                    tokio::time::sleep(audit_delay).await; // everybody else checks now
                    *racy.lock().unwrap_or_else(PoisonError::into_inner) = seen - amount; // stale write
                    true
                }
                Variant::Overdraft => {
                    if read(&racy) < amount {
                        return false;
                    }
                    tokio::time::sleep(audit_delay).await;
                    *racy.lock().unwrap_or_else(PoisonError::into_inner) -= amount; // no longer checked
                    true
                }
                Variant::Locked => {
                    let mut balance = locked.lock().await; // held to the end
                    if *balance < amount {
                        return false;
                    }
                    tokio::time::sleep(audit_delay).await; // others wait for the lock
                    *balance -= amount;
                    true
                }
            }
        });
    }
    let mut approved = 0;
    while let Some(joined) = withdrawals.join_next().await {
        // The tasks do not panic; if one did, surface it rather than hide it.
        if joined.expect("withdrawal task panicked") {
            approved += 1;
        }
    }
    let closing = match variant {
        Variant::Locked => *locked.lock().await,
        _ => *racy.lock().unwrap_or_else(PoisonError::into_inner),
    };
    RaceOutcome {
        variant,
        opening,
        approved,
        refused: attempts - approved,
        paid_out: amount.saturating_mul(i64::try_from(approved).unwrap_or(i64::MAX)),
        closing,
    }
}
