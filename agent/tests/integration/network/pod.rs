//! The pod network as Kata's runtime and agent set it up: what the runtime
//! never sends and the agent does itself, and the details of the interfaces
//! and routes it does send.

use agent_ctl::context;
use kata_agent::network::iptables;
use protocols::agent::{
    GetIPTablesRequest, ListInterfacesRequest, Routes, SetIPTablesRequest, UpdateInterfaceRequest,
    UpdateRoutesRequest,
};
use protocols::types::Interface;
use test_support::TestAgent;

const IFF_UP: u32 = 1;

/// Kata's runtime sends no UpdateInterface for `lo`; Kata's agent, as init,
/// raises it at start (src/agent/src/main.rs start_sandbox ->
/// netlink.rs handle_localhost). A new network namespace's `lo` is down.
#[tokio::test]
async fn init_agent_brings_up_loopback() {
    test_support::require_root!();
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

/// Get/SetIPTables run the image's iptables-save/-restore (as Kata's agent:
/// src/agent/src/rpc.rs get_ip_tables/set_ip_tables). An image without
/// them answers UNIMPLEMENTED naming the missing binary and where it was
/// looked for, for IPv4 and IPv6 alike.
#[tokio::test]
async fn iptables_errors_name_the_missing_tool() {
    test_support::require_root!();
    let agent = TestAgent::start_isolated("").await;
    let c = &agent.client.agent;
    for v6 in [false, true] {
        let mut get = GetIPTablesRequest::new();
        get.is_ipv6 = v6;
        let save = iptables::tool(v6, "save");
        match (
            iptables::find_tool(&save),
            c.get_ip_tables(context(10), &get).await,
        ) {
            (Some(_), got) => {
                got.expect("GetIPTables with the tool present");
            }
            (None, got) => {
                let msg = format!("{:?}", got.expect_err("no tool"));
                assert!(msg.contains("UNIMPLEMENTED"), "{msg}");
                assert!(
                    msg.contains(&format!("no {save} (looked in /usr/sbin")),
                    "{msg}"
                );
            }
        }
        let mut set = SetIPTablesRequest::new();
        set.is_ipv6 = v6;
        let restore = iptables::tool(v6, "restore");
        if iptables::find_tool(&restore).is_none() {
            let msg = format!(
                "{:?}",
                c.set_ip_tables(context(10), &set)
                    .await
                    .expect_err("no tool")
            );
            assert!(msg.contains(&format!("no {restore} (looked in")), "{msg}");
        }
    }
}

/// RTNH_F_ONLINK (linux/rtnetlink.h): the gateway is on the link even
/// outside its subnets.
const ONLINK: u32 = 4;

/// Kata's runtime sends a route's `flags` (onlink for a gateway outside the
/// pod subnet, as some CNIs set up) and `mtu` (types.proto Route 8); Kata's
/// agent sets both (src/agent/src/netlink.rs update_routes, RouteMetric::Mtu)
/// and lists them back.
#[tokio::test]
async fn update_routes_sets_onlink_and_mtu() {
    test_support::require_root!();
    if !super::have_tools() {
        return;
    }
    let agent = super::agent_with_dummy().await;
    super::update_interface(&agent).await;
    let mut r = super::route("192.168.7.0/24", "172.16.0.1", 0);
    r.flags = ONLINK;
    r.mtu = 1300;
    let mut routes = Routes::new();
    routes.Routes = vec![r];
    let mut req = UpdateRoutesRequest::new();
    req.routes = Some(routes).into();
    let got = agent
        .client
        .agent
        .update_routes(context(10), &req)
        .await
        .expect("UpdateRoutes with an onlink gateway outside the subnet");
    let shown = super::ip_in(&agent, &["route", "show", "192.168.7.0/24"]);
    assert!(shown.contains("onlink"), "{shown}");
    assert!(shown.contains("mtu 1300"), "{shown}");
    let listed = got
        .Routes
        .iter()
        .find(|r| r.dest == "192.168.7.0/24")
        .expect("the route is listed");
    assert_eq!(listed.mtu, 1300);
    assert_ne!(listed.flags & ONLINK, 0, "flags {:#x}", listed.flags);
}

/// IFF_NOARP (linux/if.h).
const NOARP: u32 = 0x80;

/// UpdateInterface's `raw_flags` carries NOARP (a point-to-point pod NIC);
/// Kata's agent turns ARP off for it and on without it
/// (src/agent/src/netlink.rs update_interface: `.arp(raw_flags & NOARP == 0)`).
#[tokio::test]
async fn update_interface_applies_noarp() {
    test_support::require_root!();
    if !super::have_tools() {
        return;
    }
    let agent = super::agent_with_dummy().await;
    let mut iface = Interface::new();
    iface.hwAddr = super::MAC.into();
    iface.name = "eth0".into();
    iface.raw_flags = NOARP;
    let mut req = UpdateInterfaceRequest::new();
    req.interface = Some(iface.clone()).into();
    let c = &agent.client.agent;
    let got = c
        .update_interface(context(10), &req)
        .await
        .expect("UpdateInterface with NOARP");
    assert_ne!(got.raw_flags & NOARP, 0, "flags {:#x}", got.raw_flags);
    let shown = super::ip_in(&agent, &["link", "show", "eth0"]);
    assert!(shown.contains("NOARP"), "{shown}");
    iface.raw_flags = 0;
    req.interface = Some(iface).into();
    let got = c
        .update_interface(context(10), &req)
        .await
        .expect("UpdateInterface without NOARP");
    assert_eq!(got.raw_flags & NOARP, 0, "flags {:#x}", got.raw_flags);
}

/// The name UpdateInterface asks for may belong to another link already
/// (the guest kernel named NICs in another order than the runtime): Kata's
/// agent moves that link out of the way under a temporary name and gives it
/// the renamed link's old name (src/agent/src/netlink.rs update_interface,
/// "swap the updated iface's name"), instead of failing with EEXIST.
#[tokio::test]
async fn update_interface_renames_over_a_taken_name_by_swapping() {
    test_support::require_root!();
    if !super::have_tools() {
        return;
    }
    let agent = super::agent_with_dummy().await;
    super::ip_in(
        &agent,
        &["link", "add", "eth0", "type", "veth", "peer", "name", "e1"],
    );
    let mut iface = Interface::new();
    iface.hwAddr = super::MAC.into();
    iface.name = "eth0".into();
    let got = super::update(&agent, iface)
        .await
        .expect("UpdateInterface to a name another link has");
    assert_eq!(
        (got.name.as_str(), got.hwAddr.as_str()),
        ("eth0", super::MAC)
    );
    let eth0 = super::ip_in(&agent, &["link", "show", "eth0"]);
    assert!(
        eth0.contains(super::MAC),
        "eth0 is the requested NIC: {eth0}"
    );
    let d0 = super::ip_in(&agent, &["link", "show", "d0"]);
    assert!(
        d0.contains("d0@e1") && !d0.contains(super::MAC),
        "the old eth0 (e1's peer) took the name d0: {d0}"
    );
    assert!(
        !super::ip_in(&agent, &["link", "show"]).contains("kata-tmp-"),
        "no temporary name is left"
    );
}
