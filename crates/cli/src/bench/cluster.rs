//! Real node processes on loopback for the benchmarks: starting and stopping them, their control APIs,
//! their event streams (read by the bench and time-stamped on arrival) and what /proc says about them.
//!
//! Every node is this binary started as `chatmesh --ui json --log info` on 127.0.0.1 only, with a mesh
//! name and a multicast group port of the cluster's own, so that nothing leaves the machine and several
//! benches or tests can run at once. `CHATMESH_*` variables are not passed on. The kernel kills every node
//! if the bench dies (parent-death signal); dropping a `Cluster` kills its nodes and removes their data.

use super::stats::num;
use chatmesh_harness::check::all_acked;
pub use chatmesh_harness::check::{coordinator_id, one_mesh, same_history};
use chatmesh_harness::{Client, Event, EventStream, NodeArgs, NodeProcess, Notice, StatusView, Stdout};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, String>;

/// How long a node may take to print its `ready` line.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// One event of a node's `GET /events` stream, stamped by the bench when it arrived.
#[derive(Clone, Debug)]
pub struct Ev {
    pub node: usize,
    pub at: Instant,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A message durable and delivered on that node (`own`: the node wrote it).
    Message {
        id: String,
        own: bool,
    },
    /// `acked` of `members` other members hold the node's own message `seq`.
    Delivery {
        seq: u64,
        acked: u64,
        members: u64,
    },
    Coordinator {
        term: u64,
        id: u32,
    },
    Election {
        term: u64,
    },
    MemberFailed {
        id: u32,
    },
    Joined {
        id: u32,
    },
    Founded {
        id: u32,
    },
    /// The stream skipped this many events (the bench read too slowly).
    Lagged(u64),
    Other(String),
}

/// One node process.
pub struct Node {
    pub name: String,
    /// The running process (`None` once killed or terminated).
    pub process: Option<NodeProcess>,
    /// The last process's pid (also after it was killed: its /proc figures are gone, the number stays).
    pub pid: u32,
    pub http: String,
    pub addr: String,
    pub key: String,
    pub data_dir: PathBuf,
    /// When the bench called spawn.
    pub spawned_at: Instant,
    extra: Vec<String>,
    group: String,
    /// With `--netns`: the host (network namespace) this node runs in, kept across restarts.
    pub host: Option<usize>,
}

/// A set of node processes of one mesh name (and normally one multicast group).
pub struct Cluster {
    pub base: PathBuf,
    pub mesh: String,
    pub group: String,
    exe: PathBuf,
    pub nodes: Vec<Node>,
    pub agent: ureq::Agent,
    sse: ureq::Agent,
    tx: mpsc::Sender<Ev>,
    pub rx: mpsc::Receiver<Ev>,
    pub keep: bool,
}

