//! Randomized scenarios mixing every fault with a chat workload, then a quiet period in which all six
//! promises must hold (1, 4, 5, 6 checked once faults stop; 2, 3 and the durability contract on every write).
//! `CHATMESH_SIM_SEEDS=N` runs N seeds (default 2000); `CHATMESH_SIM_SEED=S` replays one.

use chatmesh_sim::{random_run, run_parallel, seeds_from_env};

#[test]
fn random_scenarios_keep_all_six_promises() {
    let seeds = seeds_from_env(2000);
    let outcomes = run_parallel(&seeds, random_run);
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.problems.is_empty()).collect();
    let settle: Vec<_> = outcomes.iter().filter_map(|o| o.settled_after).collect();
    if !settle.is_empty() {
        let (p50, p99, max) = chatmesh_sim::percentiles(settle);
        println!("{} seeds; settled after faults stopped: p50 {p50:?}, p99 {p99:?}, max {max:?}", seeds.len());
    }
    for o in failed.iter().take(10) {
        eprintln!("seed {} ({} nodes) failed:", o.seed, o.nodes);
        for p in o.problems.iter().take(12) {
            eprintln!("  - {p}");
        }
        if seeds.len() == 1 {
            for f in &o.faults {
                eprintln!("    fault {f}");
            }
        }
        eprintln!("  replay: {}", o.replay_command());
    }
    assert!(failed.is_empty(), "{} of {} seeds failed (replay commands above)", failed.len(), seeds.len());
}
