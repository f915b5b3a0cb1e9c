//! cgroups-rs statistics to Kata's `CgroupStats` message.
//!
//! cgroups-rs reads cpu usage from cpuacct, which cgroup v2 does not have;
//! there the numbers come from the cgroup's own cpu.stat (always present in
//! v2, with or without the cpu controller). The memory `stats` map is the
//! cgroup's memory.stat file as it is, so every kernel key reaches the
//! runtime.

use std::collections::HashMap;
use std::path::Path;

use cgroups_rs::stats as cg;
use protocols::agent::{
    BlkioStats, BlkioStatsEntry, CgroupStats, CpuStats, CpuUsage, HugetlbStats, MemoryData,
    MemoryStats, PidsStats, ThrottlingData,
};

/// Everything but the v2 cpu numbers (see `cpu_from_v2_stat_file`).
pub fn to_grpc(s: &cg::CgroupStats, memory_stat: HashMap<String, u64>) -> CgroupStats {
    let mut out = CgroupStats::new();
    out.cpu_stats = Some(cpu(&s.cpu)).into();
    out.memory_stats = Some(memory(&s.memory, memory_stat)).into();
    out.pids_stats = Some(pids(&s.pids)).into();
    out.blkio_stats = Some(blkio(&s.blkio)).into();
    out.hugetlb_stats = s
        .hugetlb
        .iter()
        .map(|(size, h)| {
            let mut v = HugetlbStats::new();
            v.usage = h.usage;
            v.max_usage = h.max_usage;
            v.failcnt = h.fail_cnt;
            (size.clone(), v)
        })
        .collect();
    out
}

fn cpu(c: &cg::CpuCgroupStats) -> CpuStats {
    let mut usage = CpuUsage::new();
    if let Some(a) = &c.cpu_acct {
        usage.total_usage = a.total_usage;
        usage.percpu_usage = a.usage_percpu.clone();
        usage.usage_in_kernelmode = a.system_usage;
        usage.usage_in_usermode = a.user_usage;
    }
    let mut throttling = ThrottlingData::new();
    if let Some(t) = &c.cpu_throttling {
        throttling.periods = t.periods;
        throttling.throttled_periods = t.throttled_periods;
        throttling.throttled_time = t.throttled_time;
    }
    let mut out = CpuStats::new();
    out.cpu_usage = Some(usage).into();
    out.throttling_data = Some(throttling).into();
    out
}

/// cgroup v2 cpu.stat ("usage_usec 123" lines) to nanoseconds, as v1 reports.
pub fn cpu_from_v2_stat_file(text: &str) -> CpuStats {
    let kv = parse_flat_keyed(text);
    let get = |k: &str| kv.get(k).copied().unwrap_or(0);
    let mut usage = CpuUsage::new();
    usage.total_usage = get("usage_usec").saturating_mul(1000);
    usage.usage_in_usermode = get("user_usec").saturating_mul(1000);
    usage.usage_in_kernelmode = get("system_usec").saturating_mul(1000);
    let mut throttling = ThrottlingData::new();
    throttling.periods = get("nr_periods");
    throttling.throttled_periods = get("nr_throttled");
    throttling.throttled_time = get("throttled_usec").saturating_mul(1000);
    let mut out = CpuStats::new();
    out.cpu_usage = Some(usage).into();
    out.throttling_data = Some(throttling).into();
    out
}

/// A "key value" per line cgroup file (memory.stat, cpu.stat, memory.events).
/// Lines that do not parse are left out.
pub fn parse_flat_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The flat-keyed file `name` in `dir`; empty when it cannot be read (a
/// missing controller gives no numbers rather than failing the whole call).
pub fn read_flat_keyed(dir: &Path, name: &str) -> HashMap<String, u64> {
    std::fs::read_to_string(dir.join(name))
        .map(|t| parse_flat_keyed(&t))
        .unwrap_or_default()
}

fn memory_data(m: &Option<cg::MemoryStats>) -> MemoryData {
    let mut out = MemoryData::new();
    if let Some(m) = m {
        out.usage = m.usage;
        out.max_usage = m.max_usage;
        out.failcnt = m.fail_cnt;
        // cgroups-rs reports "max" as a negative number; the wire has u64.
        out.limit = u64::try_from(m.limit).unwrap_or(u64::MAX);
    }
    out
}

fn memory(m: &cg::MemoryCgroupStats, stat: HashMap<String, u64>) -> MemoryStats {
    let mut out = MemoryStats::new();
    out.cache = m.cache;
    out.usage = Some(memory_data(&m.memory)).into();
    out.swap_usage = Some(memory_data(&m.memory_swap)).into();
    out.kernel_usage = Some(memory_data(&m.kernel_memory)).into();
    out.use_hierarchy = m.use_hierarchy;
    out.stats = stat;
    out
}

fn pids(p: &cg::PidsCgroupStats) -> PidsStats {
    let mut out = PidsStats::new();
    out.current = p.current;
    out.limit = u64::try_from(p.limit).unwrap_or(0);
    out
}

fn entries(list: &[cg::BlkioStat]) -> Vec<BlkioStatsEntry> {
    list.iter()
        .map(|s| {
            let mut e = BlkioStatsEntry::new();
            e.major = s.major;
            e.minor = s.minor;
            // Lowercase ("read", "write" ...), as Kata's agent sends them.
            e.op = s.op.clone();
            e.value = s.value;
            e
        })
        .collect()
}

fn blkio(b: &cg::BlkioCgroupStats) -> BlkioStats {
    let mut out = BlkioStats::new();
    out.io_service_bytes_recursive = entries(&b.io_service_bytes_recursive);
    out.io_serviced_recursive = entries(&b.io_serviced_recursive);
    out.io_queued_recursive = entries(&b.io_queued_recursive);
    out.io_service_time_recursive = entries(&b.io_service_time_recursive);
    out.io_wait_time_recursive = entries(&b.io_wait_time_recursive);
    out.io_merged_recursive = entries(&b.io_merged_recursive);
    out.io_time_recursive = entries(&b.io_time_recursive);
    out.sectors_recursive = entries(&b.sectors_recursive);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_cpu_stat_is_converted_to_nanoseconds() {
        let s = cpu_from_v2_stat_file(
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\n",
        );
        let u = s.cpu_usage.as_ref().unwrap();
        assert_eq!(
            (u.total_usage, u.usage_in_usermode, u.usage_in_kernelmode),
            (1_500_000, 1_000_000, 500_000)
        );
        let t = s.throttling_data.as_ref().unwrap();
        assert_eq!(
            (t.periods, t.throttled_periods, t.throttled_time),
            (7, 2, 30_000)
        );
    }

    #[test]
    fn flat_keyed_skips_garbage() {
        let kv = parse_flat_keyed("anon 4096\nbogus\nfile x\noom_kill 2\n");
        assert_eq!(kv.len(), 2);
        assert_eq!(kv["oom_kill"], 2);
    }
}
