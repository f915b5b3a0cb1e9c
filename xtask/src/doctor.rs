//! `cargo xtask doctor`: every host requirement of every step, per arch,
//! as a table of ok / missing / how to fix (or `--json`). Exits 1 when the
//! main job (`cargo xtask vm test --arch x86_64`) cannot run here: something
//! it needs is missing and the xtask cannot provide it by itself (it installs
//! pinned packages on demand only as root, and never installs a C linker,
//! git or apt).

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use serde::Serialize;

use crate::agent::toolchain::{
    cross_gcc, debian_rustc_version, musl_gcc, rust_src_dir, rustup_has_target, which, Libc,
    DEBIAN_RUSTC,
};
use crate::arch::{Arch, ArchSelection};
use crate::{cmd, setup, ui};

#[derive(clap::Args)]
pub struct Args {
    /// The arches whose requirements to check.
    #[arg(long, value_enum, default_value = "all")]
    arch: ArchSelection,
    /// Print the checks as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Space the main job needs for target/ and the cache together (measured
/// here: 8.2 GiB of target/ after every step has run, plus the cache).
const MAIN_JOB_GIB: u64 = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    /// Missing, and the xtask installs it on demand (as root).
    Auto,
    Missing,
    /// Not a requirement: how this host behaves (e.g. KVM unusable: TCG).
    Info,
}

#[derive(Debug, Serialize)]
struct Check {
    /// The step that needs it (`all` for every step).
    step: &'static str,
    /// The arch it is for, when it is arch-specific.
    arch: Option<&'static str>,
    what: String,
    status: Status,
    /// What was found, or why it is missing.
    detail: String,
    /// How to fix it (empty when ok).
    fix: String,
    /// A requirement of `cargo xtask vm test --arch x86_64`.
    main_job: bool,
}

pub fn run(args: Args) -> Result<()> {
    let arches = args.arch.arches();
    let mut checks = host_checks();
    checks.extend(package_checks(&arches)?);
    for &arch in &arches {
        checks.extend(agent_checks(arch)?);
        checks.extend(vm_checks(arch));
    }
    let blocking: Vec<&Check> = checks
        .iter()
        .filter(|c| c.main_job && c.status == Status::Missing)
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print_table(&checks);
    }
    if !blocking.is_empty() {
        let names: Vec<&str> = blocking.iter().map(|c| c.what.as_str()).collect();
        anyhow::bail!(
            "the main job (cargo xtask vm test --arch x86_64) cannot run here: missing {}",
            names.join(", ")
        );
    }
    ui::info("doctor: the main job's requirements are met (or installed on demand)");
    Ok(())
}

fn check(step: &'static str, arch: Option<Arch>, what: impl Into<String>) -> Check {
    Check {
        step,
        arch: arch.map(Arch::name),
        what: what.into(),
        status: Status::Ok,
        detail: String::new(),
        fix: String::new(),
        main_job: false,
    }
}

impl Check {
    fn main(mut self) -> Check {
        self.main_job = true;
        self
    }

    /// `ok` with `detail`, or `missing` with `why` and `fix`.
    fn result(mut self, ok: bool, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        self.detail = detail.into();
        if !ok {
            self.status = Status::Missing;
            self.fix = fix.into();
        }
        self
    }

    fn status(mut self, status: Status) -> Check {
        self.status = status;
        self
    }
}

/// What every step needs from the host, and what the host can do.
fn host_checks() -> Vec<Check> {
    let mut v = Vec::new();
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let bookworm = os.lines().any(|l| l.trim() == "VERSION_CODENAME=bookworm");
    v.push(
        check("all", None, "Debian bookworm")
            .main()
            .result(
                bookworm,
                os_name(&os),
                "the package pins (xtask/host-packages.lock) are bookworm's: use a bookworm host or container",
            ),
    );
    let root = setup::is_root();
    v.push(
        check("setup", None, "root (to install pinned packages)").result(
            root,
            if root { "euid 0" } else { "not root" },
            "run as root, or install the packages `cargo xtask setup --dry-run` lists yourself",
        ),
    );
    for (tool, what, fix) in [
        ("cc", "C linker (cc)", "apt-get install gcc"),
        (
            "git",
            "git (the image's SOURCE_DATE_EPOCH)",
            "apt-get install git",
        ),
        ("apt-get", "apt-get", "a Debian host"),
        ("dpkg", "dpkg", "a Debian host"),
    ] {
        let found = which(tool);
        v.push(
            check("all", None, what).main().result(
                found.is_some(),
                found
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "not in PATH".into()),
                fix,
            ),
        );
    }
    v.push(free_disk());
    v.push(user_namespaces());
    let cgroup2 = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
    v.push(
        check("test", None, "cgroup v2 (the agent's cgroup tests)")
            .result(
                cgroup2,
                if cgroup2 { "/sys/fs/cgroup is cgroup2" } else { "no cgroup2 at /sys/fs/cgroup" },
                "the v2 tests skip with their reason; boot the host with systemd.unified_cgroup_hierarchy=1",
            )
            .status(if cgroup2 { Status::Ok } else { Status::Info }),
    );
    v
}

