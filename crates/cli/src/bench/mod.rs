//! `chatmesh bench`: measures ChatMesh on real node processes on this machine (loopback only).
//!
//! Scenarios (all of them when none is named): `failover`, `join`, `latency`, `throughput`, `converge`,
//! `scale`, `memory`. Each starts its own meshes of `chatmesh --ui json` processes (see `cluster.rs`),
//! warms them up, repeats its measurement and reports medians and percentiles over the runs, with the
//! project's goals beside them. Times are taken by the bench: event arrival on the nodes' `GET /events`
//! streams, `GET /status` polls, and `/proc` for CPU and memory. `--json` prints one machine-readable object
//! on stdout; progress goes to stderr. `--quick` runs everything small (about two minutes): it checks that
//! each scenario completes and reports, and its figures are not comparable with the goals.

pub(crate) mod cluster;
mod converge;
mod failover;
mod join;
mod latency;
mod load;
mod memory;
mod scale;
mod stats;
mod throughput;

use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use stats::Section;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Coordinator killed (SIGKILL) or silent (SIGSTOP) until all survivors follow the new one; spurious
    /// elections in a loaded 16-node run.
    Failover,
    /// Process start to ID; a newcomer receiving a history of 10,000 and 100,000 messages.
    Join,
    /// Send to delivered on every other node and to acknowledged by all, at 10 and 1,000 msg/s, 4 and 16 nodes.
    Latency,
    /// Highest sustained rate delivered to and acknowledged by all of a 4-node mesh; CPU per message.
    Throughput,
    /// Two sides of a partition each write 10,000 messages, then meet: time until all digests agree.
    Converge,
    /// The largest mesh that stays stable; heartbeat traffic and memory per node.
    Scale,
    /// Peak RSS per node, idle and with a large history.
    Memory,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Scenario::Failover,
        Scenario::Join,
        Scenario::Latency,
        Scenario::Throughput,
        Scenario::Converge,
        Scenario::Scale,
        Scenario::Memory,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Failover => "failover",
            Scenario::Join => "join",
            Scenario::Latency => "latency",
            Scenario::Throughput => "throughput",
            Scenario::Converge => "converge",
            Scenario::Scale => "scale",
            Scenario::Memory => "memory",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// The scenario to run [default: all of them, in this order].
    #[arg(value_enum)]
    scenario: Option<Scenario>,
    /// Mesh size, instead of each scenario's own (failover 5, join 4, latency 4 and 16, throughput 4,
    /// memory 4; scale starts there).
    #[arg(long, value_parser = clap::value_parser!(u16).range(3..=512))]
    nodes: Option<u16>,
    /// Repetitions of each repeated measurement, instead of each one's own (failover: 20 kills, 10 stops;
    /// join: 20 starts, 3 syncs; converge: 3).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    runs: Option<u16>,
    /// Print one JSON object with every figure on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Everything small and fast (about two minutes): checks that each scenario completes and reports.
    #[arg(long)]
    quick: bool,
    /// Length of the loaded 16-node run of `failover`, in seconds [default: 600; --quick: 20].
    #[arg(long, value_name = "SECS")]
    loaded_secs: Option<u64>,
    /// How long each mesh size of `scale` must stay stable, in seconds [default: 60; --quick: 10].
    #[arg(long, value_name = "SECS")]
    scale_secs: Option<u64>,
    /// The largest mesh `scale` tries [default: 128; --quick: 8].
    #[arg(long, value_name = "N")]
    scale_max: Option<usize>,
    /// Messages of the large history of `memory` [default: 1,000,000; --quick: 10,000].
    #[arg(long, value_name = "N")]
    history: Option<u64>,
    /// Run every node in a network namespace of its own, with its own addresses on a bridge, instead of all
    /// on loopback (needs root and iproute2; everything created is removed at the end).
    #[arg(long)]
    netns: bool,
    /// Keep the nodes' data and log directories (under $TMPDIR/chatmesh-bench-<pid>).
    #[arg(long)]
    keep: bool,
    /// Log level of the nodes (`debug` logs every frame: for finding out where time goes, not for figures).
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = ["debug", "heartbeat", "info", "warn"])]
    node_log: String,
}

/// What every scenario gets to know.
pub struct Ctx {
    pub quick: bool,
    pub nodes: Option<usize>,
    pub runs: Option<usize>,
    pub loaded_secs: Option<u64>,
    pub scale_secs: Option<u64>,
    pub scale_max: Option<usize>,
    pub history: Option<u64>,
    started: Instant,
}

