//! Behaviour of `PriorityQueue`: ordering, bounds, close/drain, join, ageing,
//! and wake-ups under cancellation and load.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::testing::cancel_at_every_await;
use examples_queue::{Closed, PriorityQueue, TryPushError};
use tokio::time::{self, timeout};

const LIMIT: Duration = Duration::from_secs(10);

/// Pops everything currently queued (the queue must be closed or non-empty).
async fn drain<T>(queue: &PriorityQueue<T>, count: usize) -> Vec<(u8, T)> {
    let mut out = Vec::new();
    for _ in 0..count {
        let claim = queue.pop().await.expect("an item is queued");
        out.push((claim.priority, claim.item));
    }
    out
}

/// Items come out most urgent first (lower number first), whatever the push order.
#[tokio::test(start_paused = true)]
async fn pops_in_strict_priority_order() {
    let queue = PriorityQueue::new(10);
    for priority in [3, 1, 2, 0, 3, 0] {
        queue.push(priority, priority).await.unwrap();
    }
    let order: Vec<u8> = drain(&queue, 6).await.into_iter().map(|(p, _)| p).collect();
    assert_eq!(order, [0, 0, 1, 2, 3, 3]);
}

/// Within one priority, items come out in the order they were pushed.
#[tokio::test(start_paused = true)]
async fn is_first_in_first_out_within_a_priority() {
    let queue = PriorityQueue::new(100);
    for i in 0..60u32 {
        queue.push((i % 3) as u8, i).await.unwrap();
    }
    let popped = drain(&queue, 60).await;
    for priority in 0..3u8 {
        let items: Vec<u32> = popped
            .iter()
            .filter(|(p, _)| *p == priority)
            .map(|(_, i)| *i)
            .collect();
        let expected: Vec<u32> = (0..60).filter(|i| i % 3 == u32::from(priority)).collect();
        assert_eq!(items, expected, "priority {priority}");
    }
}

/// Sequence numbers grow with push order across priorities.
#[tokio::test(start_paused = true)]
async fn claims_carry_increasing_sequence_numbers() {
    let queue = PriorityQueue::new(4);
    queue.push(2, 'a').await.unwrap();
    queue.push(0, 'b').await.unwrap();
    let first = queue.pop().await.unwrap();
    let second = queue.pop().await.unwrap();
    assert_eq!((first.item, first.seq), ('b', 1));
    assert_eq!((second.item, second.seq), ('a', 0));
}

/// A full queue makes push wait (try_push refuses) until a pop makes room.
#[tokio::test(start_paused = true)]
async fn a_full_queue_blocks_producers_until_a_pop() {
    let queue = PriorityQueue::new(2);
    queue.push(1, 1).await.unwrap();
    queue.push(1, 2).await.unwrap();
    assert_eq!(queue.try_push(1, 3), Err(TryPushError::Full(3)));

    let producer = tokio::spawn({
        let queue = queue.clone();
        async move { queue.push(0, 3).await }
    });
    // An hour of (paused) time passes: the producer is still waiting.
    time::sleep(Duration::from_secs(3600)).await;
    assert!(!producer.is_finished());
    assert_eq!(queue.stats().waiting_producers, 1);

    let first = queue.pop().await.unwrap();
    assert_eq!(first.item, 1);
    timeout(LIMIT, producer).await.unwrap().unwrap().unwrap();
    assert_eq!(queue.stats().waiting_producers, 0);
    // The late, urgent item overtakes the queued one.
    assert_eq!(drain(&queue, 2).await, [(0, 3), (1, 2)]);
}

/// After close: pushes fail and hand the item back, consumers drain what
/// was queued, then pop returns None.
#[tokio::test(start_paused = true)]
async fn close_rejects_pushes_then_consumers_drain_and_stop() {
    let queue = PriorityQueue::new(10);
    for i in 0..3 {
        queue.push(i, i).await.unwrap();
    }
    queue.close();
    assert_eq!(queue.push(0, 99).await, Err(Closed(99)));
    assert_eq!(queue.try_push(0, 99), Err(TryPushError::Closed(99)));
    assert_eq!(drain(&queue, 3).await, [(0, 0), (1, 1), (2, 2)]);
    assert!(queue.pop().await.is_none());
    let mut batch = Vec::new();
    assert_eq!(queue.pop_many(8, &mut batch).await, 0);
}

