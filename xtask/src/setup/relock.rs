//! `cargo xtask setup --relock`: move every pin in `xtask/host-packages.lock`
//! to the newest version apt offers from the pin's suite (the main bookworm
//! suites when none is named), keeping the file's comments and order.

use std::fs;
use std::process::Command;

use anyhow::{Context, Result};

use super::{apt_update, ensure_foreign_arches, lock_path};

/// Refresh the lock in place; prints each change.
pub fn relock() -> Result<()> {
    ensure_foreign_arches()?;
    apt_update()?;
    let path = lock_path();
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = String::with_capacity(text.len());
    let mut changed = 0;
    for line in text.lines() {
        out.push_str(&relock_line(line, &mut changed)?);
        out.push('\n');
    }
    fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "xtask setup --relock: {changed} pin(s) changed in {}",
        path.display()
    );
    Ok(())
}

fn relock_line(line: &str, changed: &mut usize) -> Result<String> {
    let (body, comment) = match line.split_once('#') {
        Some((b, c)) => (b, Some(c)),
        None => (line, None),
    };
    let fields: Vec<&str> = body.split_whitespace().collect();
    if fields.len() < 3 {
        return Ok(line.to_string());
    }
    let (package, old, suite) = (fields[1], fields[2], fields.get(3).copied());
    let madison = apt_madison(package)?;
    let new = newest_in_suite(&madison, suite).with_context(|| {
        format!(
            "apt offers no {package} from {}",
            suite.unwrap_or("bookworm")
        )
    })?;
    if new == old {
        return Ok(line.to_string());
    }
    eprintln!("  {package}: {old} -> {new}");
    *changed += 1;
    let mut fields: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    fields[2] = new;
    let mut line = fields.join(" ");
    if let Some(c) = comment {
        line.push_str(" #");
        line.push_str(c);
    }
    Ok(line)
}

fn apt_madison(package: &str) -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["madison", package])
        .output()
        .context("running apt-cache madison")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first (newest: madison lists versions newest first) version whose
/// origin is `suite`, or any non-backports bookworm suite when `None`.
fn newest_in_suite(madison: &str, suite: Option<&str>) -> Option<String> {
    madison.lines().find_map(|l| {
        let cols: Vec<&str> = l.split('|').map(str::trim).collect();
        let origin_suite = cols.get(2)?.split_whitespace().nth(1)?.split('/').next()?;
        let wanted = match suite {
            Some(s) => origin_suite == s,
            None => origin_suite.starts_with("bookworm") && !origin_suite.ends_with("-backports"),
        };
        wanted.then(|| cols[1].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MADISON: &str = "\
qemu-user-static | 1:10.0.2+ds-2+deb13u1~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages
qemu-user-static | 1:7.2+dfsg-7+deb12u18+b3 | http://deb.debian.org/debian bookworm/main amd64 Packages
qemu-user-static | 1:7.2+dfsg-7+deb12u15 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
";

    #[test]
    fn picks_the_newest_of_the_pinned_suite() {
        assert_eq!(
            newest_in_suite(MADISON, Some("bookworm-backports")).as_deref(),
            Some("1:10.0.2+ds-2+deb13u1~bpo12+1")
        );
        assert_eq!(
            newest_in_suite(MADISON, None).as_deref(),
            Some("1:7.2+dfsg-7+deb12u18+b3")
        );
        assert_eq!(newest_in_suite(MADISON, Some("trixie")), None);
        assert_eq!(newest_in_suite("", None), None);
    }

    #[test]
    fn comments_and_blank_lines_pass_through() {
        let mut n = 0;
        assert_eq!(relock_line("# a comment", &mut n).unwrap(), "# a comment");
        assert_eq!(relock_line("", &mut n).unwrap(), "");
        assert_eq!(n, 0);
    }
}
