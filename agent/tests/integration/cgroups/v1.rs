//! The cgroup manager on the machine's cgroup v1 hierarchies (as root).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kata_agent::cgroups::{self, Manager};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use test_support::cgroup::{read_trim, test_cgroup_path, Cleanup, Waiting};
use test_support::is_root;
use test_support::skip::{not_applicable, skip};

/// Skip (printing why) unless root on a v1 machine with the controllers used here.
fn v1_available() -> bool {
    if !is_root() {
        skip("cgroup tests need root; CI runs them as root");
        return false;
    }
    if cgroups_rs::fs::hierarchies::is_cgroup2_unified_mode() {
        not_applicable("this machine is cgroup v2 only; cgroups::v2 covers it");
        return false;
    }
    for c in ["memory", "pids", "cpu", "cpuset", "freezer"] {
        if !Path::new("/sys/fs/cgroup").join(c).exists() {
            skip(format!("no v1 {c} controller at /sys/fs/cgroup/{c}"));
            return false;
        }
    }
    true
}

fn dir(controller: &str, path: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(controller).join(path)
}

fn resources(mem: i64, pids: i64) -> LinuxResources {
    let mut m = LinuxMemory::default();
    m.set_limit(Some(mem));
    // memory+swap = memory: no swapping, so OOM means OOM.
    if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
        m.set_swap(Some(mem));
    }
    let mut p = LinuxPids::default();
    p.set_limit(pids);
    let mut r = LinuxResources::default();
    r.set_memory(Some(m));
    r.set_pids(Some(p));
    r
}

