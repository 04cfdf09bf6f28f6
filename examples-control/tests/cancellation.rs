//! Systematic cancellation tests (issue 15) for the resource pool and the
//! three bank designs: every public async operation is dropped at each of
//! its await points in turn (`common::testing::cancel_at_every_await`) and
//! the invariants are checked after each drop: permits, waiters and
//! holders for the pool; balances that replay from the log, and money
//! neither made nor lost, for the banks.

use std::sync::Arc;
use std::time::Duration;

use common::testing::cancel_at_every_await;
use examples_control::bank::actor::ActorBank;
use examples_control::bank::std_mutex::StdMutexBank;
use examples_control::bank::tokio_mutex::TokioMutexBank;
use examples_control::bank::{Audit, Bank, Cents, EntryKind, verify};
use examples_control::resource_pool::{PoolError, ResourcePool};

/// `acquire`, queued behind a holder that lets go after 5 ms, dropped at
/// every await point: no waiter is left counted, no permit is lost, and
/// the resource is back on the shelf.
#[tokio::test(start_paused = true)]
async fn acquire_dropped_at_every_await_leaks_no_permit_or_waiter() {
    let pool = ResourcePool::new(vec![0u32], Duration::from_secs(5));
    let completed_at = cancel_at_every_await(
        |_| {
            let pool = pool.clone();
            async move {
                let held = pool.acquire().await.expect("free");
                let releaser = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    drop(held);
                });
                let mut second = pool.acquire().await.expect("after the release");
                *second += 1;
                drop(second);
                releaser.await.expect("released");
            }
        },
        async |n| {
            tokio::time::sleep(Duration::from_millis(10)).await; // orphaned releasers finish
            let stats = pool.stats();
            assert_eq!(
                (stats.in_use, stats.waiting, pool.idle()),
                (0, 0, 1),
                "n={n} {stats:?}"
            );
            // The one permit is there, and only one.
            let one = pool
                .acquire_within(Duration::from_millis(1))
                .await
                .expect("the permit");
            let two = pool.acquire_within(Duration::from_millis(1)).await;
            assert!(matches!(two, Err(PoolError::Timeout(_))), "n={n}");
            drop(one);
        },
    )
    .await;
    assert!(completed_at >= 2, "the walk saw the queue ({completed_at})");
}

/// The invariant every bank keeps under cancellation: the log replays to
/// the balances, and the total moved by exactly what the log says came in
/// and went out.
fn assert_books(opening: &[Cents], audit: &Audit, n: usize) {
    let ledger = verify(opening, audit).unwrap_or_else(|e| panic!("n={n}: {e}"));
    let before: u128 = opening.iter().map(|c| u128::from(c.0)).sum();
    let after: u128 = audit.balances.iter().map(|c| u128::from(c.0)).sum();
    assert_eq!(
        after + u128::from(ledger.withdrawn.0),
        before + u128::from(ledger.deposited.0),
        "n={n}"
    );
    let transfers_out = audit
        .log
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::TransferOut { .. }))
        .count();
    assert_eq!(transfers_out, ledger.transfers, "n={n}");
}

/// Transfer, deposit, withdraw, balance and audit on `bank`, dropped at
/// every await point while a background task contends for the same two
/// accounts (so the locks and the channels really make callers wait).
async fn operations_keep_the_books<B: Bank>(make: impl Fn(&[Cents]) -> B) {
    let opening = [Cents(10_000), Cents(10_000)];
    let bank = Arc::new(make(&opening));
    let background = {
        let bank = Arc::clone(&bank);
        tokio::spawn(async move {
            for i in 0..2_000u64 {
                let (from, to) = if i % 2 == 0 { (0, 1) } else { (1, 0) };
                // Refusals are fine; any other error is a bug.
                if let Err(err) = bank.transfer(from, to, Cents(1 + i % 7)).await {
                    assert!(
                        matches!(err, examples_control::bank::BankError::InsufficientFunds(_)),
                        "{err}"
                    );
                }
                tokio::task::yield_now().await;
            }
        })
    };
    cancel_at_every_await(
        |_| {
            let bank = Arc::clone(&bank);
            async move {
                bank.transfer(0, 1, Cents(25)).await.expect("funds");
                bank.deposit(1, Cents(10)).await.expect("deposit");
                bank.withdraw(0, Cents(5)).await.expect("funds");
                bank.balance(0).await.expect("an account");
                let audit = bank.audit().await.expect("audit");
                assert_eq!(audit.balances.len(), 2);
            }
        },
        async |n| {
            let audit = bank.audit().await.expect("audit");
            assert_books(&opening, &audit, n);
        },
    )
    .await;
    background.await.expect("background transfers finished");
    assert_books(&opening, &bank.audit().await.expect("audit"), usize::MAX);
}

#[tokio::test]
async fn std_mutex_operations_dropped_at_every_await_keep_the_books() {
    operations_keep_the_books(StdMutexBank::new).await;
}

#[tokio::test]
async fn tokio_mutex_operations_dropped_at_every_await_keep_the_books() {
    operations_keep_the_books(TokioMutexBank::new).await;
}

#[tokio::test]
async fn actor_operations_dropped_at_every_await_keep_the_books() {
    operations_keep_the_books(ActorBank::new).await;
}
