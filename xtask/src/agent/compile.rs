//! Run cargo for one arch on its route, reproducibly and incrementally.
//!
//! Reproducible: every absolute path that can reach the binary (workspace,
//! target dir, $CARGO_HOME registry sources, the std sources) is remapped to
//! a fixed name, the linker writes no build-id and SOURCE_DATE_EPOCH is fixed.
//! Incremental: the environment and flags are the same on every run and the
//! cache dirs they name are content-addressed, so cargo finds all units fresh.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::crate_patch;
use super::sysroot::ensure_gnu_sysroot;
use super::toolchain::{
    cargo_home, cross_ar, cross_gcc, musl_gcc, rust_src_dir, Libc, Route, CRATES_IO_SRC,
    DEBIAN_RUSTC,
};
use super::unwind::ensure_libunwind;
use super::Tree;
use crate::arch::Arch;
use crate::{cmd, ui};

pub const PACKAGE: &str = "kata-agent";
pub const BINARY: &str = "kata-agent";

/// The cargo profile of an agent build (`[profile.*]` in Cargo.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// What `image` and `release` ship: fat LTO, one codegen unit.
    Release,
    /// The edit-to-verdict loop: no LTO, parallel incremental codegen.
    Loop,
}

impl Profile {
    /// The profile's name for `cargo --profile` and its output directory.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Loop => "loop",
        }
    }
}

/// The request path's crates, built at opt-level "z" where the arch's code
/// is too large for the 3.5 MB agent at "s" (ppc64le, s390x). Not everywhere:
/// under TCG "z" costs the VM life cycle +8 % p50 / +9 % p99 (x86_64, `bench
/// compare`, 10 rounds), and x86_64 and aarch64 are far under 3.5 MB at "s"
/// (2,959,040 and 2,557,616 B). tokio's scheduler and std stay at "s". Sizes:
/// s390x 3,917,472 -> 2,872,992 B.
const SIZE_FIRST: &[&str] = &[
    "kata-agent",
    "protocols",
    "oci-spec",
    "serde_json",
    "protobuf",
    "ttrpc",
    "slog",
    "slog-json",
    "anyhow",
    "futures-util",
];

/// `cargo --config` values that put [`SIZE_FIRST`] at "z" for the release
/// agent of `arch` (config profiles override Cargo.toml's).
fn size_first_config(arch: Arch, profile: Profile) -> Vec<String> {
    if profile != Profile::Release || !matches!(arch, Arch::Ppc64le | Arch::S390x) {
        return Vec::new();
    }
    let mut config = Vec::new();
    for krate in SIZE_FIRST {
        config.push("--config".to_string());
        config.push(format!("profile.release.package.{krate}.opt-level=\"z\""));
    }
    // With an override of its own package the binary kept its symbol table
    // (cargo 1.95), which `cargo xtask agent` refuses.
    config.push("--config".to_string());
    config.push(format!("profile.release.package.{PACKAGE}.strip=true"));
    config
}

/// Everything cargo needs for one arch; built first so it can be shown/tested.
pub struct Plan {
    pub route: Route,
    pub profile: Profile,
    pub target: String,
    pub target_dir: PathBuf,
    pub envs: Vec<(String, OsString)>,
    pub rustflags: Vec<String>,
    pub build_std: bool,
    /// Where cargo runs: the repo, or a shadow workspace with patched
    /// dependencies (see crate_patch.rs) for the few targets that need one.
    pub workspace: PathBuf,
    /// With an input store: cargo's arguments that take every crate from it
    /// (fetch/vendor.rs) and forbid the network.
    pub crate_source: Vec<String>,
    /// `--config` overrides of the profile for this arch ([`SIZE_FIRST`]).
    pub profile_config: Vec<String>,
}

