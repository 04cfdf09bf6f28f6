//! Behaviour of the three bank designs, through the one `Bank` trait: the
//! same stress test, deadlock probe and error cases run against each.

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
