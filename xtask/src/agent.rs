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

/// Placeholder until the cross build lands on main (the lead keeps the real
/// one at merge): the agent artifact if it is there.
pub fn ensure_built(arch: crate::arch::Arch) -> Result<std::path::PathBuf> {
    let path = crate::paths::artifacts_dir(arch).join("kata-agent");
    if !path.is_file() {
        bail!(
            "{} is missing and `cargo xtask agent` is not implemented yet",
            path.display()
        );
    }
    Ok(path)
}
