//! What a guest boots, resolved once per arch before the first boot: the
//! agent first (its compile errors show in seconds), then the kernel, then
//! the image built from exactly those two. Paths given on the command line
//! win and skip the step they replace.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::qemu::{Boot, Machine};
use super::{BootMode, VmOpts};
use crate::agent::Profile;
use crate::arch::Arch;
use crate::image::verity::Verity;

/// Kernel and root filesystem of one arch, for any of its machines.
#[derive(Clone, Debug)]
pub struct GuestAssets {
    /// The image `-kernel` takes (bzImage, Image, vmlinux).
    pub kernel: PathBuf,
    /// The PVH ELF vmlinux (x86_64), for machines that boot it.
    pub pvh_vmlinux: Option<PathBuf>,
    pub boot: Boot,
    /// The image's measured root (`--verity`).
    pub verity: Option<Verity>,
}

impl GuestAssets {
    /// The kernel file `machine` boots on `arch`.
    ///
    /// q35 with qboot takes the PVH vmlinux when there is one, as Kata
    /// boots its uncompressed vmlinux.container: no bzImage decompression
    /// and no KASLR pass (x86_64 under TCG: boot median 2705 -> 2550 ms, 8
    /// boots each, load 9). Without one (`--kernel` alone) it boots that.
    pub fn kernel_for(&self, machine: Machine, arch: Arch) -> Result<&Path> {
        if let (Machine::Q35Qboot, Some(vmlinux)) = (machine, &self.pvh_vmlinux) {
            return Ok(vmlinux);
        }
        if !machine.wants_vmlinux(arch) {
            return Ok(&self.kernel);
        }
        self.pvh_vmlinux.as_deref().with_context(|| {
            format!(
                "machine {} needs the PVH vmlinux, and there is none for {arch} \
                 (give one with --vmlinux)",
                machine.name()
            )
        })
    }

    /// The same kernel with another root filesystem (`bench vm --fs`), one
    /// without a measured root.
    pub fn with_rootfs(&self, rootfs: PathBuf) -> GuestAssets {
        let boot = match self.boot {
            Boot::Image(_) => Boot::Image(rootfs),
            Boot::Initrd(_) => Boot::Initrd(rootfs),
        };
        GuestAssets {
            boot,
            verity: None,
            ..self.clone()
        }
    }

    /// Every file exists (a given path may be wrong).
    fn check(&self) -> Result<()> {
        let rootfs = match &self.boot {
            Boot::Image(p) | Boot::Initrd(p) => p,
        };
        for path in std::iter::once(&self.kernel)
            .chain(self.pvh_vmlinux.iter())
            .chain(std::iter::once(rootfs))
        {
            if !path.is_file() {
                bail!("guest asset {} does not exist", path.display());
            }
        }
        Ok(())
    }
}

/// The agent of `profile`: a release one as `image` takes it (also from
/// KATA_IMAGE_AGENT), a loop one always built here.
fn agent(arch: Arch, profile: Profile) -> Result<PathBuf> {
    match profile {
        Profile::Release => crate::rootfs::agent_binary(arch, None),
        Profile::Loop => crate::agent::ensure_built_profile(arch, profile),
    }
    .with_context(|| format!("building the agent ({})", profile.name()))
}

/// Build (or take from the caches) what changed, each step once. Returns
/// the assets and the agent they contain (None when `--rootfs` was given).
pub fn resolve(arch: Arch, opts: &VmOpts) -> Result<(GuestAssets, Option<PathBuf>)> {
    let agent = match &opts.rootfs {
        Some(_) => None,
        None => Some(agent(arch, opts.agent_profile())?),
    };
    let built = if opts.kernel.is_none() || agent.is_some() {
        Some(
            crate::image::default_kernel(arch, opts.kernel_profile)
                .context("building the guest kernel")?,
        )
    } else {
        None
    };
    let kernel = opts
        .kernel
        .clone()
        .or_else(|| built.as_ref().map(|b| b.image.clone()))
        .context("no guest kernel: give one with --kernel")?;
    let pvh_vmlinux = opts
        .vmlinux
        .clone()
        .or_else(|| built.as_ref().and_then(|b| b.pvh_vmlinux.clone()))
        .filter(|p| p.is_file());
    let (rootfs, verity) = match (&opts.rootfs, agent.as_deref().zip(built.as_ref())) {
        (Some(r), _) => (r.clone(), None),
        (None, Some((agent, kernel))) => {
            let image = match opts.agent_profile() {
                Profile::Release => crate::image::ensure_built(arch, agent, kernel, opts.verity)?,
                Profile::Loop => crate::image::ensure_scratch_built(
                    arch,
                    agent,
                    &crate::paths::loop_dir(arch),
                    opts.verity,
                )?,
            };
            match opts.boot {
                BootMode::Image => (image.image, image.verity),
                BootMode::Initrd => (image.initrd, None),
            }
        }
        (None, None) => bail!("no root filesystem: give one with --rootfs"),
    };
    let boot = match opts.boot {
        BootMode::Image => Boot::Image(rootfs),
        BootMode::Initrd => Boot::Initrd(rootfs),
    };
    let assets = GuestAssets {
        kernel,
        pvh_vmlinux,
        boot,
        verity,
    };
    assets.check()?;
    Ok((assets, agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assets(pvh_vmlinux: Option<&str>) -> GuestAssets {
        GuestAssets {
            kernel: "/k/vmlinuz".into(),
            pvh_vmlinux: pvh_vmlinux.map(PathBuf::from),
            boot: Boot::Image("/i.img".into()),
            verity: None,
        }
    }

    #[test]
    fn q35_qboot_boots_the_pvh_vmlinux_when_there_is_one() {
        let both = assets(Some("/k/vmlinux"));
        let x86 = Arch::X86_64;
        assert_eq!(
            both.kernel_for(Machine::Q35Qboot, x86).ok(),
            Some(Path::new("/k/vmlinux"))
        );
        assert_eq!(
            both.kernel_for(Machine::Q35, x86).ok(),
            Some(Path::new("/k/vmlinuz"))
        );
        let bz_only = assets(None);
        assert_eq!(
            bz_only.kernel_for(Machine::Q35Qboot, x86).ok(),
            Some(Path::new("/k/vmlinuz"))
        );
        assert!(bz_only.kernel_for(Machine::Microvm, x86).is_err());
    }
}
