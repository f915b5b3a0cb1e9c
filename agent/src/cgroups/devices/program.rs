//! The BPF_PROG_TYPE_CGROUP_DEVICE program for a rule list.
//!
//! The kernel runs it on every mknod and open of a device node by a process
//! of the cgroup, with a `struct bpf_cgroup_dev_ctx` (u32 access_type:
//! access << 16 | type; u32 major; u32 minor), and allows the access when it
//! returns 1. runc (libcontainer/cgroups/devices/devicefilter) and youki
//! (libcgroups/src/v2/devices) emit such programs; this one is written from
//! the kernel's interface (include/uapi/linux/bpf.h).
//!
//! Unlike theirs, each requested access bit is decided on its own: the last
//! rule that matches the device and holds that bit decides it, and the
//! request passes only if every bit it asks for does. So "allow c 1:3 rwm"
//! followed by "deny c 1:3 w" refuses an O_RDWR open, and two rules
//! allowing r and w separately allow it, as the v1 controller does.
//!
//! The program, for each bit b in m, r, w:
//!   if the request lacks b: go to the next bit
//!   for each rule holding b, last first: if it matches: allow -> next bit,
//!                                                       deny -> return 0
//!   return 0 (no rule)
//! and then return 1. A rule that matches every device ends its bit: the
//! verifier refuses code after it, which could never run.

use super::{Kind, Rule, MKNOD, READ, WRITE};

/// One instruction, as the kernel's `struct bpf_insn`: the two 4-bit
/// register fields are a C bit-field, so their order in the byte follows
/// the target's byte order (s390x is big-endian).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        let regs = if cfg!(target_endian = "big") {
            (dst << 4) | src
        } else {
            dst | (src << 4)
        };
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    pub fn dst(&self) -> u8 {
        if cfg!(target_endian = "big") {
            self.regs >> 4
        } else {
            self.regs & 0xf
        }
    }

    pub fn src(&self) -> u8 {
        if cfg!(target_endian = "big") {
            self.regs & 0xf
        } else {
            self.regs >> 4
        }
    }
}

/// Opcodes used (class | operation | source), from linux/bpf_common.h.
pub const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
pub const ALU32_MOV_X: u8 = 0xbc; // dst = (u32)src
pub const ALU32_AND_K: u8 = 0x54; // dst &= imm
pub const ALU32_RSH_K: u8 = 0x74; // dst >>= imm
pub const ALU64_MOV_K: u8 = 0xb7; // dst = imm
pub const JMP_JEQ_K: u8 = 0x15; // if dst == imm goto +off
pub const JMP_JNE_K: u8 = 0x55; // if dst != imm goto +off
pub const JMP_JA: u8 = 0x05; // goto +off
pub const JMP_EXIT: u8 = 0x95; // return r0

/// Registers: r1 holds the context on entry and is then scratch.
const R0: u8 = 0;
const R1: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;

/// BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// The program for `rules` (in spec order). Fails only for a list too long
/// for a jump to cross (limits::MAX_DEVICE_RULES keeps lists far shorter).
pub fn emit(rules: &[Rule]) -> anyhow::Result<Vec<Insn>> {
    let mut a = Asm::default();
    a.push(Insn::new(LDX_MEM_W, TYPE, R1, 0, 0));
    a.push(Insn::new(ALU32_MOV_X, ACCESS, TYPE, 0, 0));
    a.push(Insn::new(ALU32_AND_K, TYPE, 0, 0, 0xffff));
    a.push(Insn::new(ALU32_RSH_K, ACCESS, 0, 0, 16));
    a.push(Insn::new(LDX_MEM_W, MAJOR, R1, 4, 0));
    a.push(Insn::new(LDX_MEM_W, MINOR, R1, 8, 0));
    for bit in [MKNOD, READ, WRITE] {
        let done = a.label();
        a.push(Insn::new(ALU32_MOV_X, R1, ACCESS, 0, 0));
        a.push(Insn::new(ALU32_AND_K, R1, 0, 0, i32::from(bit)));
        a.jump(JMP_JEQ_K, R1, 0, done);
        let mut ended = false;
        for rule in rules.iter().rev().filter(|r| r.access & bit != 0) {
            let next = a.label();
            let mut tests = Vec::new();
            match rule.kind {
                // The kernel ignores the numbers of an `a` rule; so does v1.
                Kind::All => {}
                Kind::Char => tests.push((TYPE, DEV_CHAR)),
                Kind::Block => tests.push((TYPE, DEV_BLOCK)),
            }
            if rule.kind != Kind::All {
                tests.extend(rule.major.map(|m| (MAJOR, m as i32)));
                tests.extend(rule.minor.map(|m| (MINOR, m as i32)));
            }
            for &(reg, value) in &tests {
                a.jump(JMP_JNE_K, reg, value, next);
            }
            if rule.allow {
                a.jump(JMP_JA, 0, 0, done);
            } else {
                a.push(Insn::new(ALU64_MOV_K, R0, 0, 0, 0));
                a.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
            }
            a.bind(next);
            if tests.is_empty() {
                ended = true;
                break;
            }
        }
        if !ended {
            a.push(Insn::new(ALU64_MOV_K, R0, 0, 0, 0));
            a.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
        }
        a.bind(done);
    }
    a.push(Insn::new(ALU64_MOV_K, R0, 0, 0, 1));
    a.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
    a.finish()
}

/// Forward jumps to labels, resolved at the end.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, usize)>,
}

