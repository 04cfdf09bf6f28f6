//! Demo support for `rate-limited-client` (not a pattern): the workload of
//! user lookups, the loop that drives it under a stop token, and the story
//! and figures it prints.

pub mod args;
pub mod bench;

pub use args::Args;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, ApiError, User};
use crate::rate_limit::{Limiter, RateLimiter};
use crate::shared_limit::{SharedLimitError, SharedLimiter};

/// The in-process limiter or the shared one, chosen by flag.
#[derive(Debug)]
pub enum AnyLimiter {
    /// One process's GCRA (`--rate`).
    Local(RateLimiter),
    /// One budget shared through Redis (`--shared-limit`).
    Shared(SharedLimiter),
}

impl Limiter for AnyLimiter {
    type Error = SharedLimitError;

    async fn acquire_slot(&self) -> Result<(), SharedLimitError> {
        match self {
            Self::Local(limiter) => {
                limiter.acquire().await;
                Ok(())
            }
            Self::Shared(limiter) => limiter.acquire_slot().await,
        }
    }

    async fn pause(&self, wait: Duration) -> Result<(), SharedLimitError> {
        match self {
            Self::Local(limiter) => {
                limiter.pause_for(wait);
                Ok(())
            }
            Self::Shared(limiter) => limiter.pause(wait).await,
        }
    }
}

/// One call of the workload.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The login to fetch.
    pub login: String,
    /// Ask the sandbox for a broken body (`?malformed=1`).
    pub malformed: bool,
    /// A failure the demo planted on purpose (an invalid login, a broken
    /// body): shown as a typed error, not counted as a failed run.
    pub planted: bool,
}

/// The demo's lookups: the given users, or `count` generated ones with one
/// invalid login and one broken body planted when `plant` (the sandbox).
pub fn lookups(users: &[String], count: usize, plant: bool) -> Vec<Lookup> {
    let generated = users.is_empty();
    let mut lookups: Vec<Lookup> = if generated {
        (0..count).map(generated_lookup).collect()
    } else {
        users.iter().map(|u| plain(u.clone())).collect()
    };
    if plant && generated && lookups.len() >= 10 {
        lookups[3] = Lookup {
            login: "-not-a-login-".to_owned(),
            malformed: false,
            planted: true,
        };
        lookups[7].malformed = true;
        lookups[7].planted = true;
    }
    lookups
}

fn plain(login: String) -> Lookup {
    Lookup {
        login,
        malformed: false,
        planted: false,
    }
}

fn generated_lookup(i: usize) -> Lookup {
    plain(format!("user-{i}"))
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The first results, in input order, for the story.
    pub shown: Vec<(String, Result<User, ApiError>)>,
    /// Calls that finished.
    pub calls: u64,
    /// Calls that failed although nothing was planted.
    pub unexpected_errors: u64,
    /// The first unexpected error, for the failure line.
    pub first_error: Option<String>,
    /// The stop token fired before the workload ended.
    pub interrupted: bool,
}

/// How many results the story shows.
pub const SHOWN: usize = 12;

/// Runs `lookups` (or, with `duration`, generated lookups until it ends)
/// through `client`, at most `concurrency` calls offered at once, until
/// done or `stop` fires.
pub async fn drive<L: Limiter>(
    client: Arc<ApiClient<L>>,
    lookups: Vec<Lookup>,
    duration: Option<Duration>,
    concurrency: usize,
    stop: &CancellationToken,
) -> Outcome {
    let end = duration.map(|d| Instant::now() + d);
    let work: Box<dyn Iterator<Item = Lookup> + Send> = match end {
        Some(_) => Box::new((0..).map(generated_lookup)),
        None => Box::new(lookups.into_iter()),
    };
    let mut calls = futures::stream::iter(work.enumerate())
        // Lazily checked: a new call is offered only while time is left.
        .take_while(|_| std::future::ready(end.is_none_or(|end| Instant::now() < end)))
        .map(|(index, lookup)| {
            let client = client.clone();
            async move {
                let query: &[(&str, &str)] = if lookup.malformed {
                    &[("malformed", "1")]
                } else {
                    &[]
                };
                let result = client.get::<User>(&["users", &lookup.login], query).await;
                (index, lookup, result)
            }
        })
        // The throttle bounds what runs; this only offers enough work.
        .buffer_unordered(concurrency);
    let mut outcome = Outcome::default();
    let mut shown = Vec::new();
    loop {
        let next = tokio::select! {
            next = calls.next() => next,
            () = stop.cancelled() => {
                outcome.interrupted = true;
                break;
            }
        };
        let Some((index, lookup, result)) = next else {
            break;
        };
        outcome.calls += 1;
        if let Err(err) = &result
            && !lookup.planted
        {
            outcome.unexpected_errors += 1;
            outcome
                .first_error
                .get_or_insert_with(|| format!("{}: {err}", lookup.login));
        }
        if index < SHOWN {
            shown.push((index, lookup.login, result));
        }
    }
    shown.sort_by_key(|(index, _, _)| *index);
    outcome.shown = shown.into_iter().map(|(_, l, r)| (l, r)).collect();
    outcome
}

