//! One `chatmesh` node process: its command line, its stdout (JSON lines, `--ui json`), its signals.

use chatmesh_node::events::Notice;
use serde::Deserialize;
use serde_json::Value;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Makes the kernel kill the child (SIGKILL) when the thread that started it dies, so that no node outlives
/// a harness that crashed or was killed. Linux only (`PR_SET_PDEATHSIG`); elsewhere it does nothing.
///
/// The signal follows the death of the spawning *thread*, not only of the process: spawn from a thread that
/// lives as long as the child should.
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe calls
        // are allowed; prctl is one, and the closure allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Leaves the harness's own `CHATMESH_*` settings out of a child's environment: a node gets only what its
/// command line (and `NodeArgs::env`) gives it.
pub fn clear_chatmesh_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("CHATMESH_")) {
            cmd.env_remove(k);
        }
    }
}

/// Where the `chatmesh` binary is: `$CHATMESH_BIN`, else next to the running test or tool (cargo puts test
/// executables in `target/<profile>/deps/` and binaries in `target/<profile>/`).
pub fn chatmesh_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CHATMESH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join("chatmesh");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err("the chatmesh binary was not found next to this executable: run `cargo build --release` first, or set \
         CHATMESH_BIN"
        .into())
}

/// What becomes of a node's stdout.
pub enum Stdout {
    /// Thrown away.
    Null,
    /// Appended to a file.
    File(PathBuf),
    /// Read as JSON lines: the `ready` line and the node's ID (`joined`/`founded`) are kept (`NodeProcess::ready`,
    /// `NodeProcess::id`); with `keep`, every line too (`NodeProcess::lines`); with `forward`, every line is
    /// sent on with the given index. Without either, lines after the ID are read unparsed (they must be read,
    /// or the node would block on a full pipe; parsing them would cost a bench CPU).
    Lines { keep: bool, forward: Option<(usize, Sender<(usize, Value)>)> },
}

/// A node's command line: `chatmesh --ui json --name .. --mesh .. --group .. --iface .. --listen .. --http ..
/// --log .. --data-dir .. --log-dir .. <extra>`.
pub struct NodeArgs {
    pub bin: PathBuf,
    /// A command the node runs under (`ip netns exec <ns>`, which execs the node in place: signals reach it).
    pub wrapper: Vec<String>,
    pub name: String,
    pub mesh: String,
    pub group: String,
    pub iface: String,
    pub listen: String,
    pub http: String,
    pub log: String,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    pub extra: Vec<String>,
    /// Added to the environment, which otherwise holds no `CHATMESH_*` variable.
    pub env: Vec<(String, String)>,
    /// A pipe to the node's stdin (lines typed into its JSON UI).
    pub stdin: bool,
    pub stdout: Stdout,
}

impl NodeArgs {
    /// A node on loopback only (multicast included: nothing leaves the machine), its ports picked by the
    /// kernel, logging at `debug`, its stdout read as lines.
    pub fn loopback(bin: &Path, name: &str, mesh: &str, group: &str, data_dir: &Path, log_dir: &Path) -> NodeArgs {
        NodeArgs {
            bin: bin.to_path_buf(),
            wrapper: Vec::new(),
            name: name.into(),
            mesh: mesh.into(),
            group: group.into(),
            iface: "127.0.0.1".into(),
            listen: "127.0.0.1:0".into(),
            http: "127.0.0.1:0".into(),
            log: "debug".into(),
            data_dir: data_dir.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            extra: Vec::new(),
            env: Vec::new(),
            stdin: false,
            stdout: Stdout::Lines { keep: false, forward: None },
        }
    }