impl Plan {
    pub fn new(
        tree: &Tree,
        arch: Arch,
        libc: Libc,
        route: Route,
        profile: Profile,
    ) -> Result<Plan> {
        let target = arch.rust_target(libc.name());
        let host = Arch::host()?;
        let mut plan = Plan {
            route,
            profile,
            target: target.clone(),
            // One dir per route: per-triple outputs live apart inside it and the
            // host-side units (build scripts, proc macros) are shared by arches.
            target_dir: tree.target.join("xtask/agent").join(route.name()),
            envs: vec![(
                crate::epoch::VAR.into(),
                crate::epoch::agent()?.to_string().into(),
            )],
            rustflags: common_rustflags(),
            build_std: route == Route::DebianMusl,
            workspace: tree.root.clone(),
            crate_source: Vec::new(),
            profile_config: size_first_config(arch, profile),
        };
        let env_target = target.to_uppercase().replace('-', "_");
        let cc_target = target.replace('-', "_");
        let linker = match route {
            Route::Rustup if arch == host => None,
            Route::Rustup | Route::DebianGnu => Some(cross_gcc(arch)),
            Route::DebianMusl => Some(musl_gcc(arch)),
        };
        if let Some(linker) = linker {
            plan.env(&format!("CARGO_TARGET_{env_target}_LINKER"), &linker);
            // C code of dependencies (cc crate) uses the same compiler and ar.
            plan.env(&format!("CC_{cc_target}"), &linker);
            plan.env(&format!("AR_{cc_target}"), cross_ar(arch));
        }
        match route {
            Route::Rustup => {}
            Route::DebianMusl => plan.debian_musl(arch)?,
            Route::DebianGnu => plan.debian_gnu(arch, host)?,
        }
        let patches = crate_patch::prepare(&tree.root, arch, libc)?;
        let shadow = plan.target_dir.join(format!("workspace-{}", plan.target));
        plan.workspace = crate_patch::workspace(&tree.root, &patches, &shadow)?;
        let mut extra = Vec::new();
        if plan.workspace != tree.root {
            extra.push((plan.workspace.clone(), "/kata-image".to_string()));
        }
        if let Some(vendor) = crate::fetch::crate_source(plan.build_std)? {
            // The crates' paths in the binary are those of a registry build.
            extra.push((vendor.clone(), format!("/cargo/{CRATES_IO_SRC}")));
            plan.crate_source = crate::fetch::vendor::cargo_args(&vendor);
        }
        plan.rustflags.extend(remap_flags(tree, route, extra)?);
        Ok(plan)
    }

    fn env(&mut self, key: &str, value: impl Into<OsString>) {
        self.envs.push((key.to_string(), value.into()));
    }

    fn debian(&mut self) {
        self.env("RUSTC", DEBIAN_RUSTC);
        // Debian's stable rustc must accept -Z flags and std's unstable code.
        self.env("RUSTC_BOOTSTRAP", "1");
    }

    fn debian_musl(&mut self, arch: Arch) -> Result<()> {
        self.debian();
        let unwind = ensure_libunwind(arch)?;
        self.rustflags.extend([
            // No self-contained crt objects exist in Debian's rustc: the musl
            // gcc wrapper brings musl's own.
            "-Clink-self-contained=no".to_string(),
            format!("-Lnative={}", unwind.display()),
        ]);
        Ok(())
    }

    fn debian_gnu(&mut self, arch: Arch, host: Arch) -> Result<()> {
        self.debian();
        if arch != host {
            let sysroot = ensure_gnu_sysroot(arch)?;
            self.rustflags
                .push(format!("--sysroot={}", sysroot.display()));
        }
        Ok(())
    }

