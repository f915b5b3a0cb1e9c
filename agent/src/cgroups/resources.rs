//! Container resources: the wire form (grpc `oci.LinuxResources`) to
//! oci-spec's, the sanity checks that turn nonsense into InvalidArgument,
//! and trimming to the controllers this guest really has.
//!
//! The wire form is proto3: a zero scalar means "not set". Kata's runtime
//! uses -1 for "unlimited" and for the device wildcard.

use anyhow::Context;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit,
    LinuxInterfacePriority, LinuxMemory, LinuxNetwork, LinuxPids, LinuxResources,
    LinuxThrottleDevice, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
};
use protocols::oci as grpc;
use std::collections::HashSet;

use crate::error::{Error, Result};

/// The request asked for something no cgroup can hold.
fn invalid(msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("invalid container resources: {msg}"))
}

fn nonzero<T: Default + PartialEq>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// grpc LinuxResources (the wire form) to oci-spec's, checked.
pub fn from_grpc(r: &grpc::LinuxResources) -> Result<LinuxResources> {
    let mut out = LinuxResources::default();
    if let Some(m) = r.Memory.as_ref() {
        out.set_memory(Some(memory(m)?));
    }
    if let Some(c) = r.CPU.as_ref() {
        out.set_cpu(Some(cpu(c)?));
    }
    if let Some(p) = r.Pids.as_ref() {
        out.set_pids(Some(pids(p)?));
    }
    if let Some(b) = r.BlockIO.as_ref() {
        out.set_block_io(Some(block_io(b)?));
    }
    if !r.HugepageLimits.is_empty() {
        let limits = r
            .HugepageLimits
            .iter()
            .map(hugepage)
            .collect::<Result<Vec<_>>>()?;
        out.set_hugepage_limits(Some(limits));
    }
    if let Some(n) = r.Network.as_ref() {
        out.set_network(Some(network(n)));
    }
    if !r.Devices.is_empty() {
        let rules = r.Devices.iter().map(device).collect::<Result<Vec<_>>>()?;
        out.set_devices(Some(rules));
    }
    Ok(out)
}

/// A byte limit: -1 (unlimited) or positive; 0 is "not set".
fn byte_limit(what: &str, v: i64) -> Result<Option<i64>> {
    match v {
        0 => Ok(None),
        -1 => Ok(Some(-1)),
        v if v > 0 => Ok(Some(v)),
        v => Err(invalid(format!(
            "{what} {v}: must be -1 (unlimited) or positive"
        ))),
    }
}

fn memory(m: &grpc::LinuxMemory) -> Result<LinuxMemory> {
    let limit = byte_limit("memory limit", m.Limit)?;
    let swap = byte_limit("memory+swap limit", m.Swap)?;
    if let (Some(l), Some(s)) = (limit, swap) {
        // OCI's swap is memory+swap, so it cannot be below the memory limit.
        if l > 0 && s > 0 && s < l {
            return Err(invalid(format!(
                "memory+swap limit {s} is below the memory limit {l}"
            )));
        }
    }
    if m.Swappiness > 100 {
        return Err(invalid(format!(
            "memory swappiness {} is above 100",
            m.Swappiness
        )));
    }
    let mut out = LinuxMemory::default();
    out.set_limit(limit);
    out.set_swap(swap);
    out.set_reservation(byte_limit("memory reservation", m.Reservation)?);
    out.set_swappiness(nonzero(m.Swappiness));
    out.set_disable_oom_killer(m.DisableOOMKiller.then_some(true));
    Ok(out)
}

