//! The accelerator and what depends on it: KVM when /dev/kvm exists for a
//! same-arch guest and a probe VM survives, TCG otherwise (decided once per
//! arch by `vm::start::resources`), and the deadlines that scale with it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::arch::Arch;
use crate::ui;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// How much slower than KVM a guest runs: every deadline scales with
    /// this. Under TCG the four guest arches measured about alike here
    /// (vsock device up 0.5-8 s after QEMU's start on a loaded 2-core host,
    /// container RPCs well under a second), so one factor serves them all.
    pub fn slowdown(self) -> u32 {
        match self {
            Accel::Kvm => 1,
            Accel::Tcg => 4,
        }
    }

    /// Guest kernel parameters this accelerator needs.
    ///
    /// TCG: `init_on_alloc=1`. TCG caches translated code per guest
    /// *physical* page (x86_64 and aarch64 translate position-independently,
    /// CF_PCREL, so a translation is found by physical address alone) and
    /// drops it only when a vCPU, or QEMU's own DMA, writes that page. A
    /// vhost-user backend writes guest RAM through its own mapping of the
    /// memfd, unseen: virtiofsd filling a freed page that once held code
    /// with a file's next pages leaves the old translation in place, and the
    /// guest runs the code that was there before (busybox from virtio-fs:
    /// SIGSEGV, SIGILL, `free(): unaligned chunk`, while md5sum of the same
    /// file reads right). Zeroing each page as it is allocated is a vCPU
    /// write, which drops the stale code. Measured, 4 busybox copies exec'd
    /// 100 times from virtio-fs (`--cache auto`): 90 of 100 crashed on
    /// x86_64 without it, 0 with it; aarch64 alike (crashes, then a hang,
    /// against 0 of 100). KVM has real caches and needs nothing.
    pub fn kernel_params(self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &[],
            Accel::Tcg => &["init_on_alloc=1"],
        }
    }
}

/// Time from QEMU's start to the agent's first answer at KVM speed, per arch.
fn boot_base(arch: Arch) -> Duration {
    match arch {
        // Firmware, ACPI and PCI enumeration: the slowest boots seen (8 s
        // under TCG on a busy host).
        Arch::X86_64 => Duration::from_secs(15),
        Arch::Aarch64 => Duration::from_secs(15),
        // Measured once each so far (2026-11-23: ppc64le 2.3 s, s390x 0.9 s
        // to the first Health.Check under TCG): a wider margin until CI has
        // a history. ppc64le also runs prom_init over the whole OF tree.
        Arch::Ppc64le | Arch::S390x => Duration::from_secs(20),
    }
}

/// How long a boot may take until the agent answers, for `arch` on `accel`.
pub fn boot_budget(arch: Arch, accel: Accel) -> Duration {
    boot_base(arch) * accel.slowdown()
}

/// How long one RPC may take (container creation forks, mounts, execs).
pub fn rpc_budget(accel: Accel) -> Duration {
    Duration::from_secs(5) * accel.slowdown()
}

/// The host's TSC frequency in kHz, from /proc/cpuinfo (x86 hosts).
pub fn host_tsc_khz() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = text
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

/// KVM when /dev/kvm exists for a same-arch guest and a probe VM survives
/// its first second (on PVM hosts QEMU aborts at once setting an MSR);
/// TCG otherwise. Says which and why.
pub fn choose_accel(arch: Arch) -> Accel {
    let host = Arch::host().ok();
    if host != Some(arch) {
        ui::info(format!(
            "accelerator: TCG ({arch} guest on a {host:?} host)"
        ));
        return Accel::Tcg;
    }
    if !Path::new("/dev/kvm").exists() {
        ui::info("accelerator: TCG (no /dev/kvm)");
        return Accel::Tcg;
    }
    match probe_kvm(arch) {
        Ok(()) => {
            ui::info("accelerator: KVM (probe VM ran)");
            Accel::Kvm
        }
        Err(e) => {
            ui::info(format!("accelerator: TCG (KVM probe failed: {e:#})"));
            Accel::Tcg
        }
    }
}

/// Start a KVM guest of `arch` and see it survive 1.5 s.
pub fn probe_kvm(arch: Arch) -> Result<()> {
    let machine = match arch {
        Arch::X86_64 => "q35",
        Arch::Aarch64 => "virt",
        Arch::Ppc64le => "pseries",
        Arch::S390x => "s390-ccw-virtio",
    };
    let mut child = Command::new(arch.qemu_system())
        .args(["-accel", "kvm", "-machine", machine, "-cpu", "host"])
        .args(["-nodefaults", "-display", "none", "-monitor", "none"])
        .args(["-serial", "none", "-no-reboot", "-m", "64M"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            let last = err.lines().last().unwrap_or("").to_string();
            bail!("qemu -accel kvm exited ({status}): {last}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_scale_by_arch_and_accelerator() {
        for arch in Arch::ALL {
            assert_eq!(
                boot_budget(arch, Accel::Tcg),
                boot_budget(arch, Accel::Kvm) * Accel::Tcg.slowdown()
            );
        }
        assert!(rpc_budget(Accel::Tcg) > rpc_budget(Accel::Kvm));
        assert_eq!(
            boot_budget(Arch::X86_64, Accel::Tcg),
            Duration::from_secs(60)
        );
        assert_eq!(
            boot_budget(Arch::Ppc64le, Accel::Tcg),
            Duration::from_secs(80)
        );
    }
}