fn os_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_else(|| "no /etc/os-release".into())
}

fn free_disk() -> Check {
    let dir = crate::paths::target_dir();
    let probe = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    // What target/ and the cache already hold counts towards the need.
    let used = dir_bytes(&dir) + dir_bytes(&crate::cache::cache_root());
    let need = (MAIN_JOB_GIB << 30).saturating_sub(used);
    let free = free_bytes(&probe);
    let ok = free.is_some_and(|f| f >= need);
    check(
        "all",
        None,
        format!("disk: {MAIN_JOB_GIB} GiB for target/ and the cache"),
    )
    .main()
    .result(
        ok,
        match free {
            Some(f) => format!(
                "{} GiB free at {}, {} GiB already in target/ and the cache",
                f >> 30,
                probe.display(),
                used >> 30
            ),
            None => format!("cannot statvfs {}", probe.display()),
        },
        "free disk space, or point CARGO_TARGET_DIR and KATA_IMAGE_CACHE at a larger disk",
    )
}

/// Bytes of the regular files under `dir` (0 when it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only into the struct we pass; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

fn user_namespaces() -> Check {
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let works = which("unshare").is_some()
        && cmd::succeeds(Command::new("unshare").args(["--user", "--pid", "--fork", "true"]));
    check(
        "test",
        None,
        "user and PID namespaces (the agent's container tests)",
    )
    .result(
        works,
        format!(
            "unshare --user --pid {}; max_user_namespaces {}",
            if works { "works" } else { "fails" },
            max.map(|m| m.to_string())
                .unwrap_or_else(|| "unknown".into())
        ),
        "allow namespaces (sysctl user.max_user_namespaces=15000; in a container: --privileged)",
    )
}

/// The pinned packages of each group, for these arches: a row per group,
/// and one per host tool that is not at its pin (installed vs pinned).
fn package_checks(arches: &[Arch]) -> Result<Vec<Check>> {
    Ok(pin_checks(
        &setup::read_lock()?,
        &setup::Installed::query(),
        arches,
        setup::is_root(),
    ))
}

/// [`package_checks`] on a given lock and dpkg listing (the test seam).
fn pin_checks(
    lock: &[setup::PinnedPackage],
    installed: &setup::Installed,
    arches: &[Arch],
    root: bool,
) -> Vec<Check> {
    let mut groups: Vec<&str> = lock.iter().map(|p| p.group.as_str()).collect();
    groups.sort();
    groups.dedup();
    let mut v = Vec::new();
    for g in groups {
        let step = step_of(g);
        let off = setup::off_pin(lock, installed, &[g], arches);
        // The main job's groups, for its arch: blocking only if x86_64's part is off.
        let main_group = ["cross", "kernel", "image", "vm"].contains(&g);
        let fix = format!(
            "cargo xtask setup --group {g} --arch {}",
            arches
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(",")
        );
        let asked = lock
            .iter()
            .filter(|p| p.group == g && p.arch().is_none_or(|a| arches.contains(&a)))
            .count();
        let detail = if off.is_empty() {
            format!("{asked} at their pinned versions")
        } else {
            format!("{} of {asked} not at the pin (rows below)", off.len())
        };
        let group_main = main_group
            && (off.is_empty()
                || off
                    .iter()
                    .any(|(p, _)| p.arch().is_none_or(|a| a == Arch::X86_64)));
        v.push(pin_row(
            check(step, None, format!("pinned packages, group {g}")),
            off.is_empty(),
            detail,
            &fix,
            group_main,
            root,
        ));
        for (p, have) in &off {
            let detail = match have {
                Some(h) => format!("installed {h}, pinned {}", p.version),
                None => format!("not installed, pinned {}", p.version),
            };
            let main = main_group && p.arch().is_none_or(|a| a == Arch::X86_64);
            v.push(pin_row(
                check(step, p.arch(), format!("host tool {}", p.package)),
                false,
                detail,
                &fix,
                main,
                root,
            ));
        }
    }
    v
}

/// A pin row: as root the step installs the pin itself, so not blocking.
fn pin_row(c: Check, ok: bool, detail: String, fix: &str, main: bool, root: bool) -> Check {
    let mut c = c.result(ok, detail, fix);
    if main {
        c = c.main();
    }
    if c.status == Status::Missing && root {
        c = c.status(Status::Auto);
    }
    c
}

/// The step a package group serves.
fn step_of(group: &str) -> &'static str {
    match group {
        "cross" => "agent",
        "kernel" => "kernel",
        "image" => "image",
        "vm" => "vm",
        "test" => "test",
        _ => "setup",
    }
}

