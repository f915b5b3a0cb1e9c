//! The one way the xtask runs a host tool. Every command is shown the same
//! way (with `-v`), its output goes to the step's log file (or is captured),
//! and a failure reads the same everywhere: the command line, the exit
//! status, and the log's tail.
//!
//! Why not `xshell`: QEMU, the vsock backend and virtiofsd must be spawned
//! into a `vm::cleanup::Session` (process groups, Ctrl-C), which takes a
//! `std::process::Command`; xshell 0.2 can only run to completion, and it
//! cannot send a child's output to a log file. So: std's `Command`, and
//! these few functions around it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

use crate::ui;

/// How many lines of a failed command's log an error shows.
const TAIL_LINES: usize = 40;

/// The cargo that runs us (`cargo xtask` sets `CARGO`), else `cargo` in PATH.
pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

/// A copy-pasteable shell line for `cmd` (program and arguments).
pub fn line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quote one word for a shell only when it needs it.
pub fn quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// Run `cmd` to completion with its stdout and stderr appended to `log`.
/// On failure the error has the command, its status and the log's tail.
pub fn run(cmd: &mut Command, log: &Path) -> Result<()> {
    run_accepting(cmd, log, &[0]).map(|_| ())
}

/// [`run`], also accepting the exit codes in `ok` (returns the code).
pub fn run_accepting(cmd: &mut Command, log: &Path, ok: &[i32]) -> Result<i32> {
    let text = line(cmd);
    ui::detail(format!("$ {text}"));
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = file
        .try_clone()
        .with_context(|| format!("opening {}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .with_context(|| {
            format!("starting `{text}` (is it installed? see `cargo xtask doctor`)")
        })?;
    match status.code() {
        Some(code) if ok.contains(&code) => Ok(code),
        _ => bail!(
            "`{text}` failed ({status}); last lines of {}:\n{}",
            log.display(),
            tail(log, TAIL_LINES)
        ),
    }
}

/// Run `cmd` with the terminal as its output: for a child `cargo xtask` or
/// `cargo test`, whose output is what the user asked to see.
pub fn run_attached(cmd: &mut Command) -> Result<()> {
    let text = line(cmd);
    ui::detail(format!("$ {text}"));
    let status = cmd.status().with_context(|| {
        format!("starting `{text}` (is it installed? see `cargo xtask doctor`)")
    })?;
    if !status.success() {
        bail!("`{text}` failed ({status}); its output is above");
    }
    Ok(())
}

/// Run `cmd` and return its stdout (trimmed); stderr goes into the error.
pub fn read(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Run `cmd` with stdout and stderr captured; a non-zero exit is an error
/// that quotes stderr's tail.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let text = line(cmd);
    ui::detail(format!("$ {text}"));
    let out = cmd.stdin(Stdio::null()).output().with_context(|| {
        format!("starting `{text}` (is it installed? see `cargo xtask doctor`)")
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`{text}` failed ({}): {}",
            out.status,
            last_lines(&stderr, 10)
        );
    }
    Ok(out)
}

/// Whether `cmd` starts and exits 0 (output discarded): for probes.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cargo build` of a host binary of this workspace (debug profile), output
/// to `log`; returns the binary's path.
pub fn cargo_build_bin(package: &str, bin: &str, log: &Path) -> Result<PathBuf> {
    let phase = ui::Phase::with_log(format!("cargo build -p {package}"), log);
    run(
        Command::new(cargo())
            .args(["build", "--locked", "-p", package, "--bin", bin])
            .current_dir(crate::paths::repo_root()),
        log,
    )?;
    phase.done("");
    let path = crate::paths::target_dir().join("debug").join(bin);
    if !path.is_file() {
        bail!("cargo built no {} (crate {package})", path.display());
    }
    Ok(path)
}

/// A pinned host tool from crates.io, `cargo install --locked` into the cache
/// (`tools/<crate>-<version>/bin/<crate>`) on first use, like every cache
/// entry complete or absent. Returns the binary.
pub fn cargo_install(krate: &str, version: &str) -> Result<PathBuf> {
    let key = format!("{krate}-{version}");
    let log = crate::paths::host_log("tools", &key);
    let root = crate::cache::fill("tools", &key, |dir| {
        let phase = ui::Phase::with_log(format!("cargo install {krate} {version}"), &log);
        run(
            Command::new(cargo())
                .args(["install", krate, "--locked", "--version", version])
                .arg("--root")
                .arg(dir),
            &log,
        )?;
        phase.done("");
        Ok(())
    })?;
    let bin = root.join("bin").join(krate);
    if !bin.is_file() {
        bail!("cargo install {krate} {version} left no {}", bin.display());
    }
    Ok(bin)
}

/// The last `n` lines of a log file.
pub fn tail(log: &Path, n: usize) -> String {
    last_lines(&fs::read_to_string(log).unwrap_or_default(), n)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_quotes_only_when_needed() {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-append", "console=ttyS0 quiet", "it's", ""]);
        assert_eq!(
            line(&cmd),
            r"qemu-system-x86_64 -append 'console=ttyS0 quiet' 'it'\''s' ''"
        );
    }

    #[test]
    fn a_failure_names_the_command_and_shows_the_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("step.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "for i in $(seq 1 50); do echo line$i; done; exit 3"]);
        let err = format!("{:#}", run(&mut cmd, &log).unwrap_err());
        assert!(err.starts_with("`sh -c 'for i"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("line50") && err.contains("line11"), "{err}");
        assert!(!err.contains("line10\n"), "{err}");
    }

    #[test]
    fn read_returns_stdout_and_reports_stderr() {
        assert_eq!(read(Command::new("echo").arg(" hi ")).unwrap(), "hi");
        let err = read(Command::new("sh").args(["-c", "echo oops >&2; exit 1"])).unwrap_err();
        assert!(err.to_string().ends_with("oops"), "{err}");
        let missing = read(&mut Command::new("no-such-tool-kata-image")).unwrap_err();
        assert!(missing.to_string().contains("doctor"), "{missing}");
    }
}
