//! Produce the disk image, initrd, manifest.json and SHA256SUMS.

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "x86_64")]
    arch: crate::arch::ArchSelection,
}

pub fn run(args: Args) -> Result<()> {
    let _ = args.arch;
    bail!("`cargo xtask image` is not implemented yet")
}

/// Placeholder until the image step lands on main (the lead keeps the real one).
pub fn ensure_built(arch: crate::arch::Arch) -> Result<()> {
    let img = crate::paths::artifacts_dir(arch).join("kata-containers.img");
    if !img.is_file() {
        bail!(
            "{} is missing and `cargo xtask image` is not implemented yet",
            img.display()
        );
    }
    Ok(())
}
