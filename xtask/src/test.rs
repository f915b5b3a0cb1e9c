//! `cargo xtask test`: the whole test suite, as CI runs it, from a fresh
//! machine: provisioning, the workspace's unit and integration tests, the
//! cross-build smoke tests, the image and its reproducibility, and the VM
//! end-to-end suite. Each stage runs as its own `cargo xtask` step, so a
//! developer can rerun exactly the one that failed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cmd, report, setup, ui};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Stage {
    /// cargo test --workspace (unit and integration tests; root-only tests run as root).
    Cargo,
    /// Build the instrumented fuzz driver and run each fuzz target briefly.
    Fuzz,
    /// Cross-build the agent for x86_64, aarch64, ppc64le and s390x and
    /// smoke-test each under qemu-user.
    Smoke,
    /// Build the x86_64 guest image and check it is reproducible.
    Image,
    /// Boot x86_64 and aarch64 guests and run the end-to-end suite.
    Vm,
    /// A short benchmark of the x86_64 image (boots, container life
    /// cycles), its tables in target/reports/ so each run shows a
    /// regression; nothing in it is timed against a limit.
    Bench,
}

#[derive(clap::Args)]
pub struct Args {
    /// Run only these stages (default: all, in order).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Stage>,
    /// Write the table of steps as JUnit XML here (one test case per step).
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Write the table of steps as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// One row of the table: a step, its time, whether it passed.
#[derive(Debug, Clone, serde::Serialize)]
struct StepResult {
    stage: &'static str,
    name: String,
    seconds: f64,
    passed: bool,
}

/// Arches whose cross build is smoke-tested in CI.
const SMOKE_ARCHES: &[&str] = &["x86_64", "aarch64", "ppc64le", "s390x"];
/// Arches booted through the end-to-end suite in CI.
const VM_ARCHES: &[&str] = &["x86_64", "aarch64"];

/// CI is provisioned: every stage runs with `KATA_TESTS_STRICT=1`, so a
/// test that skips for a missing capability fails (test-support's `skip`).
const STRICT: (&str, &str) = ("KATA_TESTS_STRICT", "1");

/// How long CI fuzzes each target: a smoke run that keeps the targets
/// building and finds shallow bugs (`cargo xtask fuzz --target T --time
/// 10m` is the long run).
const FUZZ_TIME: &str = "10s";

const ALL: [Stage; 6] = [
    Stage::Cargo,
    Stage::Fuzz,
    Stage::Smoke,
    Stage::Image,
    Stage::Vm,
    Stage::Bench,
];

/// Where the bench stage leaves its tables (CI uploads the directory).
const REPORTS: &str = "target/reports";

/// The `cargo xtask` invocations of a stage.
fn stage_steps(stage: Stage) -> Result<Vec<Vec<String>>> {
    let owned = |steps: Vec<Vec<&str>>| -> Vec<Vec<String>> {
        steps
            .into_iter()
            .map(|s| s.into_iter().map(String::from).collect())
            .collect()
    };
    Ok(match stage {
        Stage::Cargo => vec![],
        Stage::Fuzz => {
            // The build is its own row, so each target's row is its run.
            let mut steps = owned(vec![vec!["fuzz", "--build"]]);
            for t in crate::fuzz::targets()? {
                steps.extend(owned(vec![vec![
                    "fuzz", "--target", &t, "--time", FUZZ_TIME,
                ]]));
            }
            steps
        }
        Stage::Smoke => owned(
            SMOKE_ARCHES
                .iter()
                .map(|a| vec!["agent", "--arch", a, "--smoke"])
                .collect(),
        ),
        Stage::Image => owned(vec![
            vec!["image", "--arch", "x86_64"],
            vec!["verify-repro", "--arch", "x86_64"],
            // The measured root's hash, equal in both builds.
            vec!["verify-repro", "--arch", "x86_64", "--verity"],
        ]),
        Stage::Vm => {
            // CI tests the agent that ships (the release profile the image
            // stage built), not the developer loop's.
            let mut steps: Vec<Vec<&str>> = VM_ARCHES
                .iter()
                .map(|a| vec!["vm", "test", "--arch", a, "--profile", "release"])
                .collect();
            // The drop-in check: Kata's own default QEMU command line.
            steps.push(vec![
                "vm",
                "test",
                "--arch",
                "x86_64",
                "--machine",
                "kata",
                "--profile",
                "release",
            ]);
            // A measured root boots on each arch, a tampered copy does not.
            steps.extend(VM_ARCHES.iter().map(|a| {
                vec![
                    "vm",
                    "test",
                    "--arch",
                    a,
                    "--verity",
                    "--profile",
                    "release",
                ]
            }));
            owned(steps)
        }
        // Boot x3 and life cycle x30 of the release image on the default
        // machine: about a minute warm.
        Stage::Bench => owned(vec![vec![
            "bench",
            "vm",
            "--arch",
            "x86_64",
            "--machine",
            "q35-qboot",
            "--runs",
            "3",
            "--lifecycle-runs",
            "30",
            "--json",
            "target/reports/bench-vm-x86_64.json",
            "--markdown",
            "target/reports/bench-vm-x86_64.md",
        ]]),
    })
}

pub fn run(args: Args) -> Result<()> {
    let stages: Vec<Stage> = if args.only.is_empty() {
        ALL.to_vec()
    } else {
        args.only
    };
    // The report files' directories exist before an hour of work.
    report::check_paths(
        args.junit
            .iter()
            .chain(args.json.iter())
            .map(PathBuf::as_path),
    )?;
    setup::ensure_host_packages(&["test", "release"], &[])?;
    // Taken before `cargo test` relinks target/debug/xtask (its integration
    // tests need the binary): after that, /proc/self/exe names the old file
    // with " (deleted)" and every later stage would fail to start.
    let exe = xtask_exe()?;
    let mut results: Vec<StepResult> = Vec::new();
    for stage in stages {
        let stage_name = stage_name(stage);
        if stage == Stage::Bench {
            let dir = crate::paths::repo_root().join(REPORTS);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if stage == Stage::Cargo {
            let start = Instant::now();
            let ok = run_cargo_tests().is_ok();
            results.push(step_result(
                stage_name,
                "cargo test --workspace".into(),
                start.elapsed(),
                ok,
            ));
            continue;
        }
        for step in stage_steps(stage)? {
            let start = Instant::now();
            let ok = match run_xtask(&exe, &step) {
                Ok(()) => true,
                Err(e) => {
                    ui::warn(format!("cargo xtask {}: {e:#}", step.join(" ")));
                    false
                }
            };
            let name = format!("cargo xtask {}", step.join(" "));
            results.push(step_result(stage_name, name, start.elapsed(), ok));
        }
    }
    print_table(&results);
    if let Some(p) = &args.junit {
        report::write(p, &junit(&results))?;
    }
    if let Some(p) = &args.json {
        report::write(p, &json(&results)?)?;
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("failed: {}", failed.join("; "));
    }
    Ok(())
}

fn run_cargo_tests() -> Result<()> {
    cmd::run_attached(
        Command::new(cmd::cargo())
            .args(["test", "--workspace", "--locked"])
            .env(STRICT.0, STRICT.1)
            .current_dir(crate::paths::repo_root()),
    )
}

/// The path of this xtask binary, to run each stage as its own process.
fn xtask_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    Ok(strip_deleted(exe))
}

/// Linux's /proc/self/exe appends " (deleted)" once the file was replaced;
/// the path itself (where cargo put the rebuilt binary) is still right.
fn strip_deleted(exe: PathBuf) -> PathBuf {
    match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => PathBuf::from(s),
        None => exe,
    }
}

