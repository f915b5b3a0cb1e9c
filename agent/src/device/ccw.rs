//! virtio-blk on s390x's channel subsystem (driver "blk-ccw"): the device
//! is named by its bus id "0.<ssid>.<devno>" and appears as
//! `/devices/css0/<subchannel>/<bus id>/virtio<N>/block/<name>`. Kata:
//! src/agent/src/ccw.rs, block_device_handler.rs VirtioBlkCCWMatcher.

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::blk::virtio_disk_below;
use super::{Hotplug, BLOCK};
use crate::uevent::{self, Matcher, Uevent};

/// Where channel subsystem devices live in sysfs.
const CSS_ROOT: &str = "/devices/css0";

/// A ccw bus id: subchannel set 0..3, device number 0..ffff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusId {
    ssid: u8,
    devno: u16,
}

impl fmt::Display for BusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0.{}.{:04x}", self.ssid, self.devno)
    }
}

impl BusId {
    pub fn parse(text: &str) -> Result<BusId> {
        let parts: Vec<&str> = text.split('.').collect();
        let [cssid, ssid, devno] = parts.as_slice() else {
            bail!("ccw bus id {text:?} is not 0.<ssid>.<devno>");
        };
        if *cssid != "0" {
            bail!("ccw bus id {text:?}: the channel subsystem must be 0");
        }
        let ssid: u8 = ssid
            .parse()
            .ok()
            .filter(|s| *s <= 3)
            .with_context(|| format!("ccw bus id {text:?}: subchannel set must be 0-3"))?;
        if devno.is_empty() || devno.len() > 4 || !devno.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("ccw bus id {text:?}: device number must be 1-4 hex digits");
        }
        let devno = u16::from_str_radix(devno, 16)
            .with_context(|| format!("ccw bus id {text:?}: device number"))?;
        Ok(BusId { ssid, devno })
    }
}

struct CcwDisk(BusId);

impl fmt::Display for CcwDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "virtio-blk-ccw disk {}", self.0)
    }
}

impl Matcher for CcwDisk {
    fn subsystem(&self) -> &str {
        BLOCK
    }
    fn matches(&self, ev: &Uevent) -> bool {
        if ev.subsystem != BLOCK || ev.devname.is_empty() {
            return false;
        }
        // css0/<subchannel, itself a bus id>/<our bus id>/virtio<N>/block/<name>
        let Some(rest) = ev
            .devpath
            .strip_prefix(CSS_ROOT)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return false;
        };
        let Some((subchannel, below)) = rest.split_once('/') else {
            return false;
        };
        BusId::parse(subchannel).is_ok()
            && virtio_disk_below(&format!("/{below}"), &format!("/{}", self.0))
    }
}

/// The node of the ccw disk with bus id `text`, waiting for it.
pub fn ccw_disk(hp: &Hotplug, text: &str) -> Result<PathBuf> {
    let id = BusId::parse(text)?;
    let ev = uevent::wait(&CcwDisk(id), &hp.sysfs, hp.timeout)?;
    Ok(hp.node_path(&ev.devname))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(devpath: &str) -> Uevent {
        Uevent {
            action: uevent::ADD.into(),
            devpath: devpath.into(),
            subsystem: BLOCK.into(),
            devname: "vda".into(),
            ..Default::default()
        }
    }

    #[test]
    fn bus_ids() {
        assert_eq!(
            BusId::parse("0.0.0002").expect("ok").to_string(),
            "0.0.0002"
        );
        assert_eq!(BusId::parse("0.3.ab").expect("ok").to_string(), "0.3.00ab");
        for bad in [
            "",
            "0.0",
            "1.0.0002",
            "0.4.0002",
            "0.0.10000",
            "0.0.xyz",
            "0.0.0002.1",
        ] {
            assert!(BusId::parse(bad).is_err(), "{bad}");
        }
    }

    /// Kata's VirtioBlkCCWMatcher cases (valid path, wrong device, no root
    /// bus, no virtio number, incomplete path, bad subchannel ids), and no
    /// partition.
    #[test]
    fn ccw_disk_matcher() {
        let m = CcwDisk(BusId::parse("0.0.0002").expect("ok"));
        assert!(m.matches(&ev("/devices/css0/0.0.0001/0.0.0002/virtio1/block/vda")));
        for bad in [
            "/devices/css0/0.0.0001/0.0.0003/virtio1/block/vda",
            "0.0.0001/0.0.0002/virtio1/block/vda",
            "/devices/css0/0.0.0001/0.0.0002/virtio/block/vda",
            "/devices/css0/0.0.0001/0.0.0002/virtio1",
            "/devices/css0/1.0.0001/0.0.0002/virtio1/block/vda",
            "/devices/css0/0.4.0001/0.0.0002/virtio1/block/vda",
            "/devices/css0/0.0.10000/0.0.0002/virtio1/block/vda",
            "/devices/css0/0.0.0001/0.0.0002/virtio1/block/vda/vda1",
        ] {
            assert!(!m.matches(&ev(bad)), "{bad}");
        }
    }
}
