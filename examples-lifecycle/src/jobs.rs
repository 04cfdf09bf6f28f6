//! A small job service built to be shut down: HTTP intake, a bounded queue,
//! workers, and a journal file.
//!
//! This is the "realistic service" behind seed Example 15 (graceful
//! shutdown). The seed's workers are `while not shutdown_event.is_set()`
//! loops that do no work anyone waits for, so it never has to answer the
//! hard question: what happens to the request a client is waiting on, and
//! to the job a worker holds, when the signal arrives? Here:
//!
//! - `POST /jobs` takes `{"work_ms": 120, "payload": "..."}` and puts a job
//!   on a **bounded** queue (`try_send`: a full queue answers 503 with
//!   `Retry-After` rather than buffering without limit). With `?wait=true`
//!   the request stays open until a worker has finished the job and returns
//!   its result; without, it answers 202 with the job id.
//! - Workers take one job at a time. They do not watch a cancellation token:
//!   a job in hand is always finished. They stop when the queue is closed
//!   *and* empty, which is how queued jobs get finished during the drain.
//! - Every finished job is appended to a journal (JSON lines) by a single
//!   writer task, the resource closed last: it must outlive the workers.
//! - `GET /stats` shows the counters the shutdown phases report.
//!
//! A job "works" by waiting `work_ms` (standing in for a downstream call)
//! and then digesting its payload. `--stuck-job` enqueues a job whose
//! downstream never answers, to show the grace deadline expiring.
//!
//! Primitives: axum `Router` + `middleware::from_fn_with_state`,
//! `tokio::sync::{mpsc, oneshot, Mutex}`, `tokio::task::JoinSet`,
//! `CancellationToken`, atomics for counters.
//!
//! ```text
//! cargo run --bin graceful-shutdown -- --serve --port 8090
//! curl -s -XPOST 'localhost:8090/jobs?wait=true' -H 'content-type: application/json' -d '{"work_ms":500}'
//! ```

mod http;
mod journal;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use journal::Journal;

pub use crate::shutdown::{ConnectionCounters, Unfinished};

/// How the service is sized.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Worker tasks.
    pub workers: usize,
    /// Queue capacity: jobs accepted but not yet taken by a worker.
    pub queue_capacity: usize,
    /// Largest `work_ms` a job may ask for.
    pub max_work: Duration,
}

/// A job as submitted over HTTP.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobRequest {
    /// How long the job's downstream call takes, in milliseconds.
    #[serde(default)]
    pub work_ms: u64,
    /// Data to digest.
    #[serde(default)]
    pub payload: String,
}

/// A finished job, as returned to a waiting client and written to the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job's id.
    pub id: u64,
    /// Which worker ran it.
    pub worker: usize,
    /// How long its downstream call took, in milliseconds.
    pub work_ms: u64,
    /// FNV-1a digest of the payload, hex.
    pub digest: String,
}

/// Counters read by `/stats` and by the shutdown phases. Relaxed atomics:
/// each is an independent tally, no ordering between them is relied on.
/// (Connections are counted by the listener: [`ConnectionCounters`].)
#[derive(Debug, Default)]
pub struct Counters {
    /// `/jobs` requests whose handler is running.
    pub requests_in_flight: AtomicU64,
    /// `/jobs` requests answered (any status).
    pub requests_answered: AtomicU64,
    /// Jobs put on the queue.
    pub jobs_accepted: AtomicU64,
    /// Jobs finished by a worker.
    pub jobs_finished: AtomicU64,
    /// Submissions refused (queue full or shutting down).
    pub jobs_refused: AtomicU64,
}

/// A snapshot of [`Counters`] plus the queue depth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // field names mirror Counters one to one
pub struct Stats {
    pub connections_accepted: u64,
    pub connections_open: u64,
    pub requests_in_flight: u64,
    pub requests_answered: u64,
    pub jobs_accepted: u64,
    pub jobs_finished: u64,
    pub jobs_refused: u64,
    pub jobs_queued: u64,
}

/// Work a job does once a worker holds it.
#[derive(Debug)]
enum Work {
    For(Duration),
    /// A downstream that never answers (`--stuck-job`).
    Forever,
}

#[derive(Debug)]
struct Job {
    id: u64,
    work: Work,
    payload: String,
    // None for fire-and-forget (202) submissions.
    reply: Option<oneshot::Sender<JobResult>>,
}

