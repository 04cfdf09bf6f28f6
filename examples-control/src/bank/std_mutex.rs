//! Design 1: one `std::sync::Mutex` per account.
//!
//! The right default. Every critical section here is a few integer
//! operations and a `Vec::push`, with no `.await` inside, so a blocking
//! lock is held for nanoseconds and never across a suspension point. (Held
//! across an `.await`, a std guard would make the future `!Send`, and
//! clippy's `await_holding_lock` would say so.) The trait's `async fn`s
//! complete on their first poll.
//!
//! Each account keeps its own slice of the log beside its balance, under the
//! same lock: the entry is written in the same critical section as the
//! change, so log and balance cannot disagree, and no global log lock
//! serialises unrelated accounts.
//!
//! Transfers lock two accounts, always the lower-numbered one first. If one
//! task locked A then B while another locked B then A, each could hold one
//! and wait forever for the other; with one global order, whoever gets the
//! first lock can always get the second.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Account, AccountId, Audit, Bank, BankError, Cents, Entry, transfer};

/// An account and its part of the log, which change together.
#[derive(Debug, Default)]
struct Book {
    account: Account,
    journal: Vec<Entry>,
}

/// One account's lock, aligned to its own cache lines so two cores locking
/// neighbouring accounts do not fight over one line (false sharing).
#[derive(Debug)]
#[repr(align(128))]
struct Slot(Mutex<Book>);

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Book> {
        // A panic inside a critical section cannot leave a half-applied
        // change: every operation checks everything before it mutates. So a
        // poisoned lock still guards consistent data; carry on with it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bank whose accounts each sit behind a `std::sync::Mutex`.
#[derive(Debug)]
pub struct StdMutexBank {
    slots: Box<[Slot]>,
}

impl StdMutexBank {
    /// A bank with one account per opening balance.
    pub fn new(opening: &[Cents]) -> Self {
        let slots = opening
            .iter()
            .map(|&cents| {
                Slot(Mutex::new(Book {
                    account: Account::new(cents),
                    journal: Vec::new(),
                }))
            })
            .collect();
        Self { slots }
    }

    fn slot(&self, id: AccountId) -> Result<&Slot, BankError> {
        self.slots.get(id).ok_or(BankError::UnknownAccount(id))
    }

    /// Deposit, synchronously: the lock is taken and released inside.
    pub fn deposit_now(&self, id: AccountId, amount: Cents) -> Result<Cents, BankError> {
        let mut book = self.slot(id)?.lock();
        let entry = book.account.deposit(id, amount)?;
        book.journal.push(entry);
        Ok(entry.balance_after)
    }

    /// Withdraw, synchronously: check and update under one lock.
    pub fn withdraw_now(&self, id: AccountId, amount: Cents) -> Result<Cents, BankError> {
        let mut book = self.slot(id)?.lock();
        let entry = book.account.withdraw(id, amount)?;
        book.journal.push(entry);
        Ok(entry.balance_after)
    }

    /// Transfer, synchronously, locking the lower account number first.
    pub fn transfer_now(
        &self,
        from: AccountId,
        to: AccountId,
        amount: Cents,
    ) -> Result<(), BankError> {
        if from == to {
            return Err(BankError::SameAccount(from));
        }
        let (from_slot, to_slot) = (self.slot(from)?, self.slot(to)?);
        // The lock order: by account number, whatever the transfer direction.
        let (mut from_book, mut to_book) = if from < to {
            let first = from_slot.lock();
            (first, to_slot.lock())
        } else {
            let first = to_slot.lock();
            (from_slot.lock(), first)
        };
        let [out, inn] = transfer(
            (from, &mut from_book.account),
            (to, &mut to_book.account),
            amount,
        )?;
        from_book.journal.push(out);
        to_book.journal.push(inn);
        Ok(())
    }

    /// Balance, synchronously.
    pub fn balance_now(&self, id: AccountId) -> Result<Cents, BankError> {
        Ok(self.slot(id)?.lock().account.balance())
    }

    /// A consistent snapshot: holds every lock (in order) while copying.
    pub fn audit_now(&self) -> Audit {
        let books: Vec<_> = self.slots.iter().map(Slot::lock).collect();
        Audit {
            balances: books.iter().map(|b| b.account.balance()).collect(),
            log: books
                .iter()
                .flat_map(|b| b.journal.iter().copied())
                .collect(),
        }
    }
}

impl Bank for StdMutexBank {
    fn design(&self) -> &'static str {
        "std-mutex"
    }

    async fn deposit(&self, account: AccountId, amount: Cents) -> Result<Cents, BankError> {
        self.deposit_now(account, amount)
    }

    async fn withdraw(&self, account: AccountId, amount: Cents) -> Result<Cents, BankError> {
        self.withdraw_now(account, amount)
    }

    async fn transfer(
        &self,
        from: AccountId,
        to: AccountId,
        amount: Cents,
    ) -> Result<(), BankError> {
        self.transfer_now(from, to, amount)
    }

    async fn balance(&self, account: AccountId) -> Result<Cents, BankError> {
        self.balance_now(account)
    }

    async fn audit(&self) -> Result<Audit, BankError> {
        Ok(self.audit_now())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, TryLockError};
    use std::time::{Duration, Instant};

    use super::*;

    /// Whether some other thread holds this account's lock right now.
    fn held_elsewhere(bank: &StdMutexBank, id: AccountId) -> bool {
        matches!(bank.slots[id].0.try_lock(), Err(TryLockError::WouldBlock))
    }

    // The rule the module docs give: the lower account number first, in
    // both directions. Seen from outside: while the higher account is
    // busy, a transfer holds the lower one and waits for the higher.
    #[test]
    fn a_transfer_locks_the_lower_account_number_first_in_either_direction() {
        for (from, to) in [(0, 1), (1, 0)] {
            let bank = Arc::new(StdMutexBank::new(&[Cents(100), Cents(100)]));
            let higher = bank.slots[1].lock();
            let transfer = std::thread::spawn({
                let bank = Arc::clone(&bank);
                move || bank.transfer_now(from, to, Cents(10))
            });
            let started = Instant::now();
            while !held_elsewhere(&bank, 0) {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "{from} -> {to}: the lower account was never locked while the higher was busy"
                );
                std::thread::yield_now();
            }
            drop(higher);
            transfer.join().unwrap().unwrap();
            assert_eq!(bank.balance_now(from), Ok(Cents(90)));
            assert_eq!(bank.balance_now(to), Ok(Cents(110)));
        }
    }
}