fn run_xtask(exe: &Path, step: &[String]) -> Result<()> {
    ui::info(format!("==> cargo xtask {}", step.join(" ")));
    cmd::run_attached(
        Command::new(exe)
            .args(step)
            .env(ui::VERBOSITY_ENV, ui::verbosity().name())
            .env(STRICT.0, STRICT.1)
            .current_dir(crate::paths::repo_root()),
    )
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Cargo => "cargo",
        Stage::Fuzz => "fuzz",
        Stage::Smoke => "smoke",
        Stage::Image => "image",
        Stage::Vm => "vm",
        Stage::Bench => "bench",
    }
}

fn step_result(stage: &'static str, name: String, time: Duration, passed: bool) -> StepResult {
    StepResult {
        stage,
        name,
        seconds: time.as_secs_f64(),
        passed,
    }
}

fn print_table(results: &[StepResult]) {
    println!("\n| step | time | result |\n|---|---|---|");
    for r in results {
        println!(
            "| {} | {:.1} s | {} |",
            r.name,
            r.seconds,
            if r.passed { "pass" } else { "FAIL" }
        );
    }
    let passed = results.iter().filter(|r| r.passed).count();
    println!(
        "\nxtask: {passed} passed, {} failed",
        results.len() - passed
    );
}

/// The table as JUnit XML: one suite per stage, one case per step.
fn junit(results: &[StepResult]) -> String {
    let cases: Vec<report::Case> = results
        .iter()
        .map(|r| report::Case {
            suite: format!("xtask.{}", r.stage),
            name: r.name.clone(),
            seconds: r.seconds,
            failure: (!r.passed).then(|| format!("rerun it alone: {}", r.name)),
        })
        .collect();
    report::junit("cargo xtask test", &cases)
}

