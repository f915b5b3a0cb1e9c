//! AddARPNeighbors: static neighbour entries the runtime knows (e.g. for
//! networks without ARP).

use anyhow::{Context, Result};
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourState};
use protocols::types::ARPNeighbor;
use rtnetlink::Handle;

use super::{convert, link, NetlinkResult as _};

pub async fn add_neighbors(h: &Handle, neighbors: &[ARPNeighbor]) -> Result<()> {
    let links = link::links(h).await?;
    for n in neighbors {
        let to = n
            .toIPAddress
            .as_ref()
            .context("ARP neighbour without toIPAddress")?;
        let ip = convert::parse_ip(&to.address)?;
        let index = links
            .iter()
            .find(|l| l.name == n.device)
            .map(|l| l.index)
            .with_context(|| format!("ARP neighbour {ip}: no interface named {:?}", n.device))?;
        let state = if n.state == 0 {
            NeighbourState::Permanent
        } else {
            NeighbourState::from(n.state as u16)
        };
        let mut req = h
            .neighbours()
            .add(index, ip)
            .state(state)
            .flags(NeighbourFlags::from_bits_retain(n.flags as u8));
        if !n.lladdr.is_empty() {
            req = req.link_layer_address(&convert::parse_mac(&n.lladdr)?);
        }
        req.replace().execute().await.nl().with_context(|| {
            format!(
                "adding ARP neighbour {ip} lladdr {} dev {}",
                n.lladdr, n.device
            )
        })?;
    }
    Ok(())
}
