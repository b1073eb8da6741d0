//! `chatmesh`: the ChatMesh binary.

mod bench;
mod commands;
mod config;
mod demo;
mod demo_tui;
mod history;
mod run;
mod sim_demo;
mod term;
mod tui;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "chatmesh",
    version,
    about = "A serverless group chat with an elected coordinator",
    long_about = "A serverless group chat with an elected coordinator.\n\nWith no subcommand, joins the mesh \
                  on the local network (found through multicast) interactively. Settings come from flags, then \
                  CHATMESH_* environment variables, then the config file, then defaults."
)]
struct Cli {
    #[command(flatten)]
    node: config::NodeArgs,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a whole mesh of real nodes on this machine (loopback only) and show the mission working.
    Demo(demo::DemoArgs),
    /// Measure failover, joining, latency, throughput, convergence, scale and memory on real nodes on this
    /// machine (loopback only).
    Bench(bench::BenchArgs),
    /// Print a node's chat history from its data directory, without running the node (safe while it runs);
    /// --verify checks every signature and prints the digest.
    History(history::HistoryArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Demo(args)) => demo::main(args),
        Some(Cmd::Bench(args)) => bench::main(args),
        Some(Cmd::History(args)) => history::main(args, &cli.node),
        None => match config::resolve(&cli.node) {
            Ok(settings) => run::run(settings),
            Err(e) => {
                eprintln!("chatmesh: {e}");
                ExitCode::from(2)
            }
        },
    }
}