static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// A multicast group port that no other cluster of this bench (and most likely no other bench or test) uses.
pub fn group_port(tag: &str) -> u16 {
    let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
    let mut h: u32 = std::process::id().wrapping_mul(2_654_435_761) ^ n.wrapping_mul(40_503);
    for b in tag.bytes() {
        h = h.wrapping_mul(31).wrapping_add(b as u32);
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    20000 + ((h ^ t) % 40000) as u16
}

/// The directory every cluster of this bench run lives under.
pub fn bench_root() -> PathBuf {
    std::env::temp_dir().join(format!("chatmesh-bench-{}", std::process::id()))
}

impl Cluster {
    /// A new cluster with a mesh name and group port of its own.
    pub fn new(tag: &str) -> Res<Cluster> {
        let mesh = format!("bench-{}-{tag}", std::process::id());
        let group = format!("239.255.77.77:{}", group_port(tag));
        Cluster::with(tag, &mesh, &group)
    }

    /// A cluster on a given mesh name and group (two clusters of one mesh name on different groups are the
    /// two sides of a partition: they cannot hear each other's multicast).
    pub fn with(tag: &str, mesh: &str, group: &str) -> Res<Cluster> {
        let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
        let base = bench_root().join(format!("{tag}-{n}"));
        std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
        let (tx, rx) = mpsc::channel();
        Ok(Cluster {
            base,
            mesh: mesh.to_string(),
            group: group.to_string(),
            exe,
            nodes: Vec::new(),
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build(),
            sse: ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5)).build(),
            tx,
            rx,
            keep: false,
        })
    }

    /// Starts a node process (a new one, or the same name again from its data directory) without waiting
    /// for it; `ready` waits.
    pub fn spawn(&mut self, name: &str, extra: &[&str], stdin: bool) -> Res<usize> {
        let data_dir = self.base.join(name);
        let i = match self.nodes.iter().position(|n| n.name == name) {
            Some(i) => i,
            None => {
                self.nodes.push(Node {
                    name: name.to_string(),
                    process: None,
                    pid: 0,
                    http: String::new(),
                    addr: String::new(),
                    key: String::new(),
                    data_dir: data_dir.clone(),
                    spawned_at: Instant::now(),
                    extra: extra.iter().map(|s| s.to_string()).collect(),
                    group: self.group.clone(),
                    host: None,
                });
                self.nodes.len() - 1
            }
        };
        let node = &mut self.nodes[i];
        let mut args = NodeArgs::loopback(&self.exe, name, &self.mesh, &node.group, &data_dir, &self.base.join("logs"));
        args.log = super::node_log().into();
        args.extra.clone_from(&node.extra);
        args.stdin = stdin;
        args.stdout = Stdout::Lines { keep: false, forward: None };
        // On loopback, or (`--netns`) in a network namespace of its own with its own addresses.
        if hosts::enabled() {
            let host = match node.host {
                Some(h) => h,
                None => hosts::take()?,
            };
            node.host = Some(host);
            let (ns, data, mgmt) = hosts::addresses(host)?;
            args.wrapper = vec!["ip".into(), "netns".into(), "exec".into(), ns];
            args.listen = format!("{data}:0");
            args.iface = data;
            args.http = format!("{mgmt}:0");
        }
        let process = NodeProcess::spawn(args)?;
        node.spawned_at = process.spawned_at;
        node.pid = process.pid();
        node.process = Some(process);
        Ok(i)
    }

    fn process(&self, i: usize) -> Res<&NodeProcess> {
        self.nodes[i].process.as_ref().ok_or_else(|| format!("{} is not running", self.nodes[i].name))
    }

    /// Waits for node `i`'s `ready` line (its addresses and key).
    pub fn ready(&mut self, i: usize) -> Res<()> {
        let r = self.process(i)?.ready(READY_LIMIT)?;
        let n = &mut self.nodes[i];
        n.http = r.http.ok_or_else(|| format!("{} serves no control API", n.name))?;
        n.addr = r.addr;
        n.key = r.key;
        Ok(())
    }

    pub fn start(&mut self, name: &str) -> Res<usize> {
        let i = self.spawn(name, &[], false)?;
        self.ready(i)?;
        Ok(i)
    }

    /// Starts `n` nodes named `<prefix>1..` and waits until they form one mesh: the first alone (it
    /// founds), then the others `stagger` apart, or (`None`) each once the one before has its ID.
    pub fn start_mesh(&mut self, prefix: &str, n: usize, stagger: Option<Duration>, stdin: bool) -> Res<Duration> {
        let t0 = Instant::now();
        let first = self.nodes.len();
        let i = self.spawn(&format!("{prefix}1"), &[], stdin)?;
        self.ready(i)?;
        self.wait_id(i, Duration::from_secs(10))?;
        for k in 2..=n {
            let i = self.spawn(&format!("{prefix}{k}"), &[], stdin)?;
            match stagger {
                Some(d) => std::thread::sleep(d),
                None => {
                    self.ready(i)?;
                    self.wait_id(i, Duration::from_secs(30))?;
                }
            }
        }
        for i in first..first + n {
            self.ready(i)?;
        }
        let all: Vec<usize> = (first..first + n).collect();
        let limit = Duration::from_secs(30) + Duration::from_secs(1) * n as u32;
        self.wait("one mesh", &all, limit, Duration::from_millis(50), |s| one_mesh(s, n))?;
        Ok(t0.elapsed())
    }

    /// Waits until node `i` printed its `joined` or `founded` line: when the bench read it, and the ID.
    pub fn wait_id(&self, i: usize, limit: Duration) -> Res<(Instant, u32)> {
        self.process(i)?.id(limit, &super::interrupted)
    }

    /// Node `i`'s control API.
    pub fn client(&self, i: usize) -> Client {
        Client::new(&self.agent, &self.nodes[i].http)
    }

    /// Subscribes to node `i`'s event stream; returns once the subscription is in place.
    pub fn tap(&self, i: usize) -> Res<()> {
        let events = Client::new(&self.sse, &self.nodes[i].http)
            .events()
            .map_err(|e| format!("{}: events: {e}", self.nodes[i].name))?;
        let tx = self.tx.clone();
        std::thread::spawn(move || read_events(i, events, tx));
        Ok(())
    }

    pub fn tap_all(&self) -> Res<()> {
        for i in self.live() {
            self.tap(i)?;
        }
        Ok(())
    }

    /// Throws away the events that arrived so far.
    pub fn drain(&self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// The next event, or `None` at `until` (or when the bench is interrupted).
    pub fn next_event(&self, until: Instant) -> Option<Ev> {
        loop {
            if super::interrupted() {
                return None;
            }
            let left = until.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(ev) => return Some(ev),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    pub fn status(&self, i: usize) -> Res<StatusView> {
        self.client(i).status().map_err(|e| format!("{}: {e}", self.nodes[i].name))
    }

    pub fn statuses(&self, nodes: &[usize]) -> Res<Vec<StatusView>> {
        nodes.iter().map(|i| self.status(*i)).collect()
    }

    /// Node `i`'s Prometheus metrics, each sample name's values summed over their labels.
    pub fn metrics(&self, i: usize) -> Res<std::collections::HashMap<String, f64>> {
        Ok(self.client(i).metrics()?.sums())
    }

    /// The sum over `nodes` of each metric.
    pub fn metrics_sum(&self, nodes: &[usize]) -> Res<std::collections::HashMap<String, f64>> {
        let mut sum = std::collections::HashMap::new();
        for i in nodes {
            for (k, v) in self.metrics(*i)? {
                *sum.entry(k).or_insert(0.0) += v;
            }
        }
        Ok(sum)
    }

    /// Polls the statuses of `nodes` every `every` until `check` holds; returns when it first held.
    pub fn wait(
        &self,
        what: &str,
        nodes: &[usize],
        limit: Duration,
        every: Duration,
        check: impl Fn(&[StatusView]) -> Res<()>,
    ) -> Res<Instant> {
        let start = Instant::now();
        loop {
            if super::interrupted() {
                return Err("interrupted".into());
            }
            let r = self.statuses(nodes).and_then(|s| check(&s));
            match r {
                Ok(()) => return Ok(Instant::now()),
                Err(e) if start.elapsed() > limit => return Err(format!("{what}: not within {limit:?} ({e})")),
                Err(_) => std::thread::sleep(every),
            }
        }
    }

    /// Waits until `nodes` hold equal histories of equal counts and every own message is acknowledged.
    pub fn wait_synced(&self, nodes: &[usize], limit: Duration, every: Duration) -> Res<Instant> {
        self.wait("equal histories, all acknowledged", nodes, limit, every, |s| {
            same_history(s)?;
            all_acked(s)
        })
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].process.is_some()).collect()
    }

    pub fn https(&self, nodes: &[usize]) -> Vec<String> {
        nodes.iter().map(|i| self.nodes[*i].http.clone()).collect()
    }

    pub fn pids(&self, nodes: &[usize]) -> Vec<u32> {
        nodes.iter().map(|i| self.nodes[*i].pid).collect()
    }

    pub fn signal(&mut self, i: usize, sig: libc::c_int) {
        if let Some(p) = &mut self.nodes[i].process {
            p.signal(sig);
        }
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.kill();
        }
    }

    /// SIGTERM (the node leaves the mesh gracefully), then SIGKILL after `limit`.
    pub fn terminate(&mut self, i: usize, limit: Duration) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.terminate(limit);
        }
    }

    /// Writes a line (a message or a /command) to node `i`'s stdin (spawned with `stdin`).
    pub fn command(&mut self, i: usize, line: &str) -> Res<()> {
        let name = self.nodes[i].name.clone();
        self.nodes[i].process.as_mut().ok_or_else(|| format!("{name} is not running"))?.type_line(line)
    }

    /// Stops every node (SIGKILL: a benchmark does not need graceful leaves).
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
        for n in &mut self.nodes {
            if let Some(h) = n.host.take() {
                hosts::give_back(h);
            }
        }
        if !self.keep && !super::keep() {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// `--netns`: hosts of one network (a bridge and a namespace per node, from `chatmesh-cluster`), handed
/// out to nodes and given back when their cluster is dropped. Multicast and links go over the bridge
/// between the namespaces' own addresses; the bench reaches each control API over the management network.
pub mod hosts {
    use super::Res;
    use chatmesh_cluster::netns::Net;
    use std::sync::Mutex;

    struct Hosts {
        net: Net,
        free: Vec<usize>,
    }

    static HOSTS: Mutex<Option<Hosts>> = Mutex::new(None);

    fn lock() -> std::sync::MutexGuard<'static, Option<Hosts>> {
        HOSTS.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the network (root only); nodes started from now on run in it.
    pub fn enable() -> Res<()> {
        let net = Net::create(0)?;
        *lock() = Some(Hosts { net, free: Vec::new() });
        Ok(())
    }

    pub fn enabled() -> bool {
        lock().is_some()
    }

    /// A host for a new node: a free one, or a new one.
    pub fn take() -> Res<usize> {
        let mut g = lock();
        let h = g.as_mut().ok_or("--netns is not on")?;
        match h.free.pop() {
            Some(i) => Ok(i),
            None => h.net.add_host(),
        }
    }

    pub fn give_back(i: usize) {
        if let Some(h) = lock().as_mut() {
            h.free.push(i);
        }
    }

    /// Host `i`'s namespace, data address and management address.
    pub fn addresses(i: usize) -> Res<(String, String, String)> {
        let g = lock();
        let h = g.as_ref().ok_or("--netns is not on")?;
        Ok((h.net.node_ns(i), h.net.data_ip(i), h.net.mgmt_ip(i)))
    }

    /// The namespace of each host (for `ss -N`).
    pub fn namespace(i: usize) -> Option<String> {
        lock().as_ref().map(|h| h.net.node_ns(i))
    }

    /// Splits the data network: `side_b` hosts on one bridge, all others on the other.
    pub fn split(side_b: &[usize]) -> Res<()> {
        lock().as_ref().ok_or("--netns is not on")?.net.split(side_b)
    }

    /// One data network again.
    pub fn heal() -> Res<()> {
        lock().as_ref().ok_or("--netns is not on")?.net.heal()
    }

    /// Removes the network (at the end of the bench).
    pub fn disable() {
        *lock() = None;
    }
}

/// The fields of a `message` event the bench reads: the others are skipped unparsed (message events are
/// most of the traffic; this keeps the bench's own CPU use small).
#[derive(Deserialize)]
struct MessageEvent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    own: bool,
}

