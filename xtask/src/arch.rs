//! The four guest architectures and every name each one goes by
//! (ours, Rust's, Debian's, the kernel's, QEMU's).

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    Aarch64,
    Ppc64le,
    S390x,
}

impl Arch {
    pub const ALL: [Arch; 4] = [Arch::X86_64, Arch::Aarch64, Arch::Ppc64le, Arch::S390x];

    /// Our name, as given to `--arch` and used in artifact paths.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
        }
    }

    /// The first component of the Rust target triple.
    pub fn rust_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Ppc64le => "powerpc64le",
            Arch::S390x => "s390x",
        }
    }

    /// Rust target triple for a libc ("musl" or "gnu").
    pub fn rust_target(self, libc: &str) -> String {
        format!("{}-unknown-linux-{libc}", self.rust_arch())
    }

    /// Debian's architecture name (dpkg --print-architecture).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
            Arch::Ppc64le => "ppc64el",
            Arch::S390x => "s390x",
        }
    }

    /// GNU triple prefix of Debian's cross tools (`<prefix>-gcc`).
    pub fn gnu_triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu",
            Arch::Aarch64 => "aarch64-linux-gnu",
            Arch::Ppc64le => "powerpc64le-linux-gnu",
            Arch::S390x => "s390x-linux-gnu",
        }
    }

    /// The kernel's `ARCH=`.
    pub fn kernel_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86",
            Arch::Aarch64 => "arm64",
            Arch::Ppc64le => "powerpc",
            Arch::S390x => "s390",
        }
    }

    /// Kata's name for the per-arch kernel config fragment directory.
    pub fn kernel_fragment_dir(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "arm64",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390",
        }
    }

    /// `qemu-system-*` binary that runs this guest.
    pub fn qemu_system(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
            Arch::Ppc64le => "qemu-system-ppc64",
            Arch::S390x => "qemu-system-s390x",
        }
    }

    /// `qemu-*-static` user-mode emulator (Debian's qemu-user-static).
    pub fn qemu_user(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-x86_64-static",
            Arch::Aarch64 => "qemu-aarch64-static",
            Arch::Ppc64le => "qemu-ppc64le-static",
            Arch::S390x => "qemu-s390x-static",
        }
    }

    /// ELF `e_machine` value, to check binaries by header rather than by name.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,   // EM_X86_64
            Arch::Aarch64 => 183, // EM_AARCH64
            Arch::Ppc64le => 21,  // EM_PPC64
            Arch::S390x => 22,    // EM_S390
        }
    }

    /// The architecture of the machine running the xtask.
    pub fn host() -> Result<Arch> {
        std::env::consts::ARCH.parse()
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Arch> {
        Ok(match s {
            "x86_64" | "amd64" => Arch::X86_64,
            "aarch64" | "arm64" => Arch::Aarch64,
            "ppc64le" | "powerpc64le" | "ppc64el" => Arch::Ppc64le,
            "s390x" => Arch::S390x,
            other => {
                bail!("unknown architecture {other:?} (expected x86_64, aarch64, ppc64le or s390x)")
            }
        })
    }
}

/// `--arch` lists its values in `--help` and rejects others with them.
impl clap::ValueEnum for Arch {
    fn value_variants<'a>() -> &'a [Self] {
        &Arch::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let v = clap::builder::PossibleValue::new(self.name());
        Some(match self {
            Arch::X86_64 => v.alias("amd64"),
            Arch::Aarch64 => v.alias("arm64"),
            Arch::Ppc64le => v.aliases(["powerpc64le", "ppc64el"]),
            Arch::S390x => v,
        })
    }
}

/// What `--arch` accepts: one architecture or `all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchSelection {
    One(Arch),
    All,
}

impl ArchSelection {
    pub fn arches(self) -> Vec<Arch> {
        match self {
            ArchSelection::One(a) => vec![a],
            ArchSelection::All => Arch::ALL.to_vec(),
        }
    }
}

impl FromStr for ArchSelection {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<ArchSelection> {
        if s == "all" {
            Ok(ArchSelection::All)
        } else {
            s.parse().map(ArchSelection::One)
        }
    }
}

impl clap::ValueEnum for ArchSelection {
    fn value_variants<'a>() -> &'a [Self] {
        const ALL: [ArchSelection; 5] = [
            ArchSelection::One(Arch::X86_64),
            ArchSelection::One(Arch::Aarch64),
            ArchSelection::One(Arch::Ppc64le),
            ArchSelection::One(Arch::S390x),
            ArchSelection::All,
        ];
        &ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            ArchSelection::One(a) => a.to_possible_value(),
            ArchSelection::All => Some(clap::builder::PossibleValue::new("all")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Arch::ALL {
            assert_eq!(a.name().parse::<Arch>().unwrap(), a);
            assert_eq!(a.debian().parse::<Arch>().unwrap(), a);
        }
        assert!("mips".parse::<Arch>().is_err());
        assert_eq!(
            "all".parse::<ArchSelection>().unwrap().arches(),
            Arch::ALL.to_vec()
        );
        assert_eq!(
            Arch::Ppc64le.rust_target("musl"),
            "powerpc64le-unknown-linux-musl"
        );
    }
}
