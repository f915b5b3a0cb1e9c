//! A pod's fsGroup on its volumes: the group owns the files and new files
//! inherit it (setgid directories). Kata: src/agent/src/storage/mod.rs
//! set_ownership / recursive_ownership_change for block volumes (the
//! Storage's `fs_group`, with `fsGroupChangePolicy`), local_handler.rs and
//! ephemeral_handler.rs for the `fsgid=` option of emptyDirs.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use protocols::agent::FSGroup;
use protocols::types::FSGroupChangePolicy;

/// Group read/write (read-only volumes: read), directories also search and
/// setgid: Kata's RW_MASK, RO_MASK, EXEC_MASK, MODE_SETGID.
const RW: u32 = 0o660;
const RO: u32 = 0o440;
const EXEC: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// chgrp `gid` and setgid one directory, so files made inside belong to
/// the group.
pub fn set_group(dir: &Path, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(dir, None, Some(gid))
        .with_context(|| format!("chgrp {gid} {}", dir.display()))?;
    let mode = std::fs::metadata(dir)?.permissions().mode() | libc::S_ISGID;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", dir.display()))
}

/// Give a mounted volume (`root`, its top directory) to the fsGroup: every
/// file and directory gets the group and the group's permission bits.
/// With OnRootMismatch nothing changes when the top already has both.
/// Symlinks are neither changed nor followed (a link must not hand a file
/// outside the volume to the pod).
pub fn apply(root: &Path, group: &FSGroup, read_only: bool) -> Result<()> {
    let meta = std::fs::metadata(root).with_context(|| format!("inspecting {}", root.display()))?;
    let mask = if read_only { RO } else { RW };
    if group.group_change_policy.enum_value_or_default() == FSGroupChangePolicy::OnRootMismatch
        && meta.gid() == group.group_id
    {
        let want = mask | EXEC;
        let mode = meta.permissions().mode();
        if mode & want == want && mode & SETGID != 0 {
            return Ok(());
        }
    }
    // The top is followed (it may be a /proc/self/fd link to the mount).
    change(root, &meta, group.group_id, mask)
        .with_context(|| format!("giving {} to fsGroup {}", root.display(), group.group_id))
}

fn change(path: &Path, meta: &std::fs::Metadata, gid: u32, mask: u32) -> Result<()> {
    let mut mode = mask;
    if meta.is_dir() {
        let entries =
            std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?;
        for entry in entries {
            let child = entry?.path();
            let child_meta = std::fs::symlink_metadata(&child)
                .with_context(|| format!("inspecting {}", child.display()))?;
            if !child_meta.file_type().is_symlink() {
                change(&child, &child_meta, gid, mask)?;
            }
        }
        mode |= EXEC | SETGID;
    }
    std::os::unix::fs::chown(path, None, Some(gid))
        .with_context(|| format!("chgrp {gid} {}", path.display()))?;
    let mode = (meta.permissions().mode() & 0o7777) | mode;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }

    /// Kata's recursive_ownership_change, on a tree with a file, a
    /// directory and a symlink pointing outside.
    #[test]
    fn gives_the_tree_to_the_group() {
        if !test_support::is_root() {
            test_support::skip!("chgrp to another group needs root");
        }
        let outside = tempfile::NamedTempFile::new().expect("outside");
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::create_dir(root.join("d")).expect("mkdir");
        std::fs::write(root.join("d/f"), "x").expect("write");
        std::fs::set_permissions(root.join("d/f"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        std::os::unix::fs::symlink(outside.path(), root.join("link")).expect("symlink");
        let mut g = FSGroup::new();
        g.group_id = 4321;
        apply(root, &g, false).expect("apply");
        for p in [root.to_path_buf(), root.join("d"), root.join("d/f")] {
            assert_eq!(
                std::fs::metadata(&p).expect("stat").gid(),
                4321,
                "{}",
                p.display()
            );
        }
        assert_eq!(mode(root), 0o2775);
        assert_eq!(mode(&root.join("d/f")), 0o660);
        let out = std::fs::metadata(outside.path()).expect("stat");
        assert_ne!(out.gid(), 4321, "the symlink's target outside is untouched");
        assert_eq!(out.permissions().mode() & 0o777, 0o600);

        // OnRootMismatch: the top is right already, so nothing below changes.
        std::fs::set_permissions(root.join("d/f"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        g.group_change_policy = FSGroupChangePolicy::OnRootMismatch.into();
        apply(root, &g, false).expect("apply");
        assert_eq!(mode(&root.join("d/f")), 0o600, "skipped");
        // Always: it does.
        g.group_change_policy = FSGroupChangePolicy::Always.into();
        apply(root, &g, true).expect("apply");
        assert_eq!(mode(&root.join("d/f")), 0o640, "read-only: group read");
    }
}
