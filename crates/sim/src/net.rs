//! The simulated network: one-way latency with jitter, loss, duplication, reordering, partitions and cut
//! links. Links are TCP-like connections: each dial makes one, a close, a crash or a reset tears it down;
//! frames on a connection arrive in order or not at all. Each process's driver decides which connection
//! carries its link to a peer with the tokio driver's own `chatmesh_core::Connections` (so a simultaneous
//! dial and its tie-break happen here as on real sockets), and drops frames of any other. Across a
//! partition a link goes silent without either side being told, as real TCP does. Loss and duplication
//! of frames are harsher than TCP on purpose: the core must not rely on a link for anything a reconnect
//! could lose.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Every fault knob of the simulator.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    /// One-way delay of a datagram or frame, uniformly in this range.
    pub latency: (Duration, Duration),
    /// Probability that a datagram or frame is lost.
    pub loss: f64,
    /// Probability that a datagram or frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram or frame is held back by up to `reorder_delay`. Datagrams overtake each
    /// other; frames on one link stay in order (TCP) and hold up the frames behind them instead.
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// A dial to an unreachable or stopped (paused) process fails after this long, as a driver's connect and
    /// handshake timeout would.
    pub connect_timeout: Duration,
    /// Probability that a process is killed in the middle of carrying out one step's outputs: what came
    /// before the cut is durable or sent, the rest is lost (checks the output-ordering contract).
    pub crash_mid_output: f64,
    /// Driver rounds: the inputs a process gets within this long of one that found no round open are
    /// taken as one round (`Node::begin_round`), whose pushes and acknowledgements go out merged when it
    /// ends. `None`: no rounds; every output goes out as soon as its input is handled.
    pub round: Option<Duration>,
    /// How long a round's writes take to become durable, uniformly in this range (the driver's store
    /// thread commits them in order, while the node goes on; `chatmesh_core::Pipeline` holds back what
    /// follows them). A crash loses the commits still in flight. `None`: durable at once. (The simulated
    /// process does not stop reading input at `MAX_IN_FLIGHT` rounds as the driver does: at most a few
    /// rounds are in flight at these delays.)
    pub disk: Option<(Duration, Duration)>,
    /// Probability that a commit's fsync stalls, for up to `disk_stall_max` more (only with `disk`). A
    /// process with `MAX_IN_FLIGHT` rounds committing stops reading input until one lands, as the driver
    /// does; its timers fire meanwhile.
    pub disk_stalls: f64,
    pub disk_stall_max: Duration,
    /// Print every delivery and output to stderr (for replaying one seed).
    pub trace: bool,
}

impl SimOptions {
    /// A clean LAN: loopback-like latency, no faults.
    pub fn quiet(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            latency: (Duration::from_micros(100), Duration::from_micros(500)),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
            connect_timeout: Duration::from_millis(500),
            crash_mid_output: 0.0,
            round: None,
            disk: None,
            disk_stalls: 0.0,
            disk_stall_max: Duration::from_millis(300),
            trace: crate::trace_from_env(),
        }
    }

    /// Turns the message-level faults off (the quiet period at the end of a scenario).
    pub fn calm(&mut self) {
        self.loss = 0.0;
        self.duplicate = 0.0;
        self.reorder = 0.0;
        self.crash_mid_output = 0.0;
    }
}

pub(crate) type Pair = (usize, usize);

pub(crate) fn pair(a: usize, b: usize) -> Pair {
    (a.min(b), a.max(b))
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Network {
    /// Partition group of each node; nodes talk only within their group.
    pub groups: Vec<usize>,
    pub cut: BTreeSet<Pair>,
    /// Open connections, by ID: (dialler, acceptor). Each dial makes its own; a close, a crash or a reset
    /// removes it.
    pub conns: BTreeMap<u64, (usize, usize)>,
    pub next_gen: u64,
}

impl Network {
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.groups.get(a) == self.groups.get(b) && !self.cut.contains(&pair(a, b))
    }

    pub fn heal(&mut self) {
        self.groups.iter_mut().for_each(|g| *g = 0);
        self.cut.clear();
    }

    /// The delays at which one send arrives: none (lost), one, or two (duplicated).
    pub fn deliveries(&self, opts: &SimOptions, rng: &mut ChaCha8Rng) -> Vec<Duration> {
        if rng.gen_bool(opts.loss) {
            return Vec::new();
        }
        let copies = if rng.gen_bool(opts.duplicate) { 2 } else { 1 };
        (0..copies).map(|_| delay(opts, rng)).collect()
    }
}

pub(crate) fn delay(opts: &SimOptions, rng: &mut ChaCha8Rng) -> Duration {
    let (lo, hi) = opts.latency;
    let mut d = if hi > lo { rng.gen_range(lo..=hi) } else { lo };
    if rng.gen_bool(opts.reorder) {
        d += opts.reorder_delay.mul_f64(rng.gen::<f64>());
    }
    d
}
