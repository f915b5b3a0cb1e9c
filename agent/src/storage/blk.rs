//! Block devices for the blk / virtio-blk drivers: the Storage source is a
//! Kata PCI path ("02/00": slot 02 on the root bus, then slot 00 behind that
//! bridge) or a device node (/dev/vda). A hot-plugged device can show up
//! after the request: wait up to agent.hotplug_timeout, woken by uevents.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Root-bus devices are found here by address on every architecture (the
/// real tree is /sys/devices/pci0000:00 on x86, below platform/ on arm).
const PCI_DEVICES: &str = "/sys/bus/pci/devices";
/// Fallback polling interval when no uevent socket is available.
const POLL: Duration = Duration::from_millis(20);

/// The /dev node for a Storage source, waiting for hot-plug.
pub fn device_for_source(source: &str, timeout: Duration) -> Result<PathBuf> {
    if source.starts_with("/dev/") {
        let dev = PathBuf::from(source);
        wait_for(timeout, || Ok(dev.exists().then(|| dev.clone())))
            .with_context(|| format!("block device {source} did not appear"))
    } else {
        let slots = parse_pci_path(source)?;
        wait_for(timeout, || block_device_at(Path::new(PCI_DEVICES), &slots))
            .with_context(|| format!("no block device at PCI path {source}"))
    }
}

/// Probe until found or timed out, waking on kernel uevents (a device
/// being added) instead of sleeping blindly; a plain poll when no uevent
/// socket can be opened.
fn wait_for(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<PathBuf>>,
) -> Result<PathBuf> {
    let deadline = Instant::now() + timeout;
    // Opened before the first probe, so an event between probe and wait is
    // not lost.
    let events = uevent_socket().ok();
    loop {
        if let Some(found) = probe()? {
            return Ok(found);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("timed out after {timeout:?}");
        }
        match &events {
            Some(sock) => wait_readable(sock, left.min(UEVENT_RECHECK)),
            None => std::thread::sleep(POLL.min(left)),
        }
    }
}

/// Even with uevents, look again this often: a node in /dev can lag its event.
const UEVENT_RECHECK: Duration = Duration::from_millis(200);

fn uevent_socket() -> Result<OwnedFd> {
    use nix::sys::socket::{
        bind, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkKObjectUEvent,
    )
    .context("opening a uevent socket")?;
    // Multicast group 1: the kernel's own uevents.
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1)).context("binding the uevent socket")?;
    Ok(fd)
}

/// Wait until an event arrives (or `wait` passes), then drain the socket:
/// the content does not matter, the next probe looks at sysfs itself.
fn wait_readable(sock: &OwnedFd, wait: Duration) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    if matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0) {
        let mut buf = [0u8; 8192];
        while nix::unistd::read(sock, &mut buf)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    }
}

/// "02/00" → [0x02, 0x00]; each element is a two-digit hex slot.
pub fn parse_pci_path(path: &str) -> Result<Vec<u8>> {
    let slots: Result<Vec<u8>> = path
        .split('/')
        .map(|s| {
            if s.is_empty() || s.len() > 2 {
                bail!("PCI path {path:?}: bad slot {s:?} (expected hex like 02/00)");
            }
            let v = u8::from_str_radix(s, 16)
                .with_context(|| format!("PCI path {path:?}: slot {s:?} is not hex"))?;
            if v > 0x1f {
                bail!("PCI path {path:?}: slot {s:?} is above 1f");
            }
            Ok(v)
        })
        .collect();
    slots
}

/// Find the root-bus device of the first slot, then walk down the bridges
/// along the others; Some(/dev/vdX) once the device has a block node.
fn block_device_at(root: &Path, slots: &[u8]) -> Result<Option<PathBuf>> {
    let Some((first, rest)) = slots.split_first() else {
        return Ok(None);
    };
    let top = root.join(format!("0000:00:{first:02x}.0"));
    let Ok(mut dir) = top.canonicalize() else {
        return Ok(None);
    };
    for slot in rest {
        let suffix = format!(":{slot:02x}.0");
        let Some(next) =
            child_matching(&dir, |name| is_pci_address(name) && name.ends_with(&suffix))?
        else {
            return Ok(None);
        };
        dir = next;
    }
    find_block_name(&dir, 3).map(|n| n.map(|n| Path::new("/dev").join(n)))
}

fn is_pci_address(name: &str) -> bool {
    // dddd:bb:ss.f
    let b = name.as_bytes();
    b.len() == 12 && b[4] == b':' && b[7] == b':' && b[10] == b'.'
}

fn child_matching(dir: &Path, want: impl Fn(&str) -> bool) -> Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries.flatten() {
        if want(&entry.file_name().to_string_lossy()) {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// The name under a `block/` directory at most `depth` levels down
/// (virtio devices put it at <pci>/virtioN/block/vdX).
fn find_block_name(dir: &Path, depth: u32) -> Result<Option<String>> {
    let block = dir.join("block");
    if let Some(dev) = child_matching(&block, |_| true)? {
        return Ok(dev.file_name().map(|n| n.to_string_lossy().into_owned()));
    }
    if depth == 0 {
        return Ok(None);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only descend into real child devices, not links back up the tree.
        if name.starts_with("virtio") && entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            if let Some(found) = find_block_name(&entry.path(), depth - 1)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_paths() {
        assert_eq!(parse_pci_path("02/00").expect("ok"), vec![2, 0]);
        assert_eq!(parse_pci_path("1f").expect("ok"), vec![0x1f]);
        for bad in ["", "02/", "xyz", "20", "002"] {
            assert!(parse_pci_path(bad).is_err(), "{bad}");
        }
    }

    /// A fake sysfs tree: root/0000:00:02.0/0000:01:00.0/virtio3/block/vdb.
    #[test]
    fn walks_a_fake_sysfs() {
        let t = tempfile::tempdir().expect("tempdir");
        let dev = t.path().join("0000:00:02.0/0000:01:00.0/virtio3/block/vdb");
        std::fs::create_dir_all(&dev).expect("mkdir");
        let found = block_device_at(t.path(), &[2, 0]).expect("walk");
        assert_eq!(found, Some(PathBuf::from("/dev/vdb")));
        assert_eq!(block_device_at(t.path(), &[3]).expect("walk"), None);
    }

    /// A node that shows up after the wait began is found promptly.
    #[test]
    fn late_device_is_found() {
        if !test_support::is_root() {
            test_support::skip!("creating a node in /dev needs root");
        }
        let node = format!("/dev/kata-late-{}", std::process::id());
        let maker = {
            let node = node.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::write(&node, "").expect("create the late node");
            })
        };
        let start = Instant::now();
        let found = device_for_source(&node, Duration::from_secs(5));
        maker.join().expect("maker thread");
        let _ = std::fs::remove_file(&node);
        assert_eq!(found.expect("found"), PathBuf::from(&node));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn missing_device_times_out() {
        let err = device_for_source("/dev/does-not-exist", Duration::from_millis(50))
            .expect_err("absent");
        assert!(format!("{err:#}").contains("timed out"), "{err:#}");
    }
}
