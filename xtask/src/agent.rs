//! Cross-compile the agent: target/artifacts/<arch>/kata-agent (issue: cross build).

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "x86_64")]
    arch: crate::arch::ArchSelection,
}

pub fn run(args: Args) -> Result<()> {
    let _ = args.arch;
    bail!("`cargo xtask agent` is not implemented yet")
}
