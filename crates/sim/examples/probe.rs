fn main() {
    for seed in 0..5 {
        let o = chatmesh_sim::random_run(seed);
        println!(
            "seed {seed}: nodes {} faults {} settled {:?} problems {}",
            o.nodes,
            o.faults.len(),
            o.settled_after,
            o.problems.len()
        );
    }
    let mut sim = chatmesh_sim::Sim::new(chatmesh_sim::SimOptions::quiet(1), Default::default());
    for _ in 0..5 {
        sim.add_node(std::time::Duration::ZERO);
    }
    sim.run_for(std::time::Duration::from_secs(30));
    println!("5 quiet nodes 30s: delivered {} events {}", sim.obs.delivered, sim.obs.events.len());
    for (t, i, e) in sim.obs.events.iter().take(30) {
        println!("{t:?} n{i} {e:?}");
    }
}
