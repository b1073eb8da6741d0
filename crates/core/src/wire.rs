//! The wire format: a version byte, then a `postcard` enum. Frames travel on Noise links, datagrams on the
//! multicast group (and as unicast answers to it).
//!
//! Compatibility rule: variants and fields are only ever appended. A peer that meets a variant it does not
//! know gets `DecodeError::Malformed` and drops that one frame; a change that cannot be appended bumps
//! `WIRE_VERSION`.

use crate::history::{Message, OrderKey};
use crate::types::{Contact, NodeId, NodeKey, Term};
use crate::view::View;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// The first byte of every frame and datagram. 2: a `SyncRequest` with a cursor no longer counts as the
/// requester's acknowledgements (version 1 nodes would take a version 2 node's for some). 3: sync requests
/// carry a sync id that pages echo. 4: messages end with a batch proof (`Message::proof`).
pub const WIRE_VERSION: u8 = 4;
/// Hard upper bound of an encoded frame, version byte included. The link layer refuses longer length prefixes
/// before reading them.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Hard upper bound of an encoded datagram: fits one Ethernet frame with room for IP/UDP headers.
pub const MAX_DATAGRAM_LEN: usize = 1200;

/// A message on a link between two members (or a joiner and the coordinator).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum Frame {
    /// Joiner -> coordinator: admit me.
    Join(Join),
    /// Coordinator -> joiner: you are in; here is the view with your ID.
    Welcome { view: View },
    /// Coordinator -> members: the current view. A view with a new term is the coordinator's announcement.
    View { view: View },
    /// Member -> coordinator: send me the current view (`/list`).
    ViewRequest { term: Term },
    /// Coordinator -> member, every `heartbeat_interval`.
    Heartbeat { term: Term, version: u64 },
    /// Member -> coordinator: reply to a heartbeat, naming the view the member holds (its term, version and
    /// coordinator) and the highest `next_id` it has seen (so that `next_id` survives coordinator changes).
    HeartbeatAck { term: Term, version: u64, coordinator: NodeKey, next_id_seen: NodeId },
    /// Member -> coordinator: graceful departure (`/quit`).
    Leave { term: Term },
    /// Candidate -> higher-ranked members (and the suspected coordinator): I am running for `term`. `suspect`
    /// is the coordinator the candidate thinks is gone (`None` for a forced `/elect`).
    Election { term: Term, suspect: Option<NodeKey> },
    /// Higher-ranked member, or the suspected coordinator, -> candidate: I am alive; wait for an announcement
    /// (the coordinator also sends a heartbeat, which ends a suspicion).
    Answer { term: Term },
    /// Reply to a request that needs the coordinator, or to a stale coordinator: this is who I follow.
    NotCoordinator { term: Term, coordinator: Option<Contact> },
    /// Coordinator -> coordinator of higher precedence `(members, term, rank)`, after a partition heals: take
    /// my part (the view shows alive only the members that follow the sender now).
    MergeRequest { view: View },
    /// Link keepalive, so that a silently dead link is noticed and closed.
    Ping { term: Term },
    /// Author -> members: new messages (each also reaches late members through anti-entropy).
    Messages { messages: Vec<Message> },
    /// Receiver -> author: I hold your messages up to `seq`, durably (cumulative, per author).
    Ack { acks: Vec<(NodeKey, u64)> },
    /// What I hold: author -> highest contiguous seq. `reply` marks an answer to one (never answered).
    /// `clock` is the sender's Lamport clock: the receiver's next message sorts after all the sender has.
    Frontier { frontier: Vec<(NodeKey, u64)>, reply: bool, clock: u64 },
    /// Send me a page of what I lack (given my frontier), in canonical order after `after`. `sync` names the
    /// requester's sync (the same in all its requests), and comes back in the page.
    SyncRequest { frontier: Vec<(NodeKey, u64)>, after: Option<OrderKey>, limit: u32, sync: u64 },
    /// A page of a sync; `more` says whether the next page has anything; `sync` is the request's.
    SyncPage { messages: Vec<Message>, more: bool, sync: u64 },
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Join {
    pub mesh: String,
    pub name: String,
    /// The joiner's TCP listen address, as the other members should dial it.
    pub addr: SocketAddr,
    /// The ID this key held before (restart), honoured when still free.
    pub id_hint: Option<NodeId>,
    /// The highest `next_id` the joiner has seen.
    pub next_id_seen: NodeId,
}

