//! Shared state behind a lock: a bank, three ways.
//!
//! Ports seed Example 9 ("Lock for Shared State"). The Python original keeps
//! money in a `float` (so $0.10 + $0.20 != $0.30, and totals drift), signals
//! insufficient funds by printing and returning `False`, has no transfers
//! (where the real trouble starts: two locks, two orders, deadlock), and
//! sleeps *inside* the lock, which serialises every customer behind a 10 ms
//! nap. Its lesson is right, check and act in one critical section, but it
//! never shows what goes wrong without it.
//!
//! This port:
//!
//! - counts **integer cents** ([`Cents`], a `u64`): no rounding, and a
//!   negative balance cannot even be represented;
//! - returns a typed [`InsufficientFunds`] (inside [`BankError`]) that a
//!   caller can `match` on;
//! - offers deposit, withdraw and **transfer**, taking two account locks in
//!   one global order (lower account number first) so that opposite
//!   transfers cannot deadlock;
//! - checks and updates in **one critical section** (see [`race`] for the
//!   lost update and the overdraft you get otherwise);
//! - writes a transaction log ([`Entry`]) that [`verify`] replays against
//!   the balances: every entry chains from the previous balance, no balance
//!   dips below zero, every transfer-out has exactly one matching
//!   transfer-in.
//!
//! Hostile behaviour it defends against: **overflow** (balances use
//! checked arithmetic and refuse with [`BankError::Overflow`]; the
//! ledger's cumulative totals saturate, flagged, see [`LedgerSummary`]);
//! **deadlock** between opposite transfers (one global lock order);
//! **callers cancelled** at any await (each design changes money and log
//! together or not at all; tested at every await point); **a stalled
//! audit writer or actor** (bounded channels: callers wait instead of
//! memory growing).
//!
//! ## Three designs behind one trait
//!
//! | design | module | when to pick it |
//! |---|---|---|
//! | `std::sync::Mutex` per account | [`std_mutex`] | the critical section is short and has no `.await`: the fastest, and the default choice |
//! | `tokio::sync::Mutex` per account | [`tokio_mutex`] | something must be awaited while the lock is held (here: room in the audit log, so the log is in balance order) |
//! | an actor: one task owns the accounts, callers send `mpsc` commands with a `oneshot` reply | [`actor`] | state touched from many places, or operations that must be strictly serial; no locks to order at all |
//!
//! All three implement [`Bank`], so one workload (the stress test and the
//! benchmark, `examples_control::demo::bank_workload`) runs against each. Production: a database transaction
//! (`SELECT ... FOR UPDATE`, or `UPDATE ... SET balance = balance - $1
//! WHERE balance >= $1`) is where real money lives; these designs are what
//! you use for in-process state: counters, caches, session tables.
//!
//! ```text
//! cargo run --bin bank-account                        # the seed's scenario on all three designs
//! cargo run --bin bank-account -- --demo-race         # lost update and overdraft, then the fix
//! cargo run --release --bin bank-account -- --bench   # 100 tasks, 1,000,000 ops per design
//! cargo test -p examples-control --test bank
//! ```

pub mod actor;
mod ledger;
pub mod race;
pub mod std_mutex;
pub mod tokio_mutex;

use std::fmt;
use std::future::Future;

use serde::Serialize;

pub use ledger::{LedgerMismatch, LedgerSummary, verify};

/// An account number: an index into the bank's accounts.
pub type AccountId = usize;

/// An amount of money in integer cents. Never a float: binary floats cannot
/// represent most decimal fractions, so float balances drift.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Cents(pub u64);

impl Cents {
    /// `dollars` whole dollars (saturating at `u64::MAX` cents).
    pub const fn dollars(dollars: u64) -> Self {
        Self(dollars.saturating_mul(100))
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// A withdrawal or transfer asked for more than the account holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("insufficient funds in account {account}: balance {balance}, requested {requested}")]
pub struct InsufficientFunds {
    /// The account that would have gone negative.
    pub account: AccountId,
    /// Its balance at the moment of the check.
    pub balance: Cents,
    /// What was asked for.
    pub requested: Cents,
}

/// Every way a bank operation can fail. Nothing was changed when one is
/// returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// Not enough money: an expected business outcome, not a bug.
    #[error(transparent)]
    InsufficientFunds(#[from] InsufficientFunds),
    /// No such account.
    #[error("no account {0}")]
    UnknownAccount(AccountId),
    /// Amounts must be at least one cent.
    #[error("amount must be at least one cent")]
    ZeroAmount,
    /// A transfer from an account to itself (would lock it twice).
    #[error("cannot transfer from account {0} to itself")]
    SameAccount(AccountId),
    /// The balance would exceed `u64::MAX` cents.
    #[error("balance of account {0} would overflow")]
    Overflow(AccountId),
    /// The bank's background task (audit writer or actor) has stopped.
    #[error("the bank has shut down")]
    Closed,
}

/// Ties two entries of one transfer together: the sender's account and the
/// sender's own transfer counter (unique without a global atomic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TransferId {
    /// The account the money left.
    pub from: AccountId,
    /// The sender's n-th transfer.
    pub seq: u64,
}

/// What an [`Entry`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EntryKind {
    /// Money in from outside the bank.
    Deposit,
    /// Money out of the bank.
    Withdrawal,
    /// The sending half of a transfer.
    TransferOut {
        /// The receiving account.
        to: AccountId,
        /// Matches the receiving half.
        id: TransferId,
    },
    /// The receiving half of a transfer.
    TransferIn {
        /// The sending account.
        from: AccountId,
        /// Matches the sending half.
        id: TransferId,
    },
}

