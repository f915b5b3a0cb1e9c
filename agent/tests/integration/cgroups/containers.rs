//! The resources RPCs on real containers (busybox rootfs) through the
//! client: stats, UpdateContainer, Pause/Resume, GetOOMEvent. Needs root;
//! CI runs as root. Works on cgroup v1 and on v2 with the memory controller.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_ctl::{context, AgentClient};
use protocols::agent::*;
use protocols::oci;
use test_support::TestAgent;
use test_support::{container as cu, spec};

/// When a test fails half way, its container's cgroups would outlive the
/// agent: thaw them, kill what is in them, remove them.
struct LeftoverCgroups(String);

impl Drop for LeftoverCgroups {
    fn drop(&mut self) {
        for dir in cu::cgroup_dirs(&self.0) {
            let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
            let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        for dir in cu::cgroup_dirs(&self.0) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn memory_controller_present() -> bool {
    if v2() {
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
    } else {
        Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
    }
}

/// The container's cgroup directory for `controller` (v1) or the one v2 dir.
fn cg_dir(controller: &str, cid: &str) -> PathBuf {
    let base = Path::new("/sys/fs/cgroup");
    let base = if v2() {
        base.to_path_buf()
    } else {
        base.join(controller)
    };
    base.join(spec::CGROUP_PARENT).join(cid)
}

fn memory_limit_file(cid: &str) -> String {
    let file = if v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let path = cg_dir("memory", cid).join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn swap_on() -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().count() > 1)
}

fn memory(limit: i64) -> oci::LinuxResources {
    let mut m = oci::LinuxMemory::new();
    m.Limit = limit;
    if swap_on() {
        m.Swap = limit;
    }
    let mut r = oci::LinuxResources::new();
    r.Memory = Some(m).into();
    r
}

fn spec_with(cid: &str, rootfs: &Path, args: &[&str], r: oci::LinuxResources) -> oci::Spec {
    let mut s = spec::container(cid, rootfs, args);
    if let Some(l) = s.Linux.as_mut() {
        l.Resources = Some(r).into();
    }
    s
}

async fn stats(c: &AgentClient, cid: &str) -> CgroupStats {
    let mut req = StatsContainerRequest::new();
    req.container_id = cid.into();
    let resp = c
        .agent
        .stats_container(context(10), &req)
        .await
        .expect("StatsContainer");
    resp.cgroup_stats
        .into_option()
        .expect("cgroup stats in the answer")
}

async fn update(c: &AgentClient, cid: &str, r: oci::LinuxResources) -> ttrpc::Result<()> {
    let mut req = UpdateContainerRequest::new();
    req.container_id = cid.into();
    req.resources = Some(r).into();
    c.agent
        .update_container(context(10), &req)
        .await
        .map(|_| ())
}

fn frozen(cid: &str) -> bool {
    if v2() {
        std::fs::read_to_string(cg_dir("", cid).join("cgroup.events"))
            .is_ok_and(|e| e.lines().any(|l| l == "frozen 1"))
    } else {
        std::fs::read_to_string(cg_dir("freezer", cid).join("freezer.state"))
            .is_ok_and(|s| s.trim() == "FROZEN")
    }
}

#[tokio::test]
async fn stats_update_pause_and_resume_a_running_container() {
    test_support::setup!(dir, rootfs);
    if !memory_controller_present() {
        test_support::skip!("no memory cgroup controller (v1 memory mount or v2 memory)");
    }
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("cg-life");
    let _cleanup = LeftoverCgroups(id.clone());
    // Allocates a little after start, then waits.
    let args = ["sh", "-c", "x=$(seq 1 20000); sleep 30"];
    cu::create(c, &id, spec_with(&id, &rootfs, &args, memory(64 << 20)))
        .await
        .expect("create");
    cu::start(c, &id).await.expect("start");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(memory_limit_file(&id), "67108864");

    let s = stats(c, &id).await;
    let mem = s.memory_stats.as_ref().expect("memory stats");
    let usage = mem.usage.as_ref().expect("memory usage");
    eprintln!(
        "container memory usage {} limit {}",
        usage.usage, usage.limit
    );
    assert!(usage.usage > 0, "memory usage is 0");
    assert_eq!(usage.limit, 64 << 20);
    assert!(!mem.stats.is_empty(), "memory.stat map is empty");
    assert!(s.pids_stats.as_ref().expect("pids stats").current >= 1);

    update(c, &id, memory(128 << 20))
        .await
        .expect("UpdateContainer");
    assert_eq!(memory_limit_file(&id), "134217728");
    let mut bad = oci::LinuxResources::new();
    let mut cpu = oci::LinuxCPU::new();
    cpu.Cpus = "4000".into();
    bad.CPU = Some(cpu).into();
    let (code, message) = test_support::rpc::err_status(update(c, &id, bad).await);
    assert_eq!(
        code,
        ttrpc::Code::INVALID_ARGUMENT,
        "cpuset 4000: {message}"
    );

    let mut pause = PauseContainerRequest::new();
    pause.container_id = id.clone();
    c.agent
        .pause_container(context(10), &pause)
        .await
        .expect("PauseContainer");
    assert!(frozen(&id), "not frozen after PauseContainer");
    let mut resume = ResumeContainerRequest::new();
    resume.container_id = id.clone();
    c.agent
        .resume_container(context(10), &resume)
        .await
        .expect("ResumeContainer");
    assert!(!frozen(&id), "still frozen after ResumeContainer");

    cu::remove(c, &id).await.expect("remove");
    cu::assert_gone(agent.pid(), &id);
}

#[tokio::test]
async fn an_oom_kill_is_returned_by_get_oom_event() {
    test_support::setup!(dir, rootfs);
    if !memory_controller_present() {
        test_support::skip!("no memory cgroup controller (v1 memory mount or v2 memory)");
    }
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("cg-oom");
    let _cleanup = LeftoverCgroups(id.clone());
    // A 64 MiB buffer in a 16 MiB cgroup.
    let args = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"];
    cu::create(c, &id, spec_with(&id, &rootfs, &args, memory(16 << 20)))
        .await
        .expect("create");
    // A runtime that died with a GetOOMEvent pending (its socket closed by
    // the kernel): that call must not take the event.
    abandon_a_get_oom_event(&agent.socket);

    let waiter = agent.connect().await;
    let oom = tokio::spawn(async move {
        waiter
            .agent
            .get_oom_event(context(0), &GetOOMEventRequest::new())
            .await
    });
    cu::start(c, &id).await.expect("start");
    assert_eq!(
        cu::wait(c, &id, "").await.expect("wait"),
        128 + 9,
        "dd was not killed"
    );
    let event = tokio::time::timeout(Duration::from_secs(10), oom)
        .await
        .expect("no OOM event within 10s")
        .expect("the GetOOMEvent task")
        .expect("GetOOMEvent");
    assert_eq!(event.container_id, id);
    cu::remove(c, &id).await.expect("remove");
    cu::assert_gone(agent.pid(), &id);
}

/// Send GetOOMEvent as raw ttRPC frames on a fresh socket, then close it.
fn abandon_a_get_oom_event(socket: &Path) {
    use protobuf::Message;
    use std::io::Write;
    let mut req = ttrpc::Request::new();
    req.service = "grpc.AgentService".into();
    req.method = "GetOOMEvent".into();
    req.payload = GetOOMEventRequest::new()
        .write_to_bytes()
        .expect("encoding");
    let payload = req.write_to_bytes().expect("encoding");
    let mut frame = Vec::new();
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&1u32.to_be_bytes()); // stream id
    frame.push(1); // request
    frame.push(0);
    frame.extend_from_slice(&payload);
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connecting");
    s.write_all(&frame).expect("sending GetOOMEvent");
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
}

/// The `/sys/fs/cgroup` mount Kata's runtime puts in every spec (type
/// cgroup, read-only). On a cgroup v1 guest Kata's agent builds it as a
/// read-only tmpfs holding, per hierarchy, a read-only bind mount of the
/// container's own cgroup (name=systemd stays writable), and a symlink per
/// controller of a co-mounted hierarchy (src/agent/rustjail/src/mount.rs
/// mount_cgroups); on v2 a cgroup2 mount (mount_cgroups_v2). Before the
/// fix the v1 path failed with EINVAL (the read-only remount went through
/// the descriptor opened before the bind mount, which is no mount point).
#[tokio::test]
async fn the_sys_fs_cgroup_mount_shows_the_containers_own_cgroups() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("sys-fs-cgroup");
    let _leftovers = LeftoverCgroups(id.clone());
    let script = if v2() {
        "test -f /sys/fs/cgroup/cgroup.controllers && echo v2; \
         mkdir /sys/fs/cgroup/x 2>/dev/null || echo read-only"
    } else {
        "test -f /sys/fs/cgroup/memory/memory.limit_in_bytes && echo memory; \
         test -e /sys/fs/cgroup/memory/kata-agent-tests || echo own; \
         mkdir /sys/fs/cgroup/memory/x 2>/dev/null || echo read-only; \
         touch /sys/fs/cgroup/x 2>/dev/null || echo tmpfs-read-only; \
         test -e /sys/fs/cgroup/systemd/kata-agent-tests || echo systemd-own; \
         mkdir /sys/fs/cgroup/systemd/x && rmdir /sys/fs/cgroup/systemd/x && echo systemd-writable"
    };
    let mut s = spec::container(&id, &rootfs, &["sh", "-c", script]);
    spec::add_mount(
        &mut s,
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    );
    cu::create(c, &id, s)
        .await
        .expect("create with /sys/fs/cgroup");
    cu::start(c, &id).await.expect("start");
    let out = cu::read_all(c, &id, &id, false).await;
    assert_eq!(cu::wait(c, &id, &id).await.expect("wait"), 0, "{out}");
    cu::remove(c, &id).await.expect("remove");
    let want = if v2() {
        "v2\nread-only\n"
    } else {
        "memory\nown\nread-only\ntmpfs-read-only\nsystemd-own\nsystemd-writable\n"
    };
    assert_eq!(out, want);
}

