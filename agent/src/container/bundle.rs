//! The bundle of a container: /run/kata-containers/<cid>/ with config.json
//! (hooks and tools read it), the rootfs mount point and exec.fifo.
//!
//! As in Kata, the spec's root.path (the storage mount, usually
//! /run/kata-containers/shared/containers/<cid>/rootfs) is bind-mounted on
//! <bundle>/rootfs unless it already is that directory (a block-device rootfs
//! mounted there by its storage), and the spec is rewritten to point there.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

pub const CONTAINER_BASE: &str = "/run/kata-containers";

pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub fifo: PathBuf,
    /// We bind-mounted the rootfs (and must unmount it).
    bound_rootfs: bool,
    /// We created the directory (and may remove it).
    created_dir: bool,
}

impl Bundle {
    /// Set up the bundle of `cid` for `spec` (rewriting its root.path). On
    /// error nothing of it is left.
    pub fn create(cid: &str, spec: &mut Spec) -> Result<Bundle> {
        let dir = Path::new(CONTAINER_BASE).join(cid);
        let mut bundle = Bundle {
            rootfs: dir.join("rootfs"),
            fifo: dir.join("exec.fifo"),
            created_dir: !dir.exists(),
            dir,
            bound_rootfs: false,
        };
        if let Err(e) = bundle.fill(spec) {
            return Err(match bundle.remove() {
                Ok(()) => e,
                Err(cleanup) => e.context(format!("(cleaning up also failed: {cleanup:#})")),
            });
        }
        Ok(bundle)
    }

    fn fill(&mut self, spec: &mut Spec) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating the bundle {}", self.dir.display()))?;
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
            fs::create_dir_all(&self.rootfs)
                .with_context(|| format!("creating {}", self.rootfs.display()))?;
            mount(
                Some(&source),
                &self.rootfs,
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
        }
        let mut root = root;
        root.set_path(self.rootfs.clone());
        spec.set_root(Some(root));
        let _ = fs::remove_file(&self.fifo);
        nix::unistd::mkfifo(&self.fifo, Mode::from_bits_truncate(0o600))
            .with_context(|| format!("creating {}", self.fifo.display()))?;
        spec.save(self.dir.join("config.json"))
            .with_context(|| format!("writing {}/config.json", self.dir.display()))?;
        Ok(())
    }

    /// exec.fifo is only needed until the container starts.
    pub fn remove_fifo(&self) {
        let _ = fs::remove_file(&self.fifo);
    }

    /// Unmount the rootfs and remove what we created. Nothing is removed
    /// recursively: a storage still mounted below would lose its files.
    pub fn remove(&self) -> Result<()> {
        if self.bound_rootfs {
            match umount2(&self.rootfs, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("unmounting {}", self.rootfs.display()))
                }
            }
        }
        for f in [self.dir.join("config.json"), self.fifo.clone()] {
            match fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", f.display()))
                }
                _ => {}
            }
        }
        if self.created_dir {
            for d in [&self.rootfs, &self.dir] {
                match fs::remove_dir(d) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).with_context(|| format!("removing {}", d.display()))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}
