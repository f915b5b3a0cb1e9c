//! A resolved profile as a BPF program:
//!
//! ```text
//!   arch != native            -> KILL_PROCESS (the bad-arch action)
//!   x86_64: nr has the x32 bit -> KILL_PROCESS
//!   syscalls whose one rule has no conditions: runs of `jeq nr` per action,
//!     each run ending in its `ret action`
//!   syscalls with conditions: `jeq nr`, then each rule (its conditions on
//!     the 64-bit arguments, then `ret action`), then `ret default`
//!   ret default
//! ```
//! A linear search, as libseccomp emits by default.

use std::collections::BTreeMap;

use anyhow::Result;

use super::arch;
use super::bpf::{Asm, Cmp, Insn, Label};
use super::profile::{Condition, Op, Profile, Rule};

/// What a syscall of an architecture other than the native one meets.
pub const BAD_ARCH_ACTION: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The most `jeq` in one run: each must reach the run's `ret` (255 at most).
const RUN: usize = 200;

pub fn program(p: &Profile) -> Result<Vec<Insn>> {
    let mut a = Asm::default();
    let (native, bad) = (a.label(), a.label());
    a.load(arch::OFFSET_ARCH);
    a.jump(Cmp::Eq, arch::AUDIT_ARCH, native, bad);
    a.bind(bad);
    a.ret(BAD_ARCH_ACTION);
    a.bind(native);
    a.load(arch::OFFSET_NR);
    if let Some(bit) = arch::X32_SYSCALL_BIT {
        let (x32, ok) = (a.label(), a.label());
        a.jump(Cmp::Ge, bit, x32, ok);
        a.bind(x32);
        a.ret(BAD_ARCH_ACTION);
        a.bind(ok);
    }
    let mut plain: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut conditional = Vec::new();
    for (&nr, rules) in &p.syscalls {
        match rules.as_slice() {
            [only] if only.conditions.is_empty() => plain.entry(only.action).or_default().push(nr),
            _ => conditional.push((nr, rules)),
        }
    }
    for (&action, nrs) in &plain {
        for run in nrs.chunks(RUN) {
            jeq_run(&mut a, run, action);
        }
    }
    for (nr, rules) in conditional {
        let (body, next) = (a.label(), a.label());
        let skip = a.label();
        a.jump(Cmp::Eq, nr, body, skip);
        a.bind(skip);
        a.goto(next);
        a.bind(body);
        for rule in rules {
            emit_rule(&mut a, rule);
        }
        if rules.last().is_some_and(|r| !r.conditions.is_empty()) {
            a.ret(p.default_action);
        }
        a.bind(next);
        // The rules loaded arguments; `next` is reached only by the goto,
        // with the number still in A.
    }
    a.ret(p.default_action);
    a.finish()
}

/// `jeq nr` for each of `nrs`, all going to one `ret action`; a miss falls
/// through past it.
fn jeq_run(a: &mut Asm, nrs: &[u32], action: u32) {
    let (hit, miss) = (a.label(), a.label());
    for (i, &nr) in nrs.iter().enumerate() {
        if i + 1 == nrs.len() {
            a.jump(Cmp::Eq, nr, hit, miss);
        } else {
            let next = a.label();
            a.jump(Cmp::Eq, nr, hit, next);
            a.bind(next);
        }
    }
    a.bind(hit);
    a.ret(action);
    a.bind(miss);
}

/// The rule's conditions, each falling through to the next when it holds
/// and going to the rule's end when it does not; then the action.
fn emit_rule(a: &mut Asm, rule: &Rule) {
    let fail = a.label();
    for c in &rule.conditions {
        let ok = a.label();
        condition(a, c, ok, fail);
        a.bind(ok);
    }
    a.ret(rule.action);
    a.bind(fail);
}

