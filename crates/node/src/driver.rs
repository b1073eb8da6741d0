//! The tokio driver: sockets, links, timers and the store around one `chatmesh_core::Node`.
//!
//! Tasks (multi-threaded runtime: receiving, sending, encrypting and storing run in parallel):
//! - the *core task* owns the `Node` and the link table; everything reaches it through one bounded inbox;
//! - one receive task per UDP socket (group, direct);
//! - the accept task; one task per connection while its handshake runs, then a reader (the same task) and
//!   a writer task per link;
//! - a store *writer* thread (group commit) and a store *reader* thread (anti-entropy loads, history reads),
//!   each with its own SQLite connection (WAL lets the reader run beside the writer).
//!
//! This file holds `start`, the core task and its loop of rounds; its other jobs are a file each:
//! `handle` (the `Handle`), `dispatch` (inbox in, outputs out), `notices` (events for people), `links`,
//! `datagrams`, `storage` (the store threads).
//!
//! Output order (docs/PROTOCOL.md, "Driver"): after every round of inputs the core task drains all outputs,
//! commits every `Persist` and `Store` of the round in one transaction, and only then carries out the
//! other outputs in the order the core gave them. Committing a write earlier than an output that came
//! before it is safe (a crash then looks like that output was lost on the network); carrying out any output
//! before the writes that came before it are durable would not be, and never happens.

use crate::events::{
    state_name, CoordinatorView, DeliveryView, HistorySummary, MemberView, MessageView, Names, Notice, StatusView,
};
use crate::link::{self, LinkKeys, LinkReader, LinkWriter};
use crate::metrics::count;
use crate::net::{self, NetError, Sockets};
use crate::store::{Store, StoreError, Write};
use chatmesh_core::{
    Arrival, Body, Command, Config, Connections, Datagram, DatagramBody, Delivery, Destination, Dial, Event, Input,
    LoadRequest, MembershipEvent, Message, Node, NodeKey, Output, Pipeline, Role, Timing, MAX_DATAGRAM_LEN,
};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio::task::AbortHandle;

mod datagrams;
mod dispatch;
mod handle;
mod links;
mod notices;
mod storage;

use datagrams::*;
pub use handle::Handle;
use links::*;
use notices::*;
use storage::*;

/// Inputs taken from the inbox in one round before the outputs are carried out (and committed together);
/// a batch of sends counts as the number of its sends.
const ROUND_INPUTS: usize = 512;

/// Inbox capacity: link readers wait when it is full, which slows a flooding peer down at its TCP window.
const INBOX_CAPACITY: usize = 8192;

/// Events kept for a slow subscriber before it skips ahead.
const EVENT_BUFFER: usize = 4096;

/// Dropped datagrams are logged as a summary at most this often.
const DROP_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Everything a running node needs to know.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub mesh: String,
    pub name: String,
    pub group: SocketAddrV4,
    /// The interface multicast uses (`None`: the kernel's choice).
    pub iface: Option<Ipv4Addr>,
    pub listen: SocketAddr,
    /// Known members to discover through, for networks without multicast (their TCP/UDP port).
    pub peers: Vec<SocketAddr>,
    /// The same as host names (`HOST:PORT`), resolved at start and every `PEER_RESOLVE_PERIOD` after.
    pub peer_names: Vec<String>,
    pub data_dir: PathBuf,
    /// The network key: only nodes holding the same one can link.
    pub network_key: Vec<u8>,
    pub timing: Timing,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
}

