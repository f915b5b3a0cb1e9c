//! `cargo xtask doctor`: per arch, which agent build routes this machine can
//! use and which tools exist; for anything missing, the exact package (and
//! pinned version from host-packages.lock) that provides it.

use anyhow::Result;

use crate::agent::toolchain::{
    cross_gcc, debian_rustc_version, musl_gcc, rust_src_dir, rustup_has_target, which, Libc,
    DEBIAN_RUSTC,
};
use crate::arch::{Arch, ArchSelection};
use crate::setup;

#[derive(clap::Args)]
pub struct Args {
    /// x86_64, aarch64, ppc64le, s390x or all.
    #[arg(long, default_value = "all")]
    arch: ArchSelection,
}

/// One thing a route needs and the package that provides it.
struct Need {
    what: String,
    present: bool,
    package: String,
}

pub fn run(args: Args) -> Result<()> {
    let lock = setup::read_lock()?;
    let rustc = debian_rustc_version();
    println!(
        "Debian rustc-web ({DEBIAN_RUSTC}): {}",
        rustc.as_deref().unwrap_or("missing")
    );
    for arch in args.arch.arches() {
        println!("\n{arch}:");
        for libc in [Libc::Musl, Libc::Gnu] {
            let target = arch.rust_target(libc.name());
            let rustup = rustup_has_target(&target);
            let needs = debian_needs(arch, libc, rustc.is_some());
            let debian_ok = needs.iter().all(|n| n.present);
            let route = match (rustup, debian_ok) {
                (true, _) => "rustup target (preferred)",
                (false, true) if libc == Libc::Musl => "Debian rustc-web + build-std musl",
                (false, true) => "Debian rustc-web + downloaded gnu std",
                (false, false) => "NONE available",
            };
            println!("  {:<5} {target}: {route}", libc.name());
            let installed = if rustup { "installed" } else { "not installed" };
            println!("      rustup target {installed}");
            for n in needs {
                print_need(&n, &lock);
            }
        }
        let qemu = Need {
            what: arch.qemu_user().to_string(),
            present: which(arch.qemu_user()).is_some(),
            package: "qemu-user-static".to_string(),
        };
        print_need(&qemu, &lock);
    }
    Ok(())
}

/// What the Debian routes need for `arch`/`libc`.
fn debian_needs(arch: Arch, libc: Libc, have_rustc: bool) -> Vec<Need> {
    let gcc = cross_gcc(arch);
    let gcc_package = if Arch::host().ok() == Some(arch) {
        "gcc".to_string()
    } else {
        format!("gcc-{}", arch.gnu_triple())
    };
    let mut needs = vec![
        Need {
            what: "rustc-web".into(),
            present: have_rustc,
            package: "rustc-web".into(),
        },
        Need {
            present: which(&gcc).is_some(),
            what: gcc,
            package: gcc_package,
        },
    ];
    match libc {
        Libc::Musl => {
            let src = rust_src_dir(DEBIAN_RUSTC).map(|d| d.join("library"));
            needs.push(Need {
                what: "std sources (build-std)".into(),
                present: src.map(|d| d.is_dir()).unwrap_or(false),
                package: "rust-web-src".into(),
            });
            needs.push(Need {
                present: which(&musl_gcc(arch)).is_some(),
                what: musl_gcc(arch),
                package: format!("musl-dev:{}", arch.debian()),
            });
        }
        Libc::Gnu if Arch::host().ok() != Some(arch) => needs.push(Need {
            what: format!("libc6-dev for {arch}"),
            present: std::path::Path::new("/usr")
                .join(arch.gnu_triple())
                .join("lib/libc.a")
                .is_file(),
            package: format!("libc6-dev-{}-cross", arch.debian()),
        }),
        Libc::Gnu => {}
    }
    needs
}

fn print_need(n: &Need, lock: &[setup::PinnedPackage]) {
    if n.present {
        println!("      ok       {}", n.what);
    } else {
        println!(
            "      MISSING  {}: {}",
            n.what,
            install_hint(&n.package, lock)
        );
    }
}

/// The exact apt-get command for `package`, with the lock's version and suite.
fn install_hint(package: &str, lock: &[setup::PinnedPackage]) -> String {
    // The host's own musl-dev is pinned without `:amd64`.
    let base = package.split(':').next().unwrap_or(package);
    let pinned = lock
        .iter()
        .find(|p| p.package == package)
        .or_else(|| lock.iter().find(|p| p.package == base));
    match pinned {
        Some(p) => {
            let suite = p
                .suite
                .as_ref()
                .map(|s| format!("-t {s} "))
                .unwrap_or_default();
            format!(
                "apt-get install --no-install-recommends {suite}{}={}",
                p.package, p.version
            )
        }
        None => format!("apt-get install {package} (not pinned in host-packages.lock)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_uses_the_pinned_version_and_suite() {
        let lock = setup::parse_lock(
            "cross musl-dev:arm64 1.2.3-1\n\
             cross qemu-user-static 1:10.0.2+ds-2+deb13u1~bpo12+1 bookworm-backports\n",
        )
        .unwrap();
        assert_eq!(
            install_hint("musl-dev:arm64", &lock),
            "apt-get install --no-install-recommends musl-dev:arm64=1.2.3-1"
        );
        assert!(install_hint("qemu-user-static", &lock)
            .contains("-t bookworm-backports qemu-user-static=1:10.0.2"));
        assert!(install_hint("gcc", &lock).contains("not pinned"));
    }
}
