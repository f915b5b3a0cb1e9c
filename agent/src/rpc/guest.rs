//! Guest-wide RPCs: details, time, files, CPU/memory, randomness, OOM events, metrics, volumes, policy.

use std::path::Path;

use protocols::agent::*;
use protocols::csi;
use protocols::empty::Empty;

use super::status::unimplemented;
use super::AgentContext;
use crate::error::{Error, Result};
use crate::guest::copy_file;
use crate::guest::{clock, entropy, hotplug, metrics, volume};
use crate::seccomp;
use crate::storage::drivers;
use crate::version;

/// Blocking sysfs/file work goes off the async worker threads.
async fn blocking<T: Send + 'static, E: Into<Error> + Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, E> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(Into::into),
        Err(e) => Err(Error::internal(format!("worker thread failed: {e}"))),
    }
}

pub async fn get_metrics(_ctx: &AgentContext, _req: GetMetricsRequest) -> Result<Metrics> {
    let text = blocking(metrics::agent_metrics).await?;
    let mut m = Metrics::new();
    m.metrics = text;
    Ok(m)
}

pub async fn online_cpu_mem(ctx: &AgentContext, req: OnlineCPUMemRequest) -> Result<Empty> {
    crate::sandbox::containers::resources::online_cpu_mem(ctx, req.nb_cpus, req.cpu_only).await?;
    Ok(Empty::new())
}

pub async fn reseed_random_dev(_ctx: &AgentContext, req: ReseedRandomDevRequest) -> Result<Empty> {
    blocking(move || entropy::reseed(&req.data)).await?;
    Ok(Empty::new())
}

pub async fn get_guest_details(
    ctx: &AgentContext,
    req: GuestDetailsRequest,
) -> Result<GuestDetailsResponse> {
    let mem = Path::new(hotplug::SYSFS_MEMORY);
    let mut resp = GuestDetailsResponse::new();
    if req.mem_block_size {
        resp.mem_block_size_bytes = hotplug::mem_block_size(mem)?;
    }
    if req.mem_hotplug_probe {
        resp.support_mem_hotplug_probe = hotplug::supports_probe(mem);
    }
    let mut details = AgentDetails::new();
    details.version = version::AGENT_VERSION.to_string();
    details.init_daemon = ctx.init_daemon;
    details.storage_handlers = drivers::DRIVERS.iter().map(|s| s.to_string()).collect();
    // Device handlers belong to the container life cycle, which reports
    // none yet.
    details.device_handlers = Vec::new();
    details.supports_seccomp = seccomp::available();
    resp.agent_details = Some(details).into();
    Ok(resp)
}

pub async fn mem_hotplug_by_probe(
    _ctx: &AgentContext,
    req: MemHotplugByProbeRequest,
) -> Result<Empty> {
    blocking(move || {
        hotplug::probe_memory(Path::new(hotplug::SYSFS_MEMORY), &req.memHotplugProbeAddr)
    })
    .await?;
    Ok(Empty::new())
}

pub async fn set_guest_date_time(
    _ctx: &AgentContext,
    req: SetGuestDateTimeRequest,
) -> Result<Empty> {
    clock::set_realtime(req.Sec, req.Usec)?;
    Ok(Empty::new())
}

pub async fn copy_file(_ctx: &AgentContext, req: CopyFileRequest) -> Result<Empty> {
    blocking(move || copy_file::copy_file(Path::new(copy_file::SHARED_ROOT), &req)).await?;
    Ok(Empty::new())
}

pub async fn add_swap(_ctx: &AgentContext, _req: AddSwapRequest) -> Result<Empty> {
    unimplemented("AddSwap")
}

pub async fn get_volume_stats(
    _ctx: &AgentContext,
    req: VolumeStatsRequest,
) -> Result<csi::VolumeStatsResponse> {
    blocking(move || volume::stats(&req.volume_guest_path)).await
}

pub async fn resize_volume(_ctx: &AgentContext, _req: ResizeVolumeRequest) -> Result<Empty> {
    unimplemented("ResizeVolume")
}

pub async fn set_policy(_ctx: &AgentContext, _req: SetPolicyRequest) -> Result<Empty> {
    unimplemented("SetPolicy")
}

pub async fn add_swap_path(_ctx: &AgentContext, _req: AddSwapPathRequest) -> Result<Empty> {
    unimplemented("AddSwapPath")
}

pub async fn get_diagnostic_data(
    _ctx: &AgentContext,
    _req: GetDiagnosticDataRequest,
) -> Result<GetDiagnosticDataResponse> {
    unimplemented("GetDiagnosticData")
}

/// Kata's mem-agent is not part of this agent.
pub async fn mem_agent_memcg_set(_ctx: &AgentContext, _req: MemAgentMemcgConfig) -> Result<Empty> {
    unimplemented("MemAgentMemcgSet")
}

pub async fn mem_agent_compact_set(
    _ctx: &AgentContext,
    _req: MemAgentCompactConfig,
) -> Result<Empty> {
    unimplemented("MemAgentCompactSet")
}
