//! Demo support for `streaming-download`: the sandbox files of the demo, the
//! indicatif adapter for [`Progress`], and the printed story and figures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Report, Sandbox, SandboxConfig, UsageError};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Url;
use sha2::{Digest, Sha256};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::download::{
    DownloadError, DownloadOptions, Downloaded, Progress, download, file_name_for, hex, part_path,
};

/// One file to fetch.
#[derive(Debug, Clone)]
pub struct Job {
    /// Where from.
    pub url: Url,
    /// Where to.
    pub dest: PathBuf,
    /// Expected digest, if any.
    pub sha256: Option<String>,
}

/// What happened to a job: `None` if a stop came first.
pub type Outcome = Option<(Result<Downloaded, DownloadError>, Duration)>;

/// The demo's files on an in-process sandbox, with digests computed
/// locally from the sandbox's byte pattern.
pub async fn demo_files(
    size: Option<u64>,
    chunk_delay: Option<Duration>,
) -> anyhow::Result<(Sandbox, Vec<(Url, Option<String>)>)> {
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let delay = chunk_delay
        .unwrap_or(Duration::from_millis(if size.is_some() { 0 } else { 15 }))
        .as_millis();
    let sizes: Vec<(u64, &str)> = match size {
        Some(size) => vec![(size, "")],
        None => vec![
            (8 << 20, ""),
            (3 << 20, "&chunk_size=32768"),
            (2 << 20, "&no_length=1"),
        ],
    };
    let mut files = Vec::new();
    for (size, extra) in sizes {
        let url =
            Url::parse(&sandbox.url(&format!("/bytes/{size}?chunk_delay_ms={delay}{extra}")))?;
        // Hashing a huge benchmark file twice would measure sha2, not I/O.
        files.push((url, (size <= 64 << 20).then(|| pattern_sha256(size))));
    }
    Ok((sandbox, files))
}

/// What keeps a demo run's files available: the sandbox serving them and
/// the temporary directory they land in. Dropped at the end of the run.
pub struct Staging {
    _sandbox: Option<Sandbox>,
    _temp: Option<tempfile::TempDir>,
}

/// What a run downloads, and where: every `urls` entry (with its `sha256`,
/// in order) into `output_dir` (default: the current directory) or to
/// `output`; with no URL, the demo's files (`size`, `chunk_delay`) from an
/// in-process sandbox into a new temporary directory (or `output_dir`).
pub async fn plan(
    urls: &[Url],
    sha256: &[String],
    [output_dir, output]: [Option<&Path>; 2],
    size: Option<u64>,
    chunk_delay: Option<Duration>,
) -> anyhow::Result<(Staging, Vec<Job>)> {
    let (sandbox, files, temp) = if urls.is_empty() {
        let (sandbox, files) = demo_files(size, chunk_delay).await?;
        (Some(sandbox), files, Some(tempfile::tempdir()?))
    } else {
        let digests = sha256.iter().cloned().map(Some);
        let digests = digests.chain(std::iter::repeat(None));
        (None, urls.iter().cloned().zip(digests).collect(), None)
    };
    let dir = match (output_dir, &temp) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(temp)) => temp.path().to_path_buf(),
        (None, None) => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("create {}: {e}", dir.display()))?;
    let jobs = jobs(files, &dir, output)?;
    let staging = Staging {
        _sandbox: sandbox,
        _temp: temp,
    };
    Ok((staging, jobs))
}

/// Pairs URLs with destinations; two URLs with one destination is a usage error.
pub fn jobs(
    files: Vec<(Url, Option<String>)>,
    dir: &Path,
    output: Option<&Path>,
) -> anyhow::Result<Vec<Job>> {
    let mut jobs: Vec<Job> = Vec::new();
    for (url, sha256) in files {
        let dest = output.map_or_else(|| dir.join(file_name_for(&url)), Path::to_path_buf);
        if jobs.iter().any(|job| job.dest == dest) {
            let message = format!(
                "two URLs would both be saved as {}; use separate runs or --output",
                dest.display()
            );
            return Err(UsageError::new(message).into());
        }
        jobs.push(Job { url, dest, sha256 });
    }
    Ok(jobs)
}

/// The progress bars: one per download, drawn only on a terminal.
pub struct Bars(MultiProgress);

impl Bars {
    /// Bars on stderr when it is a terminal (piped stderr gets no control codes).
    pub fn new() -> Self {
        use std::io::IsTerminal;
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self(MultiProgress::with_draw_target(target))
    }

