//! Assemble the guest rootfs from a recipe and its package lock.

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "x86_64")]
    arch: crate::arch::ArchSelection,
}

pub fn run(args: Args) -> Result<()> {
    let _ = args.arch;
    bail!("`cargo xtask rootfs` is not implemented yet")
}
