//! Behaviour of the three bank designs, through the one `Bank` trait: the
//! same stress test, deadlock probe and error cases run against each.
//!
//! Equivalent mutant (cargo mutants on `src/bank/actor.rs`):
//! - `a < b` -> `a <= b` in `pair_mut`: `a == b` was refused just above, so
//!   the two agree on every input that reaches the line.
//!
//! Equivalent mutants (cargo mutants on `src/bank/std_mutex.rs`):
//! - `from < to` -> `from <= to` in `transfer_now`: `from == to` was refused
//!   above. (`-> from > to` is caught by the module's lock-order unit test.)
//! - The same `from < to` -> `from <= to` in `src/bank/tokio_mutex.rs`
//!   (whose `-> from > to` its own lock-order unit test catches).

use std::sync::Arc;
use std::time::Duration;

use examples_control::bank::actor::ActorBank;
use examples_control::bank::race::{Variant, withdraw_race};
use examples_control::bank::std_mutex::StdMutexBank;
use examples_control::bank::tokio_mutex::TokioMutexBank;
use examples_control::bank::{Audit, Bank, BankError, Cents, EntryKind, InsufficientFunds, verify};
use examples_control::demo::bank_workload::{self as workload, Mix, Workload};
use tokio_util::sync::CancellationToken;

const ACCOUNTS: usize = 8;
const OPENING: Cents = Cents(10_000); // $100.00: small, so refusals happen

fn opening() -> Vec<Cents> {
    vec![OPENING; ACCOUNTS]
}