/// Reads a node's server-sent events, stamping each on arrival.
fn read_events(node: usize, mut events: EventStream, tx: mpsc::Sender<Ev>) {
    while let Some((event, data)) = events.next_raw() {
        let at = Instant::now();
        let kind = match event {
            "message" => {
                let Ok(m) = serde_json::from_str::<MessageEvent>(data) else { continue };
                Kind::Message { id: m.id.into_owned(), own: m.own }
            }
            _ => Event::parse(event, data).ok().and_then(Kind::of).unwrap_or_else(|| Kind::Other(event.to_string())),
        };
        if tx.send(Ev { node, at, kind }).is_err() {
            return;
        }
    }
}

impl Kind {
    /// The kind of an event the bench follows (`None` for the others).
    fn of(e: Event) -> Option<Kind> {
        let n = match e {
            Event::Lagged { skipped } => return Some(Kind::Lagged(skipped)),
            Event::Notice(n) => n,
        };
        Some(match n {
            Notice::Message(m) => Kind::Message { id: m.id, own: m.own },
            Notice::Delivery { seq, acked, members } => {
                Kind::Delivery { seq, acked: acked as u64, members: members as u64 }
            }
            Notice::Coordinator { term, id, .. } => Kind::Coordinator { term, id },
            Notice::ElectionStarted { term } => Kind::Election { term },
            Notice::MemberFailed { id, .. } => Kind::MemberFailed { id },
            Notice::Joined { id, .. } => Kind::Joined { id },
            Notice::Founded { id, .. } => Kind::Founded { id },
            _ => return None,
        })
    }
}

