//! Unit tests for the download's decisions, on responses built from parts
//! (no server): where a body goes (`plan`), what is refused before a byte
//! is written (`refuse`), which validator is saved, and the time limits on
//! tokio's paused clock. The streaming itself is tested end to end in
//! `tests/download.rs`.

use super::*;

/// A response with `status`, `headers` and a body of exactly `len` bytes
/// (so `content_length()` is `Some(len)`), or of unknown length (`None`).
fn response(status: u16, headers: &[(&str, &str)], len: Option<usize>) -> reqwest::Response {
    response_in(reqwest::Version::HTTP_11, status, headers, len)
}

fn response_in(
    version: reqwest::Version,
    status: u16,
    headers: &[(&str, &str)],
    len: Option<usize>,
) -> reqwest::Response {
    let mut builder = http::Response::builder().status(status).version(version);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match len {
        Some(len) => reqwest::Body::from(vec![b'x'; len]),
        None => reqwest::Body::wrap_stream(futures::stream::iter([Ok::<_, std::io::Error>(
            bytes::Bytes::from_static(b"xyz"),
        )])),
    };
    builder.body(body).unwrap().into()
}

fn saved(if_range: &str, total: Option<u64>) -> Validator {
    Validator {
        if_range: if_range.to_owned(),
        total,
    }
}

/// `plan`'s answer as (offset, total, complete), or the error's text.
fn decide(
    response: &reqwest::Response,
    existing: u64,
    resume: Option<&Validator>,
) -> Result<(u64, Option<u64>, bool), String> {
    plan(response, existing, resume)
        .map(|p| (p.offset, p.total, p.complete))
        .map_err(|err| match err {
            DownloadError::BadRange(_) => "bad range".to_owned(),
            other => other.to_string(),
        })
}

const ETAG: &str = "\"v1\"";

#[test]
fn a_whole_response_starts_at_zero_with_its_length() {
    assert_eq!(
        decide(&response(200, &[], Some(100)), 0, None),
        Ok((0, Some(100), false))
    );
    // A 200 to a resume: the resource changed (or Range was ignored).
    let v = saved(ETAG, Some(100));
    assert_eq!(
        decide(&response(200, &[], Some(7)), 40, Some(&v)),
        Ok((0, Some(7), false))
    );
    assert_eq!(
        decide(&response(200, &[], None), 0, None),
        Ok((0, None, false))
    );
    assert_eq!(
        decide(&response(204, &[], Some(0)), 0, None),
        Ok((0, Some(0), false))
    );
    assert_eq!(
        decide(&response(404, &[], Some(3)), 0, None),
        Err("HTTP 404 Not Found".into())
    );
    assert_eq!(
        decide(&response(503, &[], Some(3)), 0, None),
        Err("HTTP 503 Service Unavailable".into())
    );
    assert_eq!(
        decide(&response(416, &[], Some(0)), 0, None),
        Err("HTTP 416 Range Not Satisfiable".into())
    );
}