/// 50 tasks x 1,000 seeded random operations, then the checks the issue
/// names: total accounted for, never negative, log matches balances.
async fn stress<B: Bank>(bank: B, mix: Mix) {
    let bank = Arc::new(bank);
    let workload = Workload {
        concurrency: 50,
        ops: 50_000,
        accounts: ACCOUNTS,
        max_amount: 5_000,
        mix,
        seed: 9,
    };
    let report = workload::run(Arc::clone(&bank), workload, CancellationToken::new())
        .await
        .unwrap();
    let audit = bank.audit().await.unwrap();
    // verify() replays the log: each balance_after chains, none below zero,
    // transfers pair up, the replay ends at the balances.
    let ledger = verify(&opening(), &audit).unwrap();
    let before: u64 = opening().iter().map(|c| c.0).sum();
    let after: u64 = audit.balances.iter().map(|c| c.0).sum();
    assert_eq!(report.ops, 50_000);
    assert_eq!(
        report.ok + report.insufficient,
        report.ops,
        "every operation accounted for"
    );
    assert!(
        report.insufficient > 0,
        "the workload should hit InsufficientFunds: {report:?}"
    );
    assert_eq!(ledger.transfers as u64, report.transfers);
    assert_eq!(
        (ledger.deposited, ledger.withdrawn),
        (report.deposited, report.withdrawn)
    );
    match mix {
        Mix::Transfers => assert_eq!(after, before, "transfers only: the total is constant"),
        Mix::Mixed => assert_eq!(after + report.withdrawn.0, before + report.deposited.0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn std_mutex_random_transfers_keep_the_total_and_the_log_straight() {
    stress(StdMutexBank::new(&opening()), Mix::Transfers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_mutex_random_transfers_keep_the_total_and_the_log_straight() {
    stress(TokioMutexBank::new(&opening()), Mix::Transfers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_random_transfers_keep_the_total_and_the_log_straight() {
    stress(ActorBank::new(&opening()), Mix::Transfers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn std_mutex_mixed_operations_balance_the_books() {
    stress(StdMutexBank::new(&opening()), Mix::Mixed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_mutex_mixed_operations_balance_the_books() {
    stress(TokioMutexBank::new(&opening()), Mix::Mixed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_mixed_operations_balance_the_books() {
    stress(ActorBank::new(&opening()), Mix::Mixed).await;
}

/// 5,000 transfers each way between accounts 0 and 1 from 100 tasks on two
/// threads, under a 20 s timeout. A runtime of its own, so that a deadlock
/// (worker threads blocked on std mutexes) fails the test instead of
/// hanging it: `shutdown_background` abandons the stuck threads.
fn opposite_transfers_finish<B: Bank>(make: impl FnOnce() -> B) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        let bank = Arc::new(make());
        let probe = workload::opposite_transfers(Arc::clone(&bank), (0, 1), 5_000, 50, Cents(1));
        let done = tokio::time::timeout(Duration::from_secs(20), probe).await;
        (done, bank.audit().await)
    });
    let (done, audit) = match outcome {
        (Ok(done), audit) => (done.unwrap(), audit.unwrap()),
        (Err(_), _) => {
            runtime.shutdown_background();
            panic!("opposite transfers did not finish within 20 s: deadlock");
        }
    };
    // Net zero drift never exceeds $50 of a $100 balance: nothing refused.
    assert_eq!(done, 10_000);
    assert_eq!(audit.balances, opening());
    verify(&opening(), &audit).unwrap();
}

#[test]
fn std_mutex_opposite_transfers_cannot_deadlock() {
    opposite_transfers_finish(|| StdMutexBank::new(&opening()));
}

/// The std design's lock order, where it matters most: two OS threads in
/// tight loops of opposite synchronous transfers (no runtime to spread
/// them out). A lock order that depends on the direction deadlocks here
/// within a few thousand rounds; the threads are then abandoned.
#[test]
fn std_mutex_opposite_transfers_from_two_threads_cannot_deadlock() {
    const ROUNDS: usize = 200_000;
    let bank = Arc::new(StdMutexBank::new(&opening()));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for (from, to) in [(0, 1), (1, 0)] {
        let (bank, done_tx) = (Arc::clone(&bank), done_tx.clone());
        std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                // Refusals (a drifted balance) are fine: only the locks matter.
                let _ = bank.transfer_now(from, to, Cents(1));
            }
            let _ = done_tx.send(()); // Err: the test already gave up (deadlock)
        });
    }
    for _ in 0..2 {
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("opposite transfers did not finish within 60 s: deadlock");
    }
    verify(&opening(), &bank.audit_now()).unwrap();
}

#[test]
fn tokio_mutex_opposite_transfers_cannot_deadlock() {
    opposite_transfers_finish(|| TokioMutexBank::new(&opening()));
}

#[test]
fn actor_opposite_transfers_cannot_deadlock() {
    opposite_transfers_finish(|| ActorBank::new(&opening()));
}

/// Every refused or invalid operation returns its typed error and changes
/// nothing: no balance, no log entry.
async fn errors_change_nothing<B: Bank>(bank: B) {
    let insufficient = BankError::InsufficientFunds(InsufficientFunds {
        account: 0,
        balance: OPENING,
        requested: Cents(OPENING.0 + 1),
    });
    assert_eq!(
        bank.withdraw(0, Cents(OPENING.0 + 1)).await,
        Err(insufficient)
    );
    assert_eq!(
        bank.transfer(0, 1, Cents(OPENING.0 + 1)).await,
        Err(insufficient)
    );
    assert_eq!(bank.deposit(0, Cents(0)).await, Err(BankError::ZeroAmount));
    assert_eq!(
        bank.transfer(2, 2, Cents(1)).await,
        Err(BankError::SameAccount(2))
    );
    assert_eq!(
        bank.transfer(0, 99, Cents(1)).await,
        Err(BankError::UnknownAccount(99))
    );
    assert_eq!(
        bank.deposit(1, Cents(u64::MAX)).await,
        Err(BankError::Overflow(1))
    );
    assert_eq!(
        bank.audit().await.unwrap(),
        Audit {
            balances: opening(),
            log: Vec::new()
        }
    );
    // And the exact amount is allowed: down to zero, never below.
    assert_eq!(bank.withdraw(0, OPENING).await, Ok(Cents(0)));
    assert_eq!(bank.balance(0).await, Ok(Cents(0)));
    assert_eq!(bank.balance(1).await, Ok(OPENING), "untouched");
    assert_eq!(bank.balance(99).await, Err(BankError::UnknownAccount(99)));
}

#[tokio::test]
async fn std_mutex_refusals_are_typed_and_change_nothing() {
    errors_change_nothing(StdMutexBank::new(&opening())).await;
}

#[tokio::test]
async fn tokio_mutex_refusals_are_typed_and_change_nothing() {
    errors_change_nothing(TokioMutexBank::new(&opening())).await;
}

#[tokio::test]
async fn actor_refusals_are_typed_and_change_nothing() {
    errors_change_nothing(ActorBank::new(&opening())).await;
}

#[tokio::test]
async fn verify_catches_a_log_that_does_not_match_the_balances() {
    let bank = StdMutexBank::new(&opening());
    bank.transfer(0, 1, Cents(500)).await.unwrap();
    bank.deposit(2, Cents(70)).await.unwrap();
    let good = bank.audit().await.unwrap();
    let summary = verify(&opening(), &good).unwrap();
    assert_eq!(
        (summary.entries, summary.transfers, summary.deposited),
        (3, 1, Cents(70))
    );

    let mut wrong_balance = good.clone();
    wrong_balance.balances[2] = Cents(OPENING.0 + 71);
    assert!(verify(&opening(), &wrong_balance).is_err());

    let mut half_transfer = good.clone();
    half_transfer
        .log
        .retain(|e| !matches!(e.kind, EntryKind::TransferIn { .. }));
    half_transfer.balances[1] = OPENING;
    assert!(verify(&opening(), &half_transfer).is_err());

    let mut overdrawn = Audit {
        balances: opening(),
        log: good.log.clone(),
    };
    overdrawn.log[0].amount = Cents(OPENING.0 + 1);
    assert!(verify(&opening(), &overdrawn).is_err());
}

/// The transfer ids pair each receiving half with its own sending half:
/// two transfers whose receiving halves swap ids replay to the same
/// balances, and verify still refuses the log (crossed accounts, or
/// crossed amounts into one account).
#[tokio::test]
async fn verify_pairs_each_transfer_in_with_its_own_transfer_out() {
    for (second_to, second_amount) in [(2, 500), (1, 700)] {
        let bank = StdMutexBank::new(&opening());
        bank.transfer(0, 1, Cents(500)).await.unwrap();
        bank.transfer(0, second_to, Cents(second_amount))
            .await
            .unwrap();
        let good = bank.audit().await.unwrap();
        verify(&opening(), &good).unwrap();
        let mut crossed = good.clone();
        let ins: Vec<usize> = (0..crossed.log.len())
            .filter(|&i| matches!(crossed.log[i].kind, EntryKind::TransferIn { .. }))
            .collect();
        assert_eq!(ins.len(), 2);
        let id_of = |kind: EntryKind| match kind {
            EntryKind::TransferIn { id, .. } => id,
            _ => unreachable!(),
        };
        let (first, second) = (
            id_of(crossed.log[ins[0]].kind),
            id_of(crossed.log[ins[1]].kind),
        );
        for (index, id) in [(ins[0], second), (ins[1], first)] {
            crossed.log[index].kind = EntryKind::TransferIn { from: 0, id };
        }
        assert!(
            verify(&opening(), &crossed).is_err(),
            "crossed halves to {second_to}, {second_amount} cents passed"
        );
    }
}

/// Every design names itself (the name keys the bench tables and --json).
#[tokio::test]
async fn each_design_has_its_name() {
    assert_eq!(StdMutexBank::new(&opening()).design(), "std-mutex");
    assert_eq!(TokioMutexBank::new(&opening()).design(), "tokio-mutex");
    assert_eq!(ActorBank::new(&opening()).design(), "actor");
}

/// The task behind a bank (the actor; the tokio-mutex design's audit
/// writer) ends with the bank's last handle. A loop that kept spinning on
/// its closed channel would hold a core forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_behind_a_bank_ends_when_its_last_handle_is_dropped() {
    async fn check<B: Bank>(make: impl FnOnce() -> B, copy: impl FnOnce(&B) -> Option<B>) {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let bank = make();
        let copy = copy(&bank);
        assert_eq!(bank.deposit(0, Cents(1)).await, Ok(Cents(OPENING.0 + 1)));
        assert_eq!(metrics.num_alive_tasks(), before + 1, "{}", bank.design());
        let design = bank.design();
        drop(bank);
        drop(copy);
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            while metrics.num_alive_tasks() > before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(ended.is_ok(), "{design}: its task is still running");
    }
    check(|| ActorBank::new(&opening()), |bank| Some(bank.clone())).await;
    check(|| TokioMutexBank::new(&opening()), |_| None).await;
}

/// The racy variants still refuse what the balance they read cannot cover:
/// the bug is the stale read, not a missing check.
#[tokio::test(start_paused = true)]
async fn the_racy_variants_refuse_what_the_balance_they_read_cannot_cover() {
    for variant in [Variant::LostUpdate, Variant::Overdraft, Variant::Locked] {
        let outcome = withdraw_race(variant, 1_000, 5, 3_000, Duration::from_millis(10)).await;
        assert_eq!(
            (outcome.approved, outcome.refused, outcome.closing),
            (0, 5, 1_000),
            "{variant:?}"
        );
        assert!(outcome.consistent());
    }
    // Exactly covered is approved: the last cent may go.
    for (variant, approved, closing) in [
        (Variant::LostUpdate, 5, 0),
        (Variant::Overdraft, 5, -12_000),
        (Variant::Locked, 1, 0),
    ] {
        let outcome = withdraw_race(variant, 3_000, 5, 3_000, Duration::from_millis(10)).await;
        assert_eq!(
            (outcome.approved, outcome.closing),
            (approved, closing),
            "{variant:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn releasing_the_lock_between_check_and_act_loses_updates() {
    let outcome = withdraw_race(
        Variant::LostUpdate,
        10_000,
        10,
        3_000,
        Duration::from_millis(10),
    )
    .await;
    assert_eq!(
        (outcome.approved, outcome.paid_out, outcome.closing),
        (10, 30_000, 7_000)
    );
    assert!(!outcome.consistent());
}

#[tokio::test(start_paused = true)]
async fn releasing_the_lock_between_check_and_act_overdraws() {
    let outcome = withdraw_race(
        Variant::Overdraft,
        10_000,
        10,
        3_000,
        Duration::from_millis(10),
    )
    .await;
    assert_eq!((outcome.approved, outcome.closing), (10, -20_000));
    assert!(!outcome.consistent());
}

#[tokio::test(start_paused = true)]
async fn one_guard_across_check_await_and_act_keeps_the_books() {
    let outcome = withdraw_race(
        Variant::Locked,
        10_000,
        10,
        3_000,
        Duration::from_millis(10),
    )
    .await;
    assert_eq!(
        (outcome.approved, outcome.refused, outcome.closing),
        (3, 7, 1_000)
    );
    assert!(outcome.consistent());
}

#[test]
fn cents_print_as_dollars_and_cents() {
    assert_eq!(Cents(123_456).to_string(), "$1234.56");
    assert_eq!(Cents(5).to_string(), "$0.05");
    assert_eq!(Cents::dollars(30), Cents(3_000));
}

/// Issue 15.23: the ledger's cumulative sums saturate instead of
/// overflowing (a debug build used to panic on this log).
#[test]
fn ledger_totals_saturate_instead_of_overflowing() {
    use examples_control::bank::{Audit, Entry, EntryKind, verify};
    let max = Cents(u64::MAX);
    let audit = Audit {
        balances: vec![max, max],
        log: vec![
            Entry {
                account: 0,
                kind: EntryKind::Deposit,
                amount: max,
                balance_after: max,
            },
            Entry {
                account: 1,
                kind: EntryKind::Deposit,
                amount: max,
                balance_after: max,
            },
        ],
    };
    let summary = verify(&[Cents(0), Cents(0)], &audit).expect("the log is consistent");
    assert_eq!(summary.deposited, max, "saturated at u64::MAX cents");
    assert!(summary.totals_saturated);
    assert_eq!(summary.entries, 2);
}
