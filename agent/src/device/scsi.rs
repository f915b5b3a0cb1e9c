//! SCSI disks on the guest's virtio-scsi controller (driver "scsi", Kata's
//! default block driver): named by "<target>:<lun>" on host 0, channel 0.
//! The agent asks each SCSI host to scan that address (the guest boots
//! with scsi_mod.scan=none), then waits for the disk. Kata:
//! src/agent/src/device/scsi_device_handler.rs (its matcher, like this
//! one, assumes the one SCSI host the runtime gives the VM).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{Hotplug, BLOCK};
use crate::error::DeadlineExceeded;
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
    let deadline = Instant::now() + hp.timeout;
    scan(hp, target, lun)?;
    let ev = uevent::wait(&matcher, &hp.sysfs, hp.timeout)?;
    let node = hp.node_path(&ev.devname);
    wait_openable(&node, deadline, |p| std::fs::File::open(p).map(drop))?;
    Ok(node)
}

/// How often `wait_openable` tries again.
const OPEN_RETRY: Duration = Duration::from_millis(10);

/// Returns once opening `node` stops failing with ENXIO, or errs at
/// `deadline`. The disk's "add" uevent can come before the disk opens: seen
/// under TCG (aarch64, the hot-plugged disk of the verity suite), where the
/// mount right after it failed with ENXIO (kernel: "/dev/sda: Can't open
/// blockdev"). Any other outcome of the open is left to the caller's own
/// use of the node (the mount says what is wrong).
fn wait_openable(
    node: &Path,
    deadline: Instant,
    open: impl Fn(&Path) -> std::io::Result<()>,
) -> Result<()> {
    loop {
        match open(node) {
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
            _ => return Ok(()),
        }
        if Instant::now() >= deadline {
            return Err(DeadlineExceeded(format!(
                "{} still answers ENXIO (no such device) at the deadline \
                 (agent.hotplug_timeout)",
                node.display()
            ))
            .into());
        }
        std::thread::sleep(OPEN_RETRY);
    }
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

    fn enxio() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENXIO)
    }

    /// The flake of the aarch64 verity suite: the disk's uevent came, and
    /// the mount right after got ENXIO. The wait tries again until the
    /// node opens.
    #[test]
    fn a_disk_that_answers_enxio_at_first_is_waited_for() {
        let tries = std::cell::Cell::new(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        wait_openable(Path::new("/dev/sda"), deadline, |p| {
            assert_eq!(p, Path::new("/dev/sda"));
            tries.set(tries.get() + 1);
            if tries.get() < 3 {
                Err(enxio())
            } else {
                Ok(())
            }
        })
        .expect("opens on the third try");
        assert_eq!(tries.get(), 3);
    }

    /// ENXIO to the end is a deadline error (DEADLINE_EXCEEDED for the
    /// runtime), naming the node; any other failure is left to the mount.
    #[test]
    fn enxio_until_the_deadline_is_a_timeout_and_other_errors_pass() {
        let deadline = Instant::now() + Duration::from_millis(30);
        let err = wait_openable(Path::new("/dev/sdb"), deadline, |_| Err(enxio()))
            .expect_err("never opens");
        let err = crate::error::Error::from(err);
        assert!(
            matches!(err, crate::error::Error::DeadlineExceeded(ref m) if m.contains("/dev/sdb")),
            "{err:?}"
        );
        let tries = std::cell::Cell::new(0);
        wait_openable(Path::new("/dev/sdc"), Instant::now(), |_| {
            tries.set(tries.get() + 1);
            Err(std::io::Error::from_raw_os_error(libc::ENOMEDIUM))
        })
        .expect("not ENXIO: the mount reports it");
        assert_eq!(tries.get(), 1);
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
