//! Devices the host hot-plugs for a container: the `devices` of
//! CreateContainer and the disks behind block storages. Each driver finds
//! its device's node in the guest, waiting for it up to
//! agent.hotplug_timeout (`uevent`); `spec` then rewrites the container's
//! spec from the host's device numbers to the guest's. Kata:
//! src/agent/src/device/ (mod.rs add_devices, one handler per driver) and
//! the runtime's kata_agent.go appendBlockDevice, which sends:
//!
//! | type    | names the device by           |
//! |---------|-------------------------------|
//! | blk     | `id`: PCI path ("02/00")      |
//! | scsi    | `id`: SCSI address ("0:0")    |
//! | mmioblk | `vm_path`: /dev/vdX           |
//! | nvdimm  | `vm_path`: /dev/pmemN         |
//! | blk-ccw | `id`: ccw bus id ("0.0.0005"), s390x only |
//!
//! Everything here blocks while it waits: call it off the async workers.

pub mod blk;
pub mod ccw;
pub mod nvdimm;
pub mod pci;
pub mod scsi;
pub mod spec;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use oci_spec::runtime::{LinuxDeviceType, Spec};
use protocols::agent::Device;

use crate::error::{Error, Result};

/// The sysfs class of disks.
pub const BLOCK: &str = "block";

/// Where to look and how long to wait.
#[derive(Clone, Debug)]
pub struct Hotplug {
    /// The sysfs root (/sys; a fake tree in tests).
    pub sysfs: PathBuf,
    /// agent.hotplug_timeout.
    pub timeout: Duration,
}

/// /sys and Kata's default agent.hotplug_timeout.
impl Default for Hotplug {
    fn default() -> Hotplug {
        Hotplug::new(crate::config::DEFAULT_HOTPLUG_TIMEOUT)
    }
}

impl Hotplug {
    pub fn new(timeout: Duration) -> Hotplug {
        Hotplug::with_sysfs(Path::new("/sys"), timeout)
    }

    pub fn with_sysfs(sysfs: &Path, timeout: Duration) -> Hotplug {
        Hotplug {
            sysfs: sysfs.to_path_buf(),
            timeout,
        }
    }

    /// The node the kernel (devtmpfs) makes for a device name.
    pub fn node_path(&self, devname: &str) -> PathBuf {
        Path::new("/dev").join(devname)
    }
}

/// A device node in the guest: what a container's spec must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub typ: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
}

impl Node {
    pub fn stat(path: &Path) -> anyhow::Result<Node> {
        let meta = std::fs::metadata(path).with_context(|| format!("device {}", path.display()))?;
        let typ = if meta.file_type().is_block_device() {
            LinuxDeviceType::B
        } else if meta.file_type().is_char_device() {
            LinuxDeviceType::C
        } else {
            bail!("{} is not a device node", path.display());
        };
        let rdev = meta.rdev();
        Ok(Node {
            path: path.to_path_buf(),
            typ,
            major: i64::from(nix::sys::stat::major(rdev) as u32),
            minor: i64::from(nix::sys::stat::minor(rdev) as u32),
        })
    }
}

/// "/dev/vdb" -> "vdb": a node directly in /dev.
fn dev_name(path: &str) -> anyhow::Result<&str> {
    match path.strip_prefix("/dev/") {
        Some(name) if !name.is_empty() && !name.contains('/') && name != "." && name != ".." => {
            Ok(name)
        }
        _ => bail!("device path {path:?} must be a node directly in /dev"),
    }
}

/// Is `ev` the block device `name` (its node /dev/<name>, its sysfs path
/// ending in `/block/<name>`)? The by-name drivers (mmio, nvdimm) match so.
fn is_block_named(ev: &crate::uevent::Uevent, name: &str) -> bool {
    ev.subsystem == BLOCK && ev.devname == name && ev.devpath.ends_with(&format!("/block/{name}"))
}

/// The node `vm_path` (a name in /dev the runtime knows in advance), once
/// it exists: at once if it does, else when `matcher` (made for its name)
/// sees it appear.
fn node_by_name(
    hp: &Hotplug,
    vm_path: &str,
    matcher: impl FnOnce(&str) -> Box<dyn crate::uevent::Matcher>,
) -> anyhow::Result<PathBuf> {
    let name = dev_name(vm_path)?;
    let node = hp.node_path(name);
    if node.exists() {
        return Ok(node);
    }
    let ev = crate::uevent::wait(&*matcher(name), &hp.sysfs, hp.timeout)?;
    if ev.devname != name {
        bail!("{vm_path} appeared as {}", ev.devname);
    }
    Ok(node)
}

/// CreateContainer's `devices`: find each one's node in the guest, allow
/// it in the container's device cgroup and put the guest's numbers where
/// the spec has the host's (Kata: device/mod.rs add_devices).
pub fn add_devices(oci: &mut Spec, devices: &[Device], hp: &Hotplug) -> Result<()> {
    let mut found = Vec::with_capacity(devices.len());
    for d in devices {
        validate(d)?;
        let path = device_node(d, hp)
            .map_err(|e| e.context(format!("device {} ({})", d.container_path, d.type_)))?;
        let node = Node::stat(&path)?;
        found.push((d.container_path.clone(), node));
    }
    spec::apply(oci, &found).invalid_spec()
}

