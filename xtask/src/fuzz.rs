//! `cargo xtask fuzz`: the coverage-guided fuzz targets of `fuzz/`
//! (libFuzzer through libfuzzer-sys, on the stable toolchain: SanitizerCoverage
//! is `-C passes=sancov-module` plus LLVM options, as cargo-fuzz passes
//! them; no nightly, no cargo-fuzz binary, no sanitizer runtime).
//!
//! One instrumented binary serves every target (`KATA_FUZZ_TARGET`
//! picks one). A run reads the committed seeds (`fuzz/corpus/<target>/`)
//! and the inputs earlier runs found (`target/fuzz/corpus/<target>/`,
//! where new ones go); a crash leaves its input in
//! `target/fuzz/artifacts/<target>/`, to be copied into
//! `fuzz/regressions/<target>/` with the fix (`cargo test -p kata-fuzz`
//! replays those).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{cmd, paths, ui, usage};

/// The host triple the driver is built for: with `--target`, cargo gives
/// RUSTFLAGS to the target's crates only, so build scripts and proc macros
/// stay uninstrumented (and the artifacts stay apart from `target/debug`).
const TRIPLE: &str = "x86_64-unknown-linux-gnu";
const PROFILE: &str = "fuzz";
const BIN: &str = "kata-fuzz";

/// SanitizerCoverage as libFuzzer wants it (cargo-fuzz's set): 8-bit edge
/// counters, the PC table, and comparison tracing (so it learns magic
/// values such as method names); `cfg(fuzzing)` as cargo-fuzz sets it.
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
];

#[derive(clap::Args)]
pub struct Args {
    /// List the targets and exit.
    #[arg(long, conflicts_with_all = ["target", "all", "build"])]
    list: bool,
    /// Only build the instrumented driver.
    #[arg(long, conflicts_with_all = ["target", "all"])]
    build: bool,
    /// The target to run (see --list).
    #[arg(long, value_name = "T", conflicts_with = "all")]
    target: Option<String>,
    /// Run every target, one after another, each for --time.
    #[arg(long)]
    all: bool,
    /// How long each target runs: 30s, 10m, 2h (a bare number is seconds).
    #[arg(long, default_value = "60s", value_parser = parse_time, value_name = "D")]
    time: Duration,
    /// More libFuzzer options (e.g. -- -jobs=2 -max_len=8192).
    #[arg(last = true, value_name = "LIBFUZZER_ARGS")]
    libfuzzer_args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let all = targets()?;
    if args.list {
        for t in &all {
            println!("{t}");
        }
        return Ok(());
    }
    let chosen: Vec<String> = match (&args.target, args.all) {
        (Some(t), _) if all.contains(t) => vec![t.clone()],
        (Some(t), _) => usage!("no fuzz target {t:?}; targets: {}", all.join(", ")),
        (None, true) => all,
        (None, false) if args.build => vec![],
        (None, false) => usage!(
            "say --target T (one of: {}), --all, --build or --list",
            all.join(", ")
        ),
    };
    let driver = build()?;
    for t in &chosen {
        let stats = fuzz(&driver, t, args.time, &args.libfuzzer_args)?;
        ui::info(format!("fuzz {t}: {}", stats.summary()));
    }
    Ok(())
}

fn fuzz_dir() -> PathBuf {
    paths::repo_root().join("fuzz")
}

/// The targets: one seed directory each under `fuzz/corpus/` (the crate's
/// tests check that these are exactly its `TARGETS`).
pub fn targets() -> Result<Vec<String>> {
    let dir = fuzz_dir().join("corpus");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if entry.path().is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Build the instrumented driver; its path.
fn build() -> Result<PathBuf> {
    let log = paths::host_log("fuzz", "build");
    let phase = ui::Phase::with_log("cargo build (fuzz driver, instrumented)", &log);
    let var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        TRIPLE.to_uppercase().replace('-', "_")
    );
    cmd::run(
        Command::new(cmd::cargo())
            .args([
                "build",
                "--locked",
                "-p",
                "kata-fuzz",
                "--features",
                "libfuzzer",
            ])
            .args(["--bin", BIN, "--profile", PROFILE, "--target", TRIPLE])
            .env(var, RUSTFLAGS.join(" "))
            .current_dir(paths::repo_root()),
        &log,
    )?;
    phase.done("");
    let bin = paths::target_dir().join(TRIPLE).join(PROFILE).join(BIN);
    if !bin.is_file() {
        bail!("cargo built no {}", bin.display());
    }
    Ok(bin)
}

