//! Resolve paths that come from requests inside their root: `..`, absolute
//! symlinks and symlinks pointing outside must not escape.
//!
//! CONTRACT (used by container rootfs setup, storages, CopyFile; keep the
//! signatures).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

// TEMP shim (lifecycle branch): a minimal implementation so container tests
// run before the safe-path helper's branch lands. Drop this commit.

/// `root` joined with `unsafe_path`, with every symlink on the way resolved as
/// if `root` were `/` (like filepath-securejoin). The result is inside `root`.
/// Not race-free on its own: use `open_in_root` to act on the result.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let mut resolved = PathBuf::new(); // relative to root
    let mut todo: Vec<std::ffi::OsString> = unsafe_path
        .components()
        .rev()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match Path::new(&part)
            .components()
            .next()
            .unwrap_or(Component::CurDir)
        {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => {
                resolved.pop();
                continue;
            }
            Component::Normal(_) => {}
        }
        let candidate = resolved.join(&part);
        match std::fs::symlink_metadata(root.join(&candidate)) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    bail!("too many symlinks resolving {}", unsafe_path.display());
                }
                let target = std::fs::read_link(root.join(&candidate))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for c in target.components().rev() {
                    todo.push(c.as_os_str().to_owned());
                }
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// Open `unsafe_path` inside `root` race-free (openat2 RESOLVE_IN_ROOT, or an
/// equivalent component-by-component walk with O_NOFOLLOW when openat2 is
/// missing). `flags` are open(2) flags (O_PATH, O_DIRECTORY, ...).
pub fn open_in_root(root: &Path, unsafe_path: &Path, flags: i32) -> Result<OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let dir = std::fs::File::open(root)?;
    let path = std::ffi::CString::new(unsafe_path.as_os_str().as_bytes())?;
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    let how: [u64; 3] = [
        (flags | libc::O_CLOEXEC) as u64,
        0,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    ];
    // SAFETY: openat2 reads the path and the open_how struct we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            how.as_ptr(),
            std::mem::size_of_val(&how),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: openat2 returned a new fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