#[test]
fn a_206_is_taken_only_when_every_figure_agrees() {
    let v = saved(ETAG, Some(100));
    let ok = |headers: &[(&str, &str)], len| decide(&response(206, headers, len), 40, Some(&v));
    let range = ("content-range", "bytes 40-99/100");
    let etag = ("etag", ETAG);
    assert_eq!(ok(&[range, etag], Some(60)), Ok((40, Some(100), false)));
    assert_eq!(
        ok(&[range], Some(60)),
        Ok((40, Some(100), false)),
        "no ETag: fine"
    );
    assert_eq!(
        ok(&[range], None),
        Ok((40, Some(100), false)),
        "no length: fine"
    );
    assert_eq!(
        ok(&[("content-range", "bytes 40-99/*")], Some(60)),
        Ok((40, Some(100), false)),
        "an unknown total is END + 1"
    );
    let bad = "bad range".to_owned();
    assert_eq!(
        ok(&[("content-range", "bytes 41-99/100")], Some(59)),
        Err(bad.clone()),
        "start"
    );
    assert_eq!(
        ok(&[("content-range", "bytes 39-99/100")], Some(61)),
        Err(bad.clone()),
        "start"
    );
    assert_eq!(
        ok(&[("content-range", "bytes 40-98/100")], Some(59)),
        Err(bad.clone()),
        "not to the end"
    );
    assert_eq!(
        ok(&[("content-range", "bytes 40-99/101")], Some(60)),
        Err(bad.clone()),
        "total"
    );
    assert_eq!(ok(&[range], Some(59)), Err(bad.clone()), "body length");
    assert_eq!(ok(&[range], Some(61)), Err(bad.clone()), "body length");
    assert_eq!(
        ok(&[range, ("etag", "\"v2\"")], Some(60)),
        Err(bad.clone()),
        "another ETag"
    );
    assert_eq!(ok(&[], Some(60)), Err(bad.clone()), "no Content-Range");
    assert_eq!(
        ok(&[("content-range", "bytes */100")], Some(60)),
        Err(bad.clone())
    );
    // The saved length disagrees with the server's.
    let v99 = saved(ETAG, Some(99));
    assert_eq!(
        decide(&response(206, &[range], Some(60)), 40, Some(&v99)),
        Err(bad.clone())
    );
    // No saved length: the server's is taken.
    let unknown = saved(ETAG, None);
    assert_eq!(
        decide(&response(206, &[range], Some(60)), 40, Some(&unknown)),
        Ok((40, Some(100), false))
    );
    // A Last-Modified validator cannot be compared with an ETag.
    let dated = saved("Sun, 06 Nov 1994 08:49:37 GMT", Some(100));
    assert_eq!(
        decide(
            &response(206, &[range, ("etag", "\"v2\"")], Some(60)),
            40,
            Some(&dated)
        ),
        Ok((40, Some(100), false))
    );
    // A 206 nobody asked for.
    assert_eq!(
        decide(&response(206, &[range], Some(60)), 40, None),
        Err(bad)
    );
}

#[test]
fn a_416_means_complete_only_at_exactly_the_saved_length() {
    let v = saved(ETAG, Some(40));
    let answer = |value: &str, existing, v: &Validator| {
        decide(
            &response(416, &[("content-range", value)], Some(0)),
            existing,
            Some(v),
        )
    };
    assert_eq!(answer("bytes */40", 40, &v), Ok((40, Some(40), true)));
    let bad = Err("bad range".to_owned());
    assert_eq!(answer("bytes */41", 40, &v), bad, "the file is longer");
    assert_eq!(answer("bytes */40", 39, &v), bad, "the part is shorter");
    assert_eq!(
        answer("bytes */40", 40, &saved(ETAG, Some(41))),
        bad,
        "saved length"
    );
    assert_eq!(
        answer("bytes */40", 40, &saved(ETAG, None)),
        Ok((40, Some(40), true))
    );
    assert_eq!(
        answer("bytes 0-39/40", 40, &v),
        bad,
        "not the unsatisfied form"
    );
}

fn options(max_size: Option<u64>) -> DownloadOptions {
    DownloadOptions {
        max_size,
        ..DownloadOptions::default()
    }
}

fn refused(
    response: &reqwest::Response,
    total: Option<u64>,
    complete: bool,
    max_size: Option<u64>,
    digest: bool,
) -> Option<String> {
    let plan = Plan {
        offset: 0,
        total,
        complete,
    };
    refuse(response, &plan, &options(max_size), digest)
        .err()
        .map(|err| err.to_string())
}

#[test]
fn refuse_too_large_before_a_byte_is_written() {
    let r = response(200, &[], Some(11));
    assert_eq!(
        refused(&r, Some(11), false, Some(10), false).as_deref(),
        Some("larger than the limit of 10 bytes (Content-Length 11)")
    );
    assert_eq!(
        refused(&r, Some(10), false, Some(10), false),
        None,
        "at the limit"
    );
    assert_eq!(refused(&r, Some(11), false, None, false), None, "no limit");
}

#[test]
fn refuse_content_codings_other_than_identity() {
    let gzip = response(200, &[("content-encoding", "gzip")], Some(3));
    assert_eq!(
        refused(&gzip, Some(3), false, None, false).as_deref(),
        Some("unrequested Content-Encoding \"gzip\"; refusing to save it")
    );
    let identity = response(200, &[("content-encoding", " IDENTITY ")], Some(3));
    assert_eq!(refused(&identity, Some(3), false, None, false), None);
}

