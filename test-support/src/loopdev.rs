//! A loop device holding a fresh ext4 filesystem: a real block device that
//! stands in for a hot-plugged disk (its node, its numbers, its mount).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::skip::skip;

/// Attached by [`Loop::new`], detached when dropped (only this device).
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    /// A 16 MiB ext4 image in `dir` on a free loop device; None (after a
    /// skip) when mkfs.ext4 or losetup is missing or no device is free.
    pub fn new(dir: &Path) -> Option<Loop> {
        let img = dir.join("disk.img");
        let file = std::fs::File::create(&img).expect("creating the disk image");
        file.set_len(16 << 20).expect("sizing the disk image");
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .status();
        if !matches!(mkfs, Ok(s) if s.success()) {
            skip("mkfs.ext4 (e2fsprogs) is not available");
            return None;
        }
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Loop {
                dev: PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
            }),
            _ => {
                skip("no loop device available (losetup)");
                None
            }
        }
    }

    /// The node's name under /dev ("loop3").
    pub fn name(&self) -> String {
        self.dev
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The node's major and minor numbers.
    pub fn numbers(&self) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(&self.dev)
            .expect("stat the loop device")
            .rdev();
        (
            nix::sys::stat::major(rdev) as u32,
            nix::sys::stat::minor(rdev) as u32,
        )
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}
