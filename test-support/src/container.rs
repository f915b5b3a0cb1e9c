//! Helpers for the container life-cycle tests and the lifecycle bench: a
//! grpc OCI spec for a busybox rootfs, and the RPC calls with their checks.
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};

use agent_ctl::AgentClient;
use protocols::agent::*;
use protocols::oci;

/// Where the TEMP/real cgroup manager puts a container's cgroup (its
/// linux.cgroupsPath in these specs).
pub const CGROUP_PARENT: &str = "kata-agent-tests";

/// A unique container id for this test process.
pub fn cid(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> oci::Mount {
    let mut m = oci::Mount::new();
    m.destination = dest.into();
    m.type_ = typ.into();
    m.source = source.into();
    m.options = options.iter().map(|s| s.to_string()).collect();
    m
}

pub fn process(args: &[&str]) -> oci::Process {
    let mut p = oci::Process::new();
    p.Args = args.iter().map(|s| s.to_string()).collect();
    p.Env = vec!["PATH=/bin:/sbin:/usr/bin".into(), "HOME=/root".into()];
    p.Cwd = "/".into();
    p.User = Some(oci::User::new()).into();
    let caps: Vec<String> = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut c = oci::LinuxCapabilities::new();
    c.Bounding = caps.clone();
    c.Effective = caps.clone();
    c.Permitted = caps;
    p.Capabilities = Some(c).into();
    let mut rl = oci::POSIXRlimit::new();
    rl.Type = "RLIMIT_NOFILE".into();
    rl.Hard = 1024;
    rl.Soft = 1024;
    p.Rlimits = vec![rl];
    p.NoNewPrivileges = true;
    p
}

/// A container spec like the ones Kata's runtime sends: new pid, ipc, uts
/// and mount namespaces (the network namespace is the sandbox's).
pub fn spec(cid: &str, rootfs: &Path, args: &[&str]) -> oci::Spec {
    let mut s = oci::Spec::new();
    s.Version = "1.0.2".into();
    s.Process = Some(process(args)).into();
    let mut root = oci::Root::new();
    root.Path = rootfs.display().to_string();
    s.Root = Some(root).into();
    s.Hostname = "kata-test".into();
    s.Mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ];
    let mut l = oci::Linux::new();
    l.Namespaces = ["pid", "ipc", "uts", "mount"]
        .iter()
        .map(|t| {
            let mut ns = oci::LinuxNamespace::new();
            ns.Type = t.to_string();
            ns
        })
        .collect();
    l.CgroupsPath = format!("/{CGROUP_PARENT}/{cid}");
    l.MaskedPaths = vec!["/proc/kcore".into(), "/proc/keys".into()];
    l.ReadonlyPaths = vec!["/proc/sys".into(), "/proc/sysrq-trigger".into()];
    s.Linux = Some(l).into();
    s
}

pub fn add_mount(s: &mut oci::Spec, dest: &str, typ: &str, source: &str, options: &[&str]) {
    s.Mounts.push(mount(dest, typ, source, options));
}

pub async fn create(c: &AgentClient, cid: &str, spec: oci::Spec) -> ttrpc::Result<()> {
    let mut req = CreateContainerRequest::new();
    req.container_id = cid.into();
    req.exec_id = cid.into();
    req.OCI = Some(spec).into();
    c.agent
        .create_container(agent_ctl::context(30), &req)
        .await
        .map(|_| ())
}

pub async fn start(c: &AgentClient, cid: &str) -> ttrpc::Result<()> {
    let mut req = StartContainerRequest::new();
    req.container_id = cid.into();
    c.agent
        .start_container(agent_ctl::context(30), &req)
        .await
        .map(|_| ())
}

pub async fn wait(c: &AgentClient, cid: &str, exec_id: &str) -> ttrpc::Result<i32> {
    let mut req = WaitProcessRequest::new();
    req.container_id = cid.into();
    req.exec_id = exec_id.into();
    c.agent
        .wait_process(agent_ctl::context(60), &req)
        .await
        .map(|r| r.status)
}

pub async fn remove(c: &AgentClient, cid: &str) -> ttrpc::Result<()> {
    let mut req = RemoveContainerRequest::new();
    req.container_id = cid.into();
    req.timeout = 10;
    c.agent
        .remove_container(agent_ctl::context(30), &req)
        .await
        .map(|_| ())
}