    fn command(&self) -> Result<Command, String> {
        let mut cmd = match self.wrapper.split_first() {
            None => Command::new(&self.bin),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&self.bin);
                cmd
            }
        };
        let data_dir: OsString = self.data_dir.clone().into();
        let log_dir: OsString = self.log_dir.clone().into();
        cmd.args(["--ui", "json", "--name", &self.name, "--mesh", &self.mesh, "--group", &self.group])
            .args(["--iface", &self.iface, "--listen", &self.listen, "--http", &self.http, "--log", &self.log])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--log-dir")
            .arg(log_dir)
            .args(&self.extra)
            .stdin(if self.stdin { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::null());
        match &self.stdout {
            Stdout::Null => cmd.stdout(Stdio::null()),
            Stdout::Lines { .. } => cmd.stdout(Stdio::piped()),
            Stdout::File(path) => {
                let f = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                cmd.stdout(f)
            }
        };
        clear_chatmesh_env(&mut cmd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        die_with_parent(&mut cmd);
        Ok(cmd)
    }
}

/// The `ready` line a node prints first in `--ui json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Ready {
    pub name: String,
    pub key: String,
    /// Where it listens for links.
    pub addr: String,
    /// Its control API (`host:port`), if it serves one.
    pub http: Option<String>,
    pub data_dir: String,
    pub log_dir: String,
}

/// A stdout line, typed: the `ready` line, an event (`Notice`), or another line (a command's `reply`, an
/// `error`, `info`, `lagged`).
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    Ready(Ready),
    Notice(Notice),
    Other,
}

impl Line {
    pub fn of(v: &Value) -> Line {
        if let Ok(Startup::Ready(r)) = Startup::deserialize(v) {
            return Line::Ready(r);
        }
        Notice::deserialize(v).map_or(Line::Other, Line::Notice)
    }
}

/// The stdout lines that tell a harness where a node stands.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Startup {
    Ready(Ready),
    Joined { id: u32 },
    Founded { id: u32 },
}

