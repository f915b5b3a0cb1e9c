//! chrony as Kata's rootfs builder sets it up (rootfs-builder/rootfs.sh,
//! after the packages): the guest's only time source is the host's PTP clock
//! (`refclock PHC /dev/ptp0`, KVM's ptp_kvm), stepped at any offset over 1 s;
//! the package's NTP servers are commented out; the unit runs only where
//! /dev/ptp0 exists and does not ask systemd to create state or log
//! directories on the read-only root. What chrony's maintainer script would
//! add is added too: chrony.conf and chrony.keys copied from /usr/share/chrony
//! to /etc/chrony (ucf), its `_chrony` account and the `chronyd.service`
//! alias that Kata's kata-containers.target wants.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

pub const CONF: &str = "etc/chrony/chrony.conf";
const KEYS: &str = "etc/chrony/chrony.keys";
/// Where the package ships them; its postinst copies them to /etc (ucf).
const PACKAGED_CONF: &str = "usr/share/chrony/chrony.conf";
const PACKAGED_KEYS: &str = "usr/share/chrony/chrony.keys";
pub const UNIT: &str = "lib/systemd/system/chrony.service";
/// The alias `systemctl enable chrony` makes (the unit's `Alias=chronyd.service`).
pub const ALIAS: &str = "etc/systemd/system/chronyd.service";

/// Kata's lines, appended to the package's chrony.conf.
const KATA_CONF: &str = "\
refclock PHC /dev/ptp0 poll 3 dpoll -2 offset 0
# Step the system clock instead of slewing it if the adjustment is larger than
# one second, at any time
makestep 1 -1
";

/// The system account chrony's postinst creates (adduser --system); a fixed
/// id keeps the image reproducible.
const USER_ID: u32 = 100;

