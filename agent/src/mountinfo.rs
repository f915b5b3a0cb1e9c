//! What is mounted where, from /proc/self/mountinfo: the one parser (the
//! kernel escapes space, tab, newline and backslash in paths).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Every mount point, in mount order (a path appears once per stacked mount).
pub fn mount_points() -> Result<Vec<PathBuf>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(parse(&text))
}

/// Field 5 of each line: the mount point.
fn parse(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(OsString::from_vec(unescape(p))))
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
    fn root_is_mounted() {
        assert!(super::mount_count(std::path::Path::new("/")).expect("mountinfo") >= 1);
    }
}
