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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LedgerSummary {
    /// Log entries replayed.
    pub entries: usize,
    /// Total deposited.
    pub deposited: Cents,
    /// Total withdrawn.
    pub withdrawn: Cents,
    /// Transfers (each is two entries).
    pub transfers: usize,
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
                summary.deposited.0 += entry.amount.0;
            }
            EntryKind::Withdrawal => {
                *balance -= amount;
                summary.withdrawn.0 += entry.amount.0;
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