/// Configure an unpacked chrony in `root`; nothing when it is not there.
/// Call after the skeleton wrote /etc/passwd and /etc/group.
pub fn configure(root: &Path) -> Result<bool> {
    for (packaged, etc) in [(PACKAGED_CONF, CONF), (PACKAGED_KEYS, KEYS)] {
        let (from, to) = (root.join(packaged), root.join(etc));
        if from.is_file() && !to.exists() {
            if let Some(dir) = to.parent() {
                fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    let conf = root.join(CONF);
    if !conf.is_file() {
        return Ok(false);
    }
    edit(&conf, |t| format!("{}{KATA_CONF}", comment_out_sources(t)))?;
    let unit = root.join(UNIT);
    if unit.is_file() {
        edit(&unit, kata_unit)?;
    }
    let home = "/var/lib/chrony";
    edit(&root.join("etc/passwd"), |t| {
        format!("{t}_chrony:x:{USER_ID}:{USER_ID}:Chrony daemon:{home}:/usr/sbin/nologin\n")
    })?;
    edit(&root.join("etc/group"), |t| {
        format!("{t}_chrony:x:{USER_ID}:\n")
    })?;
    Ok(true)
}

fn edit(path: &Path, f: impl FnOnce(&str) -> String) -> Result<()> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    fs::write(path, f(&text)).with_context(|| format!("writing {}", path.display()))
}

/// `sed 's/^\(server \|pool \|peer \)/# &/g'`: no NTP source but the PHC.
fn comment_out_sources(conf: &str) -> String {
    conf.lines()
        .map(|l| {
            if ["server ", "pool ", "peer "]
                .iter()
                .any(|p| l.starts_with(p))
            {
                format!("# {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// Kata's edits of the unit: ConditionPathExists=/dev/ptp0 after `[Unit]`,
/// no `-u <user>` on ExecStart, a missing /var/lib/chrony ignored in
/// ReadWritePaths, and no StateDirectory/LogsDirectory.
fn kata_unit(unit: &str) -> String {
    let mut out = String::new();
    for l in unit.lines() {
        let line = if l.starts_with("ExecStart=") {
            drop_user_option(l)
        } else if l.starts_with("ReadWritePaths=") {
            l.split(' ')
                .map(|w| {
                    if w == "/var/lib/chrony" {
                        "-/var/lib/chrony"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        } else if l.starts_with("StateDirectory=") || l.starts_with("LogsDirectory=") {
            format!("#{l}")
        } else {
            l.to_string()
        };
        out.push_str(&line);
        out.push('\n');
        if l == "[Unit]" {
            out.push_str("ConditionPathExists=/dev/ptp0\n");
        }
    }
    out
}

/// `ExecStart=... -u _chrony ...` without the `-u _chrony`.
fn drop_user_option(line: &str) -> String {
    let mut words = Vec::new();
    let mut it = line.split(' ').peekable();
    while let Some(w) = it.next() {
        if w == "-u"
            && it
                .peek()
                .is_some_and(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'))
        {
            it.next();
            continue;
        }
        words.push(w);
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_has_only_the_phc_source() {
        let pkg = "# Welcome\npool 2.debian.pool.org iburst\nserver a.example\npeer b\nsourcedir /run/chrony-dhcp\nmakestep 1 3\n";
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc/chrony")).unwrap();
        fs::create_dir_all(t.path().join("lib/systemd/system")).unwrap();
        fs::write(t.path().join(CONF), pkg).unwrap();
        fs::write(t.path().join(UNIT), "[Unit]\nDescription=chrony\n\n[Service]\nExecStart=!/usr/sbin/chronyd -u _chrony $DAEMON_OPTS\nReadWritePaths=/run /var/lib/chrony -/var/log\nStateDirectory=chrony\nLogsDirectory=chrony\n").unwrap();
        fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n",
        )
        .unwrap();
        fs::write(t.path().join("etc/group"), "root:x:0:\n").unwrap();
        assert!(configure(t.path()).unwrap());
        let conf = fs::read_to_string(t.path().join(CONF)).unwrap();
        assert!(conf.contains("# pool 2.debian.pool.org iburst\n# server a.example\n# peer b\n"));
        assert!(conf.ends_with("refclock PHC /dev/ptp0 poll 3 dpoll -2 offset 0\n# Step the system clock instead of slewing it if the adjustment is larger than\n# one second, at any time\nmakestep 1 -1\n"));
        let unit = fs::read_to_string(t.path().join(UNIT)).unwrap();
        assert!(unit.starts_with("[Unit]\nConditionPathExists=/dev/ptp0\nDescription=chrony\n"));
        assert!(
            unit.contains("ExecStart=!/usr/sbin/chronyd $DAEMON_OPTS\n"),
            "{unit}"
        );
        assert!(unit.contains("ReadWritePaths=/run -/var/lib/chrony -/var/log\n"));
        assert!(unit.contains("#StateDirectory=chrony\n#LogsDirectory=chrony\n"));
        assert!(fs::read_to_string(t.path().join("etc/passwd"))
            .unwrap()
            .contains("\n_chrony:x:100:100:"));
        assert!(fs::read_to_string(t.path().join("etc/group"))
            .unwrap()
            .ends_with("_chrony:x:100:\n"));
    }

    /// Debian's chrony ships its configuration under /usr/share/chrony; the
    /// postinst (ucf) puts it in /etc/chrony, so the tree must too.
    #[test]
    fn the_packaged_conf_and_keys_are_installed_in_etc() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("usr/share/chrony")).unwrap();
        fs::create_dir_all(t.path().join("etc/chrony/conf.d")).unwrap();
        fs::write(
            t.path().join(PACKAGED_CONF),
            "pool 2.debian.pool.org iburst\nkeyfile /etc/chrony/chrony.keys\n",
        )
        .unwrap();
        fs::write(t.path().join(PACKAGED_KEYS), "# keys\n").unwrap();
        fs::write(t.path().join("etc/passwd"), "").unwrap();
        fs::write(t.path().join("etc/group"), "").unwrap();
        assert!(configure(t.path()).unwrap());
        let conf = fs::read_to_string(t.path().join(CONF)).unwrap();
        assert!(
            conf.starts_with("# pool 2.debian.pool.org iburst\nkeyfile /etc/chrony/chrony.keys\n"),
            "{conf}"
        );
        assert!(conf.contains("refclock PHC /dev/ptp0"));
        assert_eq!(fs::read_to_string(t.path().join(KEYS)).unwrap(), "# keys\n");
        // The package's copy stays as shipped.
        assert!(fs::read_to_string(t.path().join(PACKAGED_CONF))
            .unwrap()
            .starts_with("pool "));
    }

    #[test]
    fn nothing_without_chrony() {
        let t = tempfile::tempdir().unwrap();
        assert!(!configure(t.path()).unwrap());
    }
}
