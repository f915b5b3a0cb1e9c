//! Issue 12, finding 4: a call cut by a short ttRPC deadline leaves nothing
//! half done. Before the fix ttrpc dropped the handler's future at the
//! deadline: the bundle, the rootfs mount and the cgroup stayed forever and
//! the retry answered NOT_FOUND. Needs root; CI runs as root.

use std::time::Duration;

use protocols::agent::*;
use test_support::container as cu;
use test_support::TestAgent;

/// A 2 ms deadline: far shorter than any create or remove.
fn cut() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(2_000_000)
}

fn is_not_found(e: &ttrpc::Error) -> bool {
    matches!(e, ttrpc::Error::RpcStatus(s) if s.code() == ttrpc::Code::NOT_FOUND)
}

#[tokio::test]
async fn a_create_cut_by_its_deadline_finishes_or_rolls_back() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let id = cu::cid("cut-create");
    let mut req = CreateContainerRequest::new();
    req.container_id = id.clone();
    req.exec_id = id.clone();
    req.OCI = Some(test_support::spec::container(&id, &rootfs, &["true"])).into();
    let r = agent.client.agent.create_container(cut(), &req).await;
    assert!(r.is_err(), "a 2 ms deadline must cut the call");
    // The detached create runs on: give it time, then it exists or is gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    match cu::remove(&agent.client, &id).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => panic!("remove after a cut create: {e:?}"),
    }
    cu::assert_gone(agent.pid(), &id);
}

#[tokio::test]
async fn a_remove_cut_by_its_deadline_finishes_and_its_retry_sees_it() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let id = cu::cid("cut-remove");
    // A poststop hook that takes 300 ms: the deadline cuts the removal
    // between taking the container out and releasing its resources.
    let mut spec = test_support::spec::container(&id, &rootfs, &["sleep", "1000"]);
    let mut hook = protocols::oci::Hook::new();
    hook.Path = "/bin/sleep".into();
    hook.Args = vec!["sleep".into(), "0.3".into()];
    let mut hooks = protocols::oci::Hooks::new();
    hooks.Poststop = vec![hook];
    spec.Hooks = Some(hooks).into();
    cu::create(&agent.client, &id, spec).await.expect("create");
    cu::start(&agent.client, &id).await.expect("start");
    let mut req = RemoveContainerRequest::new();
    req.container_id = id.clone();
    req.timeout = 10;
    let r = agent.client.agent.remove_container(cut(), &req).await;
    assert!(r.is_err(), "a 2 ms deadline must cut the call");
    // The retry, at once: it waits for the removal in flight.
    match cu::remove(&agent.client, &id).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => panic!("retry of a cut remove: {e:?}"),
    }
    cu::assert_gone(agent.pid(), &id);
}
