//! Issue 12, findings 3 and 8: a length or count in a request never sizes an
//! allocation or a loop unchecked, and a large environment is set up in
//! linear time. Needs root (containers); CI runs as root.

use std::time::{Duration, Instant};

use protocols::agent::*;
use test_support::container as cu;
use test_support::rpc::code;
use test_support::TestAgent;

/// Before the fix the agent allocated `len` bytes: 4 GiB aborted it
/// ("memory allocation of 4294967295 bytes failed").
#[tokio::test]
async fn a_huge_read_stream_len_is_refused_and_the_agent_lives() {
    test_support::setup!(dir, rootfs);
    let mut agent = TestAgent::start("").await;
    let id = cu::cid("hugeread");
    cu::create(
        &agent.client,
        &id,
        test_support::spec::container(&id, &rootfs, &["sleep", "30"]),
    )
    .await
    .expect("create");
    cu::start(&agent.client, &id).await.expect("start");
    for stderr in [false, true] {
        let mut req = ReadStreamRequest::new();
        req.container_id = id.clone();
        req.len = u32::MAX;
        let r = if stderr {
            agent
                .client
                .agent
                .read_stderr(agent_ctl::context(10), &req)
                .await
        } else {
            agent
                .client
                .agent
                .read_stdout(agent_ctl::context(10), &req)
                .await
        };
        let err = r.expect_err("a 4 GiB read must be refused");
        assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
        assert!(format!("{err:?}").contains("4294967295"), "{err:?}");
    }
    assert!(agent.is_running(), "the agent died:\n{}", agent.log_text());
    cu::signal(&agent.client, &id, "", 9).await.expect("kill");
    cu::wait(&agent.client, &id, "").await.expect("wait");
    cu::remove(&agent.client, &id).await.expect("remove");
}

#[tokio::test]
async fn a_copy_file_past_the_size_bound_is_refused() {
    let agent = TestAgent::start("").await;
    let mut req = CopyFileRequest::new();
    req.path = "/run/kata-containers/shared/containers/hardening-big".into();
    req.file_size = i64::MAX;
    req.offset = i64::MAX - 1;
    req.data = b"x".to_vec();
    req.file_mode = 0o644;
    let err = agent
        .client
        .agent
        .copy_file(agent_ctl::context(10), &req)
        .await
        .expect_err("an 8 EiB file must be refused");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
    assert!(format!("{err:?}").contains("file_size"), "{err:?}");
}

/// A short entry per variable: 50,000 of them fit in execve's argument space.
fn env(n: usize) -> Vec<String> {
    let mut env: Vec<String> = (0..n).map(|i| format!("V{i}={i}")).collect();
    env.push("PATH=/bin".into());
    env
}

/// Before the fix the init set each entry with setenv (a scan of the whole
/// environment per entry): 40,000 entries took 6.3 s, 50,000 about 10 s.
#[tokio::test]
async fn fifty_thousand_env_entries_are_set_up_in_linear_time() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let id = cu::cid("bigenv");
    let mut spec = test_support::spec::container(&id, &rootfs, &["sh", "-c", "echo $V0 $V49999"]);
    spec.Process.as_mut().expect("process").Env = env(50_000);
    let t = Instant::now();
    cu::create(&agent.client, &id, spec).await.expect("create");
    cu::start(&agent.client, &id).await.expect("start");
    let out = cu::read_all(&agent.client, &id, "", false).await;
    assert_eq!(cu::wait(&agent.client, &id, "").await.expect("wait"), 0);
    let took = t.elapsed();
    assert_eq!(out.trim(), "0 49999");
    assert!(
        took < Duration::from_secs(4),
        "create+start+wait with 50,000 env entries took {took:?}"
    );
    cu::remove(&agent.client, &id).await.expect("remove");
}

#[tokio::test]
async fn an_environment_past_the_bound_is_refused_before_anything_is_made() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let id = cu::cid("toomanyenv");
    let mut spec = test_support::spec::container(&id, &rootfs, &["true"]);
    spec.Process.as_mut().expect("process").Env = env(65_536);
    let err = cu::create(&agent.client, &id, spec)
        .await
        .expect_err("too many env entries");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
    assert!(format!("{err:?}").contains("env entries"), "{err:?}");
    cu::assert_gone(agent.pid(), &id);
}
