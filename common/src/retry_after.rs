//! `Retry-After`: a server's demand for how long to wait, parsed as the
//! untrusted input it is.
//!
//! RFC 9110 §10.2.3 allows two forms: delta-seconds (`120`) and an
//! HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`). A hostile or broken server
//! can send anything: `18446744073709551615`, `999999999`, `-1`, `soon`, a
//! date in the past. The rules here:
//!
//! - **Checked arithmetic.** Delta-seconds that overflow `u64` saturate to
//!   [`Duration::MAX`] (a well-formed but absurd demand), never a panic.
//!   The caller meets the value with [`Demand::plan`], which clamps it
//!   before it can reach an `Instant`.
//! - **Malformed means absent.** Anything that is neither form (a sign, a
//!   fraction, garbage, an impossible date) is `None`: the caller falls back
//!   to its own backoff, as if the header were not there.
//! - **A past date means "now"** (zero wait).
//! - **The caller's limit wins.** [`Demand::plan`] clamps the wait to a
//!   configurable maximum and, when the demand (after clamping) is longer
//!   than the time the caller has left, says so with [`TooLong`], naming the
//!   server's demand, so the caller gives up at once instead of sleeping
//!   past its own deadline.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use common::retry_after::{Demand, parse};
//!
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
//! assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
//! assert_eq!(parse("18446744073709551615", now), Some(Duration::from_secs(u64::MAX)));
//! assert_eq!(parse("99999999999999999999999", now), Some(Duration::MAX));
//! assert_eq!(parse("-1", now), None);
//! assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::ZERO)); // past
//!
//! let demand = Demand(Duration::from_secs(999_999_999));
//! // Clamped to 60 s, and 60 s is more than the 5 s the caller has left:
//! let err = demand.plan(Duration::from_secs(60), Some(Duration::from_secs(5))).unwrap_err();
//! assert_eq!(err.demanded, Duration::from_secs(999_999_999));
//! // With no deadline the clamp alone applies.
//! assert_eq!(demand.plan(Duration::from_secs(60), None), Ok(Duration::from_secs(60)));
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

/// The default clamp for a server's demand: 5 minutes.
pub const DEFAULT_MAX: Duration = Duration::from_secs(300);

/// Parses a `Retry-After` value at time `now`. `None` when malformed.
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate: 30 digits of seconds is a demand, just an absurd one.
        return Some(
            value
                .parse::<u64>()
                .map_or(Duration::MAX, Duration::from_secs),
        );
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses a `Retry-After` header's raw bytes (not UTF-8 means malformed).
pub fn parse_bytes(value: &[u8], now: SystemTime) -> Option<Duration> {
    std::str::from_utf8(value).ok().and_then(|v| parse(v, now))
}

/// A server's demand to wait, as parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand(pub Duration);

/// The server demanded a wait longer than the caller has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    /// What the server asked for (before clamping).
    pub demanded: Duration,
    /// What the caller had left.
    pub remaining: Duration,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server demanded a wait of {} (Retry-After), longer than the {:.3} s left",
            show(self.demanded),
            self.remaining.as_secs_f64()
        )
    }
}

impl std::error::Error for TooLong {}

fn show(d: Duration) -> String {
    if d == Duration::MAX {
        "more than u64::MAX s".to_owned()
    } else {
        format!("{} s", d.as_secs())
    }
}