fn cpu(c: &grpc::LinuxCPU) -> Result<LinuxCpu> {
    if c.Shares != 0 && !(2..=262_144).contains(&c.Shares) {
        return Err(invalid(format!(
            "cpu shares {}: must be 2..=262144",
            c.Shares
        )));
    }
    if c.Quota != 0 && c.Quota != -1 && c.Quota < 1000 {
        return Err(invalid(format!(
            "cpu quota {}us: must be -1 (unlimited) or at least 1000",
            c.Quota
        )));
    }
    if c.Period != 0 && !(1000..=1_000_000).contains(&c.Period) {
        return Err(invalid(format!(
            "cpu period {}us: must be 1000..=1000000",
            c.Period
        )));
    }
    check_cpu_list("cpuset cpus", &c.Cpus)?;
    check_cpu_list("cpuset mems", &c.Mems)?;
    let mut out = LinuxCpu::default();
    out.set_shares(nonzero(c.Shares));
    out.set_quota(nonzero(c.Quota));
    out.set_period(nonzero(c.Period));
    out.set_realtime_runtime(nonzero(c.RealtimeRuntime));
    out.set_realtime_period(nonzero(c.RealtimePeriod));
    out.set_cpus(nonempty(&c.Cpus));
    out.set_mems(nonempty(&c.Mems));
    Ok(out)
}

/// A kernel list such as "0-3,6": numbers and ascending ranges.
fn check_cpu_list(what: &str, list: &str) -> Result<()> {
    for item in list.split(',').filter(|s| !s.is_empty()) {
        let ok = match item.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                (Ok(a), Ok(b)) => a <= b,
                _ => false,
            },
            None => item.trim().parse::<u32>().is_ok(),
        };
        if !ok {
            return Err(invalid(format!(
                "{what} {list:?}: {item:?} is not a number or range"
            )));
        }
    }
    Ok(())
}

fn pids(p: &grpc::LinuxPids) -> Result<LinuxPids> {
    if p.Limit < -1 {
        return Err(invalid(format!(
            "pids limit {}: must be -1 or 0 (unlimited) or positive",
            p.Limit
        )));
    }
    let mut out = LinuxPids::default();
    out.set_limit(p.Limit);
    Ok(out)
}

fn weight(what: &str, w: u32) -> Result<Option<u16>> {
    match w {
        0 => Ok(None),
        10..=1000 => Ok(Some(w as u16)),
        w => Err(invalid(format!("{what} {w}: must be 10..=1000"))),
    }
}

fn device_number(what: &str, major: i64, minor: i64) -> Result<()> {
    if major < 0 || minor < 0 {
        return Err(invalid(format!(
            "{what} device {major}:{minor}: negative number"
        )));
    }
    Ok(())
}

fn block_io(b: &grpc::LinuxBlockIO) -> Result<LinuxBlockIo> {
    let mut out = LinuxBlockIo::default();
    out.set_weight(weight("blkio weight", b.Weight)?);
    out.set_leaf_weight(weight("blkio leaf weight", b.LeafWeight)?);
    if !b.WeightDevice.is_empty() {
        let mut devs = Vec::new();
        for d in &b.WeightDevice {
            device_number("blkio weight", d.Major, d.Minor)?;
            let mut w = LinuxWeightDeviceBuilder::default()
                .major(d.Major)
                .minor(d.Minor);
            if let Some(v) = weight("blkio device weight", d.Weight)? {
                w = w.weight(v);
            }
            if let Some(v) = weight("blkio device leaf weight", d.LeafWeight)? {
                w = w.leaf_weight(v);
            }
            devs.push(w.build().context("building a blkio weight device")?);
        }
        out.set_weight_device(Some(devs));
    }
    out.set_throttle_read_bps_device(throttles("read bps", &b.ThrottleReadBpsDevice)?);
    out.set_throttle_write_bps_device(throttles("write bps", &b.ThrottleWriteBpsDevice)?);
    out.set_throttle_read_iops_device(throttles("read iops", &b.ThrottleReadIOPSDevice)?);
    out.set_throttle_write_iops_device(throttles("write iops", &b.ThrottleWriteIOPSDevice)?);
    Ok(out)
}

fn throttles(
    what: &str,
    list: &[grpc::LinuxThrottleDevice],
) -> Result<Option<Vec<LinuxThrottleDevice>>> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for d in list {
        device_number(&format!("blkio throttle {what}"), d.Major, d.Minor)?;
        let t = LinuxThrottleDeviceBuilder::default()
            .major(d.Major)
            .minor(d.Minor)
            .rate(d.Rate)
            .build()
            .context("building a blkio throttle device")?;
        out.push(t);
    }
    Ok(Some(out))
}

