//! Container life cycle: create, start, exec, wait, signal, update, stats, pause, resume, remove.

use protocols::agent::*;
#[allow(unused_imports)]
use protocols::empty::Empty;
#[allow(unused_imports)]
use protocols::{csi, types};

use super::status::unimplemented;
use super::AgentContext;

pub async fn create_container(
    _ctx: &AgentContext,
    _req: CreateContainerRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("CreateContainer")
}

pub async fn start_container(
    _ctx: &AgentContext,
    _req: StartContainerRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("StartContainer")
}

pub async fn remove_container(
    _ctx: &AgentContext,
    _req: RemoveContainerRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("RemoveContainer")
}

pub async fn exec_process(_ctx: &AgentContext, _req: ExecProcessRequest) -> ttrpc::Result<Empty> {
    unimplemented("ExecProcess")
}

pub async fn signal_process(
    _ctx: &AgentContext,
    _req: SignalProcessRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("SignalProcess")
}

pub async fn wait_process(
    _ctx: &AgentContext,
    _req: WaitProcessRequest,
) -> ttrpc::Result<WaitProcessResponse> {
    unimplemented("WaitProcess")
}
