//! OnlineCPUMem's CPU part against a fake sysfs CPU tree: `nb_cpus` is the
//! number of CPUs that must be online in all after a hot-plug, as Kata's
//! runtime means it (src/runtime/virtcontainers/sandbox.go updateResources
//! sends the sandbox's vCPU count) and Kata's agent reads it
//! (src/agent/src/sandbox.rs online_cpus: count the online CPUs first,
//! online only the missing ones, wait up to 100 x 50 ms).

use std::path::Path;
use std::time::{Duration, Instant};

use kata_agent::guest::hotplug::{online_cpu_count, online_cpus};

/// cpu0 without an `online` file (not hot-pluggable), the others as given.
fn fake_cpus(states: &[&str]) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(t.path().join("cpu0")).expect("mkdir cpu0");
    for (i, state) in states.iter().enumerate() {
        let d = t.path().join(format!("cpu{}", i + 1));
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::write(d.join("online"), state).expect("write");
    }
    std::fs::create_dir(t.path().join("cpufreq")).expect("mkdir");
    std::fs::write(t.path().join("online"), "0-1\n").expect("write");
    t
}

fn state(dir: &Path, cpu: u32) -> String {
    std::fs::read_to_string(dir.join(format!("cpu{cpu}/online"))).expect("read")
}

#[test]
fn enough_cpus_online_means_nothing_to_do() {
    let t = fake_cpus(&["1", "0", "0"]);
    let start = Instant::now();
    assert_eq!(online_cpus(t.path(), 2).expect("two are online"), 0);
    assert!(start.elapsed() < Duration::from_secs(1), "no waiting");
    assert_eq!(
        state(t.path(), 2),
        "0",
        "no CPU beyond the total goes online"
    );
    assert_eq!(state(t.path(), 3), "0");
}

#[test]
fn only_the_missing_cpus_go_online() {
    let t = fake_cpus(&["1", "0", "0", "0"]);
    assert_eq!(online_cpu_count(t.path()).expect("count"), 2);
    assert_eq!(online_cpus(t.path(), 3).expect("one more"), 1);
    assert_eq!(online_cpu_count(t.path()).expect("count"), 3);
    assert_eq!(state(t.path(), 2), "1");
    assert_eq!(state(t.path(), 3), "0", "the total is 3, not 2 + 3");
}

#[test]
fn too_few_cpus_is_an_error_within_kata_bound() {
    let t = fake_cpus(&["0"]);
    let start = Instant::now();
    let err = online_cpus(t.path(), 4).expect_err("only 2 CPUs exist");
    let took = start.elapsed();
    let msg = format!("{err:#}");
    assert!(msg.contains("2 CPU(s) online, 4 requested"), "{msg}");
    assert!(took < Duration::from_secs(7), "gave up after {took:?}");
    assert_eq!(state(t.path(), 1), "1", "what exists is onlined");
}