impl NodeOptions {
    /// Defaults for a node on loopback with the given data directory (tests and the demo).
    pub fn local(mesh: &str, name: &str, data_dir: PathBuf, group_port: u16) -> NodeOptions {
        NodeOptions {
            mesh: mesh.into(),
            name: name.into(),
            group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 77), group_port),
            iface: Some(Ipv4Addr::LOCALHOST),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            peers: Vec::new(),
            peer_names: Vec::new(),
            data_dir,
            network_key: DEMO_NETWORK_KEY.to_vec(),
            timing: Timing::default(),
            handshake_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// The well-known key used when none is given: fine for a demo, useless as protection.
pub const DEMO_NETWORK_KEY: &[u8] = b"chatmesh-demo-network-key (not secret: set --network-key-file)";

/// Why a node could not start.
#[derive(Debug)]
pub enum StartError {
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another process runs a node on this data directory.
    Locked {
        path: PathBuf,
    },
    Store(StoreError),
    Net(NetError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::DataDir { path, source } => write!(
                f,
                "cannot use the data directory {}: {source} (choose a writable one with --data-dir)",
                path.display()
            ),
            StartError::Locked { path } => write!(
                f,
                "the data directory {} is in use by another chatmesh process (one node per data directory: \
                 give this one another --name or --data-dir)",
                path.display()
            ),
            StartError::Store(e) => write!(f, "{e}"),
            StartError::Net(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Why a send did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    Empty,
    Refused(String),
    Stopped,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Empty => f.write_str("empty message: type some text"),
            SendError::Refused(r) => write!(f, "message refused: {r}"),
            SendError::Stopped => f.write_str("the node has stopped"),
        }
    }
}

impl std::error::Error for SendError {}

type SendReply = oneshot::Sender<Result<MessageView, SendError>>;

enum Inbox {
    Input(Input),
    /// A datagram as received: sealed (see `seal`); the core task opens it.
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
        direct: bool,
    },
    LinkReady {
        conn: u64,
        peer: NodeKey,
        dialer: NodeKey,
        tx: mpsc::Sender<Vec<u8>>,
        tasks: Vec<AbortHandle>,
        /// The connection's socket, for the kernel's round-trip estimate (`TCP_INFO`).
        fd: i32,
    },
    /// `_quota`: the link's inbox slot, given back when the core task drops the message.
    LinkFrame {
        conn: u64,
        peer: NodeKey,
        bytes: Vec<u8>,
        _quota: tokio::sync::OwnedSemaphorePermit,
    },
    LinkClosed {
        conn: u64,
        peer: NodeKey,
    },
    DialFailed {
        peer: NodeKey,
    },
    Send {
        text: String,
        reply: SendReply,
    },
    /// Several sends taken together, so written in one round as one batch (one signature, one commit, frames
    /// of up to 256 messages per peer); each with its own reply.
    SendMany(Vec<(String, SendReply)>),
    Command(Command),
    Status(oneshot::Sender<StatusView>),
    /// How far the current members hold our own messages (for the statuses in `history`).
    Delivery(oneshot::Sender<Delivery>),
    Metrics(oneshot::Sender<crate::metrics::Snapshot>),
    Connect(SocketAddr),
    /// The current addresses of the `--peer` host names.
    PeerNames(Vec<SocketAddr>),
    Shutdown {
        graceful: bool,
    },
}

