//! Container resources: update limits, stats, pause/resume (freezer), OOM events.
//!
//! Each handler finds the container's cgroup manager under the sandbox lock;
//! GetOOMEvent waits on the OOM queue without holding it.

use std::sync::Arc;

use super::AgentContext;
use crate::cgroups::{self, Manager};
use crate::container::unknown_container;
use crate::error::{Error, Result};
use protocols::agent::*;
use protocols::empty::Empty;

/// Run `f` on the cgroup of container `id`. The sandbox lock is held only
/// to find the container; `f` (which may wait for the kernel, e.g. to
/// finish freezing) runs on a blocking thread.
async fn with_cgroup<T: Send + 'static, E: Into<Error> + Send + 'static>(
    ctx: &AgentContext,
    rpc: &'static str,
    id: &str,
    f: impl FnOnce(&Manager) -> std::result::Result<T, E> + Send + 'static,
) -> Result<T> {
    if id.is_empty() {
        return Err(Error::invalid(format!("{rpc}: container_id is empty")));
    }
    let cgroup: Arc<Manager> = {
        let sandbox = ctx.sandbox.lock().await;
        let container = sandbox
            .containers
            .get(id)
            .ok_or_else(|| unknown_container(id))?;
        container.cgroup.clone()
    };
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

pub async fn update_container(ctx: &AgentContext, req: UpdateContainerRequest) -> Result<Empty> {
    let Some(grpc) = req.resources.as_ref() else {
        return Err(Error::invalid(format!(
            "UpdateContainer {}: no resources given",
            req.container_id
        )));
    };
    let resources = cgroups::resources_from_grpc(grpc)
        .map_err(|e| e.context(format!("UpdateContainer {}", req.container_id)))?;
    with_cgroup(ctx, "UpdateContainer", &req.container_id, move |cg| {
        cg.update(&resources)
    })
    .await?;
    Ok(Empty::new())
}

pub async fn stats_container(
    ctx: &AgentContext,
    req: StatsContainerRequest,
) -> Result<StatsContainerResponse> {
    let stats = with_cgroup(ctx, "StatsContainer", &req.container_id, Manager::stats).await?;
    let mut resp = StatsContainerResponse::new();
    resp.cgroup_stats = Some(stats).into();
    Ok(resp)
}

pub async fn pause_container(ctx: &AgentContext, req: PauseContainerRequest) -> Result<Empty> {
    with_cgroup(ctx, "PauseContainer", &req.container_id, Manager::freeze).await?;
    Ok(Empty::new())
}

pub async fn resume_container(ctx: &AgentContext, req: ResumeContainerRequest) -> Result<Empty> {
    with_cgroup(ctx, "ResumeContainer", &req.container_id, Manager::thaw).await?;
    Ok(Empty::new())
}

/// Blocks until a container of this sandbox hits OOM; the runtime calls it
/// in a loop, and events are queued, so none is lost between calls.
pub async fn get_oom_event(_ctx: &AgentContext, _req: GetOOMEventRequest) -> Result<OOMEvent> {
    let id = cgroups::oom::queue().next().await;
    if id.is_empty() {
        return Err(Error::internal("GetOOMEvent: the OOM queue closed"));
    }
    let mut event = OOMEvent::new();
    event.container_id = id;
    Ok(event)
}
