//! Routes of the main table: ListRoutes and UpdateRoutes.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteProtocol, RouteScope,
    RouteType,
};
use protocols::types::{IPFamily, Route};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::{collect, link, NetlinkError};

const MAIN_TABLE: u32 = 254;

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(m.header.table as u32)
}

/// Unicast routes of the main table, IPv4 then IPv6.
async fn main_routes(h: &Handle) -> Result<Vec<RouteMessage>> {
    let mut all = collect(
        h.route()
            .get(RouteMessageBuilder::<std::net::Ipv4Addr>::new().build())
            .execute(),
        "IPv4 routes",
    )
    .await?;
    all.extend(
        collect(
            h.route()
                .get(RouteMessageBuilder::<std::net::Ipv6Addr>::new().build())
                .execute(),
            "IPv6 routes",
        )
        .await?,
    );
    Ok(all
        .into_iter()
        .filter(|m| table_of(m) == MAIN_TABLE && m.header.kind == RouteType::Unicast)
        .collect())
}

fn to_route(m: &RouteMessage, names: &HashMap<u32, String>) -> Route {
    let mut r = Route::new();
    r.family = if m.header.address_family == netlink_packet_route::AddressFamily::Inet6 {
        IPFamily::v6
    } else {
        IPFamily::v4
    }
    .into();
    r.scope = u8::from(m.header.scope) as u32;
    r.flags = m.header.flags.bits();
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => {
                if let Some(ip) = ip_of(d) {
                    r.dest = format!("{ip}/{}", m.header.destination_prefix_length);
                }
            }
            RouteAttribute::Gateway(g) => {
                r.gateway = ip_of(g).map(|i| i.to_string()).unwrap_or_default()
            }
            RouteAttribute::PrefSource(s) => {
                r.source = ip_of(s).map(|i| i.to_string()).unwrap_or_default()
            }
            RouteAttribute::Oif(i) => r.device = names.get(i).cloned().unwrap_or_default(),
            RouteAttribute::Metrics(ms) => {
                for metric in ms {
                    if let RouteMetric::Mtu(mtu) = metric {
                        r.mtu = *mtu;
                    }
                }
            }
            _ => {}
        }
    }
    r
}

async fn link_names(h: &Handle) -> Result<HashMap<u32, String>> {
    Ok(link::links(h)
        .await?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect())
}

pub async fn list_routes(h: &Handle) -> Result<Vec<Route>> {
    let names = link_names(h).await?;
    Ok(main_routes(h)
        .await?
        .iter()
        .map(|m| to_route(m, &names))
        .collect())
}

fn parse_opt_ip(text: &str, what: &str) -> Result<Option<IpAddr>> {
    if text.is_empty() {
        return Ok(None);
    }
    super::convert::parse_ip(text)
        .map(Some)
        .with_context(|| format!("route {what}"))
}

/// The netlink message for one requested route.
fn build(r: &Route, names: &HashMap<u32, String>) -> Result<RouteMessage> {
    let index = names
        .iter()
        .find(|(_, n)| **n == r.device)
        .map(|(i, _)| *i)
        .with_context(|| format!("route to {:?}: no interface named {:?}", r.dest, r.device))?;
    let dest = super::convert::parse_dest(&r.dest)?;
    let gw = parse_opt_ip(&r.gateway, "gateway")?;
    let src = parse_opt_ip(&r.source, "source")?;
    let v6 = match (dest, gw) {
        (Some((ip, _)), _) | (None, Some(ip)) => ip.is_ipv6(),
        (None, None) => r.family.enum_value() == Ok(IPFamily::v6),
    };
    let scope = RouteScope::from(r.scope as u8);
    let mut msg = if v6 {
        let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new();
        if let Some((IpAddr::V6(d), len)) = dest {
            b = b.destination_prefix(d, len);
        }
        match gw {
            Some(IpAddr::V6(g)) => b = b.gateway(g),
            Some(g) => bail!("route {:?}: gateway {g} is not IPv6", r.dest),
            None => {}
        }
        if let Some(IpAddr::V6(s)) = src {
            b = b.pref_source(s);
        }
        b.output_interface(index).scope(scope).build()
    } else {
        let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new();
        match dest {
            Some((IpAddr::V4(d), len)) => b = b.destination_prefix(d, len),
            Some((d, _)) => bail!("route {d}: mixes IPv4 and IPv6"),
            None => {}
        }
        match gw {
            Some(IpAddr::V4(g)) => b = b.gateway(g),
            Some(g) => bail!("route {:?}: gateway {g} is not IPv4", r.dest),
            None => {}
        }
        if let Some(IpAddr::V4(s)) = src {
            b = b.pref_source(s);
        }
        b.output_interface(index).scope(scope).build()
    };
    msg.header.protocol = RouteProtocol::Boot;
    // onlink (a gateway outside the link's subnets) and the route MTU, as
    // Kata's agent sets them (src/agent/src/netlink.rs update_routes).
    msg.header.flags = RouteFlags::from_bits_retain(r.flags);
    if r.mtu != 0 {
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(r.mtu)]));
    }
    Ok(msg)
}

/// Add `wanted` to the main table, replacing a route with the same
/// destination (Kata's agent: src/agent/src/netlink.rs update_routes): routes
/// without a gateway first, so the gateways are reachable when their routes
/// go in; a route the kernel says exists already is no error; routes the
/// request does not name stay.
pub async fn update_routes(h: &Handle, wanted: &[Route]) -> Result<Vec<Route>> {
    let names = link_names(h).await?;
    let mut msgs = wanted
        .iter()
        .map(|r| build(r, &names))
        .collect::<Result<Vec<_>>>()?;
    let has_gateway = |m: &RouteMessage| {
        m.attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(_)))
    };
    msgs.sort_by_key(has_gateway);
    for m in msgs {
        let shown = to_route(&m, &names);
        match h.route().add(m).replace().execute().await {
            Err(e) if !super::is_errno(&e, libc::EEXIST) => {
                return Err(NetlinkError::from(e)).with_context(|| {
                    format!(
                        "adding route {:?} via {:?} dev {:?}",
                        shown.dest, shown.gateway, shown.device
                    )
                })
            }
            _ => {}
        }
    }
    list_routes(h).await
}
