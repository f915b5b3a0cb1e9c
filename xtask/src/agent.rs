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

/// Placeholder until the cross-build branch lands (its real version replaces
/// this on merge): the agent artifact if it exists.
pub fn ensure_built(arch: crate::arch::Arch) -> Result<std::path::PathBuf> {
    let path = crate::paths::artifacts_dir(arch).join("kata-agent");
    if !path.is_file() {
        bail!(
            "{} does not exist: run `cargo xtask agent --arch {arch}` first",
            path.display()
        );
    }
    Ok(path)
}
