//! CPU and memory hot-plug: bring hot-added CPUs and memory blocks online
//! (OnlineCPUMem), announce memory by probe (MemHotplugByProbe), and the
//! facts GetGuestDetails reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub const SYSFS_CPU: &str = "/sys/devices/system/cpu";
pub const SYSFS_MEMORY: &str = "/sys/devices/system/memory";
/// Hot-added CPUs can take a moment to show up in sysfs: Kata's agent
/// waits up to 100 x 50 ms (src/agent/src/sandbox.rs online_cpus).
const CPU_RETRIES: u32 = 100;
const CPU_RETRY_WAIT: Duration = Duration::from_millis(50);

/// OnlineCPUMem: make `nb_cpus` CPUs online in all (the runtime's count of
/// vCPUs after a hot-plug, not a number to add), and every memory block
/// too unless `cpu_only`.
pub fn online_cpu_mem(nb_cpus: u32, cpu_only: bool) -> Result<()> {
    if nb_cpus > 0 {
        online_cpus(Path::new(SYSFS_CPU), nb_cpus)?;
    }
    if !cpu_only && Path::new(SYSFS_MEMORY).exists() {
        online_all(Path::new(SYSFS_MEMORY), "memory")?;
    }
    Ok(())
}

/// The guest's online CPUs as the kernel lists them ("0-3").
pub fn online_cpu_list() -> Result<String> {
    let path = Path::new(SYSFS_CPU).join("online");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim().to_string())
}

/// Write "1" to every `<dir>/<prefix>N/online` that reads "0"; returns how
/// many went online. Entries without an `online` file (cpu0) are skipped.
pub fn online_all(dir: &Path, prefix: &str) -> Result<u32> {
    let mut onlined = 0;
    for online in offline_entries(dir, prefix)? {
        std::fs::write(&online, "1")
            .with_context(|| format!("writing 1 to {}", online.display()))?;
        onlined += 1;
    }
    Ok(onlined)
}

/// The `online` files of `<dir>/<prefix>N` that read "0", in order.
fn offline_entries(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in numbered(dir, prefix)? {
        let online = entry.join("online");
        match std::fs::read_to_string(&online) {
            Ok(state) if state.trim() == "0" => found.push(online),
            _ => {}
        }
    }
    Ok(found)
}

/// How many `<dir>/cpuN` are online: those whose `online` reads 1, and
/// those without the file (they cannot go offline, like cpu0).
pub fn online_cpu_count(dir: &Path) -> Result<u32> {
    let mut n = 0;
    for cpu in numbered(dir, "cpu")? {
        match std::fs::read_to_string(cpu.join("online")) {
            Ok(state) if state.trim() != "1" => {}
            _ => n += 1,
        }
    }
    Ok(n)
}

