//! Host provisioning: the Debian packages each step needs, pinned to exact
//! versions in `xtask/host-packages.lock`, installed on demand.
//!
//! Lock file format, one package a line, `#` starts a comment:
//! `<group> <package[:debian-arch]> <version> [<suite>]`
//! Groups name the step that needs the package (cross, kernel, image, vm, ...).
//! A suite (e.g. `bookworm-backports`) makes apt resolve that package's
//! dependencies from the suite too.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::paths::repo_root;

mod relock;

const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/kata-image-backports.sources";
const FOREIGN_ARCHES: [&str; 3] = ["arm64", "ppc64el", "s390x"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedPackage {
    pub group: String,
    /// `name` or `name:arch`.
    pub package: String,
    pub version: String,
    pub suite: Option<String>,
}

impl PinnedPackage {
    fn spec(&self) -> String {
        format!("{}={}", self.package, self.version)
    }
}

pub fn lock_path() -> std::path::PathBuf {
    repo_root().join("xtask").join("host-packages.lock")
}

pub fn parse_lock(text: &str) -> Result<Vec<PinnedPackage>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&fields.len()) {
            bail!(
                "host-packages.lock line {}: expected `<group> <package> <version> [<suite>]`, got {line:?}",
                n + 1
            );
        }
        out.push(PinnedPackage {
            group: fields[0].to_string(),
            package: fields[1].to_string(),
            version: fields[2].to_string(),
            suite: fields.get(3).map(|s| s.to_string()),
        });
    }
    Ok(out)
}

pub fn read_lock() -> Result<Vec<PinnedPackage>> {
    let path = lock_path();
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_lock(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The installed version of a package, if any (`dpkg-query`). A name without
/// `:arch` means the native (or `all`) package: with foreign architectures
/// enabled, dpkg lists one entry per installed architecture.
pub fn installed_version(package: &str) -> Option<String> {
    let (name, want_arch) = match package.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (package, None),
    };
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f=${Architecture} ${db:Status-Abbrev} ${Version}\n",
            name,
        ])
        .output()
        .ok()?;
    let native = native_arch()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (arch, status, version) = (fields.next()?, fields.next()?, fields.next()?);
            let arch_ok = match want_arch {
                Some(a) => arch == a,
                None => arch == native || arch == "all",
            };
            (arch_ok && status.starts_with("ii")).then(|| version.to_string())
        })
}

fn native_arch() -> Option<String> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Packages of `groups` that are missing or at another version than the lock's.
pub fn missing(groups: &[&str]) -> Result<Vec<PinnedPackage>> {
    Ok(read_lock()?
        .into_iter()
        .filter(|p| groups.contains(&p.group.as_str()))
        .filter(|p| installed_version(&p.package).as_deref() != Some(p.version.as_str()))
        .collect())
}

/// Make sure every package of `groups` is installed at its pinned version.
/// Installs what is missing when running as root; otherwise says what to run.
pub fn ensure_host_packages(groups: &[&str]) -> Result<()> {
    let todo = missing(groups)?;
    if todo.is_empty() {
        return Ok(());
    }
    let specs: Vec<String> = todo.iter().map(PinnedPackage::spec).collect();
    if !is_root() {
        bail!(
            "missing host packages for {groups:?}; run `sudo cargo xtask setup` or install: apt-get install {}",
            specs.join(" ")
        );
    }
    eprintln!("xtask setup: installing {}", specs.join(" "));
    prepare_apt(&todo)?;
    // Backports packages go in their own transaction so apt resolves their
    // dependencies from the same suite.
    let suites: BTreeSet<Option<String>> = todo.iter().map(|p| p.suite.clone()).collect();
    for suite in suites {
        let batch: Vec<String> = todo
            .iter()
            .filter(|p| p.suite == suite)
            .map(PinnedPackage::spec)
            .collect();
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args([
            "-o",
            "DPkg::Lock::Timeout=900",
            "install",
            "-y",
            "--no-install-recommends",
        ]);
        if let Some(s) = &suite {
            cmd.args(["-t", s]);
        }
        cmd.args(&batch);
        run_checked(&mut cmd).with_context(|| format!("apt-get install {}", batch.join(" ")))?;
    }
    let still = missing(groups)?;
    if !still.is_empty() {
        let specs: Vec<String> = still.iter().map(PinnedPackage::spec).collect();
        bail!(
            "after apt-get install, still not at the pinned version: {}",
            specs.join(" ")
        );
    }
    Ok(())
}