#[test]
fn limits_stats_freeze_update_and_destroy() {
    if !v1_available() {
        return;
    }
    let path = test_cgroup_path("v1-life", false);
    let _cleanup = Cleanup { path: path.clone() };
    let mut r = resources(64 << 20, 32);
    let mut cpu = LinuxCpu::default();
    cpu.set_quota(Some(50_000));
    cpu.set_period(Some(100_000));
    cpu.set_shares(Some(512));
    r.set_cpu(Some(cpu));
    let cg = Manager::new("life", &path, Some(&r), false).expect("creating the cgroup");
    assert!(!cg.is_v2());

    // Limits are in the files.
    assert_eq!(
        read_trim(dir("memory", &path).join("memory.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(read_trim(dir("pids", &path).join("pids.max")), "32");
    assert_eq!(
        read_trim(dir("cpu", &path).join("cpu.cfs_quota_us")),
        "50000"
    );
    assert_eq!(
        read_trim(dir("cpu", &path).join("cpu.cfs_period_us")),
        "100000"
    );
    assert_eq!(read_trim(dir("cpu", &path).join("cpu.shares")), "512");

    // A process in it, doing its work there.
    let mut child = Waiting::spawn("sleep 30");
    cg.add_process(child.pid()).expect("adding the child");
    child.go();
    assert!(cg.pids().unwrap().contains(&child.pid()));
    let procs = read_trim(dir("memory", &path).join("cgroup.procs"));
    assert!(
        procs.lines().any(|l| l == child.pid().to_string()),
        "{procs}"
    );
    std::thread::sleep(Duration::from_millis(200));

    let stats = cg.stats().expect("stats");
    let mem = stats.memory_stats.as_ref().unwrap();
    let usage = mem.usage.as_ref().unwrap();
    eprintln!(
        "memory usage {} limit {} cpu {:?}",
        usage.usage, usage.limit, stats.cpu_stats
    );
    assert!(usage.usage > 0, "memory usage is 0");
    assert_eq!(usage.limit, 64 << 20);
    assert!(
        mem.stats.contains_key("rss") || mem.stats.contains_key("total_rss"),
        "{:?}",
        mem.stats
    );
    let pids = stats.pids_stats.as_ref().unwrap();
    assert_eq!((pids.current, pids.limit), (1, 32));
    assert!(
        stats
            .cpu_stats
            .as_ref()
            .unwrap()
            .cpu_usage
            .as_ref()
            .unwrap()
            .total_usage
            > 0
    );

    // Freeze and thaw.
    cg.freeze().expect("freezing");
    assert_eq!(
        read_trim(dir("freezer", &path).join("freezer.state")),
        "FROZEN"
    );
    assert!(cg.is_frozen().unwrap());
    cg.thaw().expect("thawing");
    assert_eq!(
        read_trim(dir("freezer", &path).join("freezer.state")),
        "THAWED"
    );

    // Update changes a limit; nonsense the kernel refuses is "invalid".
    cg.update(&resources(128 << 20, 64)).expect("updating");
    assert_eq!(
        read_trim(dir("memory", &path).join("memory.limit_in_bytes")),
        "134217728"
    );
    assert_eq!(read_trim(dir("pids", &path).join("pids.max")), "64");
    let mut bad = LinuxResources::default();
    let mut cpu = LinuxCpu::default();
    cpu.set_cpus(Some("4000".into()));
    bad.set_cpu(Some(cpu));
    let err = cg.update(&bad).expect_err("cpu 4000 does not exist");
    assert!(
        matches!(err, kata_agent::error::Error::InvalidArgument(_)),
        "not classified as invalid: {err:#}"
    );

    // Destroy while the child is still exiting: destroy waits for it.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.pid()),
        nix::sys::signal::Signal::SIGKILL,
    );
    cg.destroy().expect("destroying");
    for c in ["memory", "pids", "cpu", "freezer", "cpuset"] {
        assert!(!dir(c, &path).exists(), "{c} cgroup left behind");
    }
    cg.destroy().expect("destroy is idempotent");
    child.kill();
}

#[test]
fn destroy_refuses_a_cgroup_with_live_processes() {
    if !v1_available() {
        return;
    }
    let path = test_cgroup_path("v1-busy", false);
    let _cleanup = Cleanup { path: path.clone() };
    let cg = Manager::new("busy", &path, None, false).expect("creating the cgroup");
    let mut child = Waiting::spawn("sleep 30");
    cg.add_process(child.pid()).unwrap();
    let err = cg.destroy().expect_err("a live process keeps it");
    assert!(
        format!("{err:#}").contains("still has processes"),
        "{err:#}"
    );
    assert!(dir("memory", &path).exists());
    child.kill();
    cg.destroy().expect("destroying once empty");
    assert!(!dir("memory", &path).exists());
}

#[test]
fn failed_creation_leaves_nothing_behind() {
    if !v1_available() {
        return;
    }
    let path = test_cgroup_path("v1-fail", false);
    let _cleanup = Cleanup { path: path.clone() };
    let mut r = LinuxResources::default();
    let mut cpu = LinuxCpu::default();
    cpu.set_cpus(Some("4000".into()));
    r.set_cpu(Some(cpu));
    let err = match Manager::new("fail", &path, Some(&r), false) {
        Ok(_) => panic!("cpuset 4000 must be refused"),
        Err(e) => e,
    };
    assert!(
        matches!(err, kata_agent::error::Error::InvalidArgument(_)),
        "{err:#}"
    );
    assert!(
        format!("{err:#}").contains(&path),
        "error names the cgroup: {err:#}"
    );
    for c in ["memory", "pids", "cpu", "cpuset", "freezer"] {
        assert!(
            !dir(c, &path).exists(),
            "{c} cgroup left behind after failure"
        );
    }
}

#[tokio::test]
async fn oom_kill_is_reported_on_the_queue() {
    if !v1_available() {
        return;
    }
    let path = test_cgroup_path("v1-oom", false);
    let _cleanup = Cleanup { path: path.clone() };
    let id = format!("oom-{}", std::process::id());
    let cg = Manager::new(&id, &path, Some(&resources(16 << 20, 0)), false).expect("cgroup");
    // dd's 64 MiB buffer cannot fit in 16 MiB without swap.
    let mut child = Waiting::spawn("dd if=/dev/zero of=/dev/null bs=64M count=1");
    cg.add_process(child.pid()).unwrap();
    child.go();
    let signal = tokio::task::spawn_blocking(move || child.wait_signal())
        .await
        .unwrap();
    assert_eq!(signal, Some(libc::SIGKILL), "dd was not OOM-killed");
    let got = tokio::time::timeout(Duration::from_secs(10), cgroups::oom::queue().next())
        .await
        .expect("no OOM event within 10s");
    assert_eq!(got, id);
    cg.destroy().unwrap();
}

#[test]
fn memory_limits_without_swap_accounting_are_written_directly() {
    if !v1_available() {
        return;
    }
    let path = test_cgroup_path("v1-noswap", false);
    let _cleanup = Cleanup { path: path.clone() };
    let cg = Manager::new("noswap", &path, None, false).expect("creating the cgroup");
    let mut m = LinuxMemory::default();
    m.set_limit(Some(48 << 20));
    m.set_reservation(Some(32 << 20));
    m.set_swap(Some(64 << 20));
    let memdir = cg.memory_dir().expect("a memory cgroup");
    let note = cgroups::memory::apply_without_swap(&memdir, &m, false).unwrap();
    assert_eq!(read_trim(memdir.join("memory.limit_in_bytes")), "50331648");
    assert_eq!(
        read_trim(memdir.join("memory.soft_limit_in_bytes")),
        "33554432"
    );
    assert!(
        note.is_some_and(|n| n.contains("swap")),
        "swap skip not reported"
    );
    cg.destroy().unwrap();
}

#[test]
fn device_rules_reach_the_devices_controller() {
    if !v1_available() || !Path::new("/sys/fs/cgroup/devices").exists() {
        return;
    }
    let path = test_cgroup_path("v1-dev", false);
    let _cleanup = Cleanup { path: path.clone() };
    // Kata's runtime sends deny-all first, then what the container may use.
    let mut wire = protocols::oci::LinuxResources::new();
    let mut deny = protocols::oci::LinuxDeviceCgroup::new();
    deny.Type = "a".into();
    deny.Major = -1;
    deny.Minor = -1;
    deny.Access = "rwm".into();
    let mut null = protocols::oci::LinuxDeviceCgroup::new();
    null.Allow = true;
    null.Type = "c".into();
    null.Major = 1;
    null.Minor = 3;
    null.Access = "rwm".into();
    wire.Devices = vec![deny, null];
    let r = cgroups::resources_from_grpc(&wire).unwrap();
    let cg = Manager::new("dev", &path, Some(&r), false).expect("creating the cgroup");
    // The deny-all returns to Kata's defaults (src/agent/rustjail/src/cgroups/fs/mod.rs
    // setup_devcg_whitelist: DEFAULT_DEVICES, then DEFAULT_ALLOWED_DEVICES),
    // which already hold 1:3; the kernel lists them in the order written.
    let defaults = [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 5:0 rwm",
        "c 1:9 rwm",
        "c 1:8 rwm",
        "c 5:1 rwm",
        "c 136:* rwm",
        "c 5:2 rwm",
        "c 10:200 rwm",
    ];
    let list = read_trim(dir("devices", &path).join("devices.list"));
    assert_eq!(list.lines().collect::<Vec<_>>(), defaults, "{list}");
    // An update adds to the rules in force: a disk, and no writing to 1:3.
    let mut wire = protocols::oci::LinuxResources::new();
    let mut disk = protocols::oci::LinuxDeviceCgroup::new();
    disk.Allow = true;
    disk.Type = "b".into();
    disk.Major = 254;
    disk.Minor = -1;
    disk.Access = "r".into();
    let mut no_write = protocols::oci::LinuxDeviceCgroup::new();
    no_write.Type = "c".into();
    no_write.Major = 1;
    no_write.Minor = 3;
    no_write.Access = "w".into();
    wire.Devices = vec![disk, no_write];
    cg.update(&cgroups::resources_from_grpc(&wire).unwrap())
        .expect("updating the device rules");
    let list = read_trim(dir("devices", &path).join("devices.list"));
    assert!(list.lines().any(|l| l == "b 254:* r"), "{list}");
    assert!(list.lines().any(|l| l == "c 1:3 rm"), "{list}");
    assert_eq!(list.lines().count(), defaults.len() + 1, "{list}");
    cg.destroy().unwrap();
}

/// The first whole disk in /proc/partitions, as (major, minor).
fn first_disk() -> Option<(i64, i64)> {
    let text = std::fs::read_to_string("/proc/partitions").ok()?;
    text.lines().skip(2).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let major: i64 = f.first()?.parse().ok()?;
        let minor: i64 = f.get(1)?.parse().ok()?;
        let name = f.get(3)?;
        Path::new("/sys/block")
            .join(name)
            .exists()
            .then_some((major, minor))
    })
}

