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

/// Inputs taken from the inbox in one round before the outputs are carried out (and committed together);
/// a batch of sends counts as the number of its sends.
const ROUND_INPUTS: usize = 512;
/// Inbox capacity: link readers wait when it is full, which slows a flooding peer down at its TCP window.
const INBOX_CAPACITY: usize = 8192;
/// Frames queued for one link's writer. A peer that does not read for this long is cut off (its link
/// closes; the core redials and anti-entropy repairs) instead of growing memory without bound.
const LINK_QUEUE: usize = 16384;
/// Connections in their handshake at once; more wait (slowloris cannot exhaust anything else).
const MAX_HANDSHAKES: usize = 64;
/// Connections in their handshake at once from one IP address; more are closed at once.
const MAX_HANDSHAKES_PER_IP: usize = 32;
/// Frames one link may have waiting in the inbox: a flooding peer waits for its own frames to be taken,
/// and never holds more than this share of the inbox.
const LINK_INBOX_QUOTA: usize = 1024;
/// Frames per second one link may deliver (a token bucket with this burst): beyond it the reader waits,
/// which slows that peer down at its TCP window and nobody else.
const LINK_FRAMES_PER_SEC: f64 = 50_000.0;
/// Datagrams per second taken from one source address (IP and port), and from one IP address; the
/// rest are dropped and counted before any decryption.
const DATAGRAMS_PER_SOURCE: u32 = 200;
const DATAGRAMS_PER_IP: u32 = 2000;
/// Bytes of frames one writer batches into one flush.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Events kept for a slow subscriber before it skips ahead.
const EVENT_BUFFER: usize = 4096;
/// Dropped datagrams are logged as a summary at most this often.
const DROP_LOG_PERIOD: Duration = Duration::from_secs(10);
/// Own messages whose delivery progress is followed (the latest ones): a mesh where someone never
/// acknowledges must not grow the table forever.
const DELIVERIES_FOLLOWED: u64 = 10_000;

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

enum ReadRequest {
    Load(LoadRequest),
    History { limit: Option<usize>, reply: oneshot::Sender<Result<Vec<Message>, StoreError>> },
}

/// A running node, cheap to clone: what the UIs and the control API hold.
#[derive(Clone)]
pub struct Handle {
    inbox: mpsc::Sender<Inbox>,
    reads: std::sync::mpsc::Sender<ReadRequest>,
    events: broadcast::Sender<Notice>,
    names: Arc<RwLock<Names>>,
    key: NodeKey,
    addr: SocketAddr,
    /// The name the node started under (`Store::resolve_name`).
    name: String,
}

impl Handle {
    pub fn key(&self) -> NodeKey {
        self.key
    }

    /// The name the node started under: the configured one, or the last `/nick` chosen under it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address other nodes dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The event stream, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.events.subscribe()
    }

    /// Writes a chat message: answers once it is durable here (shown as sent), with the message.
    pub async fn send(&self, text: String) -> Result<MessageView, SendError> {
        if text.trim().is_empty() {
            return Err(SendError::Empty);
        }
        let (reply, rx) = oneshot::channel();
        self.inbox.send(Inbox::Send { text, reply }).await.map_err(|_| SendError::Stopped)?;
        rx.await.unwrap_or(Err(SendError::Stopped))
    }

    /// Writes several chat messages together: in one round, so signed as one batch, committed in one
    /// transaction and pushed in frames of up to 256 messages per peer. Every text is checked first, and if one is empty or
    /// over the size limit none is written (`Err` with its index). Otherwise each text gets its own outcome,
    /// in order, once durable: all `Ok` unless the node stopped meanwhile.
    pub async fn send_many(
        &self,
        texts: Vec<String>,
    ) -> Result<Vec<Result<MessageView, SendError>>, (usize, SendError)> {
        for (i, t) in texts.iter().enumerate() {
            if t.trim().is_empty() {
                return Err((i, SendError::Empty));
            }
            if t.len() > chatmesh_core::history::message::MAX_BODY_LEN {
                return Err((i, SendError::Refused(chatmesh_core::MessageError::BodyTooLong.to_string())));
            }
        }
        let (items, waits): (Vec<_>, Vec<_>) = texts
            .into_iter()
            .map(|text| {
                let (reply, rx) = oneshot::channel();
                ((text, reply), rx)
            })
            .unzip();
        if self.inbox.send(Inbox::SendMany(items)).await.is_err() {
            return Ok(waits.iter().map(|_| Err(SendError::Stopped)).collect());
        }
        let mut out = Vec::with_capacity(waits.len());
        for rx in waits {
            out.push(rx.await.unwrap_or(Err(SendError::Stopped)));
        }
        Ok(out)
    }

    /// `/elect`, `/list`, `/quit` (use `shutdown` to wait for the node to stop).
    pub async fn command(&self, command: Command) -> bool {
        self.inbox.send(Inbox::Command(command)).await.is_ok()
    }

    /// `/connect HOST:PORT`: look for the mesh through this address too.
    pub async fn connect(&self, addr: SocketAddr) -> bool {
        self.inbox.send(Inbox::Connect(addr)).await.is_ok()
    }

    /// The protocol's counters and queues, for `GET /metrics`.
    pub async fn metrics(&self) -> Option<crate::metrics::Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.inbox.send(Inbox::Metrics(tx)).await.ok()?;
        rx.await.ok()
    }

    pub async fn status(&self) -> Option<StatusView> {
        let (tx, rx) = oneshot::channel();
        self.inbox.send(Inbox::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// The history held, in canonical order (the last `limit` messages, or all), own messages with their
    /// delivery status.
    pub async fn history(&self, limit: Option<usize>) -> Result<Vec<MessageView>, String> {
        let (reply, rx) = oneshot::channel();
        self.reads.send(ReadRequest::History { limit, reply }).map_err(|_| "the node has stopped".to_string())?;
        let messages = rx.await.map_err(|_| "the node has stopped".to_string())?.map_err(|e| e.to_string())?;
        // Asked after the read: every own message read is counted in it (a stopped node gives none).
        let delivery = match messages.iter().any(|m| m.author == self.key) {
            true => self.delivery().await,
            false => None,
        };
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let view = |m: &Message| {
            let mut v = names.message(m, &self.key);
            if v.own {
                v.delivery = delivery.as_ref().map(|d| DeliveryView::of(d.status(m.seq)));
            }
            v
        };
        Ok(messages.iter().map(view).collect())
    }

    /// How far the current members hold this node's own messages (`None` once the node stopped).
    pub async fn delivery(&self) -> Option<Delivery> {
        let (tx, rx) = oneshot::channel();
        self.inbox.send(Inbox::Delivery(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Stops the node: gracefully (`/quit`: announce the leave, wait briefly) or at once.
    pub async fn shutdown(&self, graceful: bool) {
        let _ = self.inbox.send(Inbox::Shutdown { graceful }).await;
    }

    /// A name for a key, as the UIs show it.
    pub fn label(&self, key: &NodeKey) -> String {
        self.names.read().unwrap_or_else(|p| p.into_inner()).label(key)
    }
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

/// An exclusive lock on `<data_dir>/LOCK`, held while the node runs (released by the kernel when the
/// process dies, so a crash never leaves a stale lock).
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir { path: dir.to_path_buf(), source })?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StartError::Locked { path: dir.to_path_buf() });
        }
    }
    Ok(file)
}

