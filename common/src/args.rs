//! Typed, bounded parsers for every flag value.
//!
//! A flag value is untrusted input: `--timeout 1e19` or `--rate 1e-300`
//! must never reach `Instant::now() + d` or `Duration::from_secs_f64` and
//! panic. Every numeric flag of every binary goes through one of these
//! parsers, which turn anything outside the stated range into a clap usage
//! error (exit 2) that names the flag and the accepted range.
//!
//! | parser | accepts | example |
//! |---|---|---|
//! | [`duration()`] | a number with a unit: `us`, `ms`, `s`, `m`, `h` | `250ms`, `5s`, `1.5s`, `2m` |
//! | [`rate()`] | a finite decimal number | `200`, `0.5`, `1e3` |
//! | [`count()`] | a whole number (`_` separators allowed) | `1000`, `1_000` |
//! | [`bytes()`] | a whole number with an optional unit: `B`, `KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB` | `64KiB`, `1MiB` |
//! | [`fraction()`] | a number from 0 to 1 | `0.05` |
//!
//! Each returns a closure that clap uses as a `value_parser`:
//!
//! ```
//! use std::time::Duration;
//! use clap::Parser;
//! use common::args;
//!
//! #[derive(Parser)]
//! struct Args {
//!     /// Per-request timeout.
//!     #[arg(long, default_value = "5s",
//!           value_parser = args::duration(Duration::from_millis(1), args::MAX_DURATION))]
//!     timeout: Duration,
//!     /// Requests per second.
//!     #[arg(long, default_value = "10", value_parser = args::rate(0.001, 1e6))]
//!     rate: f64,
//!     /// Requests in flight.
//!     #[arg(long, default_value = "16", value_parser = args::count(1usize, 10_000))]
//!     concurrency: usize,
//! }
//!
//! let args = Args::try_parse_from(["demo", "--timeout", "250ms"]).unwrap();
//! assert_eq!(args.timeout, Duration::from_millis(250));
//! assert!(Args::try_parse_from(["demo", "--timeout", "1e19s"]).is_err());
//! assert!(Args::try_parse_from(["demo", "--rate", "NaN"]).is_err());
//! assert!(Args::try_parse_from(["demo", "--concurrency", "0"]).is_err());
//! ```
//!
//! **Why an upper bound on every duration.** `Instant + Duration` panics on
//! overflow, and `tokio::time::sleep` with a huge duration is a hang that
//! looks like a bug. [`MAX_DURATION`] (7 days) is far beyond any sensible
//! timeout yet leaves `Instant::now() + d` billions of years from overflow,
//! so a parsed duration can meet an `Instant` without a check.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// The largest duration any flag accepts: 7 days.
///
/// The documented clamp that makes `Instant::now() + parsed` safe.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A clap value parser for a duration with a unit, within `min..=max`.
///
/// Accepts `<number><unit>` with units `us`, `ms`, `s`, `m`, `h`, and a
/// fractional number (`1.5s`). A bare number is rejected: `--timeout 5`
/// could mean seconds or milliseconds, and the whole point is that it
/// cannot be misread. `0s` is accepted only when `min` is zero.
pub fn duration(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    let max = max.min(MAX_DURATION);
    move |text: &str| {
        let value = parse_duration(text)?;
        if value < min || value > max {
            return Err(format!(
                "{text} is out of range: accepted {} to {}",
                show_duration(min),
                show_duration(max)
            ));
        }
        Ok(value)
    }
}

