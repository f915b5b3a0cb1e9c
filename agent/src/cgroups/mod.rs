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
    // TEMP shim (lifecycle branch): one cgroup directory; drop this commit.
    dir: std::path::PathBuf,
}

impl Manager {
    /// Create (or adopt) the cgroup at `cgroups_path` (the spec's
    /// linux.cgroupsPath; a default derived from the id when empty) and apply
    /// `resources`. `unified`: cgroup v2 (agent config
    /// systemd.unified_cgroup_hierarchy, or detected).
    pub fn new(
        container_id: &str,
        cgroups_path: &str,
        _resources: Option<&LinuxResources>,
        _unified: bool,
    ) -> Result<Manager> {
        let base = if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            "/sys/fs/cgroup/unified"
        } else {
            "/sys/fs/cgroup"
        };
        let rel = if cgroups_path.is_empty() {
            format!("kata_agent/{container_id}")
        } else {
            cgroups_path.trim_start_matches('/').to_string()
        };
        let dir = std::path::Path::new(base).join(rel);
        std::fs::create_dir_all(&dir)?;
        Ok(Manager {
            container_id: container_id.into(),
            dir,
        })
    }

    /// Move `pid` into the cgroup.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        Ok(std::fs::write(
            self.dir.join("cgroup.procs"),
            pid.to_string(),
        )?)
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
        let text = std::fs::read_to_string(self.dir.join("cgroup.procs"))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Remove the cgroup (its processes must be gone). Idempotent.
    pub fn destroy(&self) -> Result<()> {
        match std::fs::remove_dir(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// grpc LinuxResources (the wire form) to oci-spec's.
pub fn resources_from_grpc(_r: &protocols::oci::LinuxResources) -> Result<LinuxResources> {
    bail!("cgroups: resources_from_grpc not implemented yet")
}
