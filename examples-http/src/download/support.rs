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

// Equivalent mutant (cargo mutants on this file):
// - `sync_parent` -> `()`: the directory fsync only matters if power fails
//   right after the rename; no test without a crash can see it.
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Option<ContentRange> {
        let mut headers = header::HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            header::HeaderValue::from_str(value).unwrap(),
        );
        content_range(&headers)
    }

    #[test]
    fn content_range_reads_both_forms_and_refuses_the_rest() {
        let bytes = |start, end, total| Some(ContentRange::Bytes { start, end, total });
        assert_eq!(parse("bytes 0-99/100"), bytes(0, 99, Some(100)));
        assert_eq!(parse("bytes 5-5/*"), bytes(5, 5, None), "one byte");
        assert_eq!(parse(" bytes 10 - 20 / 30 "), bytes(10, 20, Some(30)));
        assert_eq!(parse("bytes */1234"), Some(ContentRange::Unsatisfied(1234)));
        for bad in [
            "bytes 20-10/30", // END before START
            "bytes */*",      // an unsatisfied range needs its total
            "bytes 0-99",     // no total
            "bits 0-99/100",  // another unit
            "bytes 0-x/100",
            "bytes x-9/100",
            "bytes 0-99/many",
            "bytes 99/100",
            "bytes -1-9/100",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(content_range(&header::HeaderMap::new()), None);
        let mut opaque = header::HeaderMap::new();
        opaque.insert(
            header::CONTENT_RANGE,
            header::HeaderValue::from_bytes(b"bytes 0-1/\xff").unwrap(),
        );
        assert_eq!(content_range(&opaque), None, "not visible ASCII");
    }

    #[test]
    fn part_path_hex_and_sha256_values() {
        assert_eq!(
            part_path(Path::new("/tmp/x/file.tar.gz")),
            Path::new("/tmp/x/file.tar.gz.part")
        );
        assert_eq!(part_path(Path::new("plain")), Path::new("plain.part"));
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
        let sha = "0123456789abcdefABCDEF".repeat(3);
        let sha = &sha[..64];
        assert_eq!(parse_sha256(sha).unwrap(), sha.to_ascii_lowercase());
        for bad in [&sha[..63], &format!("{sha}0"), &format!("{}g", &sha[..63])] {
            let err = parse_sha256(bad).unwrap_err();
            assert!(
                err.contains(&format!("got {} characters", bad.len())),
                "{err}"
            );
        }
    }

    #[test]
    fn file_names_are_capped_at_100_and_dots_only_is_download() {
        let url = |path: &str| Url::parse(&format!("http://h/{path}")).unwrap();
        assert_eq!(file_name_for(&url(&"a".repeat(150))), "a".repeat(100));
        assert_eq!(file_name_for(&url("...")), "download");
        assert_eq!(file_name_for(&url("a..")), "a..");
        assert_eq!(
            file_name_for(&url("x/y//")),
            "y",
            "the last non-empty segment"
        );
    }

    #[tokio::test]
    async fn hash_prefix_hashes_only_the_first_len_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        // More than one 64 KiB read, so the loop runs more than once.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let got = hash_prefix(&path, 150_000).await.unwrap().finalize();
        assert_eq!(hex(&got), hex(&Sha256::digest(&data[..150_000])));
        assert!(hash_prefix(&dir.path().join("absent"), 1).await.is_err());
        sync_parent(&path).await; // best effort: must not fail or hang
    }
}
