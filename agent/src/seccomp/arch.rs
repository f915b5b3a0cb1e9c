//! The architecture the agent runs on, as a seccomp filter sees it: the
//! AUDIT_ARCH value the kernel puts in `seccomp_data.arch`, the syscall
//! numbers, and where the two 32-bit halves of an argument sit.
//!
//! Only the native ABI gets rules: the guest kernels have no compat ABI
//! (no IA32_EMULATION, X86_X32_ABI or COMPAT), and a syscall made through
//! one anyway (on a host kernel) meets the filter's bad-arch action.

/// `seccomp_data`: nr (u32) at 0, arch (u32) at 4, instruction pointer
/// (u64) at 8, args (6 x u64) from 16.
pub const OFFSET_NR: u32 = 0;
pub const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

/// How many arguments a syscall has in `seccomp_data`.
pub const MAX_ARGS: usize = 6;

// <linux/audit.h>: EM_* | __AUDIT_ARCH_64BIT (0x80000000) | __AUDIT_ARCH_LE
// (0x40000000).
#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH: u32 = 0xc000_003e; // EM_X86_64 = 62
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH: u32 = 0xc000_00b7; // EM_AARCH64 = 183
#[cfg(all(target_arch = "powerpc64", target_endian = "little"))]
pub const AUDIT_ARCH: u32 = 0xc000_0015; // EM_PPC64 = 21
#[cfg(target_arch = "s390x")]
pub const AUDIT_ARCH: u32 = 0x8000_0016; // EM_S390 = 22, big-endian

/// x86_64 shares its AUDIT_ARCH with x32, whose syscall numbers carry this
/// bit (__X32_SYSCALL_BIT): they are not native syscalls.
#[cfg(target_arch = "x86_64")]
pub const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
pub const X32_SYSCALL_BIT: Option<u32> = None;

/// Syscalls newer than the `syscalls` crate's tables (Linux 6.8). Since
/// Linux 5.1 a new syscall has one number on every architecture but alpha
/// (include/uapi/asm-generic/unistd.h and each syscall.tbl).
const NEWER: &[(&str, u32)] = &[
    ("mseal", 462),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
    ("open_tree_attr", 467),
    ("file_getattr", 468),
    ("file_setattr", 469),
];

/// The native number of a syscall name (libseccomp's names, which are the
/// kernel's); None for a name this architecture does not have.
pub fn syscall_number(name: &str) -> Option<u32> {
    if let Ok(sysno) = name.parse::<syscalls::Sysno>() {
        return u32::try_from(sysno.id()).ok();
    }
    NEWER.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
}

/// The offsets of the (high, low) 32-bit words of argument `index`.
pub fn arg_words(index: usize) -> (u32, u32) {
    let base = OFFSET_ARGS + 8 * index as u32;
    if cfg!(target_endian = "little") {
        (base + 4, base)
    } else {
        (base, base + 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The syscalls crate's table against libc's per-target constants.
    #[test]
    fn names_resolve_to_this_targets_numbers() {
        let known: &[(&str, libc::c_long)] = &[
            ("mkdirat", libc::SYS_mkdirat),
            ("openat", libc::SYS_openat),
            ("read", libc::SYS_read),
            ("execve", libc::SYS_execve),
            ("clone3", libc::SYS_clone3),
            ("seccomp", libc::SYS_seccomp),
            ("io_uring_setup", libc::SYS_io_uring_setup),
            ("personality", libc::SYS_personality),
            #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
            ("mseal", libc::SYS_mseal),
        ];
        for (name, nr) in known {
            assert_eq!(syscall_number(name), Some(*nr as u32), "{name}");
        }
        assert_eq!(syscall_number("no_such_syscall"), None);
    }

    #[test]
    fn newer_syscalls_follow_the_crates_table() {
        let last = syscalls::Sysno::last().id() as u32;
        for (name, nr) in NEWER {
            assert!(name.parse::<syscalls::Sysno>().is_err(), "{name}");
            assert!(*nr > last, "{name}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_has_mkdir_aarch64_would_not() {
        assert_eq!(syscall_number("mkdir"), Some(libc::SYS_mkdir as u32));
    }

    #[test]
    fn argument_words_follow_the_byte_order() {
        let (hi, lo) = arg_words(1);
        if cfg!(target_endian = "little") {
            assert_eq!((hi, lo), (28, 24));
        } else {
            assert_eq!((hi, lo), (24, 28));
        }
    }
}
