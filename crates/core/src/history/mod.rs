//! The chat history: signed messages, causal delivery, acknowledgements, retransmission and anti-entropy.
//!
//! A message is stored exactly when it is delivered (causally ready), so what a node holds of each author is
//! a contiguous prefix: its *frontier*. The frontier is at once the cumulative acknowledgement (an `Ack`
//! names it after the messages are durable), the retransmission test (an author nudges a member whose
//! frontier lags its own), and the anti-entropy summary (peers exchange frontiers and pull what they lack,
//! in pages in canonical order, which is a linear extension of causality, so every page is deliverable as it
//! arrives). The core holds only summaries; message bodies live in the store, read through `Output::Load`.

mod holdback;
pub mod message;
mod round;
mod sync;

use crate::io::{Event, Output};
use crate::node::{Node, Role};
use crate::stats::Reject;
use crate::types::NodeKey;
use crate::view::View;
pub use message::{
    chain_step, Body, HistoryDigest, MembershipEvent, Message, MessageError, MessageId, OrderKey, ProofStep, Sig,
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
    fn ready(&self, m: &Message) -> bool {
        self.seq_of(&m.author) + 1 == m.seq && m.deps.iter().all(|d| self.seq_of(&d.author) >= d.seq)
    }

    /// Whether `m`'s lamport is acceptable. Only the author's own previous message is consulted: every node
    /// delivers an author's messages in seq order, so every node decides the same (a check that depended on
    /// which other messages a node happens to hold would let nodes disagree, and never converge). The jump
    /// is bounded, so that no message can push clocks to the ceiling.
    fn lamport_consistent(&self, m: &Message) -> bool {
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
#[derive(Debug, Default)]
pub(crate) struct History {
    pub state: HistoryState,
    /// Valid messages waiting for a dependency.
    pub held: holdback::HoldBack,
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
    pub round: round::Round,
}

impl History {
    pub fn new(state: HistoryState) -> History {
        History { state, ..History::default() }
    }
}

impl Node {
    /// The durable history summary.
    pub fn history(&self) -> &HistoryState {
        &self.history.state
    }

    /// The peer this node is pulling history from, if a sync is running.
    pub fn syncing_from(&self) -> Option<NodeKey> {
        self.history.sync.map(|(peer, _)| peer)
    }

    /// The running sync's id (what its requests carry and its pages echo), if a sync is running.
    pub fn sync_id(&self) -> Option<u64> {
        self.history.sync.map(|_| self.history.sync_id)
    }

    /// The status of this node's own message `seq` (see `Delivery`).
    pub fn delivery_status(&self, seq: u64) -> DeliveryStatus {
        self.delivery().status(seq)
    }

    /// How far the current alive members hold this node's own messages: every message's status at once.
    pub fn delivery(&self) -> Delivery {
        let view = self.view.as_ref().filter(|_| self.role != Role::Stopped);
        self.history.state.delivery(&self.cfg.key, view)
    }

    /// Messages received but waiting for what they depend on.
    pub fn held_back(&self) -> usize {
        self.history.held.len()
    }

    /// How many of this node's own messages some current alive member has not acknowledged yet.
    pub fn pending_acks(&self) -> u64 {
        self.delivery().pending()
    }

    /// The highest of our own seqs that `peer` is known to hold.
    pub(crate) fn acked_by(&self, peer: &NodeKey) -> u64 {
        self.history.state.acked.get(peer).copied().unwrap_or(0)
    }

    /// Lamport's receive rule: a clock heard of moves ours forward, so that what we write next sorts after
    /// everything the sender held. Only a plausible jump is taken: this is a hint (delivered messages move
    /// the clock anyway), and a clock pushed to the ceiling would make every message we write invalid.
    pub(crate) fn observe_clock(&mut self, clock: u64) {
        let st = &mut self.history.state;
        if clock > st.clock && clock - st.clock <= MAX_CLOCK_HINT {
            st.clock = clock;
        }
    }

    pub(crate) fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.history.wall = Some((now, unix_ms));
    }

    fn wall_ms(&self, now: Instant) -> u64 {
        self.history.wall.map_or(0, |(at, ms)| ms + now.saturating_duration_since(at).as_millis() as u64)
    }

    /// Writes a message as this node: durable first, shown as sent, then pushed to every alive member.
    /// Refused (with the reason) only for a body over the limit; never because of an election. Inside a
    /// round the message waits, unsigned, for the round's other own messages: `sign_own` signs them as one
    /// batch before anything else happens (any input or output but a push, an ack or another own message).
    pub(crate) fn author(&mut self, now: Instant, body: Body) -> Result<MessageId, MessageError> {
        if let Body::Text(t) = &body {
            if t.len() > message::MAX_BODY_LEN {
                return Err(MessageError::BodyTooLong);
            }
        }
        let me = self.cfg.key;
        let st = &self.history.state;
        let (seq, lamport, deps) = match self.history.round.unsigned.last() {
            // Exactly what it would get once the one before it is applied: nothing else is applied meanwhile,
            // and that one depends on every head of the others (so they are heads no more).
            Some(before) => (before.seq + 1, before.lamport.saturating_add(1), Vec::new()),
            None => {
                let deps = st.heads.iter().map(|(id, _)| *id).filter(|id| id.author != me).collect();
                (st.seq_of(&me) + 1, st.clock.saturating_add(1), deps)
            }
        };
        if lamport > message::MAX_COUNTER || seq > message::MAX_COUNTER {
            // Only a misbehaving member can push the clock this far; writing on would make invalid messages.
            return Err(MessageError::Inconsistent);
        }
        let m = Message::unsigned(me, seq, lamport, deps, self.wall_ms(now), body);
        let id = m.id();
        self.history.round.unsigned.push(m);
        if !self.history.round.open {
            self.sign_own();
        }
        Ok(id)
    }

    /// Signs our messages written since the last call as one batch (`Message::sign_batch`), then stores
    /// them (one `Store`), shows them as sent and pushes them.
    pub(crate) fn sign_own(&mut self) {
        if self.history.round.unsigned.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.history.round.unsigned);
        Message::sign_batch(&self.signing, &mut batch);
        for m in &batch {
            self.history.state.apply(m);
        }
        self.store(batch.clone());
        for m in batch {
            self.event(Event::Sent { message: m.clone() });
            self.push_to_members(&m);
        }
    }

    fn push_to_members(&mut self, m: &Message) {
        if !matches!(self.role, Role::Member | Role::Coordinator) {
            return;
        }
        let Some(view) = &self.view else { return };
        let to: Vec<NodeKey> = view.alive().map(|x| x.key).filter(|k| *k != self.cfg.key).collect();
        self.push(m, to);
    }

    /// Coordinator: records a membership change in the history, so every node shows it at one place.
    pub(crate) fn record(&mut self, now: Instant, event: MembershipEvent) {
        if let Err(e) = self.author(now, Body::Membership(event)) {
            tracing::error!(node = %self.cfg.key, "membership event not recorded: {e}");
        }
    }

    /// Messages from a peer (pushed by their author, or a sync page): see `receive`.
    pub(crate) fn on_messages(&mut self, now: Instant, from: NodeKey, messages: Vec<Message>) {
        self.receive(now, messages.into_iter().map(|m| (from, m)).collect());
    }

    /// Messages, each with the peer that sent it: verify, deliver what is ready, hold back the rest, store
    /// the delivered ones in one batch, then acknowledge them to their authors.
    pub(crate) fn receive(&mut self, now: Instant, received: Vec<(NodeKey, Message)>) {
        let mut batch = Vec::new();
        let (senders, messages): (Vec<NodeKey>, Vec<Message>) = received.into_iter().unzip();
        // Signatures are checked up front, on every core for a large batch (a sync page): the verdicts are
        // the same as one by one, only sooner.
        let fresh: Vec<bool> = messages
            .iter()
            .map(|m| self.history.state.seq_of(&m.author) < m.seq && !self.history.held.contains(&m.id()))
            .collect();
        let verdicts = verify_all(&messages, &fresh);
        let mut distrusted: Vec<NodeKey> = Vec::new();
        let mut heard: Vec<NodeKey> = Vec::new();
        for ((from, m), verdict) in senders.into_iter().zip(messages).zip(verdicts) {
            if distrusted.contains(&from) {
                continue;
            }
            if heard.last() != Some(&from) {
                heard.push(from);
            }
            let id = m.id();
            if self.history.state.seq_of(&m.author) >= m.seq || self.history.held.contains(&id) {
                continue;
            }
            let verdict = verdict.unwrap_or_else(|| m.verify());
            if let Err(e) = verdict {
                // Honest nodes verify before they store or forward: whoever sent this is broken or lying.
                // Its link is closed (it may dial again; each forged message closes it again) and counted;
                // the rest of what it sent is ignored.
                self.reject(Reject::BadMessage, &format!("{id} from {from}: {e}"));
                self.stats.links_distrusted += 1;
                tracing::warn!(node = %self.cfg.key, peer = %from, "closing the link to a peer that sent {id}: {e}");
                self.disconnect(from);
                distrusted.push(from);
                continue;
            }
            if self.history.state.ready(&m) {
                self.deliver(m, &mut batch);
            } else {
                // Lamport's receive rule also for what waits: whatever we write next sorts after it (a
                // newcomer still syncing must not write "coordinates from term 3" before its "joined").
                self.observe_clock(m.lamport);
                if self.history.held.len() < MAX_HELD {
                    self.history.held.hold(&self.history.state, m);
                }
            }
        }
        if batch.is_empty() {
            // Held messages wait for what they depend on: pull from the last honest sender.
            let sender = heard.into_iter().rev().find(|k| !distrusted.contains(k));
            if let Some(from) = sender.filter(|_| !self.history.held.is_empty() && self.history.sync.is_none()) {
                self.start_sync(now, from);
            }
            return;
        }
        self.commit(batch);
    }

    /// Delivers `m` and then whatever held messages it made ready, in causal order.
    fn deliver(&mut self, m: Message, batch: &mut Vec<Message>) {
        if !self.history.state.lamport_consistent(&m) {
            self.reject(Reject::BadMessage, &format!("{}: lamport not above its predecessors", m.id()));
            return;
        }
        let mut next = vec![m];
        while let Some(m) = next.pop() {
            let st = &self.history.state;
            if st.seq_of(&m.author) >= m.seq {
                continue;
            }
            if !st.ready(&m) {
                self.history.held.hold(st, m);
                continue;
            }
            if !st.lamport_consistent(&m) {
                continue;
            }
            let (author, seq) = (m.author, m.seq);
            self.history.state.apply(&m);
            batch.push(m);
            next.extend(self.history.held.woken(author, seq));
        }
    }

    /// Asks for `messages` (already applied to the summary) to be stored with the summary, which also
    /// carries the acknowledgements learnt since the last store.
    pub(crate) fn store(&mut self, messages: Vec<Message>) {
        self.history.state.seal();
        self.history.acked_unstored = false;
        let state = self.history.state.clone();
        self.emit(Output::Store { messages, state });
    }

    /// Stores a delivered batch (durable before anything that follows), shows it, then acknowledges it.
    fn commit(&mut self, batch: Vec<Message>) {
        let mut authors: Vec<NodeKey> = batch.iter().map(|m| m.author).collect();
        authors.sort_unstable();
        authors.dedup();
        self.store(batch.clone());
        for m in batch {
            self.event(Event::Delivered { message: m });
        }
        let me = self.cfg.key;
        for author in authors.into_iter().filter(|a| *a != me) {
            // Only to authors we can reach or that are members: an ack must not make us dial the departed.
            let linked = self.peers.get(&author).is_some_and(|p| p.link == crate::node::Link::Up);
            let member = self.view.as_ref().is_some_and(|v| v.is_alive(&author));
            if linked || member {
                let seq = self.history.state.seq_of(&author);
                self.ack(author, seq);
            }
        }
    }

    pub(crate) fn on_ack(&mut self, from: NodeKey, acks: Vec<(NodeKey, u64)>) {
        for (author, seq) in acks.into_iter().take(MAX_AUTHORS) {
            self.learn_peer_holds(from, author, seq);
        }
    }

    /// Records that `peer` holds `author` up to `seq` (acks and frontiers only ever move it forward).
    pub(crate) fn learn_peer_holds(&mut self, peer: NodeKey, author: NodeKey, seq: u64) {
        if author == self.cfg.key {
            return self.learn_acked(peer, seq);
        }
        let known = self.history.peers.entry(peer).or_default();
        if known.len() >= MAX_AUTHORS && !known.contains_key(&author) {
            return;
        }
        let entry = known.entry(author).or_default();
        *entry = (*entry).max(seq);
    }

    /// Records that `peer` holds our own messages up to `seq`: in the durable summary, written with the
    /// next `Store` (no write of its own: acknowledgements arrive all the time, and losing the last few in
    /// a crash only means learning them again from the peers' frontiers).
    fn learn_acked(&mut self, peer: NodeKey, seq: u64) {
        // Nobody holds more of ours than we wrote (our seq is durable before a message leaves): a larger
        // claim is recorded only up to what we wrote.
        let seq = seq.min(self.history.state.seq_of(&self.cfg.key));
        let acked = &mut self.history.state.acked;
        if acked.len() >= MAX_AUTHORS && !acked.contains_key(&peer) {
            return;
        }
        let entry = acked.entry(peer).or_default();
        if seq > *entry {
            *entry = seq;
            self.history.acked_unstored = true;
            self.history.nudge.remove(&peer);
            self.event(Event::Acked { member: peer, upto: seq });
        }
    }
}