/// An unsigned 64-bit comparison of an argument, word by word: the high
/// words decide unless they are equal.
fn condition(a: &mut Asm, c: &Condition, ok: Label, fail: Label) {
    let (hi_at, lo_at) = arch::arg_words(c.index);
    let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
    let low = a.label();
    match c.op {
        Op::Eq | Op::Ne => {
            let (t, f) = if c.op == Op::Eq {
                (ok, fail)
            } else {
                (fail, ok)
            };
            a.load(hi_at);
            a.jump(Cmp::Eq, hi, low, f);
            a.bind(low);
            a.load(lo_at);
            a.jump(Cmp::Eq, lo, t, f);
        }
        Op::MaskedEq { mask } => {
            a.load(hi_at);
            a.and((mask >> 32) as u32);
            a.jump(Cmp::Eq, hi, low, fail);
            a.bind(low);
            a.load(lo_at);
            a.and(mask as u32);
            a.jump(Cmp::Eq, lo, ok, fail);
        }
        // greater: above in the high word, or equal there and above (or, for
        // GE, not below) in the low word. LT and LE are the negations.
        Op::Gt | Op::Ge | Op::Lt | Op::Le => {
            let (t, f) = match c.op {
                Op::Gt | Op::Ge => (ok, fail),
                _ => (fail, ok),
            };
            let low_cmp = match c.op {
                Op::Gt | Op::Le => Cmp::Gt,
                _ => Cmp::Ge,
            };
            let equal = a.label();
            a.load(hi_at);
            a.jump(Cmp::Gt, hi, t, equal);
            a.bind(equal);
            a.jump(Cmp::Eq, hi, low, f);
            a.bind(low);
            a.load(lo_at);
            a.jump(low_cmp, lo, t, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::bpf::run;
    use super::*;

    fn compile(json: &str) -> Vec<Insn> {
        let p = Profile::from_oci(&serde_json::from_str(json).unwrap()).unwrap();
        program(&p).unwrap()
    }

    fn data(arch: u32, nr: u32, args: [u64; 6]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&nr.to_ne_bytes());
        d.extend_from_slice(&arch.to_ne_bytes());
        d.extend_from_slice(&0u64.to_ne_bytes());
        for a in args {
            d.extend_from_slice(&a.to_ne_bytes());
        }
        d
    }

    fn nr(name: &str) -> u32 {
        arch::syscall_number(name).unwrap()
    }

    fn call(prog: &[Insn], name: &str, args: [u64; 6]) -> u32 {
        run(prog, &data(arch::AUDIT_ARCH, nr(name), args))
    }

    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

    #[test]
    fn a_denied_syscall_gets_its_errno_the_others_the_default() {
        let prog = compile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
        );
        assert_eq!(call(&prog, "mkdirat", [0; 6]), EPERM);
        assert_eq!(call(&prog, "openat", [0; 6]), libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn another_abi_meets_the_bad_arch_action() {
        let prog = compile(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#);
        let i386 = 0x4000_0003;
        assert_eq!(run(&prog, &data(i386, 1, [0; 6])), BAD_ARCH_ACTION);
        if let Some(bit) = arch::X32_SYSCALL_BIT {
            let x32 = run(&prog, &data(arch::AUDIT_ARCH, bit | nr("openat"), [0; 6]));
            assert_eq!(x32, BAD_ARCH_ACTION);
        }
    }

    /// Every operator against values around the boundaries, both words.
    #[test]
    fn comparisons_are_unsigned_and_64_bit() {
        let v: u64 = 0x0000_0001_8000_0000;
        let probes = [
            0,
            v - 1,
            v,
            v + 1,
            0x0000_0001_0000_0000,
            0x0000_0002_0000_0000,
            0x8000_0000,
            u64::MAX,
        ];
        for (op, holds) in [
            ("SCMP_CMP_EQ", (|a, b| a == b) as fn(u64, u64) -> bool),
            ("SCMP_CMP_NE", |a, b| a != b),
            ("SCMP_CMP_LT", |a, b| a < b),
            ("SCMP_CMP_LE", |a, b| a <= b),
            ("SCMP_CMP_GT", |a, b| a > b),
            ("SCMP_CMP_GE", |a, b| a >= b),
        ] {
            let prog = compile(&format!(
                r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {{"names": ["openat"], "action": "SCMP_ACT_ERRNO",
                      "args": [{{"index": 2, "value": {v}, "op": "{op}"}}]}}]}}"#
            ));
            for x in probes {
                let want = if holds(x, v) {
                    EPERM
                } else {
                    libc::SECCOMP_RET_ALLOW
                };
                assert_eq!(
                    call(&prog, "openat", [0, 0, x, 0, 0, 0]),
                    want,
                    "{x:#x} {op} {v:#x}"
                );
            }
        }
    }

    #[test]
    fn masked_eq_and_several_conditions() {
        // clone with any namespace flag set is denied (Docker's rule, inverted).
        let prog = compile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["openat"], "action": "SCMP_ACT_KILL_PROCESS",
                 "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_EQ"},
                          {"index": 3, "value": 10, "op": "SCMP_CMP_GT"}]}]}"#,
        );
        let ns = libc::CLONE_NEWNS as u64;
        assert_eq!(call(&prog, "clone", [0, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(
            call(&prog, "clone", [ns, 0, 0, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        assert_eq!(call(&prog, "openat", [3, 0, 0, 11, 0, 0]), kill);
        assert_eq!(
            call(&prog, "openat", [3, 0, 0, 10, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            call(&prog, "openat", [4, 0, 0, 11, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
    }

    #[test]
    fn rules_of_one_syscall_match_in_order() {
        let prog = compile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
                 "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6,
                 "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_GE"}]},
                {"names": ["close"], "action": "SCMP_ACT_LOG"}]}"#,
        );
        let errno = |e: u32| libc::SECCOMP_RET_ERRNO | e;
        assert_eq!(call(&prog, "openat", [0, 1, 0, 0, 0, 0]), errno(5));
        assert_eq!(call(&prog, "openat", [0, 2, 0, 0, 0, 0]), errno(6));
        assert_eq!(
            call(&prog, "openat", [0, 0, 0, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(call(&prog, "close", [0; 6]), libc::SECCOMP_RET_LOG);
    }

    /// An allow list of every syscall this arch has (more than one run per
    /// action), default ERRNO: each listed one is allowed, a number past the
    /// table is not.
    #[test]
    fn a_long_allow_list() {
        let names: Vec<String> = syscalls::Sysno::iter()
            .map(|s| format!("{:?}", s.name()))
            .collect();
        let prog = compile(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {{"names": [{}], "action": "SCMP_ACT_ALLOW"}}]}}"#,
            names.join(",")
        ));
        assert!(names.len() > RUN, "{}", names.len());
        for s in syscalls::Sysno::iter() {
            assert_eq!(
                call(&prog, s.name(), [0; 6]),
                libc::SECCOMP_RET_ALLOW,
                "{}",
                s.name()
            );
        }
        let past = syscalls::Sysno::last().id() as u32 + 1;
        assert_eq!(run(&prog, &data(arch::AUDIT_ARCH, past, [0; 6])), EPERM);
    }
}
