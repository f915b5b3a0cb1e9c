//! Resolve paths that come from requests inside their root: `..`, absolute
//! symlinks and symlinks pointing outside must not escape.
//!
//! CONTRACT (used by container rootfs setup, storages, CopyFile; keep the
//! signatures).
//!
//! Two tools:
//! - `secure_join` computes a path (lexically plus `lstat`/`readlink`), for
//!   callers that need a path string (mount targets, logs). It is only as
//!   safe as the tree is stable while the caller uses the path.
//! - `open_in_root` gives a file descriptor that the kernel resolved inside
//!   the root (openat2 RESOLVE_IN_ROOT), so a symlink swapped in between
//!   cannot redirect it. Act on the descriptor (`/proc/self/fd/N`, `*at`
//!   calls) when an attacker may own the tree.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;

/// Linux's own limit on symlinks followed in one lookup (MAXSYMLINKS is 40);
/// more means a loop.
const MAX_SYMLINKS: usize = 40;

/// The lexical check for a path a request names below a fixed `root`
/// (storage mount points, CopyFile targets): absolute, free of `.` and `..`
/// components, and strictly below `root`. Returns it relative to `root`;
/// `what` names it in the error. Resolve the result with `open_in_root`.
pub fn relative_below(root: &Path, what: &str, path: &str) -> Result<PathBuf> {
    if !Path::new(path).is_absolute() {
        bail!("{what} {path:?} is not an absolute path");
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        bail!("{what} {path:?} contains '.' or '..'");
    }
    match Path::new(path).strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => Ok(rel.to_path_buf()),
        _ => bail!("{what} {path:?} is not below {}/", root.display()),
    }
}

/// `root` joined with `unsafe_path`, with every symlink on the way resolved as
/// if `root` were `/` (like filepath-securejoin). The result is inside `root`.
/// Not race-free on its own: use `open_in_root` to act on the result.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending = components_of(unsafe_path);
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        match part {
            Part::Root => resolved.clear(),
            Part::Up => {
                resolved.pop();
            }
            Part::Dot => {}
            Part::Name(name) => {
                let candidate = join_all(root, &resolved).join(&name);
                let target = match std::fs::symlink_metadata(&candidate) {
                    Ok(meta) if meta.file_type().is_symlink() => std::fs::read_link(&candidate)
                        .with_context(|| format!("reading symlink {}", candidate.display()))?,
                    // A missing or non-link component is taken as is: the
                    // rest of the path is resolved lexically.
                    _ => {
                        resolved.push(name);
                        continue;
                    }
                };
                links += 1;
                if links > MAX_SYMLINKS {
                    bail!(
                        "resolving {} inside {}: too many levels of symbolic links",
                        unsafe_path.display(),
                        root.display()
                    );
                }
                let mut expanded = components_of(&target);
                expanded.extend(pending.drain(..));
                pending = expanded;
            }
        }
    }
    Ok(join_all(root, &resolved))
}

/// Open `unsafe_path` inside `root` race-free (openat2 RESOLVE_IN_ROOT, or an
/// equivalent component-by-component walk with O_NOFOLLOW when openat2 is
/// missing). `flags` are open(2) flags (O_PATH, O_DIRECTORY, ...).
/// With O_CREAT a new file gets mode 0o600 (before umask): chmod it after.
pub fn open_in_root(root: &Path, unsafe_path: &Path, flags: i32) -> Result<OwnedFd> {
    let root_fd = open_root(root)?;
    let result = match openat2_in_root(&root_fd, unsafe_path, flags) {
        Err(Errno::ENOSYS) | Err(Errno::EPERM) => walk_in_root(&root_fd, unsafe_path, flags),
        other => other,
    };
    result.with_context(|| {
        format!(
            "opening {} inside {}",
            unsafe_path.display(),
            root.display()
        )
    })
}

