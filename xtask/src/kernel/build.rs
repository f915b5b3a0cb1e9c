//! One out-of-tree kernel build: tinyconfig + fragments + olddefconfig, the
//! fragment check, `make` of the boot images, and a path-leak check.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::arch::Arch;
use crate::cmd;

use super::fragments::{self, Fragment};

/// A kernel image this arch exports: where make leaves it (relative to the
/// build dir) and its name in the cache entry and artifacts dir.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub built: &'static str,
    pub name: &'static str,
}

/// Make targets and exported images per arch.
pub fn outputs(arch: Arch) -> (&'static [&'static str], &'static [Output]) {
    match arch {
        // bzImage for -kernel with firmware; the ELF vmlinux has the PVH note
        // for direct boot (-M microvm, or q35 with qboot).
        Arch::X86_64 => (
            &["bzImage", "vmlinux"],
            &[
                Output {
                    built: "arch/x86/boot/bzImage",
                    name: "vmlinuz",
                },
                Output {
                    built: "vmlinux",
                    name: "vmlinux",
                },
            ],
        ),
        Arch::Aarch64 => (
            &["Image"],
            &[Output {
                built: "arch/arm64/boot/Image",
                name: "Image",
            }],
        ),
        Arch::Ppc64le => (
            &["vmlinux"],
            &[Output {
                built: "vmlinux",
                name: "vmlinux",
            }],
        ),
        Arch::S390x => (
            &["bzImage"],
            &[Output {
                built: "arch/s390/boot/bzImage",
                name: "vmlinuz",
            }],
        ),
    }
}

/// Everything that determines the build's output besides source and fragments.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// `CROSS_COMPILE=` value ("" for a native build).
    pub cross_compile: String,
    /// Environment given to every make (the tree is built with a cleared env).
    pub env: Vec<(String, String)>,
}

impl Toolchain {
    pub fn new(arch: Arch, source_date_epoch: u64) -> Result<Toolchain> {
        let native = Arch::host().map(|h| h == arch).unwrap_or(false);
        let cross_compile = if native {
            String::new()
        } else {
            format!("{}-", arch.gnu_triple())
        };
        let env = vec![
            (
                "KBUILD_BUILD_TIMESTAMP".into(),
                format_utc(source_date_epoch),
            ),
            ("KBUILD_BUILD_USER".into(), "kata-image".into()),
            ("KBUILD_BUILD_HOST".into(), "kata-image".into()),
            ("KBUILD_BUILD_VERSION".into(), "1".into()),
            ("SOURCE_DATE_EPOCH".into(), source_date_epoch.to_string()),
            ("LC_ALL".into(), "C".into()),
            ("TZ".into(), "UTC".into()),
        ];
        Ok(Toolchain { cross_compile, env })
    }

    pub fn gcc(&self) -> String {
        format!("{}gcc", self.cross_compile)
    }
}

/// The make command line shared by all steps.
fn make(arch: Arch, tc: &Toolchain, src: &Path, build: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(tc.env.iter().map(|(k, v)| (k, v)))
        .arg("-C")
        .arg(src)
        .arg(format!("O={}", build.display()))
        .arg(format!("ARCH={}", arch.kernel_arch()))
        .arg(format!("CROSS_COMPILE={}", tc.cross_compile))
        .current_dir(build);
    cmd
}

/// Configure `build` from tinyconfig plus `frags`, then check the result.
pub fn configure(
    arch: Arch,
    tc: &Toolchain,
    src: &Path,
    build: &Path,
    frags: &[Fragment],
    log: &Path,
) -> Result<()> {
    cmd::run(make(arch, tc, src, build).arg("tinyconfig"), log)?;
    // merge_config.sh -m only merges (no make run); it keeps temp files in the cwd.
    let mut merge = Command::new(src.join("scripts/kconfig/merge_config.sh"));
    merge
        .current_dir(build)
        .env("ARCH", arch.kernel_arch())
        .arg("-m")
        .arg("-O")
        .arg(build)
        .arg(build.join(".config"))
        .args(frags.iter().map(|f| &f.path));
    cmd::run(&mut merge, log)?;
    cmd::run(make(arch, tc, src, build).arg("olddefconfig"), log)?;
    fragments::verify(frags, &build.join(".config"))
}

/// `make -j<jobs>` of the arch's image targets.
pub fn compile(
    arch: Arch,
    tc: &Toolchain,
    src: &Path,
    build: &Path,
    jobs: usize,
    log: &Path,
) -> Result<()> {
    let (targets, _) = outputs(arch);
    let mut make = make(arch, tc, src, build);
    make.arg(format!("-j{jobs}")).args(targets);
    cmd::run(&mut make, log)
}

/// `make -s kernelrelease` (e.g. "6.12.95").
pub fn kernel_release(arch: Arch, tc: &Toolchain, src: &Path, build: &Path) -> Result<String> {
    let release = cmd::read(make(arch, tc, src, build).args(["-s", "kernelrelease"]))?;
    ensure!(!release.is_empty(), "make kernelrelease printed nothing");
    Ok(release)
}

/// Paths of this machine that must not end up in the kernel: the build and
/// source directories. Returns the ones found in `image`.
pub fn leaked_paths(image: &Path, paths: &[&Path]) -> Result<Vec<PathBuf>> {
    let bytes = fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    Ok(paths
        .iter()
        .filter(|p| {
            let needle = p.as_os_str().as_encoded_bytes();
            !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle)
        })
        .map(|p| p.to_path_buf())
        .collect())
}

/// `date -u` style text for a Unix time ("Sun Jul  5 18:26:27 UTC 2026"), the
/// form the kernel shows in `uname -v`.
pub fn format_utc(epoch: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} UTC {}",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        y
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// days-to-civil algorithm, restricted to non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_date_u() {
        assert_eq!(format_utc(0), "Thu Jan  1 00:00:00 UTC 1970");
        // The pinned Debian changelog date (Sun, 05 Jul 2026 20:26:27 +0200).
        assert_eq!(format_utc(1_783_275_987), "Sun Jul  5 18:26:27 UTC 2026");
        assert_eq!(format_utc(951_782_400), "Tue Feb 29 00:00:00 UTC 2000");
        assert_eq!(format_utc(1_704_067_199), "Sun Dec 31 23:59:59 UTC 2023");
    }

    #[test]
    fn every_arch_exports_images() {
        for arch in Arch::ALL {
            let (targets, outs) = outputs(arch);
            assert!(!targets.is_empty() && !outs.is_empty());
        }
    }

    #[test]
    fn finds_leaked_paths() {
        let dir = std::env::temp_dir().join(format!("kernel-leak-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let image = dir.join("img");
        fs::write(&image, b"\0\0/home/me/build/x.c\0").unwrap();
        let found = leaked_paths(
            &image,
            &[Path::new("/home/me/build"), Path::new("/elsewhere")],
        )
        .unwrap();
        fs::remove_dir_all(&dir).ok();
        assert_eq!(found, vec![PathBuf::from("/home/me/build")]);
    }
}
