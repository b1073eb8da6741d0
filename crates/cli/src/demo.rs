//! `chatmesh demo`: the mission told on a simulated mesh, in virtual time.
//!
//! The protocol core is the same one the real node will run; the network and the clock are the simulator's.

use chatmesh_core::{Event, NodeKey, Role};
use chatmesh_sim::{all_follow, coordinator_of, highest, settle, Sim, SimOptions};
use std::time::Duration;

const NAMES: [&str; 8] = ["ana", "bruno", "carla", "davi", "eva", "fabio", "gina", "hugo"];

pub struct DemoOptions {
    pub nodes: usize,
    pub seed: u64,
}

pub fn run(opts: &DemoOptions) -> anyhow::Result<()> {
    let mut sim = Sim::new(SimOptions::quiet(opts.seed), Default::default());
    let mut shown = 0;
    println!("ChatMesh demo: {} nodes on a simulated LAN (virtual time, seed {})", opts.nodes, opts.seed);
    println!("The protocol core is the real one; the network and the clock are the simulator's.\n");

    step("1. Nodes start a few hundred milliseconds apart and find each other through multicast");
    for (i, name) in NAMES.iter().cycle().take(opts.nodes).enumerate() {
        sim.add_named_node(name, Duration::from_millis(150 * i as u64));
    }
    let coordinator = settle(&mut sim, Duration::from_secs(30)).map_err(problems)?;
    shown = show_events(&sim, shown);
    table(&sim);
    println!(
        "   The coordinator is {}, the highest-ranked member (Bully: highest ID wins).\n",
        name(&sim, coordinator)
    );

    step("2. SIGKILL the coordinator: links reset, survivors notice within a round trip");
    let t = fail_and_measure(&mut sim, coordinator, true)?;
    shown = show_events(&sim, shown);
    println!("   Every survivor agreed on the new coordinator after {}.\n", fmt(t));

    step("3. The new coordinator freezes (SIGSTOP): nobody is told, heartbeats stop");
    let frozen = coordinator_of(&sim).expect("settled");
    let t = fail_and_measure(&mut sim, frozen, false)?;
    shown = show_events(&sim, shown);
    println!("   Silent failure detected and a successor agreed after {}.\n", fmt(t));

    step("4. It wakes up (SIGCONT): it is the highest-ranked live member again, so Bully gives it the role back");
    sim.resume(frozen);
    settle(&mut sim, Duration::from_secs(30)).map_err(problems)?;
    shown = show_events(&sim, shown);
    table(&sim);

    step("5. The network splits in two: each part elects its own coordinator and keeps going");
    let live = sim.live();
    let (a, b) = live.split_at(live.len() / 2);
    sim.partition(&[a.to_vec(), b.to_vec()]);
    settle(&mut sim, Duration::from_secs(30)).map_err(problems)?;
    shown = show_events(&sim, shown);
    table(&sim);

    step("6. The network heals: beacons meet, the parts merge under the higher-ranked coordinator");
    sim.heal();
    settle(&mut sim, Duration::from_secs(30)).map_err(problems)?;
    shown = show_events(&sim, shown);
    table(&sim);

    step("7. The node killed in step 2 restarts from its data directory and gets its old ID back");
    sim.restart(coordinator);
    settle(&mut sim, Duration::from_secs(30)).map_err(problems)?;
    show_events(&sim, shown);
    table(&sim);
    println!("Done: one mesh, one coordinator (the highest-ranked live member), every view equal.");
    Ok(())
}

fn step(title: &str) {
    println!("== {title}");
}

fn name(sim: &Sim, i: usize) -> String {
    sim.nodes[i].name.clone()
}

fn name_of(sim: &Sim, key: &NodeKey) -> String {
    sim.nodes.iter().find(|n| &n.key == key).map_or_else(|| key.short(), |n| n.name.clone())
}

fn fail_and_measure(sim: &mut Sim, victim: usize, crash: bool) -> anyhow::Result<Duration> {
    if crash {
        sim.crash(victim);
    } else {
        sim.pause(victim);
    }
    let next = highest(sim, &sim.live()).expect("survivors");
    let key = sim.nodes[next].key;
    sim.run_until_true(Duration::from_secs(10), |s| all_follow(s, key))
        .ok_or_else(|| anyhow::anyhow!("no failover within 10 s"))
}

/// Prints the events since `from` that a person watching would care about, once per mesh-wide fact.
fn show_events(sim: &Sim, from: usize) -> usize {
    let mut last = String::new();
    for (t, i, e) in &sim.obs.events[from..] {
        let who = name(sim, *i);
        let line = match e {
            Event::Founded { id, term } => format!("{who} found no mesh and founded one as {id} (term {term})"),
            Event::Joined { id, .. } => format!("{who} joined as {id}"),
            Event::CoordinatorChanged { term, coordinator, id } if coordinator == &sim.nodes[*i].key => {
                format!("{who} is coordinator {id} of term {term}")
            }
            Event::MemberFailed { name, id, .. } if sim.node(*i).is_some_and(|c| c.role() == Role::Coordinator) => {
                format!("{who} (coordinator) declares {name} {id} failed")
            }
            Event::MemberLeft { name, .. } => format!("{name} left"),
            Event::IdReassigned { key, old, new } if key == &sim.nodes[*i].key => {
                format!("{who}'s ID {old} clashed, now {new}")
            }
            _ => continue,
        };
        if line != last {
            println!("   {:>9}  {line}", fmt(*t));
            last = line;
        }
    }
    sim.obs.events.len()
}

fn table(sim: &Sim) {
    println!("   {:<8} {:>4} {:<12} {:>5} {:<12}", "node", "id", "role", "term", "follows");
    for (i, n) in sim.nodes.iter().enumerate() {
        let Some(core) = n.core.as_ref().filter(|_| !n.paused) else {
            println!("   {:<8} {:>4} {:<12}", n.name, "", if n.paused { "stopped" } else { "down" });
            continue;
        };
        let id = core.my_id().map_or("-".into(), |id| id.to_string());
        let follows = core.coordinator().map_or("-".into(), |k| name_of(sim, &k));
        let role = format!("{:?}", core.role());
        println!("   {:<8} {:>4} {:<12} {:>5} {:<12}", name(sim, i), id, role, core.term(), follows);
    }
    println!();
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn problems(p: Vec<String>) -> anyhow::Error {
    anyhow::anyhow!("the mesh did not settle: {}", p.join("; "))
}
