//! Storages (the `Storage` messages of CreateSandbox / CreateContainer):
//! virtio-fs, 9p, bind, local, ephemeral, blk / virtio-blk. Mounted once and
//! reference-counted by mount point, so two containers sharing one storage
//! unmount it once, when the last one goes.
//!
//! CONTRACT (used by `container` and `rpc::sandbox`; keep the signatures).

use anyhow::{bail, Result};
use protocols::agent::Storage;

/// Mounted storages of the sandbox, by guest mount point.
#[derive(Default)]
pub struct StorageRegistry {}

impl StorageRegistry {
    /// Mount every storage (or take one more reference on an already mounted
    /// one); returns their guest mount points in order. On error nothing of
    /// this call stays mounted or referenced.
    pub fn add(&mut self, storages: &[Storage]) -> Result<Vec<String>> {
        if storages.is_empty() {
            return Ok(Vec::new());
        }
        bail!("storages: not implemented yet")
    }

    /// Drop one reference on each mount point; unmount the ones at zero.
    pub fn remove(&mut self, mount_points: &[String]) -> Result<()> {
        if mount_points.is_empty() {
            return Ok(());
        }
        bail!("storages: not implemented yet")
    }

    /// Unmount everything (DestroySandbox).
    pub fn clear(&mut self) -> Result<()> {
        Ok(())
    }
}
