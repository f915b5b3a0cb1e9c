//! Device access control for a container's cgroup: which device nodes its
//! processes may create (m), read (r) and write (w).
//!
//! The rule list is Kata's: everything denied, then the devices every
//! container gets allowed (Kata's DEFAULT_DEVICES and DEFAULT_ALLOWED_DEVICES,
//! src/agent/rustjail/src/container.rs and src/agent/rustjail/src/cgroups/fs/mod.rs
//! `setup_devcg_whitelist`), then the spec's linux.resources.devices in
//! order; the last rule that matches a device and an access decides, as in
//! runc. A spec rule denying all devices returns to that default list
//! instead of removing it (Kata skips such a rule, since its list starts
//! from "deny all" already). UpdateContainer's rules are appended to the
//! list, as writing them to a v1 cgroup would.
//!
//! cgroup v1 enforces the list through the devices controller's
//! devices.deny/devices.allow files. cgroup v2 has no devices controller:
//! the kernel asks a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the
//! cgroup, as runc and youki attach one. Kata's agent attaches none, so on
//! v2 (Kata's default guest) its containers can open every device of the
//! guest; this one emits the program from the same list (`program`) and
//! attaches it (`bpf`).

pub mod bpf;
pub mod program;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use cgroups_rs::fs::devices::{DevicePermissions, DeviceType, DevicesController};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Which nodes a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    All,
    Char,
    Block,
}

/// Access bits, as the kernel's BPF_DEVCG_ACC_* values.
pub const MKNOD: u8 = 1;
pub const READ: u8 = 2;
pub const WRITE: u8 = 4;
pub const RWM: u8 = MKNOD | READ | WRITE;

/// One device rule: `None` numbers match any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

impl Rule {
    const fn allow(kind: Kind, major: Option<u32>, minor: Option<u32>, access: u8) -> Rule {
        Rule {
            allow: true,
            kind,
            major,
            minor,
            access,
        }
    }

    const DENY_ALL: Rule = Rule {
        allow: false,
        kind: Kind::All,
        major: None,
        minor: None,
        access: RWM,
    };

    /// A rule for every device and every access (type `a`: the kernel
    /// ignores the numbers of an `a` rule, so they do not matter here).
    fn is_all(&self) -> bool {
        self.kind == Kind::All && self.access == RWM
    }

    /// The rule from a spec's linux.resources.devices entry. A missing type
    /// is `a` and a missing access `rwm` (the runtime spec's defaults);
    /// numbers that no device can have are refused.
    pub fn from_spec(d: &LinuxDeviceCgroup) -> crate::error::Result<Rule> {
        let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => Kind::All,
            LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
            LinuxDeviceType::B => Kind::Block,
            LinuxDeviceType::P => {
                return Err(crate::error::Error::invalid(
                    "device rule type p: a FIFO is not a device the cgroup controls",
                ))
            }
        };
        let number = |what: &str, n: Option<i64>| -> crate::error::Result<Option<u32>> {
            match n {
                None | Some(-1) => Ok(None),
                // Linux's are 12 (major) and 20 (minor) bits; the BPF
                // program compares with a signed 32-bit immediate.
                Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n as u32)),
                Some(n) => Err(crate::error::Error::invalid(format!(
                    "device rule {what} {n}: must be -1 (any) or 0..=2147483647"
                ))),
            }
        };
        let mut access = 0;
        for c in d.access().as_deref().unwrap_or("rwm").chars() {
            access |= match c {
                'm' => MKNOD,
                'r' => READ,
                'w' => WRITE,
                c => {
                    return Err(crate::error::Error::invalid(format!(
                        "device rule access {c:?}: only r, w and m"
                    )))
                }
            };
        }
        if d.access().as_deref() == Some("") {
            access = RWM;
        }
        Ok(Rule {
            allow: d.allow(),
            kind,
            major: number("major", d.major())?,
            minor: number("minor", d.minor())?,
            access,
        })
    }
}

/// Kata's list before any spec rule: deny all, then allow the default
/// devices (rwm) and mknod of every node (the container's init creates the
/// spec's device nodes).
pub fn defaults() -> Vec<Rule> {
    use Kind::{Block, Char};
    vec![
        Rule::DENY_ALL,
        Rule::allow(Char, None, None, MKNOD),
        Rule::allow(Block, None, None, MKNOD),
        Rule::allow(Char, Some(1), Some(3), RWM), // /dev/null
        Rule::allow(Char, Some(1), Some(5), RWM), // /dev/zero
        Rule::allow(Char, Some(1), Some(7), RWM), // /dev/full
        Rule::allow(Char, Some(5), Some(0), RWM), // /dev/tty
        Rule::allow(Char, Some(1), Some(9), RWM), // /dev/urandom
        Rule::allow(Char, Some(1), Some(8), RWM), // /dev/random
        Rule::allow(Char, Some(5), Some(1), RWM), // /dev/console
        Rule::allow(Char, Some(136), None, RWM),  // /dev/pts/N
        Rule::allow(Char, Some(5), Some(2), RWM), // /dev/ptmx
        Rule::allow(Char, Some(10), Some(200), RWM), // /dev/net/tun
    ]
}

