//! What goes into the node and what comes out of it.

use crate::history::{Frontier, HistoryState, Message, MessageError, OrderKey};
use crate::types::{NodeId, NodeKey, Term};
use crate::view::View;
use std::net::SocketAddr;

/// Everything the outside world can tell the node. Each comes with the current time in `Node::handle_input`.
#[derive(Clone, Debug)]
pub enum Input {
    /// A UDP datagram from the multicast group (`direct` false) or addressed to this node alone (`direct`
    /// true: a joiner that knows this node's address from `--peer` rather than from multicast).
    Datagram { from: SocketAddr, bytes: Vec<u8>, direct: bool },
    /// A frame from an established, authenticated link: `from` is the key the link handshake proved.
    Frame { from: NodeKey, bytes: Vec<u8> },
    /// A link to `peer` is established (dialled by either side).
    LinkUp { peer: NodeKey },
    /// The link to `peer` closed (reset, EOF, error). Not sent for a `Disconnect` the node asked for.
    LinkDown { peer: NodeKey },
    /// A `Connect` to `peer` failed (refused, timed out, handshake failed or proved another key).
    ConnectFailed { peer: NodeKey },
    /// Something the user asked for.
    Command(Command),
    /// The driver's answer to `Output::Load` with the same `id`.
    Loaded { id: u64, messages: Vec<Message>, more: bool },
    /// A wall clock reading (Unix milliseconds), for the `sent_at` of messages this node writes. The driver
    /// gives one at start and now and then; the core never reads a clock.
    Clock { unix_ms: u64 },
}

/// User commands that reach the protocol. None is refused because an election is running.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Command {
    /// Send a chat message. `token` is the driver's: it comes back in the `Sent` of the message written, or
    /// in the `SendRefused` (so a driver pairs each send with its outcome without counting; 0 if it does not
    /// care).
    Send { text: String, token: u64 },
    /// `/quit`: leave the mesh gracefully, then stop.
    Leave,
    /// `/elect`: start a Bully election now.
    StartElection,
    /// `/list`: ask the coordinator for a fresh view.
    RefreshView,
    /// `/nick NAME`: change this node's display name (cut to `MAX_NAME_LEN` bytes). A member asks the
    /// coordinator to update its entry in the view; a coordinator publishes the change itself.
    Rename { name: String },
}

/// Where a datagram goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Destination {
    Group,
    Addr(SocketAddr),
}

/// Everything the node asks of the outside world, in the order it must happen.
///
/// Ordering contract: a `Persist` must be durable before any output that comes after it is carried out. A
/// driver that carries out outputs in the order `poll_output` returns them, waiting for each `Persist` to be
/// durable, keeps it.
#[derive(Clone, Debug)]
pub enum Output {
    Datagram {
        to: Destination,
        bytes: Vec<u8>,
    },
    /// Dial `peer` at `addr` (no-op if a link is up or being set up). Answered by `LinkUp` or `ConnectFailed`.
    Connect {
        peer: NodeKey,
        addr: SocketAddr,
    },
    /// Close the link to `peer`.
    Disconnect {
        peer: NodeKey,
    },
    /// Send an encoded frame on the link to `to` (dropped by the driver if that link is not up).
    Frame {
        to: NodeKey,
        bytes: Vec<u8>,
    },
    /// Like `Frame`, for a frame that acknowledges nothing (a sync's request for its next page: its
    /// frontier only tells the peer what to skip): a driver may send it at once, ahead of earlier outputs
    /// still waiting for their writes to become durable.
    FrameAhead {
        to: NodeKey,
        bytes: Vec<u8>,
    },
    /// Make this durable; a restarted node is built from the last one (`Node::new`).
    Persist(Snapshot),
    /// Append these messages (in this order: each is causally ready after the ones before it) and replace
    /// the history summary with `state`, in one transaction. Durable before any later output. `messages`
    /// may be empty: the summary alone changed (acknowledgements of our own messages, `HistoryState::acked`,
    /// written at a retransmission tick when no message write took them along).
    Store {
        messages: Vec<Message>,
        state: HistoryState,
    },
    /// Read messages from the store and answer with `Input::Loaded` (see `LoadRequest`).
    Load(LoadRequest),
    /// For the user interfaces and the logs.
    Event(Event),
}

/// A read of the store: the messages held that a peer with `frontier` lacks (seq above its frontier for
/// that author, any seq for an author it does not list), in canonical order, only those after `after`,
/// at most `max_messages` of them and, past the first, at most `max_bytes` of bodies. `more` in the answer
/// says whether any such message was left out.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LoadRequest {
    pub id: u64,
    pub frontier: Frontier,
    pub after: Option<OrderKey>,
    pub max_messages: u32,
    pub max_bytes: u32,
}

/// The durable membership state of a node.
#[derive(Clone, PartialEq, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub my_id: Option<NodeId>,
    pub view: Option<View>,
    /// The highest term of any view this node held: it never announces a term at or below it again, even
    /// after joining a part of the mesh at a lower term.
    pub max_term: Term,
    /// The highest `next_id` this node has seen: no view it writes has a lower one.
    pub max_next_id: NodeId,
}

/// Something a user or an operator would want to see.
#[derive(Clone, PartialEq, Debug)]
pub enum Event {
    /// Nobody answered discovery: this node founded a mesh and coordinates it.
    Founded {
        id: NodeId,
        term: Term,
    },
    /// Admitted to a mesh.
    Joined {
        id: NodeId,
        term: Term,
        coordinator: NodeKey,
    },
    /// A new coordinator or a new term.
    CoordinatorChanged {
        term: Term,
        coordinator: NodeKey,
        id: NodeId,
    },
    MemberJoined {
        id: NodeId,
        key: NodeKey,
        name: String,
    },
    MemberLeft {
        id: NodeId,
        key: NodeKey,
        name: String,
    },
    MemberFailed {
        id: NodeId,
        key: NodeKey,
        name: String,
    },
    /// An ID clash was resolved by giving `key` a new ID.
    IdReassigned {
        key: NodeKey,
        old: NodeId,
        new: NodeId,
    },
    ElectionStarted {
        term: Term,
    },
    /// A message this node wrote is durable: show it as sent (stored). `token`: the `Command::Send`'s; 0 for
    /// a message the node wrote itself (the coordinator's membership events).
    Sent {
        message: Message,
        token: u64,
    },
    /// A message from someone else is causally delivered: show it. It follows the `Store` that makes it
    /// durable; a driver may show it before that write completes (acknowledgements still wait for it).
    Delivered {
        message: Message,
    },
    /// `member` acknowledged this node's messages up to `upto` (see `Node::delivery_status`).
    Acked {
        member: NodeKey,
        upto: u64,
    },
    /// `Command::Send` (the one with `token`) was refused; nothing was stored or sent.
    SendRefused {
        reason: MessageError,
        token: u64,
    },
    /// Input from outside was refused; the node's state is unchanged.
    Rejected {
        reason: crate::stats::Reject,
    },
    /// The node left the mesh and does nothing more.
    Stopped,
}
