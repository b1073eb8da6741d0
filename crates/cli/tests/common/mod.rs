//! Real node processes on loopback for the integration tests: each test gets its own mesh name and group
//! port, so tests run in parallel without hearing each other; every process is killed when the `Mesh` is
//! dropped (also when a test fails), and by the kernel if the test process dies.

#![allow(dead_code)]

#[allow(unused_imports)] // not every test uses each
pub use chatmesh_harness::check::{one_mesh, same_digest};
pub use chatmesh_harness::die_with_parent;
use chatmesh_harness::process::clear_chatmesh_env;
use chatmesh_harness::{Client, MessageView, NodeArgs, NodeProcess, StatusView, Stdout};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_chatmesh");

/// How long a node may take to print its `ready` line.
const READY_LIMIT: Duration = Duration::from_secs(20);

pub struct NodeProc {
    /// The node's data directory name, and its `--name` unless `flag_name` says otherwise.
    pub name: String,
    pub flag_name: Option<String>,
    pub process: Option<NodeProcess>,
    pub data_dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub extra: Vec<String>,
}

pub struct Mesh {
    pub dir: tempfile::TempDir,
    pub mesh: String,
    pub group: String,
    pub nodes: Vec<NodeProc>,
    agent: ureq::Agent,
}

/// A group port of the test's own, from its name and this process's ID.
pub fn port_for(test: &str) -> u16 {
    let mut h: u32 = std::process::id().wrapping_mul(2_654_435_761);
    for b in test.bytes() {
        h = h.wrapping_mul(31).wrapping_add(b as u32);
    }
    20000 + (h % 40000) as u16
}

impl Mesh {
    pub fn new(test: &str) -> Mesh {
        Mesh {
            dir: tempfile::tempdir().expect("temp dir"),
            mesh: format!("{test}-{}", std::process::id()),
            group: format!("239.255.77.77:{}", port_for(test)),
            nodes: Vec::new(),
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(3)).build(),
        }
    }

    /// Starts a node named `name` (its data directory is named after it: starting the same name again
    /// restarts it from its data). `env` and `extra` args are added to the command line.
    pub fn start(&mut self, name: &str, env: &[(&str, &str)], extra: &[&str]) -> usize {
        self.start_as(name, name, env, extra)
    }

    /// Starts a node with data directory `dir` (restarting it if `dir` was started before) and `--name name`.
    pub fn start_as(&mut self, dir: &str, name: &str, env: &[(&str, &str)], extra: &[&str]) -> usize {
        let node = NodeProc {
            name: dir.into(),
            flag_name: Some(name.into()).filter(|n| n != dir),
            process: None,
            data_dir: self.dir.path().join(dir),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        let i = match self.nodes.iter().position(|n| n.name == dir) {
            Some(i) => {
                self.nodes[i] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.spawn(i);
        i
    }

    fn spawn(&mut self, i: usize) {
        let n = &self.nodes[i];
        // A test may give its own --group (a node that must not hear the mesh's multicast).
        let (group, extra) = split_group(&n.extra);
        let name = n.flag_name.as_ref().unwrap_or(&n.name);
        let mut args = NodeArgs::loopback(
            Path::new(BIN),
            name,
            &self.mesh,
            group.as_deref().unwrap_or(&self.group),
            &n.data_dir,
            &self.logs(),
        );
        args.extra = extra;
        args.env.clone_from(&n.env);
        args.stdin = true;
        args.stdout = Stdout::Lines { keep: true, forward: None };
        self.nodes[i].process = Some(NodeProcess::spawn(args).expect("start chatmesh"));
    }

    fn process(&self, i: usize) -> &NodeProcess {
        self.nodes[i].process.as_ref().unwrap_or_else(|| panic!("{} is not running", self.nodes[i].name))
    }

    /// Types a line into node `i`'s JSON UI (a message or a command).
    pub fn type_line(&mut self, i: usize, line: &str) {
        let p = self.nodes[i].process.as_mut().expect("the node runs");
        p.type_line(line).expect("write to the node's stdin");
    }

    /// The JSON lines node `i` printed so far.
    pub fn lines(&self, i: usize) -> Vec<Value> {
        self.nodes[i].process.as_ref().map(|p| p.lines()).unwrap_or_default()
    }

    pub fn http(&self, i: usize) -> String {
        let ready = self.process(i).ready(READY_LIMIT);
        let ready = ready.unwrap_or_else(|e| panic!("{} never reported its API address: {e}", self.nodes[i].name));
        ready.http.expect("the node serves its API")
    }

    /// Node `i`'s control API.
    pub fn client(&self, i: usize) -> Client {
        Client::new(&self.agent, &self.http(i))
    }

    pub fn status(&self, i: usize) -> Result<StatusView, String> {
        Ok(self.client(i).status()?)
    }

    pub fn history(&self, i: usize) -> Vec<MessageView> {
        self.client(i).history().expect("history")
    }

    /// Sends through the API; returns the stored message's ID.
    pub fn send(&self, i: usize, text: &str) -> String {
        let m = self.client(i).send(text);
        m.unwrap_or_else(|e| panic!("{} could not send: {e}", self.nodes[i].name)).id
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].process.is_some()).collect()
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.kill();
        }
    }

    /// Polls until `check` holds over the statuses of `nodes` (or panics after `limit`).
    pub fn wait_for(
        &self,
        what: &str,
        nodes: &[usize],
        limit: Duration,
        check: impl Fn(&[StatusView]) -> Result<(), String>,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let r = nodes.iter().map(|i| self.status(*i)).collect::<Result<Vec<_>, _>>().and_then(|s| check(&s));
            match r {
                Ok(()) => return start.elapsed(),
                Err(e) if start.elapsed() > limit => panic!("{what}: not within {limit:?}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(25)),
            }
        }
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
}

impl Drop for Mesh {
    /// Every node killed before the temporary directory goes (also when a test fails).
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut p) = n.process.take() {
                p.kill();
            }
        }
    }
}

/// The `--group` among a test's extra arguments, and the other arguments.
fn split_group(extra: &[String]) -> (Option<String>, Vec<String>) {
    let mut group = None;
    let mut out = Vec::new();
    let mut args = extra.iter();
    while let Some(a) = args.next() {
        if a == "--group" {
            group = Some(args.next().cloned().unwrap_or_default());
        } else {
            out.push(a.clone());
        }
    }
    (group, out)
}

pub fn run_cli(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    clear_chatmesh_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().expect("start chatmesh");
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            return (
                None,
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
