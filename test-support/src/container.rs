//! The container RPCs as one call each (request built, deadline set), and
//! what a test inspects afterwards: bundle, cgroups, mounts, fds, children.

use std::path::{Path, PathBuf};

use agent_ctl::AgentClient;
use protocols::agent::*;
use protocols::oci;

use crate::spec::CGROUP_PARENT;

/// A container id unique to this test process (one binary runs every test:
/// `name` must be unique among them).
pub fn cid(name: &str) -> String {
    format!("{name}-{}", std::process::id())
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
