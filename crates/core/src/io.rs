//! What goes into the node and what comes out of it.

use crate::types::{NodeId, NodeKey, Term};
use crate::view::View;
use std::net::SocketAddr;

/// Everything the outside world can tell the node. Each comes with the current time in `Node::handle_input`.
#[derive(Clone, Debug)]
pub enum Input {
    /// A UDP datagram from the multicast group or addressed to this node.
    Datagram { from: SocketAddr, bytes: Vec<u8> },
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
}

/// User commands that reach the protocol. None is refused because an election is running.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Command {
    /// `/quit`: leave the mesh gracefully, then stop.
    Leave,
    /// `/elect`: start a Bully election now.
    StartElection,
    /// `/list`: ask the coordinator for a fresh view.
    RefreshView,
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
    /// Make this durable; a restarted node is built from the last one (`Node::new`).
    Persist(Snapshot),
    /// For the user interfaces and the logs.
    Event(Event),
}

/// The durable membership state of a node.
#[derive(Clone, PartialEq, Debug, Default)]
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
    /// Input from outside was refused; the node's state is unchanged.
    Rejected {
        reason: crate::stats::Reject,
    },
    /// The node left the mesh and does nothing more.
    Stopped,
}