/// What the nodes' metrics say about a stretch of load, per message sent (all nodes together).
pub fn per_message(
    before: &std::collections::HashMap<String, f64>,
    after: &std::collections::HashMap<String, f64>,
    sent: usize,
) -> serde_json::Value {
    let d = |k: &str| metric_delta(before, after, k);
    let m = sent.max(1) as f64;
    let commits = d("chatmesh_store_commits_total");
    serde_json::json!({
        "store_commits": num(commits / m),
        "commit_ms_mean": num(d("chatmesh_store_commit_seconds_sum") * 1000.0 / commits),
        "frames_out": num(d("chatmesh_frames_out_total") / m),
        "bytes_out": num(d("chatmesh_bytes_out_total") / m),
        "deliveries": num(d("chatmesh_messages_delivered_total") / m),
        "retransmits": num(d("chatmesh_retransmits_total") / m),
    })
}

/// `after[k] - before[k]` (NaN when the node does not export the metric; 0 counted before if new).
pub fn metric_delta(
    before: &std::collections::HashMap<String, f64>,
    after: &std::collections::HashMap<String, f64>,
    k: &str,
) -> f64 {
    after.get(k).copied().unwrap_or(f64::NAN) - before.get(k).copied().unwrap_or(0.0)
}

/// Sends a message through `POST /messages`; returns its ID once the node stored it.
pub fn post(agent: &ureq::Agent, http: &str, text: &str) -> Res<String> {
    Ok(Client::new(agent, http).send(text)?.id)
}

