//! A TCP listener for axum that counts connections, drains its backlog when
//! intake stops, and reports its own close.
//!
//! **The backlog trap (issue 15.19).** The kernel completes the TCP
//! handshake before the application calls `accept`: a client can connect
//! *and send its request* while the connection waits in the listen
//! backlog. Closing the listener then resets every such connection, and the
//! client sees "connection reset" for a request it had every right to
//! think was received. So when intake stops, [`IntakeListener`] first hands
//! axum every connection already queued (accepting without waiting), and
//! only then closes the socket. A connection whose handshake completes in
//! the microseconds between the last empty `accept` and the close is still
//! reset; no portable API closes that window, and such a client never got
//! past the handshake, which is what "intake stopped" means.
//!
//! **The first-read gate.** hyper (through `hyper-util`'s auto builder)
//! drops a connection that is told to shut down gracefully before it has
//! read its first bytes. So axum's graceful-shutdown signal is given only
//! once every open connection has read something (its request), or after
//! [`FIRST_READ_WAIT`] for a client that connected and sent nothing (an
//! idle connection, closed unread: no request was lost).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long the gate waits for a connection to send its first bytes once
/// intake stopped; one that has sent nothing by then is idle.
pub const FIRST_READ_WAIT: Duration = Duration::from_millis(500);

/// Connection counters kept by the listener (and shown by `/stats`).
/// Relaxed atomics: independent tallies, no ordering between them.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    /// TCP connections accepted since start (backlog ones included).
    pub accepted: AtomicU64,
    /// TCP connections currently open.
    pub open: AtomicU64,
    /// Connections found waiting in the kernel's backlog when intake
    /// stopped, accepted then and served.
    pub from_backlog: AtomicU64,
    /// Open connections that have not read a byte yet (the gate waits).
    unread: AtomicU64,
    /// Connections the gate gave up on: open and unread after
    /// [`FIRST_READ_WAIT`] (idle clients, closed without a request).
    pub closed_unread: AtomicU64,
    /// Woken when `unread` drops.
    read_progress: Notify,
}

impl ConnectionCounters {
    /// Waits until every open connection has read something, at most `wait`.
    /// Returns the connections still unread (idle ones, closed unread).
    pub async fn first_reads(&self, wait: Duration) -> u64 {
        let all_read = async {
            loop {
                // Registered before the check, so a drop between the check
                // and the await is not missed.
                let notified = self.read_progress.notified();
                if self.unread.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        // Err: some never sent a byte within `wait`; they are idle.
        let _ = tokio::time::timeout(wait, all_read).await;
        let unread = self.unread.load(Ordering::Acquire);
        self.closed_unread.store(unread, Ordering::Relaxed);
        unread
    }
}

/// A `TcpListener` that counts connections, drains its backlog when `stop`
/// is cancelled, and signals when its socket is closed.
#[derive(Debug)]
pub struct IntakeListener {
    // None once intake stopped (or in Drop).
    inner: Option<TcpListener>,
    // The same socket as a std listener while its backlog is drained.
    draining: Option<std::net::TcpListener>,
    counters: Arc<ConnectionCounters>,
    stop: CancellationToken,
    closed: CancellationToken,
}

impl IntakeListener {
    /// Wraps `inner`. When `stop` is cancelled it accepts what is already
    /// queued, closes the socket and cancels `closed`.
    pub fn new(
        inner: TcpListener,
        counters: Arc<ConnectionCounters>,
        stop: CancellationToken,
        closed: CancellationToken,
    ) -> Self {
        Self {
            inner: Some(inner),
            draining: None,
            counters,
            stop,
            closed,
        }
    }

    /// Closes the socket first, so whoever hears the notice can rely on new
    /// connections being refused already.
    fn close(&mut self) {
        drop(self.inner.take());
        drop(self.draining.take());
        self.closed.cancel();
    }

    fn wrap(&self, stream: TcpStream) -> CountedStream {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        CountedStream::new(stream, &self.counters)
    }
}

impl Drop for IntakeListener {
    fn drop(&mut self) {
        self.close();
    }
}

impl axum::serve::Listener for IntakeListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        if !self.stop.is_cancelled()
            && let Some(inner) = self.inner.as_mut()
        {
            tokio::select! {
                // biased: a connection that is ready is taken before the
                // stop is looked at; the drain below would take it anyway.
                biased;
                // axum's impl retries (and backs off on) errors like EMFILE.
                (stream, addr) = axum::serve::Listener::accept(inner) => {
                    return (self.wrap(stream), addr);
                }
                () = self.stop.cancelled() => {}
            }
        }
        // Intake stopped: hand over what the kernel already queued, without
        // waiting for more. Through the std listener, because tokio's
        // accept trusts the reactor's readiness, which no event may have
        // reported yet for connections that arrived just now; a
        // non-blocking `accept(2)` asks the kernel itself.
        if let Some(inner) = self.inner.take() {
            match inner.into_std() {
                Ok(std) => self.draining = Some(std),
                Err(err) => tracing::warn!("cannot drain the backlog: {err}"),
            }
        }
        while let Some(std) = &self.draining {
            match std.accept() {
                Ok((stream, addr)) => {
                    // Accepted sockets do not inherit O_NONBLOCK; tokio needs it.
                    let stream = stream
                        .set_nonblocking(true)
                        .and_then(|()| TcpStream::from_std(stream));
                    match stream {
                        Ok(stream) => {
                            self.counters.from_backlog.fetch_add(1, Ordering::Relaxed);
                            return (self.wrap(stream), addr);
                        }
                        // This one is lost (dropped: reset); try the next.
                        Err(err) => tracing::warn!("backlog connection dropped: {err}"),
                    }
                }
                // WouldBlock: the backlog is empty. Any other error: stop
                // draining (what is left is reset when the socket closes).
                // Never EINTR: std's `accept` retries that itself.
                Err(_) => break,
            }
        }
        // The backlog is empty: close, then never accept again; axum
        // leaves its accept loop on the graceful-shutdown signal.
        self.close();
        std::future::pending().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        match (&self.inner, &self.draining) {
            (Some(inner), _) => inner.local_addr(),
            (None, Some(std)) => std.local_addr(),
            (None, None) => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "listener closed",
            )),
        }
    }
}

