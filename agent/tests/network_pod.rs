//! The pod network as Kata's runtime and agent set it up: what the runtime
//! never sends and the agent does itself, and the details of the interfaces
//! and routes it does send. (A family module for the merged test binary.)

mod common;

use agent_ctl::context;
use common::TestAgent;
use protocols::agent::ListInterfacesRequest;

const IFF_UP: u32 = 1;

/// Kata's runtime sends no UpdateInterface for `lo`; Kata's agent, as init,
/// raises it at start (src/agent/src/main.rs start_sandbox ->
/// netlink.rs handle_localhost). A new network namespace's `lo` is down.
#[tokio::test]
async fn init_agent_brings_up_loopback() {
    require_root!();
    let agent = TestAgent::start_as_pid1_isolated("").await;
    let ifaces = agent
        .client
        .agent
        .list_interfaces(context(10), &ListInterfacesRequest::new())
        .await
        .expect("ListInterfaces");
    let lo = ifaces
        .Interfaces
        .iter()
        .find(|i| i.name == "lo")
        .expect("lo is listed");
    assert_ne!(
        lo.raw_flags & IFF_UP,
        0,
        "lo is up: flags {:#x}",
        lo.raw_flags
    );
}
