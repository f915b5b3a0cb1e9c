//! One function per Storage driver. Each mounts (or creates) the storage on
//! an already prepared, already validated target directory.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};
use protocols::agent::Storage;

use super::fs_group;
use crate::device::{self, Hotplug};
use crate::mount_options;

/// What the registry must undo when the last reference goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undo {
    Unmount,
    /// A plain directory (the "local" driver): remove it with its contents
    /// when the agent created it, never across a mount point below it.
    RemoveDir,
    /// A watchable-bind copy: stop watching, remove the copy.
    Unwatch,
}

/// Driver names this agent handles (GetGuestDetails reports them).
pub const DRIVERS: &[&str] = &[
    "virtio-fs",
    "9p",
    "bind",
    "local",
    "ephemeral",
    "blk",
    "virtio-blk",
    "scsi",
    "mmioblk",
    "nvdimm",
    "blk-ccw",
    super::watcher::DRIVER,
];

/// Kata's option for an emptyDir's fsGroup (kata_types KATA_MOUNT_OPTION_FS_GID):
/// applied by the agent, never given to the filesystem.
const FS_GID: &str = "fsgid";

/// A bind source that is a file needs a file, not a directory, as target.
pub fn wants_file_target(s: &Storage) -> bool {
    (s.driver == "bind" || s.driver == super::watcher::DRIVER) && Path::new(&s.source).is_file()
}

/// The options without those the agent applies itself (`fsgid=`).
pub fn without_agent_options(opts: &[String]) -> Vec<String> {
    opts.iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.trim().starts_with(&format!("{FS_GID}=")))
        .map(str::to_string)
        .collect()
}

/// Opens the mount point again, safely, after something was mounted on it
/// (the descriptor taken before the mount names the covered directory).
pub type Reopen<'a> = &'a dyn Fn() -> Result<OwnedFd>;

pub fn apply(s: &Storage, target: &Path, hotplug: &Hotplug, reopen: Reopen) -> Result<Undo> {
    match s.driver.as_str() {
        "virtio-fs" | "virtiofs" => shared_fs(s, target, "virtiofs", &[]),
        "9p" => shared_fs(
            s,
            target,
            "9p",
            &[
                ("trans", "virtio"),
                ("version", "9p2000.L"),
                ("msize", "8192"),
            ],
        ),
        "bind" => bind(s, target, reopen),
        "ephemeral" => ephemeral(s, target, reopen),
        "local" => local(s, target),
        d if device::BLOCK_DRIVERS.contains(&d) => block(s, target, hotplug, reopen),
        "" => bail!("storage for {}: empty driver", s.mount_point),
        other => bail!(
            "storage for {}: unknown driver {other:?} (supported: {})",
            s.mount_point,
            DRIVERS.join(", ")
        ),
    }
}

fn do_mount(source: &str, target: &Path, fstype: &str, flags: MsFlags, data: &str) -> Result<()> {
    let data = (!data.is_empty()).then_some(data);
    mount(Some(source), target, Some(fstype), flags, data).with_context(|| {
        format!(
            "mounting {source} ({fstype}, options {:?}) on {}",
            data.unwrap_or(""),
            target.display()
        )
    })
}

/// virtio-fs and 9p: the source is the mount tag (Kata's is "kataShared").
fn shared_fs(s: &Storage, target: &Path, fstype: &str, defaults: &[(&str, &str)]) -> Result<Undo> {
    if s.source.is_empty() {
        bail!(
            "{} storage for {}: empty source (mount tag)",
            s.driver,
            s.mount_point
        );
    }
    let (flags, data) = with_defaults(&s.options, defaults);
    let fstype = if s.fstype.is_empty() {
        fstype
    } else {
        &s.fstype
    };
    do_mount(&s.source, target, fstype, flags, &data)?;
    Ok(Undo::Unmount)
}

/// mount flags and data, with `key=value` defaults for keys not given.
fn with_defaults(opts: &[String], defaults: &[(&str, &str)]) -> (MsFlags, String) {
    let (flags, mut data) = mount_options::parse(opts).flags_and_data();
    for (key, value) in defaults {
        if mount_options::value(opts, key).is_none() {
            if !data.is_empty() {
                data.push(',');
            }
            data.push_str(&format!("{key}={value}"));
        }
    }
    (flags, data)
}

fn bind(s: &Storage, target: &Path, reopen: Reopen) -> Result<Undo> {
    let source = Path::new(&s.source);
    if !source.is_absolute() || !source.exists() {
        bail!(
            "bind storage for {}: source {:?} must be an existing absolute path",
            s.mount_point,
            s.source
        );
    }
    let (flags, _) = mount_options::parse(&s.options).flags_and_data();
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind mounting {} on {}", s.source, target.display()))?;
    // A bind mount ignores ro/nosuid/... until remounted.
    let extra = flags - MsFlags::MS_BIND - MsFlags::MS_REC;
    if !extra.is_empty() {
        let remount = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra;
        let result = reopen().and_then(|fd| {
            let top = format!("/proc/self/fd/{}", fd.as_raw_fd());
            mount(
                None::<&str>,
                top.as_str(),
                None::<&str>,
                remount,
                None::<&str>,
            )
            .map_err(anyhow::Error::from)
        });
        if let Err(e) = result {
            // Unmount the top of the mount point, which is the mount just
            // made: `target` names the directory below it, which may be a
            // mount that is not ours.
            if let Ok(fd) = reopen() {
                let top = format!("/proc/self/fd/{}", fd.as_raw_fd());
                let _ = nix::mount::umount2(top.as_str(), nix::mount::MntFlags::MNT_DETACH);
            }
            return Err(e)
                .with_context(|| format!("applying {:?} to {}", s.options, target.display()));
        }
    }
    Ok(Undo::Unmount)
}

