//! Deterministic simulator for ChatMesh: many `chatmesh_core::Node`s on one virtual clock and one simulated
//! network, with every fault as a verb (`crash`, `restart`, `pause`, `resume`, `partition`, `isolate`,
//! `cut`, `heal`) and every message-level fault knob in `SimOptions`. Same seed, same run: a failing seed
//! is the bug report, replayed with `CHATMESH_SIM_SEED=<seed>` (add `CHATMESH_SIM_TRACE=1` for a trace).
//!
//! # Layout
//! - `net`: `SimOptions` and the network model (latency, loss, duplication, reordering, partitions,
//!   connections; the disk's delay and stalls).
//! - `sim`: `Sim`, the event loop, the fault verbs, each process's driver (the tokio driver's own
//!   `Connections` and `Pipeline`, a disk that lands commits in order and, at a crash, a prefix of those in
//!   flight), and the safety checks made while running.
//! - `check`: the promise checkers run once faults stop.
//! - `scenario`: randomized runs, failover measurement, helpers for named scenarios.
//! - `store`: a process's durable message store.
//! - `stats`: `percentile` (nearest rank), the one definition the simulator and `chatmesh bench` share.

mod check;
mod net;
mod scenario;
mod sim;
mod stats;
mod store;

pub use check::{connected_parts, history_problems, settled_problems};
pub use net::SimOptions;
pub use scenario::{
    all_follow, chat, coordinator_of, failover_run, highest, percentiles, random_options, random_run, settle,
    stop_faults, Failure, Outcome, FAULT_PHASE, SETTLE_BOUND, STABLE_FOR,
};
pub use sim::{Observations, Sim, SimNode};
pub use stats::percentile;
pub use store::SimStore;

/// The seeds a test should run: `CHATMESH_SIM_SEED=S` replays one, `CHATMESH_SIM_SEEDS=N` runs `0..N`,
/// otherwise `0..default`. A value that is not a number (or zero seeds) stops the test with a clear
/// message rather than quietly running something else.
pub fn seeds_from_env(default: u64) -> Vec<u64> {
    let read = |name: &str| {
        std::env::var(name).ok().map(|s| {
            s.trim().parse::<u64>().unwrap_or_else(|_| panic!("{name}={s:?} is not a number: give a whole number"))
        })
    };
    if let Some(seed) = read("CHATMESH_SIM_SEED") {
        println!("replaying seed {seed}");
        return vec![seed];
    }
    let n = read("CHATMESH_SIM_SEEDS").unwrap_or(default);
    assert!(n > 0, "CHATMESH_SIM_SEEDS=0 would test nothing: give at least 1");
    (0..n).collect()
}

/// Whether the simulator should print a trace: `CHATMESH_SIM_TRACE` set to anything but empty or `0`.
pub fn trace_from_env() -> bool {
    std::env::var("CHATMESH_SIM_TRACE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Runs `f` over `seeds` on every core; returns the results in seed order.
pub fn run_parallel<T: Send>(seeds: &[u64], f: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { break };
                let r = f(seed);
                results.lock().expect("no worker panics while holding the lock").push((i, r));
            });
        }
    });
    let mut results = results.into_inner().expect("workers joined");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}
