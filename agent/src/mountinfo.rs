//! What is mounted where, from /proc/self/mountinfo.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Every mount point, in mount order (a path appears once per stacked mount).
pub fn mount_points() -> Result<Vec<PathBuf>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect())
}

/// How many mounts are stacked on exactly `path`.
pub fn mount_count(path: &Path) -> Result<usize> {
    Ok(mount_points()?.iter().filter(|p| *p == path).count())
}

/// mountinfo escapes space, tab, newline and backslash as \ooo octal.
fn unescape(field: &str) -> String {
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
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_octal() {
        assert_eq!(super::unescape(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(super::unescape(r"/plain\04"), r"/plain\04");
    }

    #[test]
    fn root_is_mounted() {
        assert!(super::mount_count(std::path::Path::new("/")).expect("mountinfo") >= 1);
    }
}