/// `POST /messages/batch`: the IDs of the messages written, in order.
pub fn post_batch(agent: &ureq::Agent, http: &str, texts: &[String]) -> Res<Vec<String>> {
    Ok(Client::new(agent, http).send_batch(texts)?.into_iter().map(|m| m.id).collect())
}

pub fn count_of(s: &StatusView) -> u64 {
    s.history.count
}

/// The first node holds the second's history (equal counts and digests): a newcomer caught up.
pub fn caught_up(s: &[StatusView]) -> Res<()> {
    same_history(s).map_err(|_| format!("{} of {} messages", count_of(&s[0]), count_of(&s[1])))
}

// ---- /proc ----

/// Clock ticks per second of /proc/<pid>/stat.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU time (user + system) a process used so far, in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the state field (the first here).
    let u: f64 = f.get(11)?.parse().ok()?;
    let k: f64 = f.get(12)?.parse().ok()?;
    Some((u + k) / clock_ticks())
}

/// A field of /proc/<pid>/status in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Bytes sent and received so far on the established TCP connections of each process in `pids` (payload
/// bytes, from the kernel's tcp_info as `ss -tinp` shows it), leaving out connections to or from a port in
/// `skip` (the control API). Connections that closed since an earlier reading are not counted.
/// With `--netns`, `namespaces` names the network namespaces the processes run in (`ss -N` in each).
pub fn tcp_bytes(pids: &[u32], namespaces: &[String], skip: &[u16]) -> Res<std::collections::HashMap<u32, (u64, u64)>> {
    let mut text = String::new();
    let runs: Vec<Option<&String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.iter().map(Some).collect() };
    for ns in runs {
        let mut cmd = Command::new("ss");
        if let Some(ns) = ns {
            cmd.args(["-N", ns]);
        }
        let out = cmd
            .args(["-tinpH", "state", "established"])
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run ss (iproute2): {e}"))?;
        text += &String::from_utf8_lossy(&out.stdout);
    }
    let mut by_pid: std::collections::HashMap<u32, (u64, u64)> = pids.iter().map(|p| (*p, (0, 0))).collect();
    let mut owner: Option<u32> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            // "Recv-Q Send-Q Local:Port Peer:Port users:((\"name\",pid=N,fd=M))"
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = |a: &str| a.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
            let skipped = f.get(2).and_then(|a| port(a)).is_some_and(|p| skip.contains(&p))
                || f.get(3).and_then(|a| port(a)).is_some_and(|p| skip.contains(&p));
            owner = line
                .split("pid=")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse().ok())
                .filter(|p| !skipped && by_pid.contains_key(p));
            continue;
        }
        let Some(pid) = owner.take() else { continue };
        let field = |k: &str| {
            line.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        let e = by_pid.entry(pid).or_default();
        e.0 += field("bytes_sent:");
        e.1 += field("bytes_received:");
    }
    Ok(by_pid)
}