/// `list` with `spec` appended; a deny-all rule starts over from the
/// defaults. Returns whether it started over (v1 must then rewrite all).
pub fn append(list: &mut Vec<Rule>, spec: &[Rule]) -> bool {
    let mut restarted = false;
    for r in spec {
        if r.is_all() && !r.allow {
            *list = defaults();
            restarted = true;
        } else {
            list.push(*r);
        }
    }
    restarted
}

/// Write `rules` to a v1 devices cgroup, in order.
pub fn apply_v1(controller: &DevicesController, rules: &[Rule]) -> Result<()> {
    for r in rules {
        // An `a` rule resets the whole cgroup in v1 whatever its access;
        // one with fewer than rwm is written as its c and b halves.
        let kinds: &[DeviceType] = match r.kind {
            Kind::All if r.access == RWM => &[DeviceType::All],
            Kind::All => &[DeviceType::Char, DeviceType::Block],
            Kind::Char => &[DeviceType::Char],
            Kind::Block => &[DeviceType::Block],
        };
        let perms: Vec<DevicePermissions> = [
            (READ, DevicePermissions::Read),
            (WRITE, DevicePermissions::Write),
            (MKNOD, DevicePermissions::MkNod),
        ]
        .into_iter()
        .filter(|(bit, _)| r.access & bit != 0)
        .map(|(_, p)| p)
        .collect();
        let number = |n: Option<u32>| n.map_or(-1, i64::from);
        for kind in kinds {
            let (major, minor) = (number(r.major), number(r.minor));
            let written = if r.allow {
                controller.allow_device(*kind, major, minor, &perms)
            } else {
                controller.deny_device(*kind, major, minor, &perms)
            };
            written.with_context(|| format!("writing device rule {r:?}"))?;
        }
    }
    Ok(())
}

/// The last program loaded, with its rules: most containers get the same
/// list (the defaults), and loading (the verifier) costs milliseconds. One
/// entry, so the cache stays as small as one program.
static LAST_LOADED: Mutex<Option<(Vec<Rule>, Arc<OwnedFd>)>> = Mutex::new(None);

fn program_for(rules: &[Rule]) -> Result<Arc<OwnedFd>> {
    let mut last = LAST_LOADED
        .lock()
        .map_err(|_| anyhow::anyhow!("device program cache poisoned by an earlier panic"))?;
    if let Some((_, prog)) = last.as_ref().filter(|(r, _)| r == rules) {
        return Ok(prog.clone());
    }
    let insns = program::emit(rules)?;
    let prog =
        Arc::new(bpf::load_device_program(&insns).context("loading the device BPF program")?);
    *last = Some((rules.to_vec(), prog.clone()));
    Ok(prog)
}

/// Attach the program for `rules` to the v2 cgroup `dir`, then detach the
/// one it replaces (both apply in between: never more than either allows).
/// Returns the new program, to be replaced in turn.
pub fn apply_v2(dir: &Path, rules: &[Rule], old: Option<&Arc<OwnedFd>>) -> Result<Arc<OwnedFd>> {
    let prog = program_for(rules)?;
    if old.is_some_and(|o| Arc::ptr_eq(o, &prog)) {
        return Ok(prog); // already attached (an update that changed nothing)
    }
    let cgroup = bpf::open_cgroup(dir)?;
    bpf::attach(&cgroup, &prog)
        .with_context(|| format!("attaching the device program to {}", dir.display()))?;
    if let Some(old) = old {
        bpf::detach(&cgroup, old)
            .with_context(|| format!("detaching the old device program of {}", dir.display()))?;
    }
    Ok(prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_rule(allow: bool, typ: &str, major: i64, minor: i64, access: &str) -> Rule {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(allow);
        d.set_typ(Some(match typ {
            "c" => LinuxDeviceType::C,
            "b" => LinuxDeviceType::B,
            _ => LinuxDeviceType::A,
        }));
        d.set_major(Some(major));
        d.set_minor(Some(minor));
        d.set_access(Some(access.into()));
        Rule::from_spec(&d).unwrap()
    }

    #[test]
    fn spec_rules_convert_with_wildcards_and_defaults() {
        let r = spec_rule(true, "b", 8, -1, "rw");
        assert_eq!(
            r,
            Rule::allow(Kind::Block, Some(8), None, READ | WRITE),
            "{r:?}"
        );
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(false);
        let r = Rule::from_spec(&d).unwrap();
        assert!(r.is_all() && !r.allow, "no type, no access: a *:* rwm");
        let mut d = LinuxDeviceCgroup::default();
        d.set_major(Some(1 << 40));
        assert!(Rule::from_spec(&d).is_err());
        d.set_major(Some(1));
        d.set_access(Some("rx".into()));
        assert!(Rule::from_spec(&d).is_err());
    }

    #[test]
    fn deny_all_from_the_spec_returns_to_the_defaults() {
        // containerd sends "deny all" first; Kata's defaults must survive it.
        let mut list = defaults();
        let fuse = spec_rule(true, "c", 10, 229, "rwm");
        let restarted = append(&mut list, &[spec_rule(false, "a", -1, -1, "rwm"), fuse]);
        assert!(restarted);
        let mut want = defaults();
        want.push(fuse);
        assert_eq!(list, want);
        // Appending without a deny-all keeps what was there.
        assert!(!append(&mut list, &[spec_rule(false, "c", 1, 3, "w")]));
        assert_eq!(list.len(), want.len() + 1);
    }
}
