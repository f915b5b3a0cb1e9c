//! Container resources: update limits, stats, pause/resume (freezer), OOM
//! events. The work is in `sandbox::containers::resources`.

use protocols::agent::*;
use protocols::empty::Empty;

use super::AgentContext;
use crate::cgroups;
use crate::error::{Error, Result};
use crate::sandbox::containers::resources;

pub async fn update_container(ctx: &AgentContext, req: UpdateContainerRequest) -> Result<Empty> {
    let Some(grpc) = req.resources.as_ref() else {
        return Err(Error::invalid(format!(
            "UpdateContainer {}: no resources given",
            req.container_id
        )));
    };
    let wanted = cgroups::resources_from_grpc(grpc)
        .map_err(|e| e.context(format!("UpdateContainer {}", req.container_id)))?;
    resources::update(ctx, &req.container_id, wanted).await?;
    Ok(Empty::new())
}

pub async fn stats_container(
    ctx: &AgentContext,
    req: StatsContainerRequest,
) -> Result<StatsContainerResponse> {
    let mut resp = StatsContainerResponse::new();
    resp.cgroup_stats = Some(resources::stats(ctx, &req.container_id).await?).into();
    Ok(resp)
}

pub async fn pause_container(ctx: &AgentContext, req: PauseContainerRequest) -> Result<Empty> {
    resources::pause(ctx, &req.container_id).await?;
    Ok(Empty::new())
}

pub async fn resume_container(ctx: &AgentContext, req: ResumeContainerRequest) -> Result<Empty> {
    resources::resume(ctx, &req.container_id).await?;
    Ok(Empty::new())
}

/// Blocks until a container of this sandbox hits OOM; the runtime calls it
/// in a loop, and events are queued, so none is lost between calls.
pub async fn get_oom_event(ctx: &AgentContext, _req: GetOOMEventRequest) -> Result<OOMEvent> {
    let id = tokio::select! {
        id = cgroups::oom::queue().next() => id,
        // The agent stops serving (DestroySandbox as PID 1): end the wait,
        // as Kata's agent drops its event channel, or the server's shutdown
        // would wait for this call.
        _ = ctx.stopped() => String::new(),
    };
    if id.is_empty() {
        return Err(Error::internal("GetOOMEvent: the OOM queue closed"));
    }
    let mut event = OOMEvent::new();
    event.container_id = id;
    Ok(event)
}
