//! `chatmesh`: the ChatMesh binary.

mod demo;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "chatmesh", version, about = "A serverless group chat with an elected coordinator")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a whole mesh and narrate it: discovery, IDs, chat, failover, partition and merge.
    ///
    /// Today the mesh runs in the deterministic simulator (virtual time, the real protocol core); real
    /// processes on this machine come with the node driver.
    Demo {
        /// Number of nodes (4 to 8).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(4..=8))]
        nodes: u16,
        /// Seed of the simulated network: the same seed tells the same story.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::Demo { nodes, seed }) => demo::run(&demo::DemoOptions { nodes: nodes.into(), seed }),
        None => {
            eprintln!("chatmesh: joining a mesh interactively needs the node driver, which is not built yet.");
            eprintln!("Try `chatmesh demo`, or `chatmesh --help`.");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}