/// The agent's build routes for `arch`: a rustup target, or Debian's.
fn agent_checks(arch: Arch) -> Result<Vec<Check>> {
    let rustc = debian_rustc_version();
    let root = setup::is_root();
    let mut v = Vec::new();
    for libc in [Libc::Musl, Libc::Gnu] {
        let target = arch.rust_target(libc.name());
        let rustup = rustup_has_target(&target);
        let needs = debian_needs(arch, libc, rustc.is_some());
        let debian_ok = needs.iter().all(|(_, ok, _)| *ok);
        let route = match (rustup, debian_ok) {
            (true, _) => "rustup target",
            (false, true) if libc == Libc::Musl => "Debian rustc-web + build-std musl",
            (false, true) => "Debian rustc-web + Debian's gnu std",
            (false, false) => "none yet",
        };
        let main = arch == Arch::X86_64 && libc == Libc::Musl;
        let mut c = check(
            "agent",
            Some(arch),
            format!("agent build route ({})", libc.name()),
        )
        .result(
            rustup || debian_ok,
            format!("{target}: {route}"),
            format!(
                "cargo xtask setup --group cross --arch {arch} (or rustup target add {target})"
            ),
        );
        if c.status == Status::Missing {
            let absent: Vec<&str> = needs
                .iter()
                .filter(|(_, ok, _)| !ok)
                .map(|(what, _, _)| what.as_str())
                .collect();
            c.detail = format!("{target}: missing {}", absent.join(", "));
            if root {
                c = c.status(Status::Auto);
            }
        }
        if main {
            c = c.main();
        }
        v.push(c);
    }
    let qemu_user = which(arch.qemu_user());
    let mut c = check("agent --smoke", Some(arch), arch.qemu_user()).result(
        qemu_user.is_some(),
        qemu_user
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "not in PATH".into()),
        "cargo xtask setup --group cross (qemu-user-static)",
    );
    if c.status == Status::Missing && root {
        c = c.status(Status::Auto);
    }
    v.push(c);
    Ok(v)
}

/// What the Debian routes need for `arch`/`libc`: (what, present, package).
fn debian_needs(arch: Arch, libc: Libc, have_rustc: bool) -> Vec<(String, bool, String)> {
    let gcc = cross_gcc(arch);
    let gcc_package = if Arch::host().ok() == Some(arch) {
        "gcc".to_string()
    } else {
        format!("gcc-{}", arch.gnu_triple())
    };
    let mut needs = vec![
        (
            format!("rustc-web ({DEBIAN_RUSTC})"),
            have_rustc,
            "rustc-web".to_string(),
        ),
        (gcc.clone(), which(&gcc).is_some(), gcc_package),
    ];
    match libc {
        Libc::Musl => {
            let src = rust_src_dir(DEBIAN_RUSTC).map(|d| d.join("library"));
            needs.push((
                "std sources (build-std)".into(),
                src.map(|d| d.is_dir()).unwrap_or(false),
                "rust-web-src".into(),
            ));
            needs.push((
                musl_gcc(arch),
                which(&musl_gcc(arch)).is_some(),
                format!("musl-dev:{}", arch.debian()),
            ));
        }
        Libc::Gnu if Arch::host().ok() != Some(arch) => needs.push((
            format!("libc6-dev for {arch}"),
            Path::new("/usr")
                .join(arch.gnu_triple())
                .join("lib/libc.a")
                .is_file(),
            format!("libc6-dev-{}-cross", arch.debian()),
        )),
        Libc::Gnu => {}
    }
    needs
}

/// QEMU for `arch`, and for the host arch whether KVM works.
fn vm_checks(arch: Arch) -> Vec<Check> {
    let root = setup::is_root();
    let mut v = Vec::new();
    let qemu = which(arch.qemu_system());
    let version = qemu.as_ref().and_then(|_| {
        crate::agent::toolchain::tool_output(arch.qemu_system(), &["--version"]).ok()
    });
    // QEMU's first line is its version; the rest is copyright.
    let version = version.and_then(|v| v.lines().next().map(str::to_string));
    let mut c = check("vm", Some(arch), arch.qemu_system()).result(
        qemu.is_some(),
        version.unwrap_or_else(|| "not in PATH".into()),
        format!("cargo xtask setup --group vm --arch {arch}"),
    );
    if c.status == Status::Missing && root {
        c = c.status(Status::Auto);
    }
    if arch == Arch::X86_64 {
        c = c.main();
    }
    v.push(c);
    if Arch::host().ok() == Some(arch) {
        v.push(kvm_check(arch, qemu.is_some()));
    }
    v
}

