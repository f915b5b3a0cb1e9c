//! Guest-wide RPCs: details, time, files, CPU/memory, randomness, OOM events, metrics, volumes, policy.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use protocols::agent::*;
use protocols::csi;
use protocols::empty::Empty;

use super::status::{internal, invalid_argument, unimplemented};
use super::AgentContext;
use crate::guest::copy_file::{self, BadRequest};
use crate::guest::{hotplug, metrics};
use crate::storage::drivers;
use crate::version;

/// Blocking sysfs/file work goes off the async worker threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> ttrpc::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.downcast_ref::<BadRequest>().is_some() => {
            Err(invalid_argument(format!("{e:#}")))
        }
        Ok(Err(e)) => Err(internal(e)),
        Err(e) => Err(internal(anyhow::anyhow!("worker thread failed: {e}"))),
    }
}

pub async fn get_metrics(_ctx: &AgentContext, _req: GetMetricsRequest) -> ttrpc::Result<Metrics> {
    let text = blocking(metrics::agent_metrics).await?;
    let mut m = Metrics::new();
    m.metrics = text;
    Ok(m)
}

pub async fn online_cpu_mem(_ctx: &AgentContext, req: OnlineCPUMemRequest) -> ttrpc::Result<Empty> {
    blocking(move || {
        hotplug::online_cpus(Path::new(hotplug::SYSFS_CPU), req.nb_cpus)?;
        if !req.cpu_only && Path::new(hotplug::SYSFS_MEMORY).exists() {
            hotplug::online_all(Path::new(hotplug::SYSFS_MEMORY), "memory")?;
        }
        Ok(())
    })
    .await?;
    Ok(Empty::new())
}

/// Mix the runtime's random bytes into the kernel pool, credit them, then
/// ask the kernel to reseed its CRNG from the pool.
pub async fn reseed_random_dev(
    _ctx: &AgentContext,
    req: ReseedRandomDevRequest,
) -> ttrpc::Result<Empty> {
    blocking(move || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/random")
            .context("opening /dev/random")?;
        f.write_all(&req.data).context("writing to /dev/random")?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        // The bytes come from the host's CSPRNG: credit them (8 bits each),
        // so a fresh guest's pool counts as initialised, as Kata's agent does.
        nix::ioctl_write_ptr!(rnd_add_to_ent_cnt, b'R', 0x01, libc::c_int);
        let bits =
            libc::c_int::try_from(req.data.len().saturating_mul(8)).unwrap_or(libc::c_int::MAX);
        // SAFETY: RNDADDTOENTCNT reads one int through the pointer.
        unsafe { rnd_add_to_ent_cnt(fd, &bits) }.context("ioctl RNDADDTOENTCNT on /dev/random")?;
        // RNDRESEEDCRNG = _IO('R', 0x07)
        nix::ioctl_none!(rnd_reseed_crng, b'R', 0x07);
        // SAFETY: an argument-less ioctl on an open /dev/random.
        unsafe { rnd_reseed_crng(fd) }.context("ioctl RNDRESEEDCRNG on /dev/random")?;
        Ok(())
    })
    .await?;
    Ok(Empty::new())
}

pub async fn get_guest_details(
    ctx: &AgentContext,
    req: GuestDetailsRequest,
) -> ttrpc::Result<GuestDetailsResponse> {
    let mem = Path::new(hotplug::SYSFS_MEMORY);
    let mut resp = GuestDetailsResponse::new();
    if req.mem_block_size {
        resp.mem_block_size_bytes = hotplug::mem_block_size(mem).map_err(internal)?;
    }
    if req.mem_hotplug_probe {
        resp.support_mem_hotplug_probe = hotplug::supports_probe(mem);
    }
    let mut details = AgentDetails::new();
    details.version = version::AGENT_VERSION.to_string();
    details.init_daemon = ctx.init_daemon;
    details.storage_handlers = drivers::DRIVERS.iter().map(|s| s.to_string()).collect();
    // Device handlers and seccomp belong to the container life cycle, which
    // reports none of either yet.
    details.device_handlers = Vec::new();
    details.supports_seccomp = false;
    resp.agent_details = Some(details).into();
    Ok(resp)
}

