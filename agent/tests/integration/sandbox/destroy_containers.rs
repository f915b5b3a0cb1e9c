//! DestroySandbox with a running container: the container goes through its
//! own remove path (killed, reaped, bundle/cgroup/mounts gone), then the
//! sandbox's storages and pause process go too.

use std::time::Duration;

use agent_ctl::context;
use protocols::agent::{CreateSandboxRequest, DestroySandboxRequest, Storage};
use test_support::TestAgent;
use test_support::{container as cu, spec};

#[tokio::test]
async fn destroy_sandbox_removes_running_containers() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let mp = format!("/run/kata-containers/test-{}-destroy", std::process::id());
    let mut eph = Storage::new();
    eph.driver = "ephemeral".into();
    eph.mount_point = mp.clone();
    let mut req = CreateSandboxRequest::new();
    req.storages = vec![eph];
    req.sandbox_pidns = true;
    c.agent
        .create_sandbox(context(20), &req)
        .await
        .expect("CreateSandbox");

    let id = cu::cid("destroy");
    cu::create(
        c,
        &id,
        spec::container(&id, &rootfs, &["sh", "-c", "echo up; sleep 300"]),
    )
    .await
    .expect("create");
    cu::start(c, &id).await.expect("start");
    assert_eq!(
        cu::read_once(c, &id, "", false).await.expect("output"),
        b"up\n"
    );

    c.agent
        .destroy_sandbox(context(30), &DestroySandboxRequest::new())
        .await
        .expect("DestroySandbox");
    cu::assert_gone(agent.pid(), &id);
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !info
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(mp.as_str())),
        "storage left"
    );
    for _ in 0..50 {
        if cu::children(agent.pid()) == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        cu::children(agent.pid()),
        (0, 0),
        "processes left behind (container or pause)"
    );
    let err = cu::wait(c, &id, "")
        .await
        .expect_err("the container is gone");
    assert!(format!("{err:?}").contains(&id), "{err:?}");
}
