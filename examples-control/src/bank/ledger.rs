//! Replaying the transaction log against the balances.
//!
//! A bank that only keeps balances can be wrong silently; one that keeps a
//! log can be *checked*. [`verify`] replays every entry from the opening
//! balances and fails on the first thing that does not add up. The stress
//! tests and the benchmark call it after every run.

use std::collections::HashMap;

use serde::Serialize;

use super::{AccountId, Audit, Cents, EntryKind, TransferId};

/// What the log says happened, once it checked out.
///
/// The totals are cumulative, so unlike a balance they can legitimately
/// outgrow `u64` cents (deposit and withdraw $100 billion 200,000 times).
/// They **saturate** at `u64::MAX` cents instead of overflowing (which
/// panics in a debug build and wraps silently in release), and
/// `totals_saturated` says when that happened, so a reader never mistakes
/// a clamped figure for an exact one. The replay itself is exact: it runs
/// in `i128`, and every balance is checked against its entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LedgerSummary {
    /// Log entries replayed.
    pub entries: usize,
    /// Total deposited (saturating).
    pub deposited: Cents,
    /// Total withdrawn (saturating).
    pub withdrawn: Cents,
    /// Transfers (each is two entries).
    pub transfers: usize,
    /// True when `deposited` or `withdrawn` hit `u64::MAX` cents.
    pub totals_saturated: bool,
}

/// Adds to a cumulative total, saturating; notes when it clamped.
fn accumulate(total: &mut Cents, amount: Cents, saturated: &mut bool) {
    match total.0.checked_add(amount.0) {
        Some(sum) => total.0 = sum,
        None => {
            total.0 = u64::MAX;
            *saturated = true;
        }
    }
}

/// The log and the balances disagree; the text says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transaction log does not match balances: {0}")]
pub struct LedgerMismatch(pub String);

/// Checks that `audit.log`, replayed from `opening`, gives `audit.balances`:
/// every entry's `balance_after` follows from the one before, no balance is
/// ever negative, and every transfer-out has exactly one transfer-in of the
/// same amount at the account it names (and the other way round).
pub fn verify(opening: &[Cents], audit: &Audit) -> Result<LedgerSummary, LedgerMismatch> {
    let fail = |msg: String| Err(LedgerMismatch(msg));
    if opening.len() != audit.balances.len() {
        return fail(format!(
            "{} opening balances but {} accounts",
            opening.len(),
            audit.balances.len()
        ));
    }
    // i128: a bug that drove a balance below zero must show up as negative,
    // not wrap around.
    let mut running: Vec<i128> = opening.iter().map(|c| i128::from(c.0)).collect();
    let mut outs: HashMap<TransferId, (AccountId, Cents)> = HashMap::new();
    let mut ins: HashMap<TransferId, (AccountId, AccountId, Cents)> = HashMap::new();
    let mut summary = LedgerSummary::default();
    for (index, entry) in audit.log.iter().enumerate() {
        let Some(balance) = running.get_mut(entry.account) else {
            return fail(format!(
                "entry {index} names unknown account {}",
                entry.account
            ));
        };
        let amount = i128::from(entry.amount.0);
        match entry.kind {
            EntryKind::Deposit => {
                *balance += amount;
                accumulate(
                    &mut summary.deposited,
                    entry.amount,
                    &mut summary.totals_saturated,
                );
            }
            EntryKind::Withdrawal => {
                *balance -= amount;
                accumulate(
                    &mut summary.withdrawn,
                    entry.amount,
                    &mut summary.totals_saturated,
                );
            }
            EntryKind::TransferOut { to, id } => {
                *balance -= amount;
                if id.from != entry.account || outs.insert(id, (to, entry.amount)).is_some() {
                    return fail(format!(
                        "entry {index}: bad or duplicate transfer-out {id:?}"
                    ));
                }
            }
            EntryKind::TransferIn { from, id } => {
                *balance += amount;
                if id.from != from
                    || ins
                        .insert(id, (entry.account, from, entry.amount))
                        .is_some()
                {
                    return fail(format!(
                        "entry {index}: bad or duplicate transfer-in {id:?}"
                    ));
                }
            }
        }
        if *balance < 0 {
            return fail(format!(
                "entry {index}: account {} went negative",
                entry.account
            ));
        }
        if *balance != i128::from(entry.balance_after.0) {
            return fail(format!(
                "entry {index}: account {} replays to {balance} cents, entry says {}",
                entry.account, entry.balance_after.0
            ));
        }
        summary.entries += 1;
    }
    for (account, (replayed, actual)) in running.iter().zip(&audit.balances).enumerate() {
        if *replayed != i128::from(actual.0) {
            return fail(format!(
                "account {account}: log replays to {replayed} cents, balance is {}",
                actual.0
            ));
        }
    }
    if outs.len() != ins.len() {
        return fail(format!(
            "{} transfer-outs but {} transfer-ins",
            outs.len(),
            ins.len()
        ));
    }
    for (id, (to, amount)) in &outs {
        match ins.get(id) {
            Some(&(account, from, received))
                if account == *to && from == id.from && received == *amount => {}
            other => {
                return fail(format!(
                    "transfer {id:?} out {amount} to {to}, in {other:?}"
                ));
            }
        }
    }
    summary.transfers = outs.len();
    Ok(summary)
}