/// Opens the store and the sockets and starts the node. The returned future ends when the node stops
/// (after `/quit`, `shutdown`, or a fatal store error).
pub async fn start(opts: NodeOptions) -> Result<(Handle, tokio::task::JoinHandle<Result<(), String>>), StartError> {
    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|source| StartError::DataDir { path: opts.data_dir.clone(), source })?;
    let lock = lock_data_dir(&opts.data_dir)?;
    crate::metrics::handle();
    let db = opts.data_dir.join("chatmesh.db");
    let store = Store::open(&db).map_err(StartError::Store)?;
    let secret = match store.identity().map_err(StartError::Store)? {
        Some(s) => s,
        None => {
            let mut s = [0u8; 32];
            rand::Rng::fill(&mut rand::thread_rng(), &mut s);
            store.init_identity(s).map_err(StartError::Store)?
        }
    };
    let snapshot = store.snapshot().map_err(StartError::Store)?;
    let history = store.history_state().map_err(StartError::Store)?;
    let name = store.resolve_name(&opts.name).map_err(StartError::Store)?;
    let names = Arc::new(RwLock::new(names_at_start(&store, &snapshot)?));
    let reader = Store::open(&db).map_err(StartError::Store)?;
    let sockets = net::open(opts.group, opts.iface, opts.listen).map_err(StartError::Net)?;

    let seed: u64 = rand::random();
    let mut cfg = Config::new(&opts.mesh, &name, secret, sockets.advertised, seed);
    cfg.timing = opts.timing.clone();
    let key = chatmesh_core::key_of(&secret);
    let signing = chatmesh_core::SigningKey::from_bytes(&secret);
    let keys = Arc::new(LinkKeys::new(&opts.network_key, signing, &opts.mesh));

    let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let (reads_tx, reads_rx) = std::sync::mpsc::channel();
    let (writes_tx, writes_rx) = std::sync::mpsc::channel::<WriteJob>();

    spawn_reader(reader, reads_rx, inbox_tx.clone());
    spawn_writer(store, writes_rx);

    let Sockets { group_socket, direct, listener, group, advertised } = sockets;
    let direct = Arc::new(direct);
    let rate_limited = Arc::new(AtomicU64::new(0));
    let group_socket = Arc::new(group_socket);
    spawn_udp(group_socket.clone(), false, inbox_tx.clone(), rate_limited.clone());
    tokio::spawn(rejoin_group(group_socket, group, opts.iface));
    spawn_udp(direct.clone(), true, inbox_tx.clone(), rate_limited.clone());
    if !opts.peer_names.is_empty() {
        tokio::spawn(resolve_peers(opts.peer_names.clone(), inbox_tx.clone()));
    }
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let accept_task =
        tokio::spawn(accept_loop(listener, keys.clone(), opts.handshake_timeout, handshakes, inbox_tx.clone()));

    let now = Instant::now();
    let mut node = Node::new(cfg, snapshot, history, now);
    node.handle_input(now, Input::Clock { unix_ms: unix_ms() });
    // Restored acknowledgements: what is still pending is followed as if just sent.
    let acks = pending_deliveries(&node.delivery());
    let handle = Handle {
        inbox: inbox_tx.clone(),
        reads: reads_tx.clone(),
        events: events.clone(),
        names: names.clone(),
        key,
        addr: advertised,
        name: name.clone(),
    };
    tracing::info!(node = %key, addr = %advertised, group = %group, mesh = %opts.mesh, "node starting");
    let core = Core {
        node,
        me: key,
        inbox: inbox_rx,
        inbox_tx,
        writes: writes_tx,
        reads: reads_tx,
        events,
        names,
        saved_name: (name, opts.name.clone()),
        direct,
        group,
        peers_udp: opts
            .peers
            .iter()
            .enumerate()
            .filter(|(i, a)| !opts.peers[..*i].contains(a))
            .map(|(_, a)| *a)
            .collect(),
        peers_named: Vec::new(),
        keys,
        connect_timeout: opts.connect_timeout,
        handshake_timeout: opts.handshake_timeout,
        links: Connections::new(),
        pending: VecDeque::new(),
        sending: HashMap::new(),
        next_token: 0,
        replies: Vec::new(),
        acks,
        started: now,
        learned: None,
        sealer: crate::seal::Sealer::new(&opts.network_key),
        datagrams_dropped: 0,
        rate_limited,
        drops: BTreeMap::new(),
        drops_logged: None,
        stop_at: None,
    };
    let task = tokio::spawn(async move {
        let result = core.run().await;
        accept_task.abort();
        drop(lock);
        result
    });
    Ok((handle, task))
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

struct Core {
    node: Node,
    me: NodeKey,
    inbox: mpsc::Receiver<Inbox>,
    inbox_tx: mpsc::Sender<Inbox>,
    writes: std::sync::mpsc::Sender<WriteJob>,
    reads: std::sync::mpsc::Sender<ReadRequest>,
    events: broadcast::Sender<Notice>,
    names: Arc<RwLock<Names>>,
    /// The node's name as last handed to the store, with the configured name it was chosen under.
    saved_name: (String, String),
    direct: Arc<UdpSocket>,
    group: SocketAddrV4,
    peers_udp: Vec<SocketAddr>,
    /// Addresses of the `--peer` host names, as last resolved.
    peers_named: Vec<SocketAddr>,
    keys: Arc<LinkKeys>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    links: Connections<LinkHandle>,
    /// Inputs the driver itself produced while carrying out outputs (a link it had to close).
    pending: VecDeque<Input>,
    /// Sends of this round waiting for their message, by the token given to the core (`Command::Send`):
    /// answered at the round's end (`answer_sends`).
    sending: HashMap<u64, SendReply>,
    /// The last send token given out.
    next_token: u64,
    /// Send replies waiting for this round's commit.
    replies: Vec<(SendReply, Result<MessageView, SendError>)>,
    /// Own messages not yet acknowledged by every member: seq -> the status last shown `(acked, members)`.
    acks: BTreeMap<u64, (usize, usize)>,
    started: Instant,
    /// Opens received datagrams and seals sent ones with the network key.
    sealer: crate::seal::Sealer,
    datagrams_dropped: u64,
    /// Datagrams dropped by the receivers for going over the rate limits.
    rate_limited: Arc<AtomicU64>,
    /// Dropped datagrams not yet logged, by reason: (count, last sender).
    drops: BTreeMap<crate::seal::SealError, (u64, SocketAddr)>,
    drops_logged: Option<Instant>,
    /// The view whose names were last learnt: `(term, version, coordinator)`.
    learned: Option<(u64, u64, NodeKey)>,
    /// A graceful shutdown gives up waiting for the leave to complete at this instant.
    stop_at: Option<Instant>,
}

