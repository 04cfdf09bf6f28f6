//! `/flaky`: seeded failures and hangs, for retry and circuit-breaker demos.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{MAX_DELAY, SharedState, bad_request, sleep_or_shutdown, splitmix64, unit_f64};

/// Seeds remembered at once; past this the table is cleared, so a client
/// sending random seeds cannot grow server memory without bound.
const MAX_SEEDS: usize = 1024;

/// The next request number for each seed.
#[derive(Debug, Default)]
pub(super) struct Sequences {
    // std Mutex: held for one map update, never across an await.
    next: Mutex<HashMap<u64, u64>>,
}

impl Sequences {
    fn take(&self, seed: u64) -> u64 {
        // A poisoned lock only means another handler panicked mid-update of
        // a counter map; the map itself is still usable.
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        if next.len() >= MAX_SEEDS && !next.contains_key(&seed) {
            next.clear();
        }
        let n = next.entry(seed).or_insert(0);
        let current = *n;
        *n += 1;
        current
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct FlakyQuery {
    #[serde(default = "default_fail_rate")]
    fail_rate: f64,
    #[serde(default)]
    hang_rate: f64,
    #[serde(default = "default_hang_ms")]
    hang_ms: u64,
    #[serde(default)]
    seed: u64,
    retry_after: Option<u64>,
}

fn default_fail_rate() -> f64 {
    0.5
}

fn default_hang_ms() -> u64 {
    30_000
}

/// What the n-th request for a seed gets.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail(StatusCode),
    Hang,
}

fn outcome(seed: u64, n: u64, fail_rate: f64, hang_rate: f64) -> Outcome {
    let bits = splitmix64(seed ^ splitmix64(n));
    let u = unit_f64(bits);
    if u < fail_rate {
        // The lowest bit is independent enough of the top 53 for a test fixture.
        if bits & 1 == 0 {
            Outcome::Fail(StatusCode::INTERNAL_SERVER_ERROR)
        } else {
            Outcome::Fail(StatusCode::SERVICE_UNAVAILABLE)
        }
    } else if u < fail_rate + hang_rate {
        Outcome::Hang
    } else {
        Outcome::Ok
    }
}

pub(super) async fn flaky(
    State(state): State<SharedState>,
    Query(query): Query<FlakyQuery>,
) -> Response {
    let rates_valid = (0.0..=1.0).contains(&query.fail_rate)
        && (0.0..=1.0).contains(&query.hang_rate)
        && query.fail_rate + query.hang_rate <= 1.0;
    if !rates_valid {
        return bad_request("fail_rate and hang_rate must be in [0, 1] and sum to at most 1");
    }
    let hang = Duration::from_millis(query.hang_ms);
    if hang > MAX_DELAY {
        return bad_request("hang_ms too large");
    }

    let n = state.flaky_sequences.take(query.seed);
    match outcome(query.seed, n, query.fail_rate, query.hang_rate) {
        Outcome::Ok => Json(serde_json::json!({ "ok": true, "n": n })).into_response(),
        Outcome::Fail(status) => {
            state
                .counters
                .flaky_failures
                .fetch_add(1, Ordering::Relaxed);
            let mut response =
                (status, Json(serde_json::json!({ "ok": false, "n": n }))).into_response();
            if let (StatusCode::SERVICE_UNAVAILABLE, Some(secs)) = (status, query.retry_after) {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Outcome::Hang => {
            state
                .counters
                .flaky_failures
                .fetch_add(1, Ordering::Relaxed);
            // A hung upstream: nothing for hang_ms, then a gateway timeout.
            // Clients are expected to give up long before.
            sleep_or_shutdown(&state, hang).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_requested_rates() {
        let draws = 10_000;
        let fails = (0..draws)
            .filter(|&n| matches!(outcome(42, n, 0.3, 0.1), Outcome::Fail(_)))
            .count();
        let hangs = (0..draws)
            .filter(|&n| outcome(42, n, 0.3, 0.1) == Outcome::Hang)
            .count();
        assert!((2_800..3_200).contains(&fails), "fails = {fails}");
        assert!((800..1_200).contains(&hangs), "hangs = {hangs}");
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let a: Vec<_> = (0..100).map(|n| outcome(7, n, 0.5, 0.0)).collect();
        let b: Vec<_> = (0..100).map(|n| outcome(7, n, 0.5, 0.0)).collect();
        let c: Vec<_> = (0..100).map(|n| outcome(8, n, 0.5, 0.0)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
