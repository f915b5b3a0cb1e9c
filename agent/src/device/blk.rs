//! virtio-blk disks: on PCI (driver "blk", named by PCI path) and on
//! virtio-mmio (driver "mmioblk", named by its node, /dev/vdX). Kata:
//! src/agent/src/device/block_device_handler.rs.

use std::fmt;
use std::path::PathBuf;

use anyhow::Result;

use super::pci::{self, PciPath};
use super::{is_block_named, node_by_name, Hotplug, BLOCK};
use crate::uevent::{self, Matcher, Uevent};

/// The whole disk (not a partition) of the virtio device at one PCI
/// address: `<root bus><rel>/virtio<N>/block/<name>`.
struct PciDisk {
    text: String,
    prefix: String,
}

impl fmt::Display for PciDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtio-blk disk at PCI path {} ({})",
            self.text, self.prefix
        )
    }
}

impl Matcher for PciDisk {
    fn subsystem(&self) -> &str {
        BLOCK
    }
    fn matches(&self, ev: &Uevent) -> bool {
        ev.subsystem == BLOCK
            && !ev.devname.is_empty()
            && virtio_disk_below(&ev.devpath, &self.prefix)
    }
}

/// Is `devpath` `<prefix>/virtio<digits>/block/<name without '/'>`?
pub(super) fn virtio_disk_below(devpath: &str, prefix: &str) -> bool {
    let Some(rest) = devpath
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix("/virtio"))
    else {
        return false;
    };
    let Some((number, name)) = rest.split_once("/block/") else {
        return false;
    };
    !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && !name.contains('/')
}

/// The node of the virtio-blk disk at a Kata PCI path, waiting for it.
pub fn pci_disk(hp: &Hotplug, text: &str) -> Result<PathBuf> {
    let path = PciPath::parse(text)?;
    let root = pci::root_bus_devpath(&hp.sysfs, path.root_complex)?;
    let rel = pci::relative_devpath(&hp.sysfs, &root, &path)?;
    let matcher = PciDisk {
        text: text.to_string(),
        prefix: format!("{root}{rel}"),
    };
    let ev = uevent::wait(&matcher, &hp.sysfs, hp.timeout)?;
    Ok(hp.node_path(&ev.devname))
}

/// A disk known by its name: `.../block/<name>` (virtio-mmio's, or a
/// storage's /dev node).
struct NamedDisk(String);

impl fmt::Display for NamedDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "disk /dev/{}", self.0)
    }
}

impl Matcher for NamedDisk {
    fn subsystem(&self) -> &str {
        BLOCK
    }
    fn matches(&self, ev: &Uevent) -> bool {
        is_block_named(ev, &self.0)
    }
}

/// The mmio disk's node `vm_path` (/dev/vdX), once it exists: Kata's
/// runtime knows the name the guest gives it (the mmio slots are fixed at
/// boot), so only its appearance is waited for.
pub fn mmio_disk(hp: &Hotplug, vm_path: &str) -> Result<PathBuf> {
    node_by_name(hp, vm_path, |name| Box::new(NamedDisk(name.to_string())))
}

/// For tests: does a present device at `devpath` count as the disk at
/// `prefix`?
#[cfg(test)]
pub(super) fn pci_matches(prefix: &str, ev: &Uevent) -> bool {
    PciDisk {
        text: String::new(),
        prefix: prefix.to_string(),
    }
    .matches(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::device::tests::block_add as ev;

    /// Kata's VirtioBlkPciMatcher cases: the device's own address only,
    /// any virtio number, never a partition or another subsystem.
    #[test]
    fn pci_disk_matcher() {
        let a = "/devices/pci0000:00/0000:00:0a.0";
        let b = "/devices/pci0000:00/0000:00:0a.0/0000:00:0b.0";
        assert!(pci_matches(
            a,
            &ev(&format!("{a}/virtio4/block/vda"), "vda")
        ));
        assert!(pci_matches(
            b,
            &ev(&format!("{b}/virtio0/block/vda"), "vda")
        ));
        assert!(pci_matches(
            a,
            &ev(&format!("{a}/virtio123/block/vdq"), "vdq")
        ));
        assert!(!pci_matches(
            a,
            &ev(&format!("{b}/virtio0/block/vda"), "vda")
        ));
        assert!(!pci_matches(
            b,
            &ev(&format!("{a}/virtio4/block/vda"), "vda")
        ));
        // 0000:00:0a.0 is not 0000:00:0a.01... nor a sibling sharing a prefix.
        assert!(!pci_matches(
            a,
            &ev("/devices/pci0000:00/0000:00:0a.01/virtio4/block/vda", "vda")
        ));
        assert!(!pci_matches(
            a,
            &ev(&format!("{a}/virtio4/block/vda/vda1"), "vda1")
        ));
        assert!(!pci_matches(
            a,
            &ev(&format!("{a}/virtio/block/vda"), "vda")
        ));
        assert!(!pci_matches(a, &ev(&format!("{a}/virtio4/block/vda"), "")));
        let mut net = ev(&format!("{a}/virtio4/block/vda"), "vda");
        net.subsystem = "net".into();
        assert!(!pci_matches(a, &net));
    }

    #[test]
    fn mmio_disk_matcher() {
        let m = NamedDisk("vdb".into());
        let path =
            |n: &str| format!("/devices/virtio-mmio-cmdline/virtio-mmio.4/virtio4/block/{n}");
        assert!(m.matches(&ev(&path("vdb"), "vdb")));
        assert!(!m.matches(&ev(&path("vda"), "vda")));
        assert!(!m.matches(&ev(&path("vdb"), "")));
        let mut net = ev(&path("vdb"), "vdb");
        net.subsystem = "net".into();
        assert!(!m.matches(&net));
        assert!(!m.matches(&ev("/devices/virtual/block/vdbx", "vdb")));
    }
}