/// Send replies held with a round: answered with the round's other outputs, so only once the message is durable.
type Replies = Vec<(SendReply, Result<MessageView, SendError>)>;

/// A round's writes on their way to disk.
struct CommitWait {
    /// The round's number in the pipeline.
    round: u64,
    done: oneshot::Receiver<Result<(), String>>,
    began: Instant,
    /// Message batches among the writes.
    stores: usize,
}

impl CommitWait {
    fn finished(self, r: Result<Result<(), String>, oneshot::error::RecvError>) -> Result<(), String> {
        r.map_err(|_| STORE_GONE.to_string())??;
        metrics::histogram!("chatmesh_store_commit_seconds").record(self.began.elapsed().as_secs_f64());
        count("chatmesh_store_commits_total", 1);
        count("chatmesh_digest_changes_total", self.stores as u64);
        Ok(())
    }
}

const STORE_GONE: &str = "the store thread stopped";

/// What woke the core up.
enum Wake {
    Inbox(Option<Inbox>),
    Committed(Result<Result<(), String>, oneshot::error::RecvError>),
    Timer,
}

enum Flow {
    Continue,
    Stop,
}

impl Core {
    async fn run(mut self) -> Result<(), String> {
        let r = self.rounds().await;
        self.close_all();
        match r {
            Ok(()) => {
                let _ = self.events.send(Notice::Stopped);
                tracing::info!(node = %self.me, "node stopped");
                Ok(())
            }
            Err(e) => {
                tracing::error!("store failure, stopping: {e}");
                Err(format!("store failure: {e}"))
            }
        }
    }

