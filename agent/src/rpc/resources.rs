//! Container resources: update limits, stats, pause/resume (freezer), OOM events.

use protocols::agent::*;
use protocols::empty::Empty;

use super::status::unimplemented;
use super::AgentContext;

pub async fn update_container(
    _ctx: &AgentContext,
    _req: UpdateContainerRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("UpdateContainer")
}

pub async fn stats_container(
    _ctx: &AgentContext,
    _req: StatsContainerRequest,
) -> ttrpc::Result<StatsContainerResponse> {
    unimplemented("StatsContainer")
}

pub async fn pause_container(
    _ctx: &AgentContext,
    _req: PauseContainerRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("PauseContainer")
}

pub async fn resume_container(
    _ctx: &AgentContext,
    _req: ResumeContainerRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("ResumeContainer")
}

pub async fn get_oom_event(
    _ctx: &AgentContext,
    _req: GetOOMEventRequest,
) -> ttrpc::Result<OOMEvent> {
    unimplemented("GetOOMEvent")
}
