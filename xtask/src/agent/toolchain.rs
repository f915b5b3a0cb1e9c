//! Which compiler route builds the agent for an arch, and the tools it uses.
//!
//! Preferred: a rustup target that is installed (a laptop). Otherwise the
//! offline route, which needs nothing from the network but Debian's mirror:
//! Debian's rustc-web 1.85
//! driven by rustup's cargo, with `-Zbuild-std` for musl and a downloaded
//! prebuilt std for gnu.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::arch::Arch;

/// Debian's rustc-web, the cross compiler of the offline routes.
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Libc {
    Musl,
    Gnu,
}

impl Libc {
    pub fn name(self) -> &'static str {
        match self {
            Libc::Musl => "musl",
            Libc::Gnu => "gnu",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// rustup's own toolchain with the target's prebuilt std installed.
    Rustup,
    /// Debian rustc-web + `-Zbuild-std` + musl gcc wrappers + libunwind shim.
    DebianMusl,
    /// Debian rustc-web + Debian's prebuilt std for the arch + cross gcc.
    DebianGnu,
}

impl Route {
    /// Also the name of the route's cargo target dir under target/xtask/agent/.
    pub fn name(self) -> &'static str {
        match self {
            Route::Rustup => "rustup",
            Route::DebianMusl => "debian-musl",
            Route::DebianGnu => "debian-gnu",
        }
    }
}

/// Pick the route for `arch`/`libc` on this machine.
pub fn probe(arch: Arch, libc: Libc) -> Route {
    if rustup_has_target(&arch.rust_target(libc.name())) {
        return Route::Rustup;
    }
    match libc {
        Libc::Musl => Route::DebianMusl,
        Libc::Gnu => Route::DebianGnu,
    }
}

/// `rustup target list --installed` contains `target` (false without rustup).
pub fn rustup_has_target(target: &str) -> bool {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return false;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == target)
}

/// Debian's musl gcc wrapper for `arch` (from `musl-dev:<debian arch>`).
pub fn musl_gcc(arch: Arch) -> String {
    format!("{}-linux-musl-gcc", arch.rust_arch())
}

/// Debian's (cross) gcc for `arch`; for the host it is the native gcc.
pub fn cross_gcc(arch: Arch) -> String {
    format!("{}-gcc", arch.gnu_triple())
}

/// Binutils `ar` of the same tool chain (deterministic by default on Debian).
pub fn cross_ar(arch: Arch) -> String {
    format!("{}-ar", arch.gnu_triple())
}

/// Find an executable in PATH (or an absolute path that exists).
pub fn which(tool: &str) -> Option<PathBuf> {
    let p = Path::new(tool);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|c| c.is_file())
    })
}

/// `<tool> <args>` stdout, trimmed (e.g. a version: cache keys hash it whole).
pub fn tool_output(tool: &str, args: &[&str]) -> Result<String> {
    crate::cmd::read(Command::new(tool).args(args))
}

/// The version line of Debian's rustc (`rustc 1.85.0 (...)`), if installed.
pub fn debian_rustc_version() -> Option<String> {
    tool_output(DEBIAN_RUSTC, &["-V"]).ok()
}

/// The sysroot a rustc reports (`/usr` for Debian's).
pub fn rustc_sysroot(rustc: &str) -> Result<PathBuf> {
    tool_output(rustc, &["--print", "sysroot"]).map(PathBuf::from)
}

/// The std sources `-Zbuild-std` compiles: `<sysroot>/lib/rustlib/src/rust`.
pub fn rust_src_dir(rustc: &str) -> Result<PathBuf> {
    Ok(rustc_sysroot(rustc)?.join("lib/rustlib/src/rust"))
}

/// `$CARGO_HOME`, where registry sources live (remapped for reproducibility).
pub fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// Where cargo (1.85 and later, on every host) unpacks crates.io's crates,
/// under `$CARGO_HOME`: a build from the input store remaps its own crate
/// directory to this, so both builds name the same source paths.
pub const CRATES_IO_SRC: &str = "registry/src/index.crates.io-1949cf8c6b5b557f";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_follow_debian() {
        assert_eq!(musl_gcc(Arch::Ppc64le), "powerpc64le-linux-musl-gcc");
        assert_eq!(cross_gcc(Arch::S390x), "s390x-linux-gnu-gcc");
        assert_eq!(cross_ar(Arch::Aarch64), "aarch64-linux-gnu-ar");
    }

    /// When this cargo has unpacked crates.io's crates, it did so where
    /// CRATES_IO_SRC says (the store build's remap depends on it).
    #[test]
    fn crates_io_sources_are_where_the_remap_says() {
        let Some(src) = cargo_home().map(|h| h.join("registry/src")) else {
            return eprintln!("skipped: no CARGO_HOME or HOME");
        };
        let Ok(dirs) = std::fs::read_dir(&src) else {
            return eprintln!(
                "skipped: cargo has unpacked no crate yet ({})",
                src.display()
            );
        };
        let names: Vec<String> = dirs
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("index.crates.io-"))
            .collect();
        let ours = CRATES_IO_SRC.rsplit('/').next().unwrap();
        assert!(
            names.is_empty() || names.iter().any(|n| n == ours),
            "{names:?}"
        );
    }

    #[test]
    fn which_finds_sh_and_rejects_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("no-such-tool-kata-image").is_none());
    }
}
