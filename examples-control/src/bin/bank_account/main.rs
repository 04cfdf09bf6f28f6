//! `bank-account`: shared state behind a lock, three ways (seed Example 9).
//! See `examples_control::bank`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};

mod race;
use examples_control::bank::actor::ActorBank;
use examples_control::bank::std_mutex::StdMutexBank;
use examples_control::bank::tokio_mutex::TokioMutexBank;
use examples_control::bank::workload::{self, Mix, Workload};
use examples_control::bank::{Bank, BankError, Cents};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Seed Example 9 (Lock for Shared State), ported: accounts in integer
/// cents, a typed InsufficientFunds, deposit/withdraw/transfer with lock
/// ordering, and three designs (std Mutex, tokio Mutex with an await under
/// the lock, an actor) run through the same workload, with the transaction
/// log checked against the balances after every run.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Which design(s) to run.
    #[arg(long, value_enum, default_value_t = Design::All)]
    design: Design,
    /// Concurrent tasks [default: 10; 100 with --bench].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    tasks: Option<u32>,
    /// Operations per task [default: 5; 10,000 with --bench].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    ops: Option<u32>,
    /// Number of accounts.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    accounts: u32,
    /// Opening balance of every account, in cents.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(0..=1_000_000_000_000))]
    opening_cents: u64,
    /// Largest single amount, in cents (amounts are 1..=this).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    max_amount_cents: u64,
    /// RNG seed (task i uses seed + i).
    #[arg(long, default_value_t = 9)]
    seed: u64,
    /// Benchmark: 100 tasks x 10,000 operations per design, one untimed warm-up run, then 3 runs (median).
    #[arg(long)]
    bench: bool,
    /// Repetitions per design [default: 1; 3 with --bench]; the median is reported.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: Option<u32>,
    /// Show the lost update and the overdraft of a split check-and-act, then the fix.
    #[arg(long, conflicts_with = "bench")]
    demo_race: bool,
    #[command(flatten)]
    output: common::OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Design {
    /// All three, one after the other.
    All,
    /// A std::sync::Mutex per account (no await under the lock).
    StdMutex,
    /// A tokio::sync::Mutex per account, awaiting the audit log under it.
    TokioMutex,
    /// One task owns the accounts; mpsc commands, oneshot replies.
    Actor,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.output.log_format);
    let result = if args.demo_race {
        race::demo_race(&args).await
    } else {
        run(&args).await
    };
    common::exit_code(result)
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let workload = Workload {
        tasks: args.tasks.unwrap_or(if args.bench { 100 } else { 10 }) as usize,
        ops_per_task: args.ops.unwrap_or(if args.bench { 10_000 } else { 5 }) as usize,
        accounts: args.accounts as usize,
        max_amount: args.max_amount_cents,
        mix: Mix::Mixed,
        seed: args.seed,
    };
    let runs = args.runs.unwrap_or(if args.bench { 3 } else { 1 });
    let opening = vec![Cents(args.opening_cents); workload.accounts];
    // Ctrl-C / SIGTERM: tasks stop between operations; the ledger is still checked.
    let stop = common::shutdown_token();
    if !args.output.json {
        println!(
            "{} accounts x {}, {} tasks x {} ops (deposit/withdraw/transfer/balance), seed {}, {runs} run(s)\n",
            workload.accounts,
            Cents(args.opening_cents),
            workload.tasks,
            workload.ops_per_task,
            args.seed
        );
        println!(
            "{:<12} {:>9} {:>9} {:>9} {:>14} {:>13}  ledger",
            "design", "ops", "ok", "refused", "total after", "ops/s"
        );
    }
    let (d, o, s) = (args.design, &opening, &stop);
    let mut rows = Vec::new();
    if matches!(d, Design::All | Design::StdMutex) {
        rows.push(exercise(|| StdMutexBank::new(o), o, workload, runs, s, args).await?);
    }
    if matches!(d, Design::All | Design::TokioMutex) {
        rows.push(exercise(|| TokioMutexBank::new(o), o, workload, runs, s, args).await?);
    }
    if matches!(d, Design::All | Design::Actor) {
        rows.push(exercise(|| ActorBank::new(o), o, workload, runs, s, args).await?);
    }
    if args.output.json {
        println!(
            "{}",
            json!({"mode": if args.bench {"bench"} else {"demo"}, "workload": workload, "runs": runs, "designs": rows})
        );
    } else if stop.is_cancelled() {
        println!(
            "\ninterrupted: tasks stopped between operations; the ledgers above were still verified"
        );
    } else if !args.bench {
        // The typed refusal, as a caller sees it.
        let refused = StdMutexBank::new(&opening).withdraw_now(0, Cents(args.opening_cents + 1));
        if let Err(err @ BankError::InsufficientFunds(_)) = refused {
            println!(
                "\nwithdrawing {} from account 0: Err(InsufficientFunds): {err}",
                Cents(args.opening_cents + 1)
            );
        }
        println!(
            "every design: total after = total before + deposited - withdrawn, and the log replays to the balances"
        );
        println!("try --demo-race to see what a split check-and-act does, --bench for throughput");
    }
    Ok(())
}

/// Runs the workload `runs` times on fresh banks, verifies every ledger,
/// then (in demo mode) fires opposite transfers under a timeout.
async fn exercise<B: Bank>(
    make: impl Fn() -> B,
    opening: &[Cents],
    workload: Workload,
    runs: u32,
    stop: &CancellationToken,
    args: &Args,
) -> anyhow::Result<Value> {
    let mut rates = Vec::new();
    let mut last = None;
    if args.bench {
        // Warm-up, not counted: faults in the memory the logs will reuse,
        // so the timed runs measure the bank, not the first page faults.
        workload::run_checked(Arc::new(make()), opening, workload, stop.clone()).await?;
    }
    for _ in 0..runs {
        let bank = Arc::new(make());
        let checked = workload::run_checked(bank, opening, workload, stop.clone()).await?;
        rates.push(checked.ops_per_sec);
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
    if !args.output.json {
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
        "ops_per_sec": median.round(), "runs_ops_per_sec": rates.iter().map(|r| r.round()).collect::<Vec<_>>()});
    if !args.bench && opening.len() >= 2 && !stop.is_cancelled() {
        // The deadlock probe: A->B and B->A at once, 1,000 each.
        let probe = workload::opposite_transfers(Arc::new(make()), (0, 1), 1_000, 50, Cents(1));
        let done = tokio::time::timeout(Duration::from_secs(10), probe)
            .await
            .with_context(|| format!("{design}: opposite transfers deadlocked"))??;
        if !args.output.json {
            println!(
                "{:<12} opposite transfers 0->1 and 1->0, 1,000 each: {done} done, no deadlock",
                ""
            );
        }
        row["opposite_transfers_done"] = json!(done);
    }
    Ok(row)
}
