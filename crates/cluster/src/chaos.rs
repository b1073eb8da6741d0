//! A chaos run: nodes in namespaces, a client workload, a nemesis schedule, then heal, quiet and check.

use crate::checker::{self, Report};
use crate::cluster::{Cluster, NodeState};
use crate::workload::Workload;
use chatmesh_harness::{check, StatusView};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ChaosOptions {
    pub nodes: usize,
    /// How long faults are injected while the clients send.
    pub duration: Duration,
    pub seed: u64,
    /// Client messages per second, all clients together.
    pub rate: f64,
    pub clients: usize,
    /// Where the operations, node output, logs and the summary go.
    pub dir: PathBuf,
    /// How long the mesh may take to converge after the faults stop.
    pub converge_limit: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    pub at_ms: u64,
    pub what: String,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub nodes: usize,
    pub seed: u64,
    pub duration_s: f64,
    pub faults: Vec<Fault>,
    pub faults_by_kind: std::collections::BTreeMap<String, usize>,
    /// From the last heal (every node running, the network whole) to equal digests, one coordinator and no
    /// pending acknowledgement, seen by polling every node (the clients stop sending up to 2 s after it).
    pub converge_ms: Option<u64>,
    pub report: Report,
}

impl Summary {
    pub fn passed(&self) -> bool {
        self.converge_ms.is_some() && self.report.violations() == 0
    }

    pub fn print(&self) {
        let r = &self.report;
        println!("chaos run: {} nodes, seed {}, {:.0} s of faults", self.nodes, self.seed, self.duration_s);
        let kinds: Vec<String> = self.faults_by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("  faults injected: {} ({})", self.faults.len(), kinds.join(", "));
        println!(
            "  operations: {} (ok {}, failed {}, unknown {} of which {} stored)",
            r.operations, r.ok, r.failed, r.unknown, r.unknown_stored
        );
        println!("  messages held per node: {}", r.messages_per_node);
        match self.converge_ms {
            Some(ms) => println!("  converged {:.2} s after the faults stopped", ms as f64 / 1000.0),
            None => println!("  DID NOT CONVERGE"),
        }
        println!(
            "  lost {}, unexpected {}, duplicated {}, order {}, divergent {}, coordinator {}, ids {}",
            r.lost.len(),
            r.unexpected.len(),
            r.duplicated.len(),
            r.order.len(),
            r.divergent.len(),
            r.coordinator.len(),
            r.ids.len()
        );
        for v in r.lost.iter().chain(&r.unexpected).chain(&r.duplicated).chain(&r.order).chain(&r.divergent) {
            println!("    {v}");
        }
        for v in r.coordinator.iter().chain(&r.ids).take(20) {
            println!("    {v}");
        }
        println!("  {}", if self.passed() { "PASSED" } else { "FAILED" });
    }
}

/// The faults a nemesis step can inject.
#[derive(Clone, Copy, Debug)]
enum Kind {
    KillRandom,
    KillCoordinator,
    PauseRandom,
    PauseCoordinator,
    IsolateRandom,
    IsolateCoordinator,
    Split,
}

const KINDS: [Kind; 7] = [
    Kind::KillRandom,
    Kind::KillCoordinator,
    Kind::PauseRandom,
    Kind::PauseCoordinator,
    Kind::IsolateRandom,
    Kind::IsolateCoordinator,
    Kind::Split,
];

fn converged(s: &[StatusView], n: usize) -> Result<(), String> {
    let mut coordinators = std::collections::BTreeSet::new();
    for x in s {
        let alive = check::alive(x);
        if alive != n {
            return Err(format!("{} sees {alive} alive", x.name));
        }
        if x.pending_acks != 0 {
            return Err(format!("{} has {} pending acks", x.name, x.pending_acks));
        }
        coordinators.insert(x.coordinator.as_ref().map(|c| c.key.as_str()));
    }
    if coordinators.len() != 1 {
        return Err(format!("{} coordinators", coordinators.len()));
    }
    check::same_digest(s)
}

