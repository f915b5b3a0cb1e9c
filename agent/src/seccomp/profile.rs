//! An OCI `linux.seccomp` profile, checked and resolved for this
//! architecture: the kernel's return values, and for each syscall number
//! its rules in order.
//!
//! The semantics are libseccomp's, as Kata's agent (rustjail/src/seccomp.rs)
//! and runc use it: a rule whose action is the default action is dropped;
//! a syscall name this architecture does not have is skipped (and reported);
//! ERRNO and TRACE without errnoRet return EPERM; MASKED_EQ takes the mask in
//! `value` and the value in `valueTwo`. Rules of one syscall match in the
//! profile's order, the first whose conditions all hold deciding; a rule
//! without conditions ends the list.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg, LinuxSeccompFilterFlag as Flag,
    LinuxSeccompOperator as Operator,
};

use super::arch;

/// More conditions than this on one rule are refused: keeps every jump of
/// a rule within a conditional jump's reach (and no real profile near it).
pub const MAX_CONDITIONS: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// (argument & mask) == value
    MaskedEq {
        mask: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    pub index: usize,
    pub op: Op,
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The SECCOMP_RET_* value.
    pub action: u32,
    /// All must hold; none: the rule always matches.
    pub conditions: Vec<Condition>,
}

#[derive(Debug)]
pub struct Profile {
    pub default_action: u32,
    /// SECCOMP_FILTER_FLAG_* bits for seccomp(2).
    pub flags: libc::c_ulong,
    /// Native syscall number -> its rules.
    pub syscalls: BTreeMap<u32, Vec<Rule>>,
    /// Names this architecture does not have, in the profile's order.
    pub unknown_names: Vec<String>,
}

impl Profile {
    pub fn from_oci(s: &LinuxSeccomp) -> Result<Profile> {
        let default_action =
            action_value(s.default_action(), s.default_errno_ret()).context("defaultAction")?;
        let mut p = Profile {
            default_action,
            flags: flags(s.flags().as_deref().unwrap_or_default())?,
            syscalls: BTreeMap::new(),
            unknown_names: Vec::new(),
        };
        // Other ABIs get no rules (see `arch`); naming them is not an error,
        // Docker's default profile names them all.
        for (i, sc) in s.syscalls().iter().flatten().enumerate() {
            let ctx = || format!("syscalls[{i}] ({})", sc.names().join(", "));
            if sc.names().is_empty() {
                bail!("syscalls[{i}] has no names");
            }
            let rule = Rule {
                action: action_value(sc.action(), sc.errno_ret()).with_context(ctx)?,
                conditions: conditions(sc.args().as_deref().unwrap_or_default())
                    .with_context(ctx)?,
            };
            if rule.action == default_action {
                continue;
            }
            for name in sc.names() {
                match arch::syscall_number(name) {
                    Some(nr) => p.add(nr, rule.clone()),
                    None if !p.unknown_names.contains(name) => p.unknown_names.push(name.clone()),
                    None => {}
                }
            }
        }
        Ok(p)
    }

    fn add(&mut self, nr: u32, rule: Rule) {
        let rules = self.syscalls.entry(nr).or_default();
        // After a rule that always matches, nothing more can.
        if rules.last().is_some_and(|r| r.conditions.is_empty()) {
            return;
        }
        rules.push(rule);
    }
}

/// The SECCOMP_RET_* value of an action.
fn action_value(a: Action, errno_ret: Option<u32>) -> Result<u32> {
    let data = || -> Result<u32> {
        let e = errno_ret.unwrap_or(libc::EPERM as u32);
        if e > libc::SECCOMP_RET_DATA {
            bail!("errnoRet {e} does not fit seccomp's 16-bit return data");
        }
        Ok(e)
    };
    Ok(match a {
        Action::ScmpActKill | Action::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        Action::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        Action::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        Action::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data()?,
        Action::ScmpActTrace => libc::SECCOMP_RET_TRACE | data()?,
        Action::ScmpActLog => libc::SECCOMP_RET_LOG,
        Action::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        Action::ScmpActNotify => {
            bail!("SCMP_ACT_NOTIFY is not supported by this agent (no seccomp listener)")
        }
    })
}

