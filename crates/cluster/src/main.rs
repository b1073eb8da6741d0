//! `chatmesh-cluster chaos`: a chaos run on real processes in network namespaces (needs root).

use chatmesh_cluster::{run, ChaosOptions};
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "chatmesh-cluster", about = "Chaos runs of real chatmesh nodes in network namespaces (root)")]
struct Cli {
    /// Number of nodes.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..=50))]
    nodes: u16,
    /// Seconds of faults while the clients send.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Seed of the fault schedule and the client choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Client messages per second (all clients together).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Client threads.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Output directory (operations, faults, node output and logs, summary.json) [default: a new temp dir].
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Print the summary as JSON too.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = cli.dir.unwrap_or_else(|| std::env::temp_dir().join(format!("chatmesh-chaos-{}", std::process::id())));
    let opts = ChaosOptions {
        nodes: cli.nodes as usize,
        duration: Duration::from_secs(cli.secs),
        seed: cli.seed,
        rate: cli.rate,
        clients: cli.clients.max(1),
        dir: dir.clone(),
        converge_limit: Duration::from_secs(60),
    };
    match run(&opts) {
        Ok(summary) => {
            summary.print();
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&summary).unwrap_or_default());
            }
            println!("  output in {}", dir.display());
            if summary.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("chatmesh-cluster: {e}");
            ExitCode::FAILURE
        }
    }
}
