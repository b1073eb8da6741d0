//! Anti-entropy and retransmission: peers exchange frontiers and pull what they lack, in pages.
//!
//! - A node sends its frontier when a link comes up, when it enters the mesh, to members a new view
//!   brings, to one random linked member every `anti_entropy_interval`, and as retransmission: an author
//!   whose member has not acknowledged its latest message re-sends its frontier to it with backoff
//!   (`retransmit_interval` doubling to `retransmit_max`), and the member pulls the missing messages.
//! - A node that sees a peer holding more than it does pulls from that peer: `SyncRequest` with its own
//!   frontier and a cursor; the peer answers a `SyncPage` with the messages the requester lacks, the
//!   smallest in canonical order first, at most `PAGE_MESSAGES` and `PAGE_BYTES`; pages continue after the
//!   last message received until the peer says there is no more. One sync at a time, with one page
//!   requested ahead. Each sync has an id, carried by all its requests and echoed by the pages: a page
//!   of an earlier sync (answering a request sent before that sync ended) is taken like any other page,
//!   but does not continue the current one. Since it may bring what the current sync's next page brings,
//!   it grants that sync one page of grace (as the start of a sync does): the next page continues the
//!   sync even if it brings nothing new. A first request's
//!   frontier is durable and counts as the requester's acknowledgements; a later one (with a cursor) may
//!   name pages not yet durable, counts as nothing, and goes out at once (`Output::FrameAhead`) as soon
//!   as a page arrives, so the peer loads the next page while the requester verifies and commits this one
//!   (the driver holds it back like any frame while more than one earlier round is committing).

use crate::history::{
    Frontier, HistoryState, Message, OrderKey, MAX_AUTHORS, MAX_PENDING_LOADS, PAGE_BYTES, PAGE_MESSAGES,
};
use crate::io::{LoadRequest, Output};
use crate::node::{Link, Node};
use crate::stats::Reject;
use crate::timer::Timer;
use crate::types::NodeKey;
use crate::wire::Frame;
use rand::seq::IteratorRandom;
use std::time::Instant;

impl Node {
    fn frontier_vec(&self) -> Vec<(NodeKey, u64)> {
        self.history.state.authors.iter().map(|(k, a)| (*k, a.seq)).take(MAX_AUTHORS).collect()
    }

    pub(crate) fn send_frontier(&mut self, to: NodeKey, reply: bool) {
        if to != self.cfg.key {
            let frontier = self.frontier_vec();
            let clock = self.history.state.clock;
            self.send(to, &Frame::Frontier { frontier, reply, clock });
        }
    }

    pub(crate) fn on_frontier(&mut self, now: Instant, from: NodeKey, frontier: Vec<(NodeKey, u64)>, reply: bool) {
        if frontier.len() > MAX_AUTHORS {
            self.reject(Reject::OutOfBounds, &format!("frontier of {} authors from {from}", frontier.len()));
            return;
        }
        for (author, seq) in &frontier {
            self.learn_peer_holds(from, *author, *seq);
        }
        let theirs: Frontier = frontier.into_iter().collect();
        let mine = &self.history.state;
        let they_have_more = theirs.iter().any(|(a, s)| *s > mine.seq_of(a));
        let i_have_more = mine.authors.iter().any(|(a, st)| st.seq > theirs.get(a).copied().unwrap_or(0));
        if they_have_more {
            self.start_sync(now, from);
        }
        if i_have_more && !reply {
            self.send_frontier(from, true);
        }
    }

    /// Starts pulling from `peer` unless a sync is already running.
    pub(crate) fn start_sync(&mut self, now: Instant, peer: NodeKey) {
        if self.history.sync.is_some() || peer == self.cfg.key {
            return;
        }
        self.history.sync_id = self.history.sync_id.wrapping_add(1);
        self.history.sync_grace = true;
        self.request_page(now, peer, None);
    }

    /// The link to `peer` went down, or (`replaced`) a new connection replaced it: a sync from that peer may
    /// have lost its request or page with the old connection. Rather than wait for `sync_timeout`, it starts
    /// over on the new connection (the peer sends only what we lack), or moves to whoever else holds more.
    pub(crate) fn sync_link_lost(&mut self, now: Instant, peer: NodeKey, replaced: bool) {
        if self.history.sync.is_none_or(|(p, _)| p != peer) {
            return;
        }
        self.end_sync();
        if replaced {
            self.start_sync(now, peer);
        } else {
            self.sync_from_whoever_has_more(now);
        }
    }

    fn end_sync(&mut self) {
        self.history.sync = None;
        self.timers.cancel(Timer::SyncDeadline);
    }

    fn request_page(&mut self, now: Instant, peer: NodeKey, after: Option<OrderKey>) {
        let frontier = self.frontier_vec();
        let sync = self.history.sync_id;
        self.send(peer, &Frame::SyncRequest { frontier, after, limit: PAGE_MESSAGES, sync });
        self.sync_requested(now, peer);
    }