pub fn run(opts: &ChaosOptions) -> Result<Summary, String> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| format!("{}: {e}", opts.dir.display()))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let mut cluster = Cluster::start(opts.nodes, &opts.dir)?;
    let n = opts.nodes;
    cluster
        .wait_for(Duration::from_secs(30), |s| converged(s, n))
        .map_err(|e| format!("the mesh did not form: {e}"))?;
    let apis: Vec<String> = (0..n).map(|i| cluster.api_addr(i)).collect();
    let workload = Workload::start(apis, opts.clients, opts.rate, opts.seed, &opts.dir.join("ops.jsonl"))?;
    let start = Instant::now();
    let mut faults = Vec::new();
    let mut last_heal = Instant::now();
    let mut log = std::fs::File::create(opts.dir.join("faults.jsonl")).map_err(|e| e.to_string())?;
    while start.elapsed() < opts.duration {
        // A quiet spell, then one fault (or a split) held for a while, then heal and restart.
        std::thread::sleep(Duration::from_millis(rng.gen_range(1000..3000)));
        let kind = *KINDS.choose(&mut rng).expect("kinds");
        let random = rng.gen_range(0..n);
        let target = match kind {
            Kind::KillCoordinator | Kind::PauseCoordinator | Kind::IsolateCoordinator => {
                cluster.coordinator().unwrap_or(random)
            }
            _ => random,
        };
        let name = cluster.nodes[target].name.clone();
        let what = match kind {
            Kind::KillRandom | Kind::KillCoordinator => {
                cluster.kill(target);
                format!("kill -9 {name}{}", if matches!(kind, Kind::KillCoordinator) { " (coordinator)" } else { "" })
            }
            Kind::PauseRandom | Kind::PauseCoordinator => {
                cluster.pause(target);
                format!("SIGSTOP {name}{}", if matches!(kind, Kind::PauseCoordinator) { " (coordinator)" } else { "" })
            }
            Kind::IsolateRandom | Kind::IsolateCoordinator => {
                cluster.net.isolate(target)?;
                format!(
                    "isolate {name}{}",
                    if matches!(kind, Kind::IsolateCoordinator) { " (coordinator)" } else { "" }
                )
            }
            Kind::Split => {
                let mut ids: Vec<usize> = (0..n).collect();
                ids.shuffle(&mut rng);
                let k = rng.gen_range(1..=n / 2);
                let side: Vec<usize> = ids[..k].to_vec();
                cluster.net.split(&side)?;
                let names: Vec<&str> = side.iter().map(|i| cluster.nodes[*i].name.as_str()).collect();
                format!("split {{{}}} from the rest", names.join(","))
            }
        };
        let kind_name = format!("{kind:?}");
        let f = Fault { at_ms: start.elapsed().as_millis() as u64, what: what.clone() };
        let _ = writeln!(log, "{}", serde_json::json!({"ms": f.at_ms, "fault": what, "kind": kind_name}));
        faults.push((kind_name, f));
        std::thread::sleep(Duration::from_millis(rng.gen_range(1500..5000)));
        cluster.restore()?;
        last_heal = Instant::now();
        let _ = writeln!(log, "{}", serde_json::json!({"ms": start.elapsed().as_millis() as u64, "fault": "heal"}));
    }
    let ops = workload.stop();
    cluster.restore()?;
    let converge_ms =
        cluster.wait_for(opts.converge_limit, |s| converged(s, n)).ok().map(|_| last_heal.elapsed().as_millis() as u64);
    // Read every node's final state.
    let names: Vec<String> = cluster.nodes.iter().map(|x| x.name.clone()).collect();
    let mut histories = Vec::new();
    let mut statuses = Vec::new();
    for (i, name) in names.iter().enumerate() {
        statuses.push(cluster.status(i).map_err(|e| format!("{name}: {e}"))?);
        histories.push(cluster.history(i).map_err(|e| format!("{name}: {e}"))?);
    }
    let report = checker::check(&ops, &names, &histories, &statuses);
    let mut faults_by_kind = std::collections::BTreeMap::new();
    for (k, _) in &faults {
        *faults_by_kind.entry(k.clone()).or_insert(0) += 1;
    }
    let summary = Summary {
        nodes: n,
        seed: opts.seed,
        duration_s: opts.duration.as_secs_f64(),
        faults: faults.into_iter().map(|(_, f)| f).collect(),
        faults_by_kind,
        converge_ms,
        report,
    };
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    let _ = std::fs::write(opts.dir.join("summary.json"), json);
    debug_assert!(cluster.nodes.iter().all(|x| x.state == NodeState::Running));
    Ok(summary)
}
