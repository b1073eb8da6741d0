//! `chatmesh demo`: the mission told on a simulated mesh, in virtual time.
//!
//! The protocol core is the same one the real node will run; the network and the clock are the simulator's.

use chatmesh_core::{Body, Command, Event, MembershipEvent, NodeKey, Role};
use chatmesh_sim::{all_follow, coordinator_of, highest, settle, settled_problems, Sim, SimOptions};
use std::time::Duration;

const NAMES: [&str; 8] = ["ana", "bruno", "carla", "davi", "eva", "fabio", "gina", "hugo"];
const LIMIT: Duration = Duration::from_secs(30);

pub struct DemoOptions {
    pub nodes: usize,
    pub seed: u64,
}

pub fn run(opts: &DemoOptions) -> anyhow::Result<()> {
    let mut sim = Sim::new(SimOptions::quiet(opts.seed), Default::default());
    let mut shown = 0;
    println!("ChatMesh demo: {} nodes on a simulated LAN (virtual time, seed {})", opts.nodes, opts.seed);
    println!("The protocol core is the real one; the network and the clock are the simulator's.\n");

    step("1. Nodes start 150 ms apart and find each other through multicast; each says hello");
    let starts: Vec<String> = (0..opts.nodes).map(|i| format!("{} at {} ms", NAMES[i], 150 * i)).collect();
    println!("   starting: {}", starts.join(", "));
    for (i, name) in NAMES.iter().take(opts.nodes).enumerate() {
        sim.add_named_node(name, Duration::from_millis(150 * i as u64));
    }
    let coordinator = settle(&mut sim, LIMIT).map_err(problems)?;
    for i in sim.live() {
        let text = format!("olá, I am {}", name(&sim, i));
        sim.command(i, Command::Send { text, token: 0 });
    }
    settle(&mut sim, LIMIT).map_err(problems)?;
    shown = show_events(&sim, shown);
    table(&sim);
    println!(
        "   {} coordinates: it founded the mesh. Bully ranks by seniority (the lowest ID wins an election),",
        name(&sim, coordinator)
    );
    println!("   and a live coordinator is never displaced: newcomers join without an election.\n");

    step("2. The coordinator says something, then is killed (SIGKILL): its links reset, survivors notice at once");
    sim.command(coordinator, Command::Send { text: "last words before the crash".into(), token: 0 });
    let t = fail_and_measure(&mut sim, coordinator, true)?;
    settle(&mut sim, LIMIT).map_err(problems)?;
    shown = show_events(&sim, shown);
    println!("   Every survivor followed the new coordinator {} after the kill.", fmt(t));
    println!("   The last words were durable before they were shown as sent, and reached everyone:");
    table(&sim);

    step("3. The new coordinator freezes (SIGSTOP): nobody is told, its heartbeats just stop");
    let frozen = coordinator_of(&sim).expect("settled");
    let t = fail_and_measure(&mut sim, frozen, false)?;
    shown = show_events(&sim, shown);
    println!("   The silence was noticed and a successor followed by all {} after the freeze.\n", fmt(t));

    step("4. It wakes up (SIGCONT): it was replaced, so it declares nobody failed and rejoins as a member");
    sim.resume(frozen);
    settle(&mut sim, LIMIT).map_err(problems)?;
    shown = show_events(&sim, shown);
    table(&sim);

    step("5. The network splits in two: each part elects its own coordinator and keeps chatting");
    let live = sim.live();
    let (a, b) = live.split_at(live.len() / 2);
    let names = |part: &[usize]| part.iter().map(|&i| name(&sim, i)).collect::<Vec<_>>().join(", ");
    println!("   split: {} | {}", names(a), names(b));
    sim.partition(&[a.to_vec(), b.to_vec()]);
    settle(&mut sim, LIMIT).map_err(problems)?;
    for &i in a.iter().chain(b) {
        let text = format!("{} talking during the split", name(&sim, i));
        sim.command(i, Command::Send { text, token: 0 });
    }
    settle(&mut sim, LIMIT).map_err(problems)?;
    shown = show_events(&sim, shown);
    table(&sim);
    println!("   Two coordinators, two histories; each part agrees within itself.\n");

    step("6. The network heals: beacons meet, the smaller part merges into the larger one");
    sim.heal();
    let t = sim.run_until_true(LIMIT, |s| settled_problems(s).is_empty());
    settle(&mut sim, LIMIT).map_err(problems)?;
    shown = show_events(&sim, shown);
    table(&sim);
    if let Some(t) = t {
        println!("   One mesh again, with every history equal (same digest), {} after the heal.\n", fmt(t));
    }

    step("7. The node killed in step 2 restarts from its data directory: same ID, whole history, no take-over");
    sim.restart(coordinator);
    settle(&mut sim, LIMIT).map_err(problems)?;
    show_events(&sim, shown);
    table(&sim);
    show_history(&sim);
    println!("Done: one mesh, one coordinator, every view and history equal.");
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
                format!("{who} announces itself coordinator {id} (term {term})")
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
    println!(
        "   {:<8} {:>4} {:<12} {:>5} {:<10} {:>8}  {:<16}",
        "node", "id", "role", "term", "follows", "messages", "history digest"
    );
    for (i, n) in sim.nodes.iter().enumerate() {
        let Some(core) = n.core.as_ref().filter(|_| !n.paused) else {
            println!("   {:<8} {:>4} {:<12}", n.name, "", if n.paused { "stopped" } else { "down" });
            continue;
        };
        let id = core.my_id().map_or("-".into(), |id| id.to_string());
        let follows = core.coordinator().map_or("-".into(), |k| name_of(sim, &k));
        let role = format!("{:?}", core.role());
        let h = core.history();
        println!(
            "   {:<8} {:>4} {:<12} {:>5} {:<10} {:>8}  {:<16}",
            name(sim, i),
            id,
            role,
            core.term(),
            follows,
            h.count,
            h.digest.short()
        );
    }
    println!();
}

/// The canonical history as one node shows it (every node shows the same).
fn show_history(sim: &Sim) {
    let Some(i) = sim.live().first().copied() else { return };
    let mut messages: Vec<_> = sim.nodes[i].store.by_author.values().flat_map(|m| m.values()).collect();
    messages.sort_by_key(|m| m.order_key());
    println!("   The history in canonical order, as {} (and everyone) shows it:", name(sim, i));
    for m in messages {
        match &m.body {
            Body::Text(t) => println!("     {:>6}: {t}", name_of(sim, &m.author)),
            Body::Membership(e) => println!("     {:>6}  ({})", "", describe(sim, e)),
        }
    }
    println!();
}

fn describe(sim: &Sim, e: &MembershipEvent) -> String {
    match e {
        MembershipEvent::Joined { name, id, .. } => format!("{name} {id} joined"),
        MembershipEvent::Left { name, id, .. } => format!("{name} {id} left"),
        MembershipEvent::Failed { name, id, .. } => format!("{name} {id} failed"),
        MembershipEvent::Renamed { id, old, new, .. } => format!("{old} {id} is now {new}"),
        MembershipEvent::CoordinatorChanged { term, id, key } => {
            format!("{} {id} coordinates, term {term}", name_of(sim, key))
        }
    }
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
