//! Storages (the `Storage` messages of CreateSandbox / CreateContainer):
//! virtio-fs, 9p, bind, local, ephemeral, the disks (blk, scsi, mmioblk,
//! nvdimm, blk-ccw: `crate::device` finds them), watchable-bind.
//! Mounted once and reference-counted by mount point, so two containers
//! sharing one storage unmount it once, when the last one goes. Ephemeral
//! storages (emptyDir, shm) and `shared` ones belong to the sandbox: they
//! stay when the last container goes, for a restarted container to find
//! its volume, and go with DestroySandbox.
//!
//! CONTRACT (used by `sandbox`; keep the signatures).
//!
//! Mount points come from the runtime and must lie under
//! `/run/kata-containers/`: they are checked lexically (absolute, no `..`)
//! and then created and opened inside that root with `safe_path`, and the
//! mount goes on the opened descriptor, so a symlink planted in a shared
//! directory cannot send a mount elsewhere.

pub mod drivers;
pub mod fs_group;
pub mod watcher;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{umount2, MntFlags};
use protocols::agent::Storage;

use crate::device::{self, Hotplug};
use crate::mount_options;
use crate::mountinfo;
use crate::owned::{self, Made};
use crate::safe_path;
use drivers::Undo;

/// Every storage mount point must be below this directory.
pub const STORAGE_ROOT: &str = "/run/kata-containers";

/// Mounted storages of the sandbox, by guest mount point.
#[derive(Default)]
pub struct StorageRegistry {
    entries: HashMap<String, Entry>,
    /// Where disks are looked for and how long for (agent.hotplug_timeout).
    pub hotplug: Hotplug,
    /// The watchable-bind copies (configMaps, secrets).
    pub watcher: watcher::Watcher,
}

struct Entry {
    /// Containers (or the sandbox) using it; a sandbox-owned entry may sit
    /// at 0 until the next container or DestroySandbox.
    refs: usize,
    /// Kept at 0 references (ephemeral or `shared`).
    sandbox_owned: bool,
    undo: Undo,
    /// The mount point as the kernel names it (symlinks resolved).
    real: PathBuf,
    /// We created the mount point directory, so we remove it at the end.
    created: bool,
    /// What `owned` records for it.
    made: Vec<Made>,
}

impl StorageRegistry {
    /// Mount every storage (or take one more reference on an already mounted
    /// one); returns their guest mount points in order. On error nothing of
    /// this call stays mounted or referenced.
    pub fn add(&mut self, storages: &[Storage]) -> Result<Vec<String>> {
        let mut done: Vec<(String, bool)> = Vec::new();
        for s in storages {
            match self.add_one(s) {
                Ok(new) => done.push((s.mount_point.clone(), new)),
                Err(e) => {
                    if let Err(undo) = self.undo_add(&done) {
                        return Err(
                            e.context(format!("and undoing the earlier storages: {undo:#}"))
                        );
                    }
                    return Err(e);
                }
            }
        }
        Ok(done.into_iter().map(|(mp, _)| mp).collect())
    }