    fn sync_requested(&mut self, now: Instant, peer: NodeKey) {
        let deadline = now + self.cfg.timing.sync_timeout;
        self.history.sync = Some((peer, deadline));
        self.timers.set(Timer::SyncDeadline, deadline);
    }

    /// A peer pulls from us: ask the driver for the page (the core holds no message bodies).
    pub(crate) fn on_sync_request(
        &mut self,
        now: Instant,
        from: NodeKey,
        frontier: Vec<(NodeKey, u64)>,
        after: Option<OrderKey>,
        limit: u32,
        sync: u64,
    ) {
        if frontier.len() > MAX_AUTHORS {
            self.reject(Reject::OutOfBounds, &format!("sync request of {} authors from {from}", frontier.len()));
            return;
        }
        // What a first request lists is what the requester holds, durably: acknowledgements, and maybe
        // something for us to pull. A request with a cursor continues a sync and may list what the
        // requester has only just received, not yet durable: it acknowledges nothing.
        if after.is_none() {
            for (author, seq) in &frontier {
                self.learn_peer_holds(from, *author, *seq);
            }
        }
        if self.history.loads.len() >= MAX_PENDING_LOADS {
            // The requester retries after its sync timeout.
            return;
        }
        let id = self.history.next_load;
        self.history.next_load += 1;
        self.history.loads.insert(id, (from, sync));
        let request = LoadRequest {
            id,
            frontier: frontier.into_iter().collect(),
            after,
            max_messages: limit.clamp(1, PAGE_MESSAGES),
            max_bytes: PAGE_BYTES,
        };
        self.emit(Output::Load(request));
        if request_has_more(&self.history.state, &self.history.peers, &from) {
            self.start_sync(now, from);
        }
    }

    /// The driver answered a load: send the page to whoever asked.
    pub(crate) fn on_loaded(&mut self, id: u64, mut messages: Vec<Message>, mut more: bool) {
        let Some((peer, sync)) = self.history.loads.remove(&id) else { return };
        // A page must fit one frame, whatever the store put in it: cut it and say there is more.
        loop {
            let frame = Frame::SyncPage { messages, more, sync };
            match frame.encode() {
                Ok(bytes) => return self.send_bytes(peer, bytes),
                Err(_) => {
                    let Frame::SyncPage { messages: m, .. } = frame else { unreachable!() };
                    messages = m;
                    if messages.len() <= 1 {
                        tracing::error!(node = %self.cfg.key, "a single message does not fit a frame");
                        return;
                    }
                    messages.truncate(messages.len() / 2);
                    more = true;
                }
            }
        }
    }