/// The sum of the CPU seconds of `pids`.
pub fn cpu_total(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| cpu_secs(*p)).sum()
}

/// CPU time of the whole machine, of the bench and of the node processes it reaped, from a starting point:
/// how much of the machine the measurement had to itself. On a virtual machine, also the time the hypervisor
/// gave this machine's CPUs to someone else (steal): a shared host slows every figure without any process
/// here using more CPU.
pub struct CpuMeter {
    at: Instant,
    machine_busy: f64,
    stolen: f64,
    bench: f64,
    reaped: f64,
}

/// CPU seconds of the whole machine since boot, all CPUs: `(busy, stolen)`, busy being user, nice, system,
/// irq and softirq time, and stolen the time a runnable CPU waited for the hypervisor.
fn machine_secs() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or("");
    let f: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let get = |k: usize| f.get(k).copied().unwrap_or(0.0);
    ((get(0) + get(1) + get(2) + get(5) + get(6)) / clock_ticks(), get(7) / clock_ticks())
}

/// CPU seconds of this process (user + system) and of its children that were reaped.
fn own_secs() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(close) = s.rfind(')') else { return (0.0, 0.0) };
    let f: Vec<f64> = s[close + 2..].split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    let get = |k: usize| f.get(k).copied().unwrap_or(0.0);
    // After the state field: utime, stime, cutime, cstime are the 12th to 15th.
    ((get(11) + get(12)) / clock_ticks(), (get(13) + get(14)) / clock_ticks())
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        let (bench, reaped) = own_secs();
        let (machine_busy, stolen) = machine_secs();
        CpuMeter { at: Instant::now(), machine_busy, stolen, bench, reaped }
    }

    /// Average cores used since the start: by the machine, by the bench itself, by nodes (`nodes_secs` of
    /// CPU for nodes still running, plus those reaped meanwhile), and by every other process; and the cores
    /// the hypervisor held back (steal).
    pub fn cores(&self, nodes_secs: f64) -> Value {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        let (bench, reaped) = own_secs();
        let (busy, stolen) = machine_secs();
        let machine = (busy - self.machine_busy) / wall;
        let stolen = (stolen - self.stolen) / wall;
        let bench = (bench - self.bench) / wall;
        let nodes = (reaped - self.reaped + nodes_secs) / wall;
        let r = |x: f64| (x * 100.0).round() / 100.0;
        serde_json::json!({
            "machine_busy_cores": r(machine),
            "bench_cores": r(bench),
            "nodes_cores": r(nodes),
            "other_processes_cores": r((machine - bench - nodes).max(0.0)),
            "stolen_cores": r(stolen),
        })
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut f = s.split_whitespace().map(|x| x.parse().unwrap_or(f64::NAN));
    [f.next().unwrap_or(f64::NAN), f.next().unwrap_or(f64::NAN), f.next().unwrap_or(f64::NAN)]
}
