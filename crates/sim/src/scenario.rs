//! Scenarios: randomized runs mixing every fault, and the failover measurement.

use crate::check::{history_problems, settled_problems};
use crate::net::SimOptions;
use crate::sim::Sim;
use chatmesh_core::{Command, NodeKey, Rank, Role, Timing};
use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// How long after faults stop the membership must have settled (promise 5's bound).
pub const SETTLE_BOUND: Duration = Duration::from_secs(15);
/// How long faults are injected in a random run.
pub const FAULT_PHASE: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    pub nodes: usize,
    pub faults: Vec<String>,
    /// Time from the end of faults until every check held.
    pub settled_after: Option<Duration>,
    pub problems: Vec<String>,
}

impl Outcome {
    pub fn replay_command(&self) -> String {
        format!(
            "CHATMESH_SIM_SEED={} cargo test --workspace --release --test random -- --nocapture  \
             (add CHATMESH_SIM_TRACE=1 for a trace)",
            self.seed
        )
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The options of a random run: network faults of random strength.
pub fn random_options(seed: u64, rng: &mut ChaCha8Rng) -> SimOptions {
    let mut opts = SimOptions::quiet(seed);
    let lo = Duration::from_micros(rng.gen_range(50..500));
    opts.latency = (lo, lo + Duration::from_micros(*[100u64, 1000, 5000].choose(rng).expect("non-empty")));
    opts.loss = *[0.0, 0.0, 0.01, 0.05, 0.1].choose(rng).expect("non-empty");
    opts.duplicate = *[0.0, 0.01, 0.05].choose(rng).expect("non-empty");
    opts.reorder = *[0.0, 0.05, 0.2].choose(rng).expect("non-empty");
    opts.crash_mid_output = *[0.0, 0.0, 0.0005, 0.002].choose(rng).expect("non-empty");
    // Drawn apart, so that the rest of a seed's run is what it was before rounds were modelled.
    let mut own = ChaCha8Rng::seed_from_u64(seed ^ 0x0020_47D5);
    opts.round = *[None, Some(Duration::ZERO), Some(Duration::from_micros(200)), Some(ms(2))]
        .choose(&mut own)
        .expect("non-empty");
    // The disk too, for the same reason.
    let mut disk = ChaCha8Rng::seed_from_u64(seed ^ 0xD15C_0000);
    opts.disk = *[None, Some((Duration::from_micros(20), Duration::from_micros(300))), Some((ms(1), ms(8)))]
        .choose(&mut disk)
        .expect("non-empty");
    if opts.disk.is_some() {
        opts.disk_stalls = *[0.0, 0.0, 0.002, 0.02].choose(&mut disk).expect("non-empty");
    }
    opts
}

/// Sends a chat message from a random running process, if there is one.
pub fn chat(sim: &mut Sim, rng: &mut ChaCha8Rng, n: &mut u64) {
    let running: Vec<usize> =
        (0..sim.nodes.len()).filter(|&i| sim.nodes[i].core.is_some() && !sim.nodes[i].left).collect();
    if let Some(&i) = running.choose(rng) {
        *n += 1;
        let text = format!("message {n} from {}", sim.nodes[i].name);
        sim.command(i, Command::Send { text, token: 0 });
    }
}

/// One randomized run: nodes start at random times, faults of every kind for `FAULT_PHASE`, then faults stop
/// (heal, resume, some restarts, no more loss) and the checks must hold within `SETTLE_BOUND`, and still
/// hold a while later.
pub fn random_run(seed: u64) -> Outcome {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_CAFE);
    let opts = random_options(seed, &mut rng);
    let mut sim = Sim::new(opts, Timing::default());
    let n = rng.gen_range(3..=8);
    for _ in 0..n {
        let after = ms(rng.gen_range(0..2000));
        sim.add_node(after);
    }
    let mut faults = Vec::new();
    let mut sent = 0;
    let end = sim.now() + FAULT_PHASE;
    while sim.now() < end {
        let wait = ms(rng.gen_range(20..400));
        sim.run_for(wait);
        if rng.gen_bool(0.15) {
            if let Some(f) = random_fault(&mut sim, &mut rng) {
                faults.push(format!("{:?}: {f}", sim.elapsed()));
            }
        }
        if rng.gen_bool(0.6) {
            chat(&mut sim, &mut rng, &mut sent);
        }
    }
    stop_faults(&mut sim, &mut rng);
    for _ in 0..3 {
        chat(&mut sim, &mut rng, &mut sent);
    }
    faults.push(format!("{:?}: faults stop", sim.elapsed()));
    let settled_after = sim.run_until_true(SETTLE_BOUND, |s| settled_problems(s).is_empty());
    let mut problems = Vec::new();
    if settled_after.is_none() {
        problems.push(format!("not settled {SETTLE_BOUND:?} after faults stopped"));
    } else if let Err(p) = settle(&mut sim, SETTLE_BOUND) {
        problems.push("settled, but did not stay settled".into());
        problems.extend(p);
    } else {
        // Settled must mean settled: once it has held for a while, nothing moves while nothing happens,
        // not even a term.
        let term = coordinator_of(&sim).and_then(|c| sim.node(c)).map(|c| c.term());
        sim.run_for(Duration::from_secs(3));
        problems.extend(settled_problems(&sim));
        let later = coordinator_of(&sim).and_then(|c| sim.node(c)).map(|c| c.term());
        if term != later {
            problems.push(format!("the term moved from {term:?} to {later:?} after the mesh had settled"));
        }
    }
    problems.extend(history_problems(&sim));
    problems.extend(sim.obs.violations.iter().cloned());
    Outcome { seed, nodes: sim.nodes.len(), faults, settled_after, problems }
}

fn random_fault(sim: &mut Sim, rng: &mut ChaCha8Rng) -> Option<String> {
    let all: Vec<usize> = (0..sim.nodes.len()).collect();
    let running: Vec<usize> =
        all.iter().copied().filter(|&i| sim.nodes[i].core.is_some() && !sim.nodes[i].left).collect();
    let pick = |v: &[usize], rng: &mut ChaCha8Rng| v.choose(rng).copied();
    let name = |sim: &Sim, i: usize| sim.nodes[i].name.clone();
    match rng.gen_range(0..100) {
        0..=14 if running.len() > 1 => {
            let i = pick(&running, rng)?;
            sim.crash(i);
            Some(format!("crash {}", name(sim, i)))
        }
        15..=29 => {
            let down: Vec<usize> =
                all.iter().copied().filter(|&i| sim.nodes[i].core.is_none() && !sim.nodes[i].left).collect();
            let i = pick(&down, rng)?;
            sim.restart(i);
            Some(format!("restart {}", name(sim, i)))
        }
        30..=37 => {
            let i = pick(&running, rng)?;
            sim.pause(i);
            Some(format!("pause {}", name(sim, i)))
        }
        38..=45 => {
            let paused: Vec<usize> = all.iter().copied().filter(|&i| sim.nodes[i].paused).collect();
            let i = pick(&paused, rng)?;
            sim.resume(i);
            Some(format!("resume {}", name(sim, i)))
        }
        46..=55 => {
            let mut shuffled = all.clone();
            shuffled.shuffle(rng);
            let cut = rng.gen_range(1..shuffled.len().max(2));
            let (a, b) = shuffled.split_at(cut.min(shuffled.len()));
            sim.partition(&[a.to_vec(), b.to_vec()]);
            Some(format!("partition {a:?} | {b:?}"))
        }
        56..=61 => {
            let coordinator =
                running.iter().copied().find(|&i| sim.node(i).is_some_and(|c| c.role() == Role::Coordinator));
            let i = coordinator.or_else(|| pick(&running, rng))?;
            sim.isolate(i);
            Some(format!("isolate {}", name(sim, i)))
        }
        62..=67 if all.len() > 1 => {
            let a = pick(&all, rng)?;
            let b = pick(&all, rng)?;
            (a != b).then(|| {
                sim.cut(a, b);
                format!("cut {} - {}", name(sim, a), name(sim, b))
            })
        }
        68..=79 => {
            sim.heal();
            Some("heal".into())
        }
        80..=85 if sim.nodes.len() < 12 => {
            let i = sim.add_node(Duration::ZERO);
            Some(format!("add {}", name(sim, i)))
        }
        86..=88 if sim.live().len() > 2 => {
            // Only a running process can be told to quit; a stopped one would quit when continued,
            // and the generator keeps at least two others.
            let i = pick(&sim.live(), rng)?;
            sim.command(i, Command::Leave);
            Some(format!("leave {}", name(sim, i)))
        }
        89..=94 => {
            // To a running process: one queued while stopped would run after faults stop, and a user's
            // /elect is meant to move the term.
            let i = pick(&sim.live(), rng)?;
            sim.command(i, Command::StartElection);
            Some(format!("/elect on {}", name(sim, i)))
        }
        _ => None,
    }
}

/// Faults stop: the network heals and calms down, stopped processes continue, some crashed ones restart,
/// and at least one process runs.
pub fn stop_faults(sim: &mut Sim, rng: &mut ChaCha8Rng) {
    sim.opts.calm();
    sim.heal();
    for i in 0..sim.nodes.len() {
        sim.resume(i);
        if sim.nodes[i].core.is_none() && rng.gen_bool(0.5) {
            sim.restart(i);
        }
    }
    if sim.live().is_empty() {
        match (0..sim.nodes.len()).find(|&i| !sim.nodes[i].left) {
            Some(i) => sim.restart(i),
            None => {
                sim.add_node(Duration::ZERO);
            }
        }
    }
}

/// How long the checks must keep holding for `settle` to call the membership settled: a state that holds
/// for an instant while stale messages are still in flight is not settled.
pub const STABLE_FOR: Duration = Duration::from_secs(1);

/// Waits until the membership has settled and stays so for `STABLE_FOR`; returns the coordinator's index.
pub fn settle(sim: &mut Sim, limit: Duration) -> Result<usize, Vec<String>> {
    let deadline = sim.now() + limit;
    loop {
        let left = deadline.saturating_duration_since(sim.now());
        if sim.run_until_true(left, |s| settled_problems(s).is_empty()).is_none() {
            return Err(settled_problems(sim));
        }
        let coordinator = coordinator_of(sim).expect("settled means one coordinator");
        let view = sim.node(coordinator).and_then(|c| c.view()).map(|v| v.order());
        sim.run_for(STABLE_FOR);
        let same = coordinator_of(sim) == Some(coordinator)
            && sim.node(coordinator).and_then(|c| c.view()).map(|v| v.order()) == view;
        if same && settled_problems(sim).is_empty() {
            return Ok(coordinator);
        }
    }
}

pub fn coordinator_of(sim: &Sim) -> Option<usize> {
    sim.live().into_iter().find(|&i| sim.node(i).is_some_and(|c| c.role() == Role::Coordinator))
}

/// The highest-ranked of `nodes`.
pub fn highest(sim: &Sim, nodes: &[usize]) -> Option<usize> {
    nodes
        .iter()
        .copied()
        .max_by_key(|&i| sim.node(i).and_then(|c| c.my_id()).map(|id| Rank { id, key: sim.nodes[i].key }))
}

/// Every live node follows `key`.
pub fn all_follow(sim: &Sim, key: NodeKey) -> bool {
    sim.live().iter().all(|&i| sim.node(i).is_some_and(|c| c.coordinator() == Some(key)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// SIGKILL: the process dies and its links reset.
    Crash,
    /// SIGSTOP: the process goes silent; its links stay open.
    Silent,
}

/// Failover time in virtual time: the coordinator of a settled `nodes`-node mesh fails, until every
/// survivor follows the highest-ranked survivor. `None` if that never happened within 10 s.
pub fn failover_run(seed: u64, nodes: usize, failure: Failure) -> Result<Duration, Vec<String>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xFA11);
    let mut opts = SimOptions::quiet(seed);
    opts.latency = (Duration::from_micros(50), Duration::from_micros(rng.gen_range(100..1000)));
    let mut sim = Sim::new(opts, Timing::default());
    for _ in 0..nodes {
        let after = ms(rng.gen_range(0..1000));
        sim.add_node(after);
    }
    let coordinator = settle(&mut sim, Duration::from_secs(30))?;
    // Fail at a random point between two heartbeats.
    sim.run_for(Duration::from_micros(rng.gen_range(0..100_000)));
    match failure {
        Failure::Crash => sim.crash(coordinator),
        Failure::Silent => sim.pause(coordinator),
    }
    let survivors = sim.live();
    let next = highest(&sim, &survivors).expect("survivors");
    let key = sim.nodes[next].key;
    sim.run_until_true(Duration::from_secs(10), |s| all_follow(s, key))
        .ok_or_else(|| vec![format!("no failover to {} within 10 s", sim.nodes[next].name)])
}

/// p50, p99 (nearest rank, `crate::percentile`) and max of a sample; panics on an empty one.
pub fn percentiles(mut xs: Vec<Duration>) -> (Duration, Duration, Duration) {
    xs.sort_unstable();
    let at = |p: f64| crate::percentile(&xs, p).expect("a non-empty sample");
    (at(50.0), at(99.0), at(100.0))
}
