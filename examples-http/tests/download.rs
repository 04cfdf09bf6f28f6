//! Streaming downloads against the loopback sandbox (real time): the final
//! path holds a complete, verified file or nothing.
//!
//! Equivalent mutants (cargo mutants on `src/download/mod.rs`):
//! - `WRITE_BUFFER`'s `1 << 20` to `1 >> 20` (0): an unbuffered BufWriter
//!   writes each chunk straight through; the same bytes reach the file.
//! - `Progress::started` and `Progress::advanced` (the trait's defaults)
//!   replaced with `()`: the defaults already do nothing.
//! - `existing > 0` to `existing >= 0` before the validator-less restart:
//!   restarting an empty `.part` truncates nothing, and a malformed
//!   validator file is removed by the fresh start's own restart anyway.

use std::path::Path;
use std::time::Duration;

use common::{Sandbox, SandboxConfig};
use examples_http::download::{
    DownloadError, DownloadOptions, Progress, download, file_name_for, hex, parse_sha256, part_path,
};
use sha2::{Digest, Sha256};

fn options() -> DownloadOptions {
    DownloadOptions {
        idle_timeout: Duration::from_secs(30),
        ..DownloadOptions::default()
    }
}

async fn get(
    sandbox: &Sandbox,
    path: &str,
    dest: &Path,
    options: &DownloadOptions,
) -> Result<examples_http::download::Downloaded, DownloadError> {
    common::init_crypto();
    let url = reqwest::Url::parse(&sandbox.url(path)).unwrap();
    download(&reqwest::Client::new(), &url, dest, options, &()).await
}

async fn fetch(
    url: &reqwest::Url,
    dest: &Path,
    options: &DownloadOptions,
) -> Result<examples_http::download::Downloaded, DownloadError> {
    common::init_crypto();
    download(&reqwest::Client::new(), url, dest, options, &()).await
}

async fn setup() -> (Sandbox, tempfile::TempDir) {
    (
        Sandbox::start(SandboxConfig::default()).await.unwrap(),
        tempfile::tempdir().unwrap(),
    )
}

fn sha256_of(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[tokio::test]
async fn a_download_is_byte_exact_and_leaves_no_part_file() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("file.bin");
    let expected = common::sandbox::pattern(0, 1_000_003);
    let options = DownloadOptions {
        sha256: Some(sha256_of(&expected)),
        ..options()
    };
    let done = get(&sandbox, "/bytes/1000003", &dest, &options)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), expected);
    assert_eq!((done.bytes, done.resumed_from), (1_000_003, 0));
    assert_eq!(done.sha256, options.sha256);
    assert!(!part_path(&dest).exists());
}

#[tokio::test]
async fn a_cut_body_leaves_no_dest_keeps_the_part_and_a_rerun_resumes_byte_exact() {
    let server = local::start(local::Mode::Etag {
        len: 300_000,
        cut_first: 1,
        cut_after: 100_000,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cut.bin");
    let url = server.url("/cut.bin");
    let err = fetch(&url, &dest, &options()).await.unwrap_err();
    assert!(matches!(err, DownloadError::Transport(_)), "{err:?}");
    assert!(!dest.exists());
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 100_000);

    // The rerun asks for bytes=100000- (If-Range: the saved ETag) and gets the rest.
    let done = fetch(&url, &dest, &options()).await.unwrap();
    assert_eq!(done.resumed_from, 100_000);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        common::sandbox::pattern(0, 300_000)
    );
    assert!(!part_path(&dest).exists());
}

#[tokio::test]
async fn a_cut_body_without_a_validator_is_downloaded_again_not_resumed() {
    // With `no_etag=1` the sandbox's /bytes sends no ETag or Last-Modified:
    // nothing would tell a changed file from the one in the .part.
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("no-validator.bin");
    get(
        &sandbox,
        "/bytes/300000?fail_after=100000&no_etag=1",
        &dest,
        &options(),
    )
    .await
    .unwrap_err();
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 100_000);
    let done = get(&sandbox, "/bytes/300000?no_etag=1", &dest, &options())
        .await
        .unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        common::sandbox::pattern(0, 300_000)
    );
}

