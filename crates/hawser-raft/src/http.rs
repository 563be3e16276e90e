//! The HTTP API of a node, on axum.
//!
//! | Request | Success | Body |
//! |---|---|---|
//! | `PUT /kv/{key}` with the value as the body | 200 once committed | `{"key", "value", "previous"}` |
//! | `GET /kv/{key}` | 200, or 404 if absent | `{"key", "value"}` |
//! | `GET /status` | 200 | [`crate::app::Status`] |
//!
//! Any node accepts both writes and reads: a follower forwards them to the leader through the
//! node's [`crate::forward::Forward`] seam, so a read is linearizable wherever it is sent.
//!
//! Errors are JSON `{"error": "...", "leader": <id or null>}` with these statuses:
//!
//! - 400: the key is empty or longer than [`HttpLimits::max_key`], or the value is not UTF-8;
//! - 413: the body is longer than [`HttpLimits::max_body`];
//! - 503: no leader is known, the leader is unreachable or lost its quorum, or the node stopped;
//!   for a write, `"outcome": "unknown"` says the write may still commit;
//! - 504: the request timed out (a write's outcome is then unknown too);
//! - 500: anything else openraft refused.

use std::io;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::app::{KvNode, ReadError, Status, WriteError};
use crate::forward::ForwardError;
use crate::types::{NodeId, Request};

/// Bounds on what the HTTP API accepts.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct HttpLimits {
    /// The largest value, in bytes (default 64 KiB).
    pub max_body: usize,
    /// The longest key, in bytes (default 1 KiB).
    pub max_key: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body: 64 * 1024,
            max_key: 1024,
        }
    }
}

#[derive(Clone)]
struct Api {
    node: KvNode,
    limits: HttpLimits,
}

/// The axum router of the API for `node`.
pub fn router(node: KvNode, limits: HttpLimits) -> Router {
    Router::new()
        .route("/kv/{key}", get(get_key).put(put_key))
        .route("/status", get(status))
        .layer(DefaultBodyLimit::max(limits.max_body))
        .with_state(Api { node, limits })
}

/// Serves the API for `node` on `listener` until the task is dropped or the listener fails.
///
/// # Errors
///
/// When accepting connections fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: KvNode,
    limits: HttpLimits,
) -> io::Result<()> {
    axum::serve(listener, router(node, limits)).await
}

/// An error answer.
struct ApiError {
    status: StatusCode,
    message: String,
    leader: Option<NodeId>,
    outcome_unknown: bool,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            leader: None,
            outcome_unknown: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "leader": self.leader });
        if self.outcome_unknown {
            body["outcome"] = json!("unknown");
        }
        (self.status, Json(body)).into_response()
    }
}

fn forward_status(e: &ForwardError) -> (StatusCode, Option<NodeId>) {
    match e {
        ForwardError::Timeout(l) => (StatusCode::GATEWAY_TIMEOUT, Some(*l)),
        ForwardError::Unreachable(l) => (StatusCode::SERVICE_UNAVAILABLE, Some(*l)),
        ForwardError::NotLeader { leader } => (StatusCode::SERVICE_UNAVAILABLE, *leader),
        ForwardError::QuorumLost => (StatusCode::SERVICE_UNAVAILABLE, None),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        let message = e.to_string();
        let (status, leader, unknown) = match &e {
            WriteError::NoLeader => (StatusCode::SERVICE_UNAVAILABLE, None, false),
            WriteError::NotLeader { leader } => (StatusCode::SERVICE_UNAVAILABLE, *leader, false),
            WriteError::Forward(f) => {
                let (status, leader) = forward_status(f);
                let unknown = !matches!(f, ForwardError::NotLeader { .. });
                (status, leader, unknown)
            }
            WriteError::Discarded => (StatusCode::SERVICE_UNAVAILABLE, None, true),
            WriteError::Timeout => (StatusCode::GATEWAY_TIMEOUT, None, true),
            WriteError::Stopped(_) => (StatusCode::SERVICE_UNAVAILABLE, None, true),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None, false),
        };
        Self {
            status,
            message,
            leader,
            outcome_unknown: unknown,
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        let message = e.to_string();
        let (status, leader) = match &e {
            ReadError::NoLeader | ReadError::QuorumLost | ReadError::Stopped(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, None)
            }
            ReadError::NotLeader { leader } => (StatusCode::SERVICE_UNAVAILABLE, *leader),
            ReadError::Forward(f) => forward_status(f),
            ReadError::Timeout => (StatusCode::GATEWAY_TIMEOUT, None),
        };
        Self {
            status,
            message,
            leader,
            outcome_unknown: false,
        }
    }
}

fn checked_key(api: &Api, key: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = key.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    if key.is_empty() || key.len() > api.limits.max_key {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("key must be 1 to {} bytes", api.limits.max_key),
        ));
    }
    Ok(key)
}

#[derive(Serialize)]
struct Written {
    key: String,
    value: String,
    previous: Option<String>,
}

async fn put_key(
    State(api): State<Api>,
    key: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Written>, ApiError> {
    let key = checked_key(&api, key)?;
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "value must be UTF-8"))?;
    let req = Request::Set {
        key: key.clone(),
        value: value.clone(),
    };
    let resp = api.node.write(req).await?;
    Ok(Json(Written {
        key,
        value,
        previous: resp.previous,
    }))
}

#[derive(Serialize)]
struct Found {
    key: String,
    value: String,
}

async fn get_key(
    State(api): State<Api>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Json<Found>, ApiError> {
    let key = checked_key(&api, key)?;
    match api.node.read(&key).await? {
        Some(value) => Ok(Json(Found { key, value })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("key {key:?} not found"),
        )),
    }
}

async fn status(State(api): State<Api>) -> Json<Status> {
    Json(api.node.status())
}
