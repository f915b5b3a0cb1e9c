//! Build the guest kernel from the pinned source and fragments, cached by hash.

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "x86_64")]
    arch: crate::arch::ArchSelection,
}

pub fn run(args: Args) -> Result<()> {
    let _ = args.arch;
    bail!("`cargo xtask kernel` is not implemented yet")
}

/// Placeholder until the kernel step lands on main (the lead keeps the real one).
#[allow(dead_code)]
pub struct KernelArtifacts {
    pub dir: std::path::PathBuf,
}

/// Placeholder: the kernel artifacts if they are there.
pub fn ensure_built(arch: crate::arch::Arch) -> Result<KernelArtifacts> {
    let dir = crate::paths::artifacts_dir(arch);
    if !dir.is_dir() {
        bail!(
            "{} is missing and `cargo xtask kernel` is not implemented yet",
            dir.display()
        );
    }
    Ok(KernelArtifacts { dir })
}
