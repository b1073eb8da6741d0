//! The client workload: messages sent through the control API of random nodes at a steady rate, every one
//! recorded as invoke, then ok (with the message ID), fail (certainly not stored) or info (unknown: the
//! request may or may not have reached the node), as JSON lines.

use chatmesh_harness::{ApiError, Client};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Ok { id: String },
    Fail { error: String },
    Info { error: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct Op {
    /// Operation number; the message text is `op-<k>`.
    pub k: u64,
    pub node: usize,
    /// Milliseconds since the run started, at invoke and at completion.
    pub invoked_ms: u64,
    pub completed_ms: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

pub fn text_of(k: u64) -> String {
    format!("op-{k}")
}

/// A running workload: `stop()` ends it and returns every operation.
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Workload {
    /// `clients` threads, together about `rate` messages per second, to random nodes among `apis` (control API addresses, `host:port`).
    pub fn start(apis: Vec<String>, clients: usize, rate: f64, seed: u64, log: &Path) -> Result<Workload, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicU64::new(1));
        let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let file = Arc::new(Mutex::new(std::io::BufWriter::new(file)));
        let start = Instant::now();
        let period = Duration::from_secs_f64(clients as f64 / rate.max(0.1));
        let apis = Arc::new(apis);
        let mut threads = Vec::new();
        for c in 0..clients {
            let (stop, ops, next, file, apis) = (stop.clone(), ops.clone(), next.clone(), file.clone(), apis.clone());
            threads.push(std::thread::spawn(move || {
                use rand::{Rng, SeedableRng};
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9E37_79B9));
                let agent = ureq::AgentBuilder::new()
                    .timeout_connect(Duration::from_millis(500))
                    .timeout(Duration::from_secs(2))
                    .build();
                let mut due = Instant::now() + period.mul_f64(rng.gen::<f64>());
                while !stop.load(Ordering::SeqCst) {
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait.min(Duration::from_millis(100)));
                        continue;
                    }
                    due += period;
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let node = rng.gen_range(0..apis.len());
                    let invoked_ms = start.elapsed().as_millis() as u64;
                    let _ = writeln!(
                        file.lock().unwrap(),
                        "{}",
                        serde_json::json!({"k": k, "node": node, "type": "invoke", "ms": invoked_ms})
                    );
                    let outcome = send(&Client::new(&agent, &apis[node]), &text_of(k));
                    let op = Op { k, node, invoked_ms, completed_ms: start.elapsed().as_millis() as u64, outcome };
                    let _ = writeln!(file.lock().unwrap(), "{}", serde_json::to_string(&op).unwrap_or_default());
                    ops.lock().unwrap().push(op);
                }
            }));
        }
        Ok(Workload { stop, threads, ops })
    }

    pub fn stop(self) -> Vec<Op> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let mut ops = self.ops.lock().unwrap().clone();
        ops.sort_by_key(|o| o.k);
        ops
    }
}

fn send(client: &Client, text: &str) -> Outcome {
    match client.send(text) {
        Ok(m) => Outcome::Ok { id: m.id },
        Err(e @ ApiError::Parse(_)) => Outcome::Info { error: e.to_string() },
        // The node answered that it did not store it.
        Err(ApiError::Status { code, error }) => Outcome::Fail { error: format!("{code}: {error}") },
        // Never connected: certainly not stored.
        Err(ApiError::Transport { connect: true, error }) => Outcome::Fail { error },
        // Connected, then no answer (a stopped process, a timeout): unknown.
        Err(ApiError::Transport { connect: false, error }) => Outcome::Info { error },
    }
}