#[test]
fn refuse_an_unframed_http1_body_unless_something_vouches_for_it() {
    let unframed = "the server sent neither Content-Length nor chunked framing, so a cut body would look complete; pass a sha256 to accept it";
    let bare = response(200, &[], None);
    assert_eq!(
        refused(&bare, None, false, None, false).as_deref(),
        Some(unframed)
    );
    assert_eq!(
        refused(&bare, None, false, None, true),
        None,
        "a digest vouches"
    );
    assert_eq!(
        refused(&bare, None, true, None, false),
        None,
        "nothing to read"
    );
    assert_eq!(
        refused(&bare, Some(3), false, None, false),
        None,
        "a length"
    );
    let chunked = response(200, &[("transfer-encoding", "gzip, Chunked")], None);
    assert_eq!(refused(&chunked, None, false, None, false), None, "chunked");
    let h2 = response_in(reqwest::Version::HTTP_2, 200, &[], None);
    assert_eq!(
        refused(&h2, None, false, None, false),
        None,
        "HTTP/2 frames its end"
    );
    let h10 = response_in(reqwest::Version::HTTP_10, 200, &[], None);
    assert_eq!(
        refused(&h10, None, false, None, false).as_deref(),
        Some(unframed)
    );
}

#[test]
fn the_validator_is_a_strong_etag_else_last_modified() {
    let date = "Sun, 06 Nov 1994 08:49:37 GMT";
    let pick = |headers: &[(&str, &str)]| {
        validator(&response(200, headers, Some(0)), Some(5)).map(|v| v.if_range)
    };
    assert_eq!(
        pick(&[("etag", ETAG), ("last-modified", date)]).as_deref(),
        Some(ETAG)
    );
    assert_eq!(
        pick(&[("etag", "W/\"weak\""), ("last-modified", date)]).as_deref(),
        Some(date)
    );
    assert_eq!(
        pick(&[("etag", "W/\"weak\"")]),
        None,
        "a weak ETag is no validator"
    );
    assert_eq!(
        pick(&[("etag", ""), ("last-modified", date)]).as_deref(),
        Some(date)
    );
    assert_eq!(pick(&[("last-modified", "")]), None);
    assert_eq!(pick(&[]), None);
    let v = validator(&response(200, &[("etag", ETAG)], Some(0)), Some(5)).unwrap();
    assert_eq!(v, saved(ETAG, Some(5)));
}

#[test]
fn only_retryable_errors_are_transient() {
    let transient = [
        DownloadError::Transport("reset".into()),
        DownloadError::Stalled(Duration::from_secs(1)),
        DownloadError::TooSlow {
            bytes: 1,
            window: Duration::from_secs(1),
            min_rate: 2,
        },
        DownloadError::BadRange("x".into()),
        DownloadError::Status(StatusCode::BAD_GATEWAY),
    ];
    for err in &transient {
        assert!(err.is_transient(), "{err}");
    }
    let fatal = [
        DownloadError::Status(StatusCode::NOT_FOUND),
        DownloadError::Deadline(Duration::from_secs(1)),
        DownloadError::Exists(PathBuf::from("x")),
        DownloadError::Unframed,
        DownloadError::Length {
            expected: 2,
            actual: 1,
        },
    ];
    for err in &fatal {
        assert!(!err.is_transient(), "{err}");
    }
}

#[test]
fn a_panicking_callback_becomes_an_error_naming_it() {
    assert!(notify(|| {}).is_ok());
    let text = |call: fn()| match notify(call) {
        Err(DownloadError::Progress(message)) => message,
        other => panic!("{other:?}"),
    };
    assert_eq!(text(|| panic!("static")), "static");
    assert_eq!(text(|| panic!("{}", String::from("owned"))), "owned");
    assert_eq!(text(|| std::panic::panic_any(7u8)), "non-string panic");
}

