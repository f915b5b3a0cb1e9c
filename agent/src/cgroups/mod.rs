//! Container cgroups (v1 and v2) through cgroups-rs: create, limit, account,
//! freeze, remove.
//!
//! CONTRACT (used by `container` and `rpc::resources`; keep the signatures):
//! a `Manager` per container, created before the container's init runs.

use anyhow::{bail, Result};
use oci_spec::runtime::LinuxResources;
use protocols::agent::CgroupStats;

/// The cgroup of one container.
pub struct Manager {
    pub container_id: String,
}

impl Manager {
    /// Create (or adopt) the cgroup at `cgroups_path` (the spec's
    /// linux.cgroupsPath; a default derived from the id when empty) and apply
    /// `resources`. `unified`: cgroup v2 (agent config
    /// systemd.unified_cgroup_hierarchy, or detected).
    pub fn new(
        container_id: &str,
        _cgroups_path: &str,
        _resources: Option<&LinuxResources>,
        _unified: bool,
    ) -> Result<Manager> {
        bail!("cgroups for container {container_id}: not implemented yet")
    }

    /// Move `pid` into the cgroup.
    pub fn add_process(&self, _pid: i32) -> Result<()> {
        bail!("cgroups: add_process not implemented yet")
    }

    /// Apply new limits (UpdateContainer).
    pub fn update(&self, _resources: &LinuxResources) -> Result<()> {
        bail!("cgroups: update not implemented yet")
    }

    /// Usage counters (StatsContainer).
    pub fn stats(&self) -> Result<CgroupStats> {
        bail!("cgroups: stats not implemented yet")
    }

    pub fn freeze(&self) -> Result<()> {
        bail!("cgroups: freeze not implemented yet")
    }

    pub fn thaw(&self) -> Result<()> {
        bail!("cgroups: thaw not implemented yet")
    }

    /// Every pid in the cgroup (to signal all processes of a container).
    pub fn pids(&self) -> Result<Vec<i32>> {
        bail!("cgroups: pids not implemented yet")
    }

    /// Remove the cgroup (its processes must be gone). Idempotent.
    pub fn destroy(&self) -> Result<()> {
        bail!("cgroups: destroy not implemented yet")
    }
}

/// grpc LinuxResources (the wire form) to oci-spec's.
pub fn resources_from_grpc(_r: &protocols::oci::LinuxResources) -> Result<LinuxResources> {
    bail!("cgroups: resources_from_grpc not implemented yet")
}
