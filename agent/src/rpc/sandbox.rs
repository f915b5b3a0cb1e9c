//! Sandbox: create/destroy, storages.

use protocols::agent::*;
#[allow(unused_imports)]
use protocols::empty::Empty;
#[allow(unused_imports)]
use protocols::{csi, types};

use super::status::unimplemented;
use super::AgentContext;

pub async fn create_sandbox(
    _ctx: &AgentContext,
    _req: CreateSandboxRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("CreateSandbox")
}

pub async fn destroy_sandbox(
    _ctx: &AgentContext,
    _req: DestroySandboxRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("DestroySandbox")
}

pub async fn update_ephemeral_mounts(
    _ctx: &AgentContext,
    _req: UpdateEphemeralMountsRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("UpdateEphemeralMounts")
}

pub async fn remove_stale_virtiofs_share_mounts(
    _ctx: &AgentContext,
    _req: RemoveStaleVirtiofsShareMountsRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("RemoveStaleVirtiofsShareMounts")
}
