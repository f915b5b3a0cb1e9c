//! A small classic-BPF assembler: the handful of instructions a seccomp
//! filter needs, with forward jumps to labels resolved at the end (a
//! conditional jump reaches 255 instructions, `ja` any distance).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The kernel's limit on a filter's length (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

// <linux/bpf_common.h>
const BPF_LD: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_AND: u16 = 0x50;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;

/// One instruction, laid out as the kernel's `struct sock_filter`. On the
/// container init's sync channel it is one number (see `From<u64>`): a
/// Docker-like profile is several hundred instructions, and numbers are
/// quicker to write and parse than as many four-key objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "u64", into = "u64")]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// code, jt, jf and k from the most significant bits down.
impl From<Insn> for u64 {
    fn from(i: Insn) -> u64 {
        (u64::from(i.code) << 48)
            | (u64::from(i.jt) << 40)
            | (u64::from(i.jf) << 32)
            | u64::from(i.k)
    }
}

impl From<u64> for Insn {
    fn from(v: u64) -> Insn {
        Insn {
            code: (v >> 48) as u16,
            jt: (v >> 40) as u8,
            jf: (v >> 32) as u8,
            k: v as u32,
        }
    }
}

/// An unsigned comparison of the accumulator with a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

enum Item {
    Plain(Insn),
    Jump {
        cmp: Cmp,
        k: u32,
        jt: Label,
        jf: Label,
    },
    Always(Label),
    Bind(Label),
}

#[derive(Default)]
pub struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// `l` is the position of the next instruction.
    pub fn bind(&mut self, l: Label) {
        self.items.push(Item::Bind(l));
    }

    /// A = the 32-bit word at `offset` in seccomp_data.
    pub fn load(&mut self, offset: u32) {
        self.plain(BPF_LD | BPF_W | BPF_ABS, offset);
    }

    /// A &= k.
    pub fn and(&mut self, k: u32) {
        self.plain(BPF_ALU | BPF_AND | BPF_K, k);
    }

    pub fn ret(&mut self, k: u32) {
        self.plain(BPF_RET | BPF_K, k);
    }

    /// Go to `jt` if `A cmp k`, else to `jf`.
    pub fn jump(&mut self, cmp: Cmp, k: u32, jt: Label, jf: Label) {
        self.items.push(Item::Jump { cmp, k, jt, jf });
    }

    pub fn goto(&mut self, l: Label) {
        self.items.push(Item::Always(l));
    }

    fn plain(&mut self, code: u16, k: u32) {
        self.items.push(Item::Plain(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }

    /// The program, every label resolved. Fails on a program longer than the
    /// kernel takes, and (a bug of the caller) on a backward or unbound
    /// label or a conditional jump farther than 255.
    pub fn finish(self) -> Result<Vec<Insn>> {
        let mut at = vec![None; self.labels];
        let mut n = 0usize;
        for item in &self.items {
            match item {
                Item::Bind(l) => at[l.0] = Some(n),
                _ => n += 1,
            }
        }
        if n > MAX_INSNS {
            bail!(
                "the seccomp filter needs {n} BPF instructions, more than the kernel's {MAX_INSNS}"
            );
        }
        let offset = |from: usize, l: Label| -> Result<usize> {
            match at[l.0] {
                Some(to) if to > from => Ok(to - from - 1),
                _ => bail!("seccomp filter: label {} is unbound or behind {from}", l.0),
            }
        };
        let short = |from: usize, l: Label| -> Result<u8> {
            let d = offset(from, l)?;
            u8::try_from(d).map_err(|_| anyhow::anyhow!("seccomp filter: a jump of {d} at {from}"))
        };
        let mut out = Vec::with_capacity(n);
        for item in &self.items {
            let pc = out.len();
            match *item {
                Item::Bind(_) => continue,
                Item::Plain(i) => out.push(i),
                Item::Always(l) => out.push(Insn {
                    code: BPF_JMP | BPF_JA,
                    jt: 0,
                    jf: 0,
                    k: offset(pc, l)? as u32,
                }),
                Item::Jump { cmp, k, jt, jf } => {
                    let op = match cmp {
                        Cmp::Eq => BPF_JEQ,
                        Cmp::Gt => BPF_JGT,
                        Cmp::Ge => BPF_JGE,
                    };
                    out.push(Insn {
                        code: BPF_JMP | op | BPF_K,
                        jt: short(pc, jt)?,
                        jf: short(pc, jf)?,
                        k,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Runs a program on `data` (a seccomp_data image) the way the kernel does,
/// for the tests of the modules that emit programs.
#[cfg(test)]
pub fn run(prog: &[Insn], data: &[u8]) -> u32 {
    let word = |off: u32| {
        let o = off as usize;
        let b: [u8; 4] = data[o..o + 4].try_into().unwrap();
        u32::from_ne_bytes(b)
    };
    let (mut pc, mut a) = (0usize, 0u32);
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => a = word(i.k),
            c if c == BPF_ALU | BPF_AND | BPF_K => a &= i.k,
            c if c == BPF_RET | BPF_K => return i.k,
            c if c == BPF_JMP | BPF_JA => pc += i.k as usize,
            c => {
                let taken = match c & 0xf0 {
                    BPF_JEQ => a == i.k,
                    BPF_JGT => a > i.k,
                    BPF_JGE => a >= i.k,
                    _ => panic!("instruction {i:?} is not one the assembler emits"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instruction_survives_its_json_number() {
        let i = Insn {
            code: 0xffee,
            jt: 0xdd,
            jf: 0xcc,
            k: 0xbbaa_9988,
        };
        let text = serde_json::to_string(&[i]).unwrap();
        assert_eq!(text, format!("[{}]", 0xffee_ddcc_bbaa_9988u64));
        assert_eq!(serde_json::from_str::<Vec<Insn>>(&text).unwrap(), [i]);
    }

    #[test]
    fn labels_become_forward_offsets() {
        let mut a = Asm::default();
        let (yes, no) = (a.label(), a.label());
        a.load(0);
        a.jump(Cmp::Eq, 7, yes, no);
        a.bind(no);
        a.ret(1);
        a.bind(yes);
        a.ret(2);
        let prog = a.finish().unwrap();
        assert_eq!(prog[1].jt, 1);
        assert_eq!(prog[1].jf, 0);
        assert_eq!(run(&prog, &7u32.to_ne_bytes()), 2);
        assert_eq!(run(&prog, &8u32.to_ne_bytes()), 1);
    }

    #[test]
    fn a_long_way_is_taken_with_goto() {
        let mut a = Asm::default();
        let far = a.label();
        a.goto(far);
        for _ in 0..1000 {
            a.ret(0);
        }
        a.bind(far);
        a.ret(9);
        let prog = a.finish().unwrap();
        assert_eq!(run(&prog, &[0; 4]), 9);
    }

    #[test]
    fn bad_programs_are_refused() {
        let mut a = Asm::default();
        let far = a.label();
        a.load(0);
        a.jump(Cmp::Eq, 0, far, far);
        for _ in 0..300 {
            a.ret(0);
        }
        a.bind(far);
        assert!(a.finish().is_err(), "a conditional jump past 255");

        let mut a = Asm::default();
        let l = a.label();
        a.bind(l);
        a.goto(l);
        assert!(a.finish().is_err(), "a backward jump");

        let mut a = Asm::default();
        for _ in 0..=MAX_INSNS {
            a.ret(0);
        }
        let err = a.finish().unwrap_err().to_string();
        assert!(err.contains("4097"), "{err}");
    }
}