#[tokio::test]
async fn retries_resume_a_repeatedly_cut_download_and_verify_its_checksum() {
    // The first two responses are cut after 100 000 bytes: three attempts
    // are needed, and the digest must cover the earlier attempts' bytes too.
    let server = local::start(local::Mode::Etag {
        len: 250_000,
        cut_first: 2,
        cut_after: 100_000,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("flaky.bin");
    let expected = common::sandbox::pattern(0, 250_000);
    let options = DownloadOptions {
        retries: 2,
        sha256: Some(sha256_of(&expected)),
        ..options()
    };
    let done = fetch(&server.url("/flaky.bin"), &dest, &options)
        .await
        .unwrap();
    assert_eq!(done.resumed_from, 200_000);
    assert_eq!(std::fs::read(&dest).unwrap(), expected);
}

#[tokio::test]
async fn a_checksum_mismatch_is_an_error_and_leaves_nothing() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("wrong.bin");
    let options = DownloadOptions {
        sha256: Some("00".repeat(32)),
        ..options()
    };
    let err = get(&sandbox, "/bytes/5000", &dest, &options)
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::Checksum { .. }), "{err:?}");
    assert!(!dest.exists());
    assert!(!part_path(&dest).exists());
}

#[tokio::test]
async fn retries_pause_longer_each_time_and_stop_before_the_deadline() {
    // Always 503: transient, so only the retry count or the deadline ends
    // it. Pauses are 200 ms x attempt: requests at 0, 0.2, 0.6 and 1.2 s;
    // the next pause (0.8 s) would end past the 1.8 s deadline, so the call
    // gives up at 1.2 s, with four requests made (not eleven), and returns
    // before its deadline rather than sleeping into it.
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("unavailable.bin");
    let deadline = Duration::from_millis(1800);
    let with_deadline = DownloadOptions {
        retries: 10,
        deadline: Some(deadline),
        ..options()
    };
    let before = sandbox.stats().requests;
    let started = std::time::Instant::now();
    let err = get(&sandbox, "/status/503", &dest, &with_deadline)
        .await
        .unwrap_err();
    assert!(started.elapsed() < deadline, "{:?}", started.elapsed());
    assert!(
        matches!(err, DownloadError::Deadline(d) if d == deadline),
        "{err:?}"
    );
    assert_eq!(sandbox.stats().requests - before, 4);
    // Without a deadline the retry count ends it: 1 + 2 requests.
    let two_retries = DownloadOptions {
        retries: 2,
        ..options()
    };
    let before = sandbox.stats().requests;
    let err = get(&sandbox, "/status/503", &dest, &two_retries)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::Status(s) if s.as_u16() == 503),
        "{err:?}"
    );
    assert_eq!(sandbox.stats().requests - before, 3);
    assert!(!part_path(&dest).exists());
}

#[tokio::test]
async fn a_stale_part_without_a_validator_is_dropped_even_when_the_server_fails() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("stale-then-404.bin");
    std::fs::write(part_path(&dest), b"bytes of nobody knows what").unwrap();
    let err = get(&sandbox, "/status/404", &dest, &options())
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::Status(_)), "{err:?}");
    assert!(
        !part_path(&dest).exists(),
        "unverifiable bytes are not kept"
    );
}