    /// The core's loop, until the node stops (or its store fails).
    async fn rounds(&mut self) -> Result<(), String> {
        let mut clock = tokio::time::interval(Duration::from_secs(1));
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Rounds whose writes are being committed (`Pipeline`, shared with the simulator). The core goes on
        // taking inputs meanwhile; each round's held outputs are carried out once its writes (and so every
        // earlier round's) are durable. `commits` are the writes handed to the store thread, oldest first (it
        // commits them in that order).
        let mut pipeline: Pipeline<Replies> = Pipeline::new();
        let mut commits: VecDeque<CommitWait> = VecDeque::new();
        loop {
            self.finish_rounds(&mut pipeline, &mut commits)?;
            let mut outputs = Vec::new();
            let mut stop = false;
            let mut next = None;
            if self.pending.is_empty() {
                let deadline = [self.node.poll_timeout(), self.stop_at].into_iter().flatten().min();
                let sleep = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                        None => std::future::pending().await,
                    }
                };
                let room = pipeline.has_room();
                let committing = commits.front_mut();
                let has_commit = committing.is_some();
                let commit = async {
                    match committing {
                        Some(c) => (&mut c.done).await,
                        None => std::future::pending().await,
                    }
                };
                let wake = tokio::select! {
                    m = self.inbox.recv(), if room => Wake::Inbox(m),
                    r = commit, if has_commit => Wake::Committed(r),
                    _ = sleep => Wake::Timer,
                    _ = clock.tick() => Wake::Inbox(Some(Inbox::Input(Input::Clock { unix_ms: unix_ms() }))),
                };
                match wake {
                    Wake::Inbox(m) => next = m,
                    Wake::Timer => {}
                    Wake::Committed(r) => {
                        if let Some(c) = commits.pop_front() {
                            let round = c.round;
                            c.finished(r)?;
                            self.persisted(&mut pipeline, round);
                        }
                        continue;
                    }
                }
            }
            // The round's pushes and acknowledgements go out merged, one frame per peer (`Node::begin_round`).
            self.node.begin_round();
            let mut taken = 0;
            while let Some(msg) = next.take() {
                // A batch of sends counts as the sends it holds: a round stays a few thousand messages at most.
                let weight = match &msg {
                    Inbox::SendMany(items) => items.len().max(1),
                    _ => 1,
                };
                if let Flow::Stop = self.take(msg, &mut outputs) {
                    stop = true;
                    break;
                }
                taken += weight;
                if taken >= ROUND_INPUTS {
                    break;
                }
                next = self.inbox.try_recv().ok();
            }
            while let Some(input) = self.pending.pop_front() {
                // A dial answered at once by the link we held: that link may have been closed since (a
                // `Disconnect` right after the `Connect`), and then it is down, not up.
                let input = match input {
                    Input::LinkUp { peer } if !self.links.contains(&peer) => Input::LinkDown { peer },
                    input => input,
                };
                self.input(input, &mut outputs);
            }
            let now = Instant::now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
                self.drain(&mut outputs);
            }
            self.node.end_round(Instant::now());
            self.drain(&mut outputs);
            self.answer_sends(&outputs);
            if !outputs.is_empty() || !self.replies.is_empty() {
                self.begin_round(&mut pipeline, &mut commits, outputs)?;
            }
            if self.node.role() == Role::Stopped || stop || self.stop_at.is_some_and(|t| t <= Instant::now()) {
                break;
            }
        }
        // Everything already decided is carried out once durable; links close with the process.
        while let Some(mut c) = commits.pop_front() {
            let r = (&mut c.done).await;
            let round = c.round;
            c.finished(r)?;
            self.persisted(&mut pipeline, round);
        }
        for (outputs, replies) in pipeline.complete() {
            self.end_round(outputs, replies);
        }
        Ok(())
    }

    /// Carries out the rounds whose writes are durable, in order.
    fn finish_rounds(
        &mut self,
        pipeline: &mut Pipeline<Replies>,
        commits: &mut VecDeque<CommitWait>,
    ) -> Result<(), String> {
        while let Some(c) = commits.front_mut() {
            match c.done.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => break,
                Err(oneshot::error::TryRecvError::Closed) => return Err(STORE_GONE.into()),
                Ok(r) => {
                    if let Some(c) = commits.pop_front() {
                        let round = c.round;
                        c.finished(Ok(r))?;
                        self.persisted(pipeline, round);
                    }
                }
            }
        }
        Ok(())
    }

    /// Round `round`'s writes are durable: carries out every round that completes with it.
    fn persisted(&mut self, pipeline: &mut Pipeline<Replies>, round: u64) {
        for (outputs, replies) in pipeline.persisted(round) {
            self.end_round(outputs, replies);
        }
    }

    /// Starts a round's writes, all in one transaction, and shows at once what does not depend on them:
    /// messages from others (they are acknowledged only once durable, with the round's other outputs), and
    /// acknowledgements of our own messages (which the peers made durable; our own message was sent, so shown
    /// as sent, before anyone could acknowledge it).
    ///
    /// When no earlier round is still committing (`earlier == 0`), the outputs ahead of the round's first
    /// write are carried out at once too: the ordering contract only holds back what follows a write. A
    /// `FrameAhead` (a sync's next request: it acknowledges nothing) is sent at once while at most one
    /// earlier round is committing; behind more, it waits like any frame, so that a slow disk slows the
    /// sync instead of letting uncommitted pages pile up.
    fn begin_round(
        &mut self,
        pipeline: &mut Pipeline<Replies>,
        commits: &mut VecDeque<CommitWait>,
        outputs: Vec<Output>,
    ) -> Result<(), String> {
        // `/nick`: the name outlives a restart (`Store::resolve_name`); written with the round, which then
        // waits for that commit too.
        let name = (self.node.config().name != self.saved_name.0).then(|| {
            self.saved_name.0.clone_from(&self.node.config().name);
            let (name, configured) = self.saved_name.clone();
            Write::Name { name, configured }
        });
        let ready = pipeline.begin(outputs, std::mem::take(&mut self.replies), name.is_some());
        for o in ready.now {
            self.carry_out_one(o);
        }
        let mut writes: Vec<Write> = ready
            .writes
            .into_iter()
            .filter_map(|o| match o {
                Output::Persist(s) => Some(Write::Snapshot(s)),
                Output::Store { messages, state } => Some(Write::Messages { messages, state }),
                _ => None,
            })
            .collect();
        writes.extend(name);
        if writes.is_empty() {
            // Durable already: it completes as soon as the rounds before it do (perhaps now).
            for (outputs, replies) in pipeline.complete() {
                self.end_round(outputs, replies);
            }
            return Ok(());
        }
        let (done, rx) = oneshot::channel();
        let stores =
            writes.iter().filter(|w| matches!(w, Write::Messages { messages, .. } if !messages.is_empty())).count();
        let began = Instant::now();
        self.writes.send(WriteJob { writes, done }).map_err(|_| STORE_GONE.to_string())?;
        commits.push_back(CommitWait { round: ready.number, done: rx, began, stores });
        Ok(())
    }

    /// Carries out a round whose writes are durable: its transmissions, events and replies, in order.
    fn end_round(&mut self, outputs: Vec<Output>, replies: Replies) {
        for o in outputs {
            self.carry_out_one(o);
        }
        for (reply, outcome) in replies {
            let _ = reply.send(outcome);
        }
    }
}