/// Add the backports suite and foreign architectures when the packages need
/// them, then refresh the package lists once.
fn prepare_apt(todo: &[PinnedPackage]) -> Result<()> {
    if todo
        .iter()
        .any(|p| p.suite.as_deref() == Some("bookworm-backports"))
        && !backports_configured()
    {
        fs::write(
            BACKPORTS_SOURCE,
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )
        .with_context(|| format!("writing {BACKPORTS_SOURCE}"))?;
    }
    ensure_foreign_arches()?;
    apt_update()
}

fn backports_configured() -> bool {
    let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") else {
        return false;
    };
    dir.flatten().any(|e| {
        fs::read_to_string(e.path())
            .map(|t| t.contains("bookworm-backports"))
            .unwrap_or(false)
    })
}

/// `dpkg --add-architecture` for the three foreign guest arches (idempotent).
pub fn ensure_foreign_arches() -> Result<()> {
    let out = Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .context("running dpkg --print-foreign-architectures")?;
    let have = String::from_utf8_lossy(&out.stdout).to_string();
    for a in FOREIGN_ARCHES {
        if !have.lines().any(|l| l.trim() == a) {
            run_checked(Command::new("dpkg").args(["--add-architecture", a]))?;
        }
    }
    Ok(())
}

/// `apt-get update`, tolerating exit 100: a mirror's foreign-arch security
/// index can be inconsistent (seen for ppc64el) while everything we need is fine.
pub fn apt_update() -> Result<()> {
    let status = Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=900", "update"])
        .status()
        .context("running apt-get update")?;
    match status.code() {
        Some(0) | Some(100) => Ok(()),
        _ => bail!("apt-get update failed: {status}"),
    }
}

/// Fetch one Debian package (`name:arch=version`) with `apt-get download` and
/// unpack its files into `dest` with `dpkg -x`, without installing it: foreign
/// packages such as `libstd-rust-web-dev:arm64` cannot be co-installed here.
pub fn download_and_extract(spec: &str, dest: &Path) -> Result<()> {
    let debs = dest.join(".debs");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    run_checked(
        Command::new("apt-get")
            .current_dir(&debs)
            .args(["download", spec]),
    )
    .with_context(|| {
        format!("apt-get download {spec} (is the package list current? try `apt-get update`)")
    })?;
    for entry in fs::read_dir(&debs).with_context(|| format!("listing {}", debs.display()))? {
        let deb = entry?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            run_checked(Command::new("dpkg").arg("-x").arg(&deb).arg(dest))
                .with_context(|| format!("unpacking {}", deb.display()))?;
        }
    }
    fs::remove_dir_all(&debs).with_context(|| format!("removing {}", debs.display()))?;
    Ok(())
}

/// The pinned version of `package` (exact name, `name` or `name:arch`) in the lock.
pub fn pinned_version(package: &str) -> Result<String> {
    read_lock()?
        .into_iter()
        .find(|p| p.package == package)
        .map(|p| p.version)
        .with_context(|| format!("{package} is not pinned in {}", lock_path().display()))
}

fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lock_lines() {
        let text = "# comment\ncross rustc-web 1.85.0+dfsg3-1~deb12u3\n\n\
                    vm qemu-system-x86 1:10.0.2+ds-2 bookworm-backports # trailing\n";
        let pkgs = parse_lock(text).unwrap();
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].spec(), "rustc-web=1.85.0+dfsg3-1~deb12u3");
        assert_eq!(pkgs[1].suite.as_deref(), Some("bookworm-backports"));
        assert_eq!(pkgs[1].group, "vm");
    }

    #[test]
    fn rejects_malformed_lock_line() {
        let err = parse_lock("cross rustc-web\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Only these groups (cross, kernel, image, vm); all groups when none is given.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Instead of installing: move every pin in xtask/host-packages.lock to
    /// the newest version apt offers from its suite.
    #[arg(long)]
    relock: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.relock {
        return relock::relock();
    }
    let groups: Vec<String> = if args.groups.is_empty() {
        let all: BTreeSet<String> = read_lock()?.into_iter().map(|p| p.group).collect();
        all.into_iter().collect()
    } else {
        args.groups
    };
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    ensure_host_packages(&refs)?;
    eprintln!("xtask setup: host packages for {refs:?} are at their pinned versions");
    Ok(())
}
