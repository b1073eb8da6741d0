//! The node: one ChatMesh peer as a pure state machine.

use crate::ballot::Election;
use crate::config::{key_of, Config};
use crate::history::{Body, History, HistoryState, MembershipEvent, Verifier};
use crate::io::{Command, Destination, Event, Input, Output, Snapshot};
use crate::stats::{Reject, Stats};
use crate::timer::{Timer, Timers};
use crate::types::{Contact, NodeId, NodeKey, Rank, Term};
use crate::view::{MemberState, View};
use crate::wire::{Datagram, DatagramBody, Frame};
use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod state;

pub(crate) use state::{Coordinating, Following, InMesh, State};

/// Frames kept for a peer while its link is being set up; older ones are dropped first (every control
/// message is resent or superseded, so dropping is safe).
const MAX_QUEUED_FRAMES: usize = 64;
/// After a failed dial to join a coordinator, wait this long before trying it again; doubles per failure.
const JOIN_BACKOFF_MIN: Duration = Duration::from_millis(250);
const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(8);

/// Where a node stands in the mesh.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Multicasting `Discover`; founds a mesh if nobody answers.
    Discovering,
    /// Sent `Join` to a coordinator, waiting for `Welcome`.
    Joining,
    Member,
    Coordinator,
    /// Left the mesh; ignores all input.
    Stopped,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) enum Link {
    #[default]
    Down,
    Connecting,
    Up,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Peer {
    pub link: Link,
    pub addr: Option<SocketAddr>,
    pub last_heard: Option<Instant>,
    pub last_dial: Option<Instant>,
    /// The last dial failed and nothing was heard since: not worth asking in an election.
    pub unreachable: bool,
    pub queue: VecDeque<Vec<u8>>,
}

/// One ChatMesh peer, driven from outside.
///
/// Call in this order, as often as the driver likes:
/// 1. `handle_input(now, input)` for every datagram, frame, link event and user command;
/// 2. `handle_timeout(now)` when the instant returned by `poll_timeout` has passed;
/// 3. `poll_output()` until it returns `None`, carrying out each output in order (see `Output` for the
///    durability contract);
/// 4. `poll_timeout()` to know when to call `handle_timeout` next.
///
/// The node reads no clock, owns no socket and draws randomness only from the seed in its `Config`, so the
/// same inputs at the same instants always produce the same outputs.
pub struct Node {
    pub(crate) cfg: Config,
    pub(crate) signing: SigningKey,
    pub(crate) history: History,
    pub(crate) rng: ChaCha8Rng,
    /// Where this node stands, with its view and what only that standing has (see `State`). Changed only
    /// through `set_state` and `install`, which check each state's invariants in debug builds.
    state: State,
    pub(crate) my_id: Option<NodeId>,
    pub(crate) peers: BTreeMap<NodeKey, Peer>,
    pub(crate) timers: Timers,
    pub(crate) out: VecDeque<Output>,
    /// Elections this node started, over its life: each one's timers carry its number.
    pub(crate) election_round: u64,
    pub(crate) nonce: u64,
    /// `/quit` was asked as a member or coordinator: this node leaves, and never rejoins.
    pub(crate) leaving: bool,
    /// The highest `next_id` this node has seen in any view or join: the floor of every view it writes.
    pub(crate) next_id_seen: NodeId,
    /// The highest term of any view this node held (durable): the floor of every term it announces.
    pub(crate) max_term: Term,
    /// When this node last found itself stalled (see `health.rs`): silence is measured from then at most.
    pub(crate) stalled_until: Option<Instant>,
    /// The highest view term above our own that an alive member showed us (pings, heartbeats and their
    /// acks, redirects), and when it first did: another coordinator took over while we were not looking.
    pub(crate) term_heard: Option<(Term, Instant)>,
    /// Other coordinators this node (as coordinator) last showed its beacon or asked to merge it, and when:
    /// not again within a beacon interval. Kept across roles: a coordinator that steps down and is elected
    /// again soon after does not repeat itself to the same coordinator.
    pub(crate) merge_requested: BTreeMap<NodeKey, Instant>,
    /// Coordinators a dial to join failed for: not tried again before the instant, with the next delay.
    /// (A node without the network key would otherwise redial at every offer and beacon.)
    pub(crate) join_backoff: BTreeMap<NodeKey, (Instant, Duration)>,
    pub(crate) stats: Stats,
}

impl Node {
    /// A node starting (or restarting from its last durable state: `snapshot` and `history`, the last ones
    /// it was asked to persist and store) at `now`. It begins by looking for its mesh.
    pub fn new(mut cfg: Config, snapshot: Snapshot, history: HistoryState, now: Instant) -> Node {
        cfg.key = key_of(&cfg.secret);
        truncate_name(&mut cfg.name);
        let signing = SigningKey::from_bytes(&cfg.secret);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let nonce = rng.gen();
        // Sync ids start anywhere, so that a page answering a previous run of this node (queued by a peer
        // while we were down) does not match a sync of this one.
        let sync_id = rng.gen();
        // Batch signature checks draw from their own generator, which no peer can predict.
        let verifier = Verifier::for_node(&cfg.secret, cfg.seed);
        let view_next_id = snapshot.view.as_ref().map_or(NodeId(1), |v| v.next_id);
        let next_id_seen = snapshot.max_next_id.max(view_next_id);
        let max_term = snapshot.max_term.max(snapshot.view.as_ref().map_or(0, |v| v.term));
        let mut node = Node {
            cfg,
            signing,
            history: History::new(history, sync_id, verifier),
            rng,
            state: State::Discovering { view: snapshot.view, attempt: 0 },
            my_id: snapshot.my_id,
            peers: BTreeMap::new(),
            timers: Timers::default(),
            out: VecDeque::new(),
            election_round: 0,
            nonce,
            leaving: false,
            next_id_seen,
            max_term,
            stalled_until: None,
            term_heard: None,
            merge_requested: BTreeMap::new(),
            join_backoff: BTreeMap::new(),
            stats: Stats::default(),
        };
        node.start_discovery(now);
        node.timers.set(Timer::Keepalive, now + node.cfg.timing.keepalive_interval);
        node.timers.set(Timer::Retransmit, now + node.cfg.timing.retransmit_interval);
        node.timers.set(Timer::AntiEntropy, now + node.cfg.timing.anti_entropy_interval);
        node
    }

    // ----- driving: inputs -----

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.state.is_stopped() {
            return;
        }
        self.check_own_lateness(now);
        // A round merges runs of pushes, acks and our own messages; anything else first sees the pushes
        // gathered so far and sends what waits (decided below for frames).
        if !matches!(input, Input::Frame { .. } | Input::Command(Command::Send { .. })) {
            self.settle_round(now);
        }
        match input {
            Input::Datagram { from, bytes, direct } => match Datagram::decode(&bytes) {
                Ok(d) => self.on_datagram(now, from, d, direct),
                Err(e) => self.reject(Reject::UndecodableDatagram, &format!("from {from}: {e}")),
            },
            Input::Frame { from, bytes } => {
                if from == self.cfg.key {
                    return;
                }
                match Frame::decode(&bytes) {
                    Ok(frame) => {
                        self.heard(now, from);
                        if !matches!(frame, Frame::Messages { .. } | Frame::Ack { .. }) {
                            self.settle_round(now);
                        }
                        self.on_frame(now, from, frame);
                    }
                    Err(e) => self.reject(Reject::UndecodableFrame, &format!("from {from}: {e}")),
                }
            }
            Input::LinkUp { peer } => self.on_link_up(now, peer),
            Input::LinkDown { peer } => self.on_link_down(now, peer),
            Input::ConnectFailed { peer } => self.on_connect_failed(now, peer),
            Input::Command(c) => self.on_command(now, c),
            Input::Loaded { id, messages, more } => self.on_loaded(id, messages, more),
            Input::Clock { unix_ms } => self.set_wall_clock(now, unix_ms),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.state.is_stopped() {
            self.check_own_lateness(now);
        }
        self.settle_round(now);
        while !self.state.is_stopped() {
            let Some(timer) = self.timers.pop_due(now) else { break };
            match timer {
                Timer::Discover => self.on_discover_timer(now),
                Timer::Found => self.found(now),
                Timer::JoinDeadline => self.join_timed_out(now),
                Timer::Heartbeat => self.on_heartbeat_timer(now),
                Timer::Beacon => self.on_beacon_timer(now),
                Timer::CoordinatorSilent => self.suspect_coordinator(now),
                Timer::ElectionAnswer { round } => self.on_election_answer_timeout(now, round),
                Timer::ElectionAnnounce { round } => self.on_election_announce_timeout(now, round),
                Timer::Keepalive => self.on_keepalive_timer(now),
                Timer::LeaveDeadline => self.stop(),
                Timer::Retransmit => self.on_retransmit_timer(now),
                Timer::AntiEntropy => self.on_anti_entropy_timer(now),
                Timer::SyncDeadline => self.on_sync_deadline(now),
            }
        }
    }

    // ----- driving: outputs -----

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state.is_stopped() {
            return None;
        }
        self.timers.earliest()
    }

    // ----- state, for drivers, UIs and checkers -----

    pub fn role(&self) -> Role {
        self.state.role()
    }

    pub fn key(&self) -> NodeKey {
        self.cfg.key
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn my_id(&self) -> Option<NodeId> {
        self.my_id
    }

    /// The current view (only meaningful as a member or coordinator; otherwise the last one held).
    pub fn view(&self) -> Option<&View> {
        self.state.view()
    }

    pub fn term(&self) -> Term {
        self.state.view().map_or(0, |v| v.term)
    }

    /// The coordinator this node follows (itself when coordinator), once it is in a mesh.
    pub fn coordinator(&self) -> Option<NodeKey> {
        self.state.mesh_view().map(|v| v.coordinator)
    }

    pub fn election_running(&self) -> bool {
        self.state.election().is_some()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            my_id: self.my_id,
            view: self.state.view().cloned(),
            max_term: self.max_term,
            max_next_id: self.next_id_seen,
        }
    }

    /// A term above every term this node has held: what it announces next.
    pub(crate) fn fresh_term(&self, at_least: Term) -> Term {
        at_least.max(self.max_term.saturating_add(1)).min(crate::view::MAX_TERM)
    }

    pub(crate) fn my_rank(&self) -> Rank {
        Rank { id: self.my_id.unwrap_or_default(), key: self.cfg.key }
    }

    pub(crate) fn my_contact(&self) -> Contact {
        Contact { id: self.my_id.unwrap_or_default(), key: self.cfg.key, addr: self.cfg.addr }
    }

    /// The coordinator this node follows, as a redirect hint for others.
    pub(crate) fn coordinator_contact(&self) -> Option<Contact> {
        self.state.mesh_view()?.coordinator_member().map(|m| m.contact())
    }

    // ----- dispatch -----

    fn on_datagram(&mut self, now: Instant, from: SocketAddr, d: Datagram, direct: bool) {
        if d.mesh != self.cfg.mesh {
            self.reject(Reject::WrongMesh, &format!("from {from}: mesh {:?}", d.mesh));
            return;
        }
        match d.body {
            DatagramBody::Discover { nonce, key, .. } => self.on_discover(from, nonce, key, direct),
            DatagramBody::Offer { nonce, coordinator, .. } => self.on_offer(now, nonce, coordinator),
            DatagramBody::Beacon { coordinator, term, members, .. } => self.on_beacon(now, coordinator, term, members),
        }
    }

    fn on_frame(&mut self, now: Instant, from: NodeKey, frame: Frame) {
        if let Frame::Ping { term }
        | Frame::Heartbeat { term, .. }
        | Frame::HeartbeatAck { term, .. }
        | Frame::NotCoordinator { term, .. } = frame
        {
            // Evidence counts once per term, from when it was first shown, and only from alive members: a
            // peer repeating a wild term cannot keep failure detection off.
            let member = self.state.view().is_some_and(|v| v.is_alive(&from));
            if member && term > self.term() && self.term_heard.is_none_or(|(t, _)| term > t) {
                self.term_heard = Some((term, now));
            }
        }
        match frame {
            Frame::Join(join) => self.on_join(now, from, join),
            Frame::Welcome { view } => self.on_welcome(now, from, view),
            Frame::View { view } => self.on_view(now, from, view),
            Frame::ViewRequest { .. } => self.on_view_request(from),
            Frame::Heartbeat { term, .. } => self.on_heartbeat(now, from, term),
            Frame::HeartbeatAck { term, version, coordinator, next_id_seen } => {
                self.on_heartbeat_ack(now, from, (term, version, coordinator), next_id_seen)
            }
            Frame::Leave { .. } => self.on_leave(now, from),
            Frame::Election { term, suspect } => self.on_election(now, from, term, suspect),
            Frame::Answer { term } => self.on_answer(now, from, term),
            Frame::NotCoordinator { term, coordinator } => self.on_not_coordinator(now, from, term, coordinator),
            Frame::MergeRequest { view } => self.on_merge_request(now, from, view),
            Frame::Ping { term } => {
                // A peer still in an older view (one that was left behind, or whose coordinator stepped down
                // without reaching it) learns where the mesh is now, before it suspects anyone.
                let member = self.state.view().is_some_and(|v| v.is_alive(&from));
                if term < self.term() && !member && self.state.in_mesh() {
                    self.redirect(from);
                }
            }
            Frame::Messages { messages } => self.on_pushed(now, from, messages),
            Frame::Ack { acks } => self.on_ack(from, acks),
            Frame::Frontier { frontier, reply, clock } => {
                self.observe_clock(clock);
                self.on_frontier(now, from, frontier, reply)
            }
            Frame::SyncRequest { frontier, after, limit, sync } => {
                self.on_sync_request(now, from, frontier, after, limit, sync)
            }
            Frame::SyncPage { messages, more, sync } => self.on_sync_page(now, from, messages, more, sync),
        }
    }

    fn on_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Send { text, token } => {
                if let Err(reason) = self.author(now, Body::Text(text), token) {
                    self.event(Event::SendRefused { reason, token });
                }
            }
            Command::Leave => self.leave(now),
            Command::StartElection => {
                if self.state.in_mesh() {
                    self.start_election(now, None);
                }
            }
            Command::RefreshView => {
                if let State::Member(_) = self.state {
                    let term = self.term();
                    if let Some(c) = self.coordinator() {
                        self.send(c, &Frame::ViewRequest { term });
                    }
                }
            }
            Command::Rename { mut name } => {
                truncate_name(&mut name);
                self.cfg.name = name;
                match &self.state {
                    // The coordinator treats a member's repeated `Join` as an update of its entry.
                    State::Member(f) => {
                        let coordinator = f.view.coordinator;
                        self.send_join(coordinator, self.my_id);
                    }
                    State::Coordinator(c) => {
                        let mut view = c.view.clone();
                        let key = self.cfg.key;
                        if let Some(m) = view.members.iter_mut().find(|m| m.key == key) {
                            m.name = self.cfg.name.clone();
                        }
                        self.publish(now, view, None);
                    }
                    // Discovering or joining: the next `Join` carries the new name.
                    _ => {}
                }
            }
        }
    }

    pub(crate) fn reject(&mut self, reason: Reject, detail: &str) {
        *self.stats.rejected.entry(reason).or_default() += 1;
        tracing::debug!(node = %self.cfg.key, %reason, detail, "input refused");
        self.emit(Output::Event(Event::Rejected { reason }));
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.emit(Output::Event(event));
    }

    pub(crate) fn multicast(&mut self, to: Destination, body: DatagramBody) {
        let d = Datagram { mesh: self.cfg.mesh.clone(), body };
        match d.encode() {
            Ok(bytes) => self.emit(Output::Datagram { to, bytes }),
            Err(e) => tracing::warn!(node = %self.cfg.key, "datagram not sent: {e}"),
        }
    }

    pub(crate) fn jitter(&mut self, d: Duration) -> Duration {
        d.mul_f64(self.rng.gen_range(0.8..1.2))
    }

    // ----- links -----

    /// Remembers where `key` listens (from a view, an offer or a redirect).
    pub(crate) fn learn_addr(&mut self, key: NodeKey, addr: SocketAddr) {
        if key != self.cfg.key {
            self.peers.entry(key).or_default().addr = Some(addr);
        }
    }

    fn heard(&mut self, now: Instant, from: NodeKey) {
        let peer = self.peers.entry(from).or_default();
        peer.last_heard = Some(now);
        peer.unreachable = false;
    }

    /// Member: the coordinator proved it still coordinates (a heartbeat or view of our term). Any other frame
    /// proves only that the process is alive: a former coordinator pings too.
    pub(crate) fn coordinator_alive(&mut self, now: Instant) {
        if let State::Member(f) = &mut self.state {
            f.coordinator_heard = now;
        }
        self.timers.set(Timer::CoordinatorSilent, now + self.cfg.timing.coordinator_timeout);
    }

    pub(crate) fn send(&mut self, to: NodeKey, frame: &Frame) {
        match frame.encode() {
            Ok(bytes) => self.send_bytes(to, bytes),
            Err(e) => tracing::warn!(node = %self.cfg.key, kind = frame.kind(), "frame not sent: {e}"),
        }
    }

    pub(crate) fn send_bytes(&mut self, to: NodeKey, bytes: Vec<u8>) {
        if to == self.cfg.key {
            return;
        }
        // What waits for the round's end was decided first, also when this frame only joins a link's queue.
        self.release_frames();
        let view_addr = self.state.view().and_then(|v| v.get(&to)).map(|m| m.addr);
        let peer = self.peers.entry(to).or_default();
        if peer.addr.is_none() {
            peer.addr = view_addr;
        }
        match peer.link {
            Link::Up => self.emit(Output::Frame { to, bytes }),
            Link::Connecting | Link::Down => {
                if peer.queue.len() == MAX_QUEUED_FRAMES {
                    peer.queue.pop_front();
                }
                peer.queue.push_back(bytes);
                if peer.link == Link::Down {
                    if let Some(addr) = peer.addr {
                        peer.link = Link::Connecting;
                        self.emit(Output::Connect { peer: to, addr });
                    } else {
                        peer.queue.clear();
                    }
                }
            }
        }
    }

    /// Dials `key` unless a link is up or being set up.
    pub(crate) fn dial(&mut self, now: Instant, key: NodeKey) {
        if key == self.cfg.key {
            return;
        }
        self.release_frames();
        let view_addr = self.state.view().and_then(|v| v.get(&key)).map(|m| m.addr);
        let peer = self.peers.entry(key).or_default();
        let Some(addr) = view_addr.or(peer.addr) else { return };
        if peer.link == Link::Down {
            peer.link = Link::Connecting;
            peer.last_dial = Some(now);
            self.emit(Output::Connect { peer: key, addr });
        }
    }

    pub(crate) fn disconnect(&mut self, key: NodeKey) {
        // What waits for the round's end goes out on the link before it closes, not on a new dial.
        self.release_frames();
        if let Some(peer) = self.peers.get_mut(&key) {
            if peer.link != Link::Down {
                peer.link = Link::Down;
                peer.queue.clear();
                self.emit(Output::Disconnect { peer: key });
            }
        }
    }

    pub(crate) fn is_unreachable(&self, key: &NodeKey) -> bool {
        self.peers.get(key).is_some_and(|p| p.unreachable)
    }

    fn on_link_up(&mut self, now: Instant, key: NodeKey) {
        if key == self.cfg.key {
            return;
        }
        // What waits for the round's end was decided before this link: it goes behind the frames queued for
        // the link, which were too.
        self.release_frames();
        let peer = self.peers.entry(key).or_default();
        let replaced = peer.link == Link::Up;
        peer.link = Link::Up;
        peer.unreachable = false;
        peer.last_heard = Some(now);
        let queued: Vec<_> = peer.queue.drain(..).collect();
        for bytes in queued {
            self.emit(Output::Frame { to: key, bytes });
        }
        // A coordinator repeats its view on every new link to a member: a view sent on the connection this
        // one replaced may be lost (for example one stuck retransmitting when a partition healed).
        if let Some(view) = self.state.coordinator_view().filter(|v| v.is_alive(&key)) {
            let frame = Frame::View { view: view.clone() };
            self.send(key, &frame);
        }
        if replaced {
            self.sync_link_lost(now, key, true);
        }
        // Anti-entropy on every new link: whichever side lacks something pulls it.
        self.send_frontier(key, false);
    }

    /// A link that matters is redialled at once: a killed process resets its sockets, so a failed redial
    /// means the peer is gone, and failover takes a round trip instead of a timeout.
    fn on_link_down(&mut self, now: Instant, key: NodeKey) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        peer.link = Link::Down;
        self.sync_link_lost(now, key, false);
        let matters = match &self.state {
            State::Member(f) => f.view.coordinator == key,
            State::Coordinator(c) => c.view.is_alive(&key),
            State::Joining { contact, .. } => contact.key == key,
            _ => false,
        } || self.state.election().is_some_and(|e| e.waiting.contains(&key));
        if matters {
            self.dial(now, key);
        }
    }

    fn on_connect_failed(&mut self, now: Instant, key: NodeKey) {
        let ours = self.stalled_recently(now) && !matches!(self.state, State::Joining { .. });
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if peer.link == Link::Up {
            // Our dial failed, but a link is up (the peer dialled us meanwhile): nothing is wrong.
            return;
        }
        peer.link = Link::Down;
        peer.unreachable = true;
        peer.queue.clear();
        if ours {
            // The dial may have failed waiting on us: the peer is judged by its silence from now on, as
            // every peer is after a stall (`health`), not by this failure.
            peer.unreachable = false;
            return;
        }
        match &self.state {
            State::Joining { contact, .. } if contact.key == key => {
                let delay = match self.join_backoff.get(&key) {
                    Some((_, d)) => d.saturating_mul(2).min(JOIN_BACKOFF_MAX),
                    None => JOIN_BACKOFF_MIN,
                };
                if self.join_backoff.len() >= 64 {
                    self.join_backoff.clear();
                }
                self.join_backoff.insert(key, (now + delay, delay));
                self.start_discovery(now)
            }
            State::Member(f) if f.view.coordinator == key => self.suspect_coordinator(now),
            State::Coordinator(c) if c.view.is_alive(&key) => self.declare_failed(now, vec![key]),
            _ => {}
        }
        self.election_target_gone(now, key);
    }

    /// Pings every link, closes those silent for `link_timeout`, dials alive members without a link.
    fn on_keepalive_timer(&mut self, now: Instant) {
        let timing = self.cfg.timing.clone();
        let term = self.term();
        let mut dead = Vec::new();
        let mut quiet = Vec::new();
        for (key, peer) in &self.peers {
            if peer.link != Link::Up {
                continue;
            }
            match self.heard_at(key) {
                Some(t) if now.saturating_duration_since(t) >= timing.link_timeout => dead.push(*key),
                _ => quiet.push(*key),
            }
        }
        for key in dead {
            self.disconnect(key);
        }
        if let Ok(ping) = (Frame::Ping { term }).encode() {
            for key in quiet {
                self.send_bytes(key, ping.clone());
            }
        }
        self.dial_members(now);
        self.timers.set(Timer::Keepalive, now + timing.keepalive_interval);
    }

    /// Keeps the full mesh: dials every alive member that has no link, at most once per keepalive period.
    pub(crate) fn dial_members(&mut self, now: Instant) {
        let Some(view) = self.state.view() else { return };
        let period = self.cfg.timing.keepalive_interval;
        let due: Vec<NodeKey> = view
            .alive()
            .map(|m| m.key)
            .filter(|k| *k != self.cfg.key)
            .filter(|k| {
                self.peers.get(k).is_none_or(|p| {
                    p.link == Link::Down && p.last_dial.is_none_or(|t| now.saturating_duration_since(t) >= period)
                })
            })
            .collect();
        for key in due {
            self.dial(now, key);
        }
    }

    // ----- the state -----

    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    /// A member's or coordinator's election slot; `None` in the states that run no election.
    pub(crate) fn election_slot(&mut self) -> Option<&mut Option<Election>> {
        self.state.election_slot()
    }

    /// The election this node runs, if any.
    pub(crate) fn election_mut(&mut self) -> Option<&mut Election> {
        self.state.election_mut()
    }

    /// Ends the election this node runs, if any, and returns it.
    pub(crate) fn take_election(&mut self) -> Option<Election> {
        self.state.take_election()
    }

    /// Discovering: the number of this `Discover` (from 0), counting it.
    pub(crate) fn next_discover_attempt(&mut self) -> Option<u32> {
        match &mut self.state {
            State::Discovering { attempt, .. } => {
                let n = *attempt;
                *attempt = attempt.saturating_add(1);
                Some(n)
            }
            _ => None,
        }
    }

    /// Coordinator: `key` acknowledged a heartbeat of our term at `now`.
    pub(crate) fn follower_heard(&mut self, key: NodeKey, now: Instant) {
        if let State::Coordinator(c) = &mut self.state {
            c.followers.insert(key, now);
        }
    }

    /// After this node stalled: what it heard before is no evidence of now. A member measures its
    /// coordinator's silence from `now`; a coordinator counts its followers afresh (see `part_size`).
    pub(crate) fn forget_evidence(&mut self, now: Instant) {
        match &mut self.state {
            State::Member(f) => f.coordinator_heard = now,
            State::Coordinator(c) => c.followers.clear(),
            _ => {}
        }
    }

    /// Moves to `next` whose view is not new (a role change that keeps the view, or stopping).
    pub(crate) fn set_state(&mut self, next: State) -> State {
        let old = std::mem::replace(&mut self.state, next);
        self.check_state();
        old
    }

    /// The state, given up for the next one (which `set_state` or `install` puts in its place at once).
    pub(crate) fn take_state(&mut self) -> State {
        std::mem::replace(&mut self.state, State::Stopped { view: None })
    }

    /// Checks, in debug builds, what every state promises.
    fn check_state(&self) {
        let me = self.cfg.key;
        match &self.state {
            State::Member(f) => {
                let v = &f.view;
                debug_assert!(v.coordinator != me, "a member follows another node");
                debug_assert!(v.coordinator_member().is_some(), "a member's view names its coordinator");
                debug_assert!(
                    v.get(&me).is_some_and(|m| m.is_alive() || (self.leaving && m.state == MemberState::Left)),
                    "a member is alive in its view (or recorded as left, on its way out)"
                );
            }
            State::Coordinator(c) => {
                let v = &c.view;
                debug_assert!(v.coordinator == me, "a coordinator's view names itself as coordinator");
                debug_assert!(
                    v.get(&me).is_some_and(|m| m.is_alive() || self.leaving),
                    "a coordinator is alive in its view (or leaving)"
                );
            }
            State::Discovering { .. } | State::Joining { .. } => {
                debug_assert!(!self.leaving, "a leaving node never looks for a mesh");
            }
            State::Stopped { .. } => {}
        }
        if let Some(v) = self.state.mesh_view() {
            debug_assert!(v.term <= self.max_term, "max_term is the highest term held");
            debug_assert!(v.next_id <= self.next_id_seen, "next_id_seen is the highest next_id seen");
            debug_assert!(self.my_id == v.get(&me).map(|m| m.id), "our ID is the one our view gives us");
        }
    }

    // ----- views -----

    /// Moves to `next`, a member's or coordinator's state holding a new view, from a state that held `old`
    /// (`was_in_mesh`: as a member or coordinator): durable first, then the events that tell the user what
    /// changed.
    pub(crate) fn install(&mut self, old: Option<&View>, was_in_mesh: bool, next: impl InMesh) {
        let view = next.view();
        if let (true, Some(old)) = (was_in_mesh, old) {
            debug_assert!(view.term >= old.term, "terms never go down in a mesh");
        }
        self.next_id_seen = self.next_id_seen.max(view.next_id);
        self.max_term = self.max_term.max(view.term);
        let mine = view.get(&self.cfg.key).map(|m| m.id);
        let mut events = Vec::new();
        if let (Some(old_id), Some(new_id)) = (self.my_id, mine) {
            if old_id != new_id {
                events.push(Event::IdReassigned { key: self.cfg.key, old: old_id, new: new_id });
            }
        }
        if mine.is_some() {
            self.my_id = mine;
        }
        if let Some(old) = old {
            if (old.term, old.coordinator) != (view.term, view.coordinator) {
                let id = view.coordinator_member().map(|m| m.id).unwrap_or_default();
                events.push(Event::CoordinatorChanged { term: view.term, coordinator: view.coordinator, id });
            }
            if was_in_mesh {
                events.extend(member_events(old, view));
            }
        }
        self.set_state(next.into());
        self.emit(Output::Persist(self.snapshot()));
        for e in events {
            // Members a view brings get our frontier: anti-entropy on every view change.
            if let Event::MemberJoined { key, .. } = &e {
                if was_in_mesh {
                    let key = *key;
                    self.send_frontier(key, false);
                }
            }
            self.event(e);
        }
    }

    /// Coordinator only: installs `view` as the next version and replicates it to every alive member except
    /// `skip` (a joiner, who gets it in its `Welcome`).
    pub(crate) fn publish(&mut self, now: Instant, view: View, skip: Option<NodeKey>) {
        match self.take_state() {
            State::Coordinator(c) => self.publish_from(now, c, view, skip),
            other => {
                debug_assert!(false, "only a coordinator publishes");
                self.set_state(other);
            }
        }
    }

    /// Installs `view` as the version after `c.view` into the coordinator's state `c`, and replicates it.
    pub(crate) fn publish_from(&mut self, now: Instant, mut c: Coordinating, mut view: View, skip: Option<NodeKey>) {
        view.version = c.view.version.saturating_add(1);
        view.coordinator = self.cfg.key;
        view.raise_next_id(self.next_id_seen);
        let (changes, took_over) = changes(&c.view, &view);
        let old = std::mem::replace(&mut c.view, view);
        self.install(Some(&old), true, c);
        self.stats.views_published += 1;
        // The history first: its pushes leave before the view on every link, so a member that acts on the
        // view (a successor of a departed coordinator) has seen the cause it writes after.
        self.record_changes(now, changes, took_over);
        self.broadcast_view(skip);
    }

    /// Coordinator: writes what changed into the history (joins, departures, failures, and this node taking
    /// over at `took_over`), so that every node shows each change at the same place.
    fn record_changes(&mut self, now: Instant, mut events: Vec<MembershipEvent>, took_over: Option<Term>) {
        // Cause before effect: the failure or departure that made this node coordinator is written first, so
        // it sorts first (one author's events sort in the order written).
        if let Some(term) = took_over {
            let id = self.my_id.unwrap_or_default();
            events.push(MembershipEvent::CoordinatorChanged { term, id, key: self.cfg.key });
        }
        for e in events {
            self.record(now, e);
        }
    }

    /// Coordinator: replicates our view to every alive member except `skip`.
    pub(crate) fn broadcast_view(&mut self, skip: Option<NodeKey>) {
        let Some(view) = self.state.coordinator_view() else { return };
        let to: Vec<NodeKey> = view.alive().map(|m| m.key).filter(|k| *k != self.cfg.key && Some(*k) != skip).collect();
        let frame = Frame::View { view: view.clone() };
        match frame.encode() {
            Ok(bytes) => {
                for key in to {
                    self.send_bytes(key, bytes.clone());
                }
            }
            Err(e) => tracing::error!(node = %self.cfg.key, "view not replicated: {e}"),
        }
    }

    /// Ends this node's part in the mesh.
    pub(crate) fn stop(&mut self) {
        self.release_frames();
        let up: Vec<NodeKey> = self.peers.iter().filter(|(_, p)| p.link != Link::Down).map(|(k, _)| *k).collect();
        for key in up {
            self.disconnect(key);
        }
        let view = self.take_state().into_view();
        self.set_state(State::Stopped { view });
        self.timers.clear();
        self.event(Event::Stopped);
    }

    /// Cancels the timers of member, coordinator, candidate and joiner, for a change of role (the election
    /// they drive is in the state the node leaves: an election without its timer would never end and block
    /// every new one).
    pub(crate) fn clear_role_state(&mut self) {
        for t in [
            Timer::Discover,
            Timer::Found,
            Timer::JoinDeadline,
            Timer::Heartbeat,
            Timer::Beacon,
            Timer::CoordinatorSilent,
            Timer::ElectionAnswer { round: 0 },
        ] {
            self.timers.cancel(t);
        }
    }
}

