//! Cache hit throughput: one task, then 2 and 64 tasks contending.
//!
//! A hot set of 1,000 string keys (`user:<n>`), all present, read in a
//! loop; every read is a hit (a hash lookup, an LRU move to front, an
//! expiry check on the tokio clock, an `Arc` clone). Tasks yield every 256
//! reads so the 64 interleave on the runtime's worker threads.
//!
//! ```text
//! cargo bench -p examples-db --bench cache            # 20 M reads per round
//! cargo bench -p examples-db --bench cache -- --quick # 2 M
//! ```

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples_db::cache::Cache;

const KEYS: usize = 1_000;
const ROUNDS: usize = 5;

async fn hits_per_second(
    cache: &Arc<Cache<String, Arc<str>>>,
    keys: &Arc<Vec<String>>,
    tasks: usize,
    total: usize,
) -> f64 {
    let per_task = total / tasks;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (cache, keys) = (Arc::clone(cache), Arc::clone(keys));
        set.spawn(async move {
            let mut found = 0usize;
            let mut at = (t * 7) % KEYS;
            for i in 0..per_task {
                let key = &keys[at];
                at = if at + 1 == KEYS { 0 } else { at + 1 };
                found += usize::from(cache.get(key.as_str()).is_some());
                if i % 256 == 255 {
                    tokio::task::yield_now().await;
                }
            }
            found
        });
    }
    let mut found = 0;
    while let Some(joined) = set.join_next().await {
        found += joined.expect("bench task");
    }
    assert_eq!(found, per_task * tasks, "every read is a hit");
    found as f64 / started.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let total = if quick { 2_000_000 } else { 20_000_000 };
    println!("cache hits, {KEYS} hot string keys, median of {ROUNDS} rounds x {total} reads");
    let cases: [(&str, usize, bool); 3] = [
        ("1 task (current_thread)", 1, false),
        ("2 tasks (multi_thread, 2 workers)", 2, true),
        ("64 tasks (multi_thread, 2 workers)", 64, true),
    ];
    let mut cases_json = Vec::new();
    for (label, tasks, multi) in cases {
        let runtime = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .expect("runtime");
        let rate = runtime.block_on(async {
            let capacity = NonZeroUsize::new(KEYS * 2).expect("non-zero");
            let cache = Arc::new(Cache::new(capacity, Duration::from_secs(3600)));
            let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|n| format!("user:{n}")).collect());
            for key in keys.iter() {
                cache.set(key.clone(), Arc::<str>::from(format!("profile of {key}")));
            }
            let mut rates = Vec::new();
            for _ in 0..ROUNDS {
                rates.push(hits_per_second(&cache, &keys, tasks, total).await);
            }
            median(rates)
        });
        println!("{label:<36} {:>7.2} M hits/s", rate / 1e6);
        cases_json.push(
            serde_json::json!({ "case": label, "tasks": tasks, "hits_per_sec": rate.round() }),
        );
    }
    // The floor on this machine, same loop: a clock read plus a locked
    // HashMap lookup and an Arc clone, with no LRU or TTL bookkeeping.
    let keys: Vec<String> = (0..KEYS).map(|n| format!("user:{n}")).collect();
    let map: std::sync::Mutex<std::collections::HashMap<String, Arc<str>>> = std::sync::Mutex::new(
        keys.iter()
            .map(|k| (k.clone(), Arc::<str>::from(k.as_str())))
            .collect(),
    );
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let origin = tokio::time::Instant::now();
        let (mut at, mut found) = (0, 0usize);
        for _ in 0..total {
            let now = std::hint::black_box(tokio::time::Instant::now());
            let hit = map
                .lock()
                .expect("not poisoned")
                .get(keys[at].as_str())
                .cloned();
            found += usize::from(hit.is_some() && now >= origin);
            at = if at + 1 == KEYS { 0 } else { at + 1 };
        }
        assert_eq!(found, total);
        rates.push(total as f64 / started.elapsed().as_secs_f64());
    }
    let floor = median(rates);
    println!(
        "{:<36} {:>7.2} M lookups/s",
        "floor: Mutex<HashMap> + clock, 1 task",
        floor / 1e6
    );
    // The last line is the machine-readable summary (scripts/bench.sh reads it).
    println!(
        "{}",
        serde_json::json!({ "bench": "cache", "reads_per_round": total, "cases": cases_json, "floor_lookups_per_sec": floor.round() })
    );
}
