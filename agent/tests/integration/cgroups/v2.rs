//! The cgroup manager on cgroup v2, and mounting the hierarchies.
//!
//! The machine's /sys/fs/cgroup is the v1 layout, so each test re-runs its
//! inner half in a private mount namespace (unshare) where /sys/fs/cgroup is
//! replaced by what `mount_cgroup_hierarchies` mounts. Controllers already
//! bound to v1 hierarchies are absent from cgroup v2; what needs them is
//! skipped with the reason printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kata_agent::cgroups::mounts::{mount_cgroup_hierarchies, mount_cgroup_hierarchies_reporting};
use kata_agent::cgroups::{self, Manager};
use oci_spec::runtime::{LinuxHugepageLimit, LinuxMemory, LinuxPids, LinuxResources};
use test_support::cgroup::*;
use test_support::is_root;
use test_support::skip::{not_applicable, skip};

fn outer_can_run() -> bool {
    if !is_root() {
        skip("needs root (mount namespaces, cgroups); CI runs it as root");
        return false;
    }
    if std::process::Command::new("unshare")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("unshare (util-linux) is not installed");
        return false;
    }
    true
}

/// One at a time: mounting v1 hierarchies binds controllers (hugetlb,
/// net_cls ...) that cgroup v2 would otherwise offer.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn v2_manager() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if outer_can_run() {
        run_in_mount_namespace(module_path!(), "v2_manager_inner");
    }
}

#[test]
fn v1_mounts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if outer_can_run() {
        let before = hierarchy_ids();
        run_in_mount_namespace(module_path!(), "v1_mounts_inner");
        // The kernel frees the hierarchies the namespace created a little
        // later; wait (bounded) so controllers are back where they were.
        for _ in 0..100 {
            if hierarchy_ids() == before {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "note: controller hierarchies not yet restored: {:?}",
            hierarchy_ids()
        );
    }
}

/// /proc/cgroups: controller -> hierarchy id.
fn hierarchy_ids() -> Vec<(String, String)> {
    read_trim("/proc/cgroups")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(1)?.to_string()))
        })
        .collect()
}

fn v2_dir(path: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(path)
}

fn wanted_resources() -> LinuxResources {
    let mut m = LinuxMemory::default();
    m.set_limit(Some(64 << 20));
    let mut p = LinuxPids::default();
    p.set_limit(16);
    let mut r = LinuxResources::default();
    r.set_memory(Some(m));
    r.set_pids(Some(p));
    let mut h = LinuxHugepageLimit::default();
    h.set_page_size("2MB".into());
    h.set_limit(4 << 20);
    r.set_hugepage_limits(Some(vec![h]));
    r
}

#[test]
#[ignore = "run by v2_manager inside a private mount namespace"]
fn v2_manager_inner() {
    if !in_test_namespace() {
        return;
    }
    if !cgroups_rs::fs::hierarchies::is_cgroup2_unified_mode() {
        detach_sys_fs_cgroup();
        mount_cgroup_hierarchies(true).expect("mounting cgroup2");
    }
    mount_cgroup_hierarchies(true).expect("a second call is a no-op");
    let available = read_trim("/sys/fs/cgroup/cgroup.controllers");
    eprintln!("cgroup v2 controllers here: {available:?}");
    // Creating a cgroup enables controllers in the root's subtree_control;
    // put the machine's setting back afterwards.
    let root_subtree = read_trim("/sys/fs/cgroup/cgroup.subtree_control");
    run_v2_checks();
    check_undelegated_controllers_are_skipped();
    restore_subtree_control(&root_subtree);
}