/// Below this many messages to check, signatures are verified one by one.
const BATCH_VERIFY_MIN: usize = 4;
/// From this many messages to check, the batch is split across the cores.
const PARALLEL_VERIFY_MIN: usize = 128;

/// The verdict of each message marked `fresh` (`None` for the others): exactly `Message::verify`'s, found
/// sooner. Signatures are checked as batches (one per thread; `available_parallelism` threads for large
/// batches), and only a batch that fails is checked again one by one. Pure computation: the verdicts do not
/// depend on how the work was split, so the simulator's runs stay deterministic.
fn verify_all(messages: &[Message], fresh: &[bool]) -> Vec<Option<Result<(), MessageError>>> {
    let todo = fresh.iter().filter(|f| **f).count();
    if todo < BATCH_VERIFY_MIN {
        return verify_each(messages, fresh);
    }
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads = *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)));
    if todo < PARALLEL_VERIFY_MIN || threads < 2 {
        return verify_batch(messages, fresh);
    }
    let chunk = messages.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = messages
            .chunks(chunk)
            .zip(fresh.chunks(chunk))
            .map(|(ms, fs)| s.spawn(move || verify_batch(ms, fs)))
            .collect();
        // A part whose thread could not finish is left to the caller, which verifies those one by one.
        parts
            .into_iter()
            .zip(messages.chunks(chunk))
            .flat_map(|(p, ms)| p.join().unwrap_or_else(|_| vec![None; ms.len()]))
            .collect()
    })
}

