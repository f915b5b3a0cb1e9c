//! Memory limits on kernels without swap accounting.
//!
//! cgroups-rs always writes the swap limit file (memory.swap.max on v2, and
//! memory.memsw.limit_in_bytes on v1 for an unlimited memory limit), which
//! a guest kernel built without swap (accounting) does not have: the whole
//! update would fail. There the memory settings are written here instead,
//! and a requested swap limit is reported as skipped.

use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::runtime::LinuxMemory;

/// The file that holds the swap limit of a memory cgroup.
pub fn swap_file(v2: bool) -> &'static str {
    if v2 {
        "memory.swap.max"
    } else {
        "memory.memsw.limit_in_bytes"
    }
}

/// Whether the memory cgroup at `dir` accounts swap.
pub fn has_swap_accounting(dir: &Path, v2: bool) -> bool {
    dir.join(swap_file(v2)).exists()
}

/// Write `m` to the memory cgroup at `dir` without touching swap; returns
/// a note when a swap limit was asked for.
pub fn apply_without_swap(dir: &Path, m: &LinuxMemory, v2: bool) -> Result<Option<String>> {
    let write = |file: &str, value: String| {
        std::fs::write(dir.join(file), &value)
            .with_context(|| format!("writing {value} to {}", dir.join(file).display()))
    };
    let v2_value = |v: i64| {
        if v == -1 {
            "max".to_string()
        } else {
            v.to_string()
        }
    };
    if let Some(limit) = m.limit() {
        if v2 {
            write("memory.max", v2_value(limit))?;
        } else {
            write("memory.limit_in_bytes", limit.to_string())?;
        }
    }
    if let Some(reservation) = m.reservation() {
        if v2 {
            write("memory.low", v2_value(reservation))?;
        } else {
            write("memory.soft_limit_in_bytes", reservation.to_string())?;
        }
    }
    if !v2 {
        if let Some(swappiness) = m.swappiness() {
            write("memory.swappiness", swappiness.to_string())?;
        }
        if m.disable_oom_killer() == Some(true) {
            write("memory.oom_control", "1".into())?;
        }
    }
    Ok(m.swap().map(|s| {
        format!(
            "memory swap limit {s} not applied: this kernel has no swap accounting ({} is missing)",
            swap_file(v2)
        )
    }))
}