fn json(results: &[StepResult]) -> Result<String> {
    let passed = results.iter().filter(|r| r.passed).count();
    let doc = serde_json::json!({
        "steps": results,
        "passed": passed,
        "failed": results.len() - passed,
    });
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `cargo test --workspace` relinks target/debug/xtask, and
    /// every stage after it failed in 0.0 s with no message.
    #[test]
    fn a_replaced_binary_is_still_found_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("xtask");
        std::fs::write(&bin, b"old").unwrap();
        let before = std::fs::canonicalize(&bin).unwrap();
        std::fs::remove_file(&bin).unwrap();
        std::fs::write(&bin, b"new").unwrap();
        let seen = PathBuf::from(format!("{} (deleted)", before.display()));
        assert_eq!(strip_deleted(seen), before);
        assert_eq!(strip_deleted(bin.clone()), bin);
    }

    /// The bench step writes into the reports dir, and CI tests the
    /// release agent, never the loop one.
    #[test]
    fn bench_reports_land_in_the_reports_dir_and_vm_tests_the_release() {
        let bench = stage_steps(Stage::Bench).unwrap().concat();
        for flag in ["--json", "--markdown"] {
            let at = bench.iter().position(|a| *a == flag).unwrap();
            assert!(bench[at + 1].starts_with(REPORTS), "{bench:?}");
        }
        for step in stage_steps(Stage::Vm).unwrap() {
            let at = step.iter().position(|a| *a == "--profile").unwrap();
            assert_eq!(step[at + 1], "release", "{step:?}");
        }
    }

    #[test]
    fn the_running_binary_resolves_to_an_existing_file() {
        assert!(xtask_exe().unwrap().is_file());
    }

    /// The fuzz stage builds once, then runs every target for FUZZ_TIME.
    #[test]
    fn the_fuzz_stage_builds_then_runs_each_target_briefly() {
        let steps = stage_steps(Stage::Fuzz).unwrap();
        assert_eq!(steps[0], ["fuzz", "--build"]);
        let targets = crate::fuzz::targets().unwrap();
        assert_eq!(steps.len(), targets.len() + 1);
        for (step, t) in steps[1..].iter().zip(&targets) {
            assert_eq!(step, &["fuzz", "--target", t, "--time", FUZZ_TIME]);
        }
    }

    fn rows() -> Vec<StepResult> {
        vec![
            step_result(
                "cargo",
                "cargo test --workspace".into(),
                Duration::from_secs(3),
                true,
            ),
            step_result(
                "vm",
                "cargo xtask vm test --arch x86_64".into(),
                Duration::from_millis(1500),
                false,
            ),
        ]
    }

    #[test]
    fn junit_has_one_case_per_step_and_marks_failures() {
        let x = junit(&rows());
        assert!(x.contains("<testcase classname=\"xtask.cargo\" name=\"cargo test --workspace\" time=\"3.000\"/>"), "{x}");
        assert!(
            x.contains("rerun it alone: cargo xtask vm test --arch x86_64</failure>"),
            "{x}"
        );
    }

    #[test]
    fn json_lists_the_steps_and_counts() {
        let v: serde_json::Value = serde_json::from_str(&json(&rows()).unwrap()).unwrap();
        assert_eq!(v["passed"], 1);
        assert_eq!(v["failed"], 1);
        assert_eq!(v["steps"][1]["name"], "cargo xtask vm test --arch x86_64");
        assert_eq!(v["steps"][1]["passed"], false);
        assert_eq!(v["steps"][0]["seconds"], 3.0);
    }
}