/// Page sizes are written like the kernel's hugetlb files: "2MB", "1GB", "64KB".
fn hugepage(h: &grpc::LinuxHugepageLimit) -> Result<LinuxHugepageLimit> {
    let size = h.Pagesize.as_str();
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.parse::<u64>().is_err() || !matches!(unit, "KB" | "MB" | "GB") {
        return Err(invalid(format!(
            "hugepage size {size:?}: expected e.g. 2MB or 1GB"
        )));
    }
    let limit = i64::try_from(h.Limit)
        .map_err(|_| invalid(format!("hugepage {size} limit {} is too large", h.Limit)))?;
    let mut out = LinuxHugepageLimit::default();
    out.set_page_size(size.to_string());
    out.set_limit(limit);
    Ok(out)
}

fn network(n: &grpc::LinuxNetwork) -> LinuxNetwork {
    let mut out = LinuxNetwork::default();
    out.set_class_id(nonzero(n.ClassID));
    if !n.Priorities.is_empty() {
        let prios = n
            .Priorities
            .iter()
            .map(|p| {
                let mut i = LinuxInterfacePriority::default();
                i.set_name(p.Name.clone());
                i.set_priority(p.Priority);
                i
            })
            .collect();
        out.set_priorities(Some(prios));
    }
    out
}

fn device(d: &grpc::LinuxDeviceCgroup) -> Result<LinuxDeviceCgroup> {
    let typ = match d.Type.as_str() {
        "" | "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        t => {
            return Err(invalid(format!(
                "device rule type {t:?}: must be a, b or c"
            )))
        }
    };
    if d.Access.chars().any(|c| !matches!(c, 'r' | 'w' | 'm')) {
        return Err(invalid(format!(
            "device rule access {:?}: only r, w, m",
            d.Access
        )));
    }
    // -1 is the wildcard on the wire, None in oci-spec.
    let number = |what: &str, n: i64| match n {
        -1 => Ok(None),
        n if n >= 0 => Ok(Some(n)),
        n => Err(invalid(format!(
            "device rule {what} {n}: must be -1 (any) or >= 0"
        ))),
    };
    let mut out = LinuxDeviceCgroup::default();
    out.set_allow(d.Allow);
    out.set_typ(Some(typ));
    out.set_major(number("major", d.Major)?);
    out.set_minor(number("minor", d.Minor)?);
    out.set_access(nonempty(&d.Access));
    Ok(out)
}

/// Keep only what the available `controllers` can apply; say what was
/// dropped and why (the caller logs it). cgroups-rs applies a cpu section
/// through both the cpu and cpuset controllers, so it needs both.
pub fn trim_to_controllers(
    r: &LinuxResources,
    controllers: &HashSet<String>,
    v2: bool,
) -> (LinuxResources, Vec<String>) {
    let has = |c: &str| controllers.contains(c);
    let mut out = r.clone();
    let mut skipped = Vec::new();
    let mut drop =
        |name: &str, why: String| skipped.push(format!("{name} limits not applied: {why}"));
    if out.memory().is_some() && !has("memory") {
        out.set_memory(None);
        drop("memory", "no memory controller".into());
    }
    if out.cpu().is_some() && !(has("cpu") && has("cpuset")) {
        out.set_cpu(None);
        drop(
            "cpu",
            "the cpu and cpuset controllers are not both available".into(),
        );
    }
    if let Some(mut cpu) = out.cpu().clone().filter(|_| v2) {
        if cpu.realtime_runtime().is_some() || cpu.realtime_period().is_some() {
            cpu.set_realtime_runtime(None);
            cpu.set_realtime_period(None);
            out.set_cpu(Some(cpu));
            drop(
                "cpu realtime",
                "cgroup v2 has no realtime cpu limits".into(),
            );
        }
    }
    if out.pids().is_some() && !has("pids") {
        out.set_pids(None);
        drop("pids", "no pids controller".into());
    }
    if out.block_io().is_some() && !has("blkio") {
        out.set_block_io(None);
        drop("block io", "no blkio/io controller".into());
    }
    if out.hugepage_limits().is_some() && !has("hugetlb") {
        out.set_hugepage_limits(None);
        drop("hugepage", "no hugetlb controller".into());
    }
    trim_network(&mut out, &has, &mut drop);
    // Device rules are the `devices` module's (cgroups-rs writes a
    // wildcard number as 0 and has no v2 program); rdma and unified never
    // come over the wire. None of them go to cgroups-rs.
    out.set_devices(None);
    out.set_rdma(None);
    out.set_unified(None);
    (out, skipped)
}

