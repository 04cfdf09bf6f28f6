//! Lifecycle patterns: supervising background tasks, and shutting a service
//! down without losing work.
//!
//! Ports seed Examples 11 and 15. Both seeds manage task lifetimes by hand
//! (`create_task` into a list, `cancel()` everything, `gather` the results)
//! and neither notices a task that dies early, bounds how long a shutdown
//! may take, or knows what work was lost. The modules here do:
//!
//! - [`supervisor`]: named tasks with restart policies, a panic noticed the
//!   moment it happens, liveness in a status report, and a stop with a
//!   deadline that reports why each task ended (`background-tasks`).
//! - [`background`]: the seed's three loops written as supervised tasks.
//! - [`spawn_bench`]: what a tokio task costs (100,000 sleepers).
//! - [`jobs`]: an axum job service with a bounded queue, workers and a
//!   journal, built to be shut down (`graceful-shutdown`).
//! - [`shutdown`]: the three shutdown phases (stop intake, drain, close
//!   resources) under a grace deadline, and a second signal that forces exit.
//! - [`load`]: the load generator the demo and the tests drive it with.
//!
//! ```text
//! cargo run --bin background-tasks -- --crash-after 2.5
//! cargo run --bin graceful-shutdown
//! cargo test -p examples-lifecycle
//! ```

pub mod background;
pub mod jobs;
pub mod load;
pub mod shutdown;
pub mod spawn_bench;
pub mod supervisor;

use std::time::Duration;

/// Parses a duration for a CLI flag: seconds (`2`, `0.5`) or with a unit
/// (`250ms`, `1.5s`). Rejects negative, non-finite and absurdly long values.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 2, 0.5, 1.5s or 250ms)"))?;
    let seconds = value * scale;
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("`{text}` is out of range (0 to 86400 seconds)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Like [`parse_duration`] but rejects zero (for periods and deadlines).
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}
