//! Host provisioning: the Debian packages each step needs, pinned to exact
//! versions in `xtask/host-packages.lock`, installed on demand.
//!
//! Lock file format, one package a line, `#` starts a comment:
//! `<group> <package[:debian-arch]> <version> [<suite>] [<snapshot>]`
//! Groups name the step that needs the package (cross, kernel, image, vm, ...).
//! A suite (e.g. `bookworm-backports`) makes apt resolve that package's
//! dependencies from the suite too. A snapshot (`YYYYMMDDTHHMMSSZ`, the
//! rootfs locks' rule, see fetch/mod.rs) is a time at which the Debian
//! snapshot archive has that version, written by `setup --relock`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::paths::repo_root;
use crate::{cmd, ui};

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
    /// A snapshot.debian.org time that has this version.
    pub snapshot: Option<String>,
}

impl PinnedPackage {
    fn spec(&self) -> String {
        format!("{}={}", self.package, self.version)
    }

    /// The guest arch a package serves, when it serves one: `musl-dev:arm64`,
    /// `gcc-aarch64-linux-gnu`, `libc6-dev-arm64-cross`, `qemu-system-arm`.
    /// Host-wide packages (no arch) are always installed; the others only
    /// for the arches a step asks for, so an x86_64 build installs no cross
    /// tool chain.
    pub fn arch(&self) -> Option<Arch> {
        let (name, deb_arch) = match self.package.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (self.package.as_str(), None),
        };
        let by_name = match name {
            "qemu-system-x86" => Some(Arch::X86_64),
            "qemu-system-arm" => Some(Arch::Aarch64),
            "qemu-system-ppc" => Some(Arch::Ppc64le),
            "qemu-system-misc" => Some(Arch::S390x),
            _ => None,
        };
        let host = Arch::host().ok();
        by_name
            .or_else(|| deb_arch.and_then(|a| a.parse().ok()))
            .or_else(|| {
                Arch::ALL.into_iter().find(|a| {
                    name.contains(a.gnu_triple())
                        || name.contains(&format!("-{}-cross", a.debian()))
                })
            })
            .filter(|a| by_name.is_some() || Some(*a) != host)
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
        let is_time = |f: &str| crate::fetch::check_snapshot_timestamp(f).is_ok();
        // A fourth field is the snapshot when it has a snapshot's shape.
        let (suite, snapshot) = match fields[..] {
            [_, _, _] => (None, None),
            [_, _, _, t] if is_time(t) => (None, Some(t)),
            [_, _, _, s] => (Some(s), None),
            [_, _, _, s, t] if is_time(t) => (Some(s), Some(t)),
            _ => bail!(
                "host-packages.lock line {}: expected `<group> <package> <version> [<suite>] [<snapshot YYYYMMDDTHHMMSSZ>]`, got {line:?}",
                n + 1
            ),
        };
        out.push(PinnedPackage {
            group: fields[0].to_string(),
            package: fields[1].to_string(),
            version: fields[2].to_string(),
            suite: suite.map(str::to_string),
            snapshot: snapshot.map(str::to_string),
        });
    }
    Ok(out)
}

