//! `/ws/echo`: a WebSocket echo that can misbehave on request.
//!
//! - `?drop_after=N`: after echoing N messages the server drops the
//!   connection. By default it cuts the TCP stream without a Close frame
//!   (what a crashed server or a NAT timeout looks like); `&drop_mode=close`
//!   sends Close 1012 (service restart) first.
//! - `?ignore_pings=1`: after the handshake the server neither reads nor
//!   writes, so pings go unanswered: a half-open connection that only a
//!   client-side pong deadline can detect.

use std::sync::atomic::Ordering;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{MAX_DELAY, MAX_WS_MESSAGE, SharedState};

/// Close code 1012: the server is restarting; clients should reconnect.
const CLOSE_SERVICE_RESTART: u16 = 1012;
/// Close code 1001: the server is going away (shutdown).
const CLOSE_GOING_AWAY: u16 = 1001;

#[derive(Debug, Deserialize)]
pub(super) struct EchoQuery {
    drop_after: Option<u64>,
    #[serde(default)]
    drop_mode: DropMode,
    #[serde(default)]
    ignore_pings: u8,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DropMode {
    #[default]
    Abort,
    Close,
}

pub(super) async fn echo(
    State(state): State<SharedState>,
    Query(query): Query<EchoQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| async move {
            state
                .counters
                .ws_connections
                .fetch_add(1, Ordering::Relaxed);
            if query.ignore_pings != 0 {
                black_hole(&state, socket).await;
            } else {
                serve_echo(&state, socket, query).await;
            }
        })
}

/// Holds the socket without touching it until shutdown or [`MAX_DELAY`].
/// Not reading also means tungstenite never sends its automatic pongs.
async fn black_hole(state: &SharedState, socket: WebSocket) {
    tokio::select! {
        () = state.shutdown.cancelled() => {}
        () = tokio::time::sleep(MAX_DELAY) => {}
    }
    drop(socket);
}

async fn serve_echo(state: &SharedState, mut socket: WebSocket, query: EchoQuery) {
    let mut echoed = 0u64;
    loop {
        if query.drop_after.is_some_and(|n| echoed >= n) {
            if let DropMode::Close = query.drop_mode {
                let frame = CloseFrame {
                    code: CLOSE_SERVICE_RESTART,
                    reason: "drop_after reached".into(),
                };
                // The connection is being dropped either way; a failed
                // Close only means the peer is already gone.
                let _ = socket.send(Message::Close(Some(frame))).await;
            }
            return; // dropping the socket closes TCP without a Close frame
        }
        let message = tokio::select! {
            message = socket.recv() => message,
            () = state.shutdown.cancelled() => {
                let frame = CloseFrame { code: CLOSE_GOING_AWAY, reason: "sandbox shutting down".into() };
                // Best effort on the way out; the peer may be gone already.
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
        };
        let reply = match message {
            // Peer gone, or a protocol error such as an oversized message:
            // tungstenite has already answered with the right close code.
            None | Some(Err(_)) => return,
            Some(Ok(Message::Text(text))) => Message::Text(text),
            Some(Ok(Message::Binary(data))) => Message::Binary(data),
            // tungstenite queues the pong itself; it goes out on the next write or read.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) => return,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
        echoed += 1;
    }
}