/// A parent holding a process cannot enable controllers for its children
/// (v2's no-internal-process rule): the child gets none, and limits for
/// them are skipped with a reason instead of failing the container.
fn check_undelegated_controllers_are_skipped() {
    let parent = test_cgroup_path("v2-busy-parent", true);
    let _cleanup_parent = Cleanup {
        path: parent.clone(),
    };
    let child_path = format!("{parent}/child");
    let _cleanup = Cleanup {
        path: child_path.clone(),
    };
    std::fs::create_dir_all(v2_dir(&parent)).unwrap();
    let mut resident = Waiting::spawn("sleep 30");
    std::fs::write(
        v2_dir(&parent).join("cgroup.procs"),
        resident.pid().to_string(),
    )
    .unwrap();
    let cg = Manager::new("undelegated", &child_path, Some(&wanted_resources()), true)
        .expect("a cgroup without controllers still works");
    let available = read_trim(v2_dir(&child_path).join("cgroup.controllers"));
    eprintln!(
        "child of a busy parent has controllers {available:?}; skipped {:?}",
        cg.skipped_settings()
    );
    assert!(!cg.controllers().contains("hugetlb") || available.contains("hugetlb"));
    cg.freeze().expect("the core freezer still works");
    cg.thaw().unwrap();
    cg.destroy().unwrap();
    resident.kill();
}

fn restore_subtree_control(before: &str) {
    let now = read_trim("/sys/fs/cgroup/cgroup.subtree_control");
    for c in now
        .split_whitespace()
        .filter(|c| !before.split_whitespace().any(|b| b == *c))
    {
        let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", format!("-{c}"));
    }
}

fn run_v2_checks() {
    let path = test_cgroup_path("v2", true);
    let _cleanup = Cleanup { path: path.clone() };
    let cg = Manager::new("v2", &path, Some(&wanted_resources()), true).expect("creating");
    assert!(cg.is_v2());
    assert!(v2_dir(&path).is_dir());
    check_limits_or_skips(&cg, &path);
    check_device_program_updates(&cg);

    let mut child = Waiting::spawn("sleep 30");
    cg.add_process(child.pid()).expect("adding the child");
    child.go();
    assert!(cg.pids().unwrap().contains(&child.pid()));
    let procs = read_trim(v2_dir(&path).join("cgroup.procs"));
    assert!(
        procs.lines().any(|l| l == child.pid().to_string()),
        "{procs}"
    );
    std::thread::sleep(Duration::from_millis(200));

    // cpu.stat is core in v2: usage is there even without the cpu controller.
    let stats = cg.stats().expect("stats");
    let cpu = stats
        .cpu_stats
        .as_ref()
        .unwrap()
        .cpu_usage
        .as_ref()
        .unwrap();
    eprintln!("v2 cpu usage {}ns", cpu.total_usage);
    assert!(cpu.total_usage > 0);
    if cg.controllers().contains("hugetlb") {
        assert!(
            stats.hugetlb_stats.contains_key("2MB"),
            "{:?}",
            stats.hugetlb_stats.keys()
        );
    }

    // The freezer is core in v2 too.
    cg.freeze().expect("freezing");
    assert!(read_trim(v2_dir(&path).join("cgroup.events")).contains("frozen 1"));
    let status = read_trim(format!("/proc/{}/status", child.pid()));
    eprintln!(
        "frozen child: {}",
        status
            .lines()
            .find(|l| l.starts_with("State"))
            .unwrap_or("")
    );
    cg.thaw().expect("thawing");
    assert!(read_trim(v2_dir(&path).join("cgroup.events")).contains("frozen 0"));

    child.kill();
    cg.destroy().expect("destroying");
    assert!(!v2_dir(&path).exists());
    cg.destroy().expect("destroy is idempotent");
}

/// UpdateContainer's device rules on v2: a new program is attached and the
/// old one detached (a detach of a program not attached fails); an update
/// that leaves the list as it was keeps the program.
fn check_device_program_updates(cg: &Manager) {
    let mut fuse = oci_spec::runtime::LinuxDeviceCgroup::default();
    fuse.set_allow(true);
    fuse.set_typ(Some(oci_spec::runtime::LinuxDeviceType::C));
    fuse.set_major(Some(10));
    fuse.set_minor(Some(229));
    fuse.set_access(Some("rwm".into()));
    for rules in [vec![fuse.clone()], vec![], vec![fuse]] {
        let mut r = LinuxResources::default();
        r.set_devices(Some(rules));
        cg.update(&r).expect("updating the device rules on v2");
    }
}

