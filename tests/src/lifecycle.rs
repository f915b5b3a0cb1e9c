//! The life-cycle benchmark (`e2e lifecycle`, run by `cargo xtask bench vm`):
//! inside one sandbox, N times CreateContainer + StartContainer + WaitProcess
//! of busybox `true`, timed from the host; then the agent's RSS from
//! GetMetrics. The rootfs copy and RemoveContainer are outside the timing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use protocols::agent::{
    CreateContainerRequest, CreateSandboxRequest, DestroySandboxRequest, GetMetricsRequest,
    RemoveContainerRequest, StartContainerRequest, WaitProcessRequest,
};

use agent_ctl::{AgentClient, RpcResultExt};
use test_support::spec::{self, PodRole};

use crate::client::connect_until;
use crate::{fixture, suite};

pub struct LifecycleConfig {
    pub socket: PathBuf,
    pub port: u32,
    pub shared_dir: PathBuf,
    pub share: String,
    pub busybox: PathBuf,
    pub runs: usize,
    pub boot_timeout: Duration,
    pub rpc_timeout: Duration,
    pub vm_pid: Option<u32>,
}

/// What the run measured; printed as one JSON object.
#[derive(Debug, serde::Serialize)]
pub struct LifecycleReport {
    pub runs: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Agent RSS after the runs (GetMetrics), bytes.
    pub agent_rss_bytes: u64,
}

const SANDBOX_ID: &str = "bench-sandbox";

pub async fn run(cfg: LifecycleConfig) -> Result<LifecycleReport> {
    ensure!(cfg.runs > 0, "--runs must be at least 1");
    let deadline = Instant::now() + cfg.boot_timeout;
    let agent = connect_until(&cfg.socket, cfg.port, deadline, cfg.vm_pid).await?;
    let ctx = || ttrpc::context::with_timeout(cfg.rpc_timeout.as_nanos() as i64);
    let mut sandbox = CreateSandboxRequest::new();
    sandbox.sandbox_id = SANDBOX_ID.into();
    sandbox.hostname = "kata-bench".into();
    sandbox.storages = vec![suite::shared_storage(&cfg.share)?];
    agent
        .agent
        .create_sandbox(ctx(), &sandbox)
        .await
        .rpc("CreateSandbox")?;
    let mut times = Vec::with_capacity(cfg.runs);
    for i in 0..cfg.runs {
        let id = format!("bench-{i}");
        let root = fixture::install_rootfs(&cfg.shared_dir, &cfg.busybox, &id)?;
        let took = create_start_wait(&agent, &id, &root, ctx())
            .await
            .with_context(|| format!("run {i} ({id})"))?;
        times.push(took);
        let mut remove = RemoveContainerRequest::new();
        remove.container_id = id.clone();
        agent
            .agent
            .remove_container(ctx(), &remove)
            .await
            .rpc(format!("RemoveContainer {id}"))?;
    }
    let rss = agent_rss(&agent, ctx()).await?;
    agent
        .agent
        .destroy_sandbox(ctx(), &DestroySandboxRequest::new())
        .await
        .rpc("DestroySandbox")?;
    Ok(summarize(&mut times, rss))
}

/// One container: create, start, wait for `true` to exit 0.
async fn create_start_wait(
    agent: &AgentClient,
    id: &str,
    root: &str,
    ctx: ttrpc::context::Context,
) -> Result<Duration> {
    let started = Instant::now();
    let mut create = CreateContainerRequest::new();
    create.container_id = id.into();
    create.exec_id = id.into();
    let mut oci = spec::container(id, root, &["true"]);
    spec::as_kata_sends(
        &mut oci,
        id,
        "bench0-pod-uid",
        SANDBOX_ID,
        PodRole::Container,
    );
    create.OCI = Some(oci).into();
    agent
        .agent
        .create_container(ctx.clone(), &create)
        .await
        .rpc("CreateContainer")?;
    let mut start = StartContainerRequest::new();
    start.container_id = id.into();
    agent
        .agent
        .start_container(ctx.clone(), &start)
        .await
        .rpc("StartContainer")?;
    let mut wait = WaitProcessRequest::new();
    wait.container_id = id.into();
    wait.exec_id = id.into();
    let status = agent
        .agent
        .wait_process(ctx, &wait)
        .await
        .rpc("WaitProcess")?
        .status;
    let took = started.elapsed();
    if status != 0 {
        bail!("`true` exited with {status}");
    }
    Ok(took)
}

/// `kata_agent_process_resident_memory_bytes` from GetMetrics.
async fn agent_rss(agent: &AgentClient, ctx: ttrpc::context::Context) -> Result<u64> {
    let metrics = agent
        .agent
        .get_metrics(ctx, &GetMetricsRequest::new())
        .await
        .rpc("GetMetrics")?;
    parse_metric(&metrics.metrics, "kata_agent_process_resident_memory_bytes")
}

fn parse_metric(text: &str, name: &str) -> Result<u64> {
    let value = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .with_context(|| format!("GetMetrics has no {name}"))?;
    let value: f64 = value
        .trim()
        .parse()
        .with_context(|| format!("{name}: {value:?} is not a number"))?;
    Ok(value as u64)
}

fn summarize(times: &mut [Duration], agent_rss_bytes: u64) -> LifecycleReport {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    LifecycleReport {
        runs: times.len(),
        min_ms: times.first().map_or(0.0, |d| ms(*d)),
        p50_ms: ms(percentile(times, 50)),
        p99_ms: ms(percentile(times, 99)),
        max_ms: times.last().map_or(0.0, |d| ms(*d)),
        agent_rss_bytes,
    }
}

/// Nearest-rank percentile of sorted `times` (zero when empty).
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let times: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&times, 50), Duration::from_millis(50));
        assert_eq!(percentile(&times, 99), Duration::from_millis(99));
        let three = [1, 2, 3].map(Duration::from_millis);
        assert_eq!(percentile(&three, 50), Duration::from_millis(2));
        assert_eq!(percentile(&three, 99), Duration::from_millis(3));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn rss_from_prometheus_text() {
        let text = "# HELP kata_agent_process_resident_memory_bytes x\n\
                    kata_agent_process_resident_memory_bytes 2863104\n\
                    kata_agent_process_threads 3\n";
        let rss = parse_metric(text, "kata_agent_process_resident_memory_bytes").unwrap();
        assert_eq!(rss, 2_863_104);
        assert!(parse_metric(text, "nope").is_err());
        assert!(parse_metric("m x\n", "m").is_err());
    }
}
