//! The small pieces around [`download`](super::download): file names that
//! stay inside their directory, the `.part` path, digests, `Content-Range`
//! parsing, `--sha256` checking and durable renames.

use std::path::{Path, PathBuf};

use reqwest::{Url, header};
use sha2::{Digest, Sha256};

use super::{DownloadError, io_err};

/// `DEST.part`: where the bytes go until they are verified.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
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

/// A parsed `Content-Range` response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContentRange {
    /// `bytes START-END/TOTAL` (END inclusive; TOTAL `*` is None).
    Bytes {
        start: u64,
        end: u64,
        total: Option<u64>,
    },
    /// `bytes */TOTAL`, as sent with a 416.
    Unsatisfied(u64),
}

/// Parses `Content-Range`; anything malformed (or END before START) is None.
pub(super) fn content_range(headers: &header::HeaderMap) -> Option<ContentRange> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        total => Some(total.parse().ok()?),
    };
    if range.trim() == "*" {
        return total.map(ContentRange::Unsatisfied);
    }
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (end >= start).then_some(ContentRange::Bytes { start, end, total })
}

/// Checks a `--sha256` value: exactly 64 hex digits; returns it lowercase.
/// Use it as a clap `value_parser`, so a typo is a usage error before
/// anything is fetched.
pub fn parse_sha256(text: &str) -> Result<String, String> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "a SHA-256 is 64 hex digits, got {} characters: {text:?}",
            text.chars().count()
        ))
    }
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