/// Memory and pids limits are applied where v2 has those controllers and
/// reported as skipped (not an error) where it does not.
fn check_limits_or_skips(cg: &Manager, path: &str) {
    let skipped = cg.skipped_settings();
    eprintln!("skipped: {skipped:?}");
    let two_mb = Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    for (controller, file, want) in [
        ("memory", "memory.max", "67108864"),
        ("pids", "pids.max", "16"),
        ("hugetlb", "hugetlb.2MB.max", "4194304"),
    ] {
        if controller == "hugetlb" && !two_mb {
            skip(format!("{file} check: no 2MB huge pages on this kernel"));
            continue;
        }
        if cg.controllers().contains(controller) {
            assert_eq!(read_trim(v2_dir(path).join(file)), want);
        } else {
            not_applicable(format!(
                "{file} check: the {controller} controller is bound to cgroup v1 here"
            ));
            assert!(
                skipped.iter().any(|s| s.contains(controller)),
                "{controller} skip not reported: {skipped:?}"
            );
        }
    }
    if cg.controllers().contains("memory") {
        check_v2_oom(path);
    } else {
        not_applicable("v2 OOM events: no memory controller in cgroup v2 here");
    }
}

fn check_v2_oom(parent: &str) {
    let path = format!("{parent}-oom");
    let _cleanup = Cleanup { path: path.clone() };
    let mut m = LinuxMemory::default();
    m.set_limit(Some(16 << 20));
    // With swap on, memory+swap = memory, so the OOM cannot be swapped away.
    let swap_on = read_trim("/proc/swaps").lines().count() > 1;
    if swap_on {
        m.set_swap(Some(16 << 20));
    }
    let mut r = LinuxResources::default();
    r.set_memory(Some(m));
    let cg = Manager::new("v2-oom", &path, Some(&r), true).expect("oom cgroup");
    let mut child = Waiting::spawn("dd if=/dev/zero of=/dev/null bs=64M count=1");
    cg.add_process(child.pid()).unwrap();
    child.go();
    assert_eq!(
        child.wait_signal(),
        Some(libc::SIGKILL),
        "dd was not OOM-killed"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let got = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(10), cgroups::oom::queue().next()).await
        })
        .expect("no v2 OOM event within 10s");
    assert_eq!(got, "v2-oom");
    cg.destroy().unwrap();
}

#[test]
#[ignore = "run by v1_mounts inside a private mount namespace"]
fn v1_mounts_inner() {
    if !in_test_namespace() {
        return;
    }
    detach_sys_fs_cgroup();
    let skipped = mount_cgroup_hierarchies_reporting(false).expect("mounting the v1 hierarchies");
    eprintln!("skipped: {skipped:?}");
    let again = mount_cgroup_hierarchies_reporting(false).expect("a second call is harmless");
    assert!(again.len() <= skipped.len(), "second call: {again:?}");
    let mounts = read_trim("/proc/self/mounts");
    let ours: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains("/sys/fs/cgroup"))
        .collect();
    eprintln!("{}", ours.join("\n"));
    // Every controller the manager uses has a v1 mount, reachable by its name.
    for c in [
        "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
    ] {
        let has_mount = ours.iter().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.len() > 3 && f[2] == "cgroup" && f[3].split(',').any(|o| o == c)
        });
        assert!(has_mount, "no v1 mount for {c}");
        assert!(
            Path::new("/sys/fs/cgroup")
                .join(c)
                .join("cgroup.procs")
                .exists(),
            "{c} not reachable"
        );
    }
    // Each hierarchy mounted once.
    assert_eq!(
        ours.iter()
            .filter(|l| l.contains(" /sys/fs/cgroup/memory "))
            .count(),
        1
    );
}
