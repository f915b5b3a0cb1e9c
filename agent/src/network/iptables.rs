//! GetIPTables / SetIPTables through the iptables-save / iptables-restore
//! binaries of the guest image (ip6tables-* for IPv6).

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Where the tools are looked for, in order.
pub const SEARCH: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The full path of `tool`, or None when the image has no iptables.
pub fn find_tool(tool: &str) -> Option<std::path::PathBuf> {
    SEARCH
        .iter()
        .map(|d| std::path::Path::new(d).join(tool))
        .find(|p| p.exists())
}

/// `iptables-save`, `ip6tables-restore`, ...
pub fn tool(v6: bool, what: &str) -> String {
    format!("{}-{what}", if v6 { "ip6tables" } else { "iptables" })
}

pub fn save(v6: bool) -> Result<Option<Vec<u8>>> {
    let name = tool(v6, "save");
    let Some(path) = find_tool(&name) else {
        return Ok(None);
    };
    // Through the reaper: std's own wait would race with it for the status.
    let out = crate::reaper::output_blocking(Command::new(&path), None)
        .with_context(|| format!("running {name}"))?;
    if !out.status.success() {
        bail!(
            "{name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some(out.stdout))
}

pub fn restore(v6: bool, rules: &[u8]) -> Result<Option<Vec<u8>>> {
    let name = tool(v6, "restore");
    let Some(path) = find_tool(&name) else {
        return Ok(None);
    };
    let out = crate::reaper::output_blocking(Command::new(&path), Some(rules.to_vec()))
        .with_context(|| format!("running {name}"))?;
    if !out.status.success() {
        bail!(
            "{name} refused the rules ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some(out.stdout))
}
