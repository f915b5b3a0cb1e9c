//! Guest network: interfaces, routes, ARP neighbours, iptables.

use protocols::agent::*;
#[allow(unused_imports)]
use protocols::empty::Empty;
#[allow(unused_imports)]
use protocols::{csi, types};

use super::status::unimplemented;
use super::AgentContext;

pub async fn update_interface(
    _ctx: &AgentContext,
    _req: UpdateInterfaceRequest,
) -> ttrpc::Result<types::Interface> {
    unimplemented("UpdateInterface")
}

pub async fn update_routes(
    _ctx: &AgentContext,
    _req: UpdateRoutesRequest,
) -> ttrpc::Result<Routes> {
    unimplemented("UpdateRoutes")
}

pub async fn list_interfaces(
    _ctx: &AgentContext,
    _req: ListInterfacesRequest,
) -> ttrpc::Result<Interfaces> {
    unimplemented("ListInterfaces")
}

pub async fn list_routes(_ctx: &AgentContext, _req: ListRoutesRequest) -> ttrpc::Result<Routes> {
    unimplemented("ListRoutes")
}

pub async fn add_arp_neighbors(
    _ctx: &AgentContext,
    _req: AddARPNeighborsRequest,
) -> ttrpc::Result<Empty> {
    unimplemented("AddARPNeighbors")
}

pub async fn get_ip_tables(
    _ctx: &AgentContext,
    _req: GetIPTablesRequest,
) -> ttrpc::Result<GetIPTablesResponse> {
    unimplemented("GetIPTables")
}

pub async fn set_ip_tables(
    _ctx: &AgentContext,
    _req: SetIPTablesRequest,
) -> ttrpc::Result<SetIPTablesResponse> {
    unimplemented("SetIPTables")
}
