//! A typed client of a node's control API (docs/INTERFACES.md): every answer parsed into the types the node
//! itself serializes (`chatmesh_node::events`), so that both sides share one definition.

use crate::metrics::Scrape;
use crate::sse::EventStream;
use chatmesh_node::events::{MessageView, StatusView};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::Duration;

/// Why a request failed: the node answered with an error status (`{"error": ...}`), or it was not reached
/// or did not answer (the request may still have been carried out), or its answer did not parse.
#[derive(Debug)]
pub enum ApiError {
    Status { code: u16, error: String },
    Transport { connect: bool, error: String },
    Parse(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Status { code, error } => write!(f, "status code {code}: {error}"),
            ApiError::Transport { error, .. } => f.write_str(error),
            ApiError::Parse(e) => write!(f, "unexpected answer: {e}"),
        }
    }
}

impl From<ApiError> for String {
    fn from(e: ApiError) -> String {
        e.to_string()
    }
}

impl From<ureq::Error> for ApiError {
    fn from(e: ureq::Error) -> ApiError {
        match e {
            ureq::Error::Status(code, r) => {
                let body = r.into_string().unwrap_or_default();
                let error = serde_json::from_str::<ErrorBody>(&body).map_or(body, |b| b.error);
                ApiError::Status { code, error }
            }
            ureq::Error::Transport(t) => {
                ApiError::Transport { connect: t.kind() == ureq::ErrorKind::ConnectionFailed, error: t.to_string() }
            }
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// The answer to `POST /messages/batch`.
#[derive(Deserialize)]
struct Batch {
    messages: Vec<MessageView>,
}

/// One node's control API at `http://{addr}`, through a shared `ureq` agent (its timeouts apply).
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    /// `addr` is `host:port`, as the node's `ready` line gives it.
    pub fn new(agent: &ureq::Agent, addr: &str) -> Client {
        Client { agent: agent.clone(), base: format!("http://{addr}") }
    }

    /// `http://host:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// `GET {path}`, parsed.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.agent.get(&self.url(path)).call()?.into_json().map_err(|e| ApiError::Parse(e.to_string()))
    }

    /// `GET {path}` as text.
    pub fn get_text(&self, path: &str) -> Result<String, ApiError> {
        self.agent.get(&self.url(path)).call()?.into_string().map_err(|e| ApiError::Parse(e.to_string()))
    }

    /// `POST {path}` with a JSON body, the answer parsed.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl serde::Serialize) -> Result<T, ApiError> {
        let body = serde_json::to_string(body).map_err(|e| ApiError::Parse(e.to_string()))?;
        let r = self.agent.post(&self.url(path)).set("Content-Type", "application/json").send_string(&body)?;
        let text = r.into_string().map_err(|e| ApiError::Parse(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| ApiError::Parse(format!("{e}: {text}")))
    }

    /// `GET /status`.
    pub fn status(&self) -> Result<StatusView, ApiError> {
        self.get("/status")
    }

    /// `GET /history`: the whole history in canonical order.
    pub fn history(&self) -> Result<Vec<MessageView>, ApiError> {
        self.get("/history")
    }

    /// `GET /history` allowed `timeout` (a long history takes longer than a status).
    pub fn history_within(&self, timeout: Duration) -> Result<Vec<MessageView>, ApiError> {
        self.agent
            .get(&self.url("/history"))
            .timeout(timeout)
            .call()?
            .into_json()
            .map_err(|e| ApiError::Parse(e.to_string()))
    }

    /// `POST /messages`: the message, once the node stored it.
    pub fn send(&self, text: &str) -> Result<MessageView, ApiError> {
        self.post("/messages", &serde_json::json!({ "text": text }))
    }

    /// `POST /messages/batch`: the messages written, in order (all of them, or an error).
    pub fn send_batch(&self, texts: &[String]) -> Result<Vec<MessageView>, ApiError> {
        let b: Batch = self.post("/messages/batch", &serde_json::json!({ "texts": texts }))?;
        if b.messages.len() != texts.len() {
            return Err(ApiError::Parse(format!("{} messages sent, {} in the answer", texts.len(), b.messages.len())));
        }
        Ok(b.messages)
    }

    /// `GET /metrics`, parsed.
    pub fn metrics(&self) -> Result<Scrape, ApiError> {
        Scrape::parse(&self.get_text("/metrics")?).map_err(ApiError::Parse)
    }

    /// `GET /events`: returns once the subscription is in place.
    pub fn events(&self) -> Result<EventStream, ApiError> {
        Ok(EventStream::new(self.agent.get(&self.url("/events")).call()?.into_reader()))
    }
}
