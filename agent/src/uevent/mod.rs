//! Kernel uevents: waiting for a device the host hot-plugs. A waiter
//! registers a [`Matcher`] with the one netlink listener (`listener`), then
//! looks through sysfs for a device that is there already (`scan`), so a
//! device that came before the wait began (cold-plugged, or hot-plugged
//! before the request) and one that comes after are found alike. Kata's
//! agent keeps the same pair, a uevent map and a watcher list
//! (src/agent/src/uevent.rs wait_for_uevent); it fills the map from the
//! events it has seen since boot, we read sysfs instead, so an agent
//! started late (or on a host, in the tests) sees what is present.

mod listener;
pub mod scan;

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::error::DeadlineExceeded;

/// The fields of one uevent that matchers look at. `devpath` is relative
/// to the sysfs root ("/devices/pci0000:00/.../block/vda").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    pub devpath: String,
    pub subsystem: String,
    pub devname: String,
    pub devtype: String,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

/// The action of a device that appeared.
pub const ADD: &str = "add";

impl Uevent {
    /// Parse a kernel uevent datagram: "ACTION@DEVPATH\0KEY=VALUE\0...".
    /// None for anything else (udev's own "libudev" messages, garbage).
    pub fn parse(msg: &[u8]) -> Option<Uevent> {
        let mut fields = msg.split(|b| *b == 0);
        let header = String::from_utf8_lossy(fields.next()?);
        if !header.contains('@') {
            return None;
        }
        let mut ev = Uevent::default();
        for field in fields {
            let field = String::from_utf8_lossy(field);
            if let Some((key, value)) = field.split_once('=') {
                ev.set(key, value);
            }
        }
        (!ev.action.is_empty() && !ev.devpath.is_empty()).then_some(ev)
    }

    /// Take one KEY=VALUE of an event (or of a sysfs `uevent` file).
    pub fn set(&mut self, key: &str, value: &str) {
        match key {
            "ACTION" => self.action = value.to_string(),
            "DEVPATH" => self.devpath = value.to_string(),
            "SUBSYSTEM" => self.subsystem = value.to_string(),
            "DEVNAME" => self.devname = value.to_string(),
            "DEVTYPE" => self.devtype = value.to_string(),
            "MAJOR" => self.major = value.parse().ok(),
            "MINOR" => self.minor = value.parse().ok(),
            _ => {}
        }
    }
}

/// Which device a waiter wants. `Display` names it in the timeout error.
pub trait Matcher: fmt::Display + Send + Sync {
    /// The sysfs class the device shows up in ("block"): the one `scan`
    /// looks through.
    fn subsystem(&self) -> &str;
    fn matches(&self, ev: &Uevent) -> bool;
}

/// Even with the listener, look at sysfs again this often: the socket can
/// overflow (ENOBUFS) under a burst of events and lose the one we want,
/// and without a socket (no netlink here) this is the only way to see it.
const RESCAN: Duration = Duration::from_millis(250);

/// Wait up to `timeout` for a device `matcher` accepts, present in sysfs
/// under `sysfs` (normally /sys) or announced by an "add" uevent. Blocks
/// the calling thread. A timeout is a [`DeadlineExceeded`] naming the
/// device and the option that sets the wait.
pub fn wait(matcher: &dyn Matcher, sysfs: &Path, timeout: Duration) -> Result<Uevent> {
    let deadline = Instant::now() + timeout;
    // Subscribed before the first scan: an event between the scan and the
    // wait is not lost.
    let watch = listener::subscribe();
    loop {
        if let Some(ev) = scan::find(sysfs, matcher)? {
            return Ok(ev);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DeadlineExceeded(format!(
                "timed out after {timeout:?} waiting for {matcher} (agent.hotplug_timeout)"
            ))
            .into());
        }
        if let Some(ev) = watch.next(left.min(RESCAN), matcher) {
            return Ok(ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_kernel_message() {
        let msg = b"add@/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio3/block/vdb\0\
ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio3/block/vdb\0\
SUBSYSTEM=block\0MAJOR=254\0MINOR=16\0DEVNAME=vdb\0DEVTYPE=disk\0SEQNUM=1234\0";
        let ev = Uevent::parse(msg).expect("a uevent");
        assert_eq!(ev.action, "add");
        assert_eq!(
            ev.devpath,
            "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio3/block/vdb"
        );
        assert_eq!(ev.subsystem, "block");
        assert_eq!(ev.devname, "vdb");
        assert_eq!(ev.devtype, "disk");
        assert_eq!((ev.major, ev.minor), (Some(254), Some(16)));
    }

    #[test]
    fn rejects_what_is_not_a_kernel_uevent() {
        // udev's re-broadcast starts with a binary "libudev" header.
        assert_eq!(Uevent::parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(Uevent::parse(b""), None);
        // A header but no ACTION/DEVPATH fields.
        assert_eq!(Uevent::parse(b"add@/devices/x\0SUBSYSTEM=block\0"), None);
        // Bad bytes and numbers lose nothing else.
        let ev = Uevent::parse(b"add@/d\0ACTION=add\0DEVPATH=/d\0MAJOR=x\0DEVNAME=\xff\0")
            .expect("parsed");
        assert_eq!(ev.major, None);
        assert_eq!(ev.devname, "\u{fffd}");
    }

    struct Never;

    impl fmt::Display for Never {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("block device at PCI path 1f/1f")
        }
    }

    impl Matcher for Never {
        fn subsystem(&self) -> &str {
            "block"
        }
        fn matches(&self, _: &Uevent) -> bool {
            false
        }
    }

    /// The timeout names the device, the wait and the option, and is a
    /// DeadlineExceeded (DEADLINE_EXCEEDED on the wire).
    #[test]
    fn a_timeout_names_the_device() {
        let sysfs = tempfile::tempdir().expect("tempdir");
        let start = Instant::now();
        let err = wait(&Never, sysfs.path(), Duration::from_millis(300)).expect_err("timeout");
        assert!(start.elapsed() >= Duration::from_millis(300));
        let msg = format!("{err:#}");
        assert!(msg.contains("block device at PCI path 1f/1f"), "{msg}");
        assert!(msg.contains("300ms"), "{msg}");
        assert!(msg.contains("agent.hotplug_timeout"), "{msg}");
        assert!(err.is::<DeadlineExceeded>(), "{err:?}");
    }
}