/// What the stdout reader learned, shared with the harness.
#[derive(Default)]
struct Seen {
    ready: Option<Ready>,
    /// When the reader read the `joined` or `founded` line, and the ID in it.
    id: Option<(Instant, u32)>,
    lines: Vec<Value>,
    /// The node closed its stdout (it exited).
    closed: bool,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Seen>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `get` finds something, the node's stdout closes, `limit` passes or `stop` says so.
    fn wait<T>(&self, limit: Duration, stop: &dyn Fn() -> bool, get: impl Fn(&Seen) -> Option<T>) -> Option<T> {
        let until = Instant::now() + limit;
        let mut seen = self.lock();
        loop {
            if let Some(x) = get(&seen) {
                return Some(x);
            }
            let left = until.checked_duration_since(Instant::now())?;
            if seen.closed || stop() {
                return None;
            }
            seen = self
                .changed
                .wait_timeout(seen, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// A running (or stopped, or ended) node process. Dropping it kills the node.
pub struct NodeProcess {
    pub name: String,
    child: Option<Child>,
    pid: u32,
    stdin: Option<ChildStdin>,
    paused: bool,
    shared: Arc<Shared>,
    /// When `spawn` was called.
    pub spawned_at: Instant,
}

impl NodeProcess {
    /// Starts the node; returns at once (`ready` waits for it).
    pub fn spawn(args: NodeArgs) -> Result<NodeProcess, String> {
        let mut cmd = args.command()?;
        let spawned_at = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", args.bin.display()))?;
        let shared = Arc::new(Shared::default());
        if let Stdout::Lines { keep, forward } = args.stdout {
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let shared = shared.clone();
            std::thread::spawn(move || read_lines(stdout, &shared, keep, forward));
        }
        Ok(NodeProcess {
            name: args.name,
            pid: child.id(),
            stdin: child.stdin.take(),
            child: Some(child),
            paused: false,
            shared,
            spawned_at,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Not killed, terminated or reaped by the harness (it may still have exited by itself).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process has ended (by itself: a `/quit`, a crash); reaps it.
    pub fn has_exited(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The `ready` line, once printed (`Stdout::Lines` only).
    pub fn ready_now(&self) -> Option<Ready> {
        self.shared.lock().ready.clone()
    }

    /// Waits for the `ready` line: fails after `limit`, or at once if the node exits first.
    pub fn ready(&self, limit: Duration) -> Result<Ready, String> {
        self.shared
            .wait(limit, &|| false, |s| s.ready.clone())
            .ok_or_else(|| format!("{} did not start (no ready line within {limit:?})", self.name))
    }

    /// Waits for the node's ID (its `joined` or `founded` line) and when it was read; `stop` ends the wait
    /// early (an interrupted harness).
    pub fn id(&self, limit: Duration, stop: &dyn Fn() -> bool) -> Result<(Instant, u32), String> {
        self.shared.wait(limit, stop, |s| s.id).ok_or_else(|| format!("{} got no ID within {limit:?}", self.name))
    }

    /// Every JSON line printed so far (`Stdout::Lines { keep: true, .. }`).
    pub fn lines(&self) -> Vec<Value> {
        self.shared.lock().lines.clone()
    }

    /// Writes a line (a message or a /command) to the node's stdin (`NodeArgs::stdin`).
    pub fn type_line(&mut self, line: &str) -> Result<(), String> {
        let name = &self.name;
        let stdin = self.stdin.as_mut().ok_or_else(|| format!("{name} takes no stdin"))?;
        stdin.write_all(format!("{line}\n").as_bytes()).and_then(|_| stdin.flush()).map_err(|e| format!("{name}: {e}"))
    }

    /// Sends `sig` to the node (nothing once it was killed or reaped).
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.child.is_some() {
            // SAFETY: kill(2) on our own child, which has not been reaped (so its pid is still its own).
            unsafe {
                libc::kill(self.pid as libc::pid_t, sig);
            }
            match sig {
                libc::SIGSTOP => self.paused = true,
                libc::SIGCONT => self.paused = false,
                _ => {}
            }
        }
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    /// SIGKILL (after SIGCONT if stopped), and reaps the process.
    pub fn kill(&mut self) {
        if self.paused {
            self.resume();
        }
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (the node leaves the mesh gracefully), then SIGKILL if it has not exited after `limit`.
    pub fn terminate(&mut self, limit: Duration) {
        terminate_all([self], limit);
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGTERM to every node at once, then waits for them all until `limit`, and SIGKILLs the rest.
pub fn terminate_all<'a>(nodes: impl IntoIterator<Item = &'a mut NodeProcess>, limit: Duration) {
    let mut nodes: Vec<&mut NodeProcess> = nodes.into_iter().filter(|n| n.is_running()).collect();
    for n in &mut nodes {
        n.stdin = None;
        if n.paused {
            n.resume();
        }
        n.signal(libc::SIGTERM);
    }
    let until = Instant::now() + limit;
    for n in nodes {
        let Some(mut c) = n.child.take() else { continue };
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
            }
        }
    }
}

/// Reads a node's stdout (see `Stdout::Lines`).
fn read_lines(stdout: impl Read, shared: &Shared, keep: bool, forward: Option<(usize, Sender<(usize, Value)>)>) {
    let mut r = BufReader::with_capacity(1 << 16, stdout);
    let mut line = String::new();
    let every_line = keep || forward.is_some();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let at = Instant::now();
        if !every_line && shared.lock().id.is_some() {
            break;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        let startup = serde_json::from_str::<Startup>(&line).ok();
        if let Some((i, tx)) = &forward {
            let _ = tx.send((*i, v.clone()));
        }
        let mut seen = shared.lock();
        match startup {
            Some(Startup::Ready(r)) => seen.ready = Some(r),
            Some(Startup::Joined { id } | Startup::Founded { id }) => seen.id = Some((at, id)),
            None => {}
        }
        if keep {
            seen.lines.push(v);
        }
        drop(seen);
        shared.changed.notify_all();
    }
    // Unparsed to the end: the node must never block on its stdout.
    let mut buf = vec![0u8; 1 << 16];
    while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
    shared.lock().closed = true;
    shared.changed.notify_all();
}
