//! The usual /dev symlinks (fd, stdin, stdout, stderr, ptmx).

use std::path::Path;

use anyhow::{Context, Result};

use crate::safe_path;

const LINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
];

pub fn dev_symlinks(rootfs: &Path) -> Result<()> {
    let dev = safe_path::secure_join(rootfs, Path::new("/dev")).context("resolving /dev")?;
    for (target, link) in LINKS {
        let path = safe_path::secure_join(rootfs, Path::new(link))
            .with_context(|| format!("resolving {link}"))?;
        // ptmx only makes sense with a devpts mounted on /dev/pts.
        if link == "/dev/ptmx" && !dev.join("pts/ptmx").exists() {
            continue;
        }
        if path.symlink_metadata().is_ok() {
            if link != "/dev/ptmx" {
                continue;
            }
            std::fs::remove_file(&path).with_context(|| format!("replacing {link}"))?;
        }
        std::os::unix::fs::symlink(target, &path)
            .with_context(|| format!("creating the symlink {link} -> {target}"))?;
    }
    Ok(())
}
