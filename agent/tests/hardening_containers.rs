//! Issue 12, findings 5 and 6: a paused container can be killed and
//! removed, and two containers cannot share one cgroup. Needs root; CI runs
//! as root.

mod common;
mod container_util;

use std::time::Duration;

use common::{busybox_rootfs, TestAgent};
use container_util as cu;
use protocols::agent::*;

fn code(e: &ttrpc::Error) -> ttrpc::Code {
    match e {
        ttrpc::Error::RpcStatus(s) => s.code(),
        other => panic!("not a status: {other:?}"),
    }
}

/// Kata's agent thaws after signalling all (src/agent/src/rpc.rs
/// do_signal_process). Before the fix the processes stayed frozen: the
/// wait never ended and RemoveContainer failed.
#[tokio::test]
async fn a_paused_container_is_killed_and_removed() {
    require_root!();
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(rootfs) = busybox_rootfs(dir.path()) else {
        eprintln!("SKIPPED: no busybox rootfs");
        return;
    };
    let agent = TestAgent::start("").await;
    let id = cu::cid("paused-kill");
    cu::create(
        &agent.client,
        &id,
        cu::spec(&id, &rootfs, &["sh", "-c", "sleep 1000 & sleep 1000"]),
    )
    .await
    .expect("create");
    cu::start(&agent.client, &id).await.expect("start");
    let mut pause = PauseContainerRequest::new();
    pause.container_id = id.clone();
    if let Err(e) = agent
        .client
        .agent
        .pause_container(agent_ctl::context(10), &pause)
        .await
    {
        let _ = cu::signal(&agent.client, &id, "", 9).await;
        let _ = cu::remove(&agent.client, &id).await;
        if std::env::var("KATA_TESTS_STRICT").as_deref() == Ok("1") {
            panic!("PauseContainer failed: {e:?}");
        }
        eprintln!("SKIPPED: no freezer here: {e:?}");
        return;
    }
    cu::signal(&agent.client, &id, "", 9)
        .await
        .expect("SIGKILL all");
    let waited =
        tokio::time::timeout(Duration::from_secs(10), cu::wait(&agent.client, &id, "")).await;
    let removed = cu::remove(&agent.client, &id).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "the killed init of a paused container never exited: {waited:?}"
    );
    removed.expect("RemoveContainer of a killed paused container");
    cu::assert_gone(agent.pid(), &id);
}

/// Before the fix the second create succeeded; removing the first took the
/// shared cgroup down and the second's WaitProcess and RemoveContainer
/// failed forever ("the reaper stopped before the process exited").
#[tokio::test]
async fn a_second_container_in_the_same_cgroup_is_refused() {
    require_root!();
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(rootfs) = busybox_rootfs(dir.path()) else {
        eprintln!("SKIPPED: no busybox rootfs");
        return;
    };
    let agent = TestAgent::start("").await;
    let first = cu::cid("cg-first");
    let second = cu::cid("cg-second");
    let spec_first = cu::spec(&first, &rootfs, &["true"]);
    let mut spec_second = cu::spec(&second, &rootfs, &["true"]);
    spec_second.Linux.as_mut().expect("linux").CgroupsPath = spec_first
        .Linux
        .as_ref()
        .expect("linux")
        .CgroupsPath
        .clone();
    cu::create(&agent.client, &first, spec_first)
        .await
        .expect("first");
    let err = cu::create(&agent.client, &second, spec_second).await;
    // Whatever the answer, the first container keeps working.
    cu::start(&agent.client, &first).await.expect("start first");
    assert_eq!(cu::wait(&agent.client, &first, "").await.expect("wait"), 0);
    cu::remove(&agent.client, &first)
        .await
        .expect("remove first");
    if err.is_ok() {
        let _ = cu::remove(&agent.client, &second).await;
    }
    let err = err.expect_err("a second container in the first one's cgroup");
    assert_eq!(code(&err), ttrpc::Code::ALREADY_EXISTS, "{err:?}");
    assert!(
        format!("{err:?}").contains(&first),
        "names the owner: {err:?}"
    );
    cu::assert_gone(agent.pid(), &second);
    cu::assert_gone(agent.pid(), &first);
}