/// Wall-clock seconds since the Unix epoch of a tokio `Instant` in the
/// past, so processes can line up their windows.
pub fn unix_s(at: Instant) -> f64 {
    let ago = Instant::now().saturating_duration_since(at);
    SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Prints the first results, one line each.
pub fn print_results(outcome: &Outcome, total: u64) {
    for (login, result) in &outcome.shown {
        match result {
            Ok(user) => println!(
                "ok   {:<16} {:>4} repos {:>6} followers",
                user.login, user.public_repos, user.followers
            ),
            Err(ApiError::Decode(detail)) => println!("err  {login:<16} bad JSON ({detail})"),
            Err(err) => println!("err  {login:<16} {err}"),
        }
    }
    if total > outcome.shown.len() as u64 {
        println!("... {} more", total - outcome.shown.len() as u64);
    }
}

/// What the run was configured to do, for the story and the figures.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--rate`.
    pub rate: f64,
    /// `--burst`.
    pub burst: u32,
    /// `false` with `--no-limit`.
    pub limited: bool,
    /// `--limit-key` when `--shared-limit` is given.
    pub shared_key: Option<String>,
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--json`: print nothing, the figures go into the envelope.
    pub json: bool,
}

/// Prints the story (unless `--json`) and builds the report: exit 1 when
/// every call failed, or any call failed that the demo did not plant.
pub fn report<L: Limiter>(
    settings: &Settings,
    client: &ApiClient<L>,
    outcome: &Outcome,
    server_429: Option<u64>,
) -> common::Report {
    let stats = client.stats();
    let starts = client.throttle().starts();
    let sustained = starts
        .sustained_rate(settings.burst)
        .filter(|_| settings.limited);
    let rate_error = sustained.map(|r| 100.0 * (r - settings.rate) / settings.rate);
    let figures = serde_json::json!({
        "rate_per_s": settings.rate, "burst": settings.burst, "limited": settings.limited,
        "shared": settings.shared_key.is_some(), "concurrency": settings.concurrency,
        "calls": outcome.calls, "requests": stats.requests, "succeeded": stats.ok,
        "errors": stats.errors, "unexpected_errors": outcome.unexpected_errors,
        "rate_limited_429": stats.rate_limited, "server_429": server_429,
        "success_rate_pct": 100.0 * stats.ok as f64 / outcome.calls.max(1) as f64,
        "starts": starts.count, "sustained_per_s": sustained, "rate_error_pct": rate_error,
        "first_start_unix_s": starts.first.map(unix_s),
        "last_start_unix_s": starts.last.map(unix_s),
        "peak_in_flight": stats.peak_in_flight,
    });
    if !settings.json {
        print_results(outcome, outcome.calls);
        let limit = match (&settings.shared_key, settings.limited) {
            (Some(key), _) => format!("{} rps shared under key {key:?}", settings.rate),
            (None, false) => "no limiter".to_owned(),
            (None, true) => format!("{} rps, burst {}", settings.rate, settings.burst),
        };
        println!(
            "\n=== stats ({limit}, at most {} in flight) ===",
            settings.concurrency
        );
        println!(
            "calls: {}   HTTP requests: {}   ok: {}   errors: {}",
            outcome.calls, stats.requests, stats.ok, stats.errors
        );
        println!(
            "429 responses: {}   peak in flight: {}",
            stats.rate_limited, stats.peak_in_flight
        );
        if let Some(rate) = sustained {
            println!("achieved rate after the burst: {rate:.2} req/s");
        }
        if let Some(rejected) = server_429 {
            println!("the sandbox rejected {rejected} requests with 429");
        }
        if outcome.interrupted {
            println!(
                "interrupted: {} calls finished, the ones in flight were cancelled",
                outcome.calls
            );
        }
    }
    let first = outcome.first_error.as_deref().unwrap_or_default();
    let failure = match (outcome.calls, stats.ok, outcome.unexpected_errors) {
        (calls, 0, _) if calls > 0 => Some(format!("all {calls} calls failed (first: {first})")),
        (_, _, 0) => None,
        (_, _, n) => Some(format!("{n} calls failed (first: {first})")),
    };
    common::Report::ok().figures(figures).fail_if(failure)
}