    /// Take back what a failed `add` did: its new mounts go even when they
    /// are sandbox-owned, the other entries lose the reference it took.
    fn undo_add(&mut self, done: &[(String, bool)]) -> Result<()> {
        let mut errors = Vec::new();
        for (mp, new) in done {
            let key = key_of(mp);
            let result = if *new {
                match self.entries.remove(&key) {
                    Some(entry) => self.release(&entry),
                    None => Ok(()),
                }
            } else {
                self.remove(std::slice::from_ref(mp))
            };
            if let Err(e) = result {
                errors.push(format!("{e:#}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("{}", errors.join("; "))
        }
    }

    /// Drop one reference on each mount point; unmount the ones at zero.
    /// Unknown mount points are an error, after the known ones are handled.
    pub fn remove(&mut self, mount_points: &[String]) -> Result<()> {
        let mut errors = Vec::new();
        for mp in mount_points {
            let key = key_of(mp);
            let Some(entry) = self.entries.get_mut(&key).filter(|e| e.refs > 0) else {
                errors.push(format!("storage {mp} is not mounted"));
                continue;
            };
            entry.refs -= 1;
            if entry.refs > 0 || entry.sandbox_owned {
                continue;
            }
            if let Some(entry) = self.entries.remove(&key) {
                if let Err(e) = self.release(&entry) {
                    errors.push(format!("{e:#}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("removing storages: {}", errors.join("; "))
        }
    }

    /// Unmount everything (DestroySandbox).
    pub fn clear(&mut self) -> Result<()> {
        let mut errors = Vec::new();
        // The watchable tmpfs first: it lies inside the shared directory,
        // and detaching that takes it along (its unmount then fails ENOENT).
        if let Err(e) = self.watcher.clear() {
            errors.push(format!("{e:#}"));
        }
        // Deepest first: a storage may be mounted inside another one.
        let mut all: Vec<(String, Entry)> = self.entries.drain().collect();
        all.sort_by(|a, b| b.1.real.cmp(&a.1.real));
        for (_, entry) in all {
            if let Err(e) = self.release(&entry) {
                errors.push(format!("{e:#}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("clearing storages: {}", errors.join("; "))
        }
    }

    /// UpdateEphemeralMounts: remount a mounted ephemeral storage with new
    /// options (a new tmpfs size), or mount it when it is new.
    pub fn update_ephemeral(&mut self, s: &Storage) -> Result<()> {
        validate_mount_point(&s.mount_point)?;
        let Some(entry) = self.entries.get(&key_of(&s.mount_point)) else {
            return self.add(std::slice::from_ref(s)).map(|_| ());
        };
        // Kata's runtime sends ["remount", "size=<N>M", "fsgid=<gid>"]
        // (sandbox.go prepareEphemeralMounts): remount is a flag, the gid
        // was applied at creation, the size goes to tmpfs.
        let (flags, data) =
            mount_options::parse(&drivers::without_agent_options(&s.options)).flags_and_data();
        let data = (!data.is_empty()).then_some(data.as_str());
        nix::mount::mount(
            None::<&str>,
            &entry.real,
            None::<&str>,
            flags | nix::mount::MsFlags::MS_REMOUNT,
            data,
        )
        .with_context(|| format!("remounting {} with {:?}", s.mount_point, s.options))
    }

    /// Mount points currently held, with their reference counts.
    pub fn mounted(&self) -> Vec<(String, usize)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.refs))
            .collect();
        v.sort();
        v
    }

    /// True if it mounted something new (false: one more reference).
    fn add_one(&mut self, s: &Storage) -> Result<bool> {
        let rel = validate_mount_point(&s.mount_point)?;
        let key = key_of(&s.mount_point);
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.refs += 1;
            return Ok(false);
        }
        let root = Path::new(STORAGE_ROOT);
        std::fs::create_dir_all(root).with_context(|| format!("creating {STORAGE_ROOT}"))?;
        let watched = s.driver == watcher::DRIVER;
        if watched {
            // Its mount point lies in the watcher's tmpfs: mount that first.
            self.watcher.prepare(&key)?;
        }
        let existed = safe_path::open_in_root(root, &rel, libc::O_PATH).is_ok();
        let target = prepare_target(root, &rel, drivers::wants_file_target(s))
            .with_context(|| format!("preparing mount point {}", s.mount_point))?;
        // A mount already on this path is not ours (what a crashed agent
        // left is undone at start-up, see `owned`): ours goes on top.
        let real = safe_path::fd_path(&target)?;
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", target.as_raw_fd()));
        let reopen = || safe_path::open_in_root(root, &rel, libc::O_PATH);
        let applied = if watched {
            self.watcher.add(&s.source, &real).map(|()| Undo::Unwatch)
        } else {
            drivers::apply(s, &proc_path, &self.hotplug, &reopen)
        };
        let undo = match applied {
            Ok(u) => u,
            Err(e) => {
                if !existed {
                    let _ = remove_path(&real);
                }
                return Err(e);
            }
        };
        let made = made_for(undo, &real, !existed);
        owned::record(&made);
        self.entries.insert(
            key,
            Entry {
                refs: 1,
                sandbox_owned: s.driver == "ephemeral" || s.shared,
                undo,
                real,
                created: !existed,
                made,
            },
        );
        Ok(true)
    }

    /// Undo one entry: a watchable copy through the watcher, the rest as
    /// recorded.
    fn release(&mut self, entry: &Entry) -> Result<()> {
        if entry.undo == Undo::Unwatch {
            self.watcher.remove(&entry.real)?;
            if entry.created {
                remove_path(&entry.real)?;
            }
            owned::forget(&entry.made);
            return Ok(());
        }
        release(entry)
    }
}

/// The disks of block storages, found (waited for) before the registry is
/// touched, so the caller need not hold the sandbox while the host
/// hot-plugs them: copies of `storages` whose disk sources name the guest
/// node instead (as Kata's block handlers rewrite `storage.source`).
pub fn find_disks(storages: &[Storage], hotplug: &Hotplug) -> crate::error::Result<Vec<Storage>> {
    storages
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if device::BLOCK_DRIVERS.contains(&s.driver.as_str()) {
                let node = device::storage_disk(hotplug, &s.driver, &s.source).map_err(|e| {
                    e.context(format!("{} storage for {}", s.driver, s.mount_point))
                })?;
                s.source = node.to_string_lossy().into_owned();
            }
            Ok(s)
        })
        .collect()
}

/// The registry key: the mount point without a trailing `/` or doubled
/// separators, so "/a/b/" and "/a/b" are one storage.
fn key_of(mount_point: &str) -> String {
    let normal: PathBuf = Path::new(mount_point).components().collect();
    normal.to_string_lossy().into_owned()
}

/// `mount_point` relative to STORAGE_ROOT, or a clear error: it must be
/// absolute, under the root, and free of `.`/`..` components.
pub fn validate_mount_point(mount_point: &str) -> Result<PathBuf> {
    safe_path::relative_below(Path::new(STORAGE_ROOT), "storage mount point", mount_point)
}

/// Create the mount point inside `root` (a directory, or an empty file for
/// a file bind mount) and open it O_PATH.
fn prepare_target(root: &Path, rel: &Path, file: bool) -> Result<OwnedFd> {
    if !file {
        return safe_path::mkdir_all_in_root(root, rel, 0o755);
    }
    if let Some(parent) = rel.parent() {
        safe_path::mkdir_all_in_root(root, parent, 0o755)?;
    }
    drop(safe_path::open_in_root(
        root,
        rel,
        libc::O_CREAT | libc::O_WRONLY,
    )?);
    safe_path::open_in_root(root, rel, libc::O_PATH)
}

/// What the agent made for a storage (see `owned`), decided once when it is
/// mounted: the same list is forgotten when it is released.
fn made_for(undo: Undo, real: &Path, created: bool) -> Vec<Made> {
    let mut made = Vec::new();
    if undo == Undo::Unmount {
        made.push(Made::Mount(real.to_path_buf()));
    }
    if created && real.is_dir() {
        made.push(Made::Dir(real.to_path_buf()));
    } else if created {
        made.push(Made::File(real.to_path_buf()));
    }
    made
}

fn release(entry: &Entry) -> Result<()> {
    undo(entry)?;
    owned::forget(&entry.made);
    Ok(())
}

fn undo(entry: &Entry) -> Result<()> {
    match entry.undo {
        Undo::Unmount => {
            if let Err(e) = umount2(&entry.real, MntFlags::empty()) {
                // Busy (a process still has a file open): detach now, the
                // kernel frees it when the last user goes.
                if e != nix::errno::Errno::EBUSY {
                    return Err(e).with_context(|| format!("unmounting {}", entry.real.display()));
                }
                umount2(&entry.real, MntFlags::MNT_DETACH)
                    .with_context(|| format!("detaching {}", entry.real.display()))?;
            }
            if entry.created {
                remove_path(&entry.real)?;
            }
        }
        // Kata never deletes local storage content it did not make: a
        // directory that was there before is the pod's.
        Undo::RemoveDir if entry.created => remove_local_tree(&entry.real)?,
        Undo::RemoveDir => {}
        // Handled by the registry's watcher (StorageRegistry::release).
        Undo::Unwatch => {}
    }
    Ok(())
}

/// Remove a local storage directory we created, with what the containers
/// put in it, but never across a mount point: a storage mounted below it
/// (a bind of an outside directory, say) keeps its files, and the
/// directories on the way to it stay.
fn remove_local_tree(dir: &Path) -> Result<()> {
    let mounts = mountinfo::mount_points()?;
    if mounts.iter().any(|m| m == dir) {
        // Something is mounted on the directory itself: nothing in it is ours.
        return Ok(());
    }
    remove_below(dir, &mounts)?;
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // A mount below it is still there: leave the way to it.
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing local storage {}", dir.display())),
    }
}

/// The entries of `dir`, depth first, never following a symlink and never
/// entering a directory that is a mount point.
fn remove_below(dir: &Path, mounts: &[PathBuf]) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("inspecting {}", path.display()))?;
        if !meta.is_dir() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            continue;
        }
        if mounts.iter().any(|m| m == &path) {
            continue;
        }
        remove_below(&path, mounts)?;
        if !mounts.iter().any(|m| m.starts_with(&path)) {
            std::fs::remove_dir(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

fn remove_path(p: &Path) -> Result<()> {
    let r = if p.is_dir() {
        std::fs::remove_dir(p)
    } else {
        std::fs::remove_file(p)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing mount point {}", p.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_point_validation() {
        assert_eq!(
            validate_mount_point("/run/kata-containers/shared/containers/").expect("ok"),
            PathBuf::from("shared/containers")
        );
        for bad in [
            "relative/x",
            "/etc",
            "/run/kata-containers",
            "/run/kata-containers/",
            "/run/kata-containers/../../etc",
            "/run/kata-containers/a/./b",
            "/run/kata-containersX/a",
        ] {
            let err = validate_mount_point(bad).expect_err(bad);
            assert!(format!("{err:#}").contains("mount point"), "{bad}: {err:#}");
        }
    }
}
