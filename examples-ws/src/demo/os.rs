//! Two small operating-system facts a WebSocket server at scale needs.
//!
//! - Every connection is a file descriptor. The usual soft limit is 1,024,
//!   far below the hard limit (often 524,288), so a server that does not
//!   raise it fails at its thousandth client with `EMFILE` ("Too many open
//!   files"). Python's asyncio has the same wall; the seed never mentions it.
//! - The resident set size (RSS) is what a connection really costs; the
//!   server reports it on `/stats` and `ws-load --idle` reads it there.

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft
/// limit. Unprivileged processes may do this; only the hard limit needs root.
#[cfg(unix)]
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes to the struct we pass, which lives for
    // the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere
    Ok(u64::from(limit.rlim_cur))
}

/// Not supported off unix: the limit is left as it is.
#[cfg(not(unix))]
pub fn raise_open_files_limit() -> io::Result<u64> {
    Err(io::Error::other("RLIMIT_NOFILE is a unix concept"))
}

/// This process's resident set size in bytes, from `/proc/self/statm`
/// (Linux); `None` elsewhere.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; it returns -1 on error.
    #[cfg(unix)]
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    #[cfg(not(unix))]
    let page = 4096;
    Some(pages * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_can_be_raised_to_at_least_a_thousand() {
        assert!(raise_open_files_limit().unwrap() >= 1_024);
    }

    #[test]
    fn rss_of_a_running_test_is_a_plausible_size() {
        let rss = rss_bytes().unwrap();
        assert!((1 << 20..1 << 34).contains(&rss), "{rss}");
    }
}
