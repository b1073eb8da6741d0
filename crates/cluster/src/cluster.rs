//! Real `chatmesh` nodes, one per network namespace, driven through their control APIs.

use crate::netns::Net;
pub use chatmesh_harness::chatmesh_bin;
use chatmesh_harness::{ApiError, Client, MessageView, NodeArgs, NodeProcess, StatusView, Stdout};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The port of every node's control API (on its management address).
pub const API_PORT: u16 = 8080;
/// The port every node listens on for links (on its data address).
pub const LINK_PORT: u16 = 7000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Running,
    Killed,
    Stopped,
}

pub struct Node {
    pub name: String,
    pub process: Option<NodeProcess>,
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
                .map(|i| Node { name: format!("n{}", i + 1), process: None, state: NodeState::Killed })
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
        let (data, mgmt) = (self.net.data_ip(i), self.net.mgmt_ip(i));
        let mut args = NodeArgs::loopback(
            &self.bin,
            &name,
            &self.mesh,
            "239.255.77.77:7777",
            &self.dir.join(&name),
            &self.dir.join("logs"),
        );
        args.wrapper = vec!["ip".into(), "netns".into(), "exec".into(), self.net.node_ns(i)];
        args.listen = format!("{data}:{LINK_PORT}");
        args.http = format!("{mgmt}:{API_PORT}");
        args.iface = data;
        args.stdout = Stdout::File(self.dir.join(format!("{name}.out")));
        self.nodes[i].process = Some(NodeProcess::spawn(args)?);
        self.nodes[i].state = NodeState::Running;
        Ok(())
    }

    /// Node `i`'s control API (`http://host:port`).
    pub fn api(&self, i: usize) -> String {
        self.client(i).url("")
    }

    /// Node `i`'s control API address (`host:port`, on the management network).
    pub fn api_addr(&self, i: usize) -> String {
        format!("{}:{API_PORT}", self.net.mgmt_ip(i))
    }

    pub fn client(&self, i: usize) -> Client {
        Client::new(&self.agent, &self.api_addr(i))
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    pub fn status(&self, i: usize) -> Result<StatusView, ApiError> {
        self.client(i).status()
    }

    pub fn history(&self, i: usize) -> Result<Vec<MessageView>, ApiError> {
        self.client(i).history_within(Duration::from_secs(30))
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.kill();
        }
        self.nodes[i].state = NodeState::Killed;
    }

    pub fn pause(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let (Some(p), NodeState::Running) = (&mut node.process, node.state) {
            p.pause();
            node.state = NodeState::Stopped;
        }
    }

    pub fn resume(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let (Some(p), NodeState::Stopped) = (&mut node.process, node.state) {
            p.resume();
            node.state = NodeState::Running;
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
            if let Some(c) = self.status(i).ok().and_then(|s| s.coordinator) {
                *votes.entry(c.key).or_insert(0) += 1;
            }
        }
        let (key, _) = votes.into_iter().max_by_key(|(_, v)| *v)?;
        (0..self.nodes.len()).find(|i| self.status(*i).is_ok_and(|s| s.key == key))
    }

    /// Waits until `check` holds over every node's status; returns the time it took.
    pub fn wait_for(
        &self,
        limit: Duration,
        check: impl Fn(&[StatusView]) -> Result<(), String>,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let r = (0..self.nodes.len())
                .map(|i| self.status(i).map_err(String::from))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|s| check(&s));
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
