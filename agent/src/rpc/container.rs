//! Container life cycle RPCs: create, start, exec, wait, signal, remove.
//! The work is in `crate::container`; this maps outcomes to ttRPC statuses.

use protocols::agent::*;
use protocols::empty::Empty;

use super::status::{internal, invalid_argument, not_found};
use super::AgentContext;
use crate::container::{self, Failure};

/// ttRPC status of a failed life-cycle operation.
pub fn to_status(f: Failure) -> ttrpc::Error {
    match f {
        Failure::Invalid(e) => invalid_argument(format!("{e:#}")),
        Failure::NotFound(what) => not_found(what),
        Failure::Internal(e) => internal(e),
    }
}

pub async fn create_container(
    ctx: &AgentContext,
    req: CreateContainerRequest,
) -> ttrpc::Result<Empty> {
    crate::reaper::start().map_err(internal)?;
    container::create::create(ctx, req)
        .await
        .map_err(to_status)?;
    Ok(Empty::new())
}

pub async fn start_container(
    ctx: &AgentContext,
    req: StartContainerRequest,
) -> ttrpc::Result<Empty> {
    container::start::start(ctx, &req.container_id)
        .await
        .map_err(to_status)?;
    Ok(Empty::new())
}

pub async fn remove_container(
    ctx: &AgentContext,
    req: RemoveContainerRequest,
) -> ttrpc::Result<Empty> {
    container::remove::remove(ctx, &req.container_id, req.timeout)
        .await
        .map_err(to_status)?;
    Ok(Empty::new())
}

pub async fn exec_process(ctx: &AgentContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
    container::exec::exec(ctx, req).await.map_err(to_status)?;
    Ok(Empty::new())
}

pub async fn signal_process(ctx: &AgentContext, req: SignalProcessRequest) -> ttrpc::Result<Empty> {
    container::signal::signal(ctx, &req.container_id, &req.exec_id, req.signal)
        .await
        .map_err(to_status)?;
    Ok(Empty::new())
}

pub async fn wait_process(
    ctx: &AgentContext,
    req: WaitProcessRequest,
) -> ttrpc::Result<WaitProcessResponse> {
    let status = container::wait::wait(ctx, &req.container_id, &req.exec_id)
        .await
        .map_err(to_status)?;
    let mut resp = WaitProcessResponse::new();
    resp.status = status;
    Ok(resp)
}