/// A stream (the listener's are `TcpStream`s) that keeps the open and
/// unread counts. Generic so that its plain delegation is tested over
/// streams whose flush and vectored writes differ from a socket's.
#[derive(Debug)]
pub struct CountedStream<S = TcpStream> {
    inner: S,
    counters: Arc<ConnectionCounters>,
    // Not read a byte yet (counted in `ConnectionCounters::unread`).
    unread: bool,
}

impl<S> CountedStream<S> {
    /// Counts `inner` as open and unread until it reads or drops.
    fn new(inner: S, counters: &Arc<ConnectionCounters>) -> Self {
        counters.open.fetch_add(1, Ordering::Relaxed);
        counters.unread.fetch_add(1, Ordering::AcqRel);
        Self {
            inner,
            counters: Arc::clone(counters),
            unread: true,
        }
    }

    fn mark_read(&mut self) {
        if std::mem::take(&mut self.unread) {
            self.counters.unread.fetch_sub(1, Ordering::AcqRel);
            self.counters.read_progress.notify_waiters();
        }
    }
}

impl<S> Drop for CountedStream<S> {
    fn drop(&mut self) {
        self.mark_read();
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

// Plain delegation: the stream is Unpin, so Pin::new on the field is sound.
impl<S: AsyncRead + Unpin> AsyncRead for CountedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        // Any answer (bytes, EOF or an error) means hyper is past the
        // point where a graceful shutdown would drop the connection unread.
        if polled.is_ready() {
            this.mark_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

    fn counters() -> Arc<ConnectionCounters> {
        Arc::new(ConnectionCounters::default())
    }

    fn counts(c: &ConnectionCounters) -> (u64, u64) {
        (
            c.open.load(Ordering::Relaxed),
            c.unread.load(Ordering::Relaxed),
        )
    }

    #[tokio::test]
    async fn a_stream_is_open_until_dropped_and_unread_until_its_first_read() {
        let c = counters();
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = CountedStream::new(near, &c);
        assert_eq!(counts(&c), (1, 1));
        far.write_all(b"GET").await.unwrap();
        let mut buf = [0; 3];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!((&buf, counts(&c)), (b"GET", (1, 0)));
        drop(stream);
        assert_eq!(counts(&c), (0, 0), "a read stream is not unread twice");
        // Dropped unread: both counts go back.
        let (near, _far) = tokio::io::duplex(64);
        drop(CountedStream::new(near, &c));
        assert_eq!(counts(&c), (0, 0));
    }

    #[tokio::test]
    async fn writes_flushes_and_shutdowns_reach_the_inner_stream() {
        let c = counters();
        let (near, mut far) = tokio::io::duplex(64);
        // A buffering inner stream: its bytes move only on flush.
        let mut stream = CountedStream::new(BufWriter::new(near), &c);
        stream.write_all(b"hello").await.unwrap();
        let vectored = [io::IoSlice::new(b", "), io::IoSlice::new(b"world")];
        let written = stream.write_vectored(&vectored).await.unwrap();
        assert_eq!(written, 7, "BufWriter takes all of a small vectored write");
        stream.flush().await.unwrap();
        let mut buf = [0; 12];
        let arrived = tokio::time::timeout(Duration::from_secs(10), far.read_exact(&mut buf)).await;
        assert!(arrived.is_ok(), "nothing arrived: the flush stopped short");
        assert_eq!(&buf, b"hello, world");
        stream.shutdown().await.unwrap();
        assert_eq!(far.read(&mut buf).await.unwrap(), 0, "shut down: EOF");
    }

    /// A writer with no vectored writes (the trait's default): a duplex
    /// pipe and tokio's `BufWriter` both have them.
    struct Unvectored(tokio::io::DuplexStream);

    impl AsyncWrite for Unvectored {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn vectored_writes_are_as_the_inner_stream_says() {
        let c = counters();
        let (near, _far) = tokio::io::duplex(64);
        assert!(CountedStream::new(near, &c).is_write_vectored());
        let (near, _far) = tokio::io::duplex(64);
        let unvectored = CountedStream::new(Unvectored(near), &c);
        assert!(!unvectored.is_write_vectored());
    }
}