/// After OnlineCPUMem brings CPUs online, Kata's agent widens the cpusets
/// of every container whose spec names CPUs: each level below the
/// hierarchy's root gets the guest's online CPUs, the container its own
/// (src/agent/src/sandbox.rs online_cpu_memory ->
/// rustjail cgroups/fs update_cpuset_path); a v1 child cpuset never gains a
/// hot-plugged CPU by itself. Here the container's parent cgroup is
/// narrowed to CPU 0 to stand for "CPU 1 came online after it was made";
/// nb_cpus 1 onlines nothing on this machine (cpu_only: no memory).
#[tokio::test]
async fn online_cpu_mem_widens_the_cpusets_of_pinned_containers() {
    test_support::setup!(dir, rootfs);
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .expect("reading the online CPUs")
        .trim()
        .to_string();
    if online == "0" {
        test_support::skip!("one CPU online: nothing to widen a cpuset to");
    }
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("cpuset-widen");
    let _leftovers = LeftoverCgroups(id.clone());
    let parent = format!("{}-parent", id);
    let mut s = spec::container(&id, &rootfs, &["sleep", "60"]);
    if let Some(l) = s.Linux.as_mut() {
        l.CgroupsPath = format!("/{}/{parent}/{id}", spec::CGROUP_PARENT);
        let mut cpu = oci::LinuxCPU::new();
        cpu.Cpus = "0".into();
        let mut r = oci::LinuxResources::new();
        r.CPU = Some(cpu).into();
        l.Resources = Some(r).into();
    }
    cu::create(c, &id, s).await.expect("create pinned to CPU 0");
    let base = if v2() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup/cpuset")
    };
    let parent_dir = base.join(spec::CGROUP_PARENT).join(&parent);
    let container_dir = parent_dir.join(&id);
    if !parent_dir.join("cpuset.cpus").exists() {
        let _ = cu::remove(c, &id).await;
        test_support::skip::not_applicable("no cpuset controller in the container's cgroup");
        return;
    }
    std::fs::write(parent_dir.join("cpuset.cpus"), "0").expect("narrowing the parent to CPU 0");
    let mut req = OnlineCPUMemRequest::new();
    req.nb_cpus = 1;
    req.cpu_only = true;
    c.agent
        .online_cpu_mem(context(20), &req)
        .await
        .expect("OnlineCPUMem");
    let read = |d: &Path| std::fs::read_to_string(d.join("cpuset.cpus")).unwrap_or_default();
    let (parent_cpus, own_cpus) = (read(&parent_dir), read(&container_dir));
    cu::remove(c, &id).await.expect("remove");
    for root in cu::cgroup_dirs(&id)
        .iter()
        .chain(std::iter::once(&parent_dir))
    {
        let _ = std::fs::remove_dir(root);
    }
    if let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") {
        for r in roots.flatten() {
            let _ = std::fs::remove_dir(r.path().join(spec::CGROUP_PARENT).join(&parent));
        }
    }
    assert_eq!(
        parent_cpus.trim(),
        online,
        "the parent has the online CPUs again"
    );
    assert_eq!(own_cpus.trim(), "0", "the container keeps its own CPUs");
}
