//! A TCP listener for axum that counts connections and reports its own close.
//!
//! axum's graceful shutdown drops the listener when it leaves its accept
//! loop, but does not tell anyone. Wrapping the listener lets phase 1 wait
//! for the drop (the moment the kernel starts refusing new connections) and
//! lets `/stats` show open connections, through a guard in each stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::jobs::Counters;

/// A `TcpListener` that counts connections and signals when it is dropped.
#[derive(Debug)]
pub struct IntakeListener {
    // Option only so Drop can close the socket *before* sending the notice.
    inner: Option<TcpListener>,
    counters: Arc<Counters>,
    closed_tx: Option<oneshot::Sender<()>>,
}

impl IntakeListener {
    /// Wraps `inner`; `closed_tx` fires when this listener is dropped.
    pub fn new(
        inner: TcpListener,
        counters: Arc<Counters>,
        closed_tx: oneshot::Sender<()>,
    ) -> Self {
        Self {
            inner: Some(inner),
            counters,
            closed_tx: Some(closed_tx),
        }
    }
}

impl Drop for IntakeListener {
    fn drop(&mut self) {
        // Close the socket first, so whoever hears the notice can rely on
        // new connections being refused already.
        drop(self.inner.take());
        if let Some(closed_tx) = self.closed_tx.take() {
            // Err: nobody waits for the notice any more; nothing to do.
            let _ = closed_tx.send(());
        }
    }
}

impl axum::serve::Listener for IntakeListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own impl for TcpListener retries (and backs off on) accept
        // errors such as EMFILE; delegate to it rather than repeat it.
        // `inner` is None only inside Drop, never while axum calls accept.
        let inner = self.inner.as_mut().expect("listener is open until dropped");
        let (stream, addr) = axum::serve::Listener::accept(inner).await;
        self.counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        self.counters
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        let stream = CountedStream {
            inner: stream,
            counters: Arc::clone(&self.counters),
        };
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        match &self.inner {
            Some(inner) => inner.local_addr(),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "listener closed",
            )),
        }
    }
}

/// A `TcpStream` that decrements the open-connection count when dropped.
#[derive(Debug)]
pub struct CountedStream {
    inner: TcpStream,
    counters: Arc<Counters>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

// Plain delegation: TcpStream is Unpin, so Pin::new on the field is sound.
impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
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