#[tokio::test]
async fn a_cut_before_the_first_byte_retries_the_whole_file_not_a_range() {
    // The first response is cut after its headers: the `.part` has a
    // validator but no bytes, so the retry asks for the file, not bytes=0-.
    let server = local::start(local::Mode::Etag {
        len: 20_000,
        cut_first: 1,
        cut_after: 0,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cut-at-zero.bin");
    let once_more = DownloadOptions {
        retries: 1,
        ..options()
    };
    let done = fetch(&server.url("/cut-at-zero.bin"), &dest, &once_more)
        .await
        .unwrap();
    assert_eq!(done.resumed_from, 0);
    let retry = server.head(1).to_ascii_lowercase();
    assert!(!retry.contains("range:"), "{retry}");
    assert_eq!(std::fs::read(&dest).unwrap(), local::content(0, 20_000));
}

#[tokio::test]
async fn an_unannounced_body_is_held_to_max_size_as_it_streams() {
    // Chunked (no Content-Length), so only the streaming check can see it.
    let (sandbox, dir) = setup().await;
    let limit = DownloadOptions {
        max_size: Some(10_000),
        ..options()
    };
    let dest = dir.path().join("at-limit.bin");
    let done = get(
        &sandbox,
        "/bytes/10000?no_length=1&chunk_size=1000",
        &dest,
        &limit,
    )
    .await
    .unwrap();
    assert_eq!(done.bytes, 10_000, "exactly the limit is allowed");
    let dest = dir.path().join("over-limit.bin");
    let err = get(
        &sandbox,
        "/bytes/10500?no_length=1&chunk_size=1000",
        &dest,
        &limit,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            DownloadError::TooLarge {
                limit: 10_000,
                announced: None
            }
        ),
        "{err:?}"
    );
    assert!(
        !dest.exists() && !part_path(&dest).exists(),
        "nothing is kept"
    );
}

#[tokio::test]
async fn a_404_is_an_error_and_nothing_is_saved() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("missing.html");
    let err = get(&sandbox, "/status/404", &dest, &options())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::Status(s) if s.as_u16() == 404),
        "{err:?}"
    );
    assert!(!dest.exists());
    assert!(!part_path(&dest).exists());
}

#[tokio::test]
async fn an_unknown_length_download_works() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("chunked.bin");
    let done = get(&sandbox, "/bytes/200000?no_length=1", &dest, &options())
        .await
        .unwrap();
    assert_eq!(done.bytes, 200_000);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        common::sandbox::pattern(0, 200_000)
    );
}

#[tokio::test]
async fn a_server_that_ignores_range_gets_a_full_download_over_the_stale_part() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("norange.bin");
    std::fs::write(part_path(&dest), b"stale bytes").unwrap();
    let done = get(&sandbox, "/bytes/70000?ignore_range=1", &dest, &options())
        .await
        .unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        common::sandbox::pattern(0, 70_000)
    );
}

#[tokio::test]
async fn a_stalled_stream_hits_the_idle_timeout_and_keeps_what_arrived() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("stall.bin");
    let options = DownloadOptions {
        idle_timeout: Duration::from_millis(300),
        ..options()
    };
    let err = get(
        &sandbox,
        "/bytes/200000?chunk_size=50000&chunk_delay_ms=5000",
        &dest,
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DownloadError::Stalled(_)), "{err:?}");
    assert!(!dest.exists());
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 50_000);
}

#[tokio::test]
async fn an_existing_dest_is_kept_unless_forced() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("keep.txt");
    std::fs::write(&dest, b"precious").unwrap();
    let err = get(&sandbox, "/bytes/100", &dest, &options())
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::Exists(_)), "{err:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
    let forced = DownloadOptions {
        force: true,
        ..options()
    };
    get(&sandbox, "/bytes/100", &dest, &forced).await.unwrap();
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        common::sandbox::pattern(0, 100)
    );
}

#[test]
fn a_name_derived_from_a_url_never_escapes_the_directory() {
    let cases = [
        ("http://h/files/report.pdf", "report.pdf"),
        ("http://h/a/b/../../etc/passwd", "passwd"),
        ("http://h/%2e%2e", "download"), // the URL parser resolves it away
        ("http://h/..%2F..%2Fetc%2Fpasswd", ".._2F.._2Fetc_2Fpasswd"),
        ("http://h/", "download"),
        ("http://h/dir/", "dir"),
        ("http://h/a%5C..%5Cb", "a_5C.._5Cb"),
    ];
    for (url, expected) in cases {
        let name = file_name_for(&reqwest::Url::parse(url).unwrap());
        assert_eq!(name, expected, "{url}");
        let mut parts = Path::new(&name).components();
        assert!(
            matches!(parts.next(), Some(std::path::Component::Normal(_))),
            "{url}"
        );
        assert!(parts.next().is_none(), "{url}");
    }
}