/// Kata's validate_device, in its words.
fn validate(d: &Device) -> Result<()> {
    if d.type_.is_empty() {
        return Err(Error::invalid(format!("invalid type for device {d:?}")));
    }
    if d.id.is_empty() && d.vm_path.is_empty() {
        return Err(Error::invalid(format!(
            "invalid ID and VM path for device {d:?}"
        )));
    }
    if d.container_path.is_empty() {
        return Err(Error::invalid(format!(
            "invalid container path for device {d:?}"
        )));
    }
    Ok(())
}

/// The guest node of one device, by its driver.
fn device_node(d: &Device, hp: &Hotplug) -> Result<PathBuf> {
    let path = match d.type_.as_str() {
        "blk" => blk::pci_disk(hp, &d.id)?,
        "mmioblk" => blk::mmio_disk(hp, required(&d.vm_path, "vm_path")?)?,
        "scsi" => scsi::scsi_disk(hp, required(&d.id, "id")?)?,
        "nvdimm" => nvdimm::pmem_disk(hp, required(&d.vm_path, "vm_path")?)?,
        "blk-ccw" => ccw_disk(hp, &d.id)?,
        t if t.starts_with("vfio") => {
            return Err(Error::Unimplemented(format!(
                "{t} devices are not supported by this agent"
            )))
        }
        other => {
            return Err(Error::invalid(format!(
                "no handler for device type {other:?} (blk, scsi, mmioblk, nvdimm, blk-ccw)"
            )))
        }
    };
    Ok(path)
}

fn required<'a>(value: &'a str, what: &str) -> Result<&'a str> {
    if value.is_empty() {
        return Err(Error::invalid(format!("the device has no {what}")));
    }
    Ok(value)
}

/// ccw exists on s390x only (Kata: "CCW is only supported on s390x").
fn ccw_disk(hp: &Hotplug, id: &str) -> Result<PathBuf> {
    if cfg!(target_arch = "s390x") {
        Ok(ccw::ccw_disk(hp, id)?)
    } else {
        Err(Error::invalid(format!(
            "blk-ccw device {id}: ccw exists only on s390x"
        )))
    }
}

/// The disk behind a block storage (Kata: storage/block_handler.rs, whose
/// runtime sends the source in each driver's words, as for devices). A
/// source that is a node in /dev is used as it is once it exists.
pub fn storage_disk(hp: &Hotplug, driver: &str, source: &str) -> Result<PathBuf> {
    if source.starts_with("/dev/") {
        let node = Path::new(source);
        if !node.exists() {
            blk::mmio_disk(hp, source)?;
        }
        let n = Node::stat(node).map_err(Error::from)?;
        if n.typ != LinuxDeviceType::B {
            return Err(Error::invalid(format!("{source} is not a block device")));
        }
        return Ok(node.to_path_buf());
    }
    match driver {
        "blk" | "virtio-blk" | "virtio-blk-pci" => Ok(blk::pci_disk(hp, source)?),
        "scsi" => Ok(scsi::scsi_disk(hp, source)?),
        "blk-ccw" | "virtio-blk-ccw" => ccw_disk(hp, source),
        "mmioblk" | "virtio-mmio" | "nvdimm" => Err(Error::invalid(format!(
            "{driver} storage source {source:?} must be a node in /dev"
        ))),
        other => Err(Error::invalid(format!(
            "{other} is not a block storage driver"
        ))),
    }
}

/// Block storage drivers (and the older names some runtimes send).
pub const BLOCK_DRIVERS: &[&str] = &[
    "blk",
    "virtio-blk",
    "virtio-blk-pci",
    "scsi",
    "mmioblk",
    "virtio-mmio",
    "nvdimm",
    "blk-ccw",
    "virtio-blk-ccw",
];

trait InvalidSpec<T> {
    fn invalid_spec(self) -> Result<T>;
}

impl<T> InvalidSpec<T> for anyhow::Result<T> {
    /// A spec that does not fit its devices is the caller's to fix.
    fn invalid_spec(self) -> Result<T> {
        self.map_err(|e| Error::invalid(format!("{e:#}")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A crafted "add" of a disk, for the drivers' matcher tests.
    pub(crate) fn block_add(devpath: &str, devname: &str) -> crate::uevent::Uevent {
        crate::uevent::Uevent {
            action: crate::uevent::ADD.into(),
            devpath: devpath.into(),
            subsystem: BLOCK.into(),
            devname: devname.into(),
            ..Default::default()
        }
    }

    #[test]
    fn dev_names() {
        assert_eq!(dev_name("/dev/vdb").expect("ok"), "vdb");
        for bad in ["vdb", "/dev/", "/dev/a/b", "/dev/..", "/sys/vdb"] {
            assert!(dev_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_devices_are_the_callers() {
        let hp = Hotplug::new(Duration::ZERO);
        let mut d = Device::new();
        d.container_path = "/dev/xda".into();
        d.id = "02/00".into();
        let mut spec = Spec::default();
        let err = add_devices(&mut spec, std::slice::from_ref(&d), &hp).expect_err("no type");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        d.type_ = "floppy".into();
        let err = add_devices(&mut spec, std::slice::from_ref(&d), &hp).expect_err("unknown");
        assert!(format!("{err}").contains("floppy"), "{err}");
        d.type_ = "vfio-pci".into();
        let err = add_devices(&mut spec, std::slice::from_ref(&d), &hp).expect_err("vfio");
        assert!(matches!(err, Error::Unimplemented(_)), "{err:?}");
        d.type_ = "blk".into();
        d.id = "zz".into();
        let err = add_devices(&mut spec, std::slice::from_ref(&d), &hp).expect_err("bad path");
        assert!(format!("{err}").contains("/dev/xda"), "{err}");
        assert!(format!("{err}").contains("PCI path"), "{err}");
    }
}