/// `--log heartbeat` shows heartbeats (target `heartbeat`); `--log debug` every frame (target `frames`).
/// Frames are decoded for this only when one of those is on.
fn trace_frame(dir: &'static str, peer: &NodeKey, bytes: &[u8]) {
    let heartbeats = tracing::enabled!(target: "heartbeat", tracing::Level::TRACE);
    let frames = tracing::enabled!(target: "frames", tracing::Level::TRACE);
    if !heartbeats && !frames {
        return;
    }
    let Ok(frame) = chatmesh_core::Frame::decode(bytes) else { return };
    let kind = frame.kind();
    if heartbeats && matches!(kind, "heartbeat" | "heartbeat-ack") {
        tracing::trace!(target: "heartbeat", %peer, "{dir} {kind}");
    } else if frames {
        tracing::trace!(target: "frames", %peer, len = bytes.len(), "{dir} {kind}");
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A connection's writer and tasks; which connection carries each peer's link is `Connections`'.
struct LinkHandle {
    tx: mpsc::Sender<Vec<u8>>,
    tasks: Vec<AbortHandle>,
    fd: i32,
}

/// The kernel's smoothed round-trip time of a TCP socket, in seconds (Linux `TCP_INFO`).
fn tcp_rtt(fd: i32) -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getsockopt writes at most `len` bytes into the zeroed struct; a closed or reused fd only
        // makes the call fail or report another socket's estimate, never memory unsafety.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = unsafe {
            libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info as *mut _ as *mut libc::c_void, &mut len)
        };
        (r == 0).then(|| info.tcpi_rtt as f64 / 1_000_000.0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        None
    }
}

/// Whether a TCP connection is stuck retransmitting: its retransmission timer has fired on data that is
/// still unacknowledged, and it may have been backed off (Linux `TCP_INFO`). After a partition heals, such a
/// connection stays silent until its backed-off timer fires, which can be seconds away.
fn tcp_stalled(fd: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as in `tcp_rtt`.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = unsafe {
            libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info as *mut _ as *mut libc::c_void, &mut len)
        };
        r == 0 && (info.tcpi_retransmits > 0 || info.tcpi_backoff > 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        false
    }
}

/// Makes closing the socket send a reset (`SO_LINGER` with a zero timeout) instead of queueing a FIN.
/// The caller holds the link (its tasks own the socket), so `fd` is open for the call.
fn reset_on_close(fd: i32) {
    // SAFETY: the borrow lasts only for this call, while the link's tasks still own the socket.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if let Err(e) = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO)) {
        tracing::debug!("SO_LINGER not set: {e}");
    }
}