pub async fn mem_hotplug_by_probe(
    _ctx: &AgentContext,
    req: MemHotplugByProbeRequest,
) -> ttrpc::Result<Empty> {
    blocking(move || {
        hotplug::probe_memory(Path::new(hotplug::SYSFS_MEMORY), &req.memHotplugProbeAddr)
    })
    .await?;
    Ok(Empty::new())
}

pub async fn set_guest_date_time(
    _ctx: &AgentContext,
    req: SetGuestDateTimeRequest,
) -> ttrpc::Result<Empty> {
    if req.Sec < 0 || !(0..1_000_000).contains(&req.Usec) {
        return Err(invalid_argument(format!(
            "SetGuestDateTime: bad time {}s {}us (need sec >= 0, 0 <= usec < 1000000)",
            req.Sec, req.Usec
        )));
    }
    // clock_settime through nix: libc's time_t/suseconds_t differ between
    // glibc and musl.
    let now = std::time::Duration::new(req.Sec as u64, (req.Usec as u32) * 1000);
    nix::time::clock_settime(
        nix::time::ClockId::CLOCK_REALTIME,
        nix::sys::time::TimeSpec::from_duration(now),
    )
    .map_err(|e| internal(anyhow::Error::from(e).context("clock_settime")))?;
    Ok(Empty::new())
}

pub async fn copy_file(_ctx: &AgentContext, req: CopyFileRequest) -> ttrpc::Result<Empty> {
    blocking(move || copy_file::copy_file(Path::new(copy_file::SHARED_ROOT), &req)).await?;
    Ok(Empty::new())
}

pub async fn add_swap(_ctx: &AgentContext, _req: AddSwapRequest) -> ttrpc::Result<Empty> {
    unimplemented("AddSwap")
}

pub async fn get_volume_stats(
    _ctx: &AgentContext,
    req: VolumeStatsRequest,
) -> ttrpc::Result<csi::VolumeStatsResponse> {
    let path = req.volume_guest_path.clone();
    if !Path::new(&path).is_absolute() {
        return Err(invalid_argument(format!(
            "GetVolumeStats: {path:?} is not an absolute path"
        )));
    }
    let st = blocking(move || {
        nix::sys::statvfs::statvfs(Path::new(&path)).with_context(|| format!("statvfs {path}"))
    })
    .await?;
    let frag = st.fragment_size() as u64;
    let usage = |unit, total: u64, free: u64, avail: u64| {
        let mut u = csi::VolumeUsage::new();
        u.unit = unit;
        u.total = total;
        u.available = avail;
        u.used = total.saturating_sub(free);
        u
    };
    let mut resp = csi::VolumeStatsResponse::new();
    resp.usage = vec![
        usage(
            csi::volume_usage::Unit::BYTES.into(),
            st.blocks() as u64 * frag,
            st.blocks_free() as u64 * frag,
            st.blocks_available() as u64 * frag,
        ),
        usage(
            csi::volume_usage::Unit::INODES.into(),
            st.files() as u64,
            st.files_free() as u64,
            st.files_available() as u64,
        ),
    ];
    Ok(resp)
}

pub async fn resize_volume(_ctx: &AgentContext, _req: ResizeVolumeRequest) -> ttrpc::Result<Empty> {
    unimplemented("ResizeVolume")
}

pub async fn set_policy(_ctx: &AgentContext, _req: SetPolicyRequest) -> ttrpc::Result<Empty> {
    unimplemented("SetPolicy")
}

pub async fn add_swap_path(_ctx: &AgentContext, _req: AddSwapPathRequest) -> ttrpc::Result<Empty> {
    unimplemented("AddSwapPath")
}

pub async fn get_diagnostic_data(
    _ctx: &AgentContext,
    _req: GetDiagnosticDataRequest,
) -> ttrpc::Result<GetDiagnosticDataResponse> {
    unimplemented("GetDiagnosticData")
}

/// Kata's mem-agent is not part of this agent.
pub async fn mem_agent_memcg_set(
    _ctx: &AgentContext,
    _req: MemAgentMemcgConfig,
) -> ttrpc::Result<Empty> {
    unimplemented("MemAgentMemcgSet")
}

pub async fn mem_agent_compact_set(
    _ctx: &AgentContext,
    _req: MemAgentCompactConfig,
) -> ttrpc::Result<Empty> {
    unimplemented("MemAgentCompactSet")
}
