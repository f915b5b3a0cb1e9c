//! Resolve paths that come from requests inside their root: `..`, absolute
//! symlinks and symlinks pointing outside must not escape.
//!
//! CONTRACT (used by container rootfs setup, storages, CopyFile; keep the
//! signatures).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// `root` joined with `unsafe_path`, with every symlink on the way resolved as
/// if `root` were `/` (like filepath-securejoin). The result is inside `root`.
/// Not race-free on its own: use `open_in_root` to act on the result.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf> {
    bail!(
        "secure_join({}, {}): not implemented yet",
        root.display(),
        unsafe_path.display()
    )
}

/// Open `unsafe_path` inside `root` race-free (openat2 RESOLVE_IN_ROOT, or an
/// equivalent component-by-component walk with O_NOFOLLOW when openat2 is
/// missing). `flags` are open(2) flags (O_PATH, O_DIRECTORY, ...).
pub fn open_in_root(root: &Path, unsafe_path: &Path, _flags: i32) -> Result<OwnedFd> {
    bail!(
        "open_in_root({}, {}): not implemented yet",
        root.display(),
        unsafe_path.display()
    )
}
