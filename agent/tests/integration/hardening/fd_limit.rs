//! Issue 12, finding 7 (in part): the agent raises its open-file limit at
//! start (a guest's init gets 1024, which 1,100 connections exhaust), and a
//! container whose spec sets no RLIMIT_NOFILE still gets the limit the agent
//! was started with. Needs root; CI runs as root.

use test_support::container as cu;
use test_support::TestAgent;

/// The soft "Max open files" of a process.
fn soft_nofile(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .expect("limits")
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .expect("Max open files")
}

#[tokio::test]
async fn the_agent_raises_its_fd_limit_and_containers_keep_theirs() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start_wrapped("", &["prlimit", "--nofile=1024:4096", "--"]).await;
    let raised = soft_nofile(agent.pid());
    let id = cu::cid("fd-limit");
    let mut spec = test_support::spec::container(&id, &rootfs, &["sh", "-c", "ulimit -n"]);
    spec.Process.as_mut().expect("process").Rlimits.clear();
    cu::create(&agent.client, &id, spec).await.expect("create");
    cu::start(&agent.client, &id).await.expect("start");
    let out = cu::read_all(&agent.client, &id, "", false).await;
    cu::wait(&agent.client, &id, "").await.expect("wait");
    cu::remove(&agent.client, &id).await.expect("remove");
    assert!(raised >= 4096, "the agent's soft limit stayed at {raised}");
    assert_eq!(
        out.trim(),
        "1024",
        "the container must get the agent's original limit"
    );
}
