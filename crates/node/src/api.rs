//! The control API (`--http ADDR`): status, history, sending, the event stream and metrics.
//!
//! Documented with examples in docs/INTERFACES.md. Every error is a JSON object `{"error": "..."}` with a
//! 4xx status for a bad request and 503 when the node has stopped.

use crate::driver::{Handle, SendError};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

/// Longest request body accepted (a message is at most 16 KiB of text; JSON escaping can double it).
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most messages one `POST /messages/batch` may write.
const MAX_BATCH_TEXTS: usize = 1000;
/// Longest `POST /messages/batch` body accepted.
const MAX_BATCH_REQUEST_BYTES: usize = 1024 * 1024;

/// `POST /messages/batch` requests handed to the node at once; more wait their turn (so that queued batches
/// hold at most this many MiB, whatever the number of clients).
const BATCHES_AT_ONCE: usize = 8;

#[derive(Clone)]
struct Api {
    node: Handle,
    batches: std::sync::Arc<tokio::sync::Semaphore>,
}

/// The router, for serving or for tests.
pub fn router(node: Handle) -> Router {
    let api = Api { node, batches: std::sync::Arc::new(tokio::sync::Semaphore::new(BATCHES_AT_ONCE)) };
    Router::new()
        .route("/", get(index))
        .route("/status", get(status))
        .route("/history", get(history))
        .route("/messages", post(send))
        .route("/messages/batch", post(send_batch).layer(axum::extract::DefaultBodyLimit::max(MAX_BATCH_REQUEST_BYTES)))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(api)
}

/// Binds `addr` and serves the API until the process ends. Returns the bound address (port 0 picks one).
pub async fn serve(node: Handle, addr: SocketAddr) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("cannot serve the control API on {addr}: the port is already in use (choose another with --http)")
        } else {
            format!("cannot serve the control API on {addr}: {e}")
        }
    })?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let app = router(node);
    // Events (SSE) are small writes: without TCP_NODELAY each one after the first waits for the client's
    // delayed acknowledgement (Nagle), up to 40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("control API: TCP_NODELAY not set: {e}");
        }
    });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("control API stopped: {e}");
        }
    });
    Ok((bound, task))
}

/// The web page (`GET /`, docs/WEB.md): one self-contained HTML file embedded in the binary.
async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("web/index.html")).into_response()
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn stopped() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "the node has stopped")
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint: see GET / (the web page), GET /status, GET /history, POST /messages, POST /messages/batch, GET /events, GET /metrics",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: GET / (the web page), GET /status, GET /history, POST /messages, POST /messages/batch, GET /events, GET /metrics",
    )
}

async fn status(State(api): State<Api>) -> Response {
    match api.node.status().await {
        Some(s) => Json(s).into_response(),
        None => stopped(),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history(
    State(api): State<Api>,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "limit must be a non-negative integer, e.g. /history?limit=100");
    };
    match api.node.history(q.limit).await {
        Ok(h) => Json(h).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    text: String,
}

async fn send(State(api): State<Api>, body: Result<Json<SendBody>, JsonRejection>) -> Response {
    let text = match body {
        Ok(Json(b)) => b.text,
        Err(e) => {
            return error(e.status(), format!("{}: send a JSON object like {{\"text\": \"hello\"}}", e.body_text()))
        }
    };
    match api.node.send(text).await {
        Ok(m) => (StatusCode::CREATED, Json(m)).into_response(),
        Err(e) => error(send_status(&e), e.to_string()),
    }
}

/// The status answering a send that did not happen.
fn send_status(e: &SendError) -> StatusCode {
    match e {
        SendError::Empty => StatusCode::BAD_REQUEST,
        SendError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        SendError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBatchBody {
    texts: Vec<String>,
}

/// `POST /messages/batch`: several messages written together (one signature, one commit, frames of up to 256
/// messages per peer). All or nothing for bad input: one empty or oversized text refuses the whole request,
/// naming it, and nothing is written. Answers `201 {"messages": [...]}` once every message is durable; a
/// node stopping meanwhile (or an author's counters at their limit) answers with the error and the messages
/// that were written.
async fn send_batch(State(api): State<Api>, body: Result<Json<SendBatchBody>, JsonRejection>) -> Response {
    let texts = match body {
        Ok(Json(b)) => b.texts,
        Err(e) => {
            return error(
                e.status(),
                format!("{}: send a JSON object like {{\"texts\": [\"hello\", \"world\"]}}", e.body_text()),
            )
        }
    };
    if texts.is_empty() {
        return error(StatusCode::BAD_REQUEST, "texts is empty: give at least one message");
    }
    if texts.len() > MAX_BATCH_TEXTS {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} texts: at most {MAX_BATCH_TEXTS} per request; split them", texts.len()),
        );
    }
    let Ok(_turn) = api.batches.acquire().await else { return stopped() };
    let outcomes = match api.node.send_many(texts).await {
        Ok(o) => o,
        Err((i, e)) => return error(send_status(&e), format!("texts[{i}]: {e}; nothing was sent")),
    };
    let failed = outcomes.iter().find_map(|o| o.as_ref().err()).cloned();
    let sent: Vec<_> = outcomes.into_iter().flatten().collect();
    match failed {
        None => (StatusCode::CREATED, Json(serde_json::json!({ "messages": sent }))).into_response(),
        // Only a node stopping (or an author's counters at their limit) fails a checked text: say which were
        // written.
        Some(e) => {
            (send_status(&e), Json(serde_json::json!({ "error": e.to_string(), "messages": sent }))).into_response()
        }
    }
}

async fn events(State(api): State<Api>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = BroadcastStream::new(api.node.subscribe()).filter_map(|n| {
        let n = match n {
            Ok(n) => n,
            // A slow client skipped some events: tell it, so it can re-read /status and /history.
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(k)) => {
                return Some(Ok(SseEvent::default()
                    .event("lagged")
                    .data(format!("{{\"type\":\"lagged\",\"skipped\":{k}}}"))));
            }
        };
        let json = serde_json::to_value(&n).ok()?;
        let kind = json.get("type").and_then(|t| t.as_str()).unwrap_or("event").to_owned();
        Some(Ok(SseEvent::default().event(kind).data(json.to_string())))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn metrics(State(api): State<Api>) -> Response {
    let (Some(status), Some(snap)) = (api.node.status().await, api.node.metrics().await) else { return stopped() };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&status, &snap)).into_response()
}
