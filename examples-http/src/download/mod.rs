//! Streaming downloads that never leave a half-written or spliced file behind.
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
//! nothing. A non-2xx status is an error before a byte is written: a 404
//! page is never saved as your file.
//!
//! **Resume without splicing.** The first response's validator (a strong
//! `ETag`, else `Last-Modified`) and announced length are stored beside the
//! `.part` (`DEST.part.validator`, see `part.rs`). A resume sends
//! `Range: bytes=N-` with `If-Range: <validator>`: if the resource changed,
//! the server answers 200 with the new version and we start over; a `.part`
//! without a validator is never resumed. A 206 is accepted only when its
//! `Content-Range` starts at N, runs to the end, and agrees with the saved
//! length, the body length and the saved ETag; anything else is
//! [`DownloadError::BadRange`] and the `.part` is discarded.
//!
//! **One writer per destination.** The `.part` is held under an advisory
//! `flock` for the whole call: a second download of the same destination,
//! in this process or another, fails at once with [`DownloadError::Busy`].
//! The destination must be a regular file or absent; `/dev/full` or a FIFO
//! is never replaced ([`DownloadError::NotRegular`]).
//!
//! **Time.** Each wait (headers, every chunk) is bounded by `idle_timeout`.
//! A body that trickles (1 byte/s resets any idle timer) is stopped by
//! `min_rate`: every `idle_timeout` window must bring `min_rate ×
//! idle_timeout` bytes, else [`DownloadError::TooSlow`]. An optional overall
//! `deadline` bounds the whole call, retries and pauses included
//! ([`DownloadError::Deadline`]).
//!
//! **Cancellation.** Dropping the future at any await leaves a consistent
//! state: the lock is released (it lives in the file descriptor), the
//! `.part` holds a prefix of the version its validator names (written bytes
//! only; what sat in the write buffer is fetched again), and the destination
//! is untouched or complete. A panic in the [`Progress`] callback ends the
//! call with [`DownloadError::Progress`] in the same state.
//!
//! **What HTTP/1.1 cannot detect.** A body without `Content-Length` or
//! chunked framing ends when the server closes the connection, so a cut
//! there looks exactly like the end: such a download is only as good as its
//! `sha256`. Pass one for anything that matters.
//!
//! **Hostile servers, and the defence:** garbage or a close mid-headers
//! (transport error, nothing written); a 1 byte/s body (`min_rate`,
//! `deadline`); `Content-Length` larger than the body, closed or hanging
//! (length check, idle timeout; the `.part` is kept for a resume); endless
//! bodies (`deadline`; memory is one chunk plus one write buffer whatever
//! the size; disk is the caller's `deadline` or `sha256` to bound); a 206
//! with a mismatched `Content-Range` (`BadRange`); content and ETag that
//! change on every request (`If-Range`: restarted, never spliced); a
//! no-length body cut by a close (undetectable, see above: `sha256`).
//! Redirect loops and gzip bombs are reqwest's (10 redirects; no automatic
//! decompression in this workspace's reqwest features).
//!
//! Memory is one chunk plus one write buffer, whatever the size.
//!
//! tokio primitives: `tokio::fs::File` behind a `tokio::io::BufWriter` (file
//! I/O runs on tokio's blocking pool; the buffer batches 64 KiB network
//! chunks into 1 MiB writes), `tokio::time::timeout_at` per wait, and an
//! atomic rename for the commit.
//!
//! Production: this is what `curl -C - -o` does; in Rust, the same steps by
//! hand (there is no de-facto crate), or `trauma`/`downloader` for batch
//! downloads with their own conventions.
//!
//! ```text
//! cargo run --bin streaming-download
//! cargo test -p examples-http --test download
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{StatusCode, Url, header};
use sha2::Digest;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::time::Instant;

use crate::fetch::error_chain;

mod part;
mod support;
#[cfg(test)]
mod tests;

use self::part::{Part, Validator};
use self::support::{ContentRange, content_range, hash_prefix, sync_parent};
pub use self::support::{file_name_for, hex, parse_sha256, part_path};

