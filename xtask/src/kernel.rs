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

/// What the image step needs from a kernel build.
pub struct KernelBuild {
    /// Kernel files in target/artifacts/<arch>/ (vmlinuz and vmlinux, Image, ...).
    pub files: Vec<std::path::PathBuf>,
    /// sha256 of the kernel source (tarball) the build used, when known.
    pub source_sha256: Option<String>,
    /// sha256 of the final .config, when known.
    pub config_sha256: Option<String>,
}

/// The kernel file names per arch, in target/artifacts/<arch>/.
pub fn file_names(arch: crate::arch::Arch) -> &'static [&'static str] {
    use crate::arch::Arch;
    match arch {
        Arch::X86_64 => &["vmlinuz", "vmlinux"],
        Arch::Aarch64 => &["Image"],
        Arch::Ppc64le => &["vmlinux"],
        Arch::S390x => &["vmlinuz"],
    }
}

/// Placeholder until the kernel branch lands (its real version replaces this
/// on merge): the kernel artifacts if they exist.
pub fn ensure_built(arch: crate::arch::Arch) -> Result<KernelBuild> {
    let dir = crate::paths::artifacts_dir(arch);
    let files: Vec<_> = file_names(arch)
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    if files.is_empty() {
        bail!(
            "no kernel in {}: run `cargo xtask kernel --arch {arch}` first",
            dir.display()
        );
    }
    Ok(KernelBuild {
        files,
        source_sha256: None,
        config_sha256: None,
    })
}
