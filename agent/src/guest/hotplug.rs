//! CPU and memory hot-plug: bring hot-added CPUs and memory blocks online
//! (OnlineCPUMem), announce memory by probe (MemHotplugByProbe), and the
//! facts GetGuestDetails reports.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub const SYSFS_CPU: &str = "/sys/devices/system/cpu";
pub const SYSFS_MEMORY: &str = "/sys/devices/system/memory";
/// Hot-added CPUs can take a moment to show up in sysfs.
const CPU_RETRIES: u32 = 50;
const CPU_RETRY_WAIT: Duration = Duration::from_millis(50);

/// OnlineCPUMem: `nb_cpus` hot-added CPUs, and every memory block too
/// unless `cpu_only`.
pub fn online_cpu_mem(nb_cpus: u32, cpu_only: bool) -> Result<()> {
    online_cpus(Path::new(SYSFS_CPU), nb_cpus)?;
    if !cpu_only && Path::new(SYSFS_MEMORY).exists() {
        online_all(Path::new(SYSFS_MEMORY), "memory")?;
    }
    Ok(())
}

/// Write "1" to every `<dir>/<prefix>N/online` that reads "0"; returns how
/// many went online. Entries without an `online` file (cpu0) are skipped.
pub fn online_all(dir: &Path, prefix: &str) -> Result<u32> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    let mut onlined = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(num) = name.strip_prefix(prefix) else {
            continue;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let online = entry.path().join("online");
        let Ok(state) = std::fs::read_to_string(&online) else {
            continue;
        };
        if state.trim() == "0" {
            std::fs::write(&online, "1")
                .with_context(|| format!("writing 1 to {}", online.display()))?;
            onlined += 1;
        }
    }
    Ok(onlined)
}

/// Online CPUs until `wanted` came online (0: whatever is offline now).
pub fn online_cpus(dir: &Path, wanted: u32) -> Result<u32> {
    let mut total = 0;
    for _ in 0..CPU_RETRIES {
        total += online_all(dir, "cpu")?;
        if total >= wanted {
            return Ok(total);
        }
        std::thread::sleep(CPU_RETRY_WAIT);
    }
    bail!("onlined {total} CPU(s) of the {wanted} requested after {CPU_RETRIES} tries")
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
        assert_eq!(online_cpus(t.path(), 2).expect("online"), 2);
        for n in ["cpu1", "cpu3"] {
            let s = std::fs::read_to_string(t.path().join(n).join("online")).expect("read");
            assert_eq!(s, "1");
        }
        assert_eq!(online_all(t.path(), "cpu").expect("again"), 0);
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
