use chatmesh_core::Command;
use chatmesh_sim::*;
use std::time::Duration;
fn main() {
    let mut sim = Sim::new(SimOptions::quiet(24), Default::default());
    for i in 0..3 {
        sim.add_node(Duration::from_millis(20 * i));
    }
    settle(&mut sim, Duration::from_secs(30)).unwrap();
    for k in 0..2000 {
        sim.command(k % 3, Command::Send { text: format!("message {k}") });
        if k % 100 == 99 {
            sim.run_for(Duration::from_millis(10));
        }
    }
    settle(&mut sim, Duration::from_secs(30)).unwrap();
    let total = sim.node(0).unwrap().history().count;
    let n = sim.add_node(Duration::ZERO);
    for _ in 0..20 {
        sim.run_for(Duration::from_millis(500));
        let c = sim.node(n).map(|c| (c.role(), c.history().count));
        println!(
            "{:?} newcomer {:?} of {total}; others {:?}",
            sim.elapsed(),
            c,
            (0..3).map(|i| sim.node(i).unwrap().history().count).collect::<Vec<_>>()
        );
    }
}
