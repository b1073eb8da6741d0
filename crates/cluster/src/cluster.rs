//! Real `chatmesh` nodes, one per network namespace, driven through their control APIs.

use crate::netns::Net;
use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The port of every node's control API (on its management address).
pub const API_PORT: u16 = 8080;
/// The port every node listens on for links (on its data address).
pub const LINK_PORT: u16 = 7000;

/// Where the `chatmesh` binary is: `$CHATMESH_BIN`, else next to the running test or tool (cargo puts test
/// executables in `target/<profile>/deps/` and binaries in `target/<profile>/`).
pub fn chatmesh_bin() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("CHATMESH_BIN") {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Running,
    Killed,
    Stopped,
}

pub struct Node {
    pub name: String,
    pub child: Option<Child>,
    pub state: NodeState,
}

pub struct Cluster {
    pub net: Net,
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub nodes: Vec<Node>,
    pub mesh: String,
    agent: ureq::Agent,
}

impl Cluster {
    /// Creates the network and starts `n` nodes (a few hundred milliseconds apart).
    pub fn start(n: usize, dir: &Path) -> Result<Cluster, String> {
        let bin = chatmesh_bin()?;
        let net = Net::create(n)?;
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
        let mut c = Cluster {
            net,
            dir: dir.to_path_buf(),
            bin,
            nodes: (0..n)
                .map(|i| Node { name: format!("n{}", i + 1), child: None, state: NodeState::Killed })
                .collect(),
            mesh: "chaos".into(),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_millis(500))
                .timeout(Duration::from_secs(2))
                .build(),
        };
        for i in 0..n {
            c.spawn(i)?;
            std::thread::sleep(Duration::from_millis(150));
        }
        Ok(c)
    }

    /// Starts node `i` (again, after a kill: same data directory).
    pub fn spawn(&mut self, i: usize) -> Result<(), String> {
        let name = self.nodes[i].name.clone();
        let out = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.out")))
            .map_err(|e| e.to_string())?;
        let (data, mgmt) = (self.net.data_ip(i), self.net.mgmt_ip(i));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.net.node_ns(i)])
            .arg(&self.bin)
            .args(["--ui", "json", "--name", &name, "--mesh", &self.mesh, "--group", "239.255.77.77:7777"])
            .args(["--iface", &data, "--listen", &format!("{data}:{LINK_PORT}")])
            .args(["--http", &format!("{mgmt}:{API_PORT}"), "--log", "debug"])
            .arg("--data-dir")
            .arg(self.dir.join(&name))
            .arg("--log-dir")
            .arg(self.dir.join("logs"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("CHATMESH_") && k != "CHATMESH_BIN" {
                cmd.env_remove(k);
            }
        }
        crate::process::die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        self.nodes[i].child = Some(child);
        self.nodes[i].state = NodeState::Running;
        Ok(())
    }

    pub fn api(&self, i: usize) -> String {
        format!("http://{}:{API_PORT}", self.net.mgmt_ip(i))
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    pub fn status(&self, i: usize) -> Result<Value, String> {
        let r = self.agent.get(&format!("{}/status", self.api(i))).call().map_err(|e| e.to_string())?;
        r.into_json().map_err(|e| e.to_string())
    }

    pub fn history(&self, i: usize) -> Result<Vec<Value>, String> {
        let r = self
            .agent
            .get(&format!("{}/history", self.api(i)))
            .timeout(Duration::from_secs(30))
            .call()
            .map_err(|e| e.to_string())?;
        r.into_json().map_err(|e| e.to_string())
    }

    fn signal(&mut self, i: usize, sig: libc::c_int) {
        if let Some(c) = &self.nodes[i].child {
            // SAFETY: kill(2) on our own child process (`ip netns exec` execs the node in place).
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    pub fn kill(&mut self, i: usize) {
        if self.nodes[i].state == NodeState::Stopped {
            self.signal(i, libc::SIGCONT);
        }
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].state = NodeState::Killed;
    }

    pub fn pause(&mut self, i: usize) {
        if self.nodes[i].state == NodeState::Running {
            self.signal(i, libc::SIGSTOP);
            self.nodes[i].state = NodeState::Stopped;
        }
    }

    pub fn resume(&mut self, i: usize) {
        if self.nodes[i].state == NodeState::Stopped {
            self.signal(i, libc::SIGCONT);
            self.nodes[i].state = NodeState::Running;
        }
    }

    /// Every node running and reachable: killed ones restarted, stopped ones continued, the network healed.
    pub fn restore(&mut self) -> Result<(), String> {
        self.net.heal()?;
        for i in 0..self.nodes.len() {
            match self.nodes[i].state {
                NodeState::Killed => self.spawn(i)?,
                NodeState::Stopped => self.resume(i),
                NodeState::Running => {}
            }
        }
        Ok(())
    }

    /// The node the most nodes name as coordinator, if any.
    pub fn coordinator(&self) -> Option<usize> {
        let mut votes = std::collections::BTreeMap::new();
        for i in 0..self.nodes.len() {
            if self.nodes[i].state != NodeState::Running {
                continue;
            }
            if let Ok(s) = self.status(i) {
                if let Some(id) = s["coordinator"]["key"].as_str() {
                    *votes.entry(id.to_string()).or_insert(0) += 1;
                }
            }
        }
        let (key, _) = votes.into_iter().max_by_key(|(_, v)| *v)?;
        (0..self.nodes.len()).find(|i| self.status(*i).is_ok_and(|s| s["key"].as_str() == Some(key.as_str())))
    }

    /// Waits until `check` holds over every node's status; returns the time it took.
    pub fn wait_for(
        &self,
        limit: Duration,
        check: impl Fn(&[Value]) -> Result<(), String>,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let r =
                (0..self.nodes.len()).map(|i| self.status(i)).collect::<Result<Vec<_>, _>>().and_then(|s| check(&s));
            match r {
                Ok(()) => return Ok(start.elapsed()),
                Err(e) if start.elapsed() > limit => return Err(format!("not within {limit:?}: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