impl Demand {
    /// How long to wait: the demand clamped to `max`, or [`TooLong`] when
    /// that is longer than `remaining` (the caller's deadline or timeout).
    pub fn plan(self, max: Duration, remaining: Option<Duration>) -> Result<Duration, TooLong> {
        let wait = self.0.min(max);
        match remaining {
            Some(remaining) if wait > remaining => Err(TooLong {
                demanded: self.0,
                remaining,
            }),
            _ => Ok(wait),
        }
    }
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), and the two
/// obsolete forms RFC 9110 says recipients must accept: RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let (day, month, year, time) = match parts.as_slice() {
        // IMF-fixdate
        [wd, d, m, y, t, "GMT"] if wd.ends_with(',') => (*d, *m, y.parse::<i64>().ok()?, *t),
        // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
        [wd, dmy, t, "GMT"] if wd.ends_with(',') => {
            let mut it = dmy.split('-');
            let (d, m, y) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() || y.len() != 2 {
                return None;
            }
            let yy: i64 = y.parse().ok()?;
            // Two-digit years: RFC 9110 says a year more than 50 years in the
            // future is in the past century; 1970-2069 is close enough here.
            (d, m, if yy < 70 { 2000 + yy } else { 1900 + yy }, *t)
        }
        // asctime: "Sun Nov  6 08:49:37 1994"
        [_, m, d, t, y] => (*d, *m, y.parse::<i64>().ok()?, *t),
        _ => return None,
    };
    let day: u32 = day.parse().ok()?;
    let month = match month {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let mut hms = time.split(':');
    let (h, mi, s) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() {
        return None;
    }
    let (h, mi, s): (u64, u64, u64) = (h.parse().ok()?, mi.parse().ok()?, s.parse().ok()?);
    if !(1970..=9999).contains(&year) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn delta_seconds_saturate_and_malformed_is_absent() {
        let now = at(0);
        assert_eq!(parse("0", now), Some(Duration::ZERO));
        assert_eq!(parse(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse("999999999", now),
            Some(Duration::from_secs(999_999_999))
        );
        assert_eq!(
            parse("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse("18446744073709551616", now), Some(Duration::MAX));
        for bad in [
            "",
            "-1",
            "+1",
            "1.5",
            "soon",
            "1e3",
            "0x10",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse(bad, now), None, "{bad:?}");
        }
        assert_eq!(parse_bytes(b"\xff\xfe", now), None);
        assert_eq!(parse_bytes(b"7", now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        // 784111777 = 1994-11-06T08:49:37Z (RFC 9110's example).
        let expected = at(784_111_777);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(form), Some(expected), "{form}");
        }
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:47 GMT", expected),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:27 GMT", expected),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"),
            Some(at(951_782_400))
        );
        assert_eq!(parse_http_date("Thu, 29 Feb 2001 00:00:00 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 24:00:00 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(at(0))
        );
        assert!(parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT").is_some());
    }

    #[test]
    fn plan_clamps_then_compares_with_what_is_left() {
        let d = Duration::from_secs;
        assert_eq!(Demand(d(3)).plan(d(60), None), Ok(d(3)));
        assert_eq!(Demand(d(3)).plan(d(60), Some(d(3))), Ok(d(3)));
        assert_eq!(
            Demand(d(4)).plan(d(60), Some(d(3))),
            Err(TooLong {
                demanded: d(4),
                remaining: d(3)
            })
        );
        assert_eq!(Demand(Duration::MAX).plan(d(60), None), Ok(d(60)));
        // Clamped to 2 s, which fits in the 3 s left.
        assert_eq!(Demand(d(100)).plan(d(2), Some(d(3))), Ok(d(2)));
        let msg = Demand(Duration::MAX)
            .plan(d(60), Some(d(1)))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("u64::MAX"), "{msg}");
    }

    /// Every day from 1970 to 2400, against a calendar counted one day at a
    /// time with its own leap rule: the civil-date arithmetic is checked on
    /// every month, every leap rule (4, 100, 400) and both ends of each month.
    #[test]
    fn every_day_from_1970_to_2400_is_the_right_second() {
        const NAMES: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mut epoch_day: u64 = 0;
        for year in 1970..2400i64 {
            let leap = year % 400 == 0 || (year % 100 != 0 && year % 4 == 0);
            for (index, name) in NAMES.iter().enumerate() {
                let length = match index + 1 {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                for day in 1..=length {
                    let form = format!("Mon, {day:02} {name} {year} 13:07:59 GMT");
                    let want = at(epoch_day * 86_400 + 13 * 3600 + 7 * 60 + 59);
                    assert_eq!(parse_http_date(&form), Some(want), "{form}");
                    epoch_day += 1;
                }
                // The day after the month's last is not a date.
                let past = format!("Mon, {} {name} {year} 00:00:00 GMT", length + 1);
                assert_eq!(parse_http_date(&past), None, "{past}");
            }
        }
    }

    #[test]
    fn time_of_day_and_year_bounds() {
        let day = |t: &str| parse_http_date(&format!("Thu, 01 Jan 1970 {t} GMT"));
        assert_eq!(day("23:59:59"), Some(at(86_399)));
        assert_eq!(day("23:59:60"), Some(at(86_400)), "a leap second");
        assert_eq!(day("00:00:61"), None);
        assert_eq!(day("00:60:00"), None);
        assert_eq!(day("24:00:00"), None);
        assert_eq!(day("00:00"), None);
        assert_eq!(day("00:00:00:00"), None);
        assert_eq!(day("aa:00:00"), None);
        assert_eq!(parse_http_date("Wed, 31 Dec 1969 23:59:59 GMT"), None);
        assert_eq!(parse_http_date("Sat, 01 Jan 10000 00:00:00 GMT"), None);
        assert_eq!(parse_http_date("Thu, 00 Jan 1970 00:00:00 GMT"), None);
        // IMF-fixdate and RFC 850 need the comma after the weekday.
        assert_eq!(parse_http_date("Thu 01 Jan 1970 00:00:00 GMT"), None);
        assert_eq!(parse_http_date("Thursday 01-Jan-70 00:00:00 GMT"), None);
    }

    #[test]
    fn rfc_850_two_digit_years_and_shape() {
        let year_start = |yy: &str| parse_http_date(&format!("Thursday, 01-Jan-{yy} 00:00:00 GMT"));
        assert_eq!(year_start("70"), Some(at(0)));
        // 2069-01-01 and 1999-01-01.
        assert_eq!(year_start("69"), Some(at(3_124_224_000)));
        assert_eq!(year_start("99"), Some(at(915_148_800)));
        assert_eq!(year_start("00"), Some(at(946_684_800)));
        assert_eq!(year_start("1970"), None, "four digits is not RFC 850");
        assert_eq!(year_start("7"), None);
        assert_eq!(
            parse_http_date("Thursday, 01-Jan-70-1 00:00:00 GMT"),
            None,
            "a fourth part"
        );
        assert_eq!(parse_http_date("Thursday, 01-Jan 00:00:00 GMT"), None);
        // asctime: day without padding, year last.
        assert_eq!(parse_http_date("Thu Jan  1 00:00:01 1970"), Some(at(1)));
        assert_eq!(parse_http_date("Thu Jan  1 00:00:01 19x0"), None);
    }

    #[test]
    fn too_long_names_both_figures() {
        let err = TooLong {
            demanded: Duration::from_secs(120),
            remaining: Duration::from_millis(2500),
        };
        assert_eq!(
            err.to_string(),
            "server demanded a wait of 120 s (Retry-After), longer than the 2.500 s left"
        );
    }
}
