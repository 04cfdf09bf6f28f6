//! Demo support: what `bank-account` does per design. It runs the shared
//! workload on fresh banks, verifies every ledger, probes opposite
//! transfers for deadlock (outside `--bench`), and prints a table row.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::bank_workload::{self, Workload};
use crate::bank::actor::ActorBank;
use crate::bank::std_mutex::StdMutexBank;
use crate::bank::tokio_mutex::TokioMutexBank;
use crate::bank::{Bank, Cents};

/// Which design(s) to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Design {
    /// All three, one after the other.
    All,
    /// A std::sync::Mutex per account (no await under the lock).
    StdMutex,
    /// A tokio::sync::Mutex per account, awaiting the audit log under it.
    TokioMutex,
    /// One task owns the accounts; mpsc commands, oneshot replies.
    Actor,
}

/// How a run of the designs is set up.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The shared workload.
    pub workload: Workload,
    /// Every account's opening balance.
    pub opening: Cents,
    /// Measured runs per design (the median rate is reported).
    pub runs: u32,
    /// Benchmark mode: an untimed warm-up run first, no deadlock probe.
    pub bench: bool,
    /// Print the table rows.
    pub print: bool,
}

/// Runs `design` (or all three) under `plan`; one JSON row per design:
/// `{"design", "report", "ledger", "total_after_cents", "ops_per_s",
/// "runs_ops_per_s", "opposite_transfers_done"}`.
pub async fn run(
    design: Design,
    plan: Plan,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<Value>> {
    let opening = vec![plan.opening; plan.workload.accounts];
    let o = &opening;
    let mut rows = Vec::new();
    if plan.print {
        println!(
            "{:<12} {:>9} {:>9} {:>9} {:>14} {:>13}  ledger",
            "design", "ops", "ok", "refused", "total after", "ops/s"
        );
    }
    if matches!(design, Design::All | Design::StdMutex) {
        rows.push(exercise(|| StdMutexBank::new(o), o, plan, stop).await?);
    }
    if matches!(design, Design::All | Design::TokioMutex) && !stop.is_cancelled() {
        rows.push(exercise(|| TokioMutexBank::new(o), o, plan, stop).await?);
    }
    if matches!(design, Design::All | Design::Actor) && !stop.is_cancelled() {
        rows.push(exercise(|| ActorBank::new(o), o, plan, stop).await?);
    }
    Ok(rows)
}

/// Runs the workload `plan.runs` times on fresh banks, verifies every
/// ledger, then (outside `--bench`) fires opposite transfers under a
/// timeout.
async fn exercise<B: Bank>(
    make: impl Fn() -> B,
    opening: &[Cents],
    plan: Plan,
    stop: &CancellationToken,
) -> anyhow::Result<Value> {
    let workload = plan.workload;
    let mut rates = Vec::new();
    let mut last = None;
    if plan.bench {
        // Warm-up, not counted: faults in the memory the logs will reuse,
        // so the timed runs measure the bank, not the first page faults.
        bank_workload::run_checked(Arc::new(make()), opening, workload, stop.clone()).await?;
    }
    for _ in 0..plan.runs {
        let bank = Arc::new(make());
        let checked = bank_workload::run_checked(bank, opening, workload, stop.clone()).await?;
        rates.push(checked.ops_per_s);
        last = Some(checked);
        if stop.is_cancelled() {
            break;
        }
    }
    let checked = last.context("at least one run")?;
    let (report, ledger, after) = (checked.report, checked.ledger, checked.total_after);
    let design = checked.design;
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    if plan.print {
        println!(
            "{design:<12} {:>9} {:>9} {:>9} {:>14} {median:>13.0}  {} entries, {} transfers: ok",
            report.ops,
            report.ok,
            report.insufficient,
            after.to_string(),
            ledger.entries,
            ledger.transfers
        );
    }
    let mut row = json!({"design": design, "report": report, "ledger": ledger, "total_after_cents": after.0,
        "ops_per_s": median.round(), "runs_ops_per_s": rates.iter().map(|r| r.round()).collect::<Vec<_>>()});
    if !plan.bench && opening.len() >= 2 && !stop.is_cancelled() {
        // The deadlock probe: A->B and B->A at once, 1,000 each.
        let probe =
            bank_workload::opposite_transfers(Arc::new(make()), (0, 1), 1_000, 50, Cents(1));
        let done = tokio::time::timeout(Duration::from_secs(10), probe)
            .await
            .with_context(|| format!("{design}: opposite transfers deadlocked"))??;
        if plan.print {
            println!(
                "{:<12} opposite transfers 0->1 and 1->0, 1,000 each: {done} done, no deadlock",
                ""
            );
        }
        row["opposite_transfers_done"] = json!(done);
    }
    Ok(row)
}

/// The demo's last lines: what was checked, or why it stopped early.
pub fn closing(interrupted: bool, bench: bool) {
    if interrupted {
        println!(
            "\ninterrupted: tasks stopped between operations; the ledgers above were still verified"
        );
    } else if !bench {
        println!(
            "every design: total after = total before + deposited - withdrawn, and the log replays to the balances"
        );
        println!("try --demo-race to see what a split check-and-act does, --bench for throughput");
    }
}