    /// Where cargo leaves the binary.
    pub fn output(&self) -> PathBuf {
        self.target_dir
            .join(&self.target)
            .join(self.profile.name())
            .join(BINARY)
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(cmd::cargo());
        cmd.current_dir(&self.workspace)
            .args(&self.crate_source)
            .args(&self.profile_config)
            .args([
                "build",
                "--profile",
                self.profile.name(),
                "--locked",
                "-p",
                PACKAGE,
                "--bin",
                BINARY,
            ])
            .args(["--target", &self.target])
            .arg("--target-dir")
            .arg(&self.target_dir);
        if self.build_std {
            cmd.arg("-Zbuild-std=std,panic_abort");
        }
        // Only our flags: with --target they reach target units, not build
        // scripts. Inherited RUSTFLAGS would make two builds differ.
        for var in [
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "RUSTC",
            "RUSTC_BOOTSTRAP",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("CARGO_ENCODED_RUSTFLAGS", self.rustflags.join("\x1f"));
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Run cargo with its output in `log` (a fresh one per build).
    pub fn run(&self, log: &Path) -> Result<PathBuf> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(log, "").with_context(|| format!("creating {}", log.display()))?;
        let phase = ui::Phase::with_log(
            format!(
                "agent {}: cargo build ({}, {})",
                self.target,
                self.route.name(),
                self.profile.name()
            ),
            log,
        );
        cmd::run(&mut self.command(), log)?;
        phase.done("");
        Ok(self.output())
    }
}

/// Static, non-PIE (otherwise musl/glibc give a dynamic PIE or static-pie
/// with PT_DYNAMIC), no build-id (it hashes paths of the build).
fn common_rustflags() -> Vec<String> {
    [
        "-Ctarget-feature=+crt-static",
        "-Crelocation-model=static",
        "-Clink-arg=-Wl,--build-id=none",
    ]
    .map(String::from)
    .to_vec()
}

/// `--remap-path-prefix` for every absolute path that differs between two
/// checkouts or machines (so two checkouts of one commit build equal bytes).
/// rustc applies the last matching rule, so the most specific (longest)
/// prefixes go last.
fn remap_flags(tree: &Tree, route: Route, extra: Vec<(PathBuf, String)>) -> Result<Vec<String>> {
    let mut rules: Vec<(PathBuf, String)> = extra;
    rules.extend([
        (tree.root.clone(), "/kata-image".to_string()),
        (tree.target.clone(), "/kata-image/target".to_string()),
    ]);
    if let Some(home) = cargo_home() {
        rules.push((home, "/cargo".to_string()));
    }
    if route != Route::Rustup {
        rules.push((rust_src_dir(DEBIAN_RUSTC)?, "/rustc/src".to_string()));
    }
    rules.sort_by_key(|(from, _)| from.as_os_str().len());
    Ok(rules
        .into_iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_most_specific_last() {
        let flags = remap_flags(&Tree::this(), Route::Rustup, Vec::new()).unwrap();
        let root = flags
            .iter()
            .position(|f| f.ends_with("=/kata-image"))
            .unwrap();
        let target = flags
            .iter()
            .position(|f| f.ends_with("=/kata-image/target"))
            .unwrap();
        assert!(root < target, "{flags:?}");
    }

    /// The x86_64 musl plan on the rustup route (None without a host arch).
    fn rustup_x86_64(tree: &Tree, profile: Profile) -> Option<Plan> {
        Plan::new(tree, Arch::X86_64, Libc::Musl, Route::Rustup, profile).ok()
    }

    /// The request path at "z" only in the release agents of the two arches
    /// that need it for 3.5 MB; the loop profile is never touched.
    #[test]
    fn size_first_crates_only_for_ppc64le_and_s390x_releases() {
        for arch in [Arch::Ppc64le, Arch::S390x] {
            let config = size_first_config(arch, Profile::Release);
            assert!(config
                .iter()
                .any(|c| c == "profile.release.package.kata-agent.opt-level=\"z\""));
            assert!(config
                .iter()
                .any(|c| c == "profile.release.package.serde_json.opt-level=\"z\""));
            assert_eq!(
                config.iter().filter(|c| *c == "--config").count(),
                config.len() / 2
            );
            assert!(size_first_config(arch, Profile::Loop).is_empty());
        }
        for arch in [Arch::X86_64, Arch::Aarch64] {
            assert!(size_first_config(arch, Profile::Release).is_empty());
        }
    }

    #[test]
    fn rustup_plan_is_static_without_build_std() {
        let Some(plan) = rustup_x86_64(&Tree::this(), Profile::Release) else {
            return eprintln!("skipped: cannot plan (no host arch?)");
        };
        assert!(!plan.build_std);
        assert!(plan
            .rustflags
            .iter()
            .any(|f| f == "-Crelocation-model=static"));
        assert!(plan
            .output()
            .ends_with("x86_64-unknown-linux-musl/release/kata-agent"));
    }

    /// Another checkout (`bench compare --base REV`) builds in its own
    /// workspace and target dir, and its paths are remapped like ours, so
    /// two checkouts of one commit build the same bytes.
    #[test]
    fn another_tree_builds_in_its_own_dirs_with_its_paths_remapped() {
        let tree = Tree {
            root: PathBuf::from("/elsewhere/checkout"),
            target: PathBuf::from("/elsewhere/checkout/target"),
        };
        let Some(plan) = rustup_x86_64(&tree, Profile::Release) else {
            return eprintln!("skipped: cannot plan (no host arch?)");
        };
        assert_eq!(plan.workspace, tree.root);
        assert_eq!(
            plan.target_dir,
            Path::new("/elsewhere/checkout/target/xtask/agent/rustup")
        );
        let ours = rustup_x86_64(&Tree::this(), Profile::Release).unwrap();
        // The same targets, whatever the order: rules are sorted by the
        // length of the host path, which differs between checkouts (this one
        // at /work/main sorts before $CARGO_HOME, /elsewhere/checkout after).
        let mapped = |p: &Plan| -> Vec<String> {
            let mut to: Vec<String> = p
                .rustflags
                .iter()
                .filter_map(|f| f.strip_prefix("--remap-path-prefix="))
                .map(|r| r.split_once('=').map_or("", |(_, to)| to).to_string())
                .collect();
            to.sort();
            to
        };
        assert_eq!(mapped(&plan), mapped(&ours));
        assert!(plan
            .rustflags
            .contains(&"--remap-path-prefix=/elsewhere/checkout=/kata-image".to_string()));
        assert!(plan.rustflags.contains(
            &"--remap-path-prefix=/elsewhere/checkout/target=/kata-image/target".to_string()
        ));
        let cmd = plan.command();
        assert_eq!(cmd.get_current_dir(), Some(tree.root.as_path()));
    }

    /// The loop profile builds beside the release one, never over it.
    #[test]
    fn loop_plan_builds_under_its_own_profile_dir() {
        let Some(plan) = rustup_x86_64(&Tree::this(), Profile::Loop) else {
            return eprintln!("skipped: cannot plan (no host arch?)");
        };
        assert!(plan
            .output()
            .ends_with("x86_64-unknown-linux-musl/loop/kata-agent"));
        let cmd = plan.command();
        let args: Vec<_> = cmd.get_args().filter_map(|a| a.to_str()).collect();
        let at = args.iter().position(|a| *a == "--profile").unwrap();
        assert_eq!(args[at + 1], "loop");
        assert!(!args.contains(&"--release"), "{args:?}");
    }
}
