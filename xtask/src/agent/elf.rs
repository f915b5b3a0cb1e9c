//! Check a built agent by its ELF header, not its name: the right machine,
//! statically linked (no PT_INTERP, no PT_DYNAMIC) and stripped (no SHT_SYMTAB).

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use crate::arch::Arch;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const SHT_SYMTAB: u32 = 2;

/// What the header says; `check` compares it with what we want.
#[derive(Debug, PartialEq, Eq)]
pub struct ElfFacts {
    pub machine: u16,
    pub interp: bool,
    pub dynamic: bool,
    pub symtab: bool,
}

/// Fail unless `path` is a static, stripped ELF executable for `arch`.
pub fn check(path: &Path, arch: Arch) -> Result<ElfFacts> {
    let facts = check_static(path, arch)?;
    ensure!(
        !facts.symtab,
        "{}: has a symbol table (not stripped)",
        path.display()
    );
    Ok(facts)
}

/// Fail unless `path` is a statically linked ELF executable for `arch`
/// (stripped or not: what a custom agent must be to run as the guest's init).
pub fn check_static(path: &Path, arch: Arch) -> Result<ElfFacts> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let facts =
        parse(&bytes).with_context(|| format!("parsing ELF header of {}", path.display()))?;
    let name = path.display();
    ensure!(
        facts.machine == arch.elf_machine(),
        "{name}: e_machine is {} but {arch} needs {}",
        facts.machine,
        arch.elf_machine()
    );
    ensure!(!facts.interp, "{name}: has PT_INTERP (dynamically linked)");
    ensure!(
        !facts.dynamic,
        "{name}: has PT_DYNAMIC (not fully static, e.g. static-pie)"
    );
    Ok(facts)
}

/// Read an ELF64 header, its program headers and section header types.
pub fn parse(b: &[u8]) -> Result<ElfFacts> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    ensure!(b[4] == 2, "not a 64-bit ELF (EI_CLASS {})", b[4]);
    let big = match b[5] {
        1 => false,
        2 => true,
        other => bail!("bad EI_DATA {other}"),
    };
    let r = Reader { b, big };
    let machine = r.u16(18)?;
    let (phoff, phentsize, phnum) = (r.u64(32)?, r.u16(54)?, r.u16(56)?);
    let (shoff, shentsize, shnum) = (r.u64(40)?, r.u16(58)?, r.u16(60)?);
    let mut facts = ElfFacts {
        machine,
        interp: false,
        dynamic: false,
        symtab: false,
    };
    for i in 0..u64::from(phnum) {
        let p_type = r.u32(offset(phoff, i, phentsize)?)?;
        facts.interp |= p_type == PT_INTERP;
        facts.dynamic |= p_type == PT_DYNAMIC;
    }
    for i in 0..u64::from(shnum) {
        let sh_type = r.u32(offset(shoff, i, shentsize)? + 4)?;
        facts.symtab |= sh_type == SHT_SYMTAB;
    }
    Ok(facts)
}

fn offset(base: u64, index: u64, size: u16) -> Result<usize> {
    let off = index
        .checked_mul(u64::from(size))
        .and_then(|o| o.checked_add(base))
        .context("header table offset overflows")?;
    usize::try_from(off).context("header table offset too large")
}

struct Reader<'a> {
    b: &'a [u8],
    big: bool,
}

impl Reader<'_> {
    fn take<const N: usize>(&self, at: usize) -> Result<[u8; N]> {
        let s = self
            .b
            .get(at..at.saturating_add(N))
            .with_context(|| format!("truncated ELF file (need bytes {at}..{})", at + N))?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u16(&self, at: usize) -> Result<u16> {
        let a = self.take::<2>(at)?;
        Ok(if self.big {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }
    fn u32(&self, at: usize) -> Result<u32> {
        let a = self.take::<4>(at)?;
        Ok(if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }
    fn u64(&self, at: usize) -> Result<u64> {
        let a = self.take::<8>(at)?;
        Ok(if self.big {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 image: header, one program header, one section header.
    fn image(big: bool, machine: u16, p_type: u32, sh_type: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 + 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = if big { 2 } else { 1 };
        let put16 = |b: &mut Vec<u8>, at: usize, v: u16| {
            let a = if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            b[at..at + 2].copy_from_slice(&a);
        };
        let put32 = |b: &mut Vec<u8>, at: usize, v: u32| {
            let a = if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            b[at..at + 4].copy_from_slice(&a);
        };
        let put64 = |b: &mut Vec<u8>, at: usize, v: u64| {
            let a = if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            b[at..at + 8].copy_from_slice(&a);
        };
        put16(&mut b, 18, machine);
        put64(&mut b, 32, 64);
        put64(&mut b, 40, 120);
        put16(&mut b, 54, 56);
        put16(&mut b, 56, 1);
        put16(&mut b, 58, 64);
        put16(&mut b, 60, 1);
        put32(&mut b, 64, p_type);
        put32(&mut b, 124, sh_type);
        b
    }

    #[test]
    fn reads_both_endiannesses() {
        let le = parse(&image(false, 183, 1, 1)).unwrap();
        assert_eq!(
            le,
            ElfFacts {
                machine: 183,
                interp: false,
                dynamic: false,
                symtab: false
            }
        );
        let be = parse(&image(true, 22, PT_INTERP, SHT_SYMTAB)).unwrap();
        assert_eq!(
            be,
            ElfFacts {
                machine: 22,
                interp: true,
                dynamic: false,
                symtab: true
            }
        );
        assert!(parse(&image(false, 62, PT_DYNAMIC, 1)).unwrap().dynamic);
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(parse(b"#!/bin/sh\n").is_err());
        let mut b = image(false, 62, 1, 1);
        b.truncate(100);
        assert!(parse(&b).is_err());
    }

    #[test]
    fn check_names_the_wrong_machine() {
        let dir = std::env::temp_dir().join(format!("xtask-elf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("agent");
        std::fs::write(&f, image(false, 62, 1, 1)).unwrap();
        assert!(check(&f, Arch::X86_64).is_ok());
        let err = check(&f, Arch::S390x).unwrap_err().to_string();
        assert!(err.contains("e_machine is 62"), "{err}");
        std::fs::write(&f, image(false, 62, PT_INTERP, 1)).unwrap();
        assert!(check(&f, Arch::X86_64)
            .unwrap_err()
            .to_string()
            .contains("PT_INTERP"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