/// close() wakes consumers waiting on an empty queue and producers waiting on a full one.
#[tokio::test(start_paused = true)]
async fn close_wakes_every_waiter() {
    let queue = PriorityQueue::new(1);
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pop().await.map(|claim| claim.item) })
        })
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(queue.stats().waiting_consumers, 3);
    queue.close();
    for consumer in consumers {
        assert_eq!(timeout(LIMIT, consumer).await.unwrap().unwrap(), None::<u8>);
    }

    let full = PriorityQueue::new(1);
    full.push(0, 1).await.unwrap();
    let producer = tokio::spawn({
        let full = full.clone();
        async move { full.push(0, 2).await }
    });
    tokio::task::yield_now().await;
    full.close();
    assert_eq!(
        timeout(LIMIT, producer).await.unwrap().unwrap(),
        Err(Closed(2))
    );
}

/// join() returns once every task is finished, even when the consumer
/// handling one of them panics: the Done guard drops during unwinding.
#[tokio::test(start_paused = true)]
async fn join_returns_when_a_handler_panics() {
    let queue = PriorityQueue::new(10);
    for i in 0..4 {
        queue.push(0, i).await.unwrap();
    }
    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let queue = queue.clone();
        consumers.spawn(async move {
            while let Some(claim) = queue.pop().await {
                if claim.item == 2 {
                    panic!("handler failed on task {}", claim.item);
                }
            }
        });
    }
    timeout(LIMIT, queue.join()).await.expect("join returned");
    assert_eq!(queue.stats().in_flight, 0);
    queue.close();
    let mut panics = 0;
    while let Some(done) = consumers.join_next().await {
        panics += usize::from(done.is_err_and(|err| err.is_panic()));
    }
    assert_eq!(panics, 1);
}

/// join() waits while a claim is held, and returns at once on an idle queue.
#[tokio::test(start_paused = true)]
async fn join_waits_for_claims_still_held() {
    let queue = PriorityQueue::new(4);
    timeout(LIMIT, queue.join())
        .await
        .expect("an idle queue joins at once");
    queue.push(1, "job").await.unwrap();
    let claim = queue.pop().await.unwrap();
    assert_eq!(queue.stats().in_flight, 1);
    let join = tokio::spawn({
        let queue = queue.clone();
        async move { queue.join().await }
    });
    time::sleep(Duration::from_secs(60)).await;
    assert!(
        !join.is_finished(),
        "join returned while a task was in flight"
    );
    drop(claim);
    timeout(LIMIT, join).await.unwrap().unwrap();
}

/// A requeued task stays unfinished for join(), goes to the back of its
/// lane, and can be requeued after close so it is not lost.
#[tokio::test(start_paused = true)]
async fn requeue_keeps_the_task_unfinished_and_works_after_close() {
    let queue = PriorityQueue::new(2);
    queue.push(1, "a").await.unwrap();
    queue.push(1, "b").await.unwrap();
    let a = queue.pop().await.unwrap();
    queue.close();
    queue.requeue(a);
    let join = tokio::spawn({
        let queue = queue.clone();
        async move { queue.join().await }
    });
    time::sleep(Duration::from_secs(60)).await;
    assert!(!join.is_finished());
    assert_eq!(drain(&queue, 2).await, [(1, "b"), (1, "a")]);
    assert!(queue.pop().await.is_none());
    timeout(LIMIT, join).await.unwrap().unwrap();
}

/// With ageing, an old low-priority item overtakes fresh urgent ones; without, it does not.
#[tokio::test(start_paused = true)]
async fn ageing_promotes_an_old_low_priority_item() {
    for (queue, low_first) in [
        (
            PriorityQueue::with_aging(10, Duration::from_millis(100)),
            true,
        ),
        (PriorityQueue::new(10), false),
    ] {
        queue.push(3, "low").await.unwrap();
        time::advance(Duration::from_millis(300)).await; // three steps: 3 -> 0
        queue.push(0, "urgent").await.unwrap();
        let first = queue.pop().await.unwrap();
        assert_eq!(first.item == "low", low_first);
    }
}