pub fn read_lock() -> Result<Vec<PinnedPackage>> {
    let path = lock_path();
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_lock(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The packages dpkg has installed, with their versions: one `dpkg-query`
/// for every pin, and the seam tests give their own listing through.
#[derive(Clone, Debug, Default)]
pub struct Installed {
    /// dpkg's native architecture (`dpkg --print-architecture`).
    native: String,
    /// (name, Debian arch or `all`) -> version, of installed packages only.
    versions: std::collections::BTreeMap<(String, String), String>,
}

/// What `Installed::parse` reads: one line per package.
const DPKG_QUERY_FORMAT: &str = "${Package} ${Architecture} ${db:Status-Abbrev} ${Version}\n";

impl Installed {
    /// Ask dpkg (an empty listing when dpkg cannot be run: nothing installed).
    pub fn query() -> Installed {
        let listing = Command::new("dpkg-query")
            .args(["-W", &format!("-f={DPKG_QUERY_FORMAT}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        Installed::parse(&native_arch().unwrap_or_default(), &listing)
    }

    /// `listing` is `dpkg-query -W -f='DPKG_QUERY_FORMAT'`'s output; only
    /// packages in state `ii` (installed) count.
    pub fn parse(native: &str, listing: &str) -> Installed {
        let versions = listing
            .lines()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                let (name, arch, status, version) = (f.next()?, f.next()?, f.next()?, f.next()?);
                status
                    .starts_with("ii")
                    .then(|| ((name.to_string(), arch.to_string()), version.to_string()))
            })
            .collect();
        Installed {
            native: native.to_string(),
            versions,
        }
    }

    /// The installed version of `package`. A name without `:arch` means the
    /// native (or `all`) package: with foreign architectures enabled, dpkg
    /// lists one entry per installed architecture.
    pub fn version(&self, package: &str) -> Option<&str> {
        let get = |name: &str, arch: &str| {
            self.versions
                .get(&(name.to_string(), arch.to_string()))
                .map(String::as_str)
        };
        match package.split_once(':') {
            Some((name, arch)) => get(name, arch),
            None => get(package, &self.native).or_else(|| get(package, "all")),
        }
    }
}

fn native_arch() -> Option<String> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The pins of `groups` for `arches` (see [`PinnedPackage::arch`]) that are
/// not installed at their version, with the version installed (if any).
pub fn off_pin(
    pins: &[PinnedPackage],
    installed: &Installed,
    groups: &[&str],
    arches: &[Arch],
) -> Vec<(PinnedPackage, Option<String>)> {
    pins.iter()
        .filter(|p| groups.contains(&p.group.as_str()))
        .filter(|p| p.arch().is_none_or(|a| arches.contains(&a)))
        .filter_map(|p| {
            let have = installed.version(&p.package);
            (have != Some(p.version.as_str())).then(|| (p.clone(), have.map(str::to_string)))
        })
        .collect()
}

/// Packages of `groups` for `arches` that are missing or at another version
/// than the lock's.
pub fn missing(groups: &[&str], arches: &[Arch]) -> Result<Vec<PinnedPackage>> {
    Ok(off_pin(&read_lock()?, &Installed::query(), groups, arches)
        .into_iter()
        .map(|(p, _)| p)
        .collect())
}

/// What bringing the host to the pins changes, before anything changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The apt source file to write (bookworm-backports), if missing.
    pub backports_source: Option<&'static str>,
    /// `dpkg --add-architecture` for these Debian arches.
    pub foreign_arches: Vec<String>,
    /// Packages to install or move to their pin: (package, installed, pinned).
    pub packages: Vec<(PinnedPackage, Option<String>)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.backports_source.is_none()
            && self.foreign_arches.is_empty()
            && self.packages.is_empty()
    }

    /// Human-readable: one line per change.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(f) = self.backports_source {
            out.push_str(&format!(
                "  write apt source {f} (suite bookworm-backports)\n"
            ));
        }
        for a in &self.foreign_arches {
            out.push_str(&format!("  dpkg --add-architecture {a}\n"));
        }
        if !out.is_empty() || !self.packages.is_empty() {
            out.push_str("  apt-get update\n");
        }
        for (p, have) in &self.packages {
            let verb = match have {
                Some(v) => format!("change {v} ->"),
                None => "install".to_string(),
            };
            let suite = p
                .suite
                .as_deref()
                .map(|s| format!(" (from {s})"))
                .unwrap_or_default();
            out.push_str(&format!("  {verb} {} {}{suite}\n", p.package, p.version));
        }
        out
    }
}

