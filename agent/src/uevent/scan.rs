//! Devices present already: each entry of `<sysfs>/class/<subsystem>/`
//! links to the device's directory, whose `uevent` file holds the fields
//! its "add" event carried (MAJOR, MINOR, DEVNAME, DEVTYPE). Read as that
//! event, so one matcher serves both.

use std::path::Path;

use anyhow::{Context, Result};

use super::{Matcher, Uevent, ADD};

/// The first present device `matcher` accepts.
pub fn find(sysfs: &Path, matcher: &dyn Matcher) -> Result<Option<Uevent>> {
    let class = sysfs.join("class").join(matcher.subsystem());
    let entries = match std::fs::read_dir(&class) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("listing {}", class.display())),
    };
    let root = sysfs
        .canonicalize()
        .with_context(|| format!("resolving {}", sysfs.display()))?;
    for entry in entries.flatten() {
        if let Some(ev) = present(&root, &entry.path(), matcher.subsystem()) {
            if matcher.matches(&ev) {
                return Ok(Some(ev));
            }
        }
    }
    Ok(None)
}

/// The event of one class entry; None when it went away meanwhile or is
/// not below the sysfs root.
fn present(root: &Path, link: &Path, subsystem: &str) -> Option<Uevent> {
    let dir = link.canonicalize().ok()?;
    let rel = dir.strip_prefix(root).ok()?;
    let text = std::fs::read_to_string(dir.join("uevent")).ok()?;
    let mut ev = Uevent {
        action: ADD.to_string(),
        devpath: format!("/{}", rel.display()),
        subsystem: subsystem.to_string(),
        ..Default::default()
    };
    for line in text.lines() {
        if let Some((key, value)) = line.split_once('=') {
            ev.set(key, value);
        }
    }
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    struct Name(&'static str);

    impl fmt::Display for Name {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "block device {}", self.0)
        }
    }

    impl Matcher for Name {
        fn subsystem(&self) -> &str {
            "block"
        }
        fn matches(&self, ev: &Uevent) -> bool {
            ev.devname == self.0
        }
    }

    #[test]
    fn finds_a_present_device_as_its_add_event() {
        let t = tempfile::tempdir().expect("tempdir");
        let devpath = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio3/block/vdb";
        test_support::sysfs::add_device(t.path(), "block", devpath, "vdb", Some((254, 16)))
            .expect("fake");
        test_support::sysfs::add_device(
            t.path(),
            "block",
            "/devices/virtual/block/loop0",
            "loop0",
            None,
        )
        .expect("fake");
        let ev = find(t.path(), &Name("vdb")).expect("scan").expect("found");
        assert_eq!(ev.action, ADD);
        assert_eq!(ev.devpath, devpath);
        assert_eq!(ev.subsystem, "block");
        assert_eq!((ev.major, ev.minor), (Some(254), Some(16)));
        assert_eq!(find(t.path(), &Name("vdc")).expect("scan"), None);
        // No class directory at all: nothing present, no error.
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(find(empty.path(), &Name("vdb")).expect("scan"), None);
    }
}