/// `open_in_root`'s two resolvers, each on its own: openat2's and the
/// walk's (the fallback for kernels without openat2). Both must give the
/// same answer; pub so the differential fuzz target (`fuzz/`) checks it.
pub fn open_in_root_each(
    root: &Path,
    unsafe_path: &Path,
    flags: i32,
) -> Result<[Result<OwnedFd, Errno>; 2]> {
    let root_fd = open_root(root)?;
    Ok([
        openat2_in_root(&root_fd, unsafe_path, flags),
        walk_in_root(&root_fd, unsafe_path, flags),
    ])
}

/// Create every missing directory of `unsafe_path` inside `root` (with `mode`)
/// and return an O_PATH descriptor of the last one. Each step is resolved by
/// the kernel inside `root`, so a racing symlink cannot move the creation out.
pub fn mkdir_all_in_root(root: &Path, unsafe_path: &Path, mode: u32) -> Result<OwnedFd> {
    // Resolve symlinks first (a link to a missing directory must create
    // that directory), then create the symlink-free result step by step.
    let joined = secure_join(root, unsafe_path)?;
    let rel = joined
        .strip_prefix(root)
        .with_context(|| format!("{} is not inside {}", joined.display(), root.display()))?;
    let mut done = PathBuf::new();
    for name in rel.iter() {
        let parent = open_in_root(root, &done, libc::O_PATH | libc::O_DIRECTORY)?;
        match nix::sys::stat::mkdirat(
            &parent,
            name,
            nix::sys::stat::Mode::from_bits_truncate(mode),
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "creating {} inside {}",
                        done.join(name).display(),
                        root.display()
                    )
                })
            }
        }
        done.push(name);
    }
    open_in_root(root, &done, libc::O_PATH | libc::O_DIRECTORY)
}

/// The path the kernel gives for an open descriptor (its `/proc/self/fd` link).
pub fn fd_path(fd: &OwnedFd) -> Result<PathBuf> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::read_link(&link).with_context(|| format!("reading {link}"))
}

enum Part {
    Root,
    Up,
    /// `.` (only `walk_parts` makes it).
    Dot,
    Name(OsString),
}

fn components_of(path: &Path) -> VecDeque<Part> {
    path.components()
        .filter_map(|c| match c {
            Component::RootDir | Component::Prefix(_) => Some(Part::Root),
            Component::CurDir => None,
            Component::ParentDir => Some(Part::Up),
            Component::Normal(n) => Some(Part::Name(n.to_os_string())),
        })
        .collect()
}

fn join_all(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

fn open_root(root: &Path) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        root,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("opening root directory {}", root.display()))?;
    Ok(fd)
}

fn cstring(bytes: &[u8]) -> Result<CString, Errno> {
    CString::new(bytes).map_err(|_| Errno::EINVAL)
}

fn create_mode(flags: i32) -> u64 {
    if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        0o600
    } else {
        0
    }
}

