//! Streaming downloads that never leave a half-written file behind.
//!
//! Ports seed Example 3. The Python `download_file` opens the destination
//! and writes chunks straight into it, so:
//!
//! - a dropped connection, a crash or Ctrl-C leaves a truncated file at the
//!   final path that looks like a finished download;
//! - it checks `status != 200` but trusts whatever length arrived, never
//!   verifies a checksum, and cannot resume: a retry starts from zero;
//! - a stalled server hangs it forever (no idle timeout);
//! - errors become `return False`, so the caller cannot say why.
//!
//! [`download`] streams into `DEST.part`, flushes and fsyncs it, checks the
//! length against `Content-Length` (and a SHA-256 when given), and only then
//! renames it to `DEST`: the final path holds a complete, verified file or
//! nothing. An existing `.part` is resumed with a `Range` request (a server
//! that ignores `Range` answers 200 and we start over). Each chunk must
//! arrive within `idle_timeout`. A non-2xx status is an error before a byte
//! is written: a 404 page is never saved as your file.
//!
//! Memory is one chunk plus one write buffer, whatever the size.
//!
//! tokio primitives: `tokio::fs::File` behind a `tokio::io::BufWriter` (file
//! I/O runs on tokio's blocking pool; the buffer batches 64 KiB network
//! chunks into 1 MiB writes), `tokio::time::timeout` per chunk, and
//! `tokio::fs::rename` for the atomic commit.
//!
//! Production: this is what `curl -C - -o` does; in Rust, the same steps by
//! hand (there is no de-facto crate), or `trauma`/`downloader` for batch
//! downloads with their own conventions.
//!
//! ```text
//! cargo run --bin streaming-download
//! cargo test -p examples-http --test download
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::ProgressBar;
use reqwest::{StatusCode, Url, header};
use sha2::Digest;
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::fetch::error_chain;

mod support;

use self::support::{content_range, hash_prefix, remove_quietly, restart, sync_parent};
pub use self::support::{file_name_for, hex, part_path, style_progress};

/// Size of the write buffer in front of the file.
const WRITE_BUFFER: usize = 1 << 20;

/// How a download behaves.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Longest wait for the response headers or for any one body chunk.
    pub idle_timeout: Duration,
    /// Expected SHA-256, lowercase hex; checked before the rename.
    pub sha256: Option<String>,
    /// Replace an existing destination file.
    pub force: bool,
    /// Further attempts after a transient failure, each resuming from the
    /// `.part` (0 = fail on the first error).
    pub retries: u32,
}

/// A download that completed and was renamed into place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The final path.
    pub path: PathBuf,
    /// Size of the file.
    pub bytes: u64,
    /// Bytes that were already in the `.part` file and were not fetched again.
    pub resumed_from: u64,
    /// Lowercase hex SHA-256, when one was requested.
    pub sha256: Option<String>,
}

/// Why a download did not produce its file. None of these leave a file at
/// the destination; the resumable ones keep the `.part`.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The destination exists and `force` is off.
    #[error("{0} already exists (use --force to replace it)")]
    Exists(PathBuf),
    /// The server answered with an error status; nothing was written.
    #[error("HTTP {0}")]
    Status(StatusCode),
    /// Connecting or reading the body failed; the `.part` keeps what arrived.
    #[error("transport: {0}")]
    Transport(String),
    /// No headers or no chunk within the idle timeout; the `.part` stays.
    #[error("stalled: nothing received for {0:?}")]
    Stalled(Duration),
    /// The body ended at a different length than announced.
    #[error("length mismatch: expected {expected} bytes, got {actual}")]
    Length {
        /// What Content-Length / Content-Range announced.
        expected: u64,
        /// What the file holds.
        actual: u64,
    },
    /// The content is complete but not what `--sha256` said; `.part` removed.
    #[error("checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        /// The expected hex digest.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl DownloadError {
    /// True when retrying (resuming from the `.part`) can help.
    pub fn is_transient(&self) -> bool {
        match self {
            DownloadError::Transport(_) | DownloadError::Stalled(_) => true,
            DownloadError::Status(status) => status.is_server_error(),
            _ => false,
        }
    }
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DownloadError {
    let context = context.into();
    move |source| DownloadError::Io { context, source }
}

/// Pause before attempt `n` (1-based) after a transient failure.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Downloads `url` to `dest` through `DEST.part` (see the module docs),
/// retrying transient failures `options.retries` times; each retry resumes
/// from what the `.part` holds. `progress` shows bytes, rate and ETA (its
/// message is the label); pass `ProgressBar::hidden()` for none.
pub async fn download(
    client: &reqwest::Client,
    url: &Url,
    dest: &Path,
    options: &DownloadOptions,
    progress: &ProgressBar,
) -> Result<Downloaded, DownloadError> {
    let mut attempt = 0;
    loop {
        match download_once(client, url, dest, options, progress).await {
            Err(err) if err.is_transient() && attempt < options.retries => {
                attempt += 1;
                tracing::warn!(%url, attempt, "download failed: {err}; resuming");
                // A short, growing pause: enough for a restarting server,
                // short enough for a demo. Resilience crates do real backoff.
                tokio::time::sleep(RETRY_PAUSE * attempt).await;
            }
            result => return result,
        }
    }
}

