//! The HTTP side of the job service: routes, handlers, request counting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::{AppState, Counters, Job, JobRequest, JobResult, Stats, Work};

/// Largest accepted request body; anything bigger is refused unread.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub(super) fn router(state: AppState) -> Router {
    // The counting middleware wraps /jobs only, so polling /stats does not
    // count as a request in flight.
    let jobs =
        Router::new()
            .route("/jobs", post(submit))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                count_requests,
            ));
    Router::new()
        .merge(jobs)
        .route("/stats", get(stats))
        .route("/health", get(|| async { "ok" }))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

pub(super) fn snapshot(state: &AppState) -> Stats {
    let c = &state.counters;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    Stats {
        connections_accepted: load(&state.connections.accepted),
        connections_open: load(&state.connections.open),
        requests_in_flight: load(&c.requests_in_flight),
        requests_answered: load(&c.requests_answered),
        jobs_accepted: load(&c.jobs_accepted),
        jobs_finished: load(&c.jobs_finished),
        jobs_refused: load(&c.jobs_refused),
        jobs_queued: (state.queue_tx.max_capacity() - state.queue_tx.capacity()) as u64,
    }
}

/// Puts a job on the queue without waiting: full or closed is an answer.
pub(super) fn enqueue(
    state: &AppState,
    work: Work,
    payload: String,
    reply: Option<oneshot::Sender<JobResult>>,
) -> Result<u64, StatusCode> {
    // Held until the send is done: see `AppState::accepting`.
    let accepting = state
        .accepting
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !*accepting {
        state.counters.jobs_refused.fetch_add(1, Ordering::Relaxed);
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    match state.queue_tx.try_send(Job {
        id,
        work,
        payload,
        reply,
    }) {
        Ok(()) => {
            state.counters.jobs_accepted.fetch_add(1, Ordering::Relaxed);
            Ok(id)
        }
        Err(_full_or_closed) => {
            state.counters.jobs_refused.fetch_add(1, Ordering::Relaxed);
            Err(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

#[derive(Debug, Deserialize)]
struct SubmitParams {
    #[serde(default)]
    wait: bool,
}

async fn submit(
    State(state): State<AppState>,
    Query(params): Query<SubmitParams>,
    Json(request): Json<JobRequest>,
) -> Response {
    let work = Duration::from_millis(request.work_ms);
    if work > state.max_work {
        let message = format!("work_ms must be at most {}", state.max_work.as_millis());
        return (StatusCode::UNPROCESSABLE_ENTITY, message).into_response();
    }
    let (reply, result) = if params.wait {
        let (tx, rx) = oneshot::channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let id = match enqueue(&state, Work::For(work), request.payload, reply) {
        Ok(id) => id,
        Err(status) => {
            return (
                status,
                [(header::RETRY_AFTER, "1")],
                "queue full or shutting down",
            )
                .into_response();
        }
    };
    match result {
        None => (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response(),
        Some(result) => match result.await {
            Ok(done) => Json(done).into_response(),
            // The sender was dropped: the job was abandoned by an abort.
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "job abandoned during shutdown",
            )
                .into_response(),
        },
    }
}

async fn stats(State(state): State<AppState>) -> Json<Stats> {
    Json(snapshot(&state))
}

/// Counts `/jobs` requests in flight (a guard, so a dropped handler future
/// is uncounted too) and answered.
async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    struct InFlight(Arc<Counters>);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.requests_in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
    state
        .counters
        .requests_in_flight
        .fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight(Arc::clone(&state.counters));
    let response = next.run(request).await;
    state
        .counters
        .requests_answered
        .fetch_add(1, Ordering::Relaxed);
    response
}
