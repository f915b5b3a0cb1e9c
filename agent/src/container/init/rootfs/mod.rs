//! The container's root filesystem, set up by the container init inside its
//! new mount namespace: the spec's mounts (destinations resolved inside the
//! rootfs), default devices and /dev symlinks, pivot_root (or move + chroot
//! where pivot_root is impossible, on an initramfs root), then masked and
//! read-only paths.

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
    let mut dev_mounted = false;
    for m in spec.mounts().iter().flatten() {
        mount::mount_in_root(rootfs, m)?;
        dev_mounted |= m.destination() == Path::new("/dev");
    }
    device::create_devices(
        rootfs,
        linux.devices().as_deref().unwrap_or_default(),
        dev_mounted,
    )?;
    symlink::dev_symlinks(rootfs)?;
    mount::pivot_or_chroot(rootfs)?;
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
