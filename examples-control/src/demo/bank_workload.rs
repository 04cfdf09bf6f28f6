//! Demo support: one workload for every bank design, the stress test and
//! the benchmark.
//!
//! [`run`] spawns `concurrency` tasks sharing `ops` seeded random
//! operations against any [`Bank`], and counts what happened. Because the
//! same code drives all three designs, their figures compare like for like,
//! and [`crate::bank::verify`] can check each one's log against its balances
//! afterwards. [`opposite_transfers`] is the deadlock probe.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bank::{AccountId, Bank, BankError, Cents, LedgerSummary, verify};

/// Which operations the tasks pick from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// Only transfers: the bank's total must stay exactly the same.
    Transfers,
    /// Deposits, withdrawals, transfers and balance reads, a quarter each
    /// (no transfers with a single account).
    Mixed,
}

/// The shape of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// Concurrent tasks (at least 1).
    pub concurrency: usize,
    /// Operations in total, shared out evenly among the tasks.
    pub ops: usize,
    /// Accounts the bank has (the tasks pick among them).
    pub accounts: usize,
    /// Largest amount of one operation, in cents (amounts are 1..=this).
    pub max_amount: u64,
    /// Operation mix.
    pub mix: Mix,
    /// RNG seed; task `i` uses `seed + i`, so a run is reproducible.
    pub seed: u64,
}

/// What a run did. `ok + insufficient == ops`: every operation is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorkloadReport {
    /// Operations attempted.
    pub ops: u64,
    /// Operations that succeeded.
    pub ok: u64,
    /// Withdrawals and transfers refused with `InsufficientFunds`.
    pub insufficient: u64,
    /// Successful deposits, in total.
    pub deposited: Cents,
    /// Successful withdrawals, in total.
    pub withdrawn: Cents,
    /// Successful transfers.
    pub transfers: u64,
    /// Wall time from the first spawn to the last task's end.
    #[serde(skip)]
    pub elapsed: Duration,
    /// True if `stop` fired before every task finished its operations.
    pub stopped_early: bool,
}

impl WorkloadReport {
    fn add(&mut self, other: &Self) {
        self.ops += other.ops;
        self.ok += other.ok;
        self.insufficient += other.insufficient;
        // Saturating, like the ledger's totals (see `LedgerSummary`).
        self.deposited.0 = self.deposited.0.saturating_add(other.deposited.0);
        self.withdrawn.0 = self.withdrawn.0.saturating_add(other.withdrawn.0);
        self.transfers += other.transfers;
        self.stopped_early |= other.stopped_early;
    }

