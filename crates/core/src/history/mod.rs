//! The chat history's data: what a node holds of the history, and the pure rules on it.
//!
//! A message is stored exactly when it is delivered (causally ready), so what a node holds of each author is
//! a contiguous prefix: its *frontier*. The frontier is at once the cumulative acknowledgement (an `Ack`
//! names it after the messages are durable), the retransmission test (an author nudges a member whose
//! frontier lags its own), and the anti-entropy summary (peers exchange frontiers and pull what they lack,
//! in pages in canonical order, which is a linear extension of causality, so every page is deliverable as it
//! arrives). The core holds only summaries; message bodies live in the store, read through `Output::Load`.
//!
//! This module and its children import no module that drives the node: `HistoryState` (the durable
//! summary), `Delivery`, the limits and `page_of` here, `message` (a signed message, its order, the
//! digest, the `Verifier`), `holdback` (messages waiting for their dependencies), and the node's volatile
//! `History` with its `Round`. What the node does with them is in `delivery` (writing, receiving, acks),
//! `round` (driver rounds) and `sync` (anti-entropy and retransmission).

mod holdback;
pub mod message;

use crate::types::NodeKey;
use crate::view::View;
pub(crate) use holdback::HoldBack;
pub use message::{
    chain_step, Body, HistoryDigest, MembershipEvent, Message, MessageError, MessageId, OrderKey, ProofStep, Sig,
    Verdicts, Verifier,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Most messages held back waiting for their dependencies; beyond it they are dropped and pulled again.
pub const MAX_HELD: usize = 4096;
/// Most messages in one sync page.
pub const PAGE_MESSAGES: u32 = 2048;
/// Most bytes of encoded messages in one sync page (the frame limit is 1 MiB).
pub const PAGE_BYTES: u32 = 768 * 1024;

/// How many of `candidates` (sorted, with their encoded sizes) make a page: at most `limit`, and within
/// `max_bytes` after the first. Shared by every store so that pages are cut the same way everywhere.
pub fn page_of<K>(candidates: &[(K, usize)], limit: usize, max_bytes: usize) -> usize {
    let mut bytes = 0usize;
    for (n, (_, size)) in candidates.iter().enumerate() {
        if n == limit || (n > 0 && bytes + size > max_bytes) {
            return n;
        }
        bytes += size;
    }
    candidates.len()
}
/// Most authors a frontier may list.
pub const MAX_AUTHORS: usize = 16_384;
/// The largest step between two consecutive messages of one author: far beyond any real history, and small
/// enough that reaching the counter ceiling would take a billion messages.
pub const MAX_LAMPORT_JUMP: u64 = 1 << 32;
/// The largest jump a clock heard of in a frontier may move ours (more than any real burst of messages).
pub const MAX_CLOCK_HINT: u64 = 1 << 24;
/// Most loads served at once; further sync requests wait for the requester to retry.
pub const MAX_PENDING_LOADS: usize = 16;

/// What this node holds of one author: the last message of its contiguous prefix.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct AuthorState {
    pub seq: u64,
    pub lamport: u64,
    /// The hash chain over this author's messages up to `seq` (see `HistoryDigest`).
    pub chain: [u8; 32],
}

/// author -> highest contiguous seq held.
pub type Frontier = BTreeMap<NodeKey, u64>;

/// The durable summary of the history a node holds. The driver stores it in the same transaction as the
/// messages it summarizes (`Output::Store`), and hands the last one back to `Node::new` after a restart.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct HistoryState {
    pub authors: BTreeMap<NodeKey, AuthorState>,
    /// The largest lamport held: a new message gets one more.
    pub clock: u64,
    /// Messages no held message depends on (with their lamports): the next own message's dependencies.
    pub heads: Vec<(MessageId, u64)>,
    /// The digest of the history held; brought up to date by `seal` before every store.
    pub digest: HistoryDigest,
    pub count: u64,
    /// What each peer is known to hold of this node's own messages: peer -> the highest own seq it
    /// acknowledged (an `Ack`, a frontier, a sync's first request: each names only what the peer holds
    /// durably). Only ever raised, and never above our own seq, so it never claims more than was
    /// acknowledged. Kept here so that a restarted node knows at once which of its messages every member
    /// holds (`Node::delivery_status`); not part of the digest. Last in the struct: a summary stored before
    /// it existed is the same encoding without it (the store's schema 3 migration appends an empty map).
    pub acked: BTreeMap<NodeKey, u64>,
}