#[test]
fn block_io_throttle_and_stats() {
    if !v1_available() {
        return;
    }
    if !Path::new("/sys/fs/cgroup/blkio").exists() {
        test_support::skip!("no v1 blkio controller at /sys/fs/cgroup/blkio");
    }
    let Some((major, minor)) = first_disk() else {
        test_support::skip!("no block device to throttle");
    };
    let path = test_cgroup_path("v1-blkio", false);
    let _cleanup = Cleanup { path: path.clone() };
    let mut wire = protocols::oci::LinuxResources::new();
    let mut bio = protocols::oci::LinuxBlockIO::new();
    let mut t = protocols::oci::LinuxThrottleDevice::new();
    t.Major = major;
    t.Minor = minor;
    t.Rate = 10 << 20;
    bio.ThrottleReadBpsDevice = vec![t];
    wire.BlockIO = Some(bio).into();
    let r = cgroups::resources_from_grpc(&wire).unwrap();
    let cg = Manager::new("blkio", &path, Some(&r), false).expect("creating the cgroup");
    let rules = read_trim(dir("blkio", &path).join("blkio.throttle.read_bps_device"));
    assert_eq!(rules, format!("{major}:{minor} {}", 10 << 20));

    // 64 KiB of direct (uncached) reads of a file, accounted to the cgroup.
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("blkio-{}", std::process::id()));
    std::fs::write(&file, vec![7u8; 64 << 10]).unwrap();
    let mut child = Waiting::spawn(&format!(
        "dd if={} of=/dev/null bs=4096 iflag=direct",
        file.display()
    ));
    cg.add_process(child.pid()).unwrap();
    child.go();
    assert_eq!(child.wait_signal(), None, "dd was killed");
    let _ = std::fs::remove_file(&file);
    let stats = cg.stats().unwrap();
    let blkio = stats.blkio_stats.as_ref().expect("blkio stats");
    let read: u64 = blkio
        .io_service_bytes_recursive
        .iter()
        .filter(|e| e.op == "read")
        .map(|e| e.value)
        .sum();
    eprintln!("blkio read bytes {read}");
    assert!(read >= 64 << 10, "read bytes {read}: {blkio:?}");
    cg.destroy().unwrap();
}

#[test]
fn v2_requested_on_a_v1_machine_is_a_clear_error() {
    if !v1_available() {
        return;
    }
    let path = test_cgroup_path("v1-wants-v2", false);
    let _cleanup = Cleanup { path: path.clone() };
    let err = match Manager::new("wants-v2", &path, None, true) {
        Ok(_) => panic!("v2 on a v1 /sys/fs/cgroup must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("cgroup v2 was requested"), "{err}");
    assert!(!dir("memory", &path).exists(), "created a cgroup anyway");
}
