//! The simulator: many `Node`s on one virtual clock and one simulated network. Same seed, same run.

use crate::net::{delay, pair, Network, SimOptions};
use crate::store::SimStore;
use chatmesh_core::{
    Arrival, Command, Config, Connections, Destination, Dial, Event, HistoryState, Input, LoadRequest, Message,
    MessageId, Node, NodeId, NodeKey, Output, Pipeline, Role, Snapshot, Timing,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// One simulated process.
pub struct SimNode {
    pub name: String,
    pub key: NodeKey,
    pub cfg: Config,
    /// `None` while crashed (or before its first start).
    pub core: Option<Node>,
    pub incarnation: u64,
    pub paused: bool,
    /// What the process made durable: what a restart comes back with.
    pub durable: Snapshot,
    /// Its message store (durable too).
    pub store: SimStore,
    /// Left the mesh gracefully.
    pub left: bool,
    /// Added, but its start is still to come.
    pub pending_start: bool,
    pub udp: SocketAddr,
    /// What arrived while the process was stopped (SIGSTOP), read when it is continued.
    buffered: VecDeque<Arrived>,
    /// The driver's table of which connection carries the link to each peer (`chatmesh_core::Connections`,
    /// the tokio driver's own), with each connection's ID as its handle.
    links: Connections<u64>,
    timer_at: Option<Instant>,
    /// The highest `next_id` in any view this process persisted, across incarnations.
    max_next_id: NodeId,
    /// A driver round is open (`SimOptions::round`): its merged frames go out when it ends.
    round_open: bool,
    /// Rounds opened so far: an `EndRound` ends only the round it was scheduled for.
    rounds: u64,
    /// Since when the process has been live and in the mesh without a break (promise 7's check).
    steady_since: Option<Instant>,
    /// Times it was continued after a stop (draws the order in which it then reads input and timers).
    resumes: u64,
    /// Rounds whose writes are committing (`SimOptions::disk`), with what waits for them: the driver's
    /// pipeline itself.
    pipeline: Pipeline<()>,
    /// When the last commit handed to the disk lands (they land in order).
    commit_at: Option<Instant>,
    /// The writes handed to the disk and not yet landed, oldest first, with their round: a crash lands a
    /// prefix of them (durable, but the process never heard) and loses the rest.
    committing: VecDeque<(u64, Vec<Output>)>,
}

impl SimNode {
    /// The connection that carries this process's link to `peer`, as its driver sees it.
    pub fn link_conn(&self, peer: &NodeKey) -> Option<u64> {
        self.links.conn(peer)
    }

    /// Running, not stopped by a signal, and still in the mesh.
    pub fn is_live(&self) -> bool {
        self.core.as_ref().is_some_and(|c| c.role() != Role::Stopped) && !self.paused && !self.left
    }
}

/// What the simulator saw, for the checkers and reports.
#[derive(Default, Debug)]
pub struct Observations {
    /// Every event except refusals: (time since start, node index, event).
    pub events: Vec<(Duration, usize, Event)>,
    /// Every (ID, key) binding that appeared in any persisted view.
    pub bindings: BTreeMap<NodeId, BTreeSet<NodeKey>>,
    /// Safety violations found while running.
    pub violations: Vec<String>,
    /// Every change of a node's own durable ID: (node index, old, new).
    pub id_changes: Vec<(usize, NodeId, NodeId)>,
    /// Every message an author wrote (stored by its author first), exactly as signed.
    pub signed: BTreeMap<MessageId, Message>,
    /// Messages shown to their author as sent.
    pub sent: Vec<MessageId>,
    /// Messages delivered, over all nodes (for cost per delivered message).
    pub deliveries: u64,
    /// Frames and their bytes sent over all links.
    pub frames: u64,
    pub frame_bytes: u64,
    /// Frames sent (handed to a link, delivered or not), by kind (`Frame::kind`).
    pub frame_kinds: BTreeMap<&'static str, u64>,
    /// Sync requests sent, first and continuing, per node.
    pub sync_requests: BTreeMap<usize, u64>,
    /// Dials (`Output::Connect`), per node.
    pub dials: BTreeMap<usize, u64>,
    /// New connections that lost a tie-break with the one already carrying the link (simultaneous dials).
    pub refused_conns: u64,
    /// Commits in flight at a crash that landed (durable, though the process never heard), and that were
    /// lost.
    pub commits_landed_at_crash: u64,
    pub commits_lost_at_crash: u64,
    /// Times a process stopped reading input because every commit slot (`MAX_IN_FLIGHT`) was taken.
    pub input_waits: u64,
    pub rejected: u64,
    pub delivered: u64,
    /// (claimer, author) -> the highest seq of the author the claimer ever claimed to hold (in an `Ack`, a
    /// frontier or a sync's first request, sent or injected): what a node may record as acknowledged.
    pub claimed: BTreeMap<(NodeKey, NodeKey), u64>,
}

/// What the simulated driver reads about a connection to `peer`, as the tokio driver's inbox gets it
/// (`LinkReady`, `LinkFrame`, `LinkClosed`, `DialFailed`), before `Connections` decides what the core hears.
#[derive(Debug)]
enum ConnEv {
    /// Connection `conn`, dialled by `dialer`, finished its handshake.
    Ready {
        conn: u64,
        dialer: NodeKey,
    },
    Frame {
        conn: u64,
        bytes: Vec<u8>,
    },
    /// The other side closed `conn`, or it was reset.
    Closed {
        conn: u64,
    },
    DialFailed,
    /// A `Connect` answered at once by the link this process holds: `LinkUp`, or `LinkDown` if it closed
    /// meanwhile (the driver's `pending` answer).
    AlreadyUp,
}

/// Input waiting for a stopped process.
enum Arrived {
    Input(Input),
    Conn(NodeKey, ConnEv),
}

enum Ev {
    Start {
        node: usize,
    },
    Deliver {
        node: usize,
        inc: u64,
        input: Input,
    },
    Conn {
        node: usize,
        inc: u64,
        peer: NodeKey,
        ev: ConnEv,
    },
    Timer {
        node: usize,
        inc: u64,
    },
    Dial {
        from: usize,
        inc: u64,
        to: usize,
        started: Instant,
    },
    EndRound {
        node: usize,
        inc: u64,
        round: u64,
    },
    /// A round's writes are durable (`SimOptions::disk`).
    Committed {
        node: usize,
        inc: u64,
        round: u64,
    },
}

struct Scheduled {
    at: Instant,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub struct Sim {
    pub opts: SimOptions,
    pub timing: Timing,
    pub nodes: Vec<SimNode>,
    pub obs: Observations,
    /// Nodes whose sent datagrams are recorded for `take_datagrams` (tests of what a node says).
    tapped: BTreeMap<usize, Vec<(Destination, Vec<u8>)>>,
    rng: ChaCha8Rng,
    /// The disk's delays, drawn apart from `rng`.
    disk_rng: ChaCha8Rng,
    start: Instant,
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    net: Network,
    /// Latest arrival scheduled on each link direction: frames on a link arrive in order, as on TCP.
    fifo: BTreeMap<(usize, usize, u64), Instant>,
    /// The last change of who can reach whom (partition, isolation, cut, heal).
    net_changed_at: Instant,
    /// Raw input was injected (`inject`): control frames forged by an authenticated peer can make a node see
    /// what did not happen, so promise 7 (which assumes honest peers) is not checked any more.
    injected: bool,
}

impl Sim {
    pub fn new(opts: SimOptions, timing: Timing) -> Sim {
        let start = Instant::now();
        let rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let disk_rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0xD15C_D15C);
        Sim {
            opts,
            timing,
            nodes: Vec::new(),
            obs: Observations::default(),
            tapped: BTreeMap::new(),
            rng,
            disk_rng,
            start,
            now: start,
            seq: 0,
            queue: BinaryHeap::new(),
            net: Network::default(),
            fifo: BTreeMap::new(),
            net_changed_at: start,
            injected: false,
        }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the simulation began.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Adds a process that starts after `after`; returns its index.
    pub fn add_node(&mut self, after: Duration) -> usize {
        let name = format!("n{}", self.nodes.len());
        self.add_named_node(&name, after)
    }

    /// Adds a process with a display name that starts after `after`; returns its index.
    pub fn add_named_node(&mut self, name: &str, after: Duration) -> usize {
        let i = self.nodes.len();
        let mut secret = [0u8; 32];
        self.rng.fill(&mut secret);
        let key = chatmesh_core::key_of(&secret);
        let ip = Ipv4Addr::new(10, (i / 250) as u8, (i % 250) as u8 + 1, 1);
        let name = name.to_owned();
        let mut cfg = Config::new("sim", &name, secret, SocketAddr::V4(SocketAddrV4::new(ip, 7000)), 0);
        cfg.timing = self.timing.clone();
        self.nodes.push(SimNode {
            name,
            key,
            cfg,
            core: None,
            incarnation: 0,
            paused: false,
            durable: Snapshot::default(),
            store: SimStore::default(),
            left: false,
            pending_start: true,
            udp: SocketAddr::V4(SocketAddrV4::new(ip, 40000)),
            buffered: VecDeque::new(),
            links: Connections::new(),
            timer_at: None,
            max_next_id: NodeId(0),
            round_open: false,
            rounds: 0,
            steady_since: None,
            resumes: 0,
            pipeline: Pipeline::new(),
            commit_at: None,
            committing: VecDeque::new(),
        });
        self.net.groups.push(0);
        self.schedule(self.now + after, Ev::Start { node: i });
        i
    }

    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes[i].core.as_ref()
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_live()).collect()
    }

    // ----- running -----

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    pub fn run_until(&mut self, until: Instant) {
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= until) {
            let Reverse(s) = self.queue.pop().expect("peeked");
            self.now = s.at;
            self.process(s.ev);
        }
        self.now = self.now.max(until);
    }

    /// Runs until `done` holds (checked after every event) or `limit` passes; returns the time it took.
    pub fn run_until_true(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> Option<Duration> {
        let begin = self.now;
        let until = begin + limit;
        if done(self) {
            return Some(Duration::ZERO);
        }
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= until) {
            let Reverse(s) = self.queue.pop().expect("peeked");
            self.now = s.at;
            self.process(s.ev);
            if done(self) {
                return Some(self.now - begin);
            }
        }
        self.now = until;
        None
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, ev }));
    }

    fn process(&mut self, ev: Ev) {
        match ev {
            Ev::Start { node } => self.boot(node),
            Ev::Deliver { node, inc, input } => self.deliver(node, inc, Arrived::Input(input)),
            Ev::Conn { node, inc, peer, ev } => self.deliver(node, inc, Arrived::Conn(peer, ev)),
            Ev::Timer { node, inc } => self.fire_timer(node, inc),
            Ev::Dial { from, inc, to, started } => self.resolve_dial(from, inc, to, started),
            Ev::EndRound { node, inc, round } => self.end_round(node, inc, round),
            Ev::Committed { node, inc, round } => self.committed(node, inc, round),
        }
    }

    /// With `SimOptions::round`, an input to a process without an open round opens one, as a driver takes
    /// the inputs that arrive while it works as one round.
    fn open_round(&mut self, i: usize) {
        let Some(window) = self.opts.round else { return };
        let n = &mut self.nodes[i];
        let Some(core) = n.core.as_mut() else { return };
        if n.round_open {
            return;
        }
        core.begin_round();
        n.round_open = true;
        n.rounds += 1;
        let (inc, round) = (n.incarnation, n.rounds);
        self.schedule(self.now + window, Ev::EndRound { node: i, inc, round });
    }

    fn end_round(&mut self, i: usize, inc: u64, round: u64) {
        let now = self.now;
        let n = &mut self.nodes[i];
        // A stopped process ends its round when it resumes.
        if n.incarnation != inc || n.paused || !n.round_open || n.rounds != round {
            return;
        }
        n.round_open = false;
        let Some(core) = n.core.as_mut() else { return };
        core.end_round(now);
        self.drain(i);
    }

    fn boot(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.pending_start = false;
        if n.core.is_some() || n.left {
            return;
        }
        n.incarnation += 1;
        n.round_open = false;
        // A fresh process: nothing of an earlier one is in flight (a leave may have stopped it with commits
        // still landing; those are of the old incarnation and ignored).
        n.pipeline = Pipeline::new();
        n.commit_at = None;
        n.committing.clear();
        n.links = Connections::new();
        let mut cfg = n.cfg.clone();
        cfg.seed = self.opts.seed ^ ((i as u64) << 32) ^ n.incarnation.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        n.core = Some(Node::new(cfg, n.durable.clone(), n.store.state.clone(), self.now));
        n.paused = false;
        n.timer_at = None;
        self.trace(i, "boot");
        let unix_ms = self.wall_ms();
        let now = self.now;
        self.nodes[i].core.as_mut().expect("just booted").handle_input(now, Input::Clock { unix_ms });
        self.drain(i);
    }

    fn deliver(&mut self, i: usize, inc: u64, arrived: Arrived) {
        let n = &self.nodes[i];
        if n.incarnation != inc || n.core.is_none() {
            return;
        }
        if !self.reads_input(i) || !self.nodes[i].buffered.is_empty() {
            if !self.nodes[i].paused && self.nodes[i].buffered.is_empty() {
                self.obs.input_waits += 1;
                self.trace(i, "input waits: every commit slot is taken");
            }
            self.nodes[i].buffered.push_back(arrived);
            return;
        }
        let Some(input) = self.driver_reads(i, arrived) else { return };
        if self.opts.trace {
            self.trace(i, &format!("<- {}", describe(&input)));
        }
        self.obs.delivered += 1;
        self.open_round(i);
        let now = self.now;
        self.nodes[i].core.as_mut().expect("checked").handle_input(now, input);
        self.drain(i);
    }

    /// What the driver of process `i` makes of what arrived: the input for the core, if any. Connection
    /// events go through its `Connections`, as in the tokio driver: a new connection may replace the link's
    /// or lose the tie-break (the loser is closed), and frames or closes of a connection that does not carry
    /// the link are dropped.
    fn driver_reads(&mut self, i: usize, arrived: Arrived) -> Option<Input> {
        let (peer, ev) = match arrived {
            Arrived::Input(input) => return Some(input),
            Arrived::Conn(peer, ev) => (peer, ev),
        };
        let links = &mut self.nodes[i].links;
        match ev {
            ConnEv::Ready { conn, dialer } => match links.arrived(self.now, peer, conn, dialer, conn) {
                Arrival::Up { replaced } => {
                    if let Some(old) = replaced {
                        self.close_conn(i, old);
                    }
                    Some(Input::LinkUp { peer })
                }
                Arrival::Refused(new) => {
                    self.obs.refused_conns += 1;
                    self.trace(i, &format!("connection {new} from {peer} loses the tie-break"));
                    self.close_conn(i, new);
                    None
                }
            },
            ConnEv::Frame { conn, bytes } => links.carries(&peer, conn).then_some(Input::Frame { from: peer, bytes }),
            ConnEv::Closed { conn } => links.closed(&peer, conn).map(|_| Input::LinkDown { peer }),
            ConnEv::DialFailed => {
                links.dial_failed(peer);
                Some(Input::ConnectFailed { peer })
            }
            ConnEv::AlreadyUp => {
                Some(if links.contains(&peer) { Input::LinkUp { peer } } else { Input::LinkDown { peer } })
            }
        }
    }

    fn fire_timer(&mut self, i: usize, inc: u64) {
        let now = self.now;
        let n = &mut self.nodes[i];
        if n.incarnation != inc || n.paused || n.timer_at != Some(now) {
            return;
        }
        n.timer_at = None;
        if n.core.is_none() {
            return;
        }
        self.open_round(i);
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.handle_timeout(now);
        }
        self.drain(i);
    }

    /// The simulated wall clock, in Unix milliseconds.
    pub fn wall_ms(&self) -> u64 {
        1_700_000_000_000 + self.elapsed().as_millis() as u64
    }

    /// Carries out node `i`'s outputs, then schedules its next timer. The outputs go through the driver's
    /// commit pipeline: what may go at once goes, the writes land now or after a simulated disk delay, and
    /// what waits for them goes when they (and every earlier round's) are durable. With `crash_mid_output`,
    /// the process may die part-way: what was carried out stays, the rest is lost.
    fn drain(&mut self, i: usize) {
        let mut outputs = Vec::new();
        let Some(core) = self.nodes[i].core.as_mut() else { return };
        while let Some(o) = core.poll_output() {
            outputs.push(o);
        }
        let next = core.poll_timeout();
        self.check_output_order(i, &outputs);
        let ready = self.nodes[i].pipeline.begin(outputs, (), false);
        let mut todo = ready.now;
        if ready.writes.is_empty() {
            for (held, ()) in self.nodes[i].pipeline.complete() {
                todo.extend(held);
            }
        } else if let Some((lo, hi)) = self.opts.disk {
            let mut d = self.disk_rng.gen_range(lo..=hi);
            // Now and then an fsync stalls (a busy or failing disk, a full device cache).
            if self.opts.disk_stalls > 0.0 && self.disk_rng.gen_bool(self.opts.disk_stalls) {
                d += self.opts.disk_stall_max.mul_f64(self.disk_rng.gen::<f64>());
            }
            let n = &mut self.nodes[i];
            let at = (self.now + d).max(n.commit_at.unwrap_or(self.now));
            n.commit_at = Some(at);
            n.committing.push_back((ready.number, ready.writes));
            let ev = Ev::Committed { node: i, inc: n.incarnation, round: ready.number };
            self.schedule(at, ev);
        } else {
            todo.extend(ready.writes);
            for (held, ()) in self.nodes[i].pipeline.persisted(ready.number) {
                todo.extend(held);
            }
        }
        let p = self.opts.crash_mid_output;
        let cut = (p > 0.0 && todo.len() > 1 && self.rng.gen_bool(p)).then(|| self.rng.gen_range(1..todo.len()));
        for (k, o) in todo.into_iter().enumerate() {
            if Some(k) == cut {
                self.trace(i, &format!("killed after {k} outputs"));
                self.crash(i);
                return;
            }
            self.carry_out(i, o);
        }
        self.update_steady(i);
        let n = &mut self.nodes[i];
        if let Some(at) = next {
            if n.timer_at.is_none_or(|t| at < t || t < self.now) {
                n.timer_at = Some(at.max(self.now));
                let inc = n.incarnation;
                self.schedule(at.max(self.now), Ev::Timer { node: i, inc });
            }
        }
    }

    /// Round `round`'s writes reach the disk: they are durable, and what waited for them (and for no
    /// earlier round still committing) is carried out. A commit of an earlier incarnation was lost with the
    /// crash (or landed at it); a stopped (paused) process carries nothing out until it is continued. A
    /// process that stopped reading input because `MAX_IN_FLIGHT` rounds were committing reads again.
    fn committed(&mut self, i: usize, inc: u64, round: u64) {
        let n = &self.nodes[i];
        if n.incarnation != inc || n.core.is_none() {
            return;
        }
        if n.paused {
            let at = self.now + Duration::from_millis(1);
            self.schedule(at, Ev::Committed { node: i, inc, round });
            return;
        }
        if self.opts.trace {
            self.trace(i, &format!("round {round} durable"));
        }
        let n = &mut self.nodes[i];
        let Some((landed, writes)) = n.committing.pop_front() else { return };
        debug_assert_eq!(landed, round, "commits land in the order they were handed to the disk");
        let mut todo = writes;
        for (held, ()) in n.pipeline.persisted(round) {
            todo.extend(held);
        }
        for o in todo {
            self.carry_out(i, o);
        }
        self.update_steady(i);
        if !self.nodes[i].buffered.is_empty() && self.reads_input(i) {
            let now = self.now;
            self.open_round(i);
            self.read_buffered(i, now);
        }
    }

    /// Whether the process reads its sockets: not stopped, and (as the driver) fewer than `MAX_IN_FLIGHT`
    /// rounds committing. Timers fire either way.
    fn reads_input(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        !n.paused && n.pipeline.has_room()
    }

    /// Reads what waited in the process's buffers, in order, while it reads input at all.
    fn read_buffered(&mut self, i: usize, now: Instant) {
        while self.reads_input(i) {
            let Some(arrived) = self.nodes[i].buffered.pop_front() else { break };
            let Some(input) = self.driver_reads(i, arrived) else { continue };
            if self.opts.trace {
                self.trace(i, &format!("<- {}", describe(&input)));
            }
            if let Some(core) = self.nodes[i].core.as_mut() {
                core.handle_input(now, input);
            }
            self.drain(i);
        }
    }

    /// Keeps `steady_since`: live and a member or coordinator, without a break since then.
    fn update_steady(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let steady =
            n.is_live() && n.core.as_ref().is_some_and(|c| matches!(c.role(), Role::Member | Role::Coordinator));
        n.steady_since = match (steady, n.steady_since) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(self.now),
            (false, _) => None,
        };
    }

    /// Promise 7, nothing false: `author` writes that `failed` failed. That is a lie if `failed` was live,
    /// in the mesh and reachable from `author` for a whole failure-detection period (and then some) before,
    /// whatever `author` itself was doing meanwhile (a paused author must not take its own lateness for
    /// the others' silence).
    fn check_failure_claim(&mut self, author: usize, failed: NodeKey) {
        // A frame the simulator loses models a stuck link (TCP itself loses nothing): while frames are lost,
        // "reachable" is not what the author can see, and the check waits for a network that loses none.
        let Some(b) = self.index_of(&failed).filter(|_| !self.injected && self.opts.loss == 0.0) else { return };
        let t = &self.timing;
        let window = t.member_timeout.max(t.coordinator_timeout) + t.heartbeat_interval * 3;
        let Some(since) = self.now.checked_sub(window) else { return };
        let steady = self.nodes[b].steady_since.is_some_and(|s| s <= since);
        if steady && self.net_changed_at <= since && self.net.reachable(author, b) {
            let (a, b) = (self.nodes[author].name.clone(), self.nodes[b].name.clone());
            self.violation(format!("{a} recorded {b} failed, but {b} was alive and reachable from {a} throughout"));
        }
    }

    /// A process never sends, dials or multicasts once it has stopped (what waited for the end of a
    /// round goes out before it stops, or not at all).
    fn check_output_order(&mut self, i: usize, outputs: &[Output]) {
        let mut stopped = false;
        for o in outputs {
            match o {
                Output::Event(Event::Stopped) => stopped = true,
                Output::Connect { .. } | Output::Frame { .. } | Output::FrameAhead { .. } | Output::Datagram { .. }
                    if stopped =>
                {
                    let name = self.nodes[i].name.clone();
                    self.violation(format!("{name} sent or dialled after it stopped: {}", describe_out(o)));
                }
                _ => {}
            }
        }
    }

    fn carry_out(&mut self, i: usize, o: Output) {
        if self.opts.trace {
            self.trace(i, &format!("-> {}", describe_out(&o)));
        }
        match o {
            Output::Persist(snapshot) => self.persist(i, snapshot),
            Output::Store { messages, state } => self.store(i, messages, state),
            Output::Load(request) => self.load(i, request),
            Output::Event(Event::Sent { message, .. }) => {
                self.obs.sent.push(message.id());
            }
            Output::Event(Event::Delivered { .. }) => self.obs.deliveries += 1,
            Output::Event(Event::Acked { .. }) => {}
            Output::Event(Event::Rejected { .. }) => self.obs.rejected += 1,
            Output::Event(e) => {
                if e == Event::Stopped {
                    self.nodes[i].left = true;
                }
                self.obs.events.push((self.elapsed(), i, e));
            }
            Output::Datagram { to, bytes } => self.send_datagram(i, to, bytes),
            Output::Connect { peer, addr } => match self.nodes[i].links.connect(peer) {
                Dial::Up => {
                    let inc = self.nodes[i].incarnation;
                    self.schedule(self.now, Ev::Conn { node: i, inc, peer, ev: ConnEv::AlreadyUp });
                }
                Dial::InFlight => {}
                Dial::Start => {
                    *self.obs.dials.entry(i).or_default() += 1;
                    self.dial(i, peer, addr)
                }
            },
            Output::Disconnect { peer } => {
                if let Some(conn) = self.nodes[i].links.remove(&peer) {
                    self.close_conn(i, conn);
                }
            }
            Output::Frame { to, bytes } | Output::FrameAhead { to, bytes } => {
                if let Ok(frame) = chatmesh_core::Frame::decode(&bytes) {
                    *self.obs.frame_kinds.entry(frame.kind()).or_default() += 1;
                    if matches!(frame, chatmesh_core::Frame::SyncRequest { .. }) {
                        *self.obs.sync_requests.entry(i).or_default() += 1;
                    }
                    self.check_claims(i, frame);
                }
                self.send_frame(i, to, bytes)
            }
        }
    }

    fn persist(&mut self, i: usize, snapshot: Snapshot) {
        if let Some(view) = &snapshot.view {
            if let Err(e) = view.validate() {
                self.violation(format!("{} persisted an invalid view: {e:?}", self.nodes[i].name));
            }
            for m in &view.members {
                self.obs.bindings.entry(m.id).or_default().insert(m.key);
            }
            let n = &self.nodes[i];
            if view.coordinator == n.key && view.next_id < n.max_next_id {
                let msg =
                    format!("{} published next_id {} below {} it had seen", n.name, view.next_id.0, n.max_next_id.0);
                self.violation(msg);
            }
            let n = &mut self.nodes[i];
            n.max_next_id = n.max_next_id.max(view.next_id);
        }
        if let (Some(old), Some(new)) = (self.nodes[i].durable.my_id, snapshot.my_id) {
            if old != new {
                self.obs.id_changes.push((i, old, new));
                // Promise 6: the view that moved us must show why: another key holds our old ID, or we go
                // back to an ID we held before (the registry of a part that absorbed ours).
                let me = self.nodes[i].key;
                let clash = snapshot.view.as_ref().and_then(|v| v.by_id(old)).is_some_and(|m| m.key != me);
                let held_before = self.obs.id_changes.iter().any(|&(j, o, _)| j == i && o == new);
                if !clash && !held_before {
                    let name = self.nodes[i].name.clone();
                    self.violation(format!("{name} went from ID {old} to {new} although no other key holds {old}"));
                }
            }
        }
        self.nodes[i].durable = snapshot;
    }

    /// Writes messages to node `i`'s store, checking each against the promises a store can see.
    fn store(&mut self, i: usize, messages: Vec<Message>, state: HistoryState) {
        let me = self.nodes[i].key;
        for m in &messages {
            if m.author == me && !self.obs.signed.contains_key(&m.id()) {
                self.obs.signed.insert(m.id(), m.clone());
                if let chatmesh_core::Body::Membership(chatmesh_core::MembershipEvent::Failed { key, .. }) = &m.body {
                    self.check_failure_claim(i, *key);
                }
            }
            let simulated = self.nodes.iter().any(|n| n.key == m.author);
            match self.obs.signed.get(&m.id()) {
                Some(original) if original == m => {}
                Some(_) => {
                    self.violation(format!("{} stored {} unlike what its author signed", self.nodes[i].name, m.id()))
                }
                // An author outside the simulation (a test injecting messages): it must at least be signed.
                None if !simulated && m.verify().is_ok() => {
                    self.obs.signed.insert(m.id(), m.clone());
                }
                None => self.violation(format!("{} stored {} that its author never wrote", self.nodes[i].name, m.id())),
            }
            if let Some(problem) = self.nodes[i].store.append(m) {
                self.violation(format!("{}: {problem}", self.nodes[i].name));
            }
        }
        let st = &self.nodes[i].store;
        if state.digest != st.digest() || state.count != st.count {
            let name = self.nodes[i].name.clone();
            self.violation(format!("{name}'s history summary disagrees with its store"));
        }
        self.check_acked(i, &state);
        self.nodes[i].store.state = state;
    }

    /// What a node stores as acknowledged by each peer (what a restart shows as delivered) is no more
    /// than that peer ever claimed to hold.
    fn check_acked(&mut self, i: usize, state: &HistoryState) {
        let me = self.nodes[i].key;
        for (peer, seq) in &state.acked {
            let claimed = self.obs.claimed.get(&(*peer, me)).copied().unwrap_or(0);
            if *seq > claimed {
                let name = self.nodes[i].name.clone();
                self.violation(format!("{name} stored {peer} as holding its seq {seq}, but it claimed only {claimed}"));
            }
        }
    }

    /// The claims a frame makes about what its sender holds (none for most frames).
    fn claims(frame: chatmesh_core::Frame) -> Vec<(NodeKey, u64)> {
        match frame {
            chatmesh_core::Frame::Ack { acks } => acks,
            chatmesh_core::Frame::Frontier { frontier, .. } => frontier,
            // A sync's first request is taken as acknowledgements too (its later ones, with a cursor, not).
            chatmesh_core::Frame::SyncRequest { frontier, after: None, .. } => frontier,
            _ => Vec::new(),
        }
    }

    fn record_claims(&mut self, from: NodeKey, claims: &[(NodeKey, u64)]) {
        for (author, seq) in claims {
            let known = self.obs.claimed.entry((from, *author)).or_default();
            *known = (*known).max(*seq);
        }
    }

    /// The output-ordering contract, seen from outside: an `Ack` or a frontier a node sends may only
    /// claim messages its store already holds.
    fn check_claims(&mut self, i: usize, frame: chatmesh_core::Frame) {
        let claims = Self::claims(frame);
        self.record_claims(self.nodes[i].key, &claims);
        for (author, seq) in claims {
            let held =
                self.nodes[i].store.by_author.get(&author).and_then(|m| m.keys().next_back()).copied().unwrap_or(0);
            if seq > held {
                let name = self.nodes[i].name.clone();
                self.violation(format!("{name} claimed {author}/{seq} but its store holds only up to {held}"));
            }
        }
    }

    fn load(&mut self, i: usize, request: LoadRequest) {
        let (messages, more) = self.nodes[i].store.load(&request);
        let inc = self.nodes[i].incarnation;
        let input = Input::Loaded { id: request.id, messages, more };
        self.schedule(self.now, Ev::Deliver { node: i, inc, input });
    }

    pub(crate) fn violation(&mut self, what: String) {
        let at = self.elapsed();
        self.obs.violations.push(format!("at {at:?}: {what}"));
    }

    fn index_of(&self, key: &NodeKey) -> Option<usize> {
        self.nodes.iter().position(|n| &n.key == key)
    }

    /// Starts recording the datagrams node `i` sends.
    pub fn tap(&mut self, i: usize) {
        self.tapped.entry(i).or_default();
    }

    /// The datagrams node `i` sent since the last call (after `tap(i)`).
    pub fn take_datagrams(&mut self, i: usize) -> Vec<(Destination, Vec<u8>)> {
        self.tapped.get_mut(&i).map(std::mem::take).unwrap_or_default()
    }

    fn send_datagram(&mut self, i: usize, to: Destination, bytes: Vec<u8>) {
        if let Some(tap) = self.tapped.get_mut(&i) {
            tap.push((to, bytes.clone()));
        }
        let targets: Vec<usize> = match to {
            Destination::Group => (0..self.nodes.len()).filter(|j| *j != i).collect(),
            // The driver's direct datagram socket shares the port of the node's link address.
            Destination::Addr(a) => self.nodes.iter().position(|n| n.udp == a || n.cfg.addr == a).into_iter().collect(),
        };
        let from = self.nodes[i].udp;
        for j in targets {
            if self.nodes[j].core.is_none() || !self.net.reachable(i, j) {
                continue;
            }
            for d in self.net.deliveries(&self.opts, &mut self.rng) {
                let direct = matches!(to, Destination::Addr(_));
                let input = Input::Datagram { from, bytes: bytes.clone(), direct };
                let inc = self.nodes[j].incarnation;
                self.schedule(self.now + d, Ev::Deliver { node: j, inc, input });
            }
        }
    }

    /// Sends a frame on the connection that carries `i`'s link to `to` (dropped if none does, as the driver
    /// drops it). Data on a connection the other side closed draws a reset, if it gets through.
    fn send_frame(&mut self, i: usize, to: NodeKey, bytes: Vec<u8>) {
        let Some(conn) = self.nodes[i].links.conn(&to) else { return };
        let Some(j) = self.index_of(&to) else { return };
        if !self.net.conns.contains_key(&conn) {
            if self.net.reachable(i, j) {
                let (inc, d) = (self.nodes[i].incarnation, delay(&self.opts, &mut self.rng) * 2);
                self.schedule(self.now + d, Ev::Conn { node: i, inc, peer: to, ev: ConnEv::Closed { conn } });
            }
            return;
        }
        if !self.net.reachable(i, j) {
            return;
        }
        let from = self.nodes[i].key;
        self.obs.frames += 1;
        self.obs.frame_bytes += bytes.len() as u64;
        for d in self.net.deliveries(&self.opts, &mut self.rng) {
            let at = self.in_order(i, j, conn, self.now + d);
            let ev = ConnEv::Frame { conn, bytes: bytes.clone() };
            let inc = self.nodes[j].incarnation;
            self.schedule(at, Ev::Conn { node: j, inc, peer: from, ev });
        }
    }

    /// The time at which something sent from `i` to `j` on `conn` arrives if its delay says `at`: not before
    /// what was sent before it on that connection (TCP keeps order).
    fn in_order(&mut self, i: usize, j: usize, conn: u64, at: Instant) -> Instant {
        let last = self.fifo.entry((i, j, conn)).or_insert(at);
        let at = at.max(*last);
        *last = at;
        at
    }

    fn dial(&mut self, i: usize, peer: NodeKey, addr: SocketAddr) {
        let target = self.nodes.iter().position(|n| n.cfg.addr == addr && n.key == peer);
        let inc = self.nodes[i].incarnation;
        match target {
            Some(j) => {
                let d = delay(&self.opts, &mut self.rng);
                self.schedule(self.now + d, Ev::Dial { from: i, inc, to: j, started: self.now });
            }
            None => {
                let at = self.now + self.opts.connect_timeout;
                self.schedule(at, Ev::Conn { node: i, inc, peer, ev: ConnEv::DialFailed });
            }
        }
    }

    /// A dial from `i` reaches `j`: a new connection, unless `j` refuses or cannot answer. Every dial makes
    /// its own connection, so both sides dialling at once hold two until their `Connections` settle on one.
    fn resolve_dial(&mut self, i: usize, inc: u64, j: usize, started: Instant) {
        if self.nodes[i].incarnation != inc || self.nodes[i].core.is_none() {
            return;
        }
        let peer = self.nodes[j].key;
        let failed = Ev::Conn { node: i, inc, peer, ev: ConnEv::DialFailed };
        let refused = self.nodes[j].core.is_none() || self.nodes[j].left;
        let reachable = self.net.reachable(i, j);
        if reachable && refused {
            let d = delay(&self.opts, &mut self.rng);
            self.schedule(self.now + d, failed);
        } else if !reachable || self.nodes[j].paused {
            let at = (started + self.opts.connect_timeout).max(self.now);
            self.schedule(at, failed);
        } else {
            self.net.next_gen += 1;
            let conn = self.net.next_gen;
            self.net.conns.insert(conn, (i, j));
            let me = self.nodes[i].key;
            let jinc = self.nodes[j].incarnation;
            let ready = ConnEv::Ready { conn, dialer: me };
            self.schedule(self.now, Ev::Conn { node: j, inc: jinc, peer: me, ev: ready });
            // The dialler learns a round trip later; what `j` sends meanwhile arrives after that.
            let at = self.now + delay(&self.opts, &mut self.rng);
            self.in_order(j, i, conn, at);
            self.schedule(at, Ev::Conn { node: i, inc, peer, ev: ConnEv::Ready { conn, dialer: me } });
        }
    }

    /// Closes connection `conn` from `i`'s side; the other side hears of it if the network lets it.
    fn close_conn(&mut self, i: usize, conn: u64) {
        let Some((a, b)) = self.net.conns.remove(&conn) else { return };
        let other = if a == i { b } else { a };
        if self.net.reachable(i, other) && self.nodes[other].core.is_some() {
            let at = self.now + delay(&self.opts, &mut self.rng);
            let at = self.in_order(i, other, conn, at);
            let (peer, inc) = (self.nodes[i].key, self.nodes[other].incarnation);
            self.schedule(at, Ev::Conn { node: other, inc, peer, ev: ConnEv::Closed { conn } });
        }
    }

    // ----- faults: verbs on the simulated world -----

    /// SIGKILL: the process is gone, its sockets reset; what it made durable stays.
    pub fn crash(&mut self, i: usize) {
        if self.nodes[i].core.is_none() {
            return;
        }
        self.trace(i, "crash");
        let conns: Vec<u64> = self.net.conns.iter().filter(|(_, (a, b))| *a == i || *b == i).map(|(c, _)| *c).collect();
        let n = &mut self.nodes[i];
        n.core = None;
        n.paused = false;
        n.steady_since = None;
        n.round_open = false;
        n.buffered.clear();
        n.timer_at = None;
        n.incarnation += 1;
        // The commits in flight: SQLite commits them one at a time, in order, each atomically (a torn WAL
        // write fails its checksum and is rolled back), so a prefix of them lands, durable though the
        // process never heard, and the rest is lost. What waited for any of them never goes out.
        n.pipeline.crash();
        n.commit_at = None;
        let in_flight = std::mem::take(&mut n.committing);
        let landed = if in_flight.is_empty() { 0 } else { self.disk_rng.gen_range(0..=in_flight.len()) };
        if self.opts.trace && !in_flight.is_empty() {
            self.trace(i, &format!("{landed} of {} commits in flight land at the crash", in_flight.len()));
        }
        self.obs.commits_landed_at_crash += landed as u64;
        self.obs.commits_lost_at_crash += (in_flight.len() - landed) as u64;
        for (_, writes) in in_flight.into_iter().take(landed) {
            for o in writes {
                self.carry_out(i, o);
            }
        }
        let n = &mut self.nodes[i];
        n.links = Connections::new();
        // The kernel resets the dead process's connections: each peer learns at once if it can hear.
        for conn in conns {
            self.close_conn(i, conn);
        }
    }

    /// Starts a crashed process again from what it made durable.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].core.is_none() && !self.nodes[i].left {
            self.boot(i);
        }
    }

    /// Starts a node that left gracefully again, from its data directory (a user running `chatmesh` again).
    pub fn rejoin(&mut self, i: usize) {
        if self.nodes[i].left {
            self.nodes[i].left = false;
            self.nodes[i].core = None;
            self.boot(i);
        }
    }

    /// SIGSTOP: the process stops; its connections stay open and the kernel buffers what arrives.
    pub fn pause(&mut self, i: usize) {
        if self.nodes[i].core.is_some() {
            self.trace(i, "pause");
            self.nodes[i].paused = true;
            self.nodes[i].steady_since = None;
        }
    }

    /// SIGCONT: the process reads what arrived meanwhile and its overdue timers fire, in either order: a
    /// driver may be woken by a timer before its sockets are read (drawn per resume, from the seed, without
    /// touching the run's other draws). Input is read in one go, as a driver takes it in one round.
    pub fn resume(&mut self, i: usize) {
        if !self.nodes[i].paused {
            return;
        }
        self.trace(i, "resume");
        self.nodes[i].paused = false;
        self.nodes[i].resumes += 1;
        let draw = self.opts.seed ^ ((i as u64) << 40) ^ self.nodes[i].resumes.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let timers_first = ChaCha8Rng::seed_from_u64(draw).gen_bool(0.5);
        let now = self.now;
        self.open_round(i);
        if timers_first {
            if let Some(core) = self.nodes[i].core.as_mut() {
                core.handle_timeout(now);
            }
            self.drain(i);
        }
        self.read_buffered(i, now);
        let n = &mut self.nodes[i];
        if let Some(core) = n.core.as_mut() {
            core.handle_timeout(now);
            if std::mem::take(&mut n.round_open) {
                core.end_round(now);
            }
        }
        self.nodes[i].timer_at = None;
        self.drain(i);
    }

    /// Splits the network: nodes talk only within their group. Nodes in no group form one more group.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        self.net_changed_at = self.now;
        let rest = groups.len() + 1;
        self.net.groups.iter_mut().for_each(|g| *g = rest);
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                self.net.groups[i] = g + 1;
            }
        }
    }

    /// Cuts node `i` off from everyone.
    pub fn isolate(&mut self, i: usize) {
        self.net_changed_at = self.now;
        let n = self.nodes.len();
        self.net.groups[i] = n + 1000;
    }

    /// Cuts the link between `a` and `b` only.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.net_changed_at = self.now;
        self.net.cut.insert(pair(a, b));
    }

    pub fn heal(&mut self) {
        self.net_changed_at = self.now;
        self.net.heal();
    }

    /// Whether connection `conn` is open (neither side closed it, no crash reset it).
    pub fn conn_open(&self, conn: u64) -> bool {
        self.net.conns.contains_key(&conn)
    }

    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.net.reachable(a, b)
    }

    pub fn command(&mut self, i: usize, c: Command) {
        if !self.reads_input(i) || !self.nodes[i].buffered.is_empty() {
            self.nodes[i].buffered.push_back(Arrived::Input(Input::Command(c)));
            return;
        }
        self.open_round(i);
        let now = self.now;
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.handle_input(now, Input::Command(c));
            self.drain(i);
        }
    }

    /// Feeds raw input to a node as if it came from outside (for adversarial tests).
    pub fn inject(&mut self, i: usize, input: Input) {
        self.injected = true;
        if let Input::Frame { from, bytes } = &input {
            if let Ok(frame) = chatmesh_core::Frame::decode(bytes) {
                self.record_claims(*from, &Self::claims(frame));
            }
        }
        self.open_round(i);
        let now = self.now;
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.handle_input(now, input);
            self.drain(i);
        }
    }

    fn trace(&self, i: usize, what: &str) {
        if self.opts.trace {
            let role = self.nodes[i].core.as_ref().map(|c| format!("{:?}", c.role())).unwrap_or("down".into());
            eprintln!("{:>10.3}ms {:>4} {:<11} {what}", self.elapsed().as_secs_f64() * 1e3, self.nodes[i].name, role);
        }
    }
}

fn describe(input: &Input) -> String {
    match input {
        Input::Frame { from, bytes } => match chatmesh_core::Frame::decode(bytes) {
            Ok(f) => format!("frame from {from}: {f:?}"),
            Err(e) => format!("bad frame from {from}: {e}"),
        },
        Input::Datagram { from, bytes, .. } => match chatmesh_core::Datagram::decode(bytes) {
            Ok(d) => format!("datagram from {from}: {:?}", d.body),
            Err(e) => format!("bad datagram from {from}: {e}"),
        },
        other => format!("{other:?}"),
    }
}

fn describe_out(o: &Output) -> String {
    match o {
        Output::Frame { to, bytes } | Output::FrameAhead { to, bytes } => match chatmesh_core::Frame::decode(bytes) {
            Ok(f) => format!("frame to {to}: {}", f.kind()),
            Err(e) => format!("bad frame to {to}: {e}"),
        },
        Output::Datagram { to, .. } => format!("datagram to {to:?}"),
        Output::Persist(s) => format!("persist view {:?}", s.view.as_ref().map(|v| v.order())),
        other => format!("{other:?}"),
    }
}