/// `<dir>/<prefix>N` for every number N, in order.
fn numbered(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(num) = name.strip_prefix(prefix) else {
            continue;
        };
        let Ok(n) = num.parse::<u64>() else {
            continue;
        };
        if !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        found.push((n, entry.path()));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Online CPUs until `wanted` are online in all, never more (a guest
/// whose VMM onlined them already needs nothing); returns how many this
/// call onlined. Waits for hot-added CPUs to appear, as Kata's agent.
pub fn online_cpus(dir: &Path, wanted: u32) -> Result<u32> {
    online_cpus_with(dir, wanted, |online| std::fs::write(online, "1"))
}

/// `online_cpus` with the sysfs write given. A write that fails is tried
/// again on the next round, as Kata's agent does (online_resources counts
/// only writes that succeed): a CPU hot-added on pseries has its
/// `cpuN/online` before the kernel's DLPAR handler made it present, and
/// until then the write gives EINVAL. The last such error ends up in the
/// message if the CPUs never come.
fn online_cpus_with(
    dir: &Path,
    wanted: u32,
    write: impl Fn(&Path) -> std::io::Result<()>,
) -> Result<u32> {
    let mut onlined = 0;
    let mut last_error = None;
    for _ in 0..CPU_RETRIES {
        let online = online_cpu_count(dir)?;
        if online >= wanted {
            return Ok(onlined);
        }
        let wanted_more = (wanted - online) as usize;
        for file in offline_entries(dir, "cpu")?.into_iter().take(wanted_more) {
            match write(&file) {
                Ok(()) => onlined += 1,
                Err(e) => last_error = Some(format!("writing 1 to {}: {e}", file.display())),
            }
        }
        if online_cpu_count(dir)? >= wanted {
            return Ok(onlined);
        }
        std::thread::sleep(CPU_RETRY_WAIT);
    }
    let online = online_cpu_count(dir)?;
    bail!(
        "{online} CPU(s) online, {wanted} requested, after waiting {} ms for hot-added CPUs{}",
        CPU_RETRIES as u64 * CPU_RETRY_WAIT.as_millis() as u64,
        last_error
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default()
    )
}

/// /sys/devices/system/memory/block_size_bytes (hex without 0x); 0 when
/// the guest has no memory hot-plug.
pub fn mem_block_size(dir: &Path) -> Result<u64> {
    let file = dir.join("block_size_bytes");
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let hex = text.trim().trim_start_matches("0x");
    u64::from_str_radix(hex, 16).with_context(|| format!("{}: {text:?} is not hex", file.display()))
}

pub fn supports_probe(dir: &Path) -> bool {
    dir.join("probe").exists()
}

pub fn probe_memory(dir: &Path, addrs: &[u64]) -> Result<()> {
    let probe = dir.join("probe");
    for a in addrs {
        std::fs::write(&probe, format!("{a:#x}"))
            .with_context(|| format!("writing {a:#x} to {}", probe.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onlines_offline_entries_of_a_fake_sysfs() {
        let t = tempfile::tempdir().expect("tempdir");
        for (name, state) in [("cpu1", "0"), ("cpu2", "1"), ("cpu3", "0")] {
            std::fs::create_dir(t.path().join(name)).expect("mkdir");
            std::fs::write(t.path().join(name).join("online"), state).expect("write");
        }
        std::fs::create_dir(t.path().join("cpu0")).expect("mkdir");
        std::fs::create_dir(t.path().join("cpufreq")).expect("mkdir");
        // cpu0 and cpu2 are online: 4 in all needs cpu1 and cpu3.
        assert_eq!(online_cpus(t.path(), 4).expect("online"), 2);
        for n in ["cpu1", "cpu3"] {
            let s = std::fs::read_to_string(t.path().join(n).join("online")).expect("read");
            assert_eq!(s, "1");
        }
        assert_eq!(online_all(t.path(), "cpu").expect("again"), 0);
    }

    /// A hot-added pseries CPU: its `online` file is there before the CPU
    /// is present, and writing it gives EINVAL until then. Kata's agent
    /// (src/agent/src/sandbox.rs online_resources) skips a failed write
    /// and tries again; so must we (the ppc64le e2e pod_online_cpus got
    /// "writing 1 to .../cpu1/online: Invalid argument" at once).
    #[test]
    fn a_cpu_that_refuses_to_go_online_at_first_is_tried_again() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("cpu0")).expect("mkdir");
        std::fs::create_dir(t.path().join("cpu1")).expect("mkdir");
        std::fs::write(t.path().join("cpu1").join("online"), "0").expect("write");
        let tries = std::cell::Cell::new(0);
        let onlined = online_cpus_with(t.path(), 2, |file| {
            tries.set(tries.get() + 1);
            if tries.get() < 3 {
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
            }
            std::fs::write(file, "1")
        })
        .expect("cpu1 goes online on the third write");
        assert_eq!((onlined, tries.get()), (1, 3));
    }

    #[test]
    fn a_cpu_that_never_goes_online_names_the_last_error() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("cpu1")).expect("mkdir");
        std::fs::write(t.path().join("cpu1").join("online"), "0").expect("write");
        let err = online_cpus_with(t.path(), 1, |_| {
            Err(std::io::Error::from_raw_os_error(libc::EINVAL))
        })
        .expect_err("never online");
        let msg = format!("{err:#}");
        assert!(msg.contains("0 CPU(s) online, 1 requested"), "{msg}");
        assert!(
            msg.contains("cpu1/online") && msg.contains("os error 22"),
            "{msg}"
        );
    }

    #[test]
    fn block_size_is_hex() {
        let t = tempfile::tempdir().expect("tempdir");
        assert_eq!(mem_block_size(t.path()).expect("absent"), 0);
        std::fs::write(t.path().join("block_size_bytes"), "8000000\n").expect("write");
        assert_eq!(mem_block_size(t.path()).expect("hex"), 128 << 20);
        assert!(!supports_probe(t.path()));
    }
}
