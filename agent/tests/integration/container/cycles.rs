//! 200 create/start/wait/remove cycles leave no fd, mount, cgroup or zombie
//! behind in the agent (counted before and after). Needs root; CI runs as root.

use std::time::Duration;

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
    // Its own mount namespace: the other tests of this binary mount and
    // unmount in the host's while the cycles run, and the count below must
    // see only this agent's mounts.
    let agent = TestAgent::start_isolated("").await;
    let pid = agent.pid();
    // Warm up: lazily created things (the reaper, the runtime's threads).
    cycle(&agent, &rootfs, &cu::cid("warmup")).await;
    // The agent closes a process's pipes and reaps it in tasks that may
    // still be finishing when RemoveContainer has answered (the machine is
    // busy: every test of the binary runs at once): the baseline is taken
    // once the counts hold still, and the end waits (bounded) until they are
    // back at or below it. A leak stays above it.
    let counts = || (cu::fd_count(pid), cu::mount_count(pid), cu::children(pid));
    let mut before = counts();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = counts();
        if now == before {
            break;
        }
        before = now;
    }
    let (fds, mounts, children) = before;
    for i in 0..CYCLES {
        let id = format!("{}-{i}", cu::cid("cycle"));
        cycle(&agent, &rootfs, &id).await;
        cu::assert_gone(pid, &id);
    }
    let mut after = counts();
    for _ in 0..50 {
        if after.0 <= fds && after.1 <= mounts && after.2 .0 <= children.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = counts();
    }
    assert!(
        after.0 <= fds,
        "agent fds before/after {CYCLES} cycles: {fds} -> {}",
        after.0
    );
    assert!(
        after.1 <= mounts,
        "agent mounts before/after: {mounts} -> {}",
        after.1
    );
    assert!(
        after.2 .0 <= children.0 && after.2 .1 == 0,
        "agent children (total, zombies) before/after: {children:?} -> {:?}",
        after.2
    );
    assert_eq!(children.1, 0, "zombies");
}