pub async fn exec(c: &AgentClient, cid: &str, exec_id: &str, p: oci::Process) -> ttrpc::Result<()> {
    let mut req = ExecProcessRequest::new();
    req.container_id = cid.into();
    req.exec_id = exec_id.into();
    req.process = Some(p).into();
    c.agent
        .exec_process(agent_ctl::context(30), &req)
        .await
        .map(|_| ())
}

pub async fn signal(c: &AgentClient, cid: &str, exec_id: &str, sig: u32) -> ttrpc::Result<()> {
    let mut req = SignalProcessRequest::new();
    req.container_id = cid.into();
    req.exec_id = exec_id.into();
    req.signal = sig;
    c.agent
        .signal_process(agent_ctl::context(10), &req)
        .await
        .map(|_| ())
}

pub async fn write_stdin(
    c: &AgentClient,
    cid: &str,
    exec_id: &str,
    data: &[u8],
) -> ttrpc::Result<u32> {
    let mut req = WriteStreamRequest::new();
    req.container_id = cid.into();
    req.exec_id = exec_id.into();
    req.data = data.to_vec();
    c.agent
        .write_stdin(agent_ctl::context(10), &req)
        .await
        .map(|r| r.len)
}

pub async fn close_stdin(c: &AgentClient, cid: &str, exec_id: &str) -> ttrpc::Result<()> {
    let mut req = CloseStdinRequest::new();
    req.container_id = cid.into();
    req.exec_id = exec_id.into();
    c.agent
        .close_stdin(agent_ctl::context(10), &req)
        .await
        .map(|_| ())
}

/// One ReadStdout/ReadStderr call: Some(data), or None at EOF (Kata's
/// "read meet eof" error).
pub async fn read_once(c: &AgentClient, cid: &str, exec_id: &str, stderr: bool) -> Option<Vec<u8>> {
    let mut req = ReadStreamRequest::new();
    req.container_id = cid.into();
    req.exec_id = exec_id.into();
    req.len = 4096;
    let r = if stderr {
        c.agent.read_stderr(agent_ctl::context(30), &req).await
    } else {
        c.agent.read_stdout(agent_ctl::context(30), &req).await
    };
    match r {
        Ok(resp) => Some(resp.data),
        Err(ttrpc::Error::RpcStatus(s)) if s.message.contains("eof") => None,
        Err(e) => panic!("reading the output of {cid}/{exec_id}: {e:?}"),
    }
}

/// Everything until EOF.
pub async fn read_all(c: &AgentClient, cid: &str, exec_id: &str, stderr: bool) -> String {
    let mut out = Vec::new();
    while let Some(data) = read_once(c, cid, exec_id, stderr).await {
        out.extend(data);
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn bundle_dir(cid: &str) -> PathBuf {
    Path::new("/run/kata-containers").join(cid)
}

/// Every cgroup directory named `cid` under /sys/fs/cgroup (v1 controllers
/// and the unified tree).
pub fn cgroup_dirs(cid: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    let mut candidates = vec![Path::new("/sys/fs/cgroup").join(CGROUP_PARENT).join(cid)];
    for r in roots.flatten() {
        candidates.push(r.path().join(CGROUP_PARENT).join(cid));
    }
    for c in candidates {
        if c.exists() {
            found.push(c);
        }
    }
    found
}

/// Lines of the agent's mountinfo that mention `needle`.
pub fn mounts_mentioning(agent_pid: u32, needle: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{agent_pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

pub fn mount_count(agent_pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{agent_pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .count()
}

pub fn fd_count(agent_pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{agent_pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Children of `pid` (any state), and how many of them are zombies.
pub fn children(pid: u32) -> (usize, usize) {
    let mut total = 0;
    let mut zombies = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            total += 1;
            if fields.first() == Some(&"Z") {
                zombies += 1;
            }
        }
    }
    (total, zombies)
}

/// The container left nothing: no bundle, no cgroup, no mount.
pub fn assert_gone(agent_pid: u32, cid: &str) {
    assert!(
        !bundle_dir(cid).exists(),
        "bundle {} is still there",
        bundle_dir(cid).display()
    );
    assert_eq!(
        cgroup_dirs(cid),
        Vec::<PathBuf>::new(),
        "cgroup of {cid} still there"
    );
    assert_eq!(
        // "/<cid>/": an id may be a substring of another test's id.
        mounts_mentioning(agent_pid, &format!("/{cid}/")),
        Vec::<String>::new(),
        "mounts of {cid} still there"
    );
}