impl Asm {
    fn push(&mut self, i: Insn) {
        self.insns.push(i);
    }

    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.insns.len());
    }

    fn jump(&mut self, code: u8, dst: u8, imm: i32, label: usize) {
        self.fixups.push((self.insns.len(), label));
        self.push(Insn::new(code, dst, 0, 0, imm));
    }

    fn finish(mut self) -> anyhow::Result<Vec<Insn>> {
        for (at, label) in self.fixups {
            // Every label is bound after its jumps.
            let target = self.labels[label].unwrap_or(self.insns.len());
            self.insns[at].off = i16::try_from(target - at - 1)
                .map_err(|_| anyhow::anyhow!("device rule list too long for one BPF program"))?;
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{defaults, RWM};
    use super::*;

    /// Runs a program of the instructions `emit` uses, as the kernel would.
    fn run(prog: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..100_000 {
            let i = prog[pc];
            let (d, s) = (usize::from(i.dst()), usize::from(i.src()));
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(s, 1, "loads only from the context");
                    r[d] = u64::from(ctx[i.off as usize / 4]);
                }
                ALU32_MOV_X => r[d] = r[s] & 0xffff_ffff,
                ALU32_AND_K => r[d] = (r[d] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[d] = ((r[d] as u32) >> i.imm) as u64,
                ALU64_MOV_K => r[d] = i.imm as i64 as u64,
                JMP_JEQ_K | JMP_JNE_K | JMP_JA => {
                    let eq = r[d] == i.imm as i64 as u64;
                    let taken = match i.code {
                        JMP_JEQ_K => eq,
                        JMP_JNE_K => !eq,
                        _ => true,
                    };
                    if taken {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                JMP_EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
        panic!("the program does not end");
    }

    /// The list's meaning, straight from the rules.
    fn decide(rules: &[Rule], kind: Kind, major: u32, minor: u32, access: u8) -> bool {
        [MKNOD, READ, WRITE]
            .into_iter()
            .filter(|b| access & b != 0)
            .all(|bit| {
                rules
                    .iter()
                    .rev()
                    .find(|r| {
                        r.access & bit != 0
                            && (r.kind == Kind::All
                                || (r.kind == kind
                                    && r.major.is_none_or(|m| m == major)
                                    && r.minor.is_none_or(|m| m == minor)))
                    })
                    .is_some_and(|r| r.allow)
            })
    }

    fn rule(allow: bool, kind: Kind, major: Option<u32>, minor: Option<u32>, access: u8) -> Rule {
        Rule {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    /// Every device of interest and every access, program against meaning.
    fn check_agrees(rules: &[Rule]) {
        let prog = emit(rules).unwrap();
        for (kind, typ) in [(Kind::Char, DEV_CHAR), (Kind::Block, DEV_BLOCK)] {
            for (major, minor) in [
                (1, 3),
                (1, 9),
                (5, 2),
                (136, 7),
                (254, 0),
                (8, 1),
                (10, 200),
            ] {
                for access in 1..=RWM {
                    let want = decide(rules, kind, major, minor, access);
                    let got = run(&prog, typ as u32, u32::from(access), major, minor);
                    assert_eq!(
                        got,
                        u64::from(want),
                        "{kind:?} {major}:{minor} access {access:#b} with {rules:?}"
                    );
                }
            }
        }
    }

    /// (type, access, major, minor, allowed, what) against the program.
    fn assert_cases(prog: &[Insn], cases: &[(i32, u8, u32, u32, u64, &str)]) {
        for &(typ, access, major, minor, want, what) in cases {
            let got = run(prog, typ as u32, u32::from(access), major, minor);
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn the_defaults_allow_the_default_devices_and_mknod_only() {
        let rw = READ | WRITE;
        assert_cases(
            &emit(&defaults()).unwrap(),
            &[
                (DEV_CHAR, rw, 1, 3, 1, "/dev/null"),
                (DEV_CHAR, rw, 136, 4, 1, "/dev/pts/4"),
                (DEV_BLOCK, rw, 254, 0, 0, "vda read-write"),
                (DEV_BLOCK, READ, 254, 0, 0, "vda read"),
                (DEV_BLOCK, MKNOD, 254, 0, 1, "vda mknod"),
                (DEV_CHAR, rw, 1, 1, 0, "/dev/mem"),
            ],
        );
        check_agrees(&defaults());
    }

    #[test]
    fn later_rules_win_bit_by_bit() {
        let mut rules = defaults();
        rules.push(rule(true, Kind::Block, Some(254), None, READ));
        rules.push(rule(true, Kind::Block, Some(254), Some(0), WRITE));
        rules.push(rule(false, Kind::Char, Some(1), Some(3), WRITE));
        rules.push(rule(true, Kind::Char, None, None, RWM));
        rules.push(rule(false, Kind::Char, Some(10), Some(200), READ));
        check_agrees(&rules);
        let rw = READ | WRITE;
        assert_cases(
            &emit(&rules).unwrap(),
            &[
                (DEV_BLOCK, rw, 254, 0, 1, "r and w allowed apart"),
                (DEV_BLOCK, rw, 254, 1, 0, "only r on 254:1"),
                (DEV_CHAR, rw, 10, 200, 0, "r denied last"),
            ],
        );
    }

    #[test]
    fn allow_all_and_empty_lists() {
        check_agrees(&[]);
        check_agrees(&[rule(true, Kind::All, None, None, RWM)]);
        let mut rules = defaults();
        rules.push(rule(true, Kind::All, Some(7), None, READ));
        rules.push(rule(false, Kind::Block, None, None, WRITE));
        check_agrees(&rules);
        // Nothing follows a rule that matches every device (the verifier
        // refuses unreachable code): the deny-all base ends each bit.
        let prog = emit(&defaults()).unwrap();
        let exits = prog.iter().filter(|i| i.code == JMP_EXIT).count();
        assert_eq!(exits, 3 + 1, "one deny per bit, one allow");
    }

    #[test]
    fn registers_sit_in_the_bit_field_order_of_the_target() {
        let i = Insn::new(LDX_MEM_W, 4, 1, 4, 0);
        let bytes: [u8; 8] = unsafe { std::mem::transmute(i) };
        let want = if cfg!(target_endian = "big") {
            0x41
        } else {
            0x14
        };
        assert_eq!(bytes[1], want);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