/// Size of the write buffer in front of the file.
const WRITE_BUFFER: usize = 1 << 20;

/// Pause before attempt `n` (1-based) after a transient failure.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How a download behaves.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Longest wait for the response headers or for any one body chunk;
    /// also the window over which `min_rate` is measured.
    pub idle_timeout: Duration,
    /// Least bytes per second, averaged over each `idle_timeout` window
    /// (0 = no minimum). Stops a trickling body that an idle timer alone
    /// would wait on forever.
    pub min_rate: u64,
    /// The whole call, retries and pauses included (`None` = no limit).
    pub deadline: Option<Duration>,
    /// Expected SHA-256, 64 hex digits; checked before the rename.
    pub sha256: Option<String>,
    /// Replace an existing destination file (a regular file only).
    pub force: bool,
    /// Further attempts after a transient failure, each resuming from the
    /// `.part` when its validator allows (0 = fail on the first error).
    pub retries: u32,
    /// Largest file accepted: a larger `Content-Length` is refused before a
    /// byte is written, a longer body is cut and discarded (an endless body
    /// must not fill the disk). `None` = no limit.
    pub max_size: Option<u64>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10),
            min_rate: 0,
            deadline: None,
            sha256: None,
            force: false,
            retries: 0,
            max_size: None,
        }
    }
}

/// Where a download reports its progress (the binary adapts an `indicatif`
/// bar to it; `&()` reports nothing). Called from the downloading task:
/// keep it quick. A panic here ends the download with
/// [`DownloadError::Progress`]; the `.part` stays resumable.
pub trait Progress: Send + Sync {
    /// A response started: its body continues the file at `offset`, of
    /// `total` bytes when announced. Called again after a restart.
    fn started(&self, offset: u64, total: Option<u64>) {
        let _ = (offset, total);
    }
    /// `bytes` more arrived.
    fn advanced(&self, bytes: u64) {
        let _ = bytes;
    }
}