/// What the handlers share. Cheap to clone: a sender and a few `Arc`s.
#[derive(Debug, Clone)]
struct AppState {
    queue_tx: mpsc::Sender<Job>,
    // RwLock, not an AtomicBool (issue 15.20): `enqueue` holds the read
    // guard from the check to the `try_send`, and `close_queue` takes the
    // write guard, so once `close_queue` returns no submission can still
    // land in the queue. An atomic check-then-send left a window in which
    // a job arrived after the workers had exited and was never run or
    // reported. std RwLock: never held across an .await.
    accepting: Arc<RwLock<bool>>,
    connections: Arc<ConnectionCounters>,
    next_id: Arc<AtomicU64>,
    counters: Arc<Counters>,
    max_work: Duration,
}

/// The running service: handlers' shared state, the workers, the journal.
#[derive(Debug)]
pub struct JobService {
    state: AppState,
    // tokio Mutex: a worker holds the guard across `recv().await`, so that
    // exactly one idle worker waits on the queue at a time.
    queue_rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    queue_closed: CancellationToken,
    // std Mutex: worker -> job id it holds; never held across an .await.
    held: Arc<StdMutex<HashMap<usize, u64>>>,
    workers: JoinSet<()>,
    journal: Journal,
}

impl JobService {
    /// Starts the workers; results are journaled to `journal`.
    pub fn start(config: &JobsConfig, journal: Journal) -> Self {
        let (queue_tx, queue_rx) = mpsc::channel(config.queue_capacity.max(1));
        let mut service = Self {
            state: AppState {
                queue_tx,
                accepting: Arc::new(RwLock::new(true)),
                connections: Arc::default(),
                next_id: Arc::new(AtomicU64::new(1)),
                counters: Arc::default(),
                max_work: config.max_work,
            },
            queue_rx: Arc::new(Mutex::new(queue_rx)),
            queue_closed: CancellationToken::new(),
            held: Arc::default(),
            workers: JoinSet::new(),
            journal,
        };
        for worker in 0..config.workers.max(1) {
            let run = service.worker(worker);
            service.workers.spawn(run);
        }
        service
    }

    /// The HTTP routes: `POST /jobs`, `GET /stats`, `GET /health`.
    pub fn router(&self) -> Router {
        http::router(self.state.clone())
    }

