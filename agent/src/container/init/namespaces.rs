//! Namespaces of the container init: join the ones the spec gives a path
//! for, create the others; or, for an exec, join every namespace of the
//! running container.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_truncate(t as i32)
}

/// Join (by path) or create the namespaces of a new container. Paths are all
/// opened before any setns: joining a mount namespace changes what paths mean.
pub fn enter(namespaces: &[LinuxNamespace]) -> Result<()> {
    let mut joins = Vec::new();
    let mut new = CloneFlags::empty();
    for ns in namespaces {
        match ns.path() {
            Some(path) => {
                let f = File::open(path)
                    .with_context(|| format!("opening namespace {}", path.display()))?;
                joins.push((f, ns.typ(), path));
            }
            None => new |= clone_flag(ns.typ()),
        }
    }
    for (f, typ, path) in joins {
        setns(&f, clone_flag(typ))
            .with_context(|| format!("joining {typ} namespace {}", path.display()))?;
    }
    unshare(new).with_context(|| format!("creating namespaces {new:?}"))?;
    Ok(())
}

/// The namespaces an exec joins, in order (mnt last among those that change
/// path resolution; pid only affects children).
const EXEC_NAMESPACES: [(&str, CloneFlags); 6] = [
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Join the namespaces of the process `pid`; returns its root directory
/// (opened before joining), to chroot into afterwards.
pub fn join_process(pid: i32) -> Result<OwnedFd> {
    let proc_dir = format!("/proc/{pid}");
    let root = open(
        Path::new(&format!("{proc_dir}/root")),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening the root of the container init (pid {pid})"))?;
    let mut joins = Vec::new();
    for (name, flag) in EXEC_NAMESPACES {
        let theirs = format!("{proc_dir}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        if !Path::new(&theirs).exists() || same_file(Path::new(&theirs), Path::new(&ours)) {
            continue;
        }
        let f = File::open(&theirs).with_context(|| format!("opening {theirs}"))?;
        joins.push((f, flag, theirs));
    }
    for (f, flag, path) in joins {
        setns(&f, flag).with_context(|| format!("joining {path}"))?;
    }
    Ok(root)
}

/// On a cgroup v2 guest the container gets a cgroup namespace rooted at its
/// own cgroup, as Kata's agent does (src/agent/rustjail/src/container.rs:
/// unshare CLONE_NEWCGROUP when the hierarchy is unified). Called once the
/// agent has moved the process into its cgroup; a spec that lists a cgroup
/// namespace has it already.
pub fn cgroup_ns_on_v2(namespaces: &[LinuxNamespace]) -> Result<()> {
    if namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup)
    {
        return Ok(());
    }
    let unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if unified {
        unshare(CloneFlags::CLONE_NEWCGROUP).context("creating a cgroup namespace")?;
    }
    Ok(())
}
