//! The process attributes set by the container init just before execvp:
//! hostname, rlimits, OOM score, session and controlling tty, user and
//! groups, capabilities, no_new_privileges, cwd, environment.

use nix::sys::resource::{setrlimit, Resource};
use std::collections::HashMap;
use std::ffi::CString;

use anyhow::{bail, Context, Result};
use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimitType, Process};

pub fn set_hostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).with_context(|| format!("setting the hostname {name:?}"))
}

/// Everything but the exec. `terminal`: stdio is a pty slave, which becomes
/// the controlling terminal of the new session.
pub fn apply(p: &Process) -> Result<()> {
    set_rlimits(p)?;
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .context("setting oom_score_adj")?;
    }
    nix::unistd::setsid().context("setsid")?;
    if p.terminal().unwrap_or(false) {
        // SAFETY: TIOCSCTTY on fd 0 takes an int argument and touches no memory.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            return Err(std::io::Error::last_os_error())
                .context("making the pty the controlling terminal");
        }
    }
    let caps = p.capabilities().as_ref();
    if let Some(c) = caps {
        drop_bounding(c)?;
    }
    stdio_to_user(p.user().uid())?;
    set_user(p)?;
    if let Some(c) = caps {
        set_caps(c)?;
    }
    if p.no_new_privileges().unwrap_or(false) {
        nix::sys::prctl::set_no_new_privs().context("setting no_new_privileges")?;
    }
    nix::unistd::chdir(p.cwd()).with_context(|| format!("chdir to cwd {}", p.cwd().display()))?;
    set_search_path(p);
    Ok(())
}

/// nix's portable names: libc's resource type differs between glibc and musl.
fn rlimit_resource(t: PosixRlimitType) -> Resource {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => Resource::RLIMIT_CPU,
        RlimitFsize => Resource::RLIMIT_FSIZE,
        RlimitData => Resource::RLIMIT_DATA,
        RlimitStack => Resource::RLIMIT_STACK,
        RlimitCore => Resource::RLIMIT_CORE,
        RlimitRss => Resource::RLIMIT_RSS,
        RlimitNproc => Resource::RLIMIT_NPROC,
        RlimitNofile => Resource::RLIMIT_NOFILE,
        RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        RlimitAs => Resource::RLIMIT_AS,
        RlimitLocks => Resource::RLIMIT_LOCKS,
        RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        RlimitNice => Resource::RLIMIT_NICE,
        RlimitRtprio => Resource::RLIMIT_RTPRIO,
        RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        setrlimit(rlimit_resource(r.typ()), r.soft(), r.hard())
            .with_context(|| format!("setting rlimit {}", r.typ()))?;
    }
    Ok(())
}

fn to_caps(set: &Option<oci_spec::runtime::Capabilities>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        let cap: Capability = name.parse().map_err(|_| {
            anyhow::anyhow!("capability {name} is unknown to this kernel interface")
        })?;
        out.insert(cap);
    }
    Ok(out)
}

/// The bounding set can only shrink, and only while we still hold
/// CAP_SETPCAP: before changing user.
fn drop_bounding(c: &LinuxCapabilities) -> Result<()> {
    let keep = to_caps(c.bounding())?;
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .with_context(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    Ok(())
}

fn set_caps(c: &LinuxCapabilities) -> Result<()> {
    // capset checks every set against the others: shrink effective first
    // (it must stay within permitted), then permitted, then inheritable.
    caps::set(None, CapSet::Effective, &to_caps(c.effective())?)
        .context("setting effective capabilities")?;
    caps::set(None, CapSet::Permitted, &to_caps(c.permitted())?)
        .context("setting permitted capabilities")?;
    caps::set(None, CapSet::Inheritable, &to_caps(c.inheritable())?)
        .context("setting inheritable capabilities")?;
    // Ambient capabilities need to be permitted and inheritable; a kernel
    // without ambient support (< 4.3) is not an error.
    let ambient = to_caps(c.ambient())?;
    if !ambient.is_empty() {
        caps::set(None, CapSet::Ambient, &ambient).context("setting ambient capabilities")?;
    }
    Ok(())
}

/// Give the process's user its stdio (pipes or pty), so a non-root process
/// can open /dev/stdout or /proc/self/fd/1 by path, as Kata's rustjail does
/// (container.rs set_stdio_permissions). /dev/null stays root's. Done while
/// still root.
fn stdio_to_user(uid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let null = std::fs::metadata("/dev/null").ok().map(|m| m.rdev());
    for fd in 0..3 {
        // SAFETY: 0, 1 and 2 are open in the container init (its stdio).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let st = nix::sys::stat::fstat(fd).context("fstat on stdio")?;
        let is_null = (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && Some(st.st_rdev) == null;
        if is_null || st.st_uid == uid {
            continue;
        }
        nix::unistd::fchown(fd, Some(nix::unistd::Uid::from_raw(uid)), None)
            .context("giving the process's user its stdio")?;
    }
    Ok(())
}

fn set_user(p: &Process) -> Result<()> {
    let user = p.user();
    let gids: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&gids).context("setting additional groups")?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(user.gid()))
        .with_context(|| format!("setgid {}", user.gid()))?;
    // Keep the permitted set across setuid; the spec's sets are applied next.
    nix::sys::prctl::set_keepcaps(true).context("PR_SET_KEEPCAPS")?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(user.uid()))
        .with_context(|| format!("setuid {}", user.uid()))?;
    Ok(())
}