    /// The job counters.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.state.counters)
    }

    /// The connection counters the intake listener keeps (shown by `/stats`).
    pub fn connections(&self) -> Arc<ConnectionCounters> {
        Arc::clone(&self.state.connections)
    }

    /// A snapshot of the counters and the queue depth.
    pub fn stats(&self) -> Stats {
        http::snapshot(&self.state)
    }

    /// Enqueues a fire-and-forget job (as `POST /jobs` without `wait`);
    /// returns its id, or an error when the queue is full or closed.
    pub fn submit(&self, request: JobRequest) -> anyhow::Result<u64> {
        let work = Duration::from_millis(request.work_ms).min(self.state.max_work);
        http::enqueue(&self.state, Work::For(work), request.payload, None)
            .map_err(|status| anyhow::anyhow!("job refused: {status}"))
    }

    /// Enqueues a job whose downstream never answers; returns its id.
    pub fn submit_stuck_job(&self) -> anyhow::Result<u64> {
        http::enqueue(&self.state, Work::Forever, String::new(), None)
            .map_err(|status| anyhow::anyhow!("cannot enqueue the stuck job: {status}"))
    }

    /// Stops taking submissions and lets workers finish what is queued, then
    /// exit. Call once the HTTP server has drained.
    pub fn close_queue(&self) {
        // The write guard waits out any `enqueue` between its check and
        // its send: after this line every submission is refused.
        *self
            .state
            .accepting
            .write()
            .unwrap_or_else(PoisonError::into_inner) = false;
        self.queue_closed.cancel();
    }

    /// Waits for every worker to exit. Cancel-safe: dropped by a timeout,
    /// the workers stay in the set for [`JobService::abort_workers`].
    pub async fn join_workers(&mut self) {
        while let Some(joined) = self.workers.join_next().await {
            // Cancelled is the expected result of abort_workers; a panic
            // is a bug in a job and worth an error line.
            if let Err(err) = joined
                && err.is_panic()
            {
                tracing::error!("worker panicked: {err}");
            }
        }
    }

    /// Aborts the workers and reports every accepted job not finished:
    /// held by an aborted worker, or still queued. After a clean
    /// [`JobService::join_workers`] it aborts nothing and must find
    /// nothing; anything it does find is reported, never silently lost.
    pub async fn abort_workers(&mut self) -> Unfinished {
        self.workers.abort_all();
        self.join_workers().await;
        // Aborted workers never cleared their entry: those are the jobs lost
        // mid-way. Sorted so reports are stable.
        let mut in_progress: Vec<u64> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .copied()
            .collect();
        in_progress.sort_unstable();
        let mut unfinished = Unfinished {
            in_progress,
            queued: Vec::new(),
        };
        // The aborted workers dropped their guards, so the lock is free.
        let mut queue = self.queue_rx.lock().await;
        queue.close();
        while let Ok(job) = queue.try_recv() {
            // Dropping the job drops its reply sender: a waiting request
            // is answered 503 "abandoned" instead of hanging.
            unfinished.queued.push(job.id);
        }
        unfinished
    }

    /// Closes the journal: flushes, fsyncs, returns the records written.
    pub async fn close_journal(self) -> std::io::Result<u64> {
        self.journal.close().await
    }

    fn worker(&self, worker: usize) -> impl Future<Output = ()> + Send + 'static {
        let queue = Arc::clone(&self.queue_rx);
        let closed = self.queue_closed.clone();
        let held = Arc::clone(&self.held);
        let counters = Arc::clone(&self.state.counters);
        let journal = self.journal.writer();
        async move {
            loop {
                let job = {
                    let mut queue = queue.lock().await;
                    tokio::select! {
                        // biased: a queued job always wins over "closed", so
                        // closing never strands work in the queue.
                        biased;
                        job = queue.recv() => job,
                        () = closed.cancelled() => queue.try_recv().ok(),
                    }
                };
                let Some(job) = job else { break };
                held.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(worker, job.id);
                let result = run_job(worker, &job).await;
                journal.record(&result).await;
                counters.jobs_finished.fetch_add(1, Ordering::Relaxed);
                held.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&worker);
                if let Some(reply) = job.reply {
                    // Err: the client went away; the job is still done and journaled.
                    let _ = reply.send(result);
                }
            }
            tracing::debug!(worker, "queue closed and empty, worker exits");
        }
    }
}

async fn run_job(worker: usize, job: &Job) -> JobResult {
    let work_ms = match job.work {
        Work::For(duration) => {
            tokio::time::sleep(duration).await;
            duration.as_millis() as u64
        }
        Work::Forever => std::future::pending().await,
    };
    // FNV-1a: tiny, deterministic, and enough to show the payload was read.
    let digest = job
        .payload
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    JobResult {
        id: job.id,
        worker,
        work_ms,
        digest: format!("{digest:016x}"),
    }
}

/// The job service under [`serve_until`](crate::shutdown::serve_until):
/// refuse submissions, let the workers finish the queue, close the journal.
impl crate::shutdown::Drain for JobService {
    fn router(&self) -> Router {
        JobService::router(self)
    }

    fn connections(&self) -> Arc<ConnectionCounters> {
        JobService::connections(self)
    }

    fn work(&self) -> crate::shutdown::WorkStats {
        let stats = self.stats();
        crate::shutdown::WorkStats {
            requests_in_flight: stats.requests_in_flight,
            requests_answered: stats.requests_answered,
            queued: stats.jobs_queued,
            // Relaxed counters read one by one can be momentarily
            // inconsistent: saturate rather than underflow.
            in_progress: stats
                .jobs_accepted
                .saturating_sub(stats.jobs_finished)
                .saturating_sub(stats.jobs_queued),
            finished: stats.jobs_finished,
        }
    }

    fn stop_work_intake(&mut self) {
        self.close_queue();
    }

    fn finish_work(&mut self) -> impl Future<Output = ()> + Send {
        self.join_workers()
    }

    fn abort_work(&mut self) -> impl Future<Output = Unfinished> + Send {
        self.abort_workers()
    }

    async fn close(self) -> anyhow::Result<u64> {
        Ok(self.close_journal().await?)
    }
}