/// Under a never-ending stream of urgent work, ageing bounds a low item's
/// wait; without ageing it starves.
#[tokio::test(start_paused = true)]
async fn ageing_prevents_starvation() {
    async fn rounds_until_low_is_served(queue: PriorityQueue<&'static str>) -> Option<u32> {
        queue.push(3, "low").await.unwrap();
        queue.push(0, "urgent").await.unwrap();
        for round in 1..=1_000 {
            // Each round: a fresh urgent arrival, 10 ms pass, one item served.
            queue.push(0, "urgent").await.unwrap();
            time::advance(Duration::from_millis(10)).await;
            if queue.pop().await.unwrap().item == "low" {
                return Some(round);
            }
        }
        None
    }
    let aged =
        rounds_until_low_is_served(PriorityQueue::with_aging(2_000, Duration::from_millis(50)))
            .await;
    // 3 levels x 50 ms = 150 ms = 15 rounds, then it wins the tie on age.
    assert_eq!(aged, Some(15));
    let strict = rounds_until_low_is_served(PriorityQueue::new(2_000)).await;
    assert_eq!(strict, None, "without ageing the low item starves");
}

/// pop_many takes up to `max` items in priority order; push_many waits for
/// room and preserves order.
#[tokio::test(start_paused = true)]
async fn batches_keep_priority_and_fifo_order() {
    let queue = PriorityQueue::new(4);
    let producer = tokio::spawn({
        let queue = queue.clone();
        async move {
            queue
                .push_many((0..10u32).map(|i| ((i % 2) as u8, i)).collect())
                .await
        }
    });
    let mut seen = Vec::new();
    let mut batch = Vec::new();
    while seen.len() < 10 {
        let taken = timeout(LIMIT, queue.pop_many(3, &mut batch)).await.unwrap();
        assert!((1..=3).contains(&taken));
        seen.extend(batch.drain(..).map(|claim| (claim.priority, claim.item)));
    }
    producer.await.unwrap().unwrap();
    let evens: Vec<u32> = seen
        .iter()
        .filter(|(p, _)| *p == 0)
        .map(|(_, i)| *i)
        .collect();
    assert_eq!(evens, [0, 2, 4, 6, 8]);
    let odds: Vec<u32> = seen
        .iter()
        .filter(|(p, _)| *p == 1)
        .map(|(_, i)| *i)
        .collect();
    assert_eq!(odds, [1, 3, 5, 7, 9]);
}

/// A waiter picked by `notify_one` and then cancelled before it runs passes
/// the wake-up on: the other sleeping consumer is woken and gets the item
/// (rule 3 of the module docs), and no stale waiter count is left behind.
#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_does_not_lose_a_wakeup() {
    let queue = PriorityQueue::new(4);
    let (first_waker, first_woken) = flag_waker();
    let (second_waker, second_woken) = flag_waker();
    let mut first = Box::pin(queue.pop());
    let mut second = Box::pin(queue.pop());
    assert!(
        first
            .as_mut()
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending()
    );
    assert!(
        second
            .as_mut()
            .poll(&mut Context::from_waker(&second_waker))
            .is_pending()
    );
    assert_eq!(queue.stats().waiting_consumers, 2);

    // One item, one wake-up: tokio's Notify picks the longest waiter, `first`.
    queue.try_push(0, 7).unwrap();
    assert!(
        first_woken.load(Ordering::SeqCst),
        "notify_one picked the first waiter"
    );
    assert!(!second_woken.load(Ordering::SeqCst));

    // Cancelled after being picked, before it could take the item.
    drop(first);
    assert!(
        second_woken.load(Ordering::SeqCst),
        "the wake-up was passed on"
    );
    assert_eq!(queue.stats().waiting_consumers, 1);
    match second
        .as_mut()
        .poll(&mut Context::from_waker(&second_waker))
    {
        Poll::Ready(Some(claim)) => assert_eq!(claim.item, 7),
        other => panic!(
            "the survivor did not get the item: {:?}",
            other.map(|c| c.map(|c| c.item))
        ),
    }
    assert_eq!(queue.stats().waiting_consumers, 0);
}

/// A waker that records that it was woken.
fn flag_waker() -> (Waker, Arc<AtomicBool>) {
    struct Flag(Arc<AtomicBool>);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    (Waker::from(Arc::new(Flag(Arc::clone(&flag)))), flag)
}

