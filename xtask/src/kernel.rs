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

/// A built kernel in target/artifacts/<arch>/. Same shape as the kernel
/// branch's `KernelArtifacts`, which replaces this placeholder on merge.
#[derive(Debug, Clone)]
pub struct KernelArtifacts {
    #[allow(dead_code)] // read by the real kernel step
    pub arch: crate::arch::Arch,
    /// vmlinuz on x86_64 and s390x, Image on aarch64, vmlinux on ppc64le.
    pub image: std::path::PathBuf,
    /// x86_64 only: the uncompressed ELF vmlinux.
    pub pvh_vmlinux: Option<std::path::PathBuf>,
    /// The final kernel .config.
    pub config: std::path::PathBuf,
    /// The cache key (hash of every input).
    pub cache_key: String,
    /// `uname -r` of the kernel.
    pub release: String,
    /// Where the source came from.
    pub source: String,
}

/// Placeholder until the kernel branch lands (its real version replaces this
/// on merge): the kernel artifacts if they exist.
pub fn ensure_built(arch: crate::arch::Arch) -> Result<KernelArtifacts> {
    use crate::arch::Arch;
    let dir = crate::paths::artifacts_dir(arch);
    let name = match arch {
        Arch::X86_64 | Arch::S390x => "vmlinuz",
        Arch::Aarch64 => "Image",
        Arch::Ppc64le => "vmlinux",
    };
    let image = dir.join(name);
    if !image.is_file() {
        bail!(
            "{} does not exist: run `cargo xtask kernel --arch {arch}` first",
            image.display()
        );
    }
    let vmlinux = dir.join("vmlinux");
    Ok(KernelArtifacts {
        arch,
        image,
        pvh_vmlinux: (arch == Arch::X86_64 && vmlinux.is_file()).then_some(vmlinux),
        config: dir.join("kernel.config"),
        cache_key: "placeholder".to_string(),
        release: "placeholder".to_string(),
        source: "placeholder".to_string(),
    })
}
