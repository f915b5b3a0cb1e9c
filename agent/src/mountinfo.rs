//! What is mounted where, from /proc/self/mountinfo: the one parser (the
//! kernel escapes space, tab, newline and backslash in paths).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Every mount point, in mount order (a path appears once per stacked mount).
pub fn mount_points() -> Result<Vec<PathBuf>> {
    Ok(parse(&read()?))
}

fn read() -> Result<String> {
    std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")
}

/// Field 5 of each line: the mount point.
fn parse(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(OsString::from_vec(unescape(p))))
        .collect()
}

/// One line of mountinfo, the fields the agent reads.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// The directory of the filesystem that is mounted (field 4).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    /// The filesystem's own options (the last field), e.g. `rw,cpu,cpuacct`.
    pub super_options: String,
}

/// Every mount, in mount order.
pub fn entries() -> Result<Vec<Entry>> {
    Ok(parse_entries(&read()?))
}

fn parse_entries(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| {
            // The optional fields end at " - ".
            let (head, tail) = l.split_once(" - ")?;
            let mut head = head.split(' ').skip(3);
            let root = head.next()?;
            let mount_point = head.next()?;
            let mut tail = tail.split(' ');
            let fstype = tail.next()?;
            let super_options = tail.nth(1)?;
            Some(Entry {
                root: PathBuf::from(OsString::from_vec(unescape(root))),
                mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))),
                fstype: fstype.to_string(),
                super_options: super_options.to_string(),
            })
        })
        .collect()
}

/// How many mounts are stacked on exactly `path`.
pub fn mount_count(path: &Path) -> Result<usize> {
    Ok(mount_points()?.iter().filter(|p| *p == path).count())
}

/// mountinfo escapes space, tab, newline and backslash as \ooo octal.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn unescapes_octal() {
        assert_eq!(super::unescape(r"/a\040b\134c"), br"/a b\c");
        assert_eq!(super::unescape(r"/plain\04"), br"/plain\04");
    }

    #[test]
    fn mount_points_with_escaped_characters() {
        let text = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    36 35 98:0 /mnt1 /run/kata-containers/shared/a\\040b\\011c rw - ext4 /dev/vda rw\n\
                    37 22 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            super::parse(text),
            [
                PathBuf::from("/proc"),
                PathBuf::from("/run/kata-containers/shared/a b\tc"),
                PathBuf::from("/sys/fs/cgroup"),
            ]
        );
    }

    #[test]
    fn entries_skip_the_optional_fields() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
                    36 35 98:0 /mnt1 /a\\040b rw - ext4 /dev/vda rw,errors=remount-ro\n";
        let e = super::parse_entries(text);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            (e[0].fstype.as_str(), e[0].super_options.as_str()),
            ("cgroup", "rw,cpu,cpuacct")
        );
        assert_eq!(
            (e[1].root.clone(), e[1].mount_point.clone()),
            (PathBuf::from("/mnt1"), PathBuf::from("/a b"))
        );
    }

    #[test]
    fn root_is_mounted() {
        assert!(super::mount_count(std::path::Path::new("/")).expect("mountinfo") >= 1);
    }
}
