//! A sorted, normalised listing of a rootfs tree: what the image and initrd
//! writers consume, and what the tree digest (seed of UUIDs) is computed from.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64 },
    Symlink { target: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Relative to the tree root, `/`-separated, never empty.
    pub path: String,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (no file type).
    pub mode: u32,
}

/// Walk `root` depth-first in byte order of names (a directory before its
/// contents). Anything but directories, files and symlinks is an error: the
/// tree is built from packages and must not hold device nodes or sockets.
pub fn scan(root: &Path) -> Result<Vec<Node>> {
    let mut out = Vec::new();
    walk(root, "", &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Node>) -> Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            bail!(
                "{}: file name {:?} is not UTF-8",
                dir.display(),
                entry.file_name()
            );
        };
        names.push(name.to_string());
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target =
                fs::read_link(&path).with_context(|| format!("readlink {}", path.display()))?;
            let Some(target) = target.to_str() else {
                bail!("{}: symlink target is not UTF-8", path.display());
            };
            out.push(Node {
                path: rel,
                kind: Kind::Symlink {
                    target: target.to_string(),
                },
                mode: 0o777,
            });
        } else if ft.is_dir() {
            out.push(Node {
                path: rel.clone(),
                kind: Kind::Dir,
                mode,
            });
            walk(&path, &rel, out)?;
        } else if ft.is_file() {
            out.push(Node {
                path: rel,
                kind: Kind::File { size: meta.len() },
                mode,
            });
        } else {
            bail!(
                "{}: only directories, files and symlinks belong in the rootfs",
                path.display()
            );
        }
    }
    Ok(())
}

/// sha256 over the listing and every file's content: same digest, same tree.
pub fn digest(root: &Path, nodes: &[Node]) -> Result<String> {
    let mut h = Sha256::new();
    for n in nodes {
        let detail = match &n.kind {
            Kind::Dir => "dir".to_string(),
            Kind::Symlink { target } => format!("link {target}"),
            Kind::File { size } => {
                let sum = crate::cache::sha256_file(&root.join(&n.path))?;
                format!("file {size} {sum}")
            }
        };
        h.update(format!("{} {:o} {}\n", n.path, n.mode, detail).as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// Give every entry owner 0:0 (when running as root) and mtime `epoch`, the
/// root directory included, so nothing of the build machine shows.
pub fn normalise(root: &Path, nodes: &[Node], epoch: i64) -> Result<()> {
    let as_root = crate::setup::is_root();
    let mut paths: Vec<std::path::PathBuf> = nodes.iter().map(|n| root.join(&n.path)).collect();
    // Children first: setting a child's times does not touch its parent's
    // mtime, but creating nothing here keeps the order irrelevant anyway.
    paths.push(root.to_path_buf());
    for p in paths.iter().rev() {
        let c = CString::new(p.as_os_str().as_bytes())
            .with_context(|| format!("path {} has a NUL byte", p.display()))?;
        if as_root {
            // SAFETY: c is a valid NUL-terminated path; lchown does not follow symlinks.
            if unsafe { libc::lchown(c.as_ptr(), 0, 0) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("lchown {}", p.display()));
            }
        }
        let ts = libc::timespec {
            tv_sec: epoch as libc::time_t,
            tv_nsec: 0,
        };
        let times = [ts, ts];
        // SAFETY: valid path and a two-element timespec array, as utimensat wants.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setting times of {}", p.display()));
        }
    }
    Ok(())
}

/// Whether every entry is owned by 0:0 (mkfs.ext4 -d copies owners).
pub fn all_root_owned(root: &Path, nodes: &[Node]) -> Result<bool> {
    for n in nodes {
        let m =
            fs::symlink_metadata(root.join(&n.path)).with_context(|| format!("stat {}", n.path))?;
        if m.uid() != 0 || m.gid() != 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn scans_sorted_depth_first_and_digests_content() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::write(r.join("usr/bin/b"), b"bb").unwrap();
        fs::write(r.join("usr-x"), b"x").unwrap();
        fs::create_dir(r.join("a")).unwrap();
        symlink("/usr/bin/b", r.join("a/init")).unwrap();
        let nodes = scan(r).unwrap();
        let paths: Vec<&str> = nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(
            paths,
            ["a", "a/init", "usr", "usr/bin", "usr/bin/b", "usr-x"]
        );
        assert_eq!(
            nodes[1].kind,
            Kind::Symlink {
                target: "/usr/bin/b".into()
            }
        );
        assert_eq!(nodes[4].kind, Kind::File { size: 2 });
        let d1 = digest(r, &nodes).unwrap();
        fs::write(r.join("usr/bin/b"), b"bc").unwrap();
        assert_ne!(d1, digest(r, &nodes).unwrap());
    }

    #[test]
    fn normalise_sets_epoch_mtimes() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::write(r.join("f"), b"1").unwrap();
        symlink("f", r.join("l")).unwrap();
        let nodes = scan(r).unwrap();
        normalise(r, &nodes, 1_234_567).unwrap();
        for p in ["f", "l", ""] {
            let m = fs::symlink_metadata(r.join(p)).unwrap();
            assert_eq!(m.mtime(), 1_234_567, "{p}");
        }
    }
}