/// The changes `ensure_host_packages(groups, arches)` would make.
pub fn plan(groups: &[&str], arches: &[Arch]) -> Result<Plan> {
    let packages = off_pin(&read_lock()?, &Installed::query(), groups, arches);
    if packages.is_empty() {
        return Ok(Plan::default());
    }
    let todo: Vec<PinnedPackage> = packages.iter().map(|(p, _)| p.clone()).collect();
    let backports = todo
        .iter()
        .any(|p| p.suite.as_deref() == Some("bookworm-backports"))
        && !backports_configured();
    let have = foreign_arches()?;
    let foreign_arches = needed_foreign_arches(&todo)
        .into_iter()
        .filter(|a| !have.contains(a))
        .collect();
    Ok(Plan {
        backports_source: backports.then_some(BACKPORTS_SOURCE),
        foreign_arches,
        packages,
    })
}

/// The Debian arches of `name:arch` packages other than the host's.
fn needed_foreign_arches(todo: &[PinnedPackage]) -> BTreeSet<String> {
    let native = native_arch().unwrap_or_default();
    todo.iter()
        .filter_map(|p| p.package.split_once(':').map(|(_, a)| a.to_string()))
        .filter(|a| *a != native)
        .collect()
}

/// Make sure every package of `groups` (for `arches`) is installed at its
/// pinned version. Says what it changes on the host first; installs as
/// root, otherwise says what to run.
pub fn ensure_host_packages(groups: &[&str], arches: &[Arch]) -> Result<()> {
    let plan = plan(groups, arches)?;
    if plan.is_empty() {
        return Ok(());
    }
    if !is_root() {
        let specs: Vec<String> = plan.packages.iter().map(|(p, _)| p.spec()).collect();
        bail!(
            "missing host packages for {groups:?}; run `sudo cargo xtask setup` or install: apt-get install {}",
            specs.join(" ")
        );
    }
    ui::info(format!(
        "xtask setup: changing the host for {groups:?}:\n{}",
        plan.render().trim_end()
    ));
    apply(&plan)?;
    let still = missing(groups, arches)?;
    if !still.is_empty() {
        let specs: Vec<String> = still.iter().map(PinnedPackage::spec).collect();
        bail!(
            "after apt-get install, still not at the pinned version: {}",
            specs.join(" ")
        );
    }
    Ok(())
}

/// Carry out a plan: sources, architectures, one `apt-get update`, then
/// the packages (apt's output goes to `target/xtask/setup/apt.log`).
fn apply(plan: &Plan) -> Result<()> {
    if let Some(file) = plan.backports_source {
        fs::write(
            file,
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )
        .with_context(|| format!("writing {file}"))?;
    }
    for a in &plan.foreign_arches {
        cmd::run(
            Command::new("dpkg").args(["--add-architecture", a]),
            &apt_log(),
        )?;
    }
    apt_update()?;
    // Backports packages go in their own transaction so apt resolves their
    // dependencies from the same suite.
    let suites: BTreeSet<Option<String>> =
        plan.packages.iter().map(|(p, _)| p.suite.clone()).collect();
    for suite in suites {
        let batch: Vec<String> = plan
            .packages
            .iter()
            .filter(|(p, _)| p.suite == suite)
            .map(|(p, _)| p.spec())
            .collect();
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args([
            "-o",
            "DPkg::Lock::Timeout=900",
            "install",
            "-y",
            "--no-install-recommends",
        ]);
        if let Some(s) = &suite {
            c.args(["-t", s]);
        }
        c.args(&batch);
        let phase = ui::Phase::with_log(
            format!("apt-get install ({} packages)", batch.len()),
            &apt_log(),
        );
        cmd::run(&mut c, &apt_log())?;
        phase.done("");
    }
    Ok(())
}