/// No progress reporting.
impl Progress for () {}

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
    /// The destination (or its `.part`) exists and is not a regular file.
    #[error("{0} is not a regular file; refusing to replace it")]
    NotRegular(PathBuf),
    /// Another download holds this destination's `.part`.
    #[error("another download is writing {0}; try again when it is done")]
    Busy(PathBuf),
    /// `sha256` is not 64 hex digits; nothing was fetched.
    #[error("invalid sha256: {0}")]
    InvalidSha256(String),
    /// The server answered with an error status; nothing was written.
    #[error("HTTP {0}")]
    Status(StatusCode),
    /// Connecting or reading the body failed; the `.part` keeps what arrived.
    #[error("transport: {0}")]
    Transport(String),
    /// No headers or no chunk within the idle timeout; the `.part` stays.
    #[error("stalled: nothing received for {0:?}")]
    Stalled(Duration),
    /// Fewer than `min_rate` bytes per second over a window; the `.part` stays.
    #[error("too slow: {bytes} bytes in {window:?}, below the minimum {min_rate} bytes/s")]
    TooSlow {
        /// Bytes received in the window.
        bytes: u64,
        /// The window (the idle timeout).
        window: Duration,
        /// The configured minimum.
        min_rate: u64,
    },
    /// The overall deadline passed; the `.part` stays.
    #[error("deadline of {0:?} passed")]
    Deadline(Duration),
    /// A 206 whose `Content-Range` does not match what was asked; the
    /// `.part` was discarded.
    #[error("bad Content-Range: {0}; discarded the partial file")]
    BadRange(String),
    /// The file is larger than `max_size`; nothing is kept.
    #[error("larger than the limit of {limit} bytes{}", announced.map_or(String::new(), |n| format!(" (Content-Length {n})")))]
    TooLarge {
        /// The configured limit.
        limit: u64,
        /// What the server announced, if it did.
        announced: Option<u64>,
    },
    /// The body is content-coded (`Content-Encoding: gzip`, ...) although we
    /// asked for none: saving it would save something else than the file.
    #[error("unrequested Content-Encoding {0:?}; refusing to save it")]
    Encoded(String),
    /// An HTTP/1 body framed only by the connection's close: a cut cannot be
    /// told from the end, so it is only saved when a `sha256` can vouch for it.
    #[error(
        "the server sent neither Content-Length nor chunked framing, so a cut body would look complete; pass a sha256 to accept it"
    )]
    Unframed,
    /// The body ended at a different length than announced.
    #[error("length mismatch: expected {expected} bytes, got {actual}")]
    Length {
        /// What Content-Length / Content-Range announced.
        expected: u64,
        /// What the file holds.
        actual: u64,
    },
    /// The content is complete but not what `sha256` said; `.part` removed.
    #[error("checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        /// The expected hex digest.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// The progress callback panicked; the `.part` stays.
    #[error("progress callback panicked: {0}")]
    Progress(String),
    /// A local file operation failed (the message names the path: a full
    /// disk reads "write DEST.part: No space left on device").
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, with the path.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl DownloadError {
    /// True when retrying (resuming from the `.part`) can help.
    pub fn is_transient(&self) -> bool {
        match self {
            DownloadError::Transport(_)
            | DownloadError::Stalled(_)
            | DownloadError::TooSlow { .. }
            | DownloadError::BadRange(_) => true,
            DownloadError::Status(status) => status.is_server_error(),
            _ => false,
        }
    }
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DownloadError {
    let context = context.into();
    move |source| DownloadError::Io { context, source }
}

/// The call's time limits.
#[derive(Debug, Clone, Copy)]
struct Limits {
    idle: Duration,
    /// `None`: no deadline (or one so far away that it overflowed `Instant`).
    deadline: Option<(Instant, Duration)>,
}

impl Limits {
    /// Awaits `fut` for at most the idle timeout, never past the deadline.
    async fn within<T>(&self, fut: impl Future<Output = T>) -> Result<T, DownloadError> {
        // checked_add: a caller may pass Duration::MAX for "no idle limit".
        let idle_end = Instant::now().checked_add(self.idle);
        let end = match (idle_end, self.deadline) {
            (Some(idle_end), Some((deadline, _))) => idle_end.min(deadline),
            (Some(end), None) | (None, Some((end, _))) => end,
            (None, None) => return Ok(fut.await),
        };
        tokio::time::timeout_at(end, fut)
            .await
            .map_err(|_elapsed| self.expired())
    }

    fn expired(&self) -> DownloadError {
        match self.deadline {
            Some((deadline, budget)) if Instant::now() >= deadline => {
                DownloadError::Deadline(budget)
            }
            _ => DownloadError::Stalled(self.idle),
        }
    }
}

/// Calls the user's progress callback; a panic becomes an error.
fn notify(call: impl FnOnce()) -> Result<(), DownloadError> {
    catch_unwind(AssertUnwindSafe(call)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".to_owned());
        DownloadError::Progress(message)
    })
}

/// Fails unless `dest` is absent or (with `force`) a regular file.
fn check_dest(dest: &Path, force: bool) -> Result<(), DownloadError> {
    match std::fs::symlink_metadata(dest) {
        Ok(meta) if !meta.is_file() => Err(DownloadError::NotRegular(dest.to_path_buf())),
        Ok(_) if !force => Err(DownloadError::Exists(dest.to_path_buf())),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_err(format!("stat {}", dest.display()))(err)),
    }
}

