//! A minimal busybox rootfs for container tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's busybox-static, the only binary the rootfs needs.
pub const BUSYBOX: &str = "/bin/busybox";

/// A busybox rootfs under `dir`: busybox-static as /bin/busybox plus one
/// symlink per applet. Err (the reason to skip) when busybox-static is not
/// installed.
pub fn busybox(dir: &Path) -> Result<PathBuf, String> {
    let busybox = Path::new(BUSYBOX);
    if !busybox.exists() {
        return Err(format!(
            "no busybox rootfs: {BUSYBOX} is missing (apt-get install busybox-static)"
        ));
    }
    let root = dir.join("rootfs");
    for d in [
        "bin", "sbin", "usr/bin", "proc", "sys", "dev", "tmp", "etc", "root",
    ] {
        fs::create_dir_all(root.join(d)).expect("creating rootfs dirs");
    }
    fs::copy(busybox, root.join("bin/busybox")).expect("copying busybox");
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).expect("creating applet link");
        }
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("writing passwd");
    fs::write(root.join("etc/group"), "root:x:0:\n").expect("writing group");
    Ok(root)
}
