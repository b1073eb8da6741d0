use chatmesh_sim::*;
use std::time::Duration;
fn main() {
    for n in [4usize, 8, 16, 32] {
        let mut worst = Duration::ZERO;
        let mut terms = 0;
        let mut elections = 0;
        for seed in 0..20 {
            let mut sim = Sim::new(SimOptions::quiet(seed), Default::default());
            for _ in 0..n {
                sim.add_node(Duration::ZERO);
            }
            let t = sim.run_until_true(Duration::from_secs(60), |s| settled_problems(s).is_empty()).expect("settles");
            worst = worst.max(t);
            let c = coordinator_of(&sim).unwrap();
            terms = terms.max(sim.node(c).unwrap().term());
            elections = elections.max((0..n).map(|i| sim.node(i).unwrap().stats().elections_started).sum::<u64>());
        }
        println!("{n} nodes at once: worst settle {worst:?}, max final term {terms}, max elections {elections}");
    }
}
