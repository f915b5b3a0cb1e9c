//! PCI paths, as Kata's runtime names a hot-plugged PCI device: the slot
//! (and function) on each bus from the root down, "02/00" = slot 02 of the
//! root bus, a bridge, then slot 00 behind it (Kata: src/agent/src/pci.rs,
//! linux_abi.rs pcipath_from_dev_tree_path, device/mod.rs pcipath_to_sysfs).
//! Only the bridges must exist to follow the path: the device itself may
//! be hot-plugged after the request.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// One element of a PCI path: a slot (0..1f) and a function (0..7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotFn {
    slot: u8,
    function: u8,
}

impl fmt::Display for SlotFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}.{:x}", self.slot, self.function)
    }
}

/// A device's place in the guest's PCI tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciPath {
    /// The root complex's bus ("00"; a pxb-pcie expander's is >= 20).
    pub root_complex: u8,
    pub slots: Vec<SlotFn>,
}

/// pxb-pcie expander buses start here (Kata's runtime: busNrSpacing in
/// createNUMAPCIeTopology; agent: PXB_PCIE_ROOT_BUS_MIN).
const PXB_ROOT_BUS_MIN: u8 = 0x20;

impl PciPath {
    /// "02/00" (root complex 00), or "20/00/02" when the first of three or
    /// more elements is a pxb-pcie root bus.
    pub fn parse(text: &str) -> Result<PciPath> {
        let parts: Vec<&str> = text.split('/').collect();
        let pxb = match parts.first() {
            Some(first) if parts.len() >= 3 => u8::from_str_radix(first, 16)
                .ok()
                .filter(|b| *b >= PXB_ROOT_BUS_MIN && first.len() == 2),
            _ => None,
        };
        let (root_complex, elements) = match pxb {
            Some(bus) => (bus, &parts[1..]),
            None => (0, &parts[..]),
        };
        let slots = elements
            .iter()
            .map(|e| parse_slot_fn(e))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("PCI path {text:?} (expected slots like 02/00)"))?;
        Ok(PciPath {
            root_complex,
            slots,
        })
    }
}

fn parse_slot_fn(text: &str) -> Result<SlotFn> {
    let (slot, function) = match text.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (text, None),
    };
    let hex = |s: &str, max: u8, what: &str| -> Result<u8> {
        if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{what} {s:?} is not a hex number");
        }
        let v = u8::from_str_radix(s, 16).with_context(|| format!("{what} {s:?}"))?;
        if v > max {
            bail!("{what} {s:?} is above {max:x}");
        }
        Ok(v)
    };
    Ok(SlotFn {
        slot: hex(slot, 0x1f, "slot")?,
        function: function
            .map(|f| hex(f, 7, "function"))
            .transpose()?
            .unwrap_or(0),
    })
}

/// The sysfs devpath of the root bus `0000:<rc>` ("/devices/pci0000:00",
/// below /devices/platform/... on arm): where `class/pci_bus/0000:<rc>`
/// leads, less its `pci_bus/0000:<rc>` tail. Found the same way on every
/// architecture.
pub fn root_bus_devpath(sysfs: &Path, root_complex: u8) -> Result<String> {
    let bus = format!("0000:{root_complex:02x}");
    let link = sysfs.join("class/pci_bus").join(&bus);
    let real = link
        .canonicalize()
        .with_context(|| format!("no PCI root bus {bus} ({})", link.display()))?;
    let root = sysfs
        .canonicalize()
        .with_context(|| format!("resolving {}", sysfs.display()))?;
    let dir = real
        .parent()
        .and_then(Path::parent)
        .and_then(|d| d.strip_prefix(&root).ok())
        .with_context(|| format!("{} is not a PCI bus of {}", real.display(), root.display()))?;
    Ok(format!("/{}", dir.display()))
}

/// The device's devpath below the root bus ("/0000:00:02.0/0000:01:00.0"):
/// every element but the last is a bridge, whose secondary bus is read
/// from sysfs (`<bridge>/pci_bus/<bus>`, or the bus of its children).
pub fn relative_devpath(sysfs: &Path, root_bus: &str, path: &PciPath) -> Result<String> {
    let Some((last, bridges)) = path.slots.split_last() else {
        bail!("empty PCI path");
    };
    let mut bus = format!("0000:{:02x}", path.root_complex);
    let mut rel = String::new();
    for slot in bridges {
        rel.push_str(&format!("/{bus}:{slot}"));
        let dir = sysfs
            .join(root_bus.trim_start_matches('/'))
            .join(rel.trim_start_matches('/'));
        bus = secondary_bus(&dir).with_context(|| {
            format!(
                "PCI bridge {bus}:{slot} ({}) has no secondary bus",
                dir.display()
            )
        })?;
    }
    rel.push_str(&format!("/{bus}:{last}"));
    Ok(rel)
}

