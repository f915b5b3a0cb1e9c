//! Network RPCs against an agent in its own network namespace (never the
//! host's interfaces or routes): a veth link plays the pod's NIC.

mod pod;

use std::process::Command;

use agent_ctl::context;
use protocols::agent::*;
use protocols::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route};
use test_support::skip::skip;
use test_support::TestAgent;

const MAC: &str = "02:00:00:aa:bb:01";

/// Run `ip ARGS` inside the agent's network namespace; its stdout.
fn ip_in(agent: &TestAgent, args: &[&str]) -> String {
    let pid = agent.pid().to_string();
    let out = Command::new("nsenter")
        .args(["-t", &pid, "-n", "ip"])
        .args(args)
        .output()
        .expect("running ip through nsenter");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have_tools() -> bool {
    let ok = ["ip", "nsenter", "unshare"].iter().all(|t| {
        Command::new(t)
            .arg("-V")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if !ok {
        skip("needs ip (iproute2), nsenter and unshare (util-linux)");
    }
    ok
}

fn address(ip: &str, mask: &str, v6: bool) -> IPAddress {
    let mut a = IPAddress::new();
    a.address = ip.into();
    a.mask = mask.into();
    a.family = if v6 { IPFamily::v6 } else { IPFamily::v4 }.into();
    a
}

fn route(dest: &str, gateway: &str, scope: u32) -> Route {
    let mut r = Route::new();
    r.dest = dest.into();
    r.gateway = gateway.into();
    r.device = "eth0".into();
    r.scope = scope;
    r
}

/// An agent in a fresh netns with link d0 (MAC above): a veth pair whose
/// peer d1 is up, so d0 has carrier (veth is in every kernel that runs
/// containers; dummy is not).
async fn agent_with_dummy() -> TestAgent {
    let agent = TestAgent::start_isolated("").await;
    ip_in(
        &agent,
        &[
            "link", "add", "d0", "address", MAC, "type", "veth", "peer", "name", "d1",
        ],
    );
    ip_in(&agent, &["link", "set", "d1", "up"]);
    agent
}

/// UpdateInterface with `iface`.
async fn update(agent: &TestAgent, iface: Interface) -> ttrpc::Result<Interface> {
    let mut req = UpdateInterfaceRequest::new();
    req.interface = Some(iface).into();
    agent.client.agent.update_interface(context(10), &req).await
}

async fn update_interface(agent: &TestAgent) -> Interface {
    let mut iface = Interface::new();
    iface.hwAddr = MAC.into();
    iface.name = "eth0".into();
    iface.mtu = 1400;
    iface.IPAddresses = vec![
        address("10.10.0.2", "24", false),
        address("fd00::2", "64", true),
    ];
    let mut req = UpdateInterfaceRequest::new();
    req.interface = Some(iface).into();
    agent
        .client
        .agent
        .update_interface(context(10), &req)
        .await
        .expect("UpdateInterface")
}

#[tokio::test]
async fn list_interfaces_shows_lo() {
    test_support::require_root!();
    if !have_tools() {
        return;
    }
    let agent = TestAgent::start_isolated("").await;
    let resp = agent
        .client
        .agent
        .list_interfaces(context(10), &ListInterfacesRequest::new())
        .await
        .expect("ListInterfaces");
    let lo = resp
        .Interfaces
        .iter()
        .find(|i| i.name == "lo")
        .expect("lo is listed");
    assert_eq!(lo.mtu, 65536);
    assert_eq!(
        resp.Interfaces.len(),
        1,
        "a fresh netns has only lo: {:?}",
        resp.Interfaces
    );
}

#[tokio::test]
async fn update_interface_renames_sets_mtu_addresses_and_up() {
    test_support::require_root!();
    if !have_tools() {
        return;
    }
    let agent = agent_with_dummy().await;
    let got = update_interface(&agent).await;
    assert_eq!(got.name, "eth0");
    assert_eq!(got.mtu, 1400);
    assert_eq!(got.hwAddr, MAC);
    assert_ne!(got.raw_flags & libc::IFF_UP as u32, 0, "the link is up");
    let addrs: Vec<String> = got
        .IPAddresses
        .iter()
        .map(|a| format!("{}/{}", a.address, a.mask))
        .collect();
    assert!(
        addrs.contains(&"10.10.0.2/24".to_string()) && addrs.contains(&"fd00::2/64".to_string()),
        "{addrs:?}"
    );
    let shown = ip_in(&agent, &["addr", "show", "dev", "eth0"]);
    assert!(
        shown.contains("mtu 1400") && shown.contains("10.10.0.2/24"),
        "{shown}"
    );

    // A second update replaces the addresses.
    let mut iface = Interface::new();
    iface.hwAddr = MAC.into();
    iface.name = "eth0".into();
    iface.IPAddresses = vec![address("10.20.0.2", "255.255.0.0", false)];
    let mut req = UpdateInterfaceRequest::new();
    req.interface = Some(iface).into();
    let got = agent
        .client
        .agent
        .update_interface(context(10), &req)
        .await
        .expect("second update");
    let v4: Vec<String> = got
        .IPAddresses
        .iter()
        .filter(|a| a.family.enum_value() == Ok(IPFamily::v4))
        .map(|a| format!("{}/{}", a.address, a.mask))
        .collect();
    assert_eq!(v4, vec!["10.20.0.2/16".to_string()]);

    let mut bad = Interface::new();
    bad.hwAddr = "02:00:00:00:00:99".into();
    let mut req = UpdateInterfaceRequest::new();
    req.interface = Some(bad).into();
    let err = agent
        .client
        .agent
        .update_interface(context(10), &req)
        .await
        .expect_err("unknown MAC");
    assert!(format!("{err:?}").contains("02:00:00:00:00:99"), "{err:?}");
}

#[tokio::test]
async fn update_routes_adds_and_replaces_routes() {
    test_support::require_root!();
    if !have_tools() {
        return;
    }
    let agent = agent_with_dummy().await;
    update_interface(&agent).await;
    let c = &agent.client.agent;
    let mut req = UpdateRoutesRequest::new();
    let mut routes = Routes::new();
    routes.Routes = vec![
        route("192.168.5.0/24", "10.10.0.1", 0),
        route("", "10.10.0.1", 0),
        route("10.10.0.0/24", "", 253),
    ];
    req.routes = Some(routes).into();
    let got = c
        .update_routes(context(10), &req)
        .await
        .expect("UpdateRoutes");
    let has = |rs: &[Route], dest: &str, gw: &str| {
        rs.iter()
            .any(|r| r.dest == dest && r.gateway == gw && r.device == "eth0")
    };
    assert!(
        has(&got.Routes, "", "10.10.0.1"),
        "default route: {:?}",
        got.Routes
    );
    assert!(
        has(&got.Routes, "192.168.5.0/24", "10.10.0.1"),
        "{:?}",
        got.Routes
    );
    let table = ip_in(&agent, &["route", "show"]);
    assert!(table.contains("default via 10.10.0.1 dev eth0"), "{table}");

    // A second update adds and replaces, as Kata's agent does
    // (src/agent/src/netlink.rs update_routes: RTM_NEWROUTE with
    // NLM_F_REPLACE, nothing deleted): the route to 192.168.5.0/24 moves to
    // the new gateway, the default route it does not name stays, and a
    // route that exists already is no error.
    let mut routes = Routes::new();
    routes.Routes = vec![
        route("192.168.5.0/24", "10.10.0.3", 0),
        route("10.10.0.0/24", "", 253),
    ];
    req.routes = Some(routes).into();
    let got = c
        .update_routes(context(10), &req)
        .await
        .expect("UpdateRoutes again");
    assert!(
        has(&got.Routes, "192.168.5.0/24", "10.10.0.3")
            && !has(&got.Routes, "192.168.5.0/24", "10.10.0.1"),
        "the route to 192.168.5.0/24 is replaced: {:?}",
        got.Routes
    );
    let listed = c
        .list_routes(context(10), &ListRoutesRequest::new())
        .await
        .expect("ListRoutes");
    assert!(
        has(&listed.Routes, "", "10.10.0.1"),
        "the default route stays: {:?}",
        listed.Routes
    );
    let table = ip_in(&agent, &["route", "show"]);
    assert!(
        table.contains("default via 10.10.0.1 dev eth0")
            && table.contains("192.168.5.0/24 via 10.10.0.3 dev eth0")
            && !table.contains("192.168.5.0/24 via 10.10.0.1"),
        "{table}"
    );

    let mut routes = Routes::new();
    let mut r = route("10.99.0.0/16", "", 0);
    r.device = "nosuchdev".into();
    routes.Routes = vec![r];
    req.routes = Some(routes).into();
    let err = c
        .update_routes(context(10), &req)
        .await
        .expect_err("unknown device");
    assert!(format!("{err:?}").contains("nosuchdev"), "{err:?}");
}

#[tokio::test]
async fn add_arp_neighbors_adds_permanent_entries() {
    test_support::require_root!();
    if !have_tools() {
        return;
    }
    let agent = agent_with_dummy().await;
    update_interface(&agent).await;
    let mut n = ARPNeighbor::new();
    n.toIPAddress = Some(address("10.10.0.9", "", false)).into();
    n.device = "eth0".into();
    n.lladdr = "02:00:00:00:00:09".into();
    let mut list = ARPNeighbors::new();
    list.ARPNeighbors = vec![n];
    let mut req = AddARPNeighborsRequest::new();
    req.neighbors = Some(list).into();
    agent
        .client
        .agent
        .add_arp_neighbors(context(10), &req)
        .await
        .expect("AddARPNeighbors");
    let shown = ip_in(&agent, &["neigh", "show", "dev", "eth0"]);
    assert!(
        shown.contains("10.10.0.9 lladdr 02:00:00:00:00:09 PERMANENT"),
        "{shown}"
    );
}

#[tokio::test]
async fn iptables_round_trip_or_clear_unimplemented() {
    test_support::require_root!();
    if !have_tools() {
        return;
    }
    let agent = TestAgent::start_isolated("").await;
    let c = &agent.client.agent;
    let has_tools = kata_agent::network::iptables::find_tool("iptables-save").is_some()
        && kata_agent::network::iptables::find_tool("iptables-restore").is_some();
    let got = c
        .get_ip_tables(context(10), &GetIPTablesRequest::new())
        .await;
    if !has_tools {
        let err = got.expect_err("no iptables in this image");
        assert!(format!("{err:?}").contains("UNIMPLEMENTED"), "{err:?}");
        return;
    }
    got.expect("GetIPTables");
    let mut set = SetIPTablesRequest::new();
    set.data = b"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s 192.0.2.7/32 -j DROP\nCOMMIT\n".to_vec();
    c.set_ip_tables(context(10), &set)
        .await
        .expect("SetIPTables");
    let got = c
        .get_ip_tables(context(10), &GetIPTablesRequest::new())
        .await
        .expect("GetIPTables");
    let text = String::from_utf8_lossy(&got.data);
    assert!(text.contains("-A INPUT -s 192.0.2.7/32 -j DROP"), "{text}");
    set.data = b"*filter\nthis is not a rule\nCOMMIT\n".to_vec();
    let err = c
        .set_ip_tables(context(10), &set)
        .await
        .expect_err("bad rules");
    assert!(format!("{err:?}").contains("iptables-restore"), "{err:?}");
}
