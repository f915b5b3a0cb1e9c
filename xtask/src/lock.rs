//! One xtask at a time per shared build tree: an advisory `flock(2)` on a
//! lock file, held for the life of the guard and released by the kernel
//! when the process dies (an interrupted build leaves no stale lock).
//!
//! Two `vm test` runs in one checkout used to assemble the same rootfs tree
//! at once; one deleted a directory the other was filling ("removing
//! .../gconv: Directory not empty").

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result};

/// Holds the lock until dropped.
pub struct Guard {
    _file: File,
}

/// Take the exclusive lock at `path` (created if absent), waiting for
/// another holder, and saying so, naming `what` it guards.
pub fn exclusive(path: &Path, what: &str) -> Result<Guard> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    if !flock(&file, libc::LOCK_EX | libc::LOCK_NB)? {
        crate::ui::info(format!(
            "waiting for another xtask that is building {what} (lock {})",
            path.display()
        ));
        flock(&file, libc::LOCK_EX)?;
    }
    Ok(Guard { _file: file })
}

/// flock(2); Ok(false) when LOCK_NB found the lock taken.
fn flock(file: &File, op: libc::c_int) -> Result<bool> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(err).context("flock"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_until_the_first_lets_go() {
        let t = tempfile::tempdir().expect("tempdir");
        let path = t.path().join("sub").join("x.lock");
        let first = exclusive(&path, "x").expect("first");
        // Another open file description is refused while the first holds it.
        let other = File::options().write(true).open(&path).expect("open");
        assert!(!flock(&other, libc::LOCK_EX | libc::LOCK_NB).expect("try"));
        drop(first);
        assert!(flock(&other, libc::LOCK_EX | libc::LOCK_NB).expect("try again"));
    }
}
