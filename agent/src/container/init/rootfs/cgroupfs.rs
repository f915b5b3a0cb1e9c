//! The spec's cgroup filesystem mount (Kata's runtime puts a read-only
//! `/sys/fs/cgroup` in every spec), built as Kata's agent builds it
//! (src/agent/rustjail/src/mount.rs mount_cgroups, mount_cgroups_v2): on a
//! unified guest a cgroup2 mount; on a cgroup v1 guest a tmpfs holding, per
//! controller hierarchy, a bind mount of the container's own cgroup there,
//! named as the guest names the hierarchy (`cpu,cpuacct`), with a symlink
//! per controller of a co-mounted hierarchy (`cpu -> cpu,cpuacct`), and the
//! name=systemd hierarchy the same way but writable; the read-only flag
//! applies to the binds and then to the tmpfs. The container init is in its
//! cgroups by now (/proc/self/cgroup names them).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};

use crate::mountinfo;
use crate::safe_path;

/// `open_dest` opens the mount destination inside the rootfs afresh: after
/// each mount on it, a new descriptor is needed to reach the new mount.
pub fn mount_cgroupfs(open_dest: &dyn Fn() -> Result<OwnedFd>, flags: MsFlags) -> Result<()> {
    let unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if unified {
        let dest = open_dest()?;
        return mount(
            Some("cgroup2"),
            &fd_path(&dest),
            Some("cgroup2"),
            flags,
            None::<&str>,
        )
        .context("mounting cgroup2");
    }
    let hierarchies = own_hierarchies()?;
    let dest = open_dest()?;
    let tmpfs_flags = MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(
        Some("tmpfs"),
        &fd_path(&dest),
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )
    .context("mounting the tmpfs for the cgroup v1 hierarchies")?;
    // The fresh tmpfs holds nothing but what is made here: paths below it
    // are safe to use.
    let tmpfs_fd = open_dest()?;
    let tmpfs = fd_path(&tmpfs_fd);
    for h in &hierarchies {
        bind_hierarchy(&tmpfs, h, flags)?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let again = open_dest()?;
        remount_readonly(&fd_path(&again), tmpfs_flags)
            .context("making the cgroup tmpfs read-only")?;
    }
    Ok(())
}

/// One v1 controller hierarchy the container init is in.
#[derive(Debug, PartialEq, Eq)]
struct Hierarchy {
    /// The guest's name for it: its mount point's last component.
    name: String,
    /// Its controllers (`cpu`, `cpuacct`; none for name=systemd).
    controllers: Vec<String>,
    /// name=systemd: systemd in the container writes there (Kata keeps it
    /// writable).
    writable: bool,
    /// The container's cgroup directory in the guest.
    source: PathBuf,
}

fn own_hierarchies() -> Result<Vec<Hierarchy>> {
    let cgroups =
        std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
    Ok(hierarchies(&cgroups, &mountinfo::entries()?))
}

/// The named v1 hierarchy the agent's cgroups (cgroups-rs) include.
const SYSTEMD: &str = "name=systemd";

/// Join /proc/self/cgroup (`id:controllers:path`) with the v1 mounts. Other
/// named hierarchies and cgroup2 are left out, as Kata leaves out what has
/// no cgroup path of the container.
fn hierarchies(cgroups: &str, mounts: &[mountinfo::Entry]) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let systemd = ctrls == SYSTEMD;
        if ctrls.is_empty() || (ctrls.starts_with("name=") && !systemd) {
            continue;
        }
        let options: Vec<&str> = ctrls.split(',').collect();
        let Some(m) = mounts.iter().find(|m| {
            m.fstype == "cgroup"
                && options
                    .iter()
                    .all(|c| m.super_options.split(',').any(|o| o == *c))
        }) else {
            continue;
        };
        let Some(name) = m.mount_point.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // The path is relative to the hierarchy's root; the mount may show
        // a subdirectory of it (field 4).
        let path = Path::new(path);
        let below = path.strip_prefix(&m.root).unwrap_or(path);
        let below = below.strip_prefix("/").unwrap_or(below);
        let controllers = if systemd {
            Vec::new()
        } else {
            options.iter().map(|c| c.to_string()).collect()
        };
        out.push(Hierarchy {
            name: name.to_string(),
            controllers,
            writable: systemd,
            source: m.mount_point.join(below),
        });
    }
    out
}

fn bind_hierarchy(tmpfs: &Path, h: &Hierarchy, flags: MsFlags) -> Result<()> {
    let target = tmpfs.join(&h.name);
    std::fs::create_dir(&target).with_context(|| format!("creating {}", h.name))?;
    mount(
        Some(&h.source),
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind-mounting {} as {}", h.source.display(), h.name))?;
    if flags.contains(MsFlags::MS_RDONLY) && !h.writable {
        let extra = flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        remount_readonly(&target, extra)
            .with_context(|| format!("making the {} hierarchy read-only", h.name))?;
    }
    for c in h.controllers.iter().filter(|c| **c != h.name) {
        std::os::unix::fs::symlink(&h.name, tmpfs.join(c))
            .with_context(|| format!("linking {c} to {}", h.name))?;
    }
    Ok(())
}

fn remount_readonly(target: &Path, extra: MsFlags) -> Result<()> {
    Ok(mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra,
        None::<&str>,
    )?)
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Open `rel` in `rootfs` as a path descriptor (for `mount_cgroupfs`).
pub fn opener<'a>(rootfs: &'a Path, rel: &'a Path) -> impl Fn() -> Result<OwnedFd> + 'a {
    move || {
        safe_path::open_in_root(rootfs, rel, libc::O_PATH | libc::O_CLOEXEC)
            .with_context(|| format!("opening {} in the rootfs", rel.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(mount_point: &str, fstype: &str, opts: &str) -> mountinfo::Entry {
        mountinfo::Entry {
            root: PathBuf::from("/"),
            mount_point: PathBuf::from(mount_point),
            fstype: fstype.into(),
            super_options: opts.into(),
        }
    }

    #[test]
    fn hierarchies_join_proc_cgroup_with_the_v1_mounts() {
        let mounts = [
            entry("/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
            entry("/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
            entry("/sys/fs/cgroup/systemd", "cgroup", "rw,xattr,name=systemd"),
            entry("/sys/fs/cgroup/other", "cgroup", "rw,name=other"),
            entry("/sys/fs/cgroup/unified", "cgroup2", "rw"),
        ];
        let cgroups = "5:cpu,cpuacct:/kata/c1\n4:memory:/kata/c1\n2:name=other:/\n1:name=systemd:/kata/c1\n0::/\n";
        let got = hierarchies(cgroups, &mounts);
        assert_eq!(
            got,
            vec![
                Hierarchy {
                    name: "cpu,cpuacct".into(),
                    controllers: vec!["cpu".into(), "cpuacct".into()],
                    writable: false,
                    source: PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/kata/c1"),
                },
                Hierarchy {
                    name: "memory".into(),
                    controllers: vec!["memory".into()],
                    writable: false,
                    source: PathBuf::from("/sys/fs/cgroup/memory/kata/c1"),
                },
                Hierarchy {
                    name: "systemd".into(),
                    controllers: vec![],
                    writable: true,
                    source: PathBuf::from("/sys/fs/cgroup/systemd/kata/c1"),
                },
            ]
        );
    }
}