/// An emptyDir `medium: Memory` or the sandbox shm (Kata's runtime:
/// kata_agent.go handleEphemeralStorage, startSandbox). `fsgid=N` is done
/// as Kata's agent does (storage/ephemeral_handler.rs): chgrp and setgid on
/// the new tmpfs; a stray `remount` is no flag for a first mount; `size=`
/// and `mode=` are tmpfs's own.
fn ephemeral(s: &Storage, target: &Path, reopen: Reopen) -> Result<Undo> {
    let (flags, data) = mount_options::parse(&without_agent_options(&s.options)).flags_and_data();
    let flags = flags - MsFlags::MS_REMOUNT;
    let fstype = if s.fstype.is_empty() {
        "tmpfs"
    } else {
        &s.fstype
    };
    let source = if s.source.is_empty() {
        "tmpfs"
    } else {
        &s.source
    };
    do_mount(
        source,
        target,
        fstype,
        flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        &data,
    )?;
    if let Some(gid) = mount_options::value(&s.options, FS_GID) {
        let result = gid
            .parse::<u32>()
            .with_context(|| format!("{FS_GID}={gid:?} is not a group id"))
            .and_then(|gid| {
                // The new tmpfs's root, not the directory it covers.
                let fd = reopen()?;
                fs_group::set_group(Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())), gid)
            });
        if let Err(e) = result {
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
            return Err(e).with_context(|| format!("ephemeral storage {}", s.mount_point));
        }
    }
    Ok(Undo::Unmount)
}

/// Kata's "local" driver: a directory on the guest's own disk/memory, with
/// the mode from `mode=` (default 0777, what Kata's runtime sends), and
/// the fsGroup's gid: the runtime's `fsgid=` option (kata_agent.go
/// handleLocalStorage; Kata's local_handler.rs chgrps and adds setgid), or
/// the Storage's `fs_group`.
fn local(s: &Storage, target: &Path) -> Result<Undo> {
    let mode = match mount_options::value(&s.options, "mode") {
        Some(m) => u32::from_str_radix(m, 8)
            .with_context(|| format!("local storage {}: mode {m:?} is not octal", s.mount_point))?,
        None => 0o777,
    };
    if mode > 0o7777 {
        bail!(
            "local storage {}: mode {mode:o} is out of range",
            s.mount_point
        );
    }
    let gid = match mount_options::value(&s.options, FS_GID) {
        Some(g) => Some(g.parse::<u32>().with_context(|| {
            format!(
                "local storage {}: {FS_GID}={g:?} is not a group id",
                s.mount_point
            )
        })?),
        None => s.fs_group.as_ref().map(|g| g.group_id),
    };
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", target.display()))?;
    if let Some(gid) = gid {
        fs_group::set_group(target, gid)?;
    }
    Ok(Undo::RemoveDir)
}

/// A filesystem on a disk (blk, scsi, mmioblk, nvdimm, blk-ccw): wait for
/// the disk, mount it, and give it to the pod's fsGroup (Kata:
/// storage/block_handler.rs, common_storage_handler + set_ownership).
fn block(s: &Storage, target: &Path, hotplug: &Hotplug, reopen: Reopen) -> Result<Undo> {
    if s.fstype.is_empty() {
        bail!("{} storage for {}: empty fstype", s.driver, s.mount_point);
    }
    let dev = device::storage_disk(hotplug, &s.driver, &s.source)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} storage for {}", s.driver, s.mount_point))?;
    let (flags, data) = mount_options::parse(&s.options).flags_and_data();
    do_mount(&dev.to_string_lossy(), target, &s.fstype, flags, &data)?;
    if let Some(group) = s.fs_group.as_ref() {
        let read_only = flags.contains(MsFlags::MS_RDONLY);
        let result = reopen().and_then(|fd| {
            let top = format!("/proc/self/fd/{}", fd.as_raw_fd());
            fs_group::apply(Path::new(&top), group, read_only)
        });
        if let Err(e) = result {
            // The top of the mount point is the mount just made.
            if let Ok(fd) = reopen() {
                let top = format!("/proc/self/fd/{}", fd.as_raw_fd());
                let _ = nix::mount::umount2(top.as_str(), nix::mount::MntFlags::MNT_DETACH);
            }
            return Err(e).with_context(|| format!("{} storage for {}", s.driver, s.mount_point));
        }
    }
    Ok(Undo::Unmount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ninep_defaults_fill_only_missing_keys() {
        let defaults = [
            ("trans", "virtio"),
            ("version", "9p2000.L"),
            ("msize", "8192"),
        ];
        let (flags, data) = with_defaults(
            &["nodev".into(), "cache=mmap,msize=512000".into()],
            &defaults,
        );
        assert_eq!(flags, MsFlags::MS_NODEV);
        assert_eq!(
            data,
            "cache=mmap,msize=512000,trans=virtio,version=9p2000.L"
        );
    }

    #[test]
    fn unknown_driver_is_named() {
        let mut s = Storage::new();
        s.driver = "nfs-magic".into();
        s.mount_point = "/run/kata-containers/x".into();
        let hp = Hotplug::new(std::time::Duration::ZERO);
        let err = apply(&s, Path::new("/nonexistent"), &hp, &|| {
            anyhow::bail!("unused")
        })
        .expect_err("unknown");
        assert!(format!("{err:#}").contains("nfs-magic"), "{err:#}");
    }
}