fn trim_network(
    out: &mut LinuxResources,
    has: &dyn Fn(&str) -> bool,
    drop: &mut dyn FnMut(&str, String),
) {
    let Some(mut net) = out.network().clone() else {
        return;
    };
    if net.class_id().is_some() && !has("net_cls") {
        net.set_class_id(None);
        drop("network class", "no net_cls controller".into());
    }
    if net.priorities().is_some() && !has("net_prio") {
        net.set_priorities(None);
        drop("network priority", "no net_prio controller".into());
    }
    out.set_network(Some(net));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_memory(limit: i64, swap: i64) -> grpc::LinuxResources {
        let mut r = grpc::LinuxResources::new();
        let mut m = grpc::LinuxMemory::new();
        m.Limit = limit;
        m.Swap = swap;
        r.Memory = Some(m).into();
        r
    }

    #[test]
    fn zero_means_unset_and_minus_one_unlimited() {
        let r = from_grpc(&with_memory(64 << 20, -1)).unwrap();
        let m = r.memory().as_ref().unwrap();
        assert_eq!(m.limit(), Some(64 << 20));
        assert_eq!(m.swap(), Some(-1));
        assert_eq!(m.reservation(), None);
        assert!(r.cpu().is_none() && r.pids().is_none() && r.devices().is_none());
    }

    #[test]
    fn nonsense_is_invalid_and_named() {
        let err = from_grpc(&with_memory(-5, 0)).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(err.to_string().contains("memory limit -5"), "{err}");
        let err = from_grpc(&with_memory(64 << 20, 32 << 20)).unwrap_err();
        assert!(err.to_string().contains("below the memory limit"), "{err}");

        let mut r = grpc::LinuxResources::new();
        let mut c = grpc::LinuxCPU::new();
        c.Cpus = "0-x".into();
        r.CPU = Some(c).into();
        let err = from_grpc(&r).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)) && err.to_string().contains("cpuset cpus"),
            "{err}"
        );

        let mut r = grpc::LinuxResources::new();
        let mut d = grpc::LinuxDeviceCgroup::new();
        d.Type = "z".into();
        r.Devices.push(d);
        assert!(matches!(
            from_grpc(&r).unwrap_err(),
            Error::InvalidArgument(_)
        ));
    }

    #[test]
    fn device_wildcards_and_hugepages_convert() {
        let mut r = grpc::LinuxResources::new();
        let mut d = grpc::LinuxDeviceCgroup::new();
        d.Allow = true;
        d.Type = "c".into();
        d.Major = 1;
        d.Minor = -1;
        d.Access = "rwm".into();
        r.Devices.push(d);
        let mut h = grpc::LinuxHugepageLimit::new();
        h.Pagesize = "2MB".into();
        h.Limit = 4 << 20;
        r.HugepageLimits.push(h);
        let out = from_grpc(&r).unwrap();
        let dev = &out.devices().as_ref().unwrap()[0];
        assert_eq!((dev.major(), dev.minor()), (Some(1), None));
        assert_eq!(dev.typ(), Some(LinuxDeviceType::C));
        assert_eq!(out.hugepage_limits().as_ref().unwrap()[0].limit(), 4 << 20);
    }

    #[test]
    fn trimming_drops_sections_without_controllers_and_says_so() {
        let r = from_grpc(&with_memory(64 << 20, 0)).unwrap();
        let none = HashSet::new();
        let (out, skipped) = trim_to_controllers(&r, &none, true);
        assert!(out.memory().is_none());
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        let mem: HashSet<String> = ["memory".to_string()].into();
        let (out, skipped) = trim_to_controllers(&r, &mem, true);
        assert!(out.memory().is_some() && skipped.is_empty());
    }
}
