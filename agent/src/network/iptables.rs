//! GetIPTables / SetIPTables through the iptables-save / iptables-restore
//! binaries of the guest image (ip6tables-* for IPv6).

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

const SEARCH: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The full path of `tool`, or None when the image has no iptables.
pub fn find_tool(tool: &str) -> Option<std::path::PathBuf> {
    SEARCH
        .iter()
        .map(|d| std::path::Path::new(d).join(tool))
        .find(|p| p.exists())
}

fn tool(v6: bool, what: &str) -> String {
    format!("{}-{what}", if v6 { "ip6tables" } else { "iptables" })
}

pub fn save(v6: bool) -> Result<Option<Vec<u8>>> {
    let name = tool(v6, "save");
    let Some(path) = find_tool(&name) else {
        return Ok(None);
    };
    let out = Command::new(&path)
        .output()
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
    let mut child = Command::new(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {name}"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(rules)
        .with_context(|| format!("feeding {name}"))?;
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {name}"))?;
    if !out.status.success() {
        bail!(
            "{name} refused the rules ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some(out.stdout))
}