/// Where apt's and dpkg's output goes.
fn apt_log() -> PathBuf {
    crate::paths::host_log("setup", "apt")
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

fn foreign_arches() -> Result<BTreeSet<String>> {
    let out = cmd::read(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    Ok(out.lines().map(|l| l.trim().to_string()).collect())
}

/// `dpkg --add-architecture` for the three foreign guest arches (idempotent);
/// `setup --relock` needs all of them to see every pin.
pub fn ensure_foreign_arches() -> Result<()> {
    let have = foreign_arches()?;
    for a in FOREIGN_ARCHES {
        if !have.contains(a) {
            cmd::run(
                Command::new("dpkg").args(["--add-architecture", a]),
                &apt_log(),
            )?;
        }
    }
    Ok(())
}

/// `apt-get update`, tolerating exit 100: a mirror's foreign-arch security
/// index can be inconsistent (seen for ppc64el) while everything we need is
/// fine. The errors it ignores are shown as a warning, not hidden.
pub fn apt_update() -> Result<()> {
    let log = apt_log();
    let start = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let phase = ui::Phase::with_log("apt-get update", &log);
    let mut c = Command::new("apt-get");
    c.args(["-o", "DPkg::Lock::Timeout=900", "update"]);
    cmd::run_accepting(&mut c, &log, &[0, 100])?;
    phase.done("");
    let text = fs::read(&log).unwrap_or_default();
    let new = String::from_utf8_lossy(&text[(start as usize).min(text.len())..]).to_string();
    let errors: Vec<&str> = new.lines().filter(|l| l.starts_with("E:")).collect();
    if !errors.is_empty() {
        ui::warn(format!(
            "apt-get update reported {} index error(s), ignored because the pinned packages \
             do not come from those indexes (a later install says so if they do):\n  {}",
            errors.len(),
            errors.join("\n  ")
        ));
    }
    Ok(())
}

/// Fetch one Debian package (`name:arch=version`) with `apt-get download` and
/// unpack its files into `dest` with `dpkg -x`, without installing it: foreign
/// packages such as `libstd-rust-web-dev:arm64` cannot be co-installed here.
pub fn download_and_extract(spec: &str, dest: &Path) -> Result<()> {
    let debs = dest.join(".debs");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    cmd::run(
        Command::new("apt-get")
            .current_dir(&debs)
            .args(["download", spec]),
        &apt_log(),
    )
    .with_context(|| {
        format!("apt-get download {spec} (is the package list current? try `apt-get update`)")
    })?;
    for entry in fs::read_dir(&debs).with_context(|| format!("listing {}", debs.display()))? {
        let deb = entry?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            cmd::run(
                Command::new("dpkg").arg("-x").arg(&deb).arg(dest),
                &apt_log(),
            )
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

    /// The seam doctor and setup read dpkg through: only installed (`ii`)
    /// packages count, and a bare name is the native or `all` package.
    #[test]
    fn installed_versions_come_from_dpkg_query() {
        let listing = "qemu-system-x86 amd64 ii  1:7.2+dfsg-7+deb12u18\n\
                       musl-dev amd64 ii  1.2.3-1\n\
                       musl-dev arm64 ii  1.2.3-1\n\
                       e2fsprogs amd64 rc  1.47.0-2\n\
                       ca-certificates all ii  20230311\n\
                       garbage\n";
        let inst = Installed::parse("amd64", listing);
        assert_eq!(
            inst.version("qemu-system-x86"),
            Some("1:7.2+dfsg-7+deb12u18")
        );
        assert_eq!(inst.version("musl-dev:arm64"), Some("1.2.3-1"));
        assert_eq!(inst.version("musl-dev:s390x"), None);
        assert_eq!(
            inst.version("e2fsprogs"),
            None,
            "removed, config files only"
        );
        assert_eq!(inst.version("ca-certificates"), Some("20230311"));

        let pins = parse_lock(
            "vm qemu-system-x86 1:10.0.2+ds-2 bookworm-backports\n\
             image e2fsprogs 1.47.0-2+b2\n\
             cross musl-dev 1.2.3-1\n\
             cross musl-dev:s390x 1.2.3-1\n",
        )
        .unwrap();
        let off = off_pin(&pins, &inst, &["vm", "image", "cross"], &[Arch::X86_64]);
        let names: Vec<(&str, Option<&str>)> = off
            .iter()
            .map(|(p, have)| (p.package.as_str(), have.as_deref()))
            .collect();
        // musl-dev is at its pin; musl-dev:s390x is not asked for.
        assert_eq!(
            names,
            [
                ("qemu-system-x86", Some("1:7.2+dfsg-7+deb12u18")),
                ("e2fsprogs", None)
            ]
        );
    }

    #[test]
    fn rejects_malformed_lock_line() {
        let err = parse_lock("cross rustc-web\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = parse_lock("vm q 1 bookworm-backports 2026-11-30\n").unwrap_err();
        assert!(err.to_string().contains("snapshot"), "{err}");
    }

    #[test]
    fn a_pin_may_carry_its_snapshot_time() {
        let pins = parse_lock(
            "cross musl-dev 1.2.3-1 20261130T082141Z\n\
             vm qemu-system-x86 1:10.0.2 bookworm-backports 20261130T082141Z\n",
        )
        .unwrap();
        assert_eq!(pins[0].suite, None);
        assert_eq!(pins[0].snapshot.as_deref(), Some("20261130T082141Z"));
        assert_eq!(pins[1].suite.as_deref(), Some("bookworm-backports"));
        assert_eq!(pins[1].snapshot.as_deref(), Some("20261130T082141Z"));
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Only these groups (as in xtask/host-packages.lock: cross, kernel,
    /// image, vm, test); all groups when none is given.
    #[arg(long = "group", value_delimiter = ',')]
    groups: Vec<String>,
    /// Only the arch-specific packages (cross tool chains, qemu-system-*) of
    /// these arches; all four when none is given.
    #[arg(long, value_enum, value_delimiter = ',')]
    arch: Vec<Arch>,
    /// Print what would change on the host and change nothing.
    #[arg(long, conflicts_with_all = ["relock", "stamp"])]
    dry_run: bool,
    /// Instead of installing: move every pin in xtask/host-packages.lock to
    /// the newest version apt offers from its suite.
    #[arg(long)]
    relock: bool,
    /// Instead of installing: add the snapshot.debian.org time that has its
    /// version to every pin that lacks one (from apt's lists as they are;
    /// no pin moves).
    #[arg(long, conflicts_with = "relock")]
    stamp: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.relock || args.stamp {
        return relock::relock(args.relock);
    }
    let known: BTreeSet<String> = read_lock()?.into_iter().map(|p| p.group).collect();
    let groups: Vec<String> = if args.groups.is_empty() {
        known.iter().cloned().collect()
    } else {
        check_groups(&args.groups, &known)?;
        args.groups
    };
    let arches = if args.arch.is_empty() {
        Arch::ALL.to_vec()
    } else {
        args.arch
    };
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    let plan = plan(&refs, &arches)?;
    if plan.is_empty() {
        ui::info(format!(
            "xtask setup: host packages for {refs:?} are at their pinned versions; nothing to change"
        ));
        return Ok(());
    }
    if args.dry_run {
        println!(
            "xtask setup --dry-run: would change the host for {refs:?}:\n{}",
            plan.render().trim_end()
        );
        return Ok(());
    }
    ensure_host_packages(&refs, &arches)?;
    ui::info(format!(
        "xtask setup: host packages for {refs:?} are at their pinned versions"
    ));
    Ok(())
}

/// Every `--group` must be a group of the lock.
fn check_groups(given: &[String], known: &BTreeSet<String>) -> Result<()> {
    for g in given {
        if !known.contains(g) {
            let valid: Vec<&str> = known.iter().map(String::as_str).collect();
            crate::usage!(
                "unknown --group {g:?}: the groups of {} are {}; run `cargo xtask setup` for all",
                lock_path().display(),
                valid.join(", ")
            );
        }
    }
    Ok(())
}
