//! The `watchable-bind` driver: configMap and secret volumes.
//!
//! virtio-fs gives the guest no inotify, so a container watching its
//! configMap would never see an update. As Kata's agent does
//! (src/agent/src/watcher.rs), the runtime asks for a copy: the storage's
//! source is the shared file or directory, its mount point lies in
//! `/run/kata-containers/shared/containers/watchable/`, which we cover with
//! one tmpfs per sandbox. The source is copied there, then polled every two
//! seconds and new, changed and removed entries are mirrored. A source that
//! grows past 16 entries or 1 MiB is bind-mounted instead (no more updates,
//! as in Kata).

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::owned::{self, Made};

/// The driver name the runtime sends (Kata's kataWatchableBindDevType).
pub const DRIVER: &str = "watchable-bind";
/// The tmpfs every watchable mount point lies directly in.
pub const WATCH_ROOT: &str = "/run/kata-containers/shared/containers/watchable";
/// More entries than this (files, links, directories): bind mount instead.
pub const MAX_ENTRIES: usize = 16;
/// More bytes than this: bind mount instead.
pub const MAX_BYTES: u64 = 1024 * 1024;
/// How often sources are compared with their copies.
pub const INTERVAL: Duration = Duration::from_secs(2);

type Entries = Arc<Mutex<HashMap<PathBuf, Watched>>>;

/// The sandbox's watched storages, by target path.
#[derive(Default)]
pub struct Watcher {
    /// The mounted tmpfs root and the entries the poll thread syncs.
    state: Option<(PathBuf, Entries)>,
    /// Where the poll thread reports a failed copy.
    pub logger: Option<slog::Logger>,
}

/// One watchable storage: a source mirrored into a target.
struct Watched {
    source: PathBuf,
    target: PathBuf,
    /// Every source entry copied so far (relative path) and its mtime then.
    seen: HashMap<PathBuf, SystemTime>,
    /// Too big to copy: the source is bind-mounted on the target.
    bound: bool,
}

impl Watcher {
    /// Check a watchable mount point and make sure the tmpfs it lies in is
    /// mounted (the first call mounts it and starts the poll thread).
    pub fn prepare(&mut self, mount_point: &str) -> Result<()> {
        let parent = Path::new(mount_point).parent();
        if parent != Some(Path::new(WATCH_ROOT)) {
            bail!("watchable storage {mount_point:?} is not directly below {WATCH_ROOT}/");
        }
        if self.state.is_some() {
            return Ok(());
        }
        let root = Path::new(WATCH_ROOT);
        std::fs::create_dir_all(root).with_context(|| format!("creating {WATCH_ROOT}"))?;
        mount(
            Some("tmpfs"),
            root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        )
        .with_context(|| format!("mounting the watchable tmpfs on {WATCH_ROOT}"))?;
        // A crashed agent's tmpfs is unmounted by the next one (the bind
        // mounts in it go with it). Its directory may be another's: not recorded.
        owned::record(&[Made::Mount(root.to_path_buf())]);
        let entries: Entries = Arc::default();
        spawn_poller(Arc::downgrade(&entries), self.logger.clone());
        self.state = Some((root.to_path_buf(), entries));
        Ok(())
    }

    /// Start watching `source` into `target` (already created by the
    /// registry: a directory, or a file for a file source); copies it once now.
    pub fn add(&mut self, source: &str, target: &Path) -> Result<()> {
        let Some((_, entries)) = &self.state else {
            bail!("the watchable tmpfs is not mounted");
        };
        let source_path = Path::new(source);
        if !source_path.is_absolute() || !source_path.exists() {
            bail!("watchable storage source {source:?} must be an existing absolute path");
        }
        let mut w = Watched {
            source: source_path.to_path_buf(),
            target: target.to_path_buf(),
            seen: HashMap::new(),
            bound: false,
        };
        w.check()
            .with_context(|| format!("copying {source} to {}", target.display()))?;
        lock(entries).insert(target.to_path_buf(), w);
        Ok(())
    }

    /// Stop watching `target` and remove its copy (unmount it if bound).
    pub fn remove(&mut self, target: &Path) -> Result<()> {
        let Some((_, entries)) = &self.state else {
            return Ok(());
        };
        let Some(w) = lock(entries).remove(target) else {
            return Ok(());
        };
        if w.bound {
            // Never remove what lies below: it is the source's content.
            return umount2(target, MntFlags::MNT_DETACH)
                .with_context(|| format!("unmounting watchable bind {}", target.display()));
        }
        if target.is_dir() {
            std::fs::remove_dir_all(target)
                .with_context(|| format!("removing watchable copy {}", target.display()))?;
        }
        Ok(())
    }

    /// Compare every source with its copy now (the poll thread's tick).
    pub fn check_now(&self) {
        if let Some((_, entries)) = &self.state {
            check_all(entries, self.logger.as_ref());
        }
    }

