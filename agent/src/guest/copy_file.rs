//! CopyFile: the runtime copies files (resolv.conf, hostname, secrets, ...)
//! into the guest's shared directory, in chunks. Only paths below
//! /run/kata-containers/shared/containers/ are accepted; they are resolved
//! inside that directory (openat2 RESOLVE_IN_ROOT), so `..` or a symlink planted there
//! cannot reach the rest of the guest. Chunks go to a temp file beside the
//! target, which is fsynced and renamed over it with the last chunk, so a
//! reader never sees half a file.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::stat::Mode;
use protocols::agent::CopyFileRequest;

use crate::error::{self, Error, Invalid};
use crate::safe_path;

/// Kata's agent accepts only this directory (its bats test "Copy a file to
/// an unallowed destination beneath /run/kata-containers" expects a refusal
/// for /run/kata-containers/shared/foo): the rest of the shared area holds
/// the host's share and, beside it, nothing a request should shape.
pub const SHARED_ROOT: &str = "/run/kata-containers/shared/containers";

fn bad(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// The path relative to `root` and the file name, or InvalidArgument.
pub fn check_path(root: &Path, path: &str) -> error::Result<(PathBuf, PathBuf)> {
    let rel = safe_path::relative_below(root, "CopyFile path", path).invalid()?;
    let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
    let name = rel
        .file_name()
        .ok_or_else(|| bad(format!("CopyFile path {path:?} has no file name")))?;
    Ok((parent, PathBuf::from(name)))
}

pub fn copy_file(root: &Path, req: &CopyFileRequest) -> error::Result<()> {
    let (parent, name) = check_path(root, &req.path)?;
    if req.offset < 0 || req.file_size < 0 {
        return Err(bad(format!(
            "CopyFile {}: negative offset or size",
            req.path
        )));
    }
    crate::limits::check(
        "CopyFile file_size",
        req.file_size as u64,
        crate::limits::MAX_COPY_FILE_SIZE,
    )
    .map_err(|e| bad(format!("CopyFile {}: {e}", req.path)))?;
    let end = (req.offset as u64).saturating_add(req.data.len() as u64);
    if end > req.file_size as u64 {
        return Err(bad(format!(
            "CopyFile {}: chunk ends at {end}, beyond file_size {}",
            req.path, req.file_size
        )));
    }
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let dir_mode = if req.dir_mode == 0 {
        0o755
    } else {
        req.dir_mode & 0o7777
    };
    let dir = safe_path::mkdir_all_in_root(root, &parent, dir_mode)
        .with_context(|| format!("creating the directory of {}", req.path))?;
    if req.file_mode & libc::S_IFMT == libc::S_IFLNK {
        return Ok(make_symlink(&dir, &name, &req.data, &req.path)?);
    }
    let tmp = temp_name(&name);
    let file = open_chunk_file(&dir, &tmp, req.offset == 0)
        .map_err(|e| e.context(format!("opening the temp file of {}", req.path)))?;
    nix::sys::uio::pwrite(&file, &req.data, req.offset).with_context(|| {
        format!(
            "writing {} bytes at {} of {}",
            req.data.len(),
            req.offset,
            req.path
        )
    })?;
    if end < req.file_size as u64 {
        return Ok(());
    }
    finish(&dir, &file, &tmp, &name, req).with_context(|| format!("completing {}", req.path))?;
    Ok(())
}

/// `.name.kata-copy`: hidden, beside the target (same filesystem for rename).
fn temp_name(name: &Path) -> PathBuf {
    let mut t = std::ffi::OsString::from(".");
    t.push(name.as_os_str());
    t.push(".kata-copy");
    PathBuf::from(t)
}

fn open_chunk_file(dir: &OwnedFd, tmp: &Path, first: bool) -> error::Result<OwnedFd> {
    let flags = if first {
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC
    } else {
        libc::O_WRONLY
    };
    match safe_path::open_here(dir, tmp, flags) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) if !first => Err(bad(format!(
            "no earlier chunk of this file (the first chunk has offset 0): {}",
            tmp.display()
        ))),
        Err(e) => Err(anyhow::Error::from(e).into()),
    }
}

fn finish(
    dir: &OwnedFd,
    file: &OwnedFd,
    tmp: &Path,
    name: &Path,
    req: &CopyFileRequest,
) -> Result<()> {
    nix::sys::stat::fchmod(file, Mode::from_bits_truncate(req.file_mode & 0o7777))
        .context("chmod")?;
    let uid = (req.uid >= 0).then(|| nix::unistd::Uid::from_raw(req.uid as u32));
    let gid = (req.gid >= 0).then(|| nix::unistd::Gid::from_raw(req.gid as u32));
    if uid.is_some() || gid.is_some() {
        nix::unistd::fchown(file, uid, gid).context("chown")?;
    }
    nix::unistd::fsync(file).context("fsync")?;
    nix::fcntl::renameat(dir, tmp, dir, name).context("renaming the temp file over the target")?;
    // The rename itself must survive a crash too.
    let d = safe_path_reopen_dir(dir)?;
    nix::unistd::fsync(&d).context("fsync of the directory")
}

/// An O_PATH descriptor cannot be fsynced: reopen the directory read-only.
fn safe_path_reopen_dir(dir: &OwnedFd) -> Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        dir,
        OsStr::new("."),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("reopening the directory")?;
    Ok(fd)
}

/// A symlink entry (file_mode has S_IFLNK): `data` is the link's target. The
/// link is only text here; whoever follows it later resolves it in its own root.
fn make_symlink(dir: &OwnedFd, name: &Path, target: &[u8], path: &str) -> Result<()> {
    let target = OsStr::from_bytes(target);
    match nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("replacing {path}")),
    }
    nix::unistd::symlinkat(target, dir, name).with_context(|| format!("creating symlink {path}"))
}