/// `verify_all` on one thread: fields first, then every signature in one batch; one by one if it fails.
fn verify_batch(messages: &[Message], fresh: &[bool]) -> Vec<Option<Result<(), MessageError>>> {
    let verdicts: Vec<Option<Result<(), MessageError>>> =
        messages.iter().zip(fresh).map(|(m, f)| f.then(|| m.check_fields())).collect();
    let signed: Vec<&Message> =
        messages.iter().zip(&verdicts).filter(|(_, v)| matches!(v, Some(Ok(())))).map(|(m, _)| m).collect();
    if Message::signatures_valid(&signed) {
        return verdicts;
    }
    verify_each(messages, fresh)
}

/// `Message::verify` of each message marked `fresh`, one by one, but each batch signature checked once.
fn verify_each(messages: &[Message], fresh: &[bool]) -> Vec<Option<Result<(), MessageError>>> {
    let mut verified = message::Verified::default();
    messages.iter().zip(fresh).map(|(m, f)| f.then(|| m.verify_with(&mut verified))).collect()
}

#[cfg(test)]
mod verify_tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    /// Not a check: prints what signing and verifying cost on this machine, for docs/BENCHMARKS.md
    /// (`cargo test --release -p chatmesh-core -- --ignored --nocapture signature_costs`).
    #[test]
    #[ignore]
    fn signature_costs() {
        let keys: Vec<SigningKey> = (1..=4u8).map(|b| SigningKey::from_bytes(&[b; 32])).collect();
        let body = "x".repeat(200);
        let n = 4096u64;
        let t = std::time::Instant::now();
        let messages: Vec<Message> = (0..n)
            .map(|k| Message::sign(&keys[(k % 4) as usize], k / 4 + 1, k + 1, vec![], 0, Body::Text(body.clone())))
            .collect();
        let sign = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = std::time::Instant::now();
        assert!(messages.iter().all(|m| m.verify().is_ok()));
        let single = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        for batch in [4usize, 16, 64, 512, 2048] {
            let t = std::time::Instant::now();
            for chunk in messages.chunks(batch) {
                let refs: Vec<&Message> = chunk.iter().collect();
                assert!(Message::signatures_valid(&refs));
            }
            let per = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            println!("batch of {batch}: {per:.1} µs per signature");
        }
        println!("sign {sign:.1} µs, verify one by one {single:.1} µs per message (200-byte bodies, 4 authors)");
        // Signed in batches by one author (`Message::sign_batch`), as a round's own messages are; verified as
        // a receiver gets them, all of a batch together.
        let author = NodeKey(keys[0].verifying_key().to_bytes());
        for size in [1usize, 4, 16, 64] {
            let mut unsigned: Vec<Message> =
                (0..n).map(|k| Message::unsigned(author, k + 1, k + 1, vec![], 0, Body::Text(body.clone()))).collect();
            let t = std::time::Instant::now();
            for chunk in unsigned.chunks_mut(size) {
                Message::sign_batch(&keys[0], chunk);
            }
            let sign = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            let t = std::time::Instant::now();
            for chunk in unsigned.chunks(size) {
                let fresh = vec![true; chunk.len()];
                assert!(verify_all(chunk, &fresh).iter().all(|v| matches!(v, Some(Ok(())))));
            }
            let verify = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            println!("batches of {size} by one author: sign {sign:.1} µs, verify {verify:.1} µs per message");
        }
    }

    #[test]
    fn verdicts_on_many_threads_equal_verdicts_one_by_one() {
        let keys: Vec<SigningKey> = (1..=5u8).map(|b| SigningKey::from_bytes(&[b; 32])).collect();
        let mut messages: Vec<Message> = (0..300u64)
            .map(|k| {
                let key = &keys[(k % 5) as usize];
                Message::sign(key, k / 5 + 1, k + 1, vec![], 1000, Body::Text(format!("m{k}")))
            })
            .collect();
        // Every third run of 7 signed as one batch by its author instead, interleaved with the others.
        for run in (0..290).step_by(21) {
            let key = &keys[run % 5];
            let author = NodeKey(key.verifying_key().to_bytes());
            let mut batch: Vec<Message> = (0..7u64)
                .map(|j| Message::unsigned(author, 1000 + run as u64 + j, 1, vec![], 0, Body::Text(format!("b{j}"))))
                .collect();
            Message::sign_batch(key, &mut batch);
            messages.splice(run..run + 7, batch);
        }
        // Forged ones scattered through the batch, in several of the threads' parts (3 and 150 signed in a
        // batch with others that stay valid).
        for k in [3usize, 78, 150, 151, 299] {
            messages[k].body = Body::Text("forged".into());
        }
        assert!(!messages[3].proof.is_empty() && !messages[150].proof.is_empty());
        messages[200].seq = 0;
        let fresh: Vec<bool> = (0..messages.len()).map(|k| k % 7 != 0).collect();
        let sequential: Vec<Option<Result<(), MessageError>>> =
            messages.iter().zip(&fresh).map(|(m, f)| f.then(|| m.verify())).collect();
        assert!(fresh.iter().filter(|f| **f).count() >= PARALLEL_VERIFY_MIN);
        assert_eq!(verify_all(&messages, &fresh), sequential);
        assert_eq!(sequential.iter().filter(|v| matches!(v, Some(Err(_)))).count(), 6);
        // Small batches (one thread, and one by one) give the same verdicts.
        for n in [2, 5, 40, 127] {
            assert_eq!(verify_all(&messages[..n], &fresh[..n]), sequential[..n].to_vec(), "{n} messages");
        }
        // All valid: the batch passes as a whole.
        let good: Vec<Message> = messages
            .iter()
            .zip(&sequential)
            .filter(|(_, v)| !matches!(v, Some(Err(_))))
            .map(|(m, _)| m.clone())
            .collect();
        let all = vec![true; good.len()];
        assert!(verify_all(&good, &all).iter().all(|v| matches!(v, Some(Ok(())))));
    }
}