/// The process's environment as execve takes it, built in one pass: a name
/// given twice keeps its last value at its first place (setenv's result).
/// Setting each entry with setenv would rescan the whole environment every
/// time: quadratic, minutes for 100,000 entries.
pub fn environment(p: &Process) -> Result<Vec<CString>> {
    let entries = p.env().as_deref().unwrap_or_default();
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
    let mut out: Vec<&str> = Vec::with_capacity(entries.len());
    for e in entries {
        let Some((k, _)) = e.split_once('=') else {
            continue;
        };
        if k.is_empty() {
            continue;
        }
        match index.get(k) {
            Some(&i) => out[i] = e,
            None => {
                index.insert(k, out.len());
                out.push(e);
            }
        }
    }
    out.into_iter()
        .map(|e| CString::new(e).with_context(|| format!("environment entry {e:?} has a NUL")))
        .collect()
}

/// The home directory of `uid` in a passwd(5) text.
fn home_of(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let matches = fields.len() >= 7 && fields[2].parse() == Ok(uid);
        (matches && !fields[5].is_empty()).then_some(fields[5])
    })
}

/// Only PATH stays in our own environment: execvpe searches the program in
/// the caller's PATH, which must be the container's.
fn set_search_path(p: &Process) {
    for (k, _) in std::env::vars_os() {
        std::env::remove_var(k);
    }
    let path = p
        .env()
        .iter()
        .flatten()
        .filter_map(|e| e.strip_prefix("PATH="))
        .next_back();
    if let Some(path) = path {
        std::env::set_var("PATH", path);
    }
}

/// execvpe the process's args with its environment; PATH is the
/// container's (set by `apply`).
pub fn exec(p: &Process) -> Result<()> {
    let mut env = environment(p)?;
    if !env.iter().any(|e| e.as_bytes().starts_with(b"HOME=")) {
        // As Kata's agent (rustjail container.rs): the user's home from the
        // container's /etc/passwd, else "/".
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let home = home_of(&passwd, p.user().uid()).unwrap_or("/");
        env.push(CString::new(format!("HOME={home}")).context("HOME has a NUL")?);
    }
    let args = p.args().as_ref().context("the process has no args")?;
    let cargs: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("an argument contains a NUL byte")?;
    let Some(prog) = cargs.first() else {
        bail!("the process has no args");
    };
    let err = nix::unistd::execvpe(prog, &cargs, &env).unwrap_err();
    Err(err).with_context(|| format!("executing {:?}", args[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(env: Vec<String>) -> Process {
        let mut p = Process::default();
        p.set_env(Some(env));
        p
    }

    #[test]
    fn a_repeated_name_keeps_its_last_value_at_its_first_place() {
        let p = process(
            ["A=1", "B=2", "A=3", "=x", "noequals", "C="]
                .map(String::from)
                .to_vec(),
        );
        let env = environment(&p).unwrap();
        let env: Vec<&str> = env.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(env, ["A=3", "B=2", "C="]);
    }

    /// 100,000 entries (more than a request may carry, limits.rs), each name twice: the result
    /// is every name once, at its first place, with its last value. (The
    /// speed of this, which was quadratic, is a benchmark's business, not a
    /// timed test's: a loaded CI machine made the old 1 s bound fail.)
    #[test]
    fn a_hundred_thousand_entries_with_repeats_keep_first_place_and_last_value() {
        let env: Vec<String> = (0..100_000)
            .map(|i| {
                let name = i % 50_000;
                format!("VAR_{name}={i}")
            })
            .collect();
        let out = environment(&process(env)).unwrap();
        assert_eq!(out.len(), 50_000);
        for (k, c) in out.iter().enumerate() {
            assert_eq!(c.to_str().unwrap(), format!("VAR_{k}={}", k + 50_000));
        }
    }
}
