//! SCSI disks on the guest's virtio-scsi controller (driver "scsi", Kata's
//! default block driver): named by "<target>:<lun>" on host 0, channel 0.
//! The agent asks each SCSI host to scan that address (the guest boots
//! with scsi_mod.scan=none), then waits for the disk. Kata:
//! src/agent/src/device/scsi_device_handler.rs (its matcher, like this
//! one, assumes the one SCSI host the runtime gives the VM).

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::{Hotplug, BLOCK};
use crate::uevent::{self, Matcher, Uevent};

/// "0:0" -> (target 0, lun 0).
pub fn parse_address(text: &str) -> Result<(u32, u32)> {
    let parsed = text
        .split_once(':')
        .and_then(|(t, l)| Some((t.parse().ok()?, l.parse().ok()?)));
    match parsed {
        Some(addr) if !text.contains('+') => Ok(addr),
        _ => bail!("SCSI address {text:?} is not <target>:<lun>"),
    }
}

struct ScsiDisk {
    /// "/0:0:<target>:<lun>", the SCSI device directory the disk is below.
    device: String,
}

impl fmt::Display for ScsiDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SCSI disk at {}", self.device.trim_start_matches('/'))
    }
}

impl Matcher for ScsiDisk {
    fn subsystem(&self) -> &str {
        BLOCK
    }
    fn matches(&self, ev: &Uevent) -> bool {
        if ev.action != uevent::ADD || ev.subsystem != BLOCK || ev.devname.is_empty() {
            return false;
        }
        let Some((dir, name)) = ev.devpath.split_once("/block/") else {
            return false;
        };
        dir.ends_with(&self.device) && name == ev.devname
    }
}

/// Write "0 <target> <lun>" to every `class/scsi_host/*/scan`: the kernel
/// probes that address and adds the disk it finds.
fn scan(hp: &Hotplug, target: u32, lun: u32) -> Result<()> {
    let hosts = hp.sysfs.join("class/scsi_host");
    let entries = std::fs::read_dir(&hosts)
        .with_context(|| format!("listing {} (no SCSI controller?)", hosts.display()))?;
    for entry in entries.flatten() {
        let scan = entry.path().join("scan");
        std::fs::write(&scan, format!("0 {target} {lun}"))
            .with_context(|| format!("asking {} to scan 0 {target} {lun}", scan.display()))?;
    }
    Ok(())
}

/// The node of the SCSI disk at "<target>:<lun>", scanning for it and
/// waiting.
pub fn scsi_disk(hp: &Hotplug, address: &str) -> Result<PathBuf> {
    let (target, lun) = parse_address(address)?;
    let matcher = ScsiDisk {
        device: format!("/0:0:{target}:{lun}"),
    };
    scan(hp, target, lun)?;
    let ev = uevent::wait(&matcher, &hp.sysfs, hp.timeout)?;
    Ok(hp.node_path(&ev.devname))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(addr: &str, tail: &str, devname: &str) -> Uevent {
        let target = addr.split(':').next().unwrap_or("0");
        Uevent {
            action: uevent::ADD.into(),
            devpath: format!(
                "/devices/pci0000:00/0000:00:03.0/virtio0/host0/target0:0:{target}/0:0:{addr}/block/{tail}"
            ),
            subsystem: BLOCK.into(),
            devname: devname.into(),
            ..Default::default()
        }
    }

    fn disk(addr: &str) -> ScsiDisk {
        let (t, l) = parse_address(addr).expect("address");
        ScsiDisk {
            device: format!("/0:0:{t}:{l}"),
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address("0:0").expect("ok"), (0, 0));
        assert_eq!(parse_address("2:17").expect("ok"), (2, 17));
        for bad in ["", "0", "0:0:0", "a:0", "0:-1", "+1:0"] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    /// Kata's ScsiBlockMatcher cases: its own address only, an "add" of a
    /// whole disk with a name, in the block subsystem.
    #[test]
    fn scsi_disk_matcher() {
        assert!(disk("0:0").matches(&ev("0:0", "sda", "sda")));
        assert!(disk("2:0").matches(&ev("2:0", "sdb", "sdb")));
        assert!(disk("1:1").matches(&ev("1:1", "sdc", "sdc")));
        assert!(!disk("0:0").matches(&ev("2:0", "sdb", "sdb")));
        assert!(!disk("2:0").matches(&ev("0:0", "sda", "sda")));
        // 0:0:1:1 must not be taken for 0:0:11:1 or 0:0:1:11.
        assert!(!disk("1:1").matches(&ev("11:1", "sdd", "sdd")));
        assert!(!disk("1:1").matches(&ev("1:11", "sdd", "sdd")));
        assert!(!disk("0:0").matches(&ev("0:0", "sda/sda1", "sda1")));
        assert!(!disk("0:0").matches(&ev("0:0", "sda", "")));
        let mut e = ev("0:0", "sda", "sda");
        e.subsystem = "net".into();
        assert!(!disk("0:0").matches(&e));
        let mut e = ev("0:0", "sda", "sda");
        e.action = "change".into();
        assert!(!disk("0:0").matches(&e));
    }

    /// Every host is asked to scan the address, in sysfs's words.
    #[test]
    fn scan_writes_each_host() {
        let t = tempfile::tempdir().expect("tempdir");
        test_support::sysfs::add_scsi_host(t.path(), "host0").expect("fake");
        test_support::sysfs::add_scsi_host(t.path(), "host1").expect("fake");
        let hp = Hotplug::with_sysfs(t.path(), std::time::Duration::ZERO);
        scan(&hp, 2, 5).expect("scan");
        for h in ["host0", "host1"] {
            let got =
                std::fs::read_to_string(t.path().join("class/scsi_host").join(h).join("scan"))
                    .expect("read");
            assert_eq!(got, "0 2 5");
        }
        let none = tempfile::tempdir().expect("tempdir");
        let err = scan(
            &Hotplug::with_sysfs(none.path(), std::time::Duration::ZERO),
            0,
            0,
        )
        .expect_err("no host");
        assert!(format!("{err:#}").contains("no SCSI controller"), "{err:#}");
    }
}
