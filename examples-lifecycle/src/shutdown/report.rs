//! What each shutdown phase found, printable as one line per phase.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::Unfinished;

/// Phase 1: the listener is closed; what was still open at that moment.
#[derive(Debug, Clone, Serialize)]
pub struct IntakeStopped {
    /// Whether the listener was seen closed before the deadline.
    pub listener_closed: bool,
    /// Connections accepted over the server's life.
    pub connections_accepted: u64,
    /// Connections still open (being drained).
    pub connections_open: u64,
    /// Connections found in the kernel's backlog when intake stopped
    /// (handshake done, maybe a request sent): accepted then and served,
    /// not reset.
    pub connections_from_backlog: u64,
    /// `/jobs` requests being handled.
    pub requests_in_flight: u64,
    /// Jobs queued, not yet taken by a worker.
    pub jobs_queued: u64,
    /// Jobs a worker is running.
    pub jobs_in_progress: u64,
}

/// Phase 2: what completed during the drain, and what did not.
#[derive(Debug, Clone, Serialize)]
pub struct Drained {
    /// From the signal to the end of the drain.
    #[serde(rename = "elapsed_ms", serialize_with = "as_millis")]
    pub elapsed: Duration,
    /// `/jobs` requests answered during the drain.
    pub requests_answered: u64,
    /// `/jobs` requests answered over the server's life (any status): what
    /// clients must have received, to the request.
    pub requests_answered_total: u64,
    /// Jobs finished during the drain.
    pub jobs_finished: u64,
    /// Connections still open when the deadline aborted the server.
    pub connections_abandoned: u64,
    /// Connections that never sent a byte before the graceful close (idle
    /// clients): closed unread, no request lost.
    pub connections_closed_unread: u64,
    /// Accepted jobs not finished (empty unless the deadline expired).
    pub unfinished: Unfinished,
}

/// Phase 3: resources closed.
#[derive(Debug, Clone, Serialize)]
pub struct Closed {
    /// Journal records written by this process (0 if closing failed).
    pub journal_records: u64,
    /// Why closing the journal failed, if it did: data may be lost.
    pub journal_error: Option<String>,
}

/// One finished phase, handed to the caller's callback as it happens.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Phase 1.
    IntakeStopped(IntakeStopped),
    /// Phase 2.
    Drained(Drained),
    /// Phase 3.
    Closed(Closed),
}

/// Everything the shutdown found.
#[derive(Debug, Clone, Serialize)]
pub struct ShutdownReport {
    /// Phase 1.
    pub intake: IntakeStopped,
    /// Phase 2.
    pub drained: Drained,
    /// Phase 3.
    pub closed: Closed,
    /// The grace period given to phases 1 and 2.
    #[serde(rename = "grace_ms", serialize_with = "as_millis")]
    pub grace: Duration,
    /// Whether the grace period ran out (work was aborted): exit non-zero.
    pub deadline_expired: bool,
}

impl ShutdownReport {
    /// The failure to report when the deadline expired, as one line.
    pub fn deadline_error(&self) -> Option<String> {
        if !self.deadline_expired {
            return None;
        }
        let lost = &self.drained.unfinished;
        Some(format!(
            "drain timeout of {:?} expired: {} job(s) aborted in progress {:?}, {} queued job(s) never started {:?}, {} connection(s) abandoned",
            self.grace,
            lost.in_progress.len(),
            lost.in_progress,
            lost.queued.len(),
            lost.queued,
            self.drained.connections_abandoned,
        ))
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IntakeStopped(p) => write!(
                f,
                "phase 1 (stop intake): listener {}; {} connection(s) open of {} accepted ({} from the backlog), {} request(s) in flight, {} job(s) in progress, {} queued",
                if p.listener_closed {
                    "closed"
                } else {
                    "NOT closed before the deadline"
                },
                p.connections_open,
                p.connections_accepted,
                p.connections_from_backlog,
                p.requests_in_flight,
                p.jobs_in_progress,
                p.jobs_queued,
            ),
            Self::Drained(p) => {
                write!(
                    f,
                    "phase 2 (drain): {} request(s) answered, {} job(s) finished in {:.2}s",
                    p.requests_answered,
                    p.jobs_finished,
                    p.elapsed.as_secs_f64()
                )?;
                let lost = &p.unfinished;
                if lost.in_progress.is_empty()
                    && lost.queued.is_empty()
                    && p.connections_abandoned == 0
                {
                    f.write_str("; nothing left behind")
                } else {
                    write!(
                        f,
                        "; DEADLINE EXPIRED: aborted in progress {:?}, never started {:?}, {} connection(s) abandoned",
                        lost.in_progress, lost.queued, p.connections_abandoned
                    )
                }
            }
            Self::Closed(p) => match &p.journal_error {
                None => write!(
                    f,
                    "phase 3 (close resources): journal flushed and synced, {} record(s)",
                    p.journal_records
                ),
                Some(err) => write!(f, "phase 3 (close resources): FAILED: {err}"),
            },
        }
    }
}

fn as_millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64() * 1e3)
}