/// openat2(2) with RESOLVE_IN_ROOT: `..` and absolute symlinks stop at the
/// root, checked by the kernel at each step. Magic links (/proc/*/fd) are
/// refused: they could point anywhere.
fn openat2_in_root(root: &OwnedFd, path: &Path, flags: i32) -> Result<OwnedFd, Errno> {
    let rel = if path.as_os_str().is_empty() {
        OsStr::new(".")
    } else {
        path.as_os_str()
    };
    let c_path = cstring(rel.as_bytes())?;
    // SAFETY: open_how is a plain C struct; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = create_mode(flags);
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // SAFETY: valid descriptor, NUL-terminated path, `how` of the size given.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c_path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if ret >= 0 {
            // SAFETY: the kernel returned a new descriptor that we now own.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) });
        }
        match Errno::last() {
            // The kernel asks for a retry when a rename raced the lookup.
            Errno::EAGAIN | Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// `name`, one component of the directory `dir`, opened with `flags` and
/// O_NOFOLLOW: a symlink there is refused (ELOOP), never followed. With
/// O_CREAT a new file gets mode 0o600 (before umask).
pub fn open_here(dir: &OwnedFd, name: &Path, flags: i32) -> Result<OwnedFd, Errno> {
    openat_raw(dir.as_raw_fd(), name.as_os_str(), flags | libc::O_NOFOLLOW)
}

fn openat_raw(dir: RawFd, name: &OsStr, flags: i32) -> Result<OwnedFd, Errno> {
    let c_name = cstring(name.as_bytes())?;
    // SAFETY: valid descriptor and NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir,
            c_name.as_ptr(),
            flags | libc::O_CLOEXEC,
            create_mode(flags) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: openat returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_symlink(fd: &OwnedFd) -> Result<bool, Errno> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

fn is_dir(fd: &OwnedFd) -> Result<bool, Errno> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// A path's parts as the kernel walks them, for `walk_in_root`: unlike
/// `Path::components`, a `.` and a trailing `/` are kept (as `Dot`), since
/// each asks for a directory where they stand.
fn walk_parts(path: &[u8]) -> VecDeque<Part> {
    let mut parts = VecDeque::new();
    if path.starts_with(b"/") {
        parts.push_back(Part::Root);
    }
    for name in path.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
        parts.push_back(match name {
            b"." => Part::Dot,
            b".." => Part::Up,
            n => Part::Name(OsStr::from_bytes(n).to_os_string()),
        });
    }
    if path.ends_with(b"/") && parts.iter().any(|p| matches!(p, Part::Name(_))) {
        parts.push_back(Part::Dot);
    }
    parts
}

/// The target of a symlink opened with O_PATH|O_NOFOLLOW.
fn read_link_fd(fd: &OwnedFd) -> Result<OsString, Errno> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let empty = c"";
    // SAFETY: valid descriptor, empty path (the descriptor itself), buffer of the length given.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            empty.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(Errno::last());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

/// The fallback for kernels without openat2 (before 5.6): walk one component
/// at a time with O_NOFOLLOW, keeping our own stack of directory descriptors
/// so `..` and absolute symlinks never climb above the root whatever the tree
/// does meanwhile. Symlinks are read from the descriptor we hold, never
/// re-resolved by path.
fn walk_in_root(root: &OwnedFd, path: &Path, flags: i32) -> Result<OwnedFd, Errno> {
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut pending = walk_parts(path.as_os_str().as_bytes());
    let mut links = 0;
    let dir_of = |stack: &Vec<OwnedFd>| stack.last().unwrap_or(root).as_raw_fd();
    while let Some(part) = pending.pop_front() {
        let name = match part {
            Part::Root => {
                stack.clear();
                continue;
            }
            Part::Up => {
                stack.pop();
                continue;
            }
            // Everything on the stack is a directory: `.` stays there
            // (and, last, opens it below).
            Part::Dot => continue,
            Part::Name(name) => name,
        };
        let last = pending.is_empty();
        let probe = match openat_raw(dir_of(&stack), &name, libc::O_PATH | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if last && flags & libc::O_CREAT != 0 => {
                return openat_raw(dir_of(&stack), &name, flags | libc::O_NOFOLLOW);
            }
            Err(e) => return Err(e),
        };
        if is_symlink(&probe)? {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Errno::ELOOP);
            }
            let target = read_link_fd(&probe)?;
            let mut expanded = walk_parts(target.as_bytes());
            expanded.extend(pending.drain(..));
            pending = expanded;
            continue;
        }
        // As the kernel: `..`, `.` or `/` after a name needs a directory
        // (a file there is ENOTDIR, never a lexical step back).
        if !last && !is_dir(&probe)? {
            return Err(Errno::ENOTDIR);
        }
        if last {
            if flags & libc::O_PATH != 0 && flags & libc::O_DIRECTORY == 0 {
                return Ok(probe);
            }
            // O_NOFOLLOW: if a symlink was swapped in since the probe, this
            // fails with ELOOP instead of following it.
            return openat_raw(dir_of(&stack), &name, flags | libc::O_NOFOLLOW);
        }
        stack.push(probe);
    }
    // The path named the root itself or a directory already on the stack.
    let fd = dir_of(&stack);
    openat_raw(fd, OsStr::new("."), flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn relative_below_is_strictly_below_the_root() {
        let root = Path::new("/run/kata-containers/shared");
        assert_eq!(
            relative_below(root, "p", "/run/kata-containers/shared/a/b").expect("below"),
            PathBuf::from("a/b")
        );
        for (bad, why) in [
            ("a/b", "not an absolute path"),
            ("/run/kata-containers/shared/../x", "'.' or '..'"),
            ("/run/kata-containers/shared/./x", "'.' or '..'"),
            ("/run/kata-containers/shared", "not below"),
            ("/run/kata-containers/shared/", "not below"),
            ("/run/kata-containers/sharedX/a", "not below"),
            ("/etc/passwd", "not below"),
        ] {
            let err = relative_below(root, "the path", bad).expect_err(bad);
            let msg = format!("{err:#}");
            assert!(
                msg.starts_with("the path") && msg.contains(why),
                "{bad}: {msg}"
            );
        }
    }

    type Opener = fn(&OwnedFd, &Path, i32) -> Result<OwnedFd, Errno>;
    const OPENERS: [(&str, Opener); 2] = [("openat2", openat2_in_root), ("walk", walk_in_root)];

    /// root/{dir/file, abs -> /etc, rel -> ../../.., loop1 <-> loop2, dirlink -> /dir}
    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        std::fs::create_dir_all(r.join("dir/sub")).expect("mkdir");
        std::fs::write(r.join("dir/file"), "inside").expect("write");
        symlink("/etc", r.join("abs")).expect("symlink");
        symlink("../../..", r.join("rel")).expect("symlink");
        symlink("loop2", r.join("loop1")).expect("symlink");
        symlink("loop1", r.join("loop2")).expect("symlink");
        symlink("/dir", r.join("dirlink")).expect("symlink");
        t
    }

    #[test]
    fn secure_join_keeps_dotdot_inside() {
        let t = tree();
        let r = t.path();
        let cases = [
            ("../../etc/passwd", "etc/passwd"),
            ("/../..", ""),
            ("dir/../../../dir/file", "dir/file"),
            ("abs/passwd", "etc/passwd"),
            ("rel/etc", "etc"),
            ("dirlink/file", "dir/file"),
            ("dirlink/../x", "x"),
            ("./missing/../y", "y"),
        ];
        for (input, want) in cases {
            let got = secure_join(r, Path::new(input)).expect(input);
            assert_eq!(got, r.join(want), "secure_join of {input}");
        }
    }

    #[test]
    fn secure_join_detects_loops() {
        let t = tree();
        let err = secure_join(t.path(), Path::new("loop1/x")).expect_err("a loop");
        assert!(format!("{err:#}").contains("too many levels"), "{err:#}");
    }

    fn opened_inside(root: &Path, fd: &OwnedFd) -> PathBuf {
        let p = fd_path(fd).expect("fd path");
        let root = root.canonicalize().expect("canonical root");
        assert!(
            p.starts_with(&root),
            "{} escaped {}",
            p.display(),
            root.display()
        );
        p
    }

    #[test]
    fn open_in_root_resolves_like_secure_join() {
        let t = tree();
        let r = t.path();
        let root_fd = open_root(r).expect("root");
        for (which, open) in OPENERS {
            for input in [
                "dir/file",
                "dirlink/file",
                "../../dir/./file",
                "/rel/dir/file",
            ] {
                let fd = open(&root_fd, Path::new(input), libc::O_RDONLY)
                    .unwrap_or_else(|e| panic!("{which}: {input}: {e}"));
                let p = opened_inside(r, &fd);
                assert!(
                    p.ends_with("dir/file"),
                    "{which}: {input} -> {}",
                    p.display()
                );
                let text = std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                    .expect("read");
                assert_eq!(text, "inside");
            }
            // /etc exists outside, not inside: the absolute symlink must not reach it.
            let err = open(&root_fd, Path::new("abs/passwd"), libc::O_RDONLY)
                .expect_err("abs symlink must stay inside");
            assert_eq!(err, Errno::ENOENT, "{which}");
            let err = open(&root_fd, Path::new("loop1"), libc::O_RDONLY).expect_err("loop");
            assert_eq!(err, Errno::ELOOP, "{which}");
            let fd = open(&root_fd, Path::new("rel"), libc::O_PATH | libc::O_DIRECTORY)
                .unwrap_or_else(|e| panic!("{which}: rel: {e}"));
            assert_eq!(opened_inside(r, &fd), r.canonicalize().expect("canonical"));
        }
    }

    /// Regression (found by the safe_path fuzz target's differential
    /// check): the walk took `..` after a file, and a trailing `/` or `.`
    /// on a file, lexically, where the kernel's openat2 says ENOTDIR, so
    /// the fallback opened paths the primary refuses.
    #[test]
    fn the_walk_refuses_non_directories_mid_path_like_openat2() {
        let t = tree();
        let root_fd = open_root(t.path()).expect("root");
        for (which, open) in OPENERS {
            for input in ["dir/file/../file", "dir/file/", "dir/file/.", "dir/file/./"] {
                let err = open(&root_fd, Path::new(input), libc::O_PATH)
                    .map(|fd| fd_path(&fd).expect("fd path"))
                    .expect_err(input);
                assert_eq!(err, Errno::ENOTDIR, "{which}: {input}");
            }
            // `.` and `..` after a directory stay what they are.
            for input in ["dir/./../dir/file", "dir/sub/./..//file", "./dir/file"] {
                let fd = open(&root_fd, Path::new(input), libc::O_PATH)
                    .unwrap_or_else(|e| panic!("{which}: {input}: {e}"));
                assert!(
                    opened_inside(t.path(), &fd).ends_with("dir/file"),
                    "{which}: {input}"
                );
            }
        }
    }

    #[test]
    fn open_in_root_public_api() {
        let t = tree();
        let fd = open_in_root(t.path(), Path::new("/dirlink/../dir/file"), libc::O_RDONLY)
            .expect("open");
        assert!(opened_inside(t.path(), &fd).ends_with("dir/file"));
        let err =
            open_in_root(t.path(), Path::new("abs/passwd"), libc::O_RDONLY).expect_err("outside");
        assert!(format!("{err:#}").contains("abs/passwd"), "{err:#}");
    }

    #[test]
    fn mkdir_all_stays_inside() {
        let t = tree();
        let r = t.path();
        let fd = mkdir_all_in_root(r, Path::new("abs/new/deeper"), 0o755).expect("mkdir");
        assert!(opened_inside(r, &fd).ends_with("etc/new/deeper"));
        assert!(r.join("etc/new/deeper").is_dir());
    }

    /// A thread keeps swapping `root/swap` between a real directory and a
    /// symlink to `/` (then `../../../..`); every open must still land inside.
    #[test]
    fn open_in_root_survives_symlink_swaps() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let t = tree();
        let r = t.path().to_path_buf();
        std::fs::create_dir(r.join("real")).expect("mkdir");
        std::fs::write(r.join("real/passwd"), "inside").expect("write");
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (r, stop) = (r.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let tmp = r.join("swap.tmp");
                    let _ = std::fs::remove_file(&tmp);
                    let _ = std::fs::remove_dir(&tmp);
                    let made = if i % 2 == 0 {
                        symlink(
                            if i % 4 == 0 {
                                "/etc"
                            } else {
                                "../../../../etc"
                            },
                            &tmp,
                        )
                    } else {
                        symlink("real", &tmp)
                    };
                    if made.is_ok() {
                        let _ = std::fs::rename(&tmp, r.join("swap"));
                    }
                    i += 1;
                }
            })
        };
        let root_fd = open_root(&r).expect("root");
        let mut opened = 0;
        // At least 3000 rounds, and on until an open got through (a busy
        // machine may leave the swapper asleep in one state for a while).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut rounds = 0;
        while rounds < 3000 || (opened == 0 && std::time::Instant::now() < deadline) {
            rounds += 1;
            for (_, open) in OPENERS {
                if let Ok(fd) = open(&root_fd, Path::new("swap/passwd"), libc::O_RDONLY) {
                    opened += 1;
                    let text = std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                        .expect("read");
                    assert_eq!(text, "inside", "opened a file outside the root");
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().expect("swapper thread");
        assert!(
            opened > 0,
            "the race never let an open through: test proves nothing"
        );
    }
}
