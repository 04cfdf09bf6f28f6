//! The small pieces around [`download`](super::download): file names that
//! stay inside their directory, the `.part` path, digests, `Content-Range`
//! parsing, durable renames, and the progress-bar style.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Url, header};
use sha2::{Digest, Sha256};

use super::{DownloadError, io_err};

/// `DEST.part`: where the bytes go until they are verified.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Removes a `.part` we no longer trust and says why; a retry starts over.
pub(super) async fn restart(part: &Path, why: &str) -> DownloadError {
    remove_quietly(part).await;
    DownloadError::Transport(format!("{why}; discarded {} to start over", part.display()))
}

pub(super) async fn remove_quietly(path: &Path) {
    // Best effort: if it cannot be removed the next attempt reports the
    // real problem (or resumes from it, then fails the length/hash check).
    let _ = tokio::fs::remove_file(path).await;
}

/// Makes the rename durable: the directory entry is data too. Best effort
/// (some filesystems refuse to fsync a directory); the file itself is synced.
pub(super) async fn sync_parent(dest: &Path) {
    let Some(dir) = dest.parent().map(Path::to_path_buf) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    // The result is only about durability on power loss; ignore failures.
    let _ = tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all()).await;
}

/// Hashes the first `len` bytes of `path` (the part already downloaded).
pub(super) async fn hash_prefix(path: &Path, len: u64) -> Result<Sha256, DownloadError> {
    let path_owned = path.to_path_buf();
    let task = tokio::task::spawn_blocking(move || -> std::io::Result<Sha256> {
        use std::io::Read;
        let mut hasher = Sha256::new();
        let mut reader = std::fs::File::open(&path_owned)?.take(len);
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                return Ok(hasher);
            }
            hasher.update(&buffer[..n]);
        }
    });
    match task.await {
        Ok(result) => result.map_err(io_err(format!("read {}", path.display()))),
        Err(join) => Err(io_err("hash task")(std::io::Error::other(join))),
    }
}

/// `Content-Range: bytes START-END/TOTAL` as (START, Some(TOTAL)); TOTAL `*` is None.
pub(super) fn content_range(headers: &header::HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    // `*/N` (on a 416) has no start; report 0 and the total.
    let start = match range.trim() {
        "*" => 0,
        range => range.split_once('-')?.0.trim().parse().ok()?,
    };
    Some((start, total.trim().parse().ok()))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file name for `url` that stays inside the destination directory: the
/// last path segment with anything but `[A-Za-z0-9._-]` replaced by `_`,
/// never `.`/`..`/empty (then `download`), at most 100 bytes. The segment is
/// left percent-encoded, so `%2F` cannot become a separator.
pub fn file_name_for(url: &Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut segments| segments.rfind(|s| !s.is_empty()))
        .unwrap_or("");
    let name: String = last
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.chars().all(|c| c == '.') {
        "download".to_owned()
    } else {
        name
    }
}

/// The bar style once the size is known (bytes, rate, ETA), or a spinner.
pub fn style_progress(progress: &ProgressBar, label: &str, known_size: bool) {
    let template = if known_size {
        "{msg:24!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}"
    } else {
        "{msg:24!} {spinner} {bytes:>10} {bytes_per_sec:>12} (size unknown)"
    };
    // The templates are constants that parse; a failure is a programming error.
    let style = ProgressStyle::with_template(template).expect("valid progress template");
    progress.set_style(style.progress_chars("=> "));
    progress.set_message(label.to_owned());
    if !known_size {
        // A spinner only moves when ticked; tick it from indicatif's thread.
        progress.enable_steady_tick(Duration::from_millis(120));
    }
}
