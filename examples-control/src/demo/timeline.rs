//! A text Gantt chart of who held which resource when (for the
//! `semaphore-pool` demo).
//!
//! Each row is one resource, each column a slice of time; the character in
//! a cell is the user holding that resource in the middle of the slice
//! (`0`-`9`, `a`-`z`, `A`-`Z` for users 0 to 61, `#` beyond), `.` if idle.
//! A row can never show two users in one cell, because a resource is only
//! ever held by one guard: the chart makes the pool's exclusivity visible.

use std::fmt::Write as _;
use std::time::Duration;

/// Symbols for users 0, 1, 2, ...
const USER_SYMBOLS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// One user holding one resource from `start` to `end` (since the run began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The user's number.
    pub user: usize,
    /// The resource's number.
    pub resource: usize,
    /// When the user got the resource.
    pub start: Duration,
    /// When the user gave it back.
    pub end: Duration,
}

/// The symbol a chart uses for `user`.
pub fn user_symbol(user: usize) -> char {
    USER_SYMBOLS.get(user).map_or('#', |&b| char::from(b))
}

/// Renders `spans` over `resources` rows, `width` columns wide.
pub fn render(spans: &[Span], resources: usize, width: usize) -> String {
    let width = width.max(1);
    let end = spans.iter().map(|s| s.end).max().unwrap_or_default();
    // At least 1 µs per column, so an empty or instant run still renders.
    let step = (end / u32::try_from(width).unwrap_or(u32::MAX)).max(Duration::from_micros(1));
    let mut out = String::new();
    // Writing to a String cannot fail; the `let _ =` below rely on that.
    let _ = writeln!(
        out,
        "timeline: one column = {:.1} ms, a symbol = the user holding it, '.' = idle",
        step.as_secs_f64() * 1e3
    );
    for resource in 0..resources {
        let mut row = String::with_capacity(width);
        for column in 0..width {
            // Sample the middle of the column's slice of time.
            let at = step * u32::try_from(column).unwrap_or(u32::MAX) + step / 2;
            let holder = spans
                .iter()
                .find(|s| s.resource == resource && s.start <= at && at < s.end);
            row.push(holder.map_or('.', |s| user_symbol(s.user)));
        }
        let _ = writeln!(out, "  R{resource:<3}|{row}|");
    }
    out
}

/// The first pair of spans that hold the same resource at the same time,
/// if any (there should never be one).
pub fn first_overlap(spans: &[Span]) -> Option<(Span, Span)> {
    let mut sorted = spans.to_vec();
    sorted.sort_by_key(|s| (s.resource, s.start));
    sorted
        .windows(2)
        .find(|pair| pair[0].resource == pair[1].resource && pair[1].start < pair[0].end)
        .map(|pair| (pair[0], pair[1]))
}