/// Downloads `url` to `dest` through `DEST.part` (see the module docs),
/// retrying transient failures `options.retries` times; each retry resumes
/// from what the `.part` holds when its validator allows. `progress` hears
/// about each response and every chunk (`&()` for nothing).
pub async fn download(
    client: &reqwest::Client,
    url: &Url,
    dest: &Path,
    options: &DownloadOptions,
    progress: &dyn Progress,
) -> Result<Downloaded, DownloadError> {
    let limits = Limits {
        idle: options.idle_timeout,
        // checked_add: the deadline comes from outside (a flag); an
        // overflowing one is no deadline at all.
        deadline: options
            .deadline
            .and_then(|d| Instant::now().checked_add(d).map(|at| (at, d))),
    };
    let sha256 = match &options.sha256 {
        Some(text) => Some(parse_sha256(text).map_err(DownloadError::InvalidSha256)?),
        None => None,
    };
    check_dest(dest, options.force)?;
    let mut part = Part::lock(&part_path(dest))?;
    let mut attempt = 0;
    let result = loop {
        let once = download_once(
            client, url, dest, options, &sha256, limits, &mut part, progress,
        );
        match once.await {
            Err(err) if err.is_transient() && attempt < options.retries => {
                attempt += 1;
                tracing::warn!(%url, attempt, "download failed: {err}; resuming");
                // A short, growing pause: enough for a restarting server,
                // short enough for a demo. Never past the deadline.
                let pause = RETRY_PAUSE * attempt;
                if let Some((deadline, budget)) = limits.deadline
                    && Instant::now() + pause >= deadline
                {
                    break Err(DownloadError::Deadline(budget));
                }
                tokio::time::sleep(pause).await;
            }
            Ok(done) => {
                part.commit(dest)?;
                sync_parent(dest).await;
                return Ok(done);
            }
            Err(err) => break Err(err),
        }
    };
    // Nothing arrived: leave no empty `.part` behind.
    if matches!(part.len(), Ok(0)) {
        part.discard();
    } else if matches!(
        result,
        Err(DownloadError::Checksum { .. }
            | DownloadError::Length { .. }
            | DownloadError::TooLarge { .. })
    ) {
        // Complete but wrong, or longer than announced: resuming would
        // only reproduce it.
        part.discard();
    }
    result
}

/// What the response says about where its body goes.
struct Plan {
    /// Where the body starts in the file.
    offset: u64,
    /// The full size, when announced.
    total: Option<u64>,
    /// The `.part` is already complete (a 416 for exactly its length).
    complete: bool,
}

/// One attempt: resume or start, stream, verify. The caller renames.
#[allow(clippy::too_many_arguments)]
async fn download_once(
    client: &reqwest::Client,
    url: &Url,
    dest: &Path,
    options: &DownloadOptions,
    sha256: &Option<String>,
    limits: Limits,
    part: &mut Part,
    progress: &dyn Progress,
) -> Result<Downloaded, DownloadError> {
    let mut existing = part.len()?;
    let saved = part.validator();
    if existing > 0 && saved.is_none() {
        // Nothing says which version these bytes are: start over.
        part.restart(None)?;
        existing = 0;
    }
    let resume = saved.filter(|_| existing > 0);
    let mut request = client.get(url.clone());
    if let Some(saved) = &resume {
        request = request
            .header(header::RANGE, format!("bytes={existing}-"))
            .header(header::IF_RANGE, &saved.if_range);
    }
    let mut response = match limits.within(request.send()).await? {
        Err(err) => return Err(DownloadError::Transport(error_chain(&err))),
        Ok(response) => response,
    };
    let plan = match plan(&response, existing, resume.as_ref()) {
        Ok(plan) => plan,
        Err(err @ DownloadError::BadRange(_)) => {
            // The server lies about ranges: the `.part` cannot be trusted.
            part.restart(None)?;
            return Err(err);
        }
        Err(err) => return Err(err),
    };
    refuse(&response, &plan, options, sha256.is_some())?;
    if plan.offset == 0 && !plan.complete {
        // A fresh start (first try, a changed resource, Range ignored):
        // truncate, then record which version the new bytes belong to.
        part.restart(validator(&response, plan.total).as_ref())?;
    }
    let mut hasher = match sha256 {
        // Resuming: the digest must cover the bytes already on disk.
        Some(_) => Some(hash_prefix(part.path(), plan.offset).await?),
        None => None,
    };
    notify(|| progress.started(plan.offset, plan.total))?;

    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, part.writer_at(plan.offset)?);
    let mut written = plan.offset;
    let streamed = if plan.complete {
        Ok(())
    } else {
        stream(
            &mut response,
            &mut writer,
            &mut written,
            &mut hasher,
            limits,
            options,
            part.path(),
            progress,
        )
        .await
    };
    // Flush and fsync even on failure: the next attempt resumes from what
    // is really on disk, so it must all be there.
    let part_name = part.path().display().to_string();
    writer
        .flush()
        .await
        .map_err(io_err(format!("write {part_name}")))?;
    writer
        .into_inner()
        .sync_all()
        .await
        .map_err(io_err(format!("fsync {part_name}")))?;
    streamed?;

    if let Some(expected) = plan.total
        && written != expected
    {
        return Err(DownloadError::Length {
            expected,
            actual: written,
        });
    }
    let sha256 = hasher.map(|hasher| hex(&hasher.finalize()));
    if let (Some(expected), Some(actual)) = (&options.sha256, &sha256)
        && !expected.eq_ignore_ascii_case(actual)
    {
        return Err(DownloadError::Checksum {
            expected: expected.clone(),
            actual: actual.clone(),
        });
    }
    // Checked again right before the rename, which would replace whatever
    // was created there meanwhile.
    check_dest(dest, options.force)?;
    Ok(Downloaded {
        path: dest.to_path_buf(),
        bytes: written,
        resumed_from: plan.offset,
        sha256,
    })
}