    pub(crate) fn on_sync_page(&mut self, now: Instant, from: NodeKey, messages: Vec<Message>, more: bool, sync: u64) {
        let last = messages.last().map(Message::order_key);
        let before = self.history.state.count;
        // A page of an earlier sync, even from the same peer (a request sent ahead before that sync ended),
        // brings messages like any other, but must not start a second chain of requests beside ours.
        let id = self.history.sync_id;
        let ours = sync == id && self.history.sync.is_some_and(|(p, _)| p == from);
        // The next page is requested before this one is even verified, so that the peer loads and sends
        // it while this one is verified and committed here. The request names what we held before this
        // page (the cursor skips the page itself); a request with a cursor is not taken as
        // acknowledgements, so it need not wait for any write: a driver sends it at once.
        let requested = match (ours, more, last) {
            (true, true, Some(after)) if self.peers.get(&from).is_some_and(|p| p.link == Link::Up) => {
                let request = Frame::SyncRequest {
                    frontier: self.frontier_vec(),
                    after: Some(after),
                    limit: PAGE_MESSAGES,
                    sync: id,
                };
                match request.encode() {
                    Ok(bytes) => {
                        self.emit(Output::FrameAhead { to: from, bytes });
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => false,
        };
        self.on_messages(now, from, messages);
        let fruitful = self.history.state.count > before;
        self.stats.sync_pages += 1;
        self.stats.messages_pulled += self.history.state.count.saturating_sub(before);
        if !ours && fruitful {
            // This page may have brought what the running sync's next page brings.
            self.history.sync_grace = true;
        }
        // (`on_messages` neither ends nor starts a sync while one runs: `ours` still holds.)
        if ours {
            // A page may bring nothing new without its peer being stale: a page of an ended sync (a request
            // sent before it ended, from this peer or another) can have brought the same messages just
            // before it. Each such page grants one page of grace, and so does the start of a sync; every
            // page of the sync uses up what grace there is.
            let grace = std::mem::take(&mut self.history.sync_grace);
            let progress = fruitful || grace;
            if self.peers.get(&from).is_none_or(|p| p.link != Link::Up) {
                // The link is gone (we dropped the peer for something forged in this page): pull from
                // someone else rather than wait for the sync timeout.
                self.end_sync();
                self.sync_from_whoever_has_more(now);
                return;
            }
            match (more, last) {
                // A later page that brought nothing new ends the sync (its next page, if already requested,
                // is taken as any other page, and continues nothing): an honest page holds only what we
                // lack, and a peer that keeps answering "more" with nothing must not hold the slot forever.
                (true, Some(_)) if progress && requested => self.sync_requested(now, from),
                (true, Some(after)) if progress => self.request_page(now, from, Some(after)),
                _ => {
                    self.end_sync();
                    // The peer had nothing beyond what we now hold: what we believed it held beyond that
                    // was stale (or untrue), and must not send us back to it at once.
                    self.cap_peer_knowledge(from);
                    // What is still held back waits for messages this peer does not have: drop it, it is
                    // neither durable nor acknowledged, and anti-entropy brings it back with what it needs.
                    self.history.held.clear();
                    if fruitful {
                        self.sync_from_whoever_has_more(now);
                    }
                }
            }
        }
    }

    fn cap_peer_knowledge(&mut self, peer: NodeKey) {
        let mine = &self.history.state;
        if let Some(known) = self.history.peers.get_mut(&peer) {
            for (author, seq) in known.iter_mut() {
                *seq = (*seq).min(mine.seq_of(author));
            }
        }
    }

    /// The peer we pulled from went quiet: forget it, and pull from whoever is known to hold more.
    pub(crate) fn on_sync_deadline(&mut self, now: Instant) {
        if let Some((peer, _)) = self.history.sync {
            self.end_sync();
            self.cap_peer_knowledge(peer);
        }
        self.sync_from_whoever_has_more(now);
    }

    pub(crate) fn sync_from_whoever_has_more(&mut self, now: Instant) {
        let mine = &self.history.state;
        // A random one of them, so that one peer that claims too much cannot be chosen every time and
        // everyone does not pile onto the same peer.
        let ahead = self
            .history
            .peers
            .iter()
            .filter(|(peer, f)| {
                self.peers.get(*peer).is_some_and(|p| p.link == Link::Up) && f.iter().any(|(a, s)| *s > mine.seq_of(a))
            })
            .map(|(peer, _)| *peer)
            .choose(&mut self.rng);
        if let Some(peer) = ahead {
            self.start_sync(now, peer);
        }
    }

    /// Retransmission: nudge every alive member that lags our own messages, with backoff per member. A member
    /// is nudged only once it has lagged a whole `retransmit_interval` without acknowledging anything new (at
    /// two ticks in a row, with no progress in between): under steady load the latest message is nearly
    /// always in flight at a tick, and nudging for it made the member pull, in a sync, what was already on
    /// its way (measured: a frontier, a sync request, a page load and a page for 6 % of the messages at
    /// 1,000 msg/s).
    pub(crate) fn on_retransmit_timer(&mut self, now: Instant) {
        let timing = self.cfg.timing.clone();
        let me = self.cfg.key;
        let mine = self.history.state.seq_of(&me);
        let lagging: Vec<NodeKey> = match self.state().mesh_view() {
            Some(v) if mine > 0 => v.alive().map(|m| m.key).filter(|k| *k != me && self.acked_by(k) < mine).collect(),
            _ => Vec::new(),
        };
        // Members that no longer lag (or left the view) start afresh if they lag again.
        self.history.nudge.retain(|k, _| lagging.contains(k));
        for key in lagging {
            let first = (now + timing.retransmit_interval, timing.retransmit_interval);
            let (next, interval) = *self.history.nudge.entry(key).or_insert(first);
            if now >= next {
                self.stats.retransmits += 1;
                self.send_frontier(key, false);
                let interval = (interval * 2).min(timing.retransmit_max);
                self.history.nudge.insert(key, (now + interval, interval));
            }
        }
        self.timers.set(Timer::Retransmit, now + timing.retransmit_interval);
        // Acknowledgements learnt since the last write are written now if no message write took them
        // along: at most one extra write per tick, and only when the chat is quiet.
        if self.history.acked_unstored {
            self.store(Vec::new());
        }
    }

    /// Periodic anti-entropy with one random linked member.
    pub(crate) fn on_anti_entropy_timer(&mut self, now: Instant) {
        let me = self.cfg.key;
        let alive: Vec<NodeKey> = self.state().view().into_iter().flat_map(|v| v.alive()).map(|m| m.key).collect();
        // Not an exact-size iterator, as before the view moved into the state: `choose` draws the same numbers.
        let linked = alive.into_iter().filter(|k| *k != me && self.peers.get(k).is_some_and(|p| p.link == Link::Up));
        if let Some(peer) = linked.choose(&mut self.rng) {
            self.stats.anti_entropy_rounds += 1;
            self.send_frontier(peer, false);
        }
        let delay = self.jitter(self.cfg.timing.anti_entropy_interval);
        self.timers.set(Timer::AntiEntropy, now + delay);
    }
}

/// Whether `peer` is known to hold something `mine` lacks.
fn request_has_more(
    mine: &HistoryState,
    peers: &std::collections::BTreeMap<NodeKey, Frontier>,
    peer: &NodeKey,
) -> bool {
    peers.get(peer).is_some_and(|f| f.iter().any(|(a, s)| *s > mine.seq_of(a)))
}