    /// A bar labelled with the file name of `url`.
    pub fn bar(&self, url: &Url) -> Bar {
        Bar(self
            .0
            .add(ProgressBar::new(0).with_message(file_name_for(url))))
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

/// An indicatif bar as a download [`Progress`].
pub struct Bar(pub ProgressBar);

impl Progress for Bar {
    fn started(&self, offset: u64, total: Option<u64>) {
        let template = if total.is_some() {
            "{msg:24!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}"
        } else {
            "{msg:24!} {spinner} {bytes:>10} {bytes_per_sec:>12} (size unknown)"
        };
        // The templates are constants that parse; a failure is a programming error.
        let style = ProgressStyle::with_template(template).expect("valid progress template");
        self.0.set_style(style.progress_chars("=> "));
        match total {
            Some(total) => self.0.set_length(total),
            // A spinner only moves when ticked; tick it from indicatif's thread.
            None => self.0.enable_steady_tick(Duration::from_millis(120)),
        }
        self.0.set_position(offset);
        self.0.reset_eta();
    }

    fn advanced(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

/// Prints the story (unless `json`) and builds the report.
pub fn report(jobs: &[Job], outcomes: &[Outcome], elapsed: Duration, json: bool) -> Report {
    let say = |line: String| {
        if !json {
            println!("{line}");
        }
    };
    let (mut total, mut failed, mut left) = (0, 0, 0);
    let mut rows = Vec::new();
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let (url, dest, part) = (job.url.as_str(), &job.dest, part_path(&job.dest));
        match outcome {
            Some((Ok(done), took)) => {
                total += done.bytes;
                let mb_s =
                    (done.bytes - done.resumed_from) as f64 / 1e6 / took.as_secs_f64().max(1e-9);
                let check = done
                    .sha256
                    .as_ref()
                    .map_or("length checked", |_| "length + sha256 checked");
                let resumed = match done.resumed_from {
                    0 => String::new(),
                    n => format!(", resumed at {n}"),
                };
                say(format!(
                    "ok   {} ({} bytes, {mb_s:.1} MB/s, {check}{resumed})",
                    dest.display(),
                    done.bytes
                ));
                rows.push(serde_json::json!({"url": url, "path": dest, "size_bytes": done.bytes,
                    "resumed_from_bytes": done.resumed_from, "took_s": took.as_secs_f64(), "sha256": done.sha256}));
            }
            Some((Err(err), _)) => {
                failed += 1;
                say(format!("err  {url}: {err} (nothing at {})", dest.display()));
                rows.push(serde_json::json!({"url": url, "path": dest, "error": err.to_string()}));
            }
            None => {
                left += 1;
                let kept = std::fs::metadata(&part).map_or(0, |m| m.len());
                say(format!(
                    "left {url}: stopped; {kept} bytes kept in {} for a resume",
                    part.display()
                ));
                rows.push(
                    serde_json::json!({"url": url, "path": dest, "left": true, "part_bytes": kept}),
                );
            }
        }
    }
    let rate = total as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9);
    let done = jobs.len() - failed - left;
    let rss = peak_rss_bytes();
    say(format!(
        "\n{done} of {} downloaded, {total} bytes in {:.2} s ({rate:.1} MB/s){}{}",
        jobs.len(),
        elapsed.as_secs_f64(),
        rss.map_or(String::new(), |rss| format!(
            ", peak RSS {:.1} MiB",
            rss as f64 / (1 << 20) as f64
        )),
        if left > 0 {
            format!("; interrupted, {left} left (run again to resume)")
        } else {
            String::new()
        },
    ));
    let failure = (failed > 0).then(|| format!("{failed} of {} downloads failed", jobs.len()));
    Report::ok()
        .figures(
            serde_json::json!({"files": rows, "downloaded": done, "failed": failed, "left": left,
            "total_bytes": total, "mb_per_s": rate, "peak_rss_bytes": rss}),
        )
        .fail_if(failure)
}

/// SHA-256 of the sandbox's `/bytes/{size}` body, computed locally.
pub fn pattern_sha256(size: u64) -> String {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(1 << 20);
        hasher.update(common::sandbox::pattern(offset, len as usize));
        offset += len;
    }
    hex(&hasher.finalize())
}

/// Peak resident set size (VmHWM) from /proc, on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs every job, at most `concurrency` at once, each with a progress bar
/// and the options `options` gives it (called as the job starts, so a
/// deadline can shrink with the run). A stop drops the downloads still
/// running, which keeps their `.part` files for a resume; their outcome is
/// `None`.
pub async fn download_all(
    client: &reqwest::Client,
    jobs: &[Job],
    concurrency: usize,
    options: impl Fn(&Job) -> DownloadOptions,
    stop: &CancellationToken,
) -> Vec<Outcome> {
    let bars = Bars::new();
    let mut outcomes: Vec<Outcome> = jobs.iter().map(|_| None).collect();
    let mut downloads = futures::stream::iter(jobs.iter().enumerate())
        .map(|(i, job)| {
            let (options, bar) = (options(job), bars.bar(&job.url));
            async move {
                let started = common::Stopwatch::start();
                let result = download(client, &job.url, &job.dest, &options, &bar).await;
                bar.0.finish();
                (i, result, started.elapsed())
            }
        })
        .buffer_unordered(concurrency);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            next = downloads.next() => match next {
                Some((i, result, took)) => outcomes[i] = Some((result, took)),
                None => break,
            },
        }
    }
    outcomes
}
