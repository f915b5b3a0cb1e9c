//! Container rootfs fixtures in the shared directory: the host side of
//! kataShared. A container's rootfs goes to `<shared>/<container id>/rootfs`,
//! which the guest sees under /run/kata-containers/shared/containers/.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where the agent mounts kataShared in the guest (Kata's path).
pub const GUEST_SHARED_DIR: &str = "/run/kata-containers/shared/containers";

/// Copy the busybox rootfs for container `id` into the shared dir; returns
/// the rootfs path as the guest sees it (the OCI spec's root.path).
pub fn install_rootfs(shared_dir: &Path, busybox: &Path, id: &str) -> Result<String> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        bail!("container id {id:?} cannot be a directory name");
    }
    let dest = shared_dir.join(id).join("rootfs");
    copy_tree(busybox, &dest)
        .with_context(|| format!("copying {} to {}", busybox.display(), dest.display()))?;
    Ok(format!("{GUEST_SHARED_DIR}/{id}/rootfs"))
}

/// Recursive copy keeping symlinks as symlinks (the applet links).
fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let to: PathBuf = dest.join(entry.file_name());
        if kind.is_symlink() {
            symlink(fs::read_link(entry.path())?, &to)?;
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else {
            fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_lands_under_the_container_id() {
        let base = std::env::temp_dir().join(format!("e2e-fixture-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let src = base.join("busybox");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::write(src.join("bin/busybox"), b"bb").unwrap();
        symlink("busybox", src.join("bin/sh")).unwrap();
        let shared = base.join("shared");
        let guest = install_rootfs(&shared, &src, "c1").unwrap();
        assert_eq!(guest, "/run/kata-containers/shared/containers/c1/rootfs");
        let root = shared.join("c1/rootfs");
        assert_eq!(fs::read(root.join("bin/busybox")).unwrap(), b"bb");
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            PathBuf::from("busybox")
        );
        assert!(install_rootfs(&shared, &src, "../x").is_err());
        fs::remove_dir_all(&base).unwrap();
    }
}