/// Every item pushed is accounted for: popped by the test, or still queued.
fn assert_accounted(queue: &PriorityQueue<u32>, pushed: usize, popped: usize) {
    let stats = queue.stats();
    assert_eq!(
        stats.waiting_producers, 0,
        "stale producer count: {stats:?}"
    );
    assert_eq!(
        stats.waiting_consumers, 0,
        "stale consumer count: {stats:?}"
    );
    assert_eq!(stats.queued, pushed - popped, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
}

/// push and push_many dropped at every await point (on a full queue that a
/// helper task empties one item at a time) leave no stale waiter count,
/// and every item is either queued once or handed back: nothing half-pushed.
#[tokio::test(start_paused = true)]
async fn push_and_push_many_keep_their_invariants_when_cancelled_anywhere() {
    for many in [false, true] {
        let state = Arc::new(std::sync::Mutex::new(
            None::<(PriorityQueue<u32>, tokio::task::JoinHandle<usize>)>,
        ));
        let polls = cancel_at_every_await(
            |_| {
                let queue = PriorityQueue::new(2);
                queue.try_push(0, 0).unwrap();
                queue.try_push(0, 1).unwrap();
                // Pops one item per 10 ms, three at most, and says how many.
                let popper = tokio::spawn({
                    let queue = queue.clone();
                    async move {
                        let mut popped = 0;
                        while popped < 3 {
                            time::sleep(Duration::from_millis(10)).await;
                            match queue.pop().await {
                                Some(_) => popped += 1,
                                None => break,
                            }
                        }
                        popped
                    }
                });
                *state.lock().unwrap() = Some((queue.clone(), popper));
                async move {
                    if many {
                        queue.push_many(vec![(1, 2), (1, 3)]).await.map_err(|_| ())
                    } else {
                        queue.push(1, 2).await.map_err(|_| ())
                    }
                }
            },
            async |_| {
                let (queue, popper) = state.lock().unwrap().take().unwrap();
                let before = queue.stats();
                assert_eq!(
                    before.waiting_producers, 0,
                    "stale producer count: {before:?}"
                );
                queue.close();
                let popped = popper.await.unwrap();
                // The rest drains; whatever is left was pushed whole.
                let mut left = Vec::new();
                while let Some(claim) = queue.pop().await {
                    left.push(claim.item);
                }
                let total = popped + left.len();
                assert!(
                    (2..=if many { 4 } else { 3 }).contains(&total),
                    "items: popped {popped} + left {left:?}"
                );
                assert_eq!(queue.stats().in_flight, 0);
                timeout(LIMIT, queue.join()).await.unwrap();
            },
        )
        .await;
        assert!(polls >= 2, "the push waited at least once ({polls})");
    }
}

/// pop and pop_many dropped at every await point (on an empty queue that a
/// helper fills later) leave no stale waiter count, take nothing they do
/// not return, and the next consumer still gets every item.
#[tokio::test(start_paused = true)]
async fn pop_and_pop_many_keep_their_invariants_when_cancelled_anywhere() {
    for many in [false, true] {
        let state = Arc::new(std::sync::Mutex::new(None::<PriorityQueue<u32>>));
        let taken = Arc::new(AtomicUsize::new(0));
        let polls = cancel_at_every_await(
            |_| {
                let queue = PriorityQueue::new(4);
                tokio::spawn({
                    let queue = queue.clone();
                    async move {
                        for i in 0..2 {
                            time::sleep(Duration::from_millis(10)).await;
                            queue.push(0, i).await.unwrap();
                        }
                    }
                });
                *state.lock().unwrap() = Some(queue.clone());
                let taken = Arc::clone(&taken);
                async move {
                    let got = if many {
                        let mut batch = Vec::new();
                        queue.pop_many(2, &mut batch).await
                    } else {
                        usize::from(queue.pop().await.is_some())
                    };
                    taken.store(got, Ordering::SeqCst);
                }
            },
            async |_| {
                let queue = state.lock().unwrap().take().unwrap();
                assert_eq!(queue.stats().waiting_consumers, 0, "{:?}", queue.stats());
                time::sleep(Duration::from_millis(50)).await; // the helper pushed both
                let popped = taken.swap(0, Ordering::SeqCst);
                assert_accounted(&queue, 2, popped);
            },
        )
        .await;
        assert!(polls >= 2, "the pop waited at least once ({polls})");
    }
}

/// join dropped at every await point leaves the unfinished count exact: a
/// later join still waits for the held claim and returns once it is done.
#[tokio::test(start_paused = true)]
async fn join_keeps_its_invariants_when_cancelled_anywhere() {
    let queue = PriorityQueue::new(4);
    queue.push(0, 1u32).await.unwrap();
    let claim = Arc::new(std::sync::Mutex::new(Some(queue.pop().await.unwrap())));
    let finisher = tokio::spawn({
        let claim = Arc::clone(&claim);
        async move {
            time::sleep(Duration::from_secs(1)).await;
            claim.lock().unwrap().take();
        }
    });
    let polls = cancel_at_every_await(
        |_| queue.join(),
        async |_| {
            let stats = queue.stats();
            let held = claim.lock().unwrap().is_some();
            assert_eq!(stats.in_flight, usize::from(held), "{stats:?}");
        },
    )
    .await;
    assert!(polls >= 1);
    finisher.await.unwrap();
    timeout(LIMIT, queue.join()).await.unwrap();
    assert_eq!(queue.stats().in_flight, 0);
}

/// Many producers and consumers on a multi-threaded runtime, singles and
/// batches mixed, a tiny capacity: every item arrives exactly once and
/// nobody sleeps through a wake-up (a lost one would hang into the timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_item_arrives_exactly_once_under_contention() {
    const PER_PRODUCER: u64 = 20_000;
    let queue = PriorityQueue::new(3);
    let mut producers = tokio::task::JoinSet::new();
    for p in 0..4u64 {
        let queue = queue.clone();
        producers.spawn(async move {
            let ids: Vec<u64> = (0..PER_PRODUCER).map(|i| p * PER_PRODUCER + i).collect();
            for chunk in ids.chunks(if p % 2 == 0 { 1 } else { 5 }) {
                let batch: Vec<(u8, u64)> = chunk.iter().map(|&id| ((id % 4) as u8, id)).collect();
                queue.push_many(batch).await.unwrap();
            }
        });
    }
    let mut consumers = tokio::task::JoinSet::new();
    for c in 0..5usize {
        let queue = queue.clone();
        consumers.spawn(async move {
            let mut got = Vec::new();
            let mut batch = Vec::new();
            while queue.pop_many(1 + c % 3, &mut batch).await > 0 {
                got.extend(batch.drain(..).map(|claim| claim.item));
            }
            got
        });
    }
    timeout(Duration::from_secs(30), async {
        while let Some(done) = producers.join_next().await {
            done.unwrap();
        }
        queue.join().await;
        queue.close();
        let mut all = Vec::new();
        while let Some(got) = consumers.join_next().await {
            all.extend(got.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..4 * PER_PRODUCER).collect::<Vec<_>>());
    })
    .await
    .expect("no lost wake-up");
    let stats = queue.stats();
    assert_eq!(
        (
            stats.queued,
            stats.in_flight,
            stats.waiting_consumers,
            stats.waiting_producers
        ),
        (0, 0, 0, 0)
    );
}