/// One attempt: resume or start, stream, verify, rename.
async fn download_once(
    client: &reqwest::Client,
    url: &Url,
    dest: &Path,
    options: &DownloadOptions,
    progress: &ProgressBar,
) -> Result<Downloaded, DownloadError> {
    if !options.force && tokio::fs::try_exists(dest).await.unwrap_or(false) {
        return Err(DownloadError::Exists(dest.to_path_buf()));
    }
    let part = part_path(dest);
    let existing = match tokio::fs::metadata(&part).await {
        Ok(meta) => meta.len(),
        Err(_) => 0,
    };

    let mut request = client.get(url.clone());
    if existing > 0 {
        request = request.header(header::RANGE, format!("bytes={existing}-"));
    }
    let mut response = match tokio::time::timeout(options.idle_timeout, request.send()).await {
        Err(_elapsed) => return Err(DownloadError::Stalled(options.idle_timeout)),
        Ok(Err(err)) => return Err(DownloadError::Transport(error_chain(&err))),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    // Where the body starts in the file, and the full size when announced.
    let (offset, total) = match status {
        StatusCode::PARTIAL_CONTENT if existing > 0 => match content_range(response.headers()) {
            Some((start, total)) if start == existing => (existing, total),
            // A range we did not ask for: distrust the .part and start over.
            _ => return Err(restart(&part, "unexpected Content-Range").await),
        },
        // Nothing left to send: the .part is already complete (a crash
        // between the fsync and the rename) if its size is the total.
        StatusCode::RANGE_NOT_SATISFIABLE if existing > 0 => {
            match content_range(response.headers()) {
                Some((_, Some(total))) if total == existing => (existing, Some(existing)),
                _ => return Err(restart(&part, "server refused the resume range").await),
            }
        }
        status if status.is_success() => (0, response.content_length()),
        status => return Err(DownloadError::Status(status)),
    };
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(offset > 0)
        .truncate(offset == 0)
        .open(&part)
        .await
        .map_err(io_err(format!("open {}", part.display())))?;
    let mut hasher = match &options.sha256 {
        // Resuming: the digest must cover the bytes already on disk.
        Some(_) => Some(hash_prefix(&part, offset).await?),
        None => None,
    };

    style_progress(progress, &progress.message(), total.is_some());
    match total {
        Some(total) => progress.set_length(total),
        None => progress.unset_length(),
    }
    progress.set_position(offset);
    progress.reset_eta();

    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut written = offset;
    let streamed = if status == StatusCode::RANGE_NOT_SATISFIABLE {
        Ok(())
    } else {
        loop {
            let chunk = match tokio::time::timeout(options.idle_timeout, response.chunk()).await {
                Err(_elapsed) => break Err(DownloadError::Stalled(options.idle_timeout)),
                Ok(Err(err)) => break Err(DownloadError::Transport(error_chain(&err))),
                Ok(Ok(None)) => break Ok(()),
                Ok(Ok(Some(chunk))) => chunk,
            };
            if let Some(hasher) = &mut hasher {
                hasher.update(&chunk);
            }
            if let Err(err) = writer.write_all(&chunk).await {
                break Err(io_err(format!("write {}", part.display()))(err));
            }
            written += chunk.len() as u64;
            progress.inc(chunk.len() as u64);
        }
    };
    // Flush and fsync even on failure: the next attempt resumes from what
    // is really on disk, so it must all be there.
    writer
        .flush()
        .await
        .map_err(io_err(format!("flush {}", part.display())))?;
    let file = writer.into_inner();
    file.sync_all()
        .await
        .map_err(io_err(format!("fsync {}", part.display())))?;
    drop(file);
    streamed?;

    if let Some(expected) = total
        && written != expected
    {
        if written > expected {
            // More than announced: the .part cannot be trusted for a resume.
            remove_quietly(&part).await;
        }
        return Err(DownloadError::Length {
            expected,
            actual: written,
        });
    }
    let sha256 = hasher.map(|hasher| hex(&hasher.finalize()));
    if let (Some(expected), Some(actual)) = (&options.sha256, &sha256)
        && !expected.eq_ignore_ascii_case(actual)
    {
        // Complete but wrong: resuming would only reproduce it.
        remove_quietly(&part).await;
        return Err(DownloadError::Checksum {
            expected: expected.clone(),
            actual: actual.clone(),
        });
    }
    // Checked again right before the rename, which would replace a file
    // created meanwhile.
    if !options.force && tokio::fs::try_exists(dest).await.unwrap_or(false) {
        return Err(DownloadError::Exists(dest.to_path_buf()));
    }
    tokio::fs::rename(&part, dest)
        .await
        .map_err(io_err(format!(
            "rename {} to {}",
            part.display(),
            dest.display()
        )))?;
    sync_parent(dest).await;
    Ok(Downloaded {
        path: dest.to_path_buf(),
        bytes: written,
        resumed_from: offset,
        sha256,
    })
}