/// /dev/kvm: usable or not, and why (never blocking: TCG is the fallback).
fn kvm_check(arch: Arch, have_qemu: bool) -> Check {
    let dev = Path::new("/dev/kvm");
    let (usable, why) = if !dev.exists() {
        (
            false,
            "no /dev/kvm (no KVM module, or not passed into this container)".to_string(),
        )
    } else if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .is_err()
    {
        (
            false,
            "/dev/kvm exists but cannot be opened read-write (add the user to group kvm)".into(),
        )
    } else if !have_qemu {
        (
            false,
            format!(
                "/dev/kvm opens; {} is missing to probe it",
                arch.qemu_system()
            ),
        )
    } else {
        match crate::vm::accel::probe_kvm(arch) {
            Ok(()) => (true, "a probe VM ran under KVM".into()),
            Err(e) => (
                false,
                format!("/dev/kvm opens but a KVM guest fails: {e:#}"),
            ),
        }
    };
    let mut c = check("vm", Some(arch), "KVM (/dev/kvm)").result(
        usable,
        why,
        "none needed: VMs run under TCG (about 4x slower deadlines)",
    );
    if !usable {
        c = c.status(Status::Info);
    }
    c
}

fn print_table(checks: &[Check]) {
    println!("| step | arch | requirement | status | found | how to fix |");
    println!("|---|---|---|---|---|---|");
    for c in checks {
        let status = match c.status {
            Status::Ok => ui::styled("ok", 32),
            Status::Auto => ui::styled("missing (installed on demand)", 33),
            Status::Missing if c.main_job => ui::styled("MISSING (main job)", 31),
            Status::Missing => ui::styled("MISSING", 31),
            Status::Info => ui::styled("info", 36),
        };
        println!(
            "| {} | {} | {} | {status} | {} | {} |",
            c.step,
            c.arch.unwrap_or("-"),
            c.what,
            c.detail.replace('|', "\\|"),
            c.fix
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_main_job_requirement_is_blocking_an_info_is_not() {
        let c =
            check("all", None, "git")
                .main()
                .result(false, "not in PATH", "apt-get install git");
        assert_eq!(c.status, Status::Missing);
        assert_eq!(c.fix, "apt-get install git");
        let kvm = check("vm", None, "KVM")
            .result(false, "no /dev/kvm", "none")
            .status(Status::Info);
        assert_eq!(kvm.status, Status::Info);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["status"], "missing");
        assert_eq!(json["main_job"], true);
    }

    /// Each host tool off its pin gets its own row with both versions, read
    /// through a fake dpkg listing (the host is not changed).
    #[test]
    fn a_host_tool_off_its_pin_is_named_with_both_versions() {
        let lock = setup::parse_lock(
            "vm qemu-system-x86 1:10.0.2+ds-2 bookworm-backports\n\
             image e2fsprogs 1.47.0-2+b2\n\
             image erofs-utils 1.5-1\n\
             cross gcc-s390x-linux-gnu 4:12.2.0-3\n",
        )
        .unwrap();
        let installed = setup::Installed::parse(
            "amd64",
            "qemu-system-x86 amd64 ii  1:7.2+dfsg-7+deb12u18\n\
             e2fsprogs amd64 ii  1.47.0-2+b2\n",
        );
        let checks = pin_checks(&lock, &installed, &[Arch::X86_64, Arch::S390x], false);
        let row = |what: &str| {
            checks
                .iter()
                .find(|c| c.what == what)
                .unwrap_or_else(|| panic!("no row {what}: {checks:#?}"))
        };
        let qemu = row("host tool qemu-system-x86");
        assert_eq!(qemu.status, Status::Missing);
        assert_eq!(
            qemu.detail,
            "installed 1:7.2+dfsg-7+deb12u18, pinned 1:10.0.2+ds-2"
        );
        assert!(qemu.main_job && qemu.fix.contains("--group vm"), "{qemu:?}");
        let erofs = row("host tool erofs-utils");
        assert_eq!(erofs.detail, "not installed, pinned 1.5-1");
        // A cross tool chain for s390x: not the main job's.
        let gcc = row("host tool gcc-s390x-linux-gnu");
        assert_eq!(gcc.arch, Some("s390x"));
        assert!(!gcc.main_job);
        assert!(checks.iter().all(|c| c.what != "host tool e2fsprogs"));
        assert_eq!(
            row("pinned packages, group image").detail,
            "1 of 2 not at the pin (rows below)"
        );
        assert_eq!(row("pinned packages, group vm").status, Status::Missing);
        // As root the step moves them to the pin itself.
        let as_root = pin_checks(&lock, &installed, &[Arch::X86_64], true);
        assert!(as_root
            .iter()
            .filter(|c| c.what.starts_with("host tool"))
            .all(|c| c.status == Status::Auto));
    }

    #[test]
    fn os_name_reads_pretty_name() {
        assert_eq!(
            os_name("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_name(""), "no /etc/os-release");
    }
}