/// Reads the body into `writer`, under the idle timeout, the minimum rate
/// and the deadline.
#[allow(clippy::too_many_arguments)]
async fn stream(
    response: &mut reqwest::Response,
    writer: &mut BufWriter<tokio::fs::File>,
    written: &mut u64,
    hasher: &mut Option<sha2::Sha256>,
    limits: Limits,
    options: &DownloadOptions,
    part: &Path,
    progress: &dyn Progress,
) -> Result<(), DownloadError> {
    let mut rate = RateWindow::new(Instant::now(), *written, limits.idle, options.min_rate);
    loop {
        let chunk = match limits.within(response.chunk()).await? {
            Err(err) => return Err(DownloadError::Transport(error_chain(&err))),
            Ok(None) => return Ok(()),
            Ok(Some(chunk)) => chunk,
        };
        if let Some(hasher) = hasher {
            hasher.update(&chunk);
        }
        writer
            .write_all(&chunk)
            .await
            .map_err(io_err(format!("write {}", part.display())))?;
        *written += chunk.len() as u64;
        if let Some(limit) = options.max_size
            && *written > limit
        {
            return Err(DownloadError::TooLarge {
                limit,
                announced: None,
            });
        }
        notify(|| progress.advanced(chunk.len() as u64))?;
        rate.check(Instant::now(), *written)?;
    }
}

/// The minimum-rate rule: each window of `length` (the idle timeout) must
/// bring `min_rate x length` bytes. Judged when a chunk arrives; a window
/// with no chunk at all is the idle timeout's to end.
#[derive(Debug, Clone, Copy)]
struct RateWindow {
    /// When the current window began, and the bytes written by then.
    start: Instant,
    bytes_at_start: u64,
    length: Duration,
    /// Bytes per second; 0 turns the rule off.
    min_rate: u64,
}

impl RateWindow {
    fn new(start: Instant, bytes_at_start: u64, length: Duration, min_rate: u64) -> Self {
        Self {
            start,
            bytes_at_start,
            length,
            min_rate,
        }
    }

    /// `written` bytes in all at `now`: too slow, or fine (and a window
    /// that is over starts the next one).
    fn check(&mut self, now: Instant, written: u64) -> Result<(), DownloadError> {
        let elapsed = now.saturating_duration_since(self.start);
        if self.min_rate == 0 || elapsed < self.length {
            return Ok(());
        }
        let bytes = written.saturating_sub(self.bytes_at_start);
        if (bytes as f64) < self.min_rate as f64 * elapsed.as_secs_f64() {
            return Err(DownloadError::TooSlow {
                bytes,
                window: elapsed,
                min_rate: self.min_rate,
            });
        }
        *self = Self::new(now, written, self.length, self.min_rate);
        Ok(())
    }
}

