//! Design 2: one `tokio::sync::Mutex` per account, with an await under it.
//!
//! Use the async mutex only when something must be *awaited* while the lock
//! is held; it is slower than a std `Mutex` (a queue of waiters, a wake-up
//! per hand-over) and holding any lock across an await makes every other
//! caller wait for that await too. Here the await is real: every change is
//! written to an audit log, a separate task fed through a bounded channel,
//! and the log must list each account's changes in the order they happened.
//! So the write has to happen while the account is still locked, and when
//! the audit log falls behind, waiting for room in its channel is the
//! backpressure that keeps memory bounded. That wait is the `.await` under
//! the lock.
//!
//! Cancellation: the caller's future can be dropped at any `.await`. We
//! await only *reserving* a slot in the audit channel (`reserve`,
//! `reserve_many`), then check, update the balance and send the entry with
//! no await in between. A caller cancelled while waiting leaves neither a
//! balance change nor a log entry; one that got past the wait finishes both.
//! (Awaiting `send(entry)` *after* updating the balance would let a
//! cancellation change money without a log entry.)
//!
//! Lock order for transfers is the same as in [`super::std_mutex`]: the
//! lower account number first.

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Account, AccountId, Audit, Bank, BankError, Cents, Entry, transfer};

/// Room in the audit channel: enough to absorb bursts, small enough that a
/// stalled audit writer stops the bank instead of eating memory.
const AUDIT_CAPACITY: usize = 4096;

#[derive(Debug)]
enum AuditMessage {
    /// Append one entry.
    Record(Entry),
    /// Reply with a copy of everything recorded so far.
    Snapshot(oneshot::Sender<Vec<Entry>>),
}

/// A bank whose accounts each sit behind a `tokio::sync::Mutex`, with an
/// audit-log task that records every change in order.
#[derive(Debug)]
pub struct TokioMutexBank {
    accounts: Box<[Mutex<Account>]>,
    audit_tx: mpsc::Sender<AuditMessage>,
}

impl TokioMutexBank {
    /// A bank with one account per opening balance. Spawns the audit
    /// writer, so call it inside a tokio runtime; the writer stops when the
    /// bank is dropped.
    pub fn new(opening: &[Cents]) -> Self {
        let (audit_tx, audit_rx) = mpsc::channel(AUDIT_CAPACITY);
        tokio::spawn(audit_writer(audit_rx));
        Self {
            accounts: opening
                .iter()
                .map(|&c| Mutex::new(Account::new(c)))
                .collect(),
            audit_tx,
        }
    }

    fn account(&self, id: AccountId) -> Result<&Mutex<Account>, BankError> {
        self.accounts.get(id).ok_or(BankError::UnknownAccount(id))
    }

    /// Deposit or withdraw: lock, wait for audit room, then check, update
    /// and record with no await in between.
    async fn change(
        &self,
        id: AccountId,
        apply: impl FnOnce(&mut Account) -> Result<Entry, BankError>,
    ) -> Result<Cents, BankError> {
        let mut account = self.account(id)?.lock().await;
        // The await under the lock (see the module docs for why).
        let slot = self
            .audit_tx
            .reserve()
            .await
            .map_err(|_| BankError::Closed)?;
        let entry = apply(&mut account)?; // on error the unused slot is released
        slot.send(AuditMessage::Record(entry));
        Ok(entry.balance_after)
    }
}

/// The audit log: owns the entries, appends in arrival order.
async fn audit_writer(mut rx: mpsc::Receiver<AuditMessage>) {
    let mut log = Vec::new();
    let mut batch = Vec::with_capacity(256);
    // recv_many drains up to 256 messages per wake-up: one wake-up per
    // burst instead of one per entry. Ends when every sender is gone.
    while rx.recv_many(&mut batch, 256).await > 0 {
        for message in batch.drain(..) {
            match message {
                AuditMessage::Record(entry) => log.push(entry),
                // The requester may have given up; then nobody needs it.
                AuditMessage::Snapshot(reply) => drop(reply.send(log.clone())),
            }
        }
    }
}

impl Bank for TokioMutexBank {
    fn design(&self) -> &'static str {
        "tokio-mutex"
    }

    async fn deposit(&self, account: AccountId, amount: Cents) -> Result<Cents, BankError> {
        self.change(account, |a| a.deposit(account, amount)).await
    }

    async fn withdraw(&self, account: AccountId, amount: Cents) -> Result<Cents, BankError> {
        self.change(account, |a| a.withdraw(account, amount)).await
    }

    async fn transfer(
        &self,
        from: AccountId,
        to: AccountId,
        amount: Cents,
    ) -> Result<(), BankError> {
        if from == to {
            return Err(BankError::SameAccount(from));
        }
        let (from_lock, to_lock) = (self.account(from)?, self.account(to)?);
        // Lower account number first, whatever the direction.
        let (mut from_account, mut to_account) = if from < to {
            let first = from_lock.lock().await;
            (first, to_lock.lock().await)
        } else {
            let first = to_lock.lock().await;
            (from_lock.lock().await, first)
        };
        // Both entries go in together or not at all.
        let mut slots = self
            .audit_tx
            .reserve_many(2)
            .await
            .map_err(|_| BankError::Closed)?;
        let entries = transfer((from, &mut from_account), (to, &mut to_account), amount)?;
        for entry in entries {
            // reserve_many(2) yielded exactly two slots for two entries.
            let slot = slots.next().expect("two reserved slots");
            slot.send(AuditMessage::Record(entry));
        }
        Ok(())
    }

    async fn balance(&self, account: AccountId) -> Result<Cents, BankError> {
        Ok(self.account(account)?.lock().await.balance())
    }

    async fn audit(&self) -> Result<Audit, BankError> {
        // Lock every account (in order, like transfers), so no change is
        // half-way; everything changed so far is already in the channel
        // ahead of our request, so the log we get back is complete.
        let mut locked = Vec::with_capacity(self.accounts.len());
        for account in self.accounts.iter() {
            locked.push(account.lock().await);
        }
        let (reply, log) = oneshot::channel();
        self.audit_tx
            .send(AuditMessage::Snapshot(reply))
            .await
            .map_err(|_| BankError::Closed)?;
        let log = log.await.map_err(|_| BankError::Closed)?;
        Ok(Audit {
            balances: locked.iter().map(|a| a.balance()).collect(),
            log,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use futures::FutureExt;

    use super::*;

    // The rule the module docs give: the lower account number first, in
    // both directions. Seen from outside: while the higher account is
    // busy, a transfer holds the lower one and waits for the higher.
    #[tokio::test]
    async fn a_transfer_locks_the_lower_account_number_first_in_either_direction() {
        for (from, to) in [(0, 1), (1, 0)] {
            let bank = TokioMutexBank::new(&[Cents(100), Cents(100)]);
            let higher = bank.accounts[1].lock().await;
            let mut transfer = pin!(bank.transfer(from, to, Cents(10)));
            assert!(
                transfer.as_mut().now_or_never().is_none(),
                "waits for the higher"
            );
            assert!(
                bank.accounts[0].try_lock().is_err(),
                "{from} -> {to}: the lower account is not held while the higher is busy"
            );
            drop(higher);
            transfer.await.unwrap();
            assert_eq!(bank.balance(from).await, Ok(Cents(90)));
            assert_eq!(bank.balance(to).await, Ok(Cents(110)));
        }
    }
}