/// One line of the transaction log: a change to one account's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The account changed.
    pub account: AccountId,
    /// Why.
    pub kind: EntryKind,
    /// By how much (the sign follows from `kind`).
    pub amount: Cents,
    /// The balance right after the change.
    pub balance_after: Cents,
}

/// A consistent snapshot: every balance and the whole log, taken at one
/// moment (no operation half-way through).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Balance per account, by account number.
    pub balances: Vec<Cents>,
    /// Every entry so far; within one account, in the order applied.
    pub log: Vec<Entry>,
}

/// One account's state. The *checks and updates* live here, so that the
/// three designs differ only in how they protect it, which is the lesson.
#[derive(Debug, Clone, Default)]
pub struct Account {
    balance: Cents,
    transfers_out: u64,
}

impl Account {
    /// An account holding `opening`.
    pub fn new(opening: Cents) -> Self {
        Self {
            balance: opening,
            transfers_out: 0,
        }
    }

    /// The current balance.
    pub fn balance(&self) -> Cents {
        self.balance
    }

    /// Adds `amount`; returns the log entry.
    pub fn deposit(&mut self, id: AccountId, amount: Cents) -> Result<Entry, BankError> {
        positive(amount)?;
        let after = self.balance.0.checked_add(amount.0);
        self.balance = Cents(after.ok_or(BankError::Overflow(id))?);
        Ok(self.entry(id, EntryKind::Deposit, amount))
    }

    /// Takes `amount` out if it is there: check and update in one call, so
    /// whoever holds `&mut self` does both in one critical section.
    pub fn withdraw(&mut self, id: AccountId, amount: Cents) -> Result<Entry, BankError> {
        self.debit(id, amount)?;
        Ok(self.entry(id, EntryKind::Withdrawal, amount))
    }

    fn debit(&mut self, id: AccountId, amount: Cents) -> Result<(), BankError> {
        positive(amount)?;
        let after = self
            .balance
            .0
            .checked_sub(amount.0)
            .ok_or(InsufficientFunds {
                account: id,
                balance: self.balance,
                requested: amount,
            })?;
        self.balance = Cents(after);
        Ok(())
    }

    fn entry(&self, account: AccountId, kind: EntryKind, amount: Cents) -> Entry {
        Entry {
            account,
            kind,
            amount,
            balance_after: self.balance,
        }
    }
}

/// Moves `amount` between two accounts the caller has both locked. Checks
/// both sides before changing either, so a failure changes nothing.
pub fn transfer(
    (from_id, from): (AccountId, &mut Account),
    (to_id, to): (AccountId, &mut Account),
    amount: Cents,
) -> Result<[Entry; 2], BankError> {
    positive(amount)?;
    if to.balance.0.checked_add(amount.0).is_none() {
        return Err(BankError::Overflow(to_id));
    }
    from.debit(from_id, amount)?;
    // Cannot overflow: checked just above, and `to` is exclusively ours.
    to.balance.0 += amount.0;
    let id = TransferId {
        from: from_id,
        seq: from.transfers_out,
    };
    from.transfers_out += 1;
    Ok([
        from.entry(from_id, EntryKind::TransferOut { to: to_id, id }, amount),
        to.entry(to_id, EntryKind::TransferIn { from: from_id, id }, amount),
    ])
}

fn positive(amount: Cents) -> Result<(), BankError> {
    if amount.0 == 0 {
        return Err(BankError::ZeroAmount);
    }
    Ok(())
}

/// The operations every design offers. Each future is `Send`, so a generic
/// caller can `tokio::spawn` it whatever the design behind it.
pub trait Bank: Send + Sync + 'static {
    /// A short name for tables: `std-mutex`, `tokio-mutex`, `actor`.
    fn design(&self) -> &'static str;

    /// Adds `amount`; returns the new balance.
    fn deposit(
        &self,
        account: AccountId,
        amount: Cents,
    ) -> impl Future<Output = Result<Cents, BankError>> + Send;

    /// Takes `amount` out or fails with [`InsufficientFunds`]; returns the
    /// new balance.
    fn withdraw(
        &self,
        account: AccountId,
        amount: Cents,
    ) -> impl Future<Output = Result<Cents, BankError>> + Send;

    /// Moves `amount` from one account to another, all or nothing.
    fn transfer(
        &self,
        from: AccountId,
        to: AccountId,
        amount: Cents,
    ) -> impl Future<Output = Result<(), BankError>> + Send;

    /// The current balance.
    fn balance(&self, account: AccountId) -> impl Future<Output = Result<Cents, BankError>> + Send;

    /// A consistent snapshot of all balances and the whole log.
    fn audit(&self) -> impl Future<Output = Result<Audit, BankError>> + Send;
}
