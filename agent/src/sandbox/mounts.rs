//! The sandbox's storages while it runs: UpdateEphemeralMounts and
//! RemoveStaleVirtiofsShareMounts (CreateSandbox's own storages are in
//! `setup`, a container's in `containers`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::mount::{umount2, MntFlags};
use protocols::agent::Storage;

use super::AgentContext;
use crate::error::{Error, Result};
use crate::mountinfo;

/// Where Kata's runtime mounts the shared directory of containers.
const SHARED_CONTAINERS_DIR: &str = "/run/kata-containers/shared/containers";

/// UpdateEphemeralMounts: remount (or mount) each ephemeral storage with
/// its new options.
pub async fn update_ephemeral(ctx: &AgentContext, storages: &[Storage]) -> Result<()> {
    let mut sandbox = ctx.sandbox.lock().await;
    for s in storages {
        if s.driver != "ephemeral" {
            return Err(Error::invalid(format!(
                "UpdateEphemeralMounts: storage {} has driver {:?}, expected \"ephemeral\"",
                s.mount_point, s.driver
            )));
        }
        sandbox
            .storages
            .update_ephemeral(s)
            .context("UpdateEphemeralMounts")?;
    }
    Ok(())
}

/// RemoveStaleVirtiofsShareMounts, under the sandbox lock (no storage
/// comes or goes meanwhile).
pub async fn remove_stale_share_mounts(ctx: &AgentContext) -> Result<()> {
    let _sandbox = ctx.sandbox.lock().await;
    let removed = unmount_stale_below(Path::new(SHARED_CONTAINERS_DIR))
        .context("RemoveStaleVirtiofsShareMounts")?;
    slog::info!(ctx.logger, "removed stale virtio-fs share mounts"; "count" => removed);
    Ok(())
}

/// Mounts below the shared containers directory whose source went away on
/// the host (stat fails with ENOENT/ESTALE/ENOTCONN): unmount them.
fn unmount_stale_below(shared: &Path) -> anyhow::Result<usize> {
    let mut removed = 0;
    let mut below: Vec<PathBuf> = mountinfo::mount_points()?
        .into_iter()
        .filter(|p| p.starts_with(shared) && p != shared)
        .collect();
    below.sort();
    below.dedup();
    for p in below.iter().rev() {
        let stale = match std::fs::metadata(p) {
            Ok(_) => false,
            Err(e) => matches!(
                e.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::ESTALE) | Some(libc::ENOTCONN)
            ),
        };
        if stale {
            umount2(p.as_path(), MntFlags::MNT_DETACH)
                .with_context(|| format!("unmounting stale share mount {}", p.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}