/// Names longer than the limit would make every view that lists them invalid: cut at a char boundary.
fn truncate_name(name: &mut String) {
    if name.len() > crate::view::MAX_NAME_LEN {
        let mut end = crate::view::MAX_NAME_LEN;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
}

fn member_events(old: &View, new: &View) -> Vec<Event> {
    let mut events = Vec::new();
    for m in &new.members {
        let before = old.get(&m.key).map(|o| o.state);
        let (id, key, name) = (m.id, m.key, m.name.clone());
        match (before, m.state) {
            (Some(MemberState::Alive), MemberState::Alive) => {}
            (_, MemberState::Alive) => events.push(Event::MemberJoined { id, key, name }),
            (Some(MemberState::Alive), MemberState::Failed) => events.push(Event::MemberFailed { id, key, name }),
            (Some(MemberState::Alive), MemberState::Left) => events.push(Event::MemberLeft { id, key, name }),
            _ => {}
        }
    }
    events
}

/// What a coordinator writes into the history when its view goes from `old` to `new`: joins, departures,
/// failures and renames, and the term at which it took over, if it did.
fn changes(old: &View, new: &View) -> (Vec<MembershipEvent>, Option<Term>) {
    let mut events = Vec::new();
    for e in member_events(old, new) {
        events.push(match e {
            Event::MemberJoined { id, key, name } => MembershipEvent::Joined { id, key, name },
            Event::MemberLeft { id, key, name } => MembershipEvent::Left { id, key, name },
            Event::MemberFailed { id, key, name } => MembershipEvent::Failed { id, key, name },
            _ => continue,
        });
    }
    events.extend(renames(old, new));
    (events, (old.coordinator != new.coordinator).then_some(new.term))
}

/// Members alive in `new` whose name differs from the one `old` gives them: each a `Renamed` event (a
/// member rejoining under another name too, after its `Joined`).
fn renames(old: &View, new: &View) -> Vec<MembershipEvent> {
    new.alive()
        .filter_map(|m| {
            let before = old.get(&m.key).filter(|o| o.name != m.name)?;
            Some(MembershipEvent::Renamed { id: m.id, key: m.key, old: before.name.clone(), new: m.name.clone() })
        })
        .collect()
}