impl HistoryState {
    pub fn frontier(&self) -> Frontier {
        self.authors.iter().map(|(k, a)| (*k, a.seq)).collect()
    }

    pub fn seq_of(&self, author: &NodeKey) -> u64 {
        self.authors.get(author).map_or(0, |a| a.seq)
    }

    /// Whether `m` can be delivered now: the author's previous message and every dependency are held.
    pub(crate) fn ready(&self, m: &Message) -> bool {
        self.seq_of(&m.author) + 1 == m.seq && m.deps.iter().all(|d| self.seq_of(&d.author) >= d.seq)
    }

    /// Whether `m`'s lamport is acceptable. Only the author's own previous message is consulted: every node
    /// delivers an author's messages in seq order, so every node decides the same (a check that depended on
    /// which other messages a node happens to hold would let nodes disagree, and never converge). The jump
    /// is bounded, so that no message can push clocks to the ceiling.
    pub(crate) fn lamport_consistent(&self, m: &Message) -> bool {
        let own = self.authors.get(&m.author).map_or(0, |a| a.lamport);
        m.lamport > own && m.lamport - own <= MAX_LAMPORT_JUMP
    }

    /// Adds a delivered message to the summary (stores and tests build summaries with it too).
    pub fn apply(&mut self, m: &Message) {
        let previous = self.authors.get(&m.author).map_or([0; 32], |a| a.chain);
        let chain = chain_step(&previous, m);
        self.authors.insert(m.author, AuthorState { seq: m.seq, lamport: m.lamport, chain });
        self.clock = self.clock.max(m.lamport);
        self.heads.retain(|(h, _)| h.author != m.author && !m.deps.contains(h));
        self.heads.push((m.id(), m.lamport));
        if self.heads.len() > message::MAX_DEPS {
            // Keep the most recent heads; an older one is almost surely covered by them already.
            self.heads.sort_by_key(|(id, lamport)| std::cmp::Reverse((*lamport, *id)));
            self.heads.truncate(message::MAX_DEPS);
        }
        self.count += 1;
    }

    /// Recomputes the digest from the authors' chains (once per stored batch, not per message).
    pub fn seal(&mut self) {
        self.digest = HistoryDigest::of(self.authors.iter().map(|(k, a)| (k, a.seq, &a.chain)));
    }

    /// How far the alive members of `view` other than `me` hold `me`'s messages, by what they acknowledged
    /// (`acked`): the node's own status (`Node::delivery`), and what a reader of its store shows.
    pub fn delivery(&self, me: &NodeKey, view: Option<&View>) -> Delivery {
        let others = view.into_iter().flat_map(View::alive).map(|m| m.key).filter(|k| k != me);
        let members = others.map(|k| self.acked.get(&k).copied().unwrap_or(0)).collect();
        Delivery { mine: self.seq_of(me), members }
    }
}

/// Delivery status of one of this node's own messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeliveryStatus {
    /// Durable here (always true for a message this node sent: it is stored before it is shown).
    pub stored: bool,
    /// Current alive members other than this node that acknowledged it.
    pub acked: usize,
    /// Current alive members other than this node.
    pub members: usize,
}

impl DeliveryStatus {
    /// Held by every current alive member other than this node (and there is at least one).
    pub fn by_all(&self) -> bool {
        self.members > 0 && self.acked >= self.members
    }
}

