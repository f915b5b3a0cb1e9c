//! Device nodes in the container's /dev: the spec's linux.devices, and the
//! default ones every container gets (null, zero, full, random, urandom, tty).

use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use crate::safe_path;

const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

pub fn create_devices(rootfs: &Path, devices: &[LinuxDevice]) -> Result<()> {
    for (path, major, minor) in DEFAULT_DEVICES {
        if devices.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        make_node(
            rootfs,
            Path::new(path),
            SFlag::S_IFCHR,
            major,
            minor,
            0o666,
            0,
            0,
        )?;
    }
    for d in devices {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                bail!("device {}: type 'a' is not a node type", d.path().display())
            }
        };
        if !d.path().starts_with("/dev") {
            bail!("device {} is not under /dev", d.path().display());
        }
        let mode = d.file_mode().unwrap_or(0o666);
        make_node(
            rootfs,
            d.path(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            mode,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    rootfs: &Path,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let target = safe_path::secure_join(rootfs, path)
        .with_context(|| format!("resolving device {}", path.display()))?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    // A node left by an earlier container in a shared rootfs directory.
    let _ = std::fs::remove_file(&target);
    mknod(
        &target,
        kind,
        Mode::from_bits_truncate(mode & 0o7777),
        makedev(major, minor),
    )
    .with_context(|| format!("creating device {}", path.display()))?;
    // mknod's mode is filtered by the umask; set it exactly.
    std::fs::set_permissions(
        &target,
        std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
    )
    .with_context(|| format!("setting the mode of {}", path.display()))?;
    nix::unistd::chown(&target, Some(uid.into()), Some(gid.into()))
        .with_context(|| format!("setting the owner of {}", path.display()))?;
    Ok(())
}
