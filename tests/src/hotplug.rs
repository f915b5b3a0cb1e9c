//! The host's half of a disk hot-plug: ext4 images made here, given to
//! the running VM through QMP as Kata's runtime gives them (a virtio-blk
//! on a PCIe root port, named to the agent by PCI path; a scsi-hd on the
//! virtio-scsi controller, named by "<scsi-id>:<lun>"), and the
//! CreateContainer pieces the runtime sends for them (kata_agent.go
//! appendBlockDevice for a device, handleDeviceBlockVolume and
//! handleBlkOCIMounts for a volume).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use protocols::agent::{Device, FSGroup, Storage};
use serde_json::json;

use agent_ctl::qmp::Qmp;

/// What was plugged, for the test to ask for.
pub struct Plugged {
    /// PCI path of the virtio-blk disk ("02/00").
    pub blk_pci_path: String,
    /// SCSI address of the scsi-hd ("1:0").
    pub scsi_addr: String,
    /// The images, removed when the test is done with them.
    _images: tempfile::TempDir,
}

/// The text each image holds in a file at its root.
pub const BLK_MARKER: &str = "e2e-virtio-blk-disk";
pub const SCSI_MARKER: &str = "e2e-scsi-disk";

/// The QEMU devices a hot-plug needs: a root port (rp0) and the
/// virtio-scsi controller (scsi0). None when this machine lacks them.
pub fn machine_can_hotplug(qmp: &mut Qmp) -> Result<bool> {
    let ids = qmp.device_ids()?;
    Ok(["rp0", "scsi0"]
        .iter()
        .all(|id| ids.iter().any(|i| i == id)))
}

/// Make both images and hot-plug them.
pub fn plug_disks(qmp: &mut Qmp) -> Result<Plugged> {
    let images = test_support::tempdir();
    let blk = ext4_image(images.path(), "blk", "blk.txt", BLK_MARKER)?;
    let sd = ext4_image(images.path(), "scsi", "scsi.txt", SCSI_MARKER)?;
    qmp.add_image("e2e-blk", &blk)?;
    qmp.add_image("e2e-sd", &sd)?;
    let slot = qmp.root_slot("rp0")?;
    qmp.device_add(json!({
        "driver": "virtio-blk-pci", "id": "e2e-vdb", "drive": "e2e-blk",
        "bus": "rp0", "addr": "0",
    }))?;
    qmp.device_add(json!({
        "driver": "scsi-hd", "id": "e2e-sda", "drive": "e2e-sd",
        "bus": "scsi0.0", "channel": 0, "scsi-id": 1, "lun": 0,
    }))?;
    Ok(Plugged {
        blk_pci_path: format!("{slot:02x}/00"),
        scsi_addr: "1:0".into(),
        _images: images,
    })
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
    d.type_ = "blk".into();
    d.id = p.blk_pci_path.clone();
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
