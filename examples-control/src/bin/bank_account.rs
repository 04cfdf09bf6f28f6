//! `bank-account`: shared state behind a lock, three ways (seed Example 9).
//! See `examples_control::bank`.
//!
//! ```text
//! cargo run --bin bank-account
//! cargo run --bin bank-account -- --demo-race
//! cargo run --release --bin bank-account -- --bench
//! ```

use std::process::ExitCode;

use clap::Parser;
use common::{Example, Report, args};
use examples_control::bank::std_mutex::StdMutexBank;
use examples_control::bank::{BankError, Cents};
use examples_control::demo::bank_story::{self, Design, Plan};
use examples_control::demo::bank_workload::{Mix, Workload};
use examples_control::demo::race_story;
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
    #[arg(long, value_parser = args::count(1usize, 100_000))]
    concurrency: Option<usize>,
    /// Operations in total, shared among the tasks [default: 50; 1000000 with --bench].
    #[arg(long, value_parser = args::count(1usize, 10_000_000))]
    count: Option<usize>,
    /// Number of accounts.
    #[arg(long, default_value = "4", value_parser = args::count(1usize, 1_000_000))]
    accounts: usize,
    /// Opening balance of every account, in cents.
    #[arg(long, default_value = "100000", value_parser = args::count(0u64, 1_000_000_000_000))]
    opening_cents: u64,
    /// Largest single amount, in cents (amounts are 1..=this).
    #[arg(long, default_value = "5000", value_parser = args::count(1u64, 1_000_000_000))]
    max_amount_cents: u64,
    /// RNG seed (task i uses seed + i).
    #[arg(long, default_value = "9", value_parser = args::count(0u64, u64::MAX))]
    seed: u64,
    /// Benchmark: 100 tasks, 1,000,000 operations per design, one untimed warm-up run, then 3 runs (median).
    #[arg(long)]
    bench: bool,
    /// Repetitions per design [default: 1; 3 with --bench]; the median is reported.
    #[arg(long, value_parser = args::count(1u32, 100))]
    runs: Option<u32>,
    /// Show the lost update and the overdraft of a split check-and-act, then the fix.
    #[arg(long, conflicts_with_all = ["bench", "design", "concurrency", "count", "runs"])]
    demo_race: bool,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "bank-account";
    const SEED: Option<u8> = Some(9);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let print = !args.output.json;
    if args.demo_race {
        let (figures, failure) = race_story::demo_race(print).await;
        return Ok(Report::ok().figures(figures).fail_if(failure));
    }
    // Defaults: (tasks, operations, runs) for the demo and for --bench.
    let (concurrency, ops, runs) = if args.bench {
        (100, 1_000_000, 3)
    } else {
        (10, 50, 1)
    };
    let workload = Workload {
        concurrency: args.concurrency.unwrap_or(concurrency),
        ops: args.count.unwrap_or(ops),
        accounts: args.accounts,
        max_amount: args.max_amount_cents,
        mix: Mix::Mixed,
        seed: args.seed,
    };
    let runs = args.runs.unwrap_or(runs);
    let opening = Cents(args.opening_cents);
    if print {
        println!(
            "{} accounts x {opening}, {} tasks, {} ops (deposit/withdraw/transfer/balance), seed {}, {runs} run(s)\n",
            workload.accounts, workload.concurrency, workload.ops, args.seed
        );
    }
    let plan = Plan {
        workload,
        opening,
        runs,
        bench: args.bench,
        print,
    };
    // Ctrl-C / SIGTERM: tasks stop between operations; the ledger is still checked.
    let rows = bank_story::run(args.design, plan, &stop).await?;
    let interrupted = stop.is_cancelled();
    if print && !interrupted && !args.bench {
        // The typed refusal, as a caller sees it.
        let too_much = Cents(args.opening_cents.saturating_add(1));
        let refused = StdMutexBank::new(&[opening]).withdraw_now(0, too_much);
        if let Err(err @ BankError::InsufficientFunds(_)) = refused {
            println!("\nwithdrawing {too_much} from account 0: Err(InsufficientFunds): {err}");
        }
    }
    if print {
        bank_story::closing(interrupted, args.bench);
    }
    let mode = if args.bench { "bench" } else { "demo" };
    Ok(Report::ok().figures(
        serde_json::json!({"mode": mode, "workload": workload, "runs": runs, "designs": rows}),
    ))
}
