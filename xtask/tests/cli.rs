//! Bad input is rejected before any work: each case exits 2 with a message
//! that names the thing and the valid values, within a second or two (no
//! apt, no cargo build, no kernel), and leaves no work dir and no cache
//! entry behind (the binary runs with a fresh target dir and cache).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Far below any download, install or build (apt update alone takes ~10 s).
const NO_WORK: Duration = Duration::from_secs(3);

struct Rejected {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

fn run(args: &[&str], target: &Path, cache: &Path) -> Rejected {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .env("KATA_IMAGE_CACHE", cache)
        .env_remove("KATA_XTASK_VERBOSITY")
        .output()
        .expect("the xtask binary runs");
    Rejected {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

fn assert_rejected(args: &[&str], expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (target, cache) = (dir.path().join("target"), dir.path().join("cache"));
    let r = run(args, &target, &cache);
    assert_eq!(r.code, Some(2), "{args:?} exit code; stderr: {}", r.stderr);
    for e in expect {
        assert!(r.stderr.contains(e), "{args:?}: no {e:?} in: {}", r.stderr);
    }
    assert!(
        r.took < NO_WORK,
        "{args:?} took {:?}: it did work first",
        r.took
    );
    assert!(!target.exists(), "{args:?} created {}", target.display());
    assert!(!cache.exists(), "{args:?} created {}", cache.display());
}

#[test]
fn an_unknown_recipe_is_rejected_with_the_recipes_that_exist() {
    let listed = [
        "invalid value 'nosuch' for '--recipe <RECIPE>'",
        "[possible values: agent-init, systemd]",
    ];
    assert_rejected(&["image", "--recipe", "nosuch"], &listed);
    assert_rejected(&["rootfs", "build", "--recipe", "nosuch"], &listed);
    assert_rejected(&["rootfs", "lock", "--recipe", "nosuch"], &listed);
    assert_rejected(&["verify-repro", "--recipe", "nosuch"], &listed);
    assert_rejected(
        &["image", "--recipe", "../etc"],
        &["[possible values: agent-init"],
    );
}

#[test]
fn an_unknown_setup_group_is_rejected_with_the_groups() {
    assert_rejected(
        &["setup", "--group", "foo"],
        &[
            "unknown --group \"foo\"",
            "cross, image, kernel, release, test, vm",
        ],
    );
}

#[test]
fn arch_values_are_listed_and_all_only_where_it_is_accepted() {
    assert_rejected(
        &["vm", "run", "--arch", "all"],
        &[
            "'all'",
            "[possible values: x86_64, aarch64, ppc64le, s390x]",
        ],
    );
    assert_rejected(
        &["kernel", "--arch", "mips"],
        &["[possible values: x86_64, aarch64, ppc64le, s390x, all]"],
    );
}

#[test]
fn vm_arguments_that_cannot_boot_are_rejected_before_building() {
    assert_rejected(
        &["vm", "test", "--arch", "aarch64", "--machine", "microvm"],
        &["--machine microvm is for x86_64, not aarch64; aarch64 has virt"],
    );
    assert_rejected(
        &["vm", "test", "--kernel", "/no/such/bzImage"],
        &["--kernel /no/such/bzImage: no such file"],
    );
    assert_rejected(
        &["bench", "vm", "--fs", "erofs", "--boot", "initrd"],
        &["--fs compares disk images"],
    );
    assert_rejected(
        &[
            "bench",
            "compare",
            "--base",
            "no-such-rev-kata",
            "--head",
            "HEAD",
        ],
        &["--base no-such-rev-kata: neither a file nor a git revision"],
    );
    assert_rejected(
        &[
            "bench",
            "compare",
            "--base",
            "HEAD",
            "--head",
            "/no/such/agent",
        ],
        &["--head /no/such/agent: neither a file nor a git revision"],
    );
    assert_rejected(
        &["vm", "test", "--share", "nfs"],
        &["[possible values: 9p, virtio-fs]"],
    );
}

#[test]
fn test_stages_and_report_paths_are_checked_first() {
    assert_rejected(
        &["test", "--only", "nosuch"],
        &["[possible values: cargo, fuzz, smoke, image, vm, bench]"],
    );
    assert_rejected(
        &["test", "--junit", "/no/such/dir/report.xml"],
        &["directory /no/such/dir does not exist"],
    );
}

#[test]
fn help_and_version_name_cargo_xtask() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--help")
        .env("CARGO_TARGET_DIR", dir.path())
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: cargo xtask [OPTIONS] <COMMAND>"),
        "{help}"
    );
    assert!(
        help.contains("Exit status: 0 success, 1 a step failed, 2 bad usage"),
        "{help}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("cargo xtask "));
}
