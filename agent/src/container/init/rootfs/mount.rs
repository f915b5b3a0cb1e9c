//! Mounts of the container rootfs.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Mount;

use crate::mount_options;
use crate::safe_path;

/// Mount propagation of / in the new namespace: nothing the container mounts
/// may propagate back to the agent's namespace.
pub fn make_root_private(propagation: Option<&str>) -> Result<()> {
    let flags = match propagation {
        None | Some("") | Some("rslave") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some("slave") => MsFlags::MS_SLAVE,
        Some("rprivate") => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        Some("private") => MsFlags::MS_PRIVATE,
        Some("rshared") => MsFlags::MS_SHARED | MsFlags::MS_REC,
        Some("shared") => MsFlags::MS_SHARED,
        Some("runbindable") => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        Some("unbindable") => MsFlags::MS_UNBINDABLE,
        Some(other) => bail!("linux.rootfsPropagation {other:?} is not a propagation mode"),
    };
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .context("setting the propagation of / in the container's mount namespace")
}

/// pivot_root needs the new root to be a mount point.
pub fn bind_onto_itself(rootfs: &Path) -> Result<()> {
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind-mounting the rootfs {} onto itself", rootfs.display()))
}

/// Create the mount point (a file for a bind mount of a file) inside the
/// rootfs; returns the resolved host path.
fn make_mount_point(rootfs: &Path, dest: &Path, file: bool) -> Result<PathBuf> {
    let target = safe_path::secure_join(rootfs, dest)
        .with_context(|| format!("resolving mount destination {}", dest.display()))?;
    if file {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        if !target.exists() {
            fs::File::create(&target).with_context(|| format!("creating {}", target.display()))?;
        }
    } else {
        fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    }
    Ok(target)
}

/// One mount of the spec. The target is opened inside the rootfs (no
/// symlink on the way may leave it) and mounted on through /proc/self/fd, so
/// what was checked is what gets mounted on.
pub fn mount_in_root(rootfs: &Path, m: &Mount) -> Result<()> {
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = mount_options::parse(m.options().as_deref().unwrap_or_default());
    let bind = typ == "bind" || opts.flags.contains(MsFlags::MS_BIND);
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let is_file = bind && source.is_file();
    let rel = dest.strip_prefix("/").unwrap_or(dest);
    make_mount_point(rootfs, dest, is_file)?;
    let fd = safe_path::open_in_root(rootfs, rel, libc::O_PATH | libc::O_CLOEXEC)
        .with_context(|| format!("opening mount destination {} in the rootfs", dest.display()))?;
    let target = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    let what = || {
        format!(
            "mounting {} ({typ}) on {}",
            source.display(),
            dest.display()
        )
    };
    if bind {
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        mount(Some(&source), &target, None::<&str>, flags, None::<&str>).with_context(what)?;
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            // Bind mounts take their flags only on a remount.
            let fd2 = safe_path::open_in_root(rootfs, rel, libc::O_PATH | libc::O_CLOEXEC)?;
            let t2 = PathBuf::from(format!("/proc/self/fd/{}", fd2.as_raw_fd()));
            mount(
                None::<&str>,
                &t2,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
                None::<&str>,
            )
            .with_context(|| format!("remounting {} with {extra:?}", dest.display()))?;
        }
    } else if typ == "cgroup" || typ == "cgroup2" {
        super::cgroupfs::mount_cgroupfs(&super::cgroupfs::opener(rootfs, rel), opts.flags)
            .with_context(what)?;
    } else {
        mount(Some(&source), &target, Some(typ), opts.flags, data).with_context(what)?;
    }
    if !opts.propagation.is_empty() {
        let fd3 = safe_path::open_in_root(rootfs, rel, libc::O_PATH | libc::O_CLOEXEC)?;
        let t3 = PathBuf::from(format!("/proc/self/fd/{}", fd3.as_raw_fd()));
        mount(
            None::<&str>,
            &t3,
            None::<&str>,
            opts.propagation,
            None::<&str>,
        )
        .with_context(|| format!("setting the propagation of {}", dest.display()))?;
    }
    Ok(())
}

/// Make `rootfs` the root: pivot_root, or (on an initramfs, where
/// pivot_root is refused with EINVAL) move it over / and chroot.
pub fn pivot_or_chroot(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs).with_context(|| format!("chdir {}", rootfs.display()))?;
    match nix::unistd::pivot_root(".", ".") {
        Ok(()) => {
            // The old root is stacked under the new one: detach it.
            umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
        }
        Err(Errno::EINVAL) => {
            mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .context("moving the rootfs over /")?;
            nix::unistd::chroot(".").context("chroot into the rootfs")?;
        }
        Err(e) => return Err(e).context("pivot_root into the rootfs"),
    }
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// A masked path: /dev/null over a file, an empty read-only tmpfs over a
/// directory. Missing paths are fine.
pub fn mask(path: &Path) -> Result<()> {
    let Ok(meta) = fs::metadata(path) else {
        return Ok(());
    };
    let r = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    r.with_context(|| format!("masking {}", path.display()))
}

/// A read-only path: bind it onto itself, then remount read-only.
pub fn make_readonly(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("binding {} onto itself", path.display()))?;
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("making {} read-only", path.display()))
}
