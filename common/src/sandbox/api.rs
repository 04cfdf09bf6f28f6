//! `/api/users/{name}`: a GitHub-like JSON API that enforces its own limit.
//!
//! Like a real API, the sandbox protects itself: a token bucket of
//! `api_rps` tokens a second, `api_burst` deep, shared by all clients. A
//! request that finds the bucket empty gets `429 Too Many Requests` with
//! `Retry-After` (whole seconds, rounded up, as HTTP requires) and the
//! `X-RateLimit-*` headers GitHub sends. A well-behaved client
//! (`rate-limited-client`) never sees one.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::time::Instant;

use super::{SharedState, sleep_or_shutdown, splitmix64};

/// The server side of the rate limit: a classic token bucket.
#[derive(Debug)]
pub(super) struct ServerLimiter {
    rate: Option<f64>,
    burst: f64,
    // std Mutex: one arithmetic update per request, never held across an await.
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl ServerLimiter {
    pub(super) fn new(rate: Option<f64>, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate.filter(|r| *r > 0.0),
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                updated: Instant::now(),
            }),
        }
    }

    /// Takes a token, or says how long until one is available.
    fn try_acquire(&self) -> Result<u64, std::time::Duration> {
        let Some(rate) = self.rate else {
            return Ok(u64::MAX);
        };
        // Poisoning cannot leave the bucket inconsistent (two plain fields).
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.updated).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(bucket.tokens as u64)
        } else {
            Err(std::time::Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate,
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct UserQuery {
    #[serde(default)]
    malformed: u8,
}

/// GitHub logins: 1 to 39 ASCII alphanumerics or single hyphens.
fn valid_login(name: &str) -> bool {
    (1..=39).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

pub(super) async fn user(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    Query(query): Query<UserQuery>,
) -> Response {
    let remaining = match state.api_limiter.try_acquire() {
        Ok(remaining) => remaining,
        Err(wait) => {
            state
                .counters
                .api_rate_limited
                .fetch_add(1, Ordering::Relaxed);
            let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(serde_json::json!({ "message": "API rate limit exceeded" })),
            )
                .into_response();
            let h = response.headers_mut();
            h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            h.insert("x-ratelimit-remaining", HeaderValue::from(0));
            return response;
        }
    };
    state.counters.api_ok.fetch_add(1, Ordering::Relaxed);
    if !sleep_or_shutdown(&state, state.config.api_latency).await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }

    let mut response = if !valid_login(&name) {
        (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "message": "Not Found" })),
        )
            .into_response()
    } else if query.malformed != 0 {
        // Truncated JSON with the right content type: what a proxy that cut
        // the body, or a buggy server, hands a client.
        (
            [(header::CONTENT_TYPE, "application/json")],
            format!(r#"{{"login":"{name}","id":"#),
        )
            .into_response()
    } else {
        Json(user_json(&name)).into_response()
    };
    if remaining != u64::MAX {
        response
            .headers_mut()
            .insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    }
    response
}

/// A deterministic user: the same login always gets the same figures.
fn user_json(login: &str) -> serde_json::Value {
    // FNV-1a of the login, then mixed: stable across runs and platforms.
    let hash = login.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let r = splitmix64(hash);
    serde_json::json!({
        "login": login,
        "id": r % 100_000_000,
        "type": "User",
        "name": format!("User {login}"),
        "company": null,
        "location": "Loopback",
        "html_url": format!("https://github.invalid/{login}"),
        "public_repos": (r >> 8) % 200,
        "followers": (r >> 16) % 10_000,
        "following": (r >> 24) % 500,
        "created_at": format!("20{:02}-01-01T00:00:00Z", 8 + (r >> 32) % 17),
    })
}
