//! Persistent memory disks (driver "nvdimm"): an NVDIMM region the host
//! gives the VM, known by its node /dev/pmemN, below the ACPI NFIT bus.
//! Kata: src/agent/src/device/nvdimm_device_handler.rs.

use std::fmt;
use std::path::PathBuf;

use anyhow::Result;

use super::{is_block_named, node_by_name, Hotplug, BLOCK};
use crate::uevent::{Matcher, Uevent};

/// ACPI devices live below /sys/devices/LNXSYSTM:00.
const ACPI_ROOT: &str = "/devices/LNXSYSTM";

struct PmemDisk(String);

impl fmt::Display for PmemDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nvdimm disk /dev/{}", self.0)
    }
}

impl Matcher for PmemDisk {
    fn subsystem(&self) -> &str {
        BLOCK
    }
    fn matches(&self, ev: &Uevent) -> bool {
        ev.devpath.starts_with(ACPI_ROOT) && is_block_named(ev, &self.0)
    }
}

/// The pmem node `vm_path`, once the kernel has it.
pub fn pmem_disk(hp: &Hotplug, vm_path: &str) -> Result<PathBuf> {
    node_by_name(hp, vm_path, |name| Box::new(PmemDisk(name.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::device::tests::block_add as ev;

    /// Kata's PmemBlockMatcher cases.
    #[test]
    fn pmem_disk_matcher() {
        let region = |r: u32, n: &str| {
            format!(
                "/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus0/region{r}/btt{r}.0/block/{n}"
            )
        };
        let m0 = PmemDisk("pmem0".into());
        assert!(m0.matches(&ev(&region(0, "pmem0"), "pmem0")));
        assert!(PmemDisk("pmem1".into()).matches(&ev(&region(1, "pmem1"), "pmem1")));
        assert!(!m0.matches(&ev(&region(1, "pmem1"), "pmem1")));
        assert!(!m0.matches(&ev(&region(0, "pmem0"), "")));
        assert!(!m0.matches(&ev("/devices/pci0000:00/block/pmem0", "pmem0")));
        let mut net = ev(&region(0, "pmem0"), "pmem0");
        net.subsystem = "net".into();
        assert!(!m0.matches(&net));
    }
}
