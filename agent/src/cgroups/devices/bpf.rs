//! The bpf(2) calls the device program needs: load it, attach it to a
//! cgroup v2 directory, detach the one it replaces. The attribute layouts
//! are the kernel's `union bpf_attr` members (include/uapi/linux/bpf.h);
//! the kernel zero-fills what a shorter struct leaves out.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::program::Insn;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Other programs (a parent's, an old one of ours) stay attached beside it;
/// the kernel allows an access only if all of them do.
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised repr(C) value of the layout the
    // kernel expects for `cmd`, and its size is passed with it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r)
}

/// Load a device program. A refusal is retried once with the verifier's
/// log, which then explains it in the error.
pub fn load_device_program(insns: &[Insn]) -> Result<OwnedFd> {
    match load(insns, None) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            let mut log = vec![0u8; 64 << 10];
            match load(insns, Some(&mut log)) {
                Ok(fd) => Ok(fd),
                Err(_) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    Err(e).context(format!("bpf(BPF_PROG_LOAD): verifier log: {text}"))
                }
            }
        }
    }
}

fn load(insns: &[Insn], log: Option<&mut Vec<u8>>) -> Result<OwnedFd> {
    // Kata's agent is Apache-2.0; the program calls no GPL-only helper.
    let license = CString::new("Apache-2.0").context("license string")?;
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"kata_devices");
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).context("program length")?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(log.len()).context("log size")?;
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    let fd = bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) {
            anyhow::Error::new(e).context("loading BPF programs needs CAP_BPF or CAP_SYS_ADMIN")
        } else {
            e.into()
        }
    })?;
    let fd = i32::try_from(fd).context("bpf returned an impossible fd")?;
    // SAFETY: the kernel just returned this fd for us to own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The cgroup directory, opened for attaching.
pub fn open_cgroup(dir: &Path) -> Result<OwnedFd> {
    let file = std::fs::File::open(dir)
        .with_context(|| format!("opening cgroup directory {}", dir.display()))?;
    if !file.metadata()?.is_dir() {
        bail!("{} is not a cgroup directory", dir.display());
    }
    Ok(file.into())
}

pub fn attach(cgroup: &OwnedFd, prog: &OwnedFd) -> Result<()> {
    let mut attr = attach_attr(cgroup, prog);
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    bpf(BPF_PROG_ATTACH, &mut attr).context("bpf(BPF_PROG_ATTACH)")?;
    Ok(())
}

pub fn detach(cgroup: &OwnedFd, prog: &OwnedFd) -> Result<()> {
    let mut attr = attach_attr(cgroup, prog);
    bpf(BPF_PROG_DETACH, &mut attr).context("bpf(BPF_PROG_DETACH)")?;
    Ok(())
}

fn attach_attr(cgroup: &OwnedFd, prog: &OwnedFd) -> ProgAttach {
    // Fds are never negative, so they fit the kernel's u32 fields.
    ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layouts match the kernel's union members field for field.
    #[test]
    fn attribute_layouts() {
        assert_eq!(std::mem::size_of::<ProgLoad>(), 64);
        assert_eq!(std::mem::offset_of!(ProgLoad, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoad, prog_name), 48);
        assert_eq!(std::mem::size_of::<ProgAttach>(), 16);
    }
}
