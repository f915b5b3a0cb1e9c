//! Guest network: interfaces, routes, ARP neighbours, iptables.
//! The work is in `crate::network`; this module maps requests and errors.

use super::AgentContext;
use crate::error::{Error, Result};
use crate::network::{self, iptables, link, neigh, route};
use protocols::agent::*;
use protocols::empty::Empty;
use protocols::types;

pub async fn update_interface(
    _ctx: &AgentContext,
    req: UpdateInterfaceRequest,
) -> Result<types::Interface> {
    let iface = req
        .interface
        .as_ref()
        .ok_or_else(|| Error::invalid("UpdateInterface: no interface in the request"))?;
    let h = network::connect()?;
    link::update_interface(&h, iface)
        .await
        .map_err(|e| Error::from(e.context("UpdateInterface")))
}

pub async fn update_routes(_ctx: &AgentContext, req: UpdateRoutesRequest) -> Result<Routes> {
    let wanted = req
        .routes
        .as_ref()
        .map(|r| r.Routes.clone())
        .unwrap_or_default();
    let h = network::connect()?;
    let now = route::update_routes(&h, &wanted)
        .await
        .map_err(|e| Error::from(e.context("UpdateRoutes")))?;
    let mut resp = Routes::new();
    resp.Routes = now;
    Ok(resp)
}

pub async fn list_interfaces(
    _ctx: &AgentContext,
    _req: ListInterfacesRequest,
) -> Result<Interfaces> {
    let h = network::connect()?;
    let mut resp = Interfaces::new();
    resp.Interfaces = link::list_interfaces(&h)
        .await
        .map_err(|e| Error::from(e.context("ListInterfaces")))?;
    Ok(resp)
}

pub async fn list_routes(_ctx: &AgentContext, _req: ListRoutesRequest) -> Result<Routes> {
    let h = network::connect()?;
    let mut resp = Routes::new();
    resp.Routes = route::list_routes(&h)
        .await
        .map_err(|e| Error::from(e.context("ListRoutes")))?;
    Ok(resp)
}

pub async fn add_arp_neighbors(_ctx: &AgentContext, req: AddARPNeighborsRequest) -> Result<Empty> {
    let list = req
        .neighbors
        .as_ref()
        .map(|n| n.ARPNeighbors.clone())
        .unwrap_or_default();
    let h = network::connect()?;
    neigh::add_neighbors(&h, &list)
        .await
        .map_err(|e| Error::from(e.context("AddARPNeighbors")))?;
    Ok(Empty::new())
}

/// The tool `what` ("save", "restore") is not in the image: say which one
/// and where it was looked for.
fn no_iptables(rpc: &str, v6: bool, what: &str) -> Error {
    Error::Unimplemented(format!(
        "{rpc}: this guest image has no {} (looked in {}); add the iptables package to the image",
        iptables::tool(v6, what),
        iptables::SEARCH.join(", ")
    ))
}

pub async fn get_ip_tables(
    _ctx: &AgentContext,
    req: GetIPTablesRequest,
) -> Result<GetIPTablesResponse> {
    let v6 = req.is_ipv6;
    let out = tokio::task::spawn_blocking(move || iptables::save(v6))
        .await
        .map_err(|e| Error::internal(format!("worker thread failed: {e}")))?
        .map_err(|e| Error::from(e.context("GetIPTables")))?;
    let mut resp = GetIPTablesResponse::new();
    resp.data = out.ok_or_else(|| no_iptables("GetIPTables", v6, "save"))?;
    Ok(resp)
}

pub async fn set_ip_tables(
    _ctx: &AgentContext,
    req: SetIPTablesRequest,
) -> Result<SetIPTablesResponse> {
    let v6 = req.is_ipv6;
    let out = tokio::task::spawn_blocking(move || iptables::restore(v6, &req.data))
        .await
        .map_err(|e| Error::internal(format!("worker thread failed: {e}")))?
        .map_err(|e| Error::from(e.context("SetIPTables")))?;
    let mut resp = SetIPTablesResponse::new();
    resp.data = out.ok_or_else(|| no_iptables("SetIPTables", v6, "restore"))?;
    Ok(resp)
}