    /// Operations per second of wall time.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `workload` against `bank`. Tasks check `stop` between operations
/// and end early when it fires. Any error other than `InsufficientFunds`
/// is a bug and ends the run with that error.
pub async fn run<B: Bank>(
    bank: Arc<B>,
    workload: Workload,
    stop: CancellationToken,
) -> anyhow::Result<WorkloadReport> {
    if workload.accounts == 0 || (workload.mix == Mix::Transfers && workload.accounts < 2) {
        anyhow::bail!(
            "this workload needs at least {} accounts",
            1 + usize::from(workload.mix == Mix::Transfers)
        );
    }
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    let concurrency = workload.concurrency.max(1);
    for task in 0..concurrency {
        // The first `ops % concurrency` tasks take one extra.
        let share = workload.ops / concurrency + usize::from(task < workload.ops % concurrency);
        let (bank, stop) = (Arc::clone(&bank), stop.clone());
        tasks.spawn(async move { one_task(&*bank, workload, task, share, &stop).await });
    }
    let mut total = WorkloadReport::default();
    while let Some(joined) = tasks.join_next().await {
        total.add(&joined??);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// A run whose books were checked afterwards.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CheckedRun {
    /// Which design ran.
    pub design: &'static str,
    /// What the tasks did.
    pub report: WorkloadReport,
    /// What the bank's log says happened (it agreed with the report).
    pub ledger: LedgerSummary,
    /// Sum of all balances before the run.
    pub total_before: Cents,
    /// Sum of all balances after it.
    pub total_after: Cents,
    /// Operations per second of wall time.
    pub ops_per_s: f64,
}

/// [`run`], then the books: the log replays to the balances ([`verify`]),
/// it records exactly the deposits and withdrawals the tasks saw succeed,
/// the total moved by exactly deposits minus withdrawals, and every
/// operation was counted. Any mismatch is an error.
pub async fn run_checked<B: Bank>(
    bank: Arc<B>,
    opening: &[Cents],
    workload: Workload,
    stop: CancellationToken,
) -> anyhow::Result<CheckedRun> {
    let design = bank.design();
    let report = run(Arc::clone(&bank), workload, stop).await?;
    let audit = bank.audit().await?;
    let ledger = verify(opening, &audit).map_err(|e| anyhow::anyhow!("{design}: {e}"))?;
    // u128: a sum of u64 balances (or of a balance sum and a total) cannot
    // overflow it, so the money check is exact; the totals shown saturate.
    let sum = |cents: &[Cents]| cents.iter().map(|c| u128::from(c.0)).sum::<u128>();
    let (before, after) = (sum(opening), sum(&audit.balances));
    let clamp = |total: u128| Cents(u64::try_from(total).unwrap_or(u64::MAX));
    let (total_before, total_after) = (clamp(before), clamp(after));
    let saturated = ledger.totals_saturated;
    if (!saturated
        && after + u128::from(report.withdrawn.0) != before + u128::from(report.deposited.0))
        || (ledger.deposited, ledger.withdrawn) != (report.deposited, report.withdrawn)
        || ledger.transfers as u64 != report.transfers
        || report.ok + report.insufficient != report.ops
    {
        anyhow::bail!("{design}: money appeared or vanished: {report:?} vs {ledger:?}");
    }
    Ok(CheckedRun {
        design,
        report,
        ledger,
        total_before,
        total_after,
        ops_per_s: report.ops_per_s(),
    })
}

async fn one_task<B: Bank>(
    bank: &B,
    workload: Workload,
    task: usize,
    share: usize,
    stop: &CancellationToken,
) -> Result<WorkloadReport, BankError> {
    // SmallRng (xoshiro): a few ns per number, so the benchmark measures the
    // bank rather than a cryptographic generator.
    let mut rng = SmallRng::seed_from_u64(workload.seed.wrapping_add(task as u64));
    let mut report = WorkloadReport::default();
    for op in 0..share {
        // Every 64 operations is prompt enough, and keeps the check off the
        // benchmark's hot path.
        if op % 64 == 0 && stop.is_cancelled() {
            report.stopped_early = true;
            break;
        }
        // The std-mutex design never awaits, so without this a task would
        // hold its worker thread to the end of its share: with every
        // worker busy, nothing else (the signal handler that cancels
        // `stop`, first of all) would ever run. Once per 1,024 operations
        // costs nothing measurable.
        if op % 1024 == 1023 {
            tokio::task::yield_now().await;
        }
        let account: AccountId = rng.random_range(0..workload.accounts);
        let amount = Cents(rng.random_range(1..=workload.max_amount));
        // 0 transfer, 1 deposit, 2 withdrawal, 3 balance read.
        let kind = match workload.mix {
            Mix::Transfers => 0,
            Mix::Mixed if workload.accounts == 1 => rng.random_range(1..4),
            Mix::Mixed => rng.random_range(0..4),
        };
        let outcome = match kind {
            0 => {
                // Any other account: shift by 1..accounts, wrapping around.
                let to = (account + rng.random_range(1..workload.accounts)) % workload.accounts;
                bank.transfer(account, to, amount)
                    .await
                    .map(|()| report.transfers += 1)
            }
            1 => bank
                .deposit(account, amount)
                .await
                .map(|_| report.deposited.0 = report.deposited.0.saturating_add(amount.0)),
            2 => bank
                .withdraw(account, amount)
                .await
                .map(|_| report.withdrawn.0 = report.withdrawn.0.saturating_add(amount.0)),
            _ => bank.balance(account).await.map(drop),
        };
        report.ops += 1;
        match outcome {
            Ok(()) => report.ok += 1,
            Err(BankError::InsufficientFunds(_)) => report.insufficient += 1,
            Err(other) => return Err(other),
        }
    }
    Ok(report)
}

/// `rounds` transfers from `a` to `b` and `rounds` from `b` to `a`, all at
/// once, `per_task` per task. Without a lock order this is the classic
/// deadlock; callers put a timeout around it.
pub async fn opposite_transfers<B: Bank>(
    bank: Arc<B>,
    (a, b): (AccountId, AccountId),
    rounds: usize,
    per_task: usize,
    amount: Cents,
) -> anyhow::Result<u64> {
    let mut tasks = JoinSet::new();
    let per_task = per_task.max(1);
    for (from, to) in [(a, b), (b, a)] {
        let mut left = rounds;
        while left > 0 {
            let n = left.min(per_task);
            left -= n;
            let bank = Arc::clone(&bank);
            tasks.spawn(async move {
                let mut done = 0u64;
                for _ in 0..n {
                    match bank.transfer(from, to, amount).await {
                        Ok(()) => done += 1,
                        Err(BankError::InsufficientFunds(_)) => {}
                        Err(other) => return Err(other),
                    }
                    // Yield so the opposite direction interleaves even on a
                    // single-threaded runtime (the std design never awaits).
                    tokio::task::yield_now().await;
                }
                Ok(done)
            });
        }
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        done += joined??;
    }
    Ok(done)
}
