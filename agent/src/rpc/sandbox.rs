//! Sandbox RPCs: create/destroy, storages. The work is in `crate::sandbox`.

use protocols::agent::*;
use protocols::empty::Empty;

use super::AgentContext;
use crate::error::Result;
use crate::sandbox::{mounts, setup};

pub async fn create_sandbox(ctx: &AgentContext, req: CreateSandboxRequest) -> Result<Empty> {
    setup::create(ctx, &req).await?;
    Ok(Empty::new())
}

pub async fn destroy_sandbox(ctx: &AgentContext, _req: DestroySandboxRequest) -> Result<Empty> {
    setup::destroy(ctx).await?;
    Ok(Empty::new())
}

pub async fn update_ephemeral_mounts(
    ctx: &AgentContext,
    req: UpdateEphemeralMountsRequest,
) -> Result<Empty> {
    mounts::update_ephemeral(ctx, &req.storages).await?;
    Ok(Empty::new())
}

pub async fn remove_stale_virtiofs_share_mounts(
    ctx: &AgentContext,
    _req: RemoveStaleVirtiofsShareMountsRequest,
) -> Result<Empty> {
    mounts::remove_stale_share_mounts(ctx).await?;
    Ok(Empty::new())
}
