//! Guest-wide RPCs: details, time, files, CPU/memory, randomness, OOM events, metrics, volumes, policy.

use protocols::agent::*;
#[allow(unused_imports)]
use protocols::empty::Empty;
#[allow(unused_imports)]
use protocols::{csi, types};

use super::status::unimplemented;
use super::AgentContext;

pub async fn get_metrics(_ctx: &AgentContext, _req: GetMetricsRequest) -> ttrpc::Result<Metrics> {
    unimplemented("GetMetrics")
}

pub async fn online_cpu_mem(
    _ctx: &AgentContext,
    _req: OnlineCPUMemRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("OnlineCPUMem")
}

pub async fn reseed_random_dev(
    _ctx: &AgentContext,
    _req: ReseedRandomDevRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("ReseedRandomDev")
}

pub async fn get_guest_details(
    _ctx: &AgentContext,
    _req: GuestDetailsRequest,
) -> ttrpc::Result<GuestDetailsResponse> {
    unimplemented("GetGuestDetails")
}

pub async fn mem_hotplug_by_probe(
    _ctx: &AgentContext,
    _req: MemHotplugByProbeRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("MemHotplugByProbe")
}

pub async fn set_guest_date_time(
    _ctx: &AgentContext,
    _req: SetGuestDateTimeRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("SetGuestDateTime")
}

pub async fn copy_file(_ctx: &AgentContext, _req: CopyFileRequest) -> ttrpc::Result<Empty> {
    unimplemented("CopyFile")
}

pub async fn add_swap(_ctx: &AgentContext, _req: AddSwapRequest) -> ttrpc::Result<Empty> {
    unimplemented("AddSwap")
}

pub async fn get_volume_stats(
    _ctx: &AgentContext,
    _req: VolumeStatsRequest,
) -> ttrpc::Result<csi::VolumeStatsResponse> {
    unimplemented("GetVolumeStats")
}

pub async fn resize_volume(_ctx: &AgentContext, _req: ResizeVolumeRequest) -> ttrpc::Result<Empty> {
    unimplemented("ResizeVolume")
}

pub async fn set_policy(_ctx: &AgentContext, _req: SetPolicyRequest) -> ttrpc::Result<Empty> {
    unimplemented("SetPolicy")
}
