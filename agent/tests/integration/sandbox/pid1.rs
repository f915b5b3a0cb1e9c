//! The agent as PID 1 (the guest's init) in its own PID and mount
//! namespaces: it says so in GetGuestDetails, shrugs off SIGTERM, and powers
//! off after DestroySandbox.

use std::time::Duration;

use agent_ctl::context;
use protocols::agent::{
    CreateSandboxRequest, DestroySandboxRequest, GetOOMEventRequest, GuestDetailsRequest,
};
use protocols::health::CheckRequest;
use test_support::TestAgent;

/// The agent's pid as the host sees it: unshare's only child.
fn agent_host_pid(unshare_pid: u32) -> u32 {
    let kids = std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
        .expect("reading unshare's children");
    kids.split_whitespace()
        .next()
        .and_then(|k| k.parse().ok())
        .expect("unshare has a child")
}

#[tokio::test]
async fn pid1_agent_reports_init_daemon_and_ignores_sigterm() {
    test_support::require_root!();
    let agent = TestAgent::start_as_pid1("").await;
    let resp = agent
        .client
        .agent
        .get_guest_details(context(10), &GuestDetailsRequest::new())
        .await
        .expect("GetGuestDetails");
    assert!(
        resp.agent_details.init_daemon,
        "the agent runs as PID 1 here"
    );

    let pid = agent_host_pid(agent.pid());
    let ns_pid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:").map(str::to_string))
        .expect("NSpid");
    assert!(
        ns_pid.split_whitespace().last() == Some("1"),
        "NSpid {ns_pid}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent
        .client
        .health
        .check(context(5), &CheckRequest::new())
        .await
        .expect("still serving after SIGTERM");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    for target in ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run"] {
        assert!(
            mounts.lines().any(|l| l.split(' ').nth(4) == Some(target)),
            "{target} mounted:\n{mounts}"
        );
    }
}

/// Kata's agent ends after DestroySandbox: the RPC answers, the server
/// stops, and as the guest's init it syncs and powers the VM off
/// (src/agent/src/rpc.rs destroy_sandbox sends on the sandbox's channel;
/// src/agent/src/main.rs main: sync(), reboot(RB_POWER_OFF)). As PID 1 of a
/// PID namespace here, reboot(POWER_OFF) ends the namespace with its init
/// killed by SIGINT (the kernel's reboot_pid_ns), which unshare passes on.
#[tokio::test]
async fn pid1_agent_powers_off_after_destroy_sandbox() {
    use std::os::unix::process::ExitStatusExt;
    test_support::require_root!();
    let mut agent = TestAgent::start_as_pid1("").await;
    let c = &agent.client.agent;
    c.create_sandbox(context(20), &CreateSandboxRequest::new())
        .await
        .expect("CreateSandbox");
    // The runtime keeps a GetOOMEvent waiting: it must not hold the
    // power-off up (Kata drops its event channel; ttrpc would otherwise
    // wait 5 s for the call).
    let second = agent.connect().await;
    let oom = tokio::spawn(async move {
        second
            .agent
            .get_oom_event(context(60), &GetOOMEventRequest::new())
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let destroyed = std::time::Instant::now();
    c.destroy_sandbox(context(20), &DestroySandboxRequest::new())
        .await
        .expect("DestroySandbox answers before the power-off");
    let status = agent.wait_exit(Duration::from_secs(10));
    let took = destroyed.elapsed();
    let pending = tokio::time::timeout(Duration::from_secs(5), oom).await;
    assert!(
        matches!(pending, Ok(Ok(Err(_)))),
        "the pending GetOOMEvent ends with an error: {pending:?}"
    );
    assert!(took < Duration::from_secs(4), "the power-off took {took:?}");
    let log = agent.log_text();
    let status = status.unwrap_or_else(|| panic!("still running after DestroySandbox:\n{log}"));
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "a power-off, not a crash or a reboot: {status:?}\n{log}"
    );
}
