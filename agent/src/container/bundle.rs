//! The bundle of a container: /run/kata-containers/<cid>/ with config.json
//! (hooks and tools read it), the rootfs mount point and exec.fifo.
//!
//! As in Kata, the spec's root.path (the storage mount, usually
//! /run/kata-containers/shared/containers/<cid>/rootfs) is bind-mounted on
//! <bundle>/rootfs unless it already is that directory (a block-device rootfs
//! mounted there by its storage), and the spec is rewritten to point there.

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use crate::owned::{self, Made};
use crate::safe_path;

pub const CONTAINER_BASE: &str = "/run/kata-containers";

/// The directories of CONTAINER_BASE that are not bundles: the shared
/// directory (the host's virtio-fs share, where CopyFile writes) and the
/// sandbox's own files. A container id naming one would put its bundle
/// inside an area requests write to.
pub const NOT_BUNDLES: &[&str] = &["shared", "sandbox"];

pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub fifo: PathBuf,
    /// We bind-mounted the rootfs (and must unmount it).
    bound_rootfs: bool,
    /// We created the directory (and may remove it).
    created_dir: bool,
    /// We created rootfs/ (and may remove it).
    created_rootfs: bool,
    /// The directory was opened as a directory of its own (not through a
    /// symlink): config.json and exec.fifo in it are ours to remove.
    owned_dir: bool,
}

fn open_here(dir: &OwnedFd, name: &str, flags: i32) -> Result<OwnedFd, Errno> {
    safe_path::open_here(dir, Path::new(name), flags)
}

/// Create directory `name` in `dir` (true) or find it there (false), then
/// open it without following a symlink.
fn make_dir_here(dir: &OwnedFd, name: &str) -> Result<(OwnedFd, bool)> {
    let created = match nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(e).with_context(|| format!("creating {name}")),
    };
    let fd = open_here(dir, name, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|e| {
        anyhow::anyhow!("{name} is not a directory of the agent's own (a symlink?): {e}")
    })?;
    Ok((fd, created))
}

impl Bundle {
    /// Set up the bundle of `cid` for `spec` (rewriting its root.path). On
    /// error nothing of it is left.
    pub fn create(cid: &str, spec: &mut Spec) -> Result<Bundle> {
        if NOT_BUNDLES.contains(&cid) {
            bail!(
                "container id {cid:?} names the agent's {CONTAINER_BASE}/{cid} area, not a bundle"
            );
        }
        let dir = Path::new(CONTAINER_BASE).join(cid);
        let mut bundle = Bundle {
            rootfs: dir.join("rootfs"),
            fifo: dir.join("exec.fifo"),
            dir,
            created_dir: false,
            created_rootfs: false,
            owned_dir: false,
            bound_rootfs: false,
        };
        if let Err(e) = bundle.fill(cid, spec) {
            return Err(match bundle.remove() {
                Ok(()) => e,
                Err(cleanup) => e.context(format!("(cleaning up also failed: {cleanup:#})")),
            });
        }
        Ok(bundle)
    }

    /// Every entry is made and opened relative to a descriptor of its
    /// directory without following symlinks, so nothing planted in the
    /// bundle redirects a write or a mount outside it.
    fn fill(&mut self, cid: &str, spec: &mut Spec) -> Result<()> {
        fs::create_dir_all(CONTAINER_BASE).with_context(|| format!("creating {CONTAINER_BASE}"))?;
        let base = nix::fcntl::open(
            CONTAINER_BASE,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening {CONTAINER_BASE}"))?;
        let (dir, created) = make_dir_here(&base, cid)
            .with_context(|| format!("creating the bundle {}", self.dir.display()))?;
        self.created_dir = created;
        self.owned_dir = true;
        if created {
            owned::record(&[Made::Dir(self.dir.clone())]);
        }
        let root = spec.root().clone().context("the spec has no root")?;
        let source = if root.path().is_absolute() {
            root.path().clone()
        } else {
            self.dir.join(root.path())
        };
        if !source.is_dir() {
            bail!(
                "the container rootfs {} is not a directory",
                source.display()
            );
        }
        if source != self.rootfs {
            let (rootfs, created) = make_dir_here(&dir, "rootfs")
                .with_context(|| format!("creating {}", self.rootfs.display()))?;
            self.created_rootfs = created;
            if created {
                owned::record(&[Made::Dir(self.rootfs.clone())]);
            }
            // Mount on the directory we hold, not on a path a link could redirect.
            let target = PathBuf::from(format!("/proc/self/fd/{}", rootfs.as_raw_fd()));
            mount(
                Some(&source),
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .with_context(|| {
                format!(
                    "bind-mounting the rootfs {} on {}",
                    source.display(),
                    self.rootfs.display()
                )
            })?;
            self.bound_rootfs = true;
            owned::record(&[Made::Mount(self.rootfs.clone())]);
        }
        let mut root = root;
        root.set_path(self.rootfs.clone());
        spec.set_root(Some(root));
        match nix::unistd::unlinkat(&dir, "exec.fifo", nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", self.fifo.display())),
        }
        nix::unistd::mkfifoat(&dir, "exec.fifo", Mode::from_bits_truncate(0o600))
            .with_context(|| format!("creating {}", self.fifo.display()))?;
        let config = self.dir.join("config.json");
        owned::record(&[Made::File(self.fifo.clone()), Made::File(config.clone())]);
        let file = open_here(
            &dir,
            "config.json",
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        )
        .with_context(|| format!("opening {}", config.display()))?;
        // One write: serde_json writes a raw File in many small pieces.
        let json = serde_json::to_vec(&*spec).context("serialising the spec")?;
        fs::File::from(file)
            .write_all(&json)
            .with_context(|| format!("writing {}", config.display()))?;
        Ok(())
    }

    /// exec.fifo is only needed until the container starts.
    pub fn remove_fifo(&self) {
        if fs::remove_file(&self.fifo).is_ok() {
            owned::forget(&[Made::File(self.fifo.clone())]);
        }
    }

    /// Unmount the rootfs and remove what we created. Nothing is removed
    /// recursively: a storage still mounted below would lose its files.
    pub fn remove(&self) -> Result<()> {
        self.undo()?;
        owned::forget(&[
            Made::Mount(self.rootfs.clone()),
            Made::File(self.fifo.clone()),
            Made::File(self.dir.join("config.json")),
            Made::Dir(self.rootfs.clone()),
            Made::Dir(self.dir.clone()),
        ]);
        Ok(())
    }

    fn undo(&self) -> Result<()> {
        if self.bound_rootfs {
            match umount2(
                &self.rootfs,
                MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW,
            ) {
                Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("unmounting {}", self.rootfs.display()))
                }
            }
        }
        if !self.owned_dir {
            return Ok(());
        }
        for f in [self.dir.join("config.json"), self.fifo.clone()] {
            match fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", f.display()))
                }
                _ => {}
            }
        }
        let created = [
            (self.created_rootfs, &self.rootfs),
            (self.created_dir, &self.dir),
        ];
        for (_, d) in created.iter().filter(|(ours, _)| *ours) {
            match fs::remove_dir(d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", d.display()))
                }
                _ => {}
            }
        }
        Ok(())
    }
}
