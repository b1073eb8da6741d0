//! `chatmesh-sim`: run the simulator from the command line.

use chatmesh_sim::{failover_run, percentiles, random_run, run_parallel, Failure};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "chatmesh-sim", about = "ChatMesh deterministic simulator")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Failover time in virtual time, over many seeds, for a crash (links reset) and a silent failure.
    Failover {
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=64))]
        nodes: u64,
    },
    /// Randomized fault-injection runs; prints failing seeds with the command that replays them.
    Random {
        /// How many seeds (the test runs 2,000 by default).
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        #[arg(long, default_value_t = 0)]
        first: u64,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Failover { seeds, nodes } => failover(seeds, nodes as usize),
        Cmd::Random { seeds, first } => random(first, seeds),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn failover(seeds: u64, nodes: usize) -> ExitCode {
    let list: Vec<u64> = (0..seeds).collect();
    println!("failover of the coordinator of a settled {nodes}-node mesh, {seeds} seeds, virtual time");
    println!("{:<28} {:>10} {:>10} {:>10}", "failure", "p50", "p99", "max");
    let mut ok = true;
    for (failure, label) in [(Failure::Crash, "crash (links reset)"), (Failure::Silent, "silent (SIGSTOP, no reset)")] {
        let results = run_parallel(&list, |s| failover_run(s, nodes, failure));
        let times: Vec<Duration> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        let failed = results.len() - times.len();
        if times.is_empty() {
            println!("{label:<28} no failover completed");
            ok = false;
            continue;
        }
        let (p50, p99, max) = percentiles(times);
        println!("{label:<28} {:>10} {:>10} {:>10}", ms(p50), ms(p99), ms(max));
        if failed > 0 {
            println!("  {failed} seeds did not fail over within 10 s");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn random(first: u64, seeds: u64) -> ExitCode {
    let list: Vec<u64> = (first..first + seeds).collect();
    let outcomes = run_parallel(&list, random_run);
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.problems.is_empty()).collect();
    for o in &failed {
        println!("seed {} failed: {:?}\n  replay: {}", o.seed, o.problems, o.replay_command());
    }
    let settle: Vec<Duration> = outcomes.iter().filter_map(|o| o.settled_after).collect();
    if !settle.is_empty() {
        let (p50, p99, max) = percentiles(settle);
        println!("settled after faults stopped: p50 {}, p99 {}, max {}", ms(p50), ms(p99), ms(max));
    }
    println!("{} passed, {} failed", outcomes.len() - failed.len(), failed.len());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
