//! `cargo xtask`: the kata-image pipeline. One module per step; each step is a
//! function of its inputs and writes its artifact under `target/artifacts/<arch>/`.
//! See ARCHITECTURE.md for the data flow.

mod arch;
mod cache;
mod paths;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::arch::ArchSelection;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, test and ship kata-image guest assets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cross-compile the agent: target/artifacts/<arch>/kata-agent.
    Agent {
        #[arg(long, default_value = "x86_64")]
        arch: ArchSelection,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent { arch } => {
            for a in arch.arches() {
                anyhow::bail!("agent build for {a} is not wired yet");
            }
            Ok(())
        }
    }
}
