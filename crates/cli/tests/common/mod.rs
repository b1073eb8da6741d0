//! Real node processes on loopback for the integration tests: each test gets its own mesh name and group
//! port, so tests run in parallel without hearing each other; every process is killed when the `Mesh` is
//! dropped (also when a test fails), and by the kernel if the test process dies.

#![allow(dead_code)]

pub use chatmesh_cluster::process::die_with_parent;
use serde_json::Value;
use std::io::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_chatmesh");

pub struct NodeProc {
    /// The node's data directory name, and its `--name` unless `flag_name` says otherwise.
    pub name: String,
    pub flag_name: Option<String>,
    pub child: Option<Child>,
    /// The node's stdin: lines typed into its JSON UI (`type_line`).
    pub stdin: Option<ChildStdin>,
    pub http: Arc<Mutex<Option<String>>>,
    /// Every JSON line the node printed.
    pub lines: Arc<Mutex<Vec<Value>>>,
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
        let data_dir = self.dir.path().join(dir);
        let node = NodeProc {
            name: dir.into(),
            flag_name: Some(name.into()).filter(|n| n != dir),
            child: None,
            stdin: None,
            http: Arc::new(Mutex::new(None)),
            lines: Arc::new(Mutex::new(Vec::new())),
            data_dir,
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
        // A test may give its own --group (a node that must not hear the mesh's multicast).
        let group = match self.nodes[i].extra.iter().position(|a| a == "--group") {
            Some(k) => self.nodes[i].extra.get(k + 1).cloned().unwrap_or_default(),
            None => self.group.clone(),
        };
        let mesh = self.mesh.clone();
        let logs = self.dir.path().join("logs");
        let n = &mut self.nodes[i];
        let mut cmd = Command::new(BIN);
        let name = n.flag_name.as_ref().unwrap_or(&n.name);
        cmd.args(["--ui", "json", "--name", name, "--mesh", &mesh, "--group", &group])
            .args(["--iface", "127.0.0.1", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log", "debug"])
            .arg("--data-dir")
            .arg(&n.data_dir)
            .arg("--log-dir")
            .arg(&logs)
            .args(extra_without_group(&n.extra))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("CHATMESH_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &n.env {
            cmd.env(k, v);
        }
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start chatmesh");
        let stdout = child.stdout.take().unwrap();
        n.stdin = child.stdin.take();
        let (http, lines) = (n.http.clone(), n.lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                if v["type"] == "ready" {
                    *http.lock().unwrap() = v["http"].as_str().map(String::from);
                }
                lines.lock().unwrap().push(v);
            }
        });
        n.child = Some(child);
    }

    /// Types a line into node `i`'s JSON UI (a message or a command).
    pub fn type_line(&mut self, i: usize, line: &str) {
        let stdin = self.nodes[i].stdin.as_mut().expect("the node runs");
        writeln!(stdin, "{line}").and_then(|_| stdin.flush()).expect("write to the node's stdin");
    }

    /// The JSON lines node `i` printed so far.
    pub fn lines(&self, i: usize) -> Vec<Value> {
        self.nodes[i].lines.lock().unwrap().clone()
    }

    pub fn http(&self, i: usize) -> String {
        let limit = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(h) = self.nodes[i].http.lock().unwrap().clone() {
                return h;
            }
            assert!(Instant::now() < limit, "{} never reported its API address", self.nodes[i].name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn status(&self, i: usize) -> Result<Value, String> {
        let url = format!("http://{}/status", self.http(i));
        self.agent.get(&url).call().map_err(|e| e.to_string())?.into_json().map_err(|e| e.to_string())
    }

    pub fn history(&self, i: usize) -> Vec<Value> {
        let url = format!("http://{}/history", self.http(i));
        self.agent.get(&url).call().expect("history").into_json().expect("history json")
    }

    /// Sends through the API; returns the stored message's ID.
    pub fn send(&self, i: usize, text: &str) -> String {
        let url = format!("http://{}/messages", self.http(i));
        let m: Value = self
            .agent
            .post(&url)
            .send_json(serde_json::json!({ "text": text }))
            .unwrap_or_else(|e| panic!("{} could not send: {e}", self.nodes[i].name))
            .into_json()
            .unwrap();
        m["id"].as_str().unwrap().to_string()
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].child.is_some()).collect()
    }

    pub fn kill(&mut self, i: usize) {
        self.nodes[i].stdin = None;
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Polls until `check` holds over the statuses of `nodes` (or panics after `limit`).
    pub fn wait_for(
        &self,
        what: &str,
        nodes: &[usize],
        limit: Duration,
        check: impl Fn(&[Value]) -> Result<(), String>,
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
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn extra_without_group(extra: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in extra {
        if skip {
            skip = false;
        } else if a == "--group" {
            skip = true;
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// Every status shows one mesh of `n` alive members with unique IDs and one agreed coordinator.
pub fn one_mesh(s: &[Value], n: usize) -> Result<(), String> {
    let mut coordinators = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    for x in s {
        let name = x["name"].as_str().unwrap_or("?");
        let alive = x["members"].as_array().map_or(0, |m| m.iter().filter(|m| m["state"] == "alive").count());
        if alive != n {
            return Err(format!("{name} ({}) sees {alive} alive members", x["role"]));
        }
        coordinators.insert(x["coordinator"]["key"].as_str().unwrap_or("").to_string());
        ids.insert(x["id"].as_u64().unwrap_or(0));
    }
    if coordinators.len() != 1 {
        return Err(format!("{} different coordinators", coordinators.len()));
    }
    if ids.len() != s.len() {
        return Err("IDs are not unique".into());
    }
    Ok(())
}

pub fn same_digest(s: &[Value]) -> Result<(), String> {
    let d: std::collections::BTreeSet<&str> = s.iter().map(|x| x["history"]["digest"].as_str().unwrap_or("")).collect();
    if d.len() == 1 {
        Ok(())
    } else {
        Err(format!("{} different digests", d.len()))
    }
}

pub fn run_cli(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("CHATMESH_") {
            cmd.env_remove(k);
        }
    }
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
