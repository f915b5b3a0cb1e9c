//! The container's root filesystem, set up by the container init inside its
//! new mount namespace: the spec's mounts (destinations resolved inside the
//! rootfs; the cgroup filesystem in `cgroupfs`), default devices and /dev
//! symlinks, pivot_root (or move + chroot where pivot_root is impossible, on
//! an initramfs root), then masked and read-only paths.

mod cgroupfs;
mod device;
mod mount;
mod symlink;

use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::MsFlags;
use oci_spec::runtime::Spec;

pub fn setup(spec: &Spec) -> Result<()> {
    let root = spec.root().as_ref().context("the spec has no root")?;
    let rootfs = root.path();
    let linux = spec
        .linux()
        .as_ref()
        .context("the spec has no linux section")?;
    mount::make_root_private(linux.rootfs_propagation().as_deref())?;
    mount::bind_onto_itself(rootfs)?;
    for m in spec.mounts().iter().flatten() {
        mount::mount_in_root(rootfs, m)?;
    }
    device::create_devices(rootfs, linux.devices().as_deref().unwrap_or_default())?;
    symlink::dev_symlinks(rootfs)?;
    mount::pivot_or_chroot(rootfs)?;
    // Sysctls apply to the container's namespaces, through its own /proc,
    // before /proc/sys becomes read-only.
    for (key, value) in linux.sysctl().iter().flatten() {
        set_sysctl(key, value)?;
    }
    for p in linux.masked_paths().iter().flatten() {
        mount::mask(Path::new(p))?;
    }
    for p in linux.readonly_paths().iter().flatten() {
        mount::make_readonly(Path::new(p))?;
    }
    if root.readonly().unwrap_or(false) {
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .context("remounting the rootfs read-only")?;
    }
    Ok(())
}

fn set_sysctl(key: &str, value: &str) -> Result<()> {
    if key.is_empty()
        || key.split('.').any(|part| part.is_empty() || part == "..")
        || key.contains('/')
    {
        anyhow::bail!("sysctl {key:?} is not a sysctl name");
    }
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&path, value).with_context(|| format!("setting sysctl {key}={value}"))
}