/// push_many fills the queue exactly to its capacity, never one past it,
/// and waits for room for the rest.
#[tokio::test(start_paused = true)]
async fn push_many_stops_at_the_capacity() {
    let queue = PriorityQueue::new(2);
    let producer = tokio::spawn({
        let queue = queue.clone();
        async move { queue.push_many(vec![(0, 1), (0, 2), (0, 3)]).await }
    });
    time::sleep(Duration::from_secs(1)).await;
    assert!(!producer.is_finished());
    let stats = queue.stats();
    assert_eq!((stats.queued, stats.waiting_producers), (2, 1), "{stats:?}");
    assert_eq!(queue.pop().await.map(|c| c.item), Some(1));
    timeout(LIMIT, producer).await.unwrap().unwrap().unwrap();
    assert_eq!(queue.stats().queued, 2);
}

/// pop_many appends to a vector that already holds claims: it takes up to
/// `max` more and returns how many it took, not the vector's length.
#[tokio::test(start_paused = true)]
async fn pop_many_appends_and_counts_only_what_it_took() {
    let queue = PriorityQueue::new(8);
    for i in 0..6 {
        queue.push(0, i).await.unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(queue.pop_many(2, &mut out).await, 2);
    assert_eq!(queue.pop_many(3, &mut out).await, 3);
    let items: Vec<i32> = out.iter().map(|c| c.item).collect();
    assert_eq!(items, [0, 1, 2, 3, 4]);
    assert_eq!(queue.stats().queued, 1);
    assert_eq!(queue.capacity(), 8);
}

/// A batch of N items wakes N sleeping consumers, not one: each of three
/// waiting consumers gets an item.
#[tokio::test(start_paused = true)]
async fn a_batch_wakes_one_consumer_per_item() {
    let queue = PriorityQueue::new(8);
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pop().await.map(|claim| claim.item) })
        })
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(queue.stats().waiting_consumers, 3);
    queue.push_many(vec![(0, 1), (0, 2), (0, 3)]).await.unwrap();
    let mut got = Vec::new();
    for consumer in consumers {
        got.push(timeout(LIMIT, consumer).await.unwrap().unwrap().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, [1, 2, 3]);
}