/// "0000:01" for a bridge leading to bus 01.
fn secondary_bus(bridge: &Path) -> Result<String> {
    let names = |dir: &Path| -> Result<Vec<String>> {
        Ok(std::fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    };
    let pci_bus = bridge.join("pci_bus");
    if pci_bus.is_dir() {
        let buses = names(&pci_bus)?;
        return match buses.as_slice() {
            [one] => Ok(one.clone()),
            other => bail!("expected one bus in {}, found {other:?}", pci_bus.display()),
        };
    }
    // No pci_bus directory (seen with some bridges): the one bus all its
    // child devices ("0000:01:00.0") sit on.
    let mut buses: Vec<String> = names(bridge)?
        .iter()
        .filter(|n| is_pci_address(n))
        .map(|n| n[..7].to_string())
        .collect();
    buses.sort();
    buses.dedup();
    match buses.as_slice() {
        [one] => Ok(one.clone()),
        other => bail!("expected child devices on one bus, found {other:?}"),
    }
}

/// dddd:bb:ss.f
fn is_pci_address(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && name
            .bytes()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::sysfs;

    fn slots(p: &PciPath) -> Vec<String> {
        p.slots.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_kata_pci_paths() {
        let p = PciPath::parse("02/00").expect("ok");
        assert_eq!(
            (p.root_complex, slots(&p)),
            (0, vec!["02.0".into(), "00.0".into()])
        );
        let p = PciPath::parse("1f.7").expect("ok");
        assert_eq!(slots(&p), vec!["1f.7"]);
        // Three elements starting with a pxb-pcie bus: that is the root.
        let p = PciPath::parse("20/00/02").expect("ok");
        assert_eq!(
            (p.root_complex, slots(&p)),
            (0x20, vec!["00.0".into(), "02.0".into()])
        );
        // Nested hot-plug on the main root complex stays there.
        let p = PciPath::parse("02/00/01").expect("ok");
        assert_eq!((p.root_complex, p.slots.len()), (0, 3));
        for bad in ["", "02/", "xyz", "20", "002", "02.8", "+1", "02/../03"] {
            let err = PciPath::parse(bad).expect_err(bad);
            assert!(format!("{err:#}").contains("PCI path"), "{bad}: {err:#}");
        }
    }

    /// Kata's test_pcipath_to_sysfs, on our fake sysfs: the last element
    /// need not exist, each bridge must, with its secondary bus.
    #[test]
    fn follows_bridges_in_a_fake_sysfs() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        sysfs::add_pci_root_bus(root, "/devices/pci0000:00", "0000:00").expect("fake");
        let rb = root_bus_devpath(root, 0).expect("root bus");
        assert_eq!(rb, "/devices/pci0000:00");
        let p2 = PciPath::parse("02").expect("ok");
        let p23 = PciPath::parse("02/03").expect("ok");
        let p234 = PciPath::parse("02/03/04").expect("ok");
        assert_eq!(
            relative_devpath(root, &rb, &p2).expect("leaf"),
            "/0000:00:02.0"
        );
        assert!(relative_devpath(root, &rb, &p23).is_err(), "no bridge yet");
        sysfs::add_pci_bridge(root, "/devices/pci0000:00/0000:00:02.0", "0000:01").expect("fake");
        assert_eq!(
            relative_devpath(root, &rb, &p23).expect("one bridge"),
            "/0000:00:02.0/0000:01:03.0"
        );
        assert!(relative_devpath(root, &rb, &p234).is_err());
        // The second bridge has no pci_bus/: its children tell its bus.
        let second = "devices/pci0000:00/0000:00:02.0/0000:01:03.0";
        std::fs::create_dir_all(root.join(second).join("0000:02:07.0")).expect("child");
        assert_eq!(
            relative_devpath(root, &rb, &p234).expect("two bridges"),
            "/0000:00:02.0/0000:01:03.0/0000:02:04.0"
        );
        // A root complex that is not there is named.
        let err = root_bus_devpath(root, 0x20).expect_err("no pxb");
        assert!(format!("{err:#}").contains("0000:20"), "{err:#}");
    }
}
