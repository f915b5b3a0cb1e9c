//! `cargo xtask setup --relock`: move every pin in `xtask/host-packages.lock`
//! to the newest version apt offers from the pin's suite (the main bookworm
//! suites when none is named), keeping the file's comments and order, and
//! record for each pin the snapshot.debian.org time that has its version
//! (the rootfs locks' rule: fetch::snapshot_of_apt_lists). `--stamp` only
//! adds that time to the pins that lack one, moving none and updating no list.

use std::fs;
use std::process::Command;

use anyhow::{Context, Result};

use super::{apt_update, ensure_foreign_arches, lock_path, parse_lock};

/// Refresh the lock in place; prints each change. `move_pins`: relock
/// (newest versions), else only stamp the pins that lack a snapshot time.
pub fn relock(move_pins: bool) -> Result<()> {
    if move_pins {
        ensure_foreign_arches()?;
        apt_update()?;
    }
    let lists = crate::fetch::snapshot_of_apt_lists()?;
    let path = lock_path();
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = String::with_capacity(text.len());
    let mut changed = 0;
    for line in text.lines() {
        let new = relock_line(line, move_pins, lists.as_deref(), apt_madison)?;
        if new != line {
            changed += 1;
        }
        out.push_str(&new);
        out.push('\n');
    }
    fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "xtask setup --{}: {changed} line(s) changed in {}",
        if move_pins { "relock" } else { "stamp" },
        path.display()
    );
    Ok(())
}

/// One lock line, relocked (or only stamped); `madison` gives apt-cache
/// madison's output for a package. `lists`: the snapshot time of apt's lists.
fn relock_line(
    line: &str,
    move_pins: bool,
    lists: Option<&str>,
    madison: impl Fn(&str) -> Result<String>,
) -> Result<String> {
    let (body, comment) = match line.split_once('#') {
        Some((b, c)) => (b, Some(c)),
        None => (line, None),
    };
    let Some(pin) = parse_lock(body)?.pop() else {
        return Ok(line.to_string());
    };
    let offers = madison(&pin.package)?;
    let version = if move_pins {
        newest_in_suite(&offers, pin.suite.as_deref()).with_context(|| {
            format!(
                "apt offers no {} from {}",
                pin.package,
                pin.suite.as_deref().unwrap_or("bookworm")
            )
        })?
    } else {
        pin.version.clone()
    };
    let snapshot = if version == pin.version && pin.snapshot.is_some() {
        pin.snapshot.clone()
    } else if lists.is_some() && offers_version(&offers, &version) {
        // Apt's lists have this version: the snapshot at their time does.
        lists.map(str::to_string)
    } else {
        eprintln!(
            "  {} {version}: no snapshot time (apt's lists do not offer this version, \
             and snapshot.debian.org is not asked)",
            pin.package
        );
        None
    };
    if version == pin.version && snapshot == pin.snapshot {
        return Ok(line.to_string());
    }
    if version != pin.version {
        eprintln!("  {}: {} -> {version}", pin.package, pin.version);
    }
    let mut fields = vec![pin.group, pin.package, version];
    fields.extend(pin.suite);
    fields.extend(snapshot);
    let mut line = fields.join(" ");
    if let Some(c) = comment {
        line.push_str(" #");
        line.push_str(c);
    }
    Ok(line)
}

/// Whether any line of madison's output offers `version`.
fn offers_version(madison: &str, version: &str) -> bool {
    madison
        .lines()
        .any(|l| l.split('|').nth(1).map(str::trim) == Some(version))
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

    fn madison(_: &str) -> Result<String> {
        Ok(MADISON.to_string())
    }

    const TS: &str = "20261130T082141Z";

    #[test]
    fn comments_and_blank_lines_pass_through() {
        for line in ["# a comment", ""] {
            assert_eq!(relock_line(line, true, Some(TS), madison).unwrap(), line);
        }
    }

    /// A moved pin gets the lists' time; a kept one keeps its time; a pin
    /// whose version apt no longer offers gets none (never a guessed one).
    #[test]
    fn relock_records_the_snapshot_time_of_each_pin() {
        let moved = relock_line(
            "vm qemu-user-static 1:9 bookworm-backports # why",
            true,
            Some(TS),
            madison,
        )
        .unwrap();
        assert_eq!(
            moved,
            format!(
                "vm qemu-user-static 1:10.0.2+ds-2+deb13u1~bpo12+1 bookworm-backports {TS} # why"
            )
        );
        let kept = "cross qemu-user-static 1:7.2+dfsg-7+deb12u18+b3 20250101T000000Z";
        assert_eq!(relock_line(kept, true, Some(TS), madison).unwrap(), kept);
        // --stamp: the version stays; one apt still offers gets the time.
        let stamped = relock_line(
            "cross qemu-user-static 1:7.2+dfsg-7+deb12u15",
            false,
            Some(TS),
            madison,
        )
        .unwrap();
        assert_eq!(
            stamped,
            format!("cross qemu-user-static 1:7.2+dfsg-7+deb12u15 {TS}")
        );
        let gone = "cross qemu-user-static 1:7.0";
        assert_eq!(relock_line(gone, false, Some(TS), madison).unwrap(), gone);
        // No apt lists: nothing to derive a time from.
        let no_lists = "cross qemu-user-static 1:7.2+dfsg-7+deb12u15";
        assert_eq!(
            relock_line(no_lists, false, None, madison).unwrap(),
            no_lists
        );
    }
}
