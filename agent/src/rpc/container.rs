//! Container life cycle RPCs: create, start, exec, wait, signal, remove.
//! The work is in `sandbox::containers`; this maps requests to calls.

use protocols::agent::*;
use protocols::empty::Empty;

use super::AgentContext;
use crate::error::Result;
use crate::sandbox::containers as container;

pub async fn create_container(ctx: &AgentContext, req: CreateContainerRequest) -> Result<Empty> {
    container::create::create(ctx, req).await?;
    Ok(Empty::new())
}

pub async fn start_container(ctx: &AgentContext, req: StartContainerRequest) -> Result<Empty> {
    container::start::start(ctx, &req.container_id).await?;
    Ok(Empty::new())
}

pub async fn remove_container(ctx: &AgentContext, req: RemoveContainerRequest) -> Result<Empty> {
    container::remove::remove(ctx, &req.container_id, req.timeout).await?;
    Ok(Empty::new())
}

pub async fn exec_process(ctx: &AgentContext, req: ExecProcessRequest) -> Result<Empty> {
    container::exec::exec(ctx, req).await?;
    Ok(Empty::new())
}

pub async fn signal_process(ctx: &AgentContext, req: SignalProcessRequest) -> Result<Empty> {
    container::signal::signal(ctx, &req.container_id, &req.exec_id, req.signal).await?;
    Ok(Empty::new())
}

pub async fn wait_process(
    ctx: &AgentContext,
    req: WaitProcessRequest,
) -> Result<WaitProcessResponse> {
    let status = container::wait::wait(ctx, &req.container_id, &req.exec_id).await?;
    let mut resp = WaitProcessResponse::new();
    resp.status = status;
    Ok(resp)
}
