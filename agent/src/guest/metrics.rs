//! GetMetrics: the agent's own process metrics in Prometheus text format.

use std::fmt::Write;

use anyhow::{Context, Result};

pub fn agent_metrics() -> Result<String> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let rss = field("VmRSS:") * 1024;
    let threads = field("Threads:");
    let fds = std::fs::read_dir("/proc/self/fd")
        .context("listing /proc/self/fd")?
        .count() as u64;
    let uptime = process_uptime_seconds()?;
    let mut out = String::new();
    let metrics = [
        (
            "kata_agent_process_resident_memory_bytes",
            "Resident memory of the agent.",
            "gauge",
            rss as f64,
        ),
        (
            "kata_agent_process_open_fds",
            "Open file descriptors of the agent.",
            "gauge",
            fds as f64,
        ),
        (
            "kata_agent_process_threads",
            "Threads of the agent.",
            "gauge",
            threads as f64,
        ),
        (
            "kata_agent_process_uptime_seconds",
            "Seconds since the agent started.",
            "gauge",
            uptime,
        ),
    ];
    for (name, help, kind, value) in metrics {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    Ok(out)
}

/// System uptime minus the process start time (field 22 of /proc/self/stat,
/// in clock ticks since boot).
fn process_uptime_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // The command name (field 2) may hold spaces: count from after its ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let start_ticks: f64 = after
        .split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .context("parsing the start time in /proc/self/stat")?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .context("reading /proc/uptime")?
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("parsing /proc/uptime")?;
    Ok((up - start_ticks / hz).max(0.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_have_values() {
        let text = super::agent_metrics().expect("metrics");
        let rss_line = text
            .lines()
            .find(|l| l.starts_with("kata_agent_process_resident_memory_bytes "))
            .expect("rss line");
        let rss: f64 = rss_line
            .split(' ')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("number");
        assert!(rss > 0.0, "{text}");
        assert!(text.contains("# TYPE kata_agent_process_open_fds gauge"));
    }
}