impl LinkHandle {
    fn close(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

struct WriteJob {
    writes: Vec<Write>,
    done: oneshot::Sender<Result<(), String>>,
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

    fn close_all(&mut self) {
        for l in self.links.take_all() {
            l.close();
        }
    }

    /// A datagram from a peer proves that the network between us works now. If our link to that peer is
    /// stuck retransmitting (typically: a partition just healed and the connection's timer is backed off),
    /// it is dropped at once, so that the next frame to the peer dials a fresh connection instead of waiting
    /// in the old one's queue for seconds.
    fn drop_stalled_link(&mut self, bytes: &[u8], outputs: &mut Vec<Output>) {
        let Ok(d) = Datagram::decode(bytes) else { return };
        let peer = match d.body {
            DatagramBody::Discover { key, .. } => key,
            DatagramBody::Offer { coordinator, .. } | DatagramBody::Beacon { coordinator, .. } => coordinator.key,
        };
        if self.reset_if_stalled(peer, "the peer's datagrams arrive") {
            self.input(Input::LinkDown { peer }, outputs);
        }
    }

    /// Drops the link to `peer` if it is stuck retransmitting, with a reset, so that the peer learns at once
    /// (a FIN would wait behind the unacknowledged data). The caller tells the core the link is down.
    fn reset_if_stalled(&mut self, peer: NodeKey, evidence: &str) -> bool {
        if !self.links.get(&peer).is_some_and(|l| tcp_stalled(l.fd)) {
            return false;
        }
        let conn = self.links.conn(&peer);
        let Some(l) = self.links.remove(&peer) else { return false };
        tracing::info!(peer = %peer, conn, "link stuck retransmitting while {evidence}: reconnecting");
        count("chatmesh_links_stalled_total", 1);
        reset_on_close(l.fd);
        l.close();
        true
    }

    fn input(&mut self, input: Input, outputs: &mut Vec<Output>) {
        self.node.handle_input(Instant::now(), input);
        self.drain(outputs);
    }

    fn drain(&mut self, outputs: &mut Vec<Output>) {
        while let Some(o) = self.node.poll_output() {
            outputs.push(o);
        }
    }

    /// A chat message to write (`reply`: the `POST` or typed line waiting for it). The core refuses it at
    /// once (`SendRefused`, among the outputs of this input) or writes it and shows it as `Sent` when the
    /// round's own messages are signed, by the round's end (`answer_sends`); either carries the send's token.
    fn send(&mut self, text: String, reply: Option<SendReply>, outputs: &mut Vec<Output>) {
        self.next_token += 1;
        let token = self.next_token;
        let before = outputs.len();
        self.input(Input::Command(Command::Send { text, token }), outputs);
        let refused = outputs[before..].iter().find_map(|o| match o {
            Output::Event(Event::SendRefused { reason, token: t }) if *t == token => Some(reason.to_string()),
            _ => None,
        });
        match (refused, reply) {
            (Some(reason), Some(reply)) => self.replies.push((reply, Err(SendError::Refused(reason)))),
            (None, Some(reply)) => {
                self.sending.insert(token, reply);
            }
            (_, None) => {}
        }
    }

    /// Answers the round's sends with their messages, by token. A send the core neither refused nor wrote
    /// by the round's end found the node stopped.
    fn answer_sends(&mut self, outputs: &[Output]) {
        for o in outputs {
            let Output::Event(Event::Sent { message, token }) = o else { continue };
            if *token == 0 {
                continue;
            }
            if let Some(reply) = self.sending.remove(token) {
                let view = self.own_message(message);
                self.replies.push((reply, Ok(view)));
            }
        }
        for (_, reply) in std::mem::take(&mut self.sending) {
            self.replies.push((reply, Err(SendError::Stopped)));
        }
    }

    /// Takes one inbox message. Its outputs join this round's.
    fn take(&mut self, msg: Inbox, outputs: &mut Vec<Output>) -> Flow {
        match msg {
            Inbox::Input(input) => self.input(input, outputs),
            Inbox::Datagram { from, bytes, direct } => match self.sealer.open(unix_ms(), &bytes) {
                Ok(bytes) => {
                    count("chatmesh_datagrams_in_total", 1);
                    self.drop_stalled_link(&bytes, outputs);
                    self.input(Input::Datagram { from, bytes, direct }, outputs)
                }
                Err(why) => self.dropped_datagram(from, why),
            },
            Inbox::LinkReady { conn, peer, dialer, tx, tasks, fd } => {
                let handle = LinkHandle { tx, tasks, fd };
                match self.links.arrived(Instant::now(), peer, conn, dialer, handle) {
                    Arrival::Up { replaced } => {
                        if let Some(old) = replaced {
                            old.close();
                        }
                        tracing::debug!(peer = %peer, conn, "link up");
                        self.input(Input::LinkUp { peer }, outputs);
                    }
                    Arrival::Refused(new) => new.close(),
                }
            }
            Inbox::LinkFrame { conn, peer, bytes, .. } => {
                count("chatmesh_frames_in_total", 1);
                count("chatmesh_bytes_in_total", bytes.len() as u64);
                trace_frame("in", &peer, &bytes);
                if self.links.carries(&peer, conn) {
                    self.input(Input::Frame { from: peer, bytes }, outputs);
                }
            }
            Inbox::LinkClosed { conn, peer } => {
                if let Some(l) = self.links.closed(&peer, conn) {
                    l.close();
                    tracing::debug!(peer = %peer, conn, "link down");
                    self.input(Input::LinkDown { peer }, outputs);
                }
            }
            Inbox::DialFailed { peer } => {
                self.links.dial_failed(peer);
                self.input(Input::ConnectFailed { peer }, outputs);
            }
            Inbox::Send { text, reply } => self.send(text, Some(reply), outputs),
            Inbox::SendMany(items) => {
                for (text, reply) in items {
                    self.send(text, Some(reply), outputs);
                }
            }
            Inbox::Command(Command::Send { text, .. }) => self.send(text, None, outputs),
            Inbox::Command(c) => self.input(Input::Command(c), outputs),
            Inbox::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Inbox::Delivery(reply) => {
                let _ = reply.send(self.node.delivery());
            }
            Inbox::Metrics(reply) => {
                let rtt = {
                    let names = self.names.read().unwrap_or_else(|p| p.into_inner());
                    self.links.iter().filter_map(|(k, l)| Some((names.label(k), tcp_rtt(l.fd)?))).collect()
                };
                let snap = crate::metrics::Snapshot {
                    stats: self.node.stats().clone(),
                    held_back: self.node.held_back(),
                    link_rtt: rtt,
                };
                let _ = reply.send(snap);
            }
            Inbox::PeerNames(addrs) => {
                self.peers_named = addrs;
            }
            Inbox::Connect(addr) => {
                // A Discover sent straight to that address: a member answers with its coordinator.
                // Once each: `dedup` alone would keep an address given again after another one.
                if !self.peers_udp.contains(&addr) {
                    self.peers_udp.push(addr);
                }
                self.input(Input::Command(Command::RefreshView), outputs);
            }
            Inbox::Shutdown { graceful } => {
                if !graceful || !matches!(self.node.role(), Role::Member | Role::Coordinator) {
                    return Flow::Stop;
                }
                self.stop_at.get_or_insert(Instant::now() + Duration::from_secs(2));
                self.input(Input::Command(Command::Leave), outputs);
            }
        }
        Flow::Continue
    }

    fn carry_out_one(&mut self, o: Output) {
        match o {
            Output::Persist(_) | Output::Store { .. } => {}
            Output::Datagram { to, bytes } => self.send_datagram(to, bytes),
            Output::Connect { peer, addr } => match self.links.connect(peer) {
                Dial::Up => self.pending.push_back(Input::LinkUp { peer }),
                Dial::InFlight => {}
                Dial::Start => {
                    tokio::spawn(dial(
                        self.me,
                        peer,
                        addr,
                        self.keys.clone(),
                        self.connect_timeout,
                        self.handshake_timeout,
                        self.inbox_tx.clone(),
                    ));
                }
            },
            Output::Disconnect { peer } => {
                if let Some(l) = self.links.remove(&peer) {
                    l.close();
                }
            }
            Output::Frame { to, bytes } | Output::FrameAhead { to, bytes } => {
                trace_frame("out", &to, &bytes);
                count("chatmesh_frames_out_total", 1);
                count("chatmesh_bytes_out_total", bytes.len() as u64);
                let Some(link) = self.links.get(&to) else { return };
                if let Err(e) = link.tx.try_send(bytes) {
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "the peer is not reading (send queue full)",
                        mpsc::error::TrySendError::Closed(_) => "the link writer stopped",
                    };
                    tracing::warn!(peer = %to, "closing link: {why}");
                    if let Some(l) = self.links.remove(&to) {
                        l.close();
                    }
                    self.pending.push_back(Input::LinkDown { peer: to });
                }
            }
            Output::Load(req) => {
                // The reader thread answers with `Input::Loaded` through the inbox.
                let id = req.id;
                if self.reads.send(ReadRequest::Load(req)).is_err() {
                    self.pending.push_back(Input::Loaded { id, messages: Vec::new(), more: false });
                }
            }
            Output::Event(e) => self.event(e),
        }
    }

    fn send_datagram(&mut self, to: Destination, bytes: Vec<u8>) {
        if bytes.len() > MAX_DATAGRAM_LEN {
            tracing::error!(len = bytes.len(), "datagram over the size limit not sent");
            return;
        }
        let targets: Vec<SocketAddr> = match to {
            Destination::Group => {
                let mut t = vec![SocketAddr::V4(self.group)];
                t.extend(self.peers_udp.iter().copied());
                t.extend(self.peers_named.iter().filter(|a| !self.peers_udp.contains(a)).copied());
                t
            }
            Destination::Addr(a) => vec![a],
        };
        let bytes = self.sealer.seal(unix_ms(), &bytes);
        count("chatmesh_datagrams_out_total", targets.len() as u64);
        for t in targets {
            if let Err(e) = self.direct.try_send_to(&bytes, t) {
                tracing::debug!(to = %t, "datagram not sent: {e}");
            }
        }
    }

    /// Counts a dropped datagram; logs a summary at most once per `DROP_LOG_PERIOD`, not once per packet.
    fn dropped_datagram(&mut self, from: SocketAddr, why: crate::seal::SealError) {
        self.datagrams_dropped += 1;
        metrics::counter!("chatmesh_datagrams_dropped_total", "reason" => format!("{why:?}")).increment(1);
        let entry = self.drops.entry(why).or_insert((0, from));
        entry.0 += 1;
        entry.1 = from;
        let now = Instant::now();
        if self.drops_logged.is_none_or(|t| now.duration_since(t) >= DROP_LOG_PERIOD) {
            for (why, (n, from)) in std::mem::take(&mut self.drops) {
                tracing::warn!(count = n, last_from = %from, "dropped datagrams: {why}");
            }
            self.drops_logged = Some(now);
        }
    }

    fn learn_view(&mut self) {
        if let Some(v) = self.node.view() {
            self.names.write().unwrap_or_else(|p| p.into_inner()).learn_view(v);
        }
    }

    fn event(&mut self, e: Event) {
        let seen = self.node.view().map(|v| (v.term, v.version, v.coordinator));
        if seen != self.learned {
            self.learned = seen;
            self.learn_view();
        }
        match &e {
            Event::Acked { .. } => {
                self.delivery_notices();
                return;
            }
            Event::Sent { message, .. } if matches!(message.body, Body::Text(_)) => {
                let st = self.node.delivery_status(message.seq);
                self.acks.insert(message.seq, (st.acked, st.members));
            }
            // A member (re)joining the view, typically when a partition heals and the parts merge: our old
            // connection to it may be stuck in retransmission backoff.
            Event::MemberJoined { key, .. } if self.reset_if_stalled(*key, "the member rejoins the view") => {
                self.pending.push_back(Input::LinkDown { peer: *key });
            }
            _ => {}
        }
        // Other members: the statuses of own messages still pending change with them.
        let members_changed = matches!(
            e,
            Event::Founded { .. }
                | Event::Joined { .. }
                | Event::MemberJoined { .. }
                | Event::MemberLeft { .. }
                | Event::MemberFailed { .. }
        );
        let mut renamed = None;
        if let Event::Sent { message, .. } | Event::Delivered { message } = &e {
            // Only membership events name anyone: chat does not take the lock.
            if matches!(message.body, Body::Membership(_)) {
                self.names.write().unwrap_or_else(|p| p.into_inner()).learn(message);
            }
            if let Body::Membership(MembershipEvent::Renamed { id, key, old, new }) = &message.body {
                tracing::info!(%id, %old, %new, "member renamed");
                renamed = Some(Notice::MemberRenamed {
                    id: id.0,
                    key: hex::encode(key.0),
                    old: old.clone(),
                    new: new.clone(),
                });
            }
        }
        let guard = self.names.read().unwrap_or_else(|p| p.into_inner());
        let names = &*guard;
        let notice = match e {
            Event::Founded { id, term } => {
                tracing::info!(%id, term, "founded the mesh: coordinator");
                Notice::Founded { id: id.0, term }
            }
            Event::Joined { id, term, coordinator } => {
                tracing::info!(%id, term, coordinator = %names.label(&coordinator), "joined the mesh");
                Notice::Joined { id: id.0, term, coordinator: hex::encode(coordinator.0) }
            }
            Event::CoordinatorChanged { term, coordinator, id } => {
                tracing::info!(term, coordinator = %names.label(&coordinator), "coordinator changed");
                Notice::Coordinator {
                    term,
                    id: id.0,
                    key: hex::encode(coordinator.0),
                    name: names.name(&coordinator).map(|(_, n)| n.to_owned()),
                    me: coordinator == self.me,
                }
            }
            Event::MemberJoined { id, key, name } => {
                tracing::info!(%id, %name, "member joined");
                Notice::MemberJoined { id: id.0, key: hex::encode(key.0), name }
            }
            Event::MemberLeft { id, key, name } => {
                tracing::info!(%id, %name, "member left");
                Notice::MemberLeft { id: id.0, key: hex::encode(key.0), name }
            }
            Event::MemberFailed { id, key, name } => {
                tracing::warn!(%id, %name, "member failed");
                Notice::MemberFailed { id: id.0, key: hex::encode(key.0), name }
            }
            Event::IdReassigned { key, old, new } => {
                tracing::info!(key = %key, %old, %new, "ID reassigned");
                Notice::IdReassigned { key: hex::encode(key.0), old: old.0, new: new.0 }
            }
            Event::ElectionStarted { term } => {
                tracing::info!(term, "election started");
                Notice::ElectionStarted { term }
            }
            Event::Sent { message, .. } => {
                tracing::debug!(seq = message.seq, "sent");
                count("chatmesh_messages_sent_total", 1);
                Notice::Message(own_message(names, &self.node, &message))
            }
            Event::Delivered { message } => {
                tracing::debug!(author = %message.author, seq = message.seq, "delivered");
                count("chatmesh_messages_delivered_total", 1);
                Notice::Message(names.message(&message, &self.me))
            }
            Event::Acked { .. } => return,
            Event::SendRefused { reason, .. } => Notice::SendRefused { reason: reason.to_string() },
            Event::Rejected { reason } => {
                tracing::debug!(%reason, "input rejected");
                Notice::Rejected { reason: reason.to_string() }
            }
            Event::Stopped => {
                tracing::info!("left the mesh");
                return;
            }
        };
        drop(guard);
        let _ = self.events.send(notice);
        if let Some(notice) = renamed {
            let _ = self.events.send(notice);
        }
        if members_changed {
            self.delivery_notices();
        }
    }

    /// Delivery progress of own messages still waiting for some acknowledgement: a notice for each whose
    /// status changed (more acknowledgements, or other members: after a view change).
    fn delivery_notices(&mut self) {
        let delivery = self.node.delivery();
        let mut done = Vec::new();
        for (seq, shown) in self.acks.iter_mut() {
            let st = delivery.status(*seq);
            if (st.acked, st.members) != *shown {
                *shown = (st.acked, st.members);
                let _ = self.events.send(Notice::Delivery { seq: *seq, acked: st.acked, members: st.members });
            }
            if st.acked >= st.members {
                done.push(*seq);
            }
        }
        for s in done {
            self.acks.remove(&s);
        }
        while self.acks.len() as u64 > DELIVERIES_FOLLOWED {
            self.acks.pop_first();
        }
    }

    /// Our own message as the UIs show it, with its delivery status now.
    fn own_message(&self, message: &Message) -> MessageView {
        own_message(&self.names.read().unwrap_or_else(|p| p.into_inner()), &self.node, message)
    }

    fn status(&self) -> StatusView {
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let view = self.node.view();
        let coordinator = self.node.coordinator().map(|k| CoordinatorView {
            id: view.and_then(|v| v.get(&k)).map_or(0, |m| m.id.0),
            key: hex::encode(k.0),
            name: names.name(&k).map(|(_, n)| n.to_owned()),
        });
        let members = view
            .map(|v| {
                v.members
                    .iter()
                    .map(|m| MemberView {
                        id: m.id.0,
                        name: names.name(&m.key).map_or_else(|| m.name.clone(), |(_, n)| n.to_owned()),
                        key: hex::encode(m.key.0),
                        addr: m.addr.to_string(),
                        state: state_name(m.state),
                        coordinator: m.key == v.coordinator,
                        linked: self.links.contains(&m.key),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let h = self.node.history();
        StatusView {
            id: self.node.my_id().map(|i| i.0),
            name: self.node.config().name.clone(),
            key: hex::encode(self.me.0),
            mesh: self.node.config().mesh.clone(),
            addr: self.node.config().addr.to_string(),
            role: match self.node.role() {
                Role::Discovering => "discovering",
                Role::Joining => "joining",
                Role::Member => "member",
                Role::Coordinator => "coordinator",
                Role::Stopped => "stopped",
            },
            term: self.node.term(),
            coordinator,
            election_running: self.node.election_running(),
            members,
            history: HistorySummary { count: h.count, digest: hex::encode(h.digest.0) },
            pending_acks: self.node.pending_acks(),
            links: self.links.len(),
            rejected: self.node.stats().rejected_total(),
            datagrams_dropped: self.datagrams_dropped + self.rate_limited.load(Ordering::Relaxed),
            uptime_ms: self.started.elapsed().as_millis() as u64,
        }
    }
}

/// Our own message `m` as the UIs show it, with its delivery status now.
fn own_message(names: &Names, node: &Node, m: &Message) -> MessageView {
    let mut view = names.message(m, &node.key());
    view.delivery = Some(DeliveryView::of(node.delivery_status(m.seq)));
    view
}

/// The own messages still waiting for some member's acknowledgement (the latest `DELIVERIES_FOLLOWED`),
/// each with its status: followed from the start, so that a restarted node shows their progress too.
fn pending_deliveries(delivery: &Delivery) -> BTreeMap<u64, (usize, usize)> {
    let first = (delivery.mine - delivery.pending() + 1).max(delivery.mine.saturating_sub(DELIVERIES_FOLLOWED) + 1);
    (first..=delivery.mine)
        .map(|seq| {
            let st = delivery.status(seq);
            (seq, (st.acked, st.members))
        })
        .collect()
}

fn spawn_writer(mut store: Store, jobs: std::sync::mpsc::Receiver<WriteJob>) {
    std::thread::Builder::new()
        .name("chatmesh-store".into())
        .spawn(move || {
            while let Ok(mut job) = jobs.recv() {
                // Group commit: whatever else is already waiting goes into the same transaction.
                let mut dones = vec![job.done];
                while let Ok(more) = jobs.try_recv() {
                    job.writes.extend(more.writes);
                    dones.push(more.done);
                }
                let r = store.commit(&job.writes).map_err(|e| e.to_string());
                for d in dones {
                    let _ = d.send(r.clone());
                }
            }
        })
        .expect("spawning the store thread");
}

fn spawn_reader(store: Store, reqs: std::sync::mpsc::Receiver<ReadRequest>, inbox: mpsc::Sender<Inbox>) {
    std::thread::Builder::new()
        .name("chatmesh-reader".into())
        .spawn(move || {
            while let Ok(req) = reqs.recv() {
                match req {
                    ReadRequest::Load(req) => {
                        let (messages, more) = store.load(&req).unwrap_or_else(|e| {
                            tracing::error!("history load failed: {e}");
                            (Vec::new(), false)
                        });
                        let input = Input::Loaded { id: req.id, messages, more };
                        if inbox.blocking_send(Inbox::Input(input)).is_err() {
                            return;
                        }
                    }
                    ReadRequest::History { limit, reply } => {
                        let _ = reply.send(store.history(limit));
                    }
                }
            }
        })
        .expect("spawning the reader thread");
}

/// How often the `--peer` host names are resolved again.
const PEER_RESOLVE_PERIOD: Duration = Duration::from_secs(10);
/// How often the multicast group is joined again.
const REJOIN_PERIOD: Duration = Duration::from_secs(5);

/// Resolves the `--peer` host names now and every `PEER_RESOLVE_PERIOD`; a name that does not resolve is
/// tried again (logged once until it resolves).
async fn resolve_peers(names: Vec<String>, inbox: mpsc::Sender<Inbox>) {
    let mut failing: HashSet<String> = HashSet::new();
    loop {
        let mut addrs = Vec::new();
        for name in &names {
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(found) => {
                    failing.remove(name);
                    addrs.extend(found.filter(SocketAddr::is_ipv4));
                }
                Err(e) => {
                    if failing.insert(name.clone()) {
                        tracing::warn!("--peer {name} does not resolve yet ({e}); trying again every 10 s");
                    }
                }
            }
        }
        addrs.sort();
        addrs.dedup();
        if inbox.send(Inbox::PeerNames(addrs)).await.is_err() {
            return;
        }
        tokio::time::sleep(PEER_RESOLVE_PERIOD).await;
    }
}

/// Joins the multicast group again every `REJOIN_PERIOD`. The kernel drops a membership when its interface
/// goes away (a container disconnected and connected again, Wi-Fi, a VPN): without this the node would
/// still send to the group but never hear it again. Joining while a member is refused harmlessly.
async fn rejoin_group(socket: Arc<UdpSocket>, group: SocketAddrV4, iface: Option<Ipv4Addr>) {
    let on = iface.unwrap_or(Ipv4Addr::UNSPECIFIED);
    loop {
        tokio::time::sleep(REJOIN_PERIOD).await;
        if Arc::strong_count(&socket) == 1 {
            return;
        }
        match socket.join_multicast_v4(*group.ip(), on) {
            Ok(()) => {
                tracing::info!(group = %group.ip(), iface = %on, "joined the multicast group again (the membership had been lost)")
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => tracing::debug!("rejoining the multicast group: {e}"),
        }
    }
}

/// A token bucket of one second's worth of tokens: `take` says how long to wait before the next unit.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: f64) -> TokenBucket {
        TokenBucket { rate, tokens: rate, at: Instant::now() }
    }

    fn take(&mut self) -> Option<Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        self.tokens -= 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// Datagram rates per source address and per IP, counted in one-second windows (the maps are cleared
/// every window, so they stay as small as the number of senders in one second).
struct DatagramRates {
    window: Instant,
    by_source: HashMap<SocketAddr, u32>,
    by_ip: HashMap<std::net::IpAddr, u32>,
}

impl DatagramRates {
    fn allow(&mut self, from: SocketAddr) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.by_source.clear();
            self.by_ip.clear();
        }
        let ip = self.by_ip.entry(from.ip()).or_insert(0);
        *ip += 1;
        let over_ip = *ip > DATAGRAMS_PER_IP;
        let src = self.by_source.entry(from).or_insert(0);
        *src += 1;
        *src <= DATAGRAMS_PER_SOURCE && !over_ip
    }
}

/// Log lines about floods (refused handshakes, dropped datagrams) at most once per `DROP_LOG_PERIOD`,
/// with how many were not logged.
struct Throttle {
    last: std::sync::Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Throttle {
    const fn new() -> Throttle {
        Throttle { last: std::sync::Mutex::new(None), suppressed: AtomicU64::new(0) }
    }

    /// Calls `log` with the number of events not logged since the last call, if one is due.
    fn log(&self, log: impl FnOnce(u64)) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= DROP_LOG_PERIOD) {
            *last = Some(now);
            log(self.suppressed.swap(0, Ordering::Relaxed));
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

static REFUSED_CONNECTIONS: Throttle = Throttle::new();
static RATE_LIMITED_DATAGRAMS: Throttle = Throttle::new();

/// Receives datagrams and hands them to the core; when the inbox is full they are dropped (datagrams are
/// resent or superseded), so a datagram flood cannot stall the links.
fn spawn_udp(socket: Arc<UdpSocket>, direct: bool, inbox: mpsc::Sender<Inbox>, limited: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut rates = DatagramRates { window: Instant::now(), by_source: HashMap::new(), by_ip: HashMap::new() };
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    if !rates.allow(from) {
                        limited.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("chatmesh_datagrams_dropped_total", "reason" => "RateLimited").increment(1);
                        RATE_LIMITED_DATAGRAMS.log(|more| {
                            tracing::warn!(%from, "datagrams over the rate limit dropped ({more} more since the last report)")
                        });
                        continue;
                    }
                    if n > MAX_DATAGRAM_LEN + crate::seal::OVERHEAD {
                        tracing::debug!(%from, len = n, "datagram over the size limit dropped");
                        continue;
                    }
                    match inbox.try_send(Inbox::Datagram { from, bytes: buf[..n].to_vec(), direct }) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                // ICMP errors from earlier sends surface here on some systems; they are not fatal.
                Err(e) => {
                    tracing::trace!("datagram receive: {e}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    });
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    keys: Arc<LinkKeys>,
    timeout: Duration,
    handshakes: Arc<Semaphore>,
    inbox: mpsc::Sender<Inbox>,
) {
    let per_ip: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = from.ip();
        {
            let mut per_ip = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= MAX_HANDSHAKES_PER_IP {
                REFUSED_CONNECTIONS.log(|more| {
                    tracing::warn!(%from, "connection closed: {MAX_HANDSHAKES_PER_IP} handshakes from {ip} already running ({more} more refusals since the last report)")
                });
                continue;
            }
            *n += 1;
        }
        let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
        let keys = keys.clone();
        let inbox = inbox.clone();
        let per_ip = per_ip.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let fd = raw_fd(&stream);
            let r = link::establish(stream, &keys, link::Role::Responder, timeout).await;
            drop(permit);
            {
                let mut map = per_ip.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = map.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&ip);
                    }
                }
            }
            match r {
                Ok((reader, writer, peer)) => run_link(reader, writer, peer, peer, inbox, fd).await,
                Err(e) => REFUSED_CONNECTIONS.log(|more| {
                    tracing::warn!(%from, "incoming connection refused: {e} ({more} more refusals since the last report)")
                }),
            }
        });
    }
}

