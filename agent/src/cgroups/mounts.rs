//! Mounting the cgroup hierarchies in the guest at boot (the agent as PID 1).
//!
//! Unified: one cgroup2 mount at /sys/fs/cgroup. Otherwise the classic
//! layout: a tmpfs at /sys/fs/cgroup and one v1 mount per controller group,
//! with cpu and cpuacct (and net_cls, net_prio) sharing a hierarchy, plus
//! the usual symlinks to the shared mount. What is already mounted is left
//! alone, so calling this twice is harmless.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use crate::mountinfo;

const ROOT: &str = "/sys/fs/cgroup";

/// v1 controller groups, each mounted at ROOT/<names joined by ','>.
const V1_GROUPS: &[&[&str]] = &[
    &["cpu", "cpuacct"],
    &["cpuset"],
    &["memory"],
    &["pids"],
    &["blkio"],
    &["devices"],
    &["freezer"],
    &["hugetlb"],
    &["net_cls", "net_prio"],
    &["perf_event"],
];

fn flags() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME
}

/// Mount the cgroup hierarchies the agent's cgroup manager expects.
/// Controllers skipped because another hierarchy holds them are reported on
/// stderr (the console, this early in boot).
pub fn mount_cgroup_hierarchies(unified: bool) -> Result<()> {
    for note in mount_cgroup_hierarchies_reporting(unified)? {
        eprintln!("kata-agent: {note}");
    }
    Ok(())
}

/// As `mount_cgroup_hierarchies`, returning what was skipped and why.
pub fn mount_cgroup_hierarchies_reporting(unified: bool) -> Result<Vec<String>> {
    fs::create_dir_all(ROOT).with_context(|| format!("creating {ROOT}"))?;
    let mounted = mount_points()?;
    if unified {
        if cgroups_rs::fs::hierarchies::is_cgroup2_unified_mode() {
            return Ok(Vec::new());
        }
        if mounted.contains(ROOT) {
            bail!(
                "{ROOT} is already mounted, and not as cgroup2: cannot mount the unified hierarchy"
            );
        }
        mount(
            Some("cgroup2"),
            ROOT,
            Some("cgroup2"),
            flags(),
            None::<&str>,
        )
        .with_context(|| format!("mounting cgroup2 at {ROOT}"))?;
        return Ok(Vec::new());
    }
    if !mounted.contains(ROOT) {
        mount(
            Some("cgroup"),
            ROOT,
            Some("tmpfs"),
            flags(),
            Some("mode=755"),
        )
        .with_context(|| format!("mounting a tmpfs at {ROOT}"))?;
    }
    mount_v1_controllers(&mounted)
}

fn mount_v1_controllers(mounted: &HashSet<String>) -> Result<Vec<String>> {
    let enabled = enabled_controllers()?;
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    for group in V1_GROUPS {
        let present: Vec<&str> = group
            .iter()
            .copied()
            .filter(|c| enabled.contains(*c))
            .collect();
        if present.is_empty() {
            continue;
        }
        match mount_v1_group(&present, mounted) {
            Ok(mut notes) => skipped.append(&mut notes),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if !failures.is_empty() {
        bail!("mounting cgroup v1 controllers: {}", failures.join("; "));
    }
    Ok(skipped)
}

/// Mount `controllers` together; if the kernel already binds them to
/// different hierarchies (EBUSY), mount each on its own. A controller that
/// is still busy is held by another hierarchy (cgroup v2, or a v1 mount
/// elsewhere): skipped, with the reason returned.
fn mount_v1_group(controllers: &[&str], mounted: &HashSet<String>) -> Result<Vec<String>> {
    let name = controllers.join(",");
    let target = format!("{ROOT}/{name}");
    if mounted.contains(&target) {
        return Ok(Vec::new());
    }
    match mount_v1(&name, &target) {
        Ok(()) => {
            link_members(controllers, &name)?;
            return Ok(Vec::new());
        }
        Err(Errno::EBUSY) => {
            let _ = fs::remove_dir(&target);
        }
        Err(e) => return Err(e).with_context(|| format!("mounting cgroup {name} at {target}")),
    }
    let mut skipped = Vec::new();
    for c in controllers.iter().filter(|_| controllers.len() > 1) {
        let own = format!("{ROOT}/{c}");
        if mounted.contains(&own) {
            continue;
        }
        match mount_v1(c, &own) {
            Ok(()) => {}
            Err(Errno::EBUSY) => {
                let _ = fs::remove_dir(&own);
                skipped.push(format!(
                    "cgroup controller {c} not mounted: another hierarchy holds it"
                ));
            }
            Err(e) => return Err(e).with_context(|| format!("mounting cgroup {c} at {own}")),
        }
    }
    if controllers.len() == 1 {
        skipped.push(format!(
            "cgroup controller {name} not mounted: another hierarchy holds it"
        ));
    }
    Ok(skipped)
}

fn mount_v1(options: &str, target: &str) -> nix::Result<()> {
    fs::create_dir_all(target).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    mount(
        Some("cgroup"),
        target,
        Some("cgroup"),
        flags(),
        Some(options),
    )
}

/// ROOT/cpu -> cpu,cpuacct and so on, as systemd lays it out.
fn link_members(controllers: &[&str], name: &str) -> Result<()> {
    if controllers.len() < 2 {
        return Ok(());
    }
    for c in controllers {
        let link = format!("{ROOT}/{c}");
        if Path::new(&link).symlink_metadata().is_err() {
            std::os::unix::fs::symlink(name, &link)
                .with_context(|| format!("linking {link} to {name}"))?;
        }
    }
    Ok(())
}

/// Controllers the kernel has and enables (/proc/cgroups).
fn enabled_controllers() -> Result<HashSet<String>> {
    let text = fs::read_to_string("/proc/cgroups").context("reading /proc/cgroups")?;
    Ok(parse_proc_cgroups(&text))
}

fn parse_proc_cgroups(text: &str) -> HashSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] == "1").then(|| f[0].to_string())
        })
        .collect()
}

/// Mount points of this mount namespace.
fn mount_points() -> Result<HashSet<String>> {
    Ok(mountinfo::mount_points()?
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::parse_proc_cgroups;

    #[test]
    fn proc_cgroups_lists_enabled_controllers() {
        let text = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t1\t1\nmemory\t0\t1\t0\npids\t8\t1\t1\n";
        let got = parse_proc_cgroups(text);
        assert!(got.contains("cpuset") && got.contains("pids"));
        assert!(!got.contains("memory"));
    }
}
