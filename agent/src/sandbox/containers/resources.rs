//! A container's cgroup: update limits, stats, pause/resume (freezer).
//! The sandbox lock is held only to find the container; the cgroup work
//! (which may wait for the kernel, e.g. to finish freezing) runs on a
//! blocking thread.

use std::sync::Arc;

use oci_spec::runtime::LinuxResources;
use protocols::agent::CgroupStats;

use crate::cgroups::Manager;
use crate::error::{Error, Result};
use crate::sandbox::AgentContext;

async fn with_cgroup<T: Send + 'static, E: Into<Error> + Send + 'static>(
    ctx: &AgentContext,
    rpc: &'static str,
    id: &str,
    f: impl FnOnce(&Manager) -> std::result::Result<T, E> + Send + 'static,
) -> Result<T> {
    if id.is_empty() {
        return Err(Error::invalid(format!("{rpc}: container_id is empty")));
    }
    let cgroup: Arc<Manager> = ctx.sandbox.lock().await.container(id)?.cgroup.clone();
    let (result, skipped) = tokio::task::spawn_blocking(move || {
        let result = f(&cgroup);
        (result, cgroup.skipped_settings())
    })
    .await
    .map_err(|e| Error::internal(format!("{rpc} {id}: the cgroup task failed: {e}")))?;
    for note in skipped {
        slog::warn!(ctx.logger, "cgroup setting skipped"; "container" => id, "reason" => note);
    }
    result.map_err(|e| e.into().context(format!("{rpc} {id}")))
}

pub async fn update(ctx: &AgentContext, id: &str, resources: LinuxResources) -> Result<()> {
    with_cgroup(ctx, "UpdateContainer", id, move |cg| cg.update(&resources)).await
}

pub async fn stats(ctx: &AgentContext, id: &str) -> Result<CgroupStats> {
    with_cgroup(ctx, "StatsContainer", id, Manager::stats).await
}

pub async fn pause(ctx: &AgentContext, id: &str) -> Result<()> {
    with_cgroup(ctx, "PauseContainer", id, Manager::freeze).await
}

pub async fn resume(ctx: &AgentContext, id: &str) -> Result<()> {
    with_cgroup(ctx, "ResumeContainer", id, Manager::thaw).await
}