/// A multicast datagram (or the unicast answer to one).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Datagram {
    pub mesh: String,
    pub body: DatagramBody,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum DatagramBody {
    /// Joiner -> group: is there a mesh? Resent with backoff.
    Discover { nonce: u64, key: NodeKey, addr: SocketAddr, id_hint: Option<NodeId> },
    /// Coordinator -> joiner (unicast): dial me.
    Offer { nonce: u64, coordinator: Contact, term: Term },
    /// Coordinator -> group, every `beacon_interval`: lets split meshes and joiners find the coordinator.
    Beacon { coordinator: Contact, term: Term, version: u64, members: u32 },
}

/// Why bytes from the network were not decoded. Nothing else happened.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DecodeError {
    Empty,
    TooLong { len: usize, max: usize },
    UnsupportedVersion(u8),
    Malformed(String),
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty message"),
            DecodeError::TooLong { len, max } => write!(f, "message of {len} bytes exceeds the limit of {max}"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "wire version {v} is not supported (this node speaks {WIRE_VERSION})")
            }
            DecodeError::Malformed(e) => write!(f, "malformed message: {e}"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} bytes after the end of the message"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a message could not be encoded. Only a value beyond the limits (an oversized view) gets here.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum EncodeError {
    TooLong { len: usize, max: usize },
    Serialize(String),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLong { len, max } => write!(f, "encoded message of {len} bytes exceeds {max}"),
            EncodeError::Serialize(e) => write!(f, "cannot encode: {e}"),
        }
    }
}

impl std::error::Error for EncodeError {}

fn encode<T: Serialize>(value: &T, max: usize) -> Result<Vec<u8>, EncodeError> {
    let bytes = postcard::to_extend(value, vec![WIRE_VERSION]).map_err(|e| EncodeError::Serialize(e.to_string()))?;
    if bytes.len() > max {
        return Err(EncodeError::TooLong { len: bytes.len(), max });
    }
    Ok(bytes)
}

fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if bytes.len() > max {
        return Err(DecodeError::TooLong { len: bytes.len(), max });
    }
    if version != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

impl Frame {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encode(self, MAX_FRAME_LEN)
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        decode(bytes, MAX_FRAME_LEN)
    }

    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Join(_) => "join",
            Frame::Welcome { .. } => "welcome",
            Frame::View { .. } => "view",
            Frame::ViewRequest { .. } => "view-request",
            Frame::Heartbeat { .. } => "heartbeat",
            Frame::HeartbeatAck { .. } => "heartbeat-ack",
            Frame::Leave { .. } => "leave",
            Frame::Election { .. } => "election",
            Frame::Answer { .. } => "answer",
            Frame::NotCoordinator { .. } => "not-coordinator",
            Frame::MergeRequest { .. } => "merge-request",
            Frame::Ping { .. } => "ping",
            Frame::Messages { .. } => "messages",
            Frame::Ack { .. } => "ack",
            Frame::Frontier { .. } => "frontier",
            Frame::SyncRequest { .. } => "sync-request",
            Frame::SyncPage { .. } => "sync-page",
        }
    }
}

impl Datagram {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encode(self, MAX_DATAGRAM_LEN)
    }

    pub fn decode(bytes: &[u8]) -> Result<Datagram, DecodeError> {
        decode(bytes, MAX_DATAGRAM_LEN)
    }
}
