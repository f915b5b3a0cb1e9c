//! The host's half of a disk hot-plug: ext4 images made here, given to
//! the running VM through QMP as Kata's runtime gives them, and the
//! CreateContainer pieces the runtime sends for them (kata_agent.go
//! appendBlockDevice for a device, handleDeviceBlockVolume and
//! handleBlockVolume for a volume). The volume is a scsi-hd on the
//! virtio-scsi controller on every machine (named "<scsi-id>:<lun>"); the
//! device's disk goes where Kata puts one on the machine's arch (`BlkPort`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use protocols::agent::{Device, FSGroup, Storage};
use serde_json::json;

use agent_ctl::qmp::{first_free_devno, Qmp};

/// Where this machine takes the disk given as a container device, and how
/// the runtime names it to the agent (virtcontainers/qemu.go
/// hotplugAddBlockDevice, kata_agent.go appendBlockDevice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlkPort {
    /// q35 and aarch64 virt: virtio-blk-pci alone on the PCIe root port
    /// rp0 (Kata's pcie_root_port), driver "blk", PCI path "<rp0's slot>/00".
    RootPort,
    /// s390-ccw-virtio: virtio-blk-ccw with a device number of its own
    /// (`devno` fe.0.<n>), driver "blk-ccw" and the bus id 0.0.<n> as its
    /// name (qemu.go VirtioBlockCCW, qemu_s390x.go, types/bridges.go
    /// AddDevice, AddressFormatCCW / AddressFormatCCWForVirtServer).
    Ccw,
    /// pseries: Kata's default block driver, virtio-scsi (runtime and
    /// runtime-rs Makefile DEFBLOCKSTORAGEDRIVER_QEMU): a second scsi-hd,
    /// driver "scsi", named by its "<scsi-id>:<lun>". Not a
    /// virtio-blk-pci: QEMU 10 refuses one on Kata's pci-bridge-0 ("Bus
    /// 'pci-bridge-0' does not support hotplugging"), and one on the root
    /// bus never shows in the guest, whose kernel leaves PCI hot-plug
    /// events to powerpc-utils' rtas_errd/drmgr (arch/powerpc/platforms/
    /// pseries/ras.c), which a Kata guest does not have.
    Scsi,
}

/// The PCIe root port the machines have for a virtio-blk.
const ROOT_PORT: &str = "rp0";
/// Kata's scsiControllerID (virtcontainers/qemu_arch_base.go).
const SCSI: &str = "scsi0";

/// What was plugged, for the test to ask for.
pub struct Plugged {
    /// The agent's driver for the device's disk: "blk", "blk-ccw", "scsi".
    pub blk_driver: &'static str,
    /// Its name: a PCI path ("02/00"), a ccw bus id ("0.0.0004") or a SCSI
    /// address ("2:0").
    pub blk_id: String,
    /// SCSI address of the scsi-hd ("1:0").
    pub scsi_addr: String,
    /// The images, removed when the test is done with them.
    _images: tempfile::TempDir,
}

/// The text each image holds in a file at its root.
pub const BLK_MARKER: &str = "e2e-virtio-blk-disk";
pub const SCSI_MARKER: &str = "e2e-scsi-disk";

/// The machine's place for the device's disk, from the devices it has: a
/// root port, else the channel subsystem when the SCSI controller is on
/// it, else the SCSI controller. None without a virtio-scsi controller.
fn blk_port(qmp: &mut Qmp) -> Result<Option<BlkPort>> {
    let devices = qmp.devices()?;
    let Some((_, scsi)) = devices.iter().find(|(name, _)| name == SCSI) else {
        return Ok(None);
    };
    Ok(Some(if devices.iter().any(|(name, _)| name == ROOT_PORT) {
        BlkPort::RootPort
    } else if scsi.ends_with("-ccw") {
        BlkPort::Ccw
    } else {
        BlkPort::Scsi
    }))
}

/// Can this machine take both disks? (See `BlkPort` for what it needs.)
pub fn machine_can_hotplug(qmp: &mut Qmp) -> Result<bool> {
    Ok(blk_port(qmp)?.is_some())
}

