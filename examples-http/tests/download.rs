//! Streaming downloads against the loopback sandbox (real time): the final
//! path holds a complete, verified file or nothing.

use std::path::Path;
use std::time::Duration;

use common::{Sandbox, SandboxConfig};
use examples_http::download::{
    DownloadError, DownloadOptions, download, file_name_for, hex, part_path,
};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

fn options() -> DownloadOptions {
    DownloadOptions {
        idle_timeout: Duration::from_secs(30),
        sha256: None,
        force: false,
        retries: 0,
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
    download(
        &reqwest::Client::new(),
        &url,
        dest,
        options,
        &ProgressBar::hidden(),
    )
    .await
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
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("cut.bin");
    let err = get(
        &sandbox,
        "/bytes/300000?fail_after=100000",
        &dest,
        &options(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DownloadError::Transport(_)), "{err:?}");
    assert!(!dest.exists());
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 100_000);

    // The rerun asks for bytes=100000- and gets the rest.
    let done = get(&sandbox, "/bytes/300000", &dest, &options())
        .await
        .unwrap();
    assert_eq!(done.resumed_from, 100_000);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        common::sandbox::pattern(0, 300_000)
    );
    assert!(!part_path(&dest).exists());
}

#[tokio::test]
async fn retries_resume_a_repeatedly_cut_download_and_verify_its_checksum() {
    let (sandbox, dir) = setup().await;
    let dest = dir.path().join("flaky.bin");
    let expected = common::sandbox::pattern(0, 250_000);
    // Every response is cut after 100 000 bytes: three attempts are needed,
    // and the digest must cover the bytes from the earlier attempts too.
    let options = DownloadOptions {
        retries: 2,
        sha256: Some(sha256_of(&expected)),
        ..options()
    };
    let done = get(&sandbox, "/bytes/250000?fail_after=100000", &dest, &options)
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
