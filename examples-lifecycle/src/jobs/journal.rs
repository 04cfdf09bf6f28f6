//! The journal: one writer task owns the file; workers send it records.
//!
//! Owning the file in one task (actor style) means no lock around it and a
//! single place that flushes. Closing is ordered: the file can only be
//! flushed and synced once every sender is gone, i.e. after the workers
//! have exited, which is why it is the last shutdown phase.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::JobResult;

/// Records waiting for the writer; a full buffer makes workers wait
/// (backpressure) instead of growing memory.
const JOURNAL_BUFFER: usize = 256;

/// An append-only JSON-lines file of finished jobs.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    tx: mpsc::Sender<JobResult>,
    writer: JoinHandle<io::Result<u64>>,
}

/// A handle the workers use to append records.
#[derive(Debug, Clone)]
pub(super) struct JournalWriter {
    tx: mpsc::Sender<JobResult>,
}

impl JournalWriter {
    pub(super) async fn record(&self, result: &JobResult) {
        if self.tx.send(result.clone()).await.is_err() {
            // The writer task ended early, which only an I/O error causes;
            // close() reports that error, here we just note the lost record.
            tracing::error!(
                job = result.id,
                "journal writer is gone, record not written"
            );
        }
    }
}

impl Journal {
    /// Opens (appends to) the journal at `path` and starts its writer task.
    pub async fn open(path: &Path) -> io::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        let (tx, rx) = mpsc::channel(JOURNAL_BUFFER);
        Ok(Self {
            path: path.to_owned(),
            tx,
            writer: tokio::spawn(write_records(file, rx)),
        })
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn writer(&self) -> JournalWriter {
        JournalWriter {
            tx: self.tx.clone(),
        }
    }

    /// Waits for every writer handle to go, flushes and fsyncs the file, and
    /// returns how many records this process wrote.
    pub async fn close(self) -> io::Result<u64> {
        drop(self.tx);
        match self.writer.await {
            Ok(written) => written,
            Err(err) => Err(io::Error::other(format!(
                "journal writer task failed: {err}"
            ))),
        }
    }
}

async fn write_records(
    file: tokio::fs::File,
    mut rx: mpsc::Receiver<JobResult>,
) -> io::Result<u64> {
    let mut out = BufWriter::new(file);
    let mut written = 0;
    // Ends when every sender (the Journal and each worker's copy) is dropped.
    while let Some(record) = rx.recv().await {
        let mut line = serde_json::to_vec(&record)?;
        line.push(b'\n');
        out.write_all(&line).await?;
        written += 1;
    }
    out.flush().await?;
    // Flushed bytes are in the OS; sync_all makes them survive a power cut.
    out.into_inner().sync_all().await?;
    Ok(written)
}
