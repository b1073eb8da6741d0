//! Writing and receiving chat messages: a message is stored exactly when it is delivered (causally ready),
//! so what a node holds of each author is a contiguous prefix, its frontier (see `history`). This module
//! writes and signs our own messages, verifies what arrives (`history::message::Verifier`), delivers in
//! causal order through the hold-back queue, stores each delivered batch with the summary, and keeps the
//! acknowledgements: what we owe to authors and what peers hold of ours (`Delivery`).

use crate::history::message::{MAX_BODY_LEN, MAX_COUNTER};
use crate::history::{
    Body, Delivery, DeliveryStatus, HistoryState, MembershipEvent, Message, MessageError, MessageId, MAX_AUTHORS,
    MAX_CLOCK_HINT, MAX_HELD,
};
use crate::io::{Event, Output};
use crate::node::{Link, Node};
use crate::stats::Reject;
use crate::types::NodeKey;
use std::time::Instant;

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
        let view = self.state().view().filter(|_| !self.state().is_stopped());
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
    /// `token`: the driver's, for the `Sent` (0 for the node's own messages).
    pub(crate) fn author(&mut self, now: Instant, body: Body, token: u64) -> Result<MessageId, MessageError> {
        if let Body::Text(t) = &body {
            if t.len() > MAX_BODY_LEN {
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
        if lamport > MAX_COUNTER || seq > MAX_COUNTER {
            // Only a misbehaving member can push the clock this far; writing on would make invalid messages.
            return Err(MessageError::Inconsistent);
        }
        let m = Message::unsigned(me, seq, lamport, deps, self.wall_ms(now), body);
        let id = m.id();
        self.history.round.unsigned.push(m);
        self.history.round.tokens.push(token);
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
        let tokens = std::mem::take(&mut self.history.round.tokens);
        Message::sign_batch(&self.signing, &mut batch);
        for m in &batch {
            self.history.state.apply(m);
        }
        self.store(batch.clone());
        for (m, token) in batch.into_iter().zip(tokens) {
            self.event(Event::Sent { message: m.clone(), token });
            self.push_to_members(&m);
        }
    }

    fn push_to_members(&mut self, m: &Message) {
        let Some(view) = self.state().mesh_view() else { return };
        let to: Vec<NodeKey> = view.alive().map(|x| x.key).filter(|k| *k != self.cfg.key).collect();
        self.push(m, to);
    }

    /// Coordinator: records a membership change in the history, so every node shows it at one place.
    pub(crate) fn record(&mut self, now: Instant, event: MembershipEvent) {
        if let Err(e) = self.author(now, Body::Membership(event), 0) {
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
        let verdicts = self.history.verifier.verify_all(&messages, &fresh);
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
            let verdict = verdict.unwrap_or_else(|| self.history.verifier.verify(&m));
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
            let linked = self.peers.get(&author).is_some_and(|p| p.link == Link::Up);
            let member = self.state().view().is_some_and(|v| v.is_alive(&author));
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
