//! The resources RPCs (UpdateContainer, StatsContainer, Pause/Resume,
//! GetOOMEvent) through the real client: their answers to bad requests, and
//! GetOOMEvent's blocking.

use std::time::Duration;

use agent_ctl::context;
use protocols::agent::*;
use protocols::oci;
use test_support::rpc::err_status;
use test_support::TestAgent;

fn memory(limit: i64) -> oci::LinuxResources {
    let mut m = oci::LinuxMemory::new();
    m.Limit = limit;
    let mut r = oci::LinuxResources::new();
    r.Memory = Some(m).into();
    r
}

fn update(id: &str, r: Option<oci::LinuxResources>) -> UpdateContainerRequest {
    let mut req = UpdateContainerRequest::new();
    req.container_id = id.into();
    req.resources = r.into();
    req
}

#[tokio::test]
async fn unknown_containers_are_not_found() {
    let agent = TestAgent::start("").await;
    let c = &agent.client.agent;
    let (code, msg) = err_status(
        c.update_container(context(5), &update("nope", Some(memory(64 << 20))))
            .await,
    );
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "{msg}");
    assert!(msg.contains("nope"), "{msg}");

    let mut stats = StatsContainerRequest::new();
    stats.container_id = "nope".into();
    assert_eq!(
        err_status(c.stats_container(context(5), &stats).await).0,
        ttrpc::Code::NOT_FOUND
    );
    let mut pause = PauseContainerRequest::new();
    pause.container_id = "nope".into();
    assert_eq!(
        err_status(c.pause_container(context(5), &pause).await).0,
        ttrpc::Code::NOT_FOUND
    );
    let mut resume = ResumeContainerRequest::new();
    resume.container_id = "nope".into();
    assert_eq!(
        err_status(c.resume_container(context(5), &resume).await).0,
        ttrpc::Code::NOT_FOUND
    );
}

#[tokio::test]
async fn nonsense_is_invalid_argument() {
    let agent = TestAgent::start("").await;
    let c = &agent.client.agent;
    let (code, msg) = err_status(
        c.update_container(context(5), &update("x", Some(memory(-5))))
            .await,
    );
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT);
    assert!(msg.contains("memory limit -5"), "{msg}");

    let (code, msg) = err_status(c.update_container(context(5), &update("x", None)).await);
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT);
    assert!(msg.contains("no resources"), "{msg}");

    let (code, _) = err_status(
        c.update_container(context(5), &update("", Some(memory(1 << 20))))
            .await,
    );
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT);
    let stats = StatsContainerRequest::new();
    assert_eq!(
        err_status(c.stats_container(context(5), &stats).await).0,
        ttrpc::Code::INVALID_ARGUMENT
    );
}

#[tokio::test]
async fn get_oom_event_waits_for_an_oom() {
    let agent = TestAgent::start("").await;
    let req = GetOOMEventRequest::new();
    let waiting = agent.client.agent.get_oom_event(context(0), &req);
    // No container, no OOM: the call must still be pending, not answered.
    let r = tokio::time::timeout(Duration::from_secs(2), waiting).await;
    assert!(r.is_err(), "GetOOMEvent answered without an OOM: {r:?}");
    // And the agent keeps serving others meanwhile.
    let other = agent.connect().await;
    let (code, _) = err_status(
        other
            .agent
            .stats_container(context(5), &StatsContainerRequest::new())
            .await,
    );
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT);
}