/// Run one target for `time`; a crash fails with the input's path.
fn fuzz(driver: &Path, target: &str, time: Duration, extra: &[String]) -> Result<Stats> {
    let seeds = fuzz_dir().join("corpus").join(target);
    let work = paths::target_dir().join("fuzz").join("corpus").join(target);
    let artifacts = paths::target_dir()
        .join("fuzz")
        .join("artifacts")
        .join(target);
    let log = paths::host_log("fuzz", target);
    for d in [&work, &artifacts] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let _ = std::fs::remove_file(&log);
    let phase = ui::Phase::with_log(format!("fuzz {target} for {}", ui::elapsed(time)), &log);
    let mut c = Command::new(driver);
    c.env("KATA_FUZZ_TARGET", target)
        .arg(format!("-max_total_time={}", time.as_secs().max(1)))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // One slow input is a finding too (a loop a request can start).
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .args(extra)
        .arg(&work)
        .arg(&seeds)
        .stdin(Stdio::null());
    let code = cmd::run_accepting(&mut c, &log, &[0, 1, 70, 71, 77])?;
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let stats = Stats::parse(&text);
    if code != 0 {
        let found = crash_input(&text).unwrap_or_else(|| format!("(see {})", log.display()));
        bail!(
            "fuzz target {target} failed (exit {code}) on input {found}:\n{}\n\
             reproduce: KATA_FUZZ_TARGET={target} {} {found}\n\
             keep it: copy it into fuzz/regressions/{target}/ with the fix (cargo test -p kata-fuzz replays it)",
            cmd::tail(&log, 25),
            driver.display()
        );
    }
    phase.done(stats.summary());
    Ok(stats)
}

/// libFuzzer's "Test unit written to <path>" line.
fn crash_input(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find_map(|l| l.split("Test unit written to ").nth(1))
        .map(|p| p.trim().to_string())
}

/// What libFuzzer's final statistics say.
#[derive(Debug, Default, PartialEq)]
struct Stats {
    runs: u64,
    execs_per_sec: u64,
    /// Edges covered and corpus entries at the end ("cov:", "corp:").
    coverage: u64,
    corpus: u64,
}

impl Stats {
    fn parse(log: &str) -> Stats {
        let stat = |key: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
                .unwrap_or(0)
        };
        // The last status line: "#N  DONE  cov: C ft: F corp: K/Sb ...".
        let last = log
            .lines()
            .rev()
            .find(|l| l.starts_with('#') && l.contains("cov: "));
        let after = |key: &str| -> u64 {
            last.and_then(|l| l.split(key).nth(1))
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        Stats {
            runs: stat("stat::number_of_executed_units:"),
            execs_per_sec: stat("stat::average_exec_per_sec:"),
            coverage: after("cov: "),
            corpus: after("corp: "),
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} runs, {} exec/s, {} edges, corpus {}",
            self.runs, self.execs_per_sec, self.coverage, self.corpus
        )
    }
}

/// "30s", "10m", "2h", or plain seconds.
fn parse_time(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with s, m or h (30s, 10m, 2h)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    if secs == 0 {
        return Err(format!("{s:?}: must be at least one second"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_time("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_time("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_time("15"), Ok(Duration::from_secs(15)));
        for bad in ["", "m", "10d", "0s", "-1s", "1.5m"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    /// The tail of a real run of libFuzzer 0.4.13's driver.
    #[test]
    fn final_statistics() {
        let log = "#4096\tpulse  cov: 900 ft: 1500 corp: 40/3000b lim: 4096 exec/s: 2048 rss: 60Mb\n\
                   #20480\tDONE   cov: 1234 ft: 2345 corp: 56/4321b lim: 4096 exec/s: 2047 rss: 61Mb\n\
                   Done 20480 runs in 11 second(s)\n\
                   stat::number_of_executed_units: 20480\n\
                   stat::average_exec_per_sec:     1861\n\
                   stat::new_units_added:          12\n";
        assert_eq!(
            Stats::parse(log),
            Stats {
                runs: 20480,
                execs_per_sec: 1861,
                coverage: 1234,
                corpus: 56
            }
        );
        assert_eq!(
            crash_input("==1== ERROR: libFuzzer: deadly signal\nartifact_prefix='a/'; Test unit written to a/crash-12ab\n"),
            Some("a/crash-12ab".into())
        );
    }

    #[test]
    fn every_target_has_seeds() {
        let all = targets().unwrap();
        assert!(all.contains(&"ttrpc_frame".to_string()), "{all:?}");
        for t in &all {
            let seeds = fuzz_dir().join("corpus").join(t);
            assert!(
                std::fs::read_dir(&seeds).unwrap().next().is_some(),
                "{} is empty",
                seeds.display()
            );
        }
    }
}
