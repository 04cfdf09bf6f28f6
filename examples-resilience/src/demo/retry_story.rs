//! The `backoff-retry` demo: the four jitters side by side, then the seed's
//! three configurations, a `Retry-After` run under a deadline and a 404,
//! each against the sandbox's `/flaky`.

use std::time::Duration;

use rand::SeedableRng;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::http::{self, HttpError};
use crate::retry::{Backoff, Jitter, Retry, RetryNotice, RetryPolicy};

/// What the story is played with.
#[derive(Debug, Clone)]
pub struct Story {
    /// Base URL of the sandbox (or a compatible server).
    pub base: String,
    /// `/flaky`'s failure rate.
    pub fail_rate: f64,
    /// Seed for `/flaky` (run i uses seed + i) and the jitter.
    pub seed: u64,
    /// One "second" of the seed's delays.
    pub unit: Duration,
    /// Response-body cap.
    pub max_body: u64,
    /// The longest `Retry-After` obeyed.
    pub max_retry_after: Duration,
}

/// The six delays of each jitter strategy (ms), printed through `say`.
pub fn jitter_table(story: &Story, say: &impl Fn(String)) -> Value {
    let unit = story.unit;
    let shape = Backoff {
        base: unit,
        factor: 2.0,
        max_delay: 10 * unit,
        jitter: Jitter::None,
    };
    say(format!(
        "== jitter strategies: base {unit:?}, factor 2, cap {:?}, seed {} (ms)",
        10 * unit,
        story.seed
    ));
    let mut table = serde_json::Map::new();
    for jitter in [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
    ] {
        let rng = rand::rngs::StdRng::seed_from_u64(story.seed);
        let delays: Vec<u128> = Backoff { jitter, ..shape }
            .delays(rng)
            .take(6)
            .map(|d| d.as_millis())
            .collect();
        say(format!("  {:<13} {delays:?}", format!("{jitter:?}")));
        table.insert(format!("{jitter:?}").to_lowercase(), json!(delays));
    }
    Value::Object(table)
}

/// The five runs: (name, policy, url, meant to succeed).
fn runs(story: &Story) -> Vec<(&'static str, RetryPolicy, String, bool)> {
    let unit = story.unit;
    let flaky = |offset: u64, extra: &str| {
        format!(
            "{}/flaky?fail_rate={}&seed={}{extra}",
            story.base,
            story.fail_rate,
            story.seed.wrapping_add(offset)
        )
    };
    let policy = |max_attempts, base: f64, factor, jitter, deadline| RetryPolicy {
        max_attempts,
        backoff: Backoff {
            base: unit.mul_f64(base),
            factor,
            max_delay: 60 * unit,
            jitter,
        },
        deadline,
        max_retry_after: story.max_retry_after,
    };
    let deadline = Some(Duration::from_millis(1500));
    vec![
        (
            "seed config 1: 3 retries, base 1, full jitter",
            policy(4, 1.0, 2.0, Jitter::Full, None),
            flaky(0, ""),
            true,
        ),
        (
            "seed config 2: 5 retries, base 0.5, factor 1.5",
            policy(6, 0.5, 1.5, Jitter::Full, None),
            flaky(1, ""),
            true,
        ),
        (
            "seed config 3: 4 retries, base 2, no jitter",
            policy(5, 2.0, 2.0, Jitter::None, None),
            flaky(2, ""),
            true,
        ),
        (
            "Retry-After: 1 s on 503, deadline 1.5 s",
            policy(6, 1.0, 2.0, Jitter::Full, deadline),
            flaky(3, "&retry_after=1"),
            false,
        ),
        (
            "404: not retryable",
            policy(4, 1.0, 2.0, Jitter::Full, None),
            format!("{}/status/404", story.base),
            false,
        ),
    ]
}

/// Plays every run (stopping early on `stop`); returns one summary per run
/// played and the names of the runs meant to succeed that gave up.
pub async fn play(
    story: &Story,
    client: &reqwest::Client,
    stop: &CancellationToken,
    say: &impl Fn(String),
) -> (Vec<Value>, Vec<&'static str>) {
    let (mut summaries, mut failed) = (Vec::new(), Vec::new());
    for (name, policy, url, meant_to_succeed) in runs(story) {
        say(format!("\n== {name}\n   GET {url}"));
        let retry = Retry::new(policy, HttpError::retry_decision)
            .seed(story.seed)
            .on_retry(|n: &RetryNotice<'_, HttpError>| {
                tracing::info!(attempt = n.attempt, error = %n.error, delay_ms = n.delay.as_millis() as u64, "retrying");
                say(format!("   attempt {} failed ({}); retrying in {:.0?}", n.attempt, n.error, n.delay));
            });
        let outcome = tokio::select! {
            outcome = retry.run(|| http::get_json(client, &url, story.max_body)) => outcome,
            // Dropping the loop cancels it wherever it is, mid-sleep included.
            () = stop.cancelled() => break,
        };
        let (outcome, stats) = match outcome {
            Ok(ok) => {
                say(format!(
                    "   ok after {} attempt(s), {:.0?} asleep, {:.0?} in all: {}",
                    ok.stats.attempts, ok.stats.total_delay, ok.stats.elapsed, ok.value
                ));
                ("ok", ok.stats)
            }
            Err(err) => {
                say(format!("   {err}"));
                for a in &err.history {
                    let error = a
                        .error
                        .as_ref()
                        .map_or("cut by the deadline".to_owned(), ToString::to_string);
                    say(format!(
                        "     #{} at +{:.0?} took {:.0?}: {error}",
                        a.number, a.started, a.took
                    ));
                }
                if meant_to_succeed {
                    failed.push(name);
                }
                (err.reason.name(), err.stats)
            }
        };
        summaries.push(json!({ "name": name, "outcome": outcome, "attempts": stats.attempts,
            "total_delay_ms": stats.total_delay.as_millis() as u64, "elapsed_ms": stats.elapsed.as_millis() as u64 }));
    }
    (summaries, failed)
}