#[test]
fn check_dest_refuses_what_it_must_not_replace() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    assert!(check_dest(&file, false).is_ok(), "absent");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        check_dest(&file, false),
        Err(DownloadError::Exists(_))
    ));
    assert!(check_dest(&file, true).is_ok(), "--force");
    assert!(matches!(
        check_dest(dir.path(), true),
        Err(DownloadError::NotRegular(_))
    ));
    // A path under a regular file cannot be stat'ed: an I/O error, not "absent".
    assert!(matches!(
        check_dest(&file.join("x"), false),
        Err(DownloadError::Io { .. })
    ));
}

fn limits(idle: Duration, deadline: Option<Duration>) -> Limits {
    Limits {
        idle,
        // As `download` builds it: an overflowing deadline is none at all.
        deadline: deadline.and_then(|d| Instant::now().checked_add(d).map(|at| (at, d))),
    }
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn the_idle_timeout_and_the_deadline_each_end_a_wait() {
    let start = Instant::now();
    let pending = std::future::pending::<()>;
    let err = limits(2 * SEC, None).within(pending()).await.unwrap_err();
    assert!(
        matches!(err, DownloadError::Stalled(d) if d == 2 * SEC),
        "{err}"
    );
    assert_eq!(start.elapsed(), 2 * SEC);

    let start = Instant::now();
    let err = limits(10 * SEC, Some(3 * SEC))
        .within(pending())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::Deadline(d) if d == 3 * SEC),
        "{err}"
    );
    assert_eq!(start.elapsed(), 3 * SEC, "the sooner of the two");

    let start = Instant::now();
    let err = limits(2 * SEC, Some(30 * SEC))
        .within(pending())
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::Stalled(_)), "{err}");
    assert_eq!(start.elapsed(), 2 * SEC);

    // Duration::MAX idle (no idle limit): only the deadline ends the wait.
    let start = Instant::now();
    let err = limits(Duration::MAX, Some(5 * SEC))
        .within(pending())
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::Deadline(_)), "{err}");
    assert_eq!(start.elapsed(), 5 * SEC);

    // Neither: the future itself decides.
    let sleeper = tokio::time::sleep(100 * SEC);
    let start = Instant::now();
    limits(Duration::MAX, None).within(sleeper).await.unwrap();
    assert_eq!(start.elapsed(), 100 * SEC);
    assert_eq!(limits(SEC, None).within(async { 7 }).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn expired_names_the_deadline_from_the_moment_it_passes() {
    let l = limits(SEC, Some(4 * SEC));
    assert!(matches!(l.expired(), DownloadError::Stalled(_)));
    tokio::time::advance(4 * SEC).await;
    assert!(
        matches!(l.expired(), DownloadError::Deadline(_)),
        "at the deadline itself"
    );
}

#[test]
fn the_minimum_rate_is_judged_per_window_from_its_own_start() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    // 1000 bytes/s over 1 s windows, starting with 5000 bytes already there
    // (a resume): only what arrives in the window counts.
    let mut rate = RateWindow::new(t0, 5000, SEC, 1000);
    assert!(
        rate.check(at(10), 5000).is_ok(),
        "a window is judged only at its end"
    );
    assert!(rate.check(at(999), 5001).is_ok());
    // Exactly the minimum is enough: 1000 bytes in 1 s.
    assert!(rate.check(at(1000), 6000).is_ok());
    // A new window began at 1 s with 6000: 999 more bytes by 2 s is too few.
    match rate.check(at(2000), 6999) {
        Err(DownloadError::TooSlow {
            bytes,
            window,
            min_rate,
        }) => assert_eq!((bytes, window, min_rate), (999, SEC, 1000)),
        other => panic!("{other:?}"),
    }
    // Off: no amount of silence is too slow.
    let mut off = RateWindow::new(t0, 0, SEC, 0);
    assert!(off.check(at(60_000), 0).is_ok());
    // A long window is judged against its whole length: 1500 bytes in 1.5 s.
    let mut long = RateWindow::new(t0, 0, SEC, 1000);
    assert!(long.check(at(1500), 1500).is_ok());
    assert!(long.check(at(3000), 2999).is_err(), "1499 bytes in 1.5 s");
}
