fn main() {
    for seed in 0..3 {
        let o = chatmesh_sim::random_run(seed);
        println!("seed {seed}: {} nodes, problems {:?}", o.nodes, o.problems);
    }
    // A quiet mesh that chats: what does delivery cost?
    let mut sim = chatmesh_sim::Sim::new(chatmesh_sim::SimOptions::quiet(1), Default::default());
    for _ in 0..4 {
        sim.add_node(std::time::Duration::ZERO);
    }
    chatmesh_sim::settle(&mut sim, std::time::Duration::from_secs(30)).unwrap();
    let (f0, b0, d0) = (sim.obs.frames, sim.obs.frame_bytes, sim.obs.deliveries);
    for k in 0..100 {
        sim.command(k % 4, chatmesh_core::Command::Send { text: format!("hello {k}") });
        sim.run_for(std::time::Duration::from_millis(10));
    }
    sim.run_for(std::time::Duration::from_secs(3));
    let counts: Vec<_> = (0..4).map(|i| sim.node(i).unwrap().history().count).collect();
    println!(
        "counts {counts:?} sent {} deliveries {} frames {} bytes {}",
        sim.obs.sent.len(),
        sim.obs.deliveries - d0,
        sim.obs.frames - f0,
        sim.obs.frame_bytes - b0
    );
    println!("status of n0's msg 1: {:?}", sim.node(0).unwrap().delivery_status(1));
}