    /// Unmount the tmpfs (DestroySandbox; every storage is released first).
    /// The poll thread ends at its next tick.
    pub fn clear(&mut self) -> Result<()> {
        let Some((root, entries)) = self.state.take() else {
            return Ok(());
        };
        let bound: Vec<PathBuf> = lock(&entries)
            .drain()
            .filter(|(_, w)| w.bound)
            .map(|(t, _)| t)
            .collect();
        for t in bound {
            let _ = umount2(&t, MntFlags::MNT_DETACH);
        }
        umount2(&root, MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting the watchable tmpfs {}", root.display()))?;
        owned::forget(&[Made::Mount(root)]);
        Ok(())
    }
}

fn lock(entries: &Entries) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Watched>> {
    entries.lock().unwrap_or_else(|p| p.into_inner())
}

/// A thread, not a task: the registry is used outside tokio too. It ends
/// when the watcher drops its entries.
fn spawn_poller(entries: Weak<Mutex<HashMap<PathBuf, Watched>>>, logger: Option<slog::Logger>) {
    std::thread::spawn(move || loop {
        std::thread::sleep(INTERVAL);
        let Some(entries) = entries.upgrade() else {
            return;
        };
        check_all(&entries, logger.as_ref());
    });
}

fn check_all(entries: &Entries, logger: Option<&slog::Logger>) {
    for w in lock(entries).values_mut().filter(|w| !w.bound) {
        if let Err(e) = w.check() {
            // A source that went away or cannot be read stays as it was:
            // the next tick tries again.
            if let Some(l) = logger {
                slog::warn!(l, "watchable storage not updated";
                    "source" => w.source.display().to_string(), "error" => format!("{e:#}"));
            }
        }
    }
}

/// One source entry found by a scan.
struct Found {
    rel: PathBuf,
    meta: std::fs::Metadata,
}

/// Which watch limit a source is past.
enum TooBig {
    Entries(usize),
    Bytes(u64),
}

impl std::fmt::Display for TooBig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TooBig::Entries(n) => write!(f, "more than {MAX_ENTRIES} entries ({n} so far)"),
            TooBig::Bytes(n) => write!(f, "more than {MAX_BYTES} bytes ({n} so far)"),
        }
    }
}

impl Watched {
    /// Mirror the source's changes; past the limits, bind-mount instead.
    fn check(&mut self) -> Result<()> {
        match scan(&self.source)? {
            Ok(found) => self.sync(found),
            Err(too_big) => self.bind_instead(too_big),
        }
    }

    fn bind_instead(&mut self, why: TooBig) -> Result<()> {
        if self.target.is_dir() {
            // Empty the copy first so the bind mount hides nothing of ours.
            for e in std::fs::read_dir(&self.target)? {
                remove_any(&e?.path())?;
            }
        }
        mount(
            Some(&self.source),
            &self.target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| {
            format!(
                "bind mounting {} on {} (the source has {why})",
                self.source.display(),
                self.target.display()
            )
        })?;
        self.bound = true;
        self.seen.clear();
        Ok(())
    }

    fn sync(&mut self, found: Vec<Found>) -> Result<()> {
        let now: HashMap<&Path, &Found> = found.iter().map(|f| (f.rel.as_path(), f)).collect();
        let gone: Vec<PathBuf> = self
            .seen
            .keys()
            .filter(|k| !now.contains_key(k.as_path()))
            .cloned()
            .collect();
        for rel in gone {
            self.seen.remove(&rel);
            remove_any(&under(&self.target, &rel))?;
        }
        // Parents come before their children (scan order).
        for f in &found {
            let mtime = f.meta.modified()?;
            if self.seen.get(&f.rel) == Some(&mtime) {
                continue;
            }
            let dest = under(&self.target, &f.rel);
            copy_entry(&under(&self.source, &f.rel), &dest, &f.meta)
                .with_context(|| format!("copying {} to {}", f.rel.display(), dest.display()))?;
            self.seen.insert(f.rel.clone(), mtime);
        }
        Ok(())
    }
}

/// `rel` below `base`; the empty path is `base` itself (join would add a `/`,
/// which a file refuses).
fn under(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// The source's entries (the source itself as the empty path first), or
/// which limit it is past. Symlinks are copied as links, never followed.
fn scan(source: &Path) -> Result<std::result::Result<Vec<Found>, TooBig>> {
    let mut found = Vec::new();
    let mut bytes = 0u64;
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let path = under(source, &rel);
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if meta.is_file() {
            bytes += meta.len();
        }
        if meta.is_dir() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("listing {}", path.display()))?
                .map(|e| e.map(|e| rel.join(e.file_name())))
                .collect::<std::io::Result<_>>()?;
            children.sort();
            // Reversed onto the stack so they come out in order.
            todo.extend(children.into_iter().rev());
        }
        found.push(Found { rel, meta });
        // The source itself does not count.
        if found.len() > MAX_ENTRIES + 1 {
            return Ok(Err(TooBig::Entries(found.len() - 1)));
        }
        if bytes > MAX_BYTES {
            return Ok(Err(TooBig::Bytes(bytes)));
        }
    }
    Ok(Ok(found))
}

/// Copy one entry with its mode and owner; a file through a temporary name
/// and rename, so a reader sees the old or the new content, never half.
fn copy_entry(from: &Path, to: &Path, meta: &std::fs::Metadata) -> Result<()> {
    let kind = meta.file_type();
    if kind.is_dir() {
        if std::fs::symlink_metadata(to).is_ok_and(|m| !m.is_dir()) {
            remove_any(to)?;
        }
        std::fs::create_dir_all(to)?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else {
        let name = to.file_name().context("copy target has no name")?;
        let tmp = to.with_file_name(format!(".{}.kata-tmp", name.to_string_lossy()));
        remove_any(&tmp)?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(from)?, &tmp)?;
        } else if kind.is_file() {
            std::fs::copy(from, &tmp)?;
        } else {
            // Sockets, fifos, devices: nothing a configMap holds.
            return Ok(());
        }
        if std::fs::symlink_metadata(to).is_ok_and(|m| m.is_dir()) {
            remove_any(to)?;
        }
        std::os::unix::fs::lchown(&tmp, Some(meta.uid()), Some(meta.gid()))?;
        std::fs::rename(&tmp, to)?;
        return Ok(());
    }
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    Ok(())
}

/// Remove a file, link or directory tree of the copy; absent is fine.
fn remove_any(p: &Path) -> Result<()> {
    let r = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) => Err(e),
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", p.display()))
        }
        _ => Ok(()),
    }
}