/// Refuses, before a byte is written, a response whose body must not become
/// the file: too large, content-coded, or (without a digest) unframed.
fn refuse(
    response: &reqwest::Response,
    plan: &Plan,
    options: &DownloadOptions,
    has_digest: bool,
) -> Result<(), DownloadError> {
    let headers = response.headers();
    if let (Some(limit), Some(total)) = (options.max_size, plan.total)
        && total > limit
    {
        return Err(DownloadError::TooLarge {
            limit,
            announced: Some(total),
        });
    }
    if let Some(coding) = headers.get(header::CONTENT_ENCODING) {
        let coding = String::from_utf8_lossy(coding.as_bytes()).into_owned();
        if !coding.trim().eq_ignore_ascii_case("identity") {
            return Err(DownloadError::Encoded(coding));
        }
    }
    let chunked = headers.get_all(header::TRANSFER_ENCODING).iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .to_ascii_lowercase()
            .contains("chunked")
    });
    let http1 = response.version() <= reqwest::Version::HTTP_11;
    if http1 && !plan.complete && plan.total.is_none() && !chunked && !has_digest {
        return Err(DownloadError::Unframed);
    }
    Ok(())
}

/// Decides from the status and `Content-Range` where the body goes, or why
/// it must not be saved.
fn plan(
    response: &reqwest::Response,
    existing: u64,
    resume: Option<&Validator>,
) -> Result<Plan, DownloadError> {
    let status = response.status();
    let headers = response.headers();
    match status {
        StatusCode::PARTIAL_CONTENT => {
            let Some(saved) = resume else {
                return Err(DownloadError::BadRange(
                    "a 206 answered a request for the whole file".into(),
                ));
            };
            let range = content_range(headers);
            let Some(ContentRange::Bytes { start, end, total }) = range else {
                return Err(DownloadError::BadRange(format!(
                    "asked for bytes {existing}-, got {:?}",
                    headers.get(header::CONTENT_RANGE)
                )));
            };
            let full = end.checked_add(1);
            let etag = headers.get(header::ETAG).and_then(|v| v.to_str().ok());
            let fits = start == existing
                && total.is_none_or(|t| Some(t) == full)
                && saved.total.is_none_or(|t| Some(t) == full)
                && response
                    .content_length()
                    .is_none_or(|len| len == end - start + 1)
                // A server that answers 206 with another ETag ignored If-Range.
                && etag.is_none_or(|etag| !saved.if_range.starts_with('"') || etag == saved.if_range);
            if !fits {
                return Err(DownloadError::BadRange(format!(
                    "asked for bytes {existing}- of {}, got {start}-{end}/{}",
                    saved.total.map_or("?".to_owned(), |t| t.to_string()),
                    total.map_or("*".to_owned(), |t| t.to_string()),
                )));
            }
            Ok(Plan {
                offset: existing,
                total: full,
                complete: false,
            })
        }
        // Nothing left to send: the .part is complete (a crash between the
        // fsync and the rename) if its size is the total.
        StatusCode::RANGE_NOT_SATISFIABLE if resume.is_some() => match content_range(headers) {
            Some(ContentRange::Unsatisfied(total))
                if total == existing && resume.and_then(|v| v.total).is_none_or(|t| t == total) =>
            {
                Ok(Plan {
                    offset: existing,
                    total: Some(total),
                    complete: true,
                })
            }
            _ => Err(DownloadError::BadRange(format!(
                "the server refused the resume at {existing}"
            ))),
        },
        status if status.is_success() => Ok(Plan {
            offset: 0,
            total: response.content_length(),
            complete: false,
        }),
        status => Err(DownloadError::Status(status)),
    }
}

/// The validator for `If-Range` a response offers: a strong ETag, else
/// Last-Modified (a weak ETag may not be used for ranges).
fn validator(response: &reqwest::Response, total: Option<u64>) -> Option<Validator> {
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && !v.contains(['\r', '\n']))
    };
    let if_range = header(header::ETAG)
        .filter(|etag| etag.starts_with('"'))
        .or_else(|| header(header::LAST_MODIFIED))?;
    Some(Validator {
        if_range: if_range.to_owned(),
        total,
    })
}