#[tokio::test]
async fn a_resume_sends_if_range_with_the_saved_etag_and_appends() {
    let server = local::start(local::Mode::Etag {
        len: 100_000,
        cut_first: 1,
        cut_after: 40_000,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("etag.bin");
    let url = server.url("/etag.bin");
    fetch(&url, &dest, &options()).await.unwrap_err();
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 40_000);
    let done = fetch(&url, &dest, &options()).await.unwrap();
    assert_eq!(done.resumed_from, 40_000);
    let head = server.head(1);
    assert!(head.contains("range: bytes=40000-"), "{head}");
    assert!(head.contains("if-range: \"v0\""), "{head}");
    assert_eq!(std::fs::read(&dest).unwrap(), local::content(0, 100_000));
    assert!(!part_path(&dest).exists());
}

#[tokio::test]
async fn a_resource_that_changed_since_the_cut_is_downloaded_again_never_spliced() {
    let server = local::start(local::Mode::Changing {
        len: 100_000,
        cut_after: 40_000,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("changing.bin");
    let url = server.url("/changing.bin");
    fetch(&url, &dest, &options()).await.unwrap_err();
    let done = fetch(&url, &dest, &options()).await.unwrap();
    assert_eq!(done.resumed_from, 0);
    // Version 1 whole: the second response, not 40 000 bytes of version 0.
    assert_eq!(std::fs::read(&dest).unwrap(), local::content(1, 100_000));
}

#[tokio::test]
async fn a_part_without_a_saved_validator_restarts_from_zero() {
    let server = local::start(local::Mode::Etag {
        len: 50_000,
        cut_first: 0,
        cut_after: 0,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("stale.bin");
    std::fs::write(part_path(&dest), b"stale bytes").unwrap();
    let done = fetch(&server.url("/stale.bin"), &dest, &options())
        .await
        .unwrap();
    assert_eq!(done.resumed_from, 0);
    assert!(!server.head(0).contains("range:"), "{}", server.head(0));
    assert_eq!(std::fs::read(&dest).unwrap(), local::content(0, 50_000));
}

#[tokio::test]
async fn a_206_that_answers_a_request_for_the_whole_file_is_never_saved() {
    let server = local::start(local::Mode::WrongRange).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("wrong-range.bin");
    let err = fetch(&server.url("/x"), &dest, &options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Content-Range"), "{err}");
    assert!(!dest.exists());
    assert!(!part_path(&dest).exists());
}

#[tokio::test]
async fn a_206_whose_total_disagrees_with_the_first_response_is_never_saved() {
    let server = local::start(local::Mode::ShortTotal {
        len: 100_000,
        cut_after: 40_000,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("short-total.bin");
    let url = server.url("/x");
    fetch(&url, &dest, &options()).await.unwrap_err();
    let err = fetch(&url, &dest, &options()).await.unwrap_err();
    assert!(err.to_string().contains("Content-Range"), "{err}");
    assert!(!dest.exists());
}

#[tokio::test]
async fn a_second_download_to_the_same_destination_fails_at_once_and_the_first_is_intact() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("shared.bin");
    let url = reqwest::Url::parse(&sandbox.url("/bytes/300000?chunk_size=10000&chunk_delay_ms=5"))
        .unwrap();
    let opts = options();
    let (a, b) = tokio::join!(fetch(&url, &dest, &opts), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        fetch(&url, &dest, &opts).await
    });
    assert!(a.is_ok(), "{a:?}");
    let err = b.unwrap_err();
    assert!(err.to_string().contains("another download"), "{err}");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        common::sandbox::pattern(0, 300_000)
    );
}

#[tokio::test]
async fn a_destination_that_is_not_a_regular_file_is_never_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(dest.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let forced = DownloadOptions {
        force: true,
        ..options()
    };
    let err = get(&sandbox, "/bytes/100", &dest, &forced)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert!(
        std::fs::symlink_metadata(&dest)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(!part_path(&dest).exists());
}
#[tokio::test]
async fn a_trickling_body_fails_on_the_minimum_rate_although_bytes_keep_coming() {
    // 10 bytes/s: every byte well within the idle timeout.
    let server = local::start(local::Mode::Slow {
        len: 1000,
        every: Duration::from_millis(100),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("slow.bin");
    let options = DownloadOptions {
        idle_timeout: Duration::from_millis(500),
        min_rate: 1000,
        ..options()
    };
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        fetch(&server.url("/slow"), &dest, &options),
    )
    .await;
    let err = result.expect("the minimum rate ends it").unwrap_err();
    assert!(
        matches!(err, DownloadError::TooSlow { min_rate: 1000, .. }),
        "{err:?}"
    );
    assert!(!dest.exists());
}

#[tokio::test]
async fn the_overall_deadline_ends_a_slow_download_and_keeps_the_part() {
    let server = local::start(local::Mode::Slow {
        len: 1000,
        every: Duration::from_millis(50),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("deadline.bin");
    let options = DownloadOptions {
        idle_timeout: Duration::from_secs(5),
        deadline: Some(Duration::from_millis(400)),
        retries: 3,
        ..options()
    };
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        fetch(&server.url("/slow"), &dest, &options),
    )
    .await;
    let err = result.expect("the deadline ends it").unwrap_err();
    assert!(
        matches!(err, DownloadError::Deadline(d) if d == Duration::from_millis(400)),
        "{err:?}"
    );
    assert!(!dest.exists());
    let kept = std::fs::metadata(part_path(&dest)).unwrap().len();
    assert!(kept > 0 && kept < 1000, "{kept}");
}

#[tokio::test]
async fn an_invalid_sha256_is_rejected_before_anything_is_fetched() {
    let server = local::start(local::Mode::Etag {
        len: 10,
        cut_first: 0,
        cut_after: 0,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("never.bin");
    for bad in ["", "abc", &"g".repeat(64), &"0".repeat(63), &"0".repeat(65)] {
        let options = DownloadOptions {
            sha256: Some(bad.to_owned()),
            ..options()
        };
        let err = fetch(&server.url("/x"), &dest, &options).await.unwrap_err();
        assert!(
            matches!(err, DownloadError::InvalidSha256(_)),
            "{bad}: {err:?}"
        );
        assert!(parse_sha256(bad).is_err(), "{bad}");
    }
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!part_path(&dest).exists());
    assert_eq!(parse_sha256(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
}

/// A progress callback that panics on its first chunk.
struct Panicky;

impl Progress for Panicky {
    fn advanced(&self, _bytes: u64) {
        panic!("progress bar broke");
    }
}

#[tokio::test]
async fn a_panicking_progress_callback_is_reported_and_the_part_resumes() {
    let server = local::start(local::Mode::Etag {
        len: 200_000,
        cut_first: 0,
        cut_after: 0,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("panic.bin");
    let url = server.url("/panic.bin");
    common::init_crypto();
    let client = reqwest::Client::new();
    let err = download(&client, &url, &dest, &options(), &Panicky)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DownloadError::Progress(m) if m == "progress bar broke"),
        "{err:?}"
    );
    assert!(!dest.exists());
    let kept = std::fs::metadata(part_path(&dest)).unwrap().len();
    assert!(kept > 0, "the first chunk was written before the callback");
    // Usable afterwards: the lock is free and the .part resumes.
    let done = download(&client, &url, &dest, &options(), &())
        .await
        .unwrap();
    assert_eq!(done.resumed_from, kept);
    assert_eq!(std::fs::read(&dest).unwrap(), local::content(0, 200_000));
}

/// Waits until nobody holds the lock on `part` (a dropped download's
/// in-flight file operation may hold its descriptor a moment longer).
async fn assert_unlocked(part: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(part)
    else {
        return; // no .part: nothing to lock
    };
    for _ in 0..1000 {
        // SAFETY: flock(2) on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "{} still locked 5 s after the download was dropped",
        part.display()
    );
}

#[tokio::test]
async fn a_download_dropped_at_any_await_leaves_a_resumable_part_and_no_lock() {
    const LEN: u64 = 300_000;
    let server = local::start(local::Mode::Etag {
        len: LEN,
        cut_first: 0,
        cut_after: 0,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cancel.bin");
    let url = server.url("/cancel.bin");
    let expected = local::content(0, LEN);
    common::init_crypto();
    let client = reqwest::Client::new();
    let options = DownloadOptions {
        sha256: Some(sha256_of(&expected)),
        ..options()
    };
    let polls = common::testing::cancel_at_every_await(
        |_| download(&client, &url, &dest, &options, &()),
        async |n| {
            let part = part_path(&dest);
            assert_unlocked(&part).await;
            // The destination is untouched or complete, never partial.
            if let Ok(bytes) = std::fs::read(&dest) {
                assert_eq!(bytes, expected, "n = {n}");
            }
            // The .part holds a prefix of the file, never foreign bytes.
            if let Ok(bytes) = std::fs::read(&part) {
                assert_eq!(bytes[..], expected[..bytes.len()], "n = {n}");
            }
        },
    )
    .await;
    assert!(polls > 3, "{polls}");
    assert_eq!(std::fs::read(&dest).unwrap(), expected);
    assert!(!part_path(&dest).exists());
}

#[tokio::test]
#[ignore = "needs root: mounts a 64 KiB tmpfs"]
async fn needs_root_a_full_disk_is_an_error_that_names_the_part_file() {
    let (sandbox, dir) = setup().await;
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(status.success());
    let dest = mount.join("big.bin");
    let result = get(&sandbox, "/bytes/1000000", &dest, &options()).await;
    let _ = std::process::Command::new("umount").arg(&mount).status();
    let err = result.unwrap_err().to_string();
    let part = part_path(&dest).display().to_string();
    assert!(
        err.contains(&part) && err.contains("No space left"),
        "{err}"
    );
}

/// Every hostile mode of the sandbox's catalogue: an error, within the
/// limits, and never a file at the destination.
#[tokio::test]
async fn no_hostile_server_gets_a_file_saved() {
    let (sandbox, dir) = setup().await;
    let options = DownloadOptions {
        idle_timeout: Duration::from_secs(1),
        min_rate: 1024,
        deadline: Some(Duration::from_secs(10)),
        max_size: Some(8 << 20),
        ..options()
    };
    let modes = [
        "garbage-status",
        "close-mid-headers",
        "slow-body?bytes=1000",
        "short-body-close?bytes=100000",
        "short-body-hang?bytes=100000",
        "endless-chunked",
        "endless-length",
        "huge-headers",
        "endless-headers",
        "gzip-bomb",
        "retry-after-max",
        "retry-after-huge",
        "redirect-loop",
        "no-length-cut?bytes=100000",
        "hang",
    ];
    let runs = modes.iter().map(|mode| {
        let dest = dir.path().join(mode.replace(['?', '='], "_"));
        let (sandbox, options) = (&sandbox, &options);
        async move {
            let url = format!("/hostile/{mode}");
            let result =
                tokio::time::timeout(Duration::from_secs(30), get(sandbox, &url, &dest, options))
                    .await;
            (mode, dest, result)
        }
    });
    for (mode, dest, result) in futures::future::join_all(runs).await {
        let result = result.unwrap_or_else(|_| panic!("{mode}: no outcome within 30 s"));
        assert!(result.is_err(), "{mode}: {result:?}");
        assert!(!dest.exists(), "{mode}: a file was saved");
    }
}

/// A progress callback that stops the download (by panicking) once more
/// than `limit` bytes arrived: a deterministic cut that keeps the `.part`.
struct StopAfter(u64, std::sync::atomic::AtomicU64);

impl Progress for StopAfter {
    fn advanced(&self, bytes: u64) {
        if self.1.fetch_add(bytes, std::sync::atomic::Ordering::SeqCst) + bytes > self.0 {
            panic!("enough");
        }
    }
}

/// Cuts a download of `path` after about 1 MiB, leaving a `.part`.
async fn cut_by_drop(sandbox: &Sandbox, path: &str, dest: &Path) -> u64 {
    let url = reqwest::Url::parse(&sandbox.url(path)).unwrap();
    let stop = StopAfter(1 << 20, 0.into());
    common::init_crypto();
    let err = download(&reqwest::Client::new(), &url, dest, &options(), &stop)
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::Progress(_)), "{err:?}");
    std::fs::metadata(part_path(dest)).map_or(0, |m| m.len())
}

#[tokio::test]
async fn the_sandbox_changing_resource_is_never_spliced() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("changing.bin");
    let path = "/hostile/changing?bytes=8000000";
    let kept = cut_by_drop(&sandbox, path, &dest).await;
    assert!(kept > 0 && kept < 8_000_000, "{kept}");
    let done = get(&sandbox, path, &dest, &options()).await.unwrap();
    assert_eq!(done.resumed_from, 0);
    let bytes = std::fs::read(&dest).unwrap();
    let version = u64::from(bytes[0]) - 1; // byte 0 of version v is v % 255 + 1
    let consistent = bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b == common::sandbox::hostile::changing_byte(version, i as u64));
    assert!(consistent, "the file mixes versions");
}

#[tokio::test]
async fn the_sandbox_bad_range_is_refused_and_nothing_is_saved() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("bad-range.bin");
    let path = "/hostile/bad-range?bytes=8000000";
    let kept = cut_by_drop(&sandbox, path, &dest).await;
    assert!(kept > 0 && kept < 8_000_000, "{kept}");
    let err = get(&sandbox, path, &dest, &options()).await.unwrap_err();
    assert!(matches!(err, DownloadError::BadRange(_)), "{err:?}");
    assert!(!dest.exists());
    // A retry starts over (no Range, a plain 200) and is byte-exact.
    let retried = DownloadOptions {
        retries: 1,
        ..options()
    };
    let done = get(&sandbox, path, &dest, &retried).await.unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        common::sandbox::pattern(0, 8_000_000)
    );
}

/// A tiny HTTP/1.1 server for the behaviours the sandbox does not serve
/// (strong ETags, changing content, lying ranges, a slow body). One
/// response per connection (`Connection: close`), hand-written so every
/// byte on the wire is the test's choice.
mod local {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Mode {
        /// `len` bytes of version 0 with a strong ETag, honouring Range and
        /// If-Range; the first `cut_first` responses stop after `cut_after`
        /// body bytes (the Content-Length announced the whole).
        Etag {
            len: u64,
            cut_first: u64,
            cut_after: u64,
        },
        /// Version n (the nth request) on each request, its own ETag;
        /// honours Range only without If-Range or with the current ETag.
        /// The first response is cut after `cut_after` bytes.
        Changing { len: u64, cut_after: u64 },
        /// Every answer is a 206 for bytes 100-199 of 1000, whatever was asked.
        WrongRange,
        /// First a cut 200 of `len` bytes; then every range request gets a
        /// 206 that starts where asked but claims a total of start + 10.
        ShortTotal { len: u64, cut_after: u64 },
        /// `len` announced, one byte every `every`.
        Slow { len: u64, every: Duration },
    }

    /// Byte `offset` of version `version`.
    pub(crate) fn byte(version: u64, offset: u64) -> u8 {
        ((offset + version * 13) % 251) as u8
    }

    pub(crate) fn content(version: u64, len: u64) -> Vec<u8> {
        (0..len).map(|o| byte(version, o)).collect()
    }

    pub(crate) struct Server {
        pub(crate) addr: SocketAddr,
        pub(crate) requests: Arc<AtomicU64>,
        pub(crate) heads: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Server {
        pub(crate) fn url(&self, path: &str) -> reqwest::Url {
            reqwest::Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
        }
        pub(crate) fn head(&self, n: usize) -> String {
            self.heads.lock().unwrap()[n].clone()
        }
    }

    pub(crate) async fn start(mode: Mode) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, log) = (requests.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (count, log) = (count.clone(), log.clone());
                tokio::spawn(async move {
                    // A client that hangs up mid-response is part of the tests.
                    let _ = serve(socket, mode, &count, &log).await;
                });
            }
        });
        Server {
            addr,
            requests,
            heads,
        }
    }

    async fn serve(
        mut socket: TcpStream,
        mode: Mode,
        count: &AtomicU64,
        log: &std::sync::Mutex<Vec<String>>,
    ) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await?;
            if n == 0 || head.len() > 16 << 10 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let n = count.fetch_add(1, Ordering::SeqCst);
        log.lock().unwrap().push(head.clone());
        let header = |name: &str| {
            head.lines().find_map(|l| {
                l.strip_prefix(&format!("{name}:"))
                    .map(|v| v.trim().to_owned())
            })
        };
        let range_start: Option<u64> =
            header("range").and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok());
        let if_range = header("if-range");
        let (status, headers, body, cut): (&str, String, Vec<u8>, Option<u64>) = match mode {
            Mode::Etag {
                len,
                cut_first,
                cut_after,
            } => {
                let etag = "\"v0\"";
                let cut = (n < cut_first).then_some(cut_after);
                let honour = if_range.as_deref().is_none_or(|v| v == etag);
                match range_start {
                    Some(start) if honour && start >= len => (
                        "416 Range Not Satisfiable",
                        format!("content-range: bytes */{len}\r\netag: {etag}\r\n"),
                        Vec::new(),
                        None,
                    ),
                    Some(start) if honour => (
                        "206 Partial Content",
                        format!(
                            "content-range: bytes {start}-{}/{len}\r\netag: {etag}\r\n",
                            len - 1
                        ),
                        content(0, len)[start as usize..].to_vec(),
                        cut,
                    ),
                    _ => ("200 OK", format!("etag: {etag}\r\n"), content(0, len), cut),
                }
            }
            Mode::Changing { len, cut_after } => {
                let etag = format!("\"v{n}\"");
                let cut = (n == 0).then_some(cut_after);
                let honour = if_range.as_deref().is_none_or(|v| v == etag);
                match range_start {
                    Some(start) if honour && start < len => (
                        "206 Partial Content",
                        format!(
                            "content-range: bytes {start}-{}/{len}\r\netag: {etag}\r\n",
                            len - 1
                        ),
                        content(n, len)[start as usize..].to_vec(),
                        cut,
                    ),
                    _ => ("200 OK", format!("etag: {etag}\r\n"), content(n, len), cut),
                }
            }
            Mode::WrongRange => (
                "206 Partial Content",
                "content-range: bytes 100-199/1000\r\netag: \"w\"\r\n".to_owned(),
                content(0, 1000)[100..200].to_vec(),
                None,
            ),
            Mode::ShortTotal { len, cut_after } => match range_start {
                Some(start) => (
                    "206 Partial Content",
                    format!(
                        "content-range: bytes {start}-{}/{}\r\netag: \"s\"\r\n",
                        start + 9,
                        start + 10
                    ),
                    content(0, start + 10)[start as usize..].to_vec(),
                    None,
                ),
                None => (
                    "200 OK",
                    "etag: \"s\"\r\n".to_owned(),
                    content(0, len),
                    Some(cut_after),
                ),
            },
            Mode::Slow { len, every } => {
                let prelude = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {len}\r\netag: \"slow\"\r\nconnection: close\r\n\r\n"
                );
                socket.write_all(prelude.as_bytes()).await?;
                for offset in 0..len {
                    tokio::time::sleep(every).await;
                    socket.write_all(&[byte(0, offset)]).await?;
                }
                return Ok(());
            }
        };
        let prelude = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{headers}connection: close\r\n\r\n",
            body.len()
        );
        socket.write_all(prelude.as_bytes()).await?;
        match cut {
            Some(k) => {
                socket
                    .write_all(&body[..(k as usize).min(body.len())])
                    .await?;
                socket.flush().await?;
                // Let the client read what was sent before the close.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None => socket.write_all(&body).await?,
        }
        socket.shutdown().await
    }
}