/// Parses `250ms`, `5s`, `1.5s`, `2m`, `1h`, `10us` into a [`Duration`],
/// with checked arithmetic: anything that does not fit (or is negative,
/// NaN or infinite) is an error, never a panic.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| format!("{text:?} has no unit: write e.g. 250ms, 5s or 2m"))?;
    let (number, unit) = trimmed.split_at(split);
    let scale_ns: f64 = match unit {
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use us, ms, s, m or h)"
            ));
        }
    };
    let number = number.trim();
    if number.is_empty() || !number.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(format!("{text:?} is not a duration (e.g. 250ms, 5s)"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 250ms, 5s)"))?;
    let nanos = value * scale_ns;
    // MAX_DURATION is far below u64::MAX nanoseconds, so anything finite and
    // under it converts exactly enough; the bound also rejects inf.
    if !nanos.is_finite() || nanos < 0.0 || nanos > MAX_DURATION.as_nanos() as f64 {
        return Err(format!(
            "{text} is out of range: at most {}",
            show_duration(MAX_DURATION)
        ));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn show_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        "0s".to_owned()
    } else if ns.is_multiple_of(3_600_000_000_000) {
        format!("{}h", ns / 3_600_000_000_000)
    } else if ns.is_multiple_of(60_000_000_000) {
        format!("{}m", ns / 60_000_000_000)
    } else if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1_000) {
        format!("{}us", ns / 1_000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// A clap value parser for a finite rate (or any real number) within
/// `min..=max`. Rejects NaN, infinities and anything out of range.
pub fn rate(min: f64, max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync {
    move |text: &str| {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        if !value.is_finite() || value < min || value > max {
            return Err(format!("{text} is out of range: accepted {min} to {max}"));
        }
        Ok(value)
    }
}

/// A clap value parser for a fraction from 0 to 1 (an error rate, a
/// probability).
pub fn fraction() -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync {
    rate(0.0, 1.0)
}

/// A clap value parser for a whole number within `min..=max`, for any
/// unsigned or signed integer type (`usize`, `u32`, `u64`, ...).
pub fn count<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |text: &str| {
        let cleaned = text.trim().replace('_', "");
        let value: T = cleaned
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number: accepted {min} to {max}"))?;
        if value < min || value > max {
            return Err(format!("{text} is out of range: accepted {min} to {max}"));
        }
        Ok(value)
    }
}

/// A clap value parser for a size in bytes within `min..=max`: a whole
/// number with an optional unit (`B`, `KiB`, `MiB`, `GiB`, `KB`, `MB`,
/// `GB`), e.g. `64KiB`.
pub fn bytes(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync {
    move |text: &str| {
        let value = parse_bytes(text)?;
        if value < min || value > max {
            return Err(format!(
                "{text} is out of range: accepted {min} to {max} bytes"
            ));
        }
        Ok(value)
    }
}

/// Parses `1000`, `64KiB`, `10MB` into a byte count, with checked
/// multiplication.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown size unit {other:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    let number: u64 = number
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1000, 64KiB, 10MB)"))?;
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_stay_in_range() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("7d").map(|_| ()),
            Err("\"7d\": unknown unit \"d\" (use us, ms, s, m or h)".into())
        );
        for bad in [
            "5",
            "",
            "s",
            "-1s",
            "NaNs",
            "infs",
            "1e19s",
            "1e300h",
            "+5s",
            "5 s x",
            "0x10s",
            "18446744073709551615s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} must be rejected");
        }
        assert!(parse_duration("168h").is_ok());
        assert!(parse_duration("169h").is_err());
    }

    #[test]
    fn duration_parser_names_the_range() {
        let parse = duration(Duration::from_millis(1), Duration::from_secs(60));
        assert_eq!(parse("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse("60s"), Ok(Duration::from_secs(60)));
        let err = parse("0s").unwrap_err();
        assert!(err.contains("1ms to 1m"), "{err}");
        assert!(parse("61s").is_err());
        assert!(parse("1us").is_err());
    }

    #[test]
    fn show_duration_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_micros(7),
            Duration::from_millis(250),
            Duration::from_secs(5),
            Duration::from_secs(120),
            Duration::from_secs(7200),
            Duration::from_nanos(1_500),
        ] {
            assert_eq!(parse_duration(&show_duration(d)), Ok(d), "{d:?}");
        }
    }

    #[test]
    fn rates_are_finite_and_in_range() {
        let parse = rate(0.001, 1e6);
        assert_eq!(parse("200"), Ok(200.0));
        assert_eq!(parse("0.001"), Ok(0.001));
        assert_eq!(parse("1e6"), Ok(1e6));
        for bad in ["0", "-1", "NaN", "inf", "-inf", "1e-300", "1e19", "", "x"] {
            assert!(parse(bad).is_err(), "{bad} must be rejected");
        }
        assert!(fraction()("1").is_ok());
        assert!(fraction()("0").is_ok());
        assert!(fraction()("1.0001").is_err());
    }

    #[test]
    fn counts_are_whole_and_in_range() {
        let parse = count(1usize, 1000);
        assert_eq!(parse("1"), Ok(1));
        assert_eq!(parse("1_000"), Ok(1000));
        for bad in [
            "0",
            "1001",
            "-1",
            "1.5",
            "18446744073709551615",
            "NaN",
            "",
            "1e3",
        ] {
            assert!(parse(bad).is_err(), "{bad} must be rejected");
        }
        let err = parse("0").unwrap_err();
        assert!(err.contains("1 to 1000"), "{err}");
    }

    #[test]
    fn sizes_take_units_with_checked_multiplication() {
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("64KiB"), Ok(65_536));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert!(parse_bytes("18446744073709551615GiB").is_err());
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("1.5MiB").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
        let parse = bytes(1, 1 << 30);
        assert!(parse("0").is_err());
        assert!(parse("2GiB").is_err());
        assert_eq!(parse("1GiB"), Ok(1 << 30));
    }
}
