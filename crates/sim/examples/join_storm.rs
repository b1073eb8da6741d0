//! Simultaneous starts: how long until one settled mesh, and how many terms the join storm costs.
use chatmesh_sim::*;
use std::time::Duration;
fn main() {
    for n in [4usize, 8, 16, 32] {
        let (mut worst, mut terms) = (Duration::ZERO, 0);
        for seed in 0..20 {
            let mut sim = Sim::new(SimOptions::quiet(seed), Default::default());
            for _ in 0..n {
                sim.add_node(Duration::ZERO);
            }
            let t = sim.run_until_true(Duration::from_secs(60), |s| settled_problems(s).is_empty()).expect("settles");
            worst = worst.max(t);
            terms = terms.max(sim.node(coordinator_of(&sim).unwrap()).unwrap().term());
        }
        println!("{n} nodes at once: worst time to settle {worst:?}, worst final term {terms}");
    }
}
