//! The sandbox's DNS: its resolv.conf, bind-mounted on /etc/resolv.conf
//! (so a read-only guest rootfs works too).

use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::mountinfo;

/// Where the sandbox's resolv.conf is written.
const SANDBOX_DNS_FILE: &str = "/run/kata-containers/sandbox/resolv.conf";
const GUEST_DNS_FILE: &str = "/etc/resolv.conf";

/// Write the sandbox resolv.conf and bind it on /etc/resolv.conf (after
/// taking away a bind left by an agent that crashed).
pub fn set_up(lines: &[String]) -> Result<()> {
    let file = Path::new(SANDBOX_DNS_FILE);
    let dir = file.parent().context("DNS file has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    let guest = Path::new(GUEST_DNS_FILE);
    unmount_all(guest)?;
    if !guest.exists() {
        std::fs::write(guest, "").with_context(|| format!("creating {GUEST_DNS_FILE}"))?;
    }
    mount(
        Some(file),
        guest,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("bind mounting {SANDBOX_DNS_FILE} on {GUEST_DNS_FILE}"))
}

fn unmount_all(path: &Path) -> Result<()> {
    while mountinfo::mount_count(path)? > 0 {
        umount2(path, MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {}", path.display()))?;
    }
    Ok(())
}

/// Undo `set_up`: unbind /etc/resolv.conf, remove the sandbox's file.
pub fn tear_down() -> Result<()> {
    unmount_all(Path::new(GUEST_DNS_FILE))?;
    let _ = std::fs::remove_file(SANDBOX_DNS_FILE);
    // Only if empty: other sandbox files may live there.
    if let Some(dir) = Path::new(SANDBOX_DNS_FILE).parent() {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}