fn flags(list: &[Flag]) -> Result<libc::c_ulong> {
    let mut bits = 0;
    for f in list {
        bits |= match f {
            Flag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            // The container init is single-threaded: syncing threads is a no-op,
            // but the kernel checks the flag all the same.
            Flag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            Flag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            Flag::SeccompFilterFlagWaitKillableRecv => bail!(
                "seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs SCMP_ACT_NOTIFY, \
                 which this agent does not support"
            ),
        };
    }
    Ok(bits)
}

fn conditions(args: &[LinuxSeccompArg]) -> Result<Vec<Condition>> {
    if args.len() > MAX_CONDITIONS {
        bail!(
            "{} argument conditions in one rule, more than {MAX_CONDITIONS}",
            args.len()
        );
    }
    args.iter()
        .map(|a| {
            if a.index() >= arch::MAX_ARGS {
                bail!(
                    "argument index {} (a syscall has {} arguments)",
                    a.index(),
                    arch::MAX_ARGS
                );
            }
            let (op, value) = match a.op() {
                Operator::ScmpCmpNe => (Op::Ne, a.value()),
                Operator::ScmpCmpLt => (Op::Lt, a.value()),
                Operator::ScmpCmpLe => (Op::Le, a.value()),
                Operator::ScmpCmpEq => (Op::Eq, a.value()),
                Operator::ScmpCmpGe => (Op::Ge, a.value()),
                Operator::ScmpCmpGt => (Op::Gt, a.value()),
                Operator::ScmpCmpMaskedEq => {
                    (Op::MaskedEq { mask: a.value() }, a.value_two().unwrap_or(0))
                }
            };
            Ok(Condition {
                index: a.index(),
                op,
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> Result<Profile> {
        Profile::from_oci(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn actions_and_errno() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                "syscalls": [
                  {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["openat"], "action": "SCMP_ACT_ERRNO"},
                  {"names": ["close"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
                  {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
                ]}"#,
        )
        .unwrap();
        assert_eq!(p.default_action, libc::SECCOMP_RET_ERRNO | 38);
        let only = |name: &str| {
            let rules = &p.syscalls[&arch::syscall_number(name).unwrap()];
            assert_eq!(rules.len(), 1, "{name}");
            rules[0].action
        };
        assert_eq!(only("read"), libc::SECCOMP_RET_ALLOW);
        assert_eq!(only("write"), libc::SECCOMP_RET_ALLOW);
        assert_eq!(only("openat"), libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
        assert_eq!(only("close"), libc::SECCOMP_RET_TRACE | 7);
        // Equal to the default action: no rule.
        assert!(!p
            .syscalls
            .contains_key(&arch::syscall_number("getpid").unwrap()));
    }

    #[test]
    fn unknown_names_are_skipped_and_reported_once() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                  {"names": ["no_such_call", "openat", "no_such_call"], "action": "SCMP_ACT_ERRNO"}
                ]}"#,
        )
        .unwrap();
        assert_eq!(p.unknown_names, ["no_such_call"]);
        assert_eq!(p.syscalls.len(), 1);
    }

    #[test]
    fn a_rule_without_conditions_ends_the_list() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                  {"names": ["openat"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                  {"names": ["openat"], "action": "SCMP_ACT_KILL"},
                  {"names": ["openat"], "action": "SCMP_ACT_TRAP"}
                ]}"#,
        )
        .unwrap();
        let rules = &p.syscalls[&arch::syscall_number("openat").unwrap()];
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].action, libc::SECCOMP_RET_KILL_THREAD);
    }

    #[test]
    fn masked_eq_takes_the_mask_from_value() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                  {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
                ]}"#,
        )
        .unwrap();
        let rule = &p.syscalls[&arch::syscall_number("clone").unwrap()][0];
        assert_eq!(
            rule.conditions,
            [Condition {
                index: 0,
                op: Op::MaskedEq { mask: 2114060288 },
                value: 0
            }]
        );
    }

    #[test]
    fn flags_map_to_seccomp_bits() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#,
        )
        .unwrap();
        assert_eq!(
            p.flags,
            libc::SECCOMP_FILTER_FLAG_LOG
                | libc::SECCOMP_FILTER_FLAG_TSYNC
                | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
    }

    #[test]
    fn what_cannot_be_applied_is_refused_with_the_reason() {
        for (json, want) in [
            (r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#, "SCMP_ACT_NOTIFY"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
                "WAIT_KILLABLE_RECV",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}"#,
                "no names",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                    "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}"#,
                "16-bit",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                    "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#,
                "argument index 6",
            ),
        ] {
            let err = format!("{:#}", profile(json).unwrap_err());
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