impl Ctx {
    /// A progress line on stderr.
    pub fn say(&self, line: &str) {
        eprintln!("[{:7.1}s] {line}", self.started.elapsed().as_secs_f64());
    }

    /// Sleeps, but returns early with an error when the bench is interrupted.
    pub fn sleep(&self, d: Duration) -> cluster::Res<()> {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if interrupted() {
                return Err("interrupted".into());
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        Ok(())
    }

    /// Runs of a repeated measurement: `--runs`, or the default for full and quick runs.
    pub fn runs(&self, full: usize, quick: usize) -> usize {
        self.runs.unwrap_or(if self.quick { quick } else { full })
    }
}

/// Set by SIGINT, SIGTERM or SIGHUP.
static INTERRUPTED: LazyLock<Arc<AtomicBool>> = LazyLock::new(Arc::default);
static KEEP: AtomicBool = AtomicBool::new(false);
static NODE_LOG: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The nodes' `--log` level.
pub fn node_log() -> &'static str {
    NODE_LOG.get().map_or("info", |s| s.as_str())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

pub fn keep() -> bool {
    KEEP.load(Ordering::Relaxed)
}

pub fn main(args: BenchArgs) -> ExitCode {
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&INTERRUPTED))
            .expect("SIGINT, SIGTERM and SIGHUP can be caught");
    }
    KEEP.store(args.keep, Ordering::Relaxed);
    if args.netns {
        if let Err(e) = cluster::hosts::enable() {
            eprintln!("chatmesh bench: --netns: {e}");
            return ExitCode::FAILURE;
        }
    }
    let _ = NODE_LOG.set(args.node_log.clone());
    let ctx = Ctx {
        quick: args.quick,
        nodes: args.nodes.map(usize::from),
        runs: args.runs.map(usize::from),
        loaded_secs: args.loaded_secs,
        scale_secs: args.scale_secs,
        scale_max: args.scale_max,
        history: args.history,
        started: Instant::now(),
    };
    let scenarios: Vec<Scenario> = match args.scenario {
        Some(s) => vec![s],
        None => Scenario::ALL.to_vec(),
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let machine = machine();
    let load_before = cluster::loadavg();
    ctx.say(&format!(
        "chatmesh bench{}: {} on {} CPUs ({}), load {:.2} {:.2} {:.2}; nodes under {}",
        if ctx.quick { " --quick" } else { "" },
        scenarios.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "),
        machine["nproc"],
        machine["cpu"].as_str().unwrap_or("?"),
        load_before[0],
        load_before[1],
        load_before[2],
        cluster::bench_root().display()
    ));
    let mut results: Vec<(Scenario, Section, f64)> = Vec::new();
    for s in &scenarios {
        if interrupted() {
            break;
        }
        ctx.say(&format!("== {} ==", s.name()));
        let t = Instant::now();
        let meter = cluster::CpuMeter::start();
        let load = cluster::loadavg();
        let mut section = match s {
            Scenario::Failover => failover::run(&ctx),
            Scenario::Join => join::run(&ctx),
            Scenario::Latency => latency::run(&ctx),
            Scenario::Throughput => throughput::run(&ctx),
            Scenario::Converge => converge::run(&ctx),
            Scenario::Scale => scale::run(&ctx),
            Scenario::Memory => memory::run(&ctx),
        };
        for e in &section.errors {
            ctx.say(&format!("{}: FAILED: {e}", s.name()));
        }
        // Every node of the scenario has been reaped by now: its CPU time is in the children's.
        let cpu = meter.cores(0.0);
        ctx.say(&format!(
            "{}: {:.0} s; CPU in use on the machine {} cores: nodes {}, bench {}, other processes {}; stolen by the host {}",
            s.name(),
            t.elapsed().as_secs_f64(),
            cpu["machine_busy_cores"],
            cpu["nodes_cores"],
            cpu["bench_cores"],
            cpu["other_processes_cores"],
            cpu["stolen_cores"]
        ));
        section.notes.push(format!(
            "CPU in use during the scenario, of {} cores: nodes {}, the bench {}, other processes {}; held back by the host (steal) {} (load average {:.1} at the start)",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu["nodes_cores"],
            cpu["bench_cores"],
            cpu["other_processes_cores"],
            cpu["stolen_cores"],
            load[0]
        ));
        section.detail("cpu", cpu);
        section.detail("load_at_start", json!(load));
        results.push((*s, section, t.elapsed().as_secs_f64()));
    }
    let load_after = cluster::loadavg();
    if !keep() {
        let _ = std::fs::remove_dir_all(cluster::bench_root());
    }
    let failed = interrupted() || results.iter().any(|(_, s, _)| !s.errors.is_empty());
    if args.json {
        let mut scen = serde_json::Map::new();
        for (s, sec, secs) in &results {
            let mut v = sec.json();
            v["elapsed_s"] = stats::num(*secs);
            scen.insert(s.name().into(), v);
        }
        let (met, missed) = tally(&results);
        let out = json!({
            "bench": "chatmesh",
            "version": env!("CARGO_PKG_VERSION"),
            "quick": ctx.quick,
            "command": command,
            "machine": machine,
            "network": if args.netns { "netns" } else { "loopback" },
            "load_before": load_before.iter().map(|x| stats::num(*x)).collect::<Vec<_>>(),
            "load_after": load_after.iter().map(|x| stats::num(*x)).collect::<Vec<_>>(),
            "elapsed_s": stats::num(ctx.started.elapsed().as_secs_f64()),
            "interrupted": interrupted(),
            "goals": { "met": met, "missed": missed },
            "scenarios": scen,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_table(&ctx, &machine, &command, load_before, load_after, &results);
    }
    cluster::hosts::disable();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn tally(results: &[(Scenario, Section, f64)]) -> (usize, usize) {
    let all = results.iter().flat_map(|(_, s, _)| s.figures.iter().filter_map(|f| f.met()));
    let (met, missed): (Vec<bool>, Vec<bool>) = all.partition(|m| *m);
    (met.len(), missed.len())
}

fn print_table(
    ctx: &Ctx,
    machine: &Value,
    command: &str,
    before: [f64; 3],
    after: [f64; 3],
    results: &[(Scenario, Section, f64)],
) {
    println!();
    println!(
        "ChatMesh bench: {} CPUs ({}), {} GiB, Linux {}",
        machine["nproc"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["mem_gib"],
        machine["kernel"].as_str().unwrap_or("?")
    );
    println!("command: {command}");
    println!(
        "network: {}",
        if cluster::hosts::enabled() { "a network namespace per node on one bridge" } else { "loopback" }
    );
    println!(
        "load average before {:.2} {:.2} {:.2}, after {:.2} {:.2} {:.2}; {:.0} s in all",
        before[0],
        before[1],
        before[2],
        after[0],
        after[1],
        after[2],
        ctx.started.elapsed().as_secs_f64()
    );
    if ctx.quick {
        println!("--quick: small sizes and few runs; the figures are not comparable with the goals");
    }
    let mut rows = vec![["scenario".to_string(), "figure".into(), "value".into(), "goal".into(), "met".into()]];
    for (s, sec, _) in results {
        for f in &sec.figures {
            let met = match f.met() {
                Some(true) => "yes",
                Some(false) => "NO",
                None if f.goal.is_some() => "?",
                None => "",
            };
            rows.push([s.name().into(), f.label.clone(), f.text(), f.goal_text(), met.into()]);
        }
        for e in &sec.errors {
            rows.push([s.name().into(), format!("FAILED: {e}"), String::new(), String::new(), String::new()]);
        }
    }
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let w: Vec<usize> = (0..5).map(width).collect();
    println!();
    for (k, r) in rows.iter().enumerate() {
        println!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
        if k == 0 {
            println!("{}", "-".repeat(w.iter().sum::<usize>() + 8 + 3));
        }
    }
    for (s, sec, _) in results {
        for n in &sec.notes {
            println!("{}: {n}", s.name());
        }
    }
    let (met, missed) = tally(results);
    println!("\ngoals met: {met}, missed: {missed}");
}

/// The machine the bench ran on.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|x| x.parse().ok())
        .unwrap_or(f64::NAN);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "mem_gib": stats::num((mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "kernel": kernel,
        "tmpdir": std::env::temp_dir().display().to_string(),
    })
}

/// Two busy threads (one per core of the reference machine) until dropped.
pub struct Hog {
    stop: std::sync::Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hog {
    pub fn start(n: usize) -> Hog {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x: u64 = 1;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                        }
                    }
                })
            })
            .collect();
        Hog { stop, threads }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A pseudo-random duration below `max` (from the clock), to spread failures over the heartbeat phase.
pub fn jitter(max: Duration) -> Duration {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let x = (n as u64).wrapping_mul(6364136223846793005) >> 20;
    Duration::from_nanos(x % max.as_nanos().max(1) as u64)
}
