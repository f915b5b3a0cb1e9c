//! `cargo xtask test`: the whole test suite, as CI runs it, from a fresh
//! machine: provisioning, the workspace's unit and integration tests, the
//! cross-build smoke tests, the image and its reproducibility, and the VM
//! end-to-end suite. Each stage runs as its own `cargo xtask` step, so a
//! developer can rerun exactly the one that failed.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::setup;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Stage {
    /// cargo test --workspace (unit and integration tests; root-only tests run as root).
    Cargo,
    /// Cross-build the agent and smoke-test it under qemu-user (SMOKE_ARCHES).
    Smoke,
    /// Build the x86_64 guest image and check it is reproducible.
    Image,
    /// Boot guests (VM_ARCHES) and run the end-to-end suite.
    Vm,
}

#[derive(clap::Args)]
pub struct Args {
    /// Run only these stages (default: all, in order).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Stage>,
}

/// Arches whose cross build is smoke-tested in CI.
const SMOKE_ARCHES: &[&str] = &["x86_64", "aarch64", "ppc64le", "s390x"];
/// Arches booted through the end-to-end suite in CI.
const VM_ARCHES: &[&str] = &["x86_64", "aarch64"];

/// CI is provisioned: every stage runs with `KATA_TESTS_STRICT=1`, so a
/// test that skips for a missing capability fails (test-support's `skip`).
const STRICT: (&str, &str) = ("KATA_TESTS_STRICT", "1");

const ALL: [Stage; 4] = [Stage::Cargo, Stage::Smoke, Stage::Image, Stage::Vm];

/// The `cargo xtask` invocations of a stage.
fn stage_steps(stage: Stage) -> Vec<Vec<&'static str>> {
    match stage {
        Stage::Cargo => vec![],
        Stage::Smoke => SMOKE_ARCHES
            .iter()
            .map(|a| vec!["agent", "--arch", a, "--smoke"])
            .collect(),
        Stage::Image => vec![
            vec!["image", "--arch", "x86_64"],
            vec!["verify-repro", "--arch", "x86_64"],
        ],
        Stage::Vm => {
            let mut steps: Vec<Vec<&str>> = VM_ARCHES
                .iter()
                .map(|a| vec!["vm", "test", "--arch", a])
                .collect();
            // The drop-in check: Kata's own default QEMU command line.
            steps.push(vec!["vm", "test", "--arch", "x86_64", "--machine", "kata"]);
            steps
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let stages: Vec<Stage> = if args.only.is_empty() {
        ALL.to_vec()
    } else {
        args.only
    };
    setup::ensure_host_packages(&["test", "release"])?;
    let mut results: Vec<(String, Duration, bool)> = Vec::new();
    for stage in stages {
        if stage == Stage::Cargo {
            let start = Instant::now();
            let ok = run_cargo_tests().is_ok();
            results.push(("cargo test --workspace".into(), start.elapsed(), ok));
            continue;
        }
        for step in stage_steps(stage) {
            let start = Instant::now();
            let ok = run_xtask(&step).is_ok();
            results.push((
                format!("cargo xtask {}", step.join(" ")),
                start.elapsed(),
                ok,
            ));
        }
    }
    print_table(&results);
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.2)
        .map(|r| r.0.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("failed: {}", failed.join("; "));
    }
    Ok(())
}

fn run_cargo_tests() -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(["test", "--workspace", "--locked"])
        .env(STRICT.0, STRICT.1)
        .current_dir(crate::paths::repo_root())
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    Ok(())
}

fn run_xtask(step: &[&str]) -> Result<()> {
    eprintln!("==> cargo xtask {}", step.join(" "));
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let status = Command::new(exe)
        .args(step)
        .env(STRICT.0, STRICT.1)
        .current_dir(crate::paths::repo_root())
        .status()
        .with_context(|| format!("running cargo xtask {}", step.join(" ")))?;
    if !status.success() {
        bail!("cargo xtask {} failed: {status}", step.join(" "));
    }
    Ok(())
}

fn print_table(results: &[(String, Duration, bool)]) {
    println!("\n| step | time | result |\n|---|---|---|");
    for (name, time, ok) in results {
        println!(
            "| {name} | {:.1} s | {} |",
            time.as_secs_f64(),
            if *ok { "pass" } else { "FAIL" }
        );
    }
    let passed = results.iter().filter(|r| r.2).count();
    println!(
        "\nxtask: {passed} passed, {} failed",
        results.len() - passed
    );
}