/// Make both images and hot-plug them.
pub fn plug_disks(qmp: &mut Qmp) -> Result<Plugged> {
    let port = blk_port(qmp)?.context("this machine has no virtio-scsi controller scsi0")?;
    let images = test_support::tempdir();
    let blk = ext4_image(images.path(), "blk", "blk.txt", BLK_MARKER)?;
    let sd = ext4_image(images.path(), "scsi", "scsi.txt", SCSI_MARKER)?;
    qmp.add_image("e2e-blk", &blk)?;
    qmp.add_image("e2e-sd", &sd)?;
    let (blk_driver, blk_id) = plug_blk(qmp, port)?;
    let scsi_addr = plug_scsi(qmp, "e2e-sda", "e2e-sd", 1)?;
    Ok(Plugged {
        blk_driver,
        blk_id,
        scsi_addr,
        _images: images,
    })
}

/// A scsi-hd of block node `drive` at SCSI id `target`, LUN 0 on the
/// controller; its "<scsi-id>:<lun>" address.
fn plug_scsi(qmp: &mut Qmp, id: &str, drive: &str, target: u32) -> Result<String> {
    qmp.device_add(json!({
        "driver": "scsi-hd", "id": id, "drive": drive,
        "bus": format!("{SCSI}.0"), "channel": 0, "scsi-id": target, "lun": 0,
    }))?;
    Ok(format!("{target}:0"))
}

/// The device's disk on `port`; the agent's driver and the disk's name.
fn plug_blk(qmp: &mut Qmp, port: BlkPort) -> Result<(&'static str, String)> {
    let mut args = json!({ "driver": "virtio-blk-pci", "id": "e2e-vdb", "drive": "e2e-blk" });
    let named = match port {
        BlkPort::RootPort => {
            let slot = qmp.root_slot(ROOT_PORT)?;
            args["bus"] = ROOT_PORT.into();
            args["addr"] = "0".into();
            ("blk", format!("{slot:02x}/00"))
        }
        BlkPort::Ccw => {
            let in_use = qmp.ccw_devnos()?;
            let devno = first_free_devno(&in_use)
                .with_context(|| format!("no free ccw device number (in use: {in_use:?})"))?;
            args["driver"] = "virtio-blk-ccw".into();
            args["devno"] = format!("fe.0.{devno:04x}").into();
            ("blk-ccw", format!("0.0.{devno:04x}"))
        }
        BlkPort::Scsi => return Ok(("scsi", plug_scsi(qmp, "e2e-vdb", "e2e-blk", 2)?)),
    };
    qmp.device_add(args)?;
    Ok(named)
}

/// A 16 MiB ext4 image holding `file` with `text`.
fn ext4_image(dir: &Path, name: &str, file: &str, text: &str) -> Result<PathBuf> {
    let content = dir.join(format!("{name}-content"));
    std::fs::create_dir_all(&content)?;
    std::fs::write(content.join(file), text)?;
    let image = dir.join(format!("{name}.img"));
    // Sized here: mkfs.ext4 then has no file to create (and nothing to say).
    std::fs::File::create(&image)?.set_len(16 << 20)?;
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .arg(&image)
        .status()
        .context("running mkfs.ext4 (e2fsprogs)")?;
    if !status.success() {
        bail!(
            "mkfs.ext4 -d {} {} failed: {status}",
            content.display(),
            image.display()
        );
    }
    Ok(image)
}

/// The virtio-blk disk as a container device at `container_path`.
pub fn blk_device(p: &Plugged, container_path: &str) -> Device {
    let mut d = Device::new();
    d.type_ = p.blk_driver.into();
    d.id = p.blk_id.clone();
    d.container_path = container_path.into();
    d
}

/// The SCSI disk as a volume: mounted once per sandbox under
/// /run/kata-containers/sandbox/storage/<base64url of the source>, with
/// the pod's fsGroup.
pub fn scsi_volume(p: &Plugged, fs_group: u32) -> Storage {
    let mut s = Storage::new();
    s.driver = "scsi".into();
    s.source = p.scsi_addr.clone();
    s.fstype = "ext4".into();
    s.mount_point = format!(
        "/run/kata-containers/sandbox/storage/{}",
        base64_url(s.source.as_bytes())
    );
    let mut g = FSGroup::new();
    g.group_id = fs_group;
    s.fs_group = Some(g).into();
    s
}

/// Go's base64.URLEncoding (padded), as the runtime names the mount point.
fn base64_url(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_named_like_the_runtime_names_them() {
        assert_eq!(base64_url(b"1:0"), "MTow");
        assert_eq!(base64_url(b"0:0"), "MDow");
        assert_eq!(base64_url(b"02/00"), "MDIvMDA=");
        assert_eq!(base64_url(b"\xfb\xff"), "-_8=");
    }
}
