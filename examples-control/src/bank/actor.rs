//! Design 3: an actor. One task owns every account; callers send it
//! commands over a bounded `mpsc` channel, each with a `oneshot` for the
//! reply.
//!
//! No locks at all: the actor handles one command at a time, so every
//! operation is a critical section by construction and there is no lock
//! order to get wrong. The price is a channel round trip per operation and
//! a single task doing all the work, which caps throughput at one core. It
//! shines when state is touched from many places, when operations must be
//! strictly serial, or when the owner also has to do async work (I/O)
//! between commands.
//!
//! Semantics worth knowing: once a command is in the channel, it *will* be
//! applied, even if the caller stops waiting for the reply (its future was
//! cancelled). The log records it either way; the caller just never learns
//! the outcome. If that matters, make operations idempotent (a request id).
//!
//! Python equivalent: an `asyncio.Queue` consumed by one task, with an
//! `asyncio.Future` per request for the answer.

use tokio::sync::{mpsc, oneshot};

use super::{Account, AccountId, Audit, Bank, BankError, Cents, Entry, transfer};

/// Commands waiting for the actor: callers queue behind this many before
/// `send` waits (backpressure, not unbounded memory).
const MAILBOX_CAPACITY: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, BankError>>;

#[derive(Debug)]
enum Command {
    Deposit(AccountId, Cents, Reply<Cents>),
    Withdraw(AccountId, Cents, Reply<Cents>),
    Transfer(AccountId, AccountId, Cents, Reply<()>),
    Balance(AccountId, Reply<Cents>),
    Audit(Reply<Audit>),
}

/// A handle to the bank actor. Cheap to clone; the actor stops when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct ActorBank {
    tx: mpsc::Sender<Command>,
}

impl ActorBank {
    /// Spawns the actor owning one account per opening balance. Call it
    /// inside a tokio runtime.
    pub fn new(opening: &[Cents]) -> Self {
        let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
        let accounts = opening.iter().map(|&c| Account::new(c)).collect();
        tokio::spawn(run_actor(accounts, rx));
        Self { tx }
    }

    /// Sends a command built around a fresh reply channel; awaits the reply.
    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, BankError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(command(reply))
            .await
            .map_err(|_| BankError::Closed)?;
        // A dropped reply sender means the actor died mid-command.
        answer.await.map_err(|_| BankError::Closed)?
    }
}

/// The actor: the only code that ever touches the accounts.
async fn run_actor(mut accounts: Vec<Account>, mut rx: mpsc::Receiver<Command>) {
    let mut log: Vec<Entry> = Vec::new();
    let mut batch = Vec::with_capacity(128);
    // Take up to 128 queued commands per wake-up; ends when all handles drop.
    while rx.recv_many(&mut batch, 128).await > 0 {
        for command in batch.drain(..) {
            // Every `let _ = reply.send(..)` below: Err means the caller was
            // cancelled; the command is applied and logged regardless.
            match command {
                Command::Deposit(id, amount, reply) => {
                    let result = account_mut(&mut accounts, id).and_then(|a| a.deposit(id, amount));
                    let _ = reply.send(record(&mut log, result)); // caller may be gone
                }
                Command::Withdraw(id, amount, reply) => {
                    let result =
                        account_mut(&mut accounts, id).and_then(|a| a.withdraw(id, amount));
                    let _ = reply.send(record(&mut log, result)); // caller may be gone
                }
                Command::Transfer(from, to, amount, reply) => {
                    let result = pair_mut(&mut accounts, from, to)
                        .and_then(|(a, b)| transfer((from, a), (to, b), amount));
                    if let Ok(entries) = &result {
                        log.extend_from_slice(entries);
                    }
                    let _ = reply.send(result.map(|_| ())); // caller may be gone
                }
                Command::Balance(id, reply) => {
                    let result = account_mut(&mut accounts, id).map(|a| a.balance());
                    let _ = reply.send(result); // caller may be gone
                }
                Command::Audit(reply) => {
                    let audit = Audit {
                        balances: accounts.iter().map(Account::balance).collect(),
                        log: log.clone(),
                    };
                    let _ = reply.send(Ok(audit)); // caller may be gone
                }
            }
        }
    }
}

/// Logs a successful change; passes on the new balance or the error.
fn record(log: &mut Vec<Entry>, result: Result<Entry, BankError>) -> Result<Cents, BankError> {
    let entry = result?;
    log.push(entry);
    Ok(entry.balance_after)
}

fn account_mut(accounts: &mut [Account], id: AccountId) -> Result<&mut Account, BankError> {
    accounts.get_mut(id).ok_or(BankError::UnknownAccount(id))
}

/// Two distinct accounts, mutably, in the order asked for.
fn pair_mut(
    accounts: &mut [Account],
    a: AccountId,
    b: AccountId,
) -> Result<(&mut Account, &mut Account), BankError> {
    if a == b {
        return Err(BankError::SameAccount(a));
    }
    let len = accounts.len();
    for id in [a, b] {
        if id >= len {
            return Err(BankError::UnknownAccount(id));
        }
    }
    // Split the slice between the two indices: each half lends one account.
    let (low, high) = (a.min(b), a.max(b));
    let (head, tail) = accounts.split_at_mut(high);
    let (low_account, high_account) = (&mut head[low], &mut tail[0]);
    Ok(if a < b {
        (low_account, high_account)
    } else {
        (high_account, low_account)
    })
}

impl Bank for ActorBank {
    fn design(&self) -> &'static str {
        "actor"
    }

    async fn deposit(&self, account: AccountId, amount: Cents) -> Result<Cents, BankError> {
        self.ask(|reply| Command::Deposit(account, amount, reply))
            .await
    }

    async fn withdraw(&self, account: AccountId, amount: Cents) -> Result<Cents, BankError> {
        self.ask(|reply| Command::Withdraw(account, amount, reply))
            .await
    }

    async fn transfer(
        &self,
        from: AccountId,
        to: AccountId,
        amount: Cents,
    ) -> Result<(), BankError> {
        self.ask(|reply| Command::Transfer(from, to, amount, reply))
            .await
    }

    async fn balance(&self, account: AccountId) -> Result<Cents, BankError> {
        self.ask(|reply| Command::Balance(account, reply)).await
    }

    async fn audit(&self) -> Result<Audit, BankError> {
        self.ask(Command::Audit).await
    }
}