/// How far the current alive members other than this node hold this node's own messages: the one source
/// of every delivery status and of `pending_acks`, so that they always agree. The members are those of the
/// view this node holds: the current one, or after a restart the last durable one until it rejoins; a
/// member that acknowledged before the restart counts.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Delivery {
    /// The highest seq of our own messages written (and durable).
    pub mine: u64,
    /// For each current alive member other than this node, the highest own seq it holds.
    pub members: Vec<u64>,
}

impl Delivery {
    /// The status of our own message `seq`.
    pub fn status(&self, seq: u64) -> DeliveryStatus {
        let acked = self.members.iter().filter(|held| **held >= seq).count();
        DeliveryStatus { stored: self.mine >= seq, acked, members: self.members.len() }
    }

    /// How many of our own messages some current alive member does not hold yet.
    pub fn pending(&self) -> u64 {
        self.members.iter().min().map_or(0, |least| self.mine.saturating_sub(*least))
    }
}

/// Volatile history state: what the durable summary does not hold.
#[derive(Debug)]
pub(crate) struct History {
    pub state: HistoryState,
    /// Checks the signatures of what arrives (its own RNG and key cache).
    pub verifier: Verifier,
    /// Valid messages waiting for a dependency.
    pub held: HoldBack,
    /// What each peer is known to hold of other authors (from its acks and frontiers); what it holds of
    /// ours is in `state.acked`, which is durable.
    pub peers: BTreeMap<NodeKey, Frontier>,
    /// `state.acked` rose since the last `Store`: written with the next one, or alone at the next
    /// retransmission tick.
    pub acked_unstored: bool,
    /// The peer we are pulling pages from, if any, and when we give up on it.
    pub sync: Option<(NodeKey, Instant)>,
    /// The id of the latest sync started, sent in its requests: only pages that echo it continue it.
    pub sync_id: u64,
    /// Whether the running sync's next page may bring nothing new without ending the sync: at its start,
    /// and after a page of another sync brought something (it may have brought what that page brings).
    pub sync_grace: bool,
    /// Loads asked of the driver: id -> the peer the page is for, and the sync id its request named.
    pub loads: BTreeMap<u64, (NodeKey, u64)>,
    pub next_load: u64,
    /// Retransmission backoff per member: when we may nudge it next, and the current interval.
    pub nudge: BTreeMap<NodeKey, (Instant, Duration)>,
    /// A wall clock reading from the driver: (instant, Unix milliseconds then).
    pub wall: Option<(Instant, u64)>,
    /// What waits for the end of the driver's round, to go out merged.
    pub round: Round,
}

impl History {
    /// The volatile state of a node starting from the durable `state`; its syncs are numbered from
    /// `sync_id`.
    pub fn new(state: HistoryState, sync_id: u64, verifier: Verifier) -> History {
        History {
            state,
            verifier,
            held: HoldBack::default(),
            peers: BTreeMap::new(),
            acked_unstored: false,
            sync: None,
            sync_id,
            sync_grace: false,
            loads: BTreeMap::new(),
            next_load: 0,
            nudge: BTreeMap::new(),
            wall: None,
            round: Round::default(),
        }
    }
}

/// What waits for the end of the driver's round (see `round`).
#[derive(Debug, Default)]
pub(crate) struct Round {
    pub open: bool,
    /// Messages pushed to us (with who sent each), not yet verified.
    pub incoming: Vec<(NodeKey, Message)>,
    /// Our new messages written in the round, not yet signed (`Node::sign_own`).
    pub unsigned: Vec<Message>,
    /// The driver's token of each of them (`Command::Send`), for its `Sent`.
    pub tokens: Vec<u64>,
    /// Our new messages, signed, each with the members it goes to.
    pub outgoing: Vec<(Message, Vec<NodeKey>)>,
    /// author -> the seq to acknowledge to it (stored before the acknowledgement goes out).
    pub acks: BTreeMap<NodeKey, u64>,
}