async fn dial(
    me: NodeKey,
    peer: NodeKey,
    addr: SocketAddr,
    keys: Arc<LinkKeys>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    inbox: mpsc::Sender<Inbox>,
) {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, %addr, "dial failed: {e}");
            let _ = inbox.send(Inbox::DialFailed { peer }).await;
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer, %addr, "dial timed out");
            let _ = inbox.send(Inbox::DialFailed { peer }).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let fd = raw_fd(&stream);
    match link::establish(stream, &keys, link::Role::Initiator { expected: peer }, handshake_timeout).await {
        Ok((reader, writer, proven)) => run_link(reader, writer, proven, me, inbox, fd).await,
        Err(e) => {
            tracing::info!(peer = %peer, %addr, "link to peer failed: {e}");
            let _ = inbox.send(Inbox::DialFailed { peer }).await;
        }
    }
}

fn raw_fd(stream: &TcpStream) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        stream.as_raw_fd()
    }
    #[cfg(not(unix))]
    {
        let _ = stream;
        -1
    }
}

/// Runs an established link: announces it to the core, then reads frames until it ends.
async fn run_link<R, W>(
    mut reader: LinkReader<R>,
    mut writer: LinkWriter<W>,
    peer: NodeKey,
    dialer: NodeKey,
    inbox: mpsc::Sender<Inbox>,
    fd: i32,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(LINK_QUEUE);
    let write_task = tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut bytes = first.len();
            batch.push(first);
            while bytes < WRITE_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(f) => {
                        bytes += f.len();
                        batch.push(f);
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = writer.send(&batch).await {
                tracing::debug!(peer = %peer, "link write failed: {e}");
                return;
            }
            batch.clear();
        }
    });
    // The reader starts only once the core knows the link, so that no frame overtakes `LinkReady`.
    let (go, started) = oneshot::channel::<()>();
    let read_inbox = inbox.clone();
    let read_task = tokio::spawn(async move {
        if started.await.is_err() {
            return;
        }
        let quota = Arc::new(Semaphore::new(LINK_INBOX_QUOTA));
        let mut bucket = TokenBucket::new(LINK_FRAMES_PER_SEC);
        let reason = loop {
            match reader.recv().await {
                Ok(Some(bytes)) => {
                    if let Some(wait) = bucket.take() {
                        tokio::time::sleep(wait).await;
                    }
                    let Ok(slot) = quota.clone().acquire_owned().await else { return };
                    if read_inbox.send(Inbox::LinkFrame { conn, peer, bytes, _quota: slot }).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break "closed by the peer".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        tracing::debug!(peer = %peer, conn, "link ended: {reason}");
        let _ = read_inbox.send(Inbox::LinkClosed { conn, peer }).await;
    });
    let tasks = vec![write_task.abort_handle(), read_task.abort_handle()];
    if inbox.send(Inbox::LinkReady { conn, peer, dialer, tx, tasks, fd }).await.is_err() {
        write_task.abort();
        read_task.abort();
        return;
    }
    let _ = go.send(());
}

/// The names the node knows at start: from the membership events of its history, and from its last durable
/// view for keys the history does not name (the rule of `Names`), so that a restarted node names everyone
/// before any view arrives.
fn names_at_start(store: &Store, snapshot: &chatmesh_core::Snapshot) -> Result<Names, StartError> {
    let events = store.membership_events().map_err(StartError::Store)?;
    Ok(Names::stored(snapshot.view.as_ref(), &events))
}
