//! `Handle`: what the rest of the process (control API, TUI, line interface) holds to talk to the core task.

use super::*;

/// A running node, cheap to clone: what the UIs and the control API hold.
#[derive(Clone)]
pub struct Handle {
    pub(super) inbox: mpsc::Sender<Inbox>,
    pub(super) reads: std::sync::mpsc::Sender<ReadRequest>,
    pub(super) events: broadcast::Sender<Notice>,
    pub(super) names: Arc<RwLock<Names>>,
    pub(super) key: NodeKey,
    pub(super) addr: SocketAddr,
    /// The name the node started under (`Store::resolve_name`).
    pub(super) name: String,
}

impl Handle {
    pub fn key(&self) -> NodeKey {
        self.key
    }

    /// The name the node started under: the configured one, or the last `/nick` chosen under it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address other nodes dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The event stream, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.events.subscribe()
    }

    /// Writes a chat message: answers once it is durable here (shown as sent), with the message.
    pub async fn send(&self, text: String) -> Result<MessageView, SendError> {
        if text.trim().is_empty() {
            return Err(SendError::Empty);
        }
        let (reply, rx) = oneshot::channel();
        self.inbox.send(Inbox::Send { text, reply }).await.map_err(|_| SendError::Stopped)?;
        rx.await.unwrap_or(Err(SendError::Stopped))
    }

    /// Writes several chat messages together: in one round, so signed as one batch, committed in one
    /// transaction and pushed in frames of up to 256 messages per peer. Every text is checked first, and if one is empty or
    /// over the size limit none is written (`Err` with its index). Otherwise each text gets its own outcome,
    /// in order, once durable: all `Ok` unless the node stopped meanwhile.
    pub async fn send_many(
        &self,
        texts: Vec<String>,
    ) -> Result<Vec<Result<MessageView, SendError>>, (usize, SendError)> {
        for (i, t) in texts.iter().enumerate() {
            if t.trim().is_empty() {
                return Err((i, SendError::Empty));
            }
            if t.len() > chatmesh_core::history::message::MAX_BODY_LEN {
                return Err((i, SendError::Refused(chatmesh_core::MessageError::BodyTooLong.to_string())));
            }
        }
        let (items, waits): (Vec<_>, Vec<_>) = texts
            .into_iter()
            .map(|text| {
                let (reply, rx) = oneshot::channel();
                ((text, reply), rx)
            })
            .unzip();
        if self.inbox.send(Inbox::SendMany(items)).await.is_err() {
            return Ok(waits.iter().map(|_| Err(SendError::Stopped)).collect());
        }
        let mut out = Vec::with_capacity(waits.len());
        for rx in waits {
            out.push(rx.await.unwrap_or(Err(SendError::Stopped)));
        }
        Ok(out)
    }

    /// `/elect`, `/list`, `/quit` (use `shutdown` to wait for the node to stop).
    pub async fn command(&self, command: Command) -> bool {
        self.inbox.send(Inbox::Command(command)).await.is_ok()
    }

    /// `/connect HOST:PORT`: look for the mesh through this address too.
    pub async fn connect(&self, addr: SocketAddr) -> bool {
        self.inbox.send(Inbox::Connect(addr)).await.is_ok()
    }

    /// The protocol's counters and queues, for `GET /metrics`.
    pub async fn metrics(&self) -> Option<crate::metrics::Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.inbox.send(Inbox::Metrics(tx)).await.ok()?;
        rx.await.ok()
    }

    pub async fn status(&self) -> Option<StatusView> {
        let (tx, rx) = oneshot::channel();
        self.inbox.send(Inbox::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// The history held, in canonical order (the last `limit` messages, or all), own messages with their
    /// delivery status.
    pub async fn history(&self, limit: Option<usize>) -> Result<Vec<MessageView>, String> {
        let (reply, rx) = oneshot::channel();
        self.reads.send(ReadRequest::History { limit, reply }).map_err(|_| "the node has stopped".to_string())?;
        let messages = rx.await.map_err(|_| "the node has stopped".to_string())?.map_err(|e| e.to_string())?;
        // Asked after the read: every own message read is counted in it (a stopped node gives none).
        let delivery = match messages.iter().any(|m| m.author == self.key) {
            true => self.delivery().await,
            false => None,
        };
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let view = |m: &Message| {
            let mut v = names.message(m, &self.key);
            if v.own {
                v.delivery = delivery.as_ref().map(|d| DeliveryView::of(d.status(m.seq)));
            }
            v
        };
        Ok(messages.iter().map(view).collect())
    }

    /// How far the current members hold this node's own messages (`None` once the node stopped).
    pub async fn delivery(&self) -> Option<Delivery> {
        let (tx, rx) = oneshot::channel();
        self.inbox.send(Inbox::Delivery(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Stops the node: gracefully (`/quit`: announce the leave, wait briefly) or at once.
    pub async fn shutdown(&self, graceful: bool) {
        let _ = self.inbox.send(Inbox::Shutdown { graceful }).await;
    }

    /// A name for a key, as the UIs show it.
    pub fn label(&self, key: &NodeKey) -> String {
        self.names.read().unwrap_or_else(|p| p.into_inner()).label(key)
    }
}
