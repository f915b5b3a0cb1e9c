//! 200 create/start/wait/remove cycles leave no fd, mount, cgroup or zombie
//! behind in the agent (counted before and after). Needs root; CI runs as root.

use test_support::TestAgent;
use test_support::{container as cu, spec};

const CYCLES: usize = 200;

async fn cycle(agent: &TestAgent, rootfs: &std::path::Path, id: &str) {
    let c = &agent.client;
    cu::create(c, id, spec::container(id, rootfs, &["echo", "cycle"]))
        .await
        .expect("create");
    cu::start(c, id).await.expect("start");
    assert_eq!(cu::read_all(c, id, "", false).await, "cycle\n");
    assert_eq!(cu::wait(c, id, "").await.expect("wait"), 0);
    cu::remove(c, id).await.expect("remove");
}

#[tokio::test]
async fn many_cycles_leak_nothing() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let pid = agent.pid();
    // Warm up: lazily created things (the reaper, the runtime's threads).
    cycle(&agent, &rootfs, &cu::cid("warmup")).await;
    let fds = cu::fd_count(pid);
    let mounts = cu::mount_count(pid);
    let children = cu::children(pid);
    for i in 0..CYCLES {
        let id = format!("{}-{i}", cu::cid("cycle"));
        cycle(&agent, &rootfs, &id).await;
        cu::assert_gone(pid, &id);
    }
    assert_eq!(
        cu::fd_count(pid),
        fds,
        "agent fds before/after {CYCLES} cycles"
    );
    assert_eq!(cu::mount_count(pid), mounts, "agent mounts before/after");
    assert_eq!(
        cu::children(pid),
        children,
        "agent children (total, zombies) before/after"
    );
    assert_eq!(children.1, 0, "zombies");
}
