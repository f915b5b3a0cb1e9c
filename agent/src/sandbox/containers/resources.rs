//! A container's cgroup: update limits, stats, pause/resume (freezer), and
//! the containers' cpusets after OnlineCPUMem.
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

/// OnlineCPUMem: bring CPUs (and memory, unless `cpu_only`) online, then
/// widen the cpusets of the containers whose spec names CPUs, as Kata's
/// agent does (src/agent/src/sandbox.rs online_cpu_memory ->
/// update_cpuset_path).
pub async fn online_cpu_mem(ctx: &AgentContext, nb_cpus: u32, cpu_only: bool) -> Result<()> {
    blocking(move || crate::guest::hotplug::online_cpu_mem(nb_cpus, cpu_only)).await?;
    if nb_cpus == 0 {
        return Ok(());
    }
    let pinned: Vec<(Arc<Manager>, String)> = ctx
        .sandbox
        .lock()
        .await
        .containers
        .values()
        .filter_map(|c| {
            let cpus = c
                .spec
                .linux()
                .as_ref()?
                .resources()
                .as_ref()?
                .cpu()
                .as_ref()?
                .cpus()
                .clone()?;
            Some((c.cgroup.clone(), cpus))
        })
        .collect();
    if pinned.is_empty() {
        return Ok(());
    }
    blocking(move || {
        let online = crate::guest::hotplug::online_cpu_list()?;
        for (cgroup, cpus) in &pinned {
            cgroup.update_cpuset_path(&online, cpus)?;
        }
        Ok(())
    })
    .await
}

async fn blocking(f: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> Result<()> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(Error::internal(format!("worker thread failed: {e}"))),
    }
}
