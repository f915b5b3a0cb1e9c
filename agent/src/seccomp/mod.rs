//! Seccomp: an OCI `linux.seccomp` profile compiled to a BPF program for
//! the architecture the agent runs on, and its installation with
//! seccomp(2). Pure Rust, no libseccomp: `profile` checks the profile and
//! resolves names (`arch`), `emit` lays out the program, `bpf` assembles it.
//!
//! The agent compiles a container's profile at CreateContainer (a profile
//! it cannot apply is refused there, before any process starts) and hands
//! the program to each `kata-agent init` of the container, which installs
//! it just before executing the container's process.

mod arch;
mod bpf;
mod emit;
mod profile;

use anyhow::{Context, Result};
use oci_spec::runtime::LinuxSeccomp;
use serde::{Deserialize, Serialize};

/// A compiled filter, ready for seccomp(2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    program: Vec<bpf::Insn>,
    flags: libc::c_ulong,
}

/// A compiled profile and the syscall names it had that this architecture
/// does not (skipped, as libseccomp does; worth a log line).
#[derive(Debug)]
pub struct Compiled {
    pub filter: Filter,
    pub unknown_names: Vec<String>,
}

/// Compile `s`; an error is the profile's fault (the caller's to fix).
pub fn compile(s: &LinuxSeccomp) -> Result<Compiled> {
    let p = profile::Profile::from_oci(s).context("linux.seccomp")?;
    let program = emit::program(&p).context("linux.seccomp")?;
    Ok(Compiled {
        filter: Filter {
            program,
            flags: p.flags,
        },
        unknown_names: p.unknown_names,
    })
}

impl Filter {
    /// The program's length in instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// Install the filter on the calling thread (with TSYNC: its process).
    /// Without no_new_privs set this needs CAP_SYS_ADMIN.
    pub fn install(&self) -> Result<()> {
        let mut insns: Vec<libc::sock_filter> = self
            .program
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let prog = libc::sock_fprog {
            len: u16::try_from(insns.len()).context("the seccomp filter is too long")?,
            filter: insns.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `insns`, alive and unaliased across the call;
        // the kernel copies the program.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context(
                "installing the seccomp filter (without noNewPrivileges it needs CAP_SYS_ADMIN)",
            );
        }
        Ok(())
    }
}

/// Whether this kernel takes the filters `compile` makes: seccomp filters
/// built in, and every action a filter here always uses.
pub fn available() -> bool {
    [
        libc::SECCOMP_RET_ALLOW,
        libc::SECCOMP_RET_ERRNO,
        emit::BAD_ARCH_ACTION,
    ]
    .iter()
    .all(|action| {
        // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 through the pointer.
        unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_GET_ACTION_AVAIL,
                0,
                action as *const u32,
            ) == 0
        }
    })
}
