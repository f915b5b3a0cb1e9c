//! Fake sysfs trees, laid out as the kernel lays them out, for the
//! agent's device resolution: device directories with their `uevent` file,
//! the class links to them, PCI root buses and bridges, SCSI hosts.

use std::path::Path;

/// `<root><devpath>/uevent` holding DEVNAME (and MAJOR/MINOR when given),
/// linked from `<root>/class/<subsystem>/<devname>`.
pub fn add_device(
    root: &Path,
    subsystem: &str,
    devpath: &str,
    devname: &str,
    numbers: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let dir = root.join(devpath.trim_start_matches('/'));
    std::fs::create_dir_all(&dir)?;
    let mut text = String::new();
    if let Some((major, minor)) = numbers {
        text.push_str(&format!("MAJOR={major}\nMINOR={minor}\n"));
    }
    text.push_str(&format!("DEVNAME={devname}\nDEVTYPE=disk\n"));
    std::fs::write(dir.join("uevent"), text)?;
    let class = root.join("class").join(subsystem);
    std::fs::create_dir_all(&class)?;
    std::os::unix::fs::symlink(&dir, class.join(devname))
}

/// A PCI root bus `pci<domain:bus>` at `<root><bus_devpath>` and its
/// `class/pci_bus/<domain:bus>` link (what the agent resolves a root
/// complex with); `bus` is "0000:00".
pub fn add_pci_root_bus(root: &Path, bus_devpath: &str, bus: &str) -> std::io::Result<()> {
    let dir = root
        .join(bus_devpath.trim_start_matches('/'))
        .join("pci_bus")
        .join(bus);
    std::fs::create_dir_all(&dir)?;
    let class = root.join("class/pci_bus");
    std::fs::create_dir_all(&class)?;
    std::os::unix::fs::symlink(&dir, class.join(bus))
}

/// A PCI bridge at `<root><bridge_devpath>` leading to bus `secondary`
/// ("0000:01"): its `pci_bus/<secondary>` directory.
pub fn add_pci_bridge(root: &Path, bridge_devpath: &str, secondary: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(
        root.join(bridge_devpath.trim_start_matches('/'))
            .join("pci_bus")
            .join(secondary),
    )
}

/// A SCSI host `hostN` with its `scan` file, under `class/scsi_host/`.
pub fn add_scsi_host(root: &Path, host: &str) -> std::io::Result<()> {
    let dir = root.join("class/scsi_host").join(host);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("scan"), "")
}
