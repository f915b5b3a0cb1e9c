//! Interfaces: ListInterfaces and UpdateInterface.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use protocols::types::{IPAddress, IPFamily, Interface};
use rtnetlink::{Handle, LinkUnspec};

use super::{collect, convert, NetlinkResult as _};

pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub flags: u32,
    pub kind: String,
}

fn link_of(msg: &LinkMessage) -> Link {
    let mut l = Link {
        index: msg.header.index,
        name: String::new(),
        mac: Vec::new(),
        mtu: 0,
        flags: msg.header.flags.bits(),
        kind: String::new(),
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Address(m) => l.mac = m.clone(),
            LinkAttribute::Mtu(m) => l.mtu = *m,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = k.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    l
}

pub async fn links(h: &Handle) -> Result<Vec<Link>> {
    let msgs = collect(h.link().get().execute(), "links").await?;
    Ok(msgs.iter().map(link_of).collect())
}

/// (link index, address, prefix length, scope, the message for deleting it)
pub struct Addr {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix: u8,
    pub scope: AddressScope,
    pub msg: AddressMessage,
}

pub async fn addresses(h: &Handle) -> Result<Vec<Addr>> {
    let msgs = collect(h.address().get().execute(), "addresses").await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| {
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the
            // peer on point-to-point links and the same otherwise.
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            let ip = local.or(addr)?;
            Some(Addr {
                index: m.header.index,
                ip,
                prefix: m.header.prefix_len,
                scope: m.header.scope,
                msg: m,
            })
        })
        .collect())
}

fn to_interface(l: &Link, addrs: &[Addr]) -> Interface {
    let mut i = Interface::new();
    i.device = l.name.clone();
    i.name = l.name.clone();
    i.mtu = l.mtu as u64;
    i.hwAddr = convert::format_mac(&l.mac);
    i.type_ = l.kind.clone();
    i.raw_flags = l.flags;
    i.IPAddresses = addrs
        .iter()
        .filter(|a| a.index == l.index)
        .map(|a| {
            let mut ip = IPAddress::new();
            ip.family = if a.ip.is_ipv4() {
                IPFamily::v4
            } else {
                IPFamily::v6
            }
            .into();
            ip.address = a.ip.to_string();
            ip.mask = a.prefix.to_string();
            ip
        })
        .collect();
    i
}

pub async fn list_interfaces(h: &Handle) -> Result<Vec<Interface>> {
    let links = links(h).await?;
    let addrs = addresses(h).await?;
    Ok(links.iter().map(|l| to_interface(l, &addrs)).collect())
}

/// The link a request names: by hardware address when given (the runtime
/// knows the MAC, not the guest's name), else by name.
pub async fn find(h: &Handle, iface: &Interface) -> Result<Link> {
    let all = links(h).await?;
    if !iface.hwAddr.is_empty() {
        let mac = convert::parse_mac(&iface.hwAddr)?;
        return all
            .into_iter()
            .find(|l| l.mac == mac)
            .with_context(|| format!("no interface with hardware address {}", iface.hwAddr));
    }
    let name = if iface.device.is_empty() {
        &iface.name
    } else {
        &iface.device
    };
    if name.is_empty() {
        bail!("the interface has neither hwAddr nor name");
    }
    all.into_iter()
        .find(|l| &l.name == name)
        .with_context(|| format!("no interface named {name:?}"))
}

/// Set name, MTU and addresses (the requested ones replace the old ones;
/// IPv6 link-local addresses stay) and bring the link up.
pub async fn update_interface(h: &Handle, iface: &Interface) -> Result<Interface> {
    let wanted: Vec<(IpAddr, u8)> = iface
        .IPAddresses
        .iter()
        .map(|a| {
            let ip = convert::parse_ip(&a.address)?;
            let prefix = convert::parse_prefix(&a.mask, &ip)?;
            Ok((ip, prefix))
        })
        .collect::<Result<_>>()?;
    let link = find(h, iface).await?;
    let idx = link.index;
    if !iface.name.is_empty() && iface.name != link.name {
        rename(h, &link, &iface.name).await?;
    }
    if iface.mtu > 0 {
        let mtu =
            u32::try_from(iface.mtu).with_context(|| format!("MTU {} is too large", iface.mtu))?;
        h.link()
            .set(LinkUnspec::new_with_index(idx).mtu(mtu).build())
            .execute()
            .await
            .nl()
            .with_context(|| format!("setting MTU {mtu} on {}", link.name))?;
    }
    for old in addresses(h).await?.into_iter().filter(|a| a.index == idx) {
        let link_local_v6 = old.ip.is_ipv6() && old.scope == AddressScope::Link;
        if link_local_v6 || wanted.contains(&(old.ip, old.prefix)) {
            continue;
        }
        h.address()
            .del(old.msg)
            .execute()
            .await
            .nl()
            .with_context(|| format!("removing {}/{} from {}", old.ip, old.prefix, link.name))?;
    }
    for (ip, prefix) in &wanted {
        h.address()
            .add(idx, *ip, *prefix)
            .replace()
            .execute()
            .await
            .nl()
            .with_context(|| format!("adding {ip}/{prefix} to {}", link.name))?;
    }
    // raw_flags IFF_NOARP: Kata's agent turns ARP off with it, on without
    // (src/agent/src/netlink.rs update_interface).
    let arp = iface.raw_flags & libc::IFF_NOARP as u32 == 0;
    h.link()
        .set(LinkUnspec::new_with_index(idx).arp(arp).up().build())
        .execute()
        .await
        .nl()
        .with_context(|| format!("bringing {} up", link.name))?;
    let links = links(h).await?;
    let now = links
        .iter()
        .find(|l| l.index == idx)
        .context("the interface vanished")?;
    Ok(to_interface(now, &addresses(h).await?))
}

fn set_name(h: &Handle, idx: u32, name: &str) -> rtnetlink::LinkSetRequest {
    h.link().set(
        LinkUnspec::new_with_index(idx)
            .name(name.to_string())
            .build(),
    )
}

async fn set_down(h: &Handle, l: &Link) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(l.index).down().build())
        .execute()
        .await
        .nl()
        .with_context(|| format!("bringing {} down", l.name))
}

/// Rename `link` to `name`. A link that has the name already gets `link`'s
/// old one (through a temporary name) and is brought up, as Kata's agent
/// swaps them (src/agent/src/netlink.rs update_interface): the runtime names
/// the pod's NICs by their MAC, and the guest kernel may have given one of
/// its names to another NIC.
async fn rename(h: &Handle, link: &Link, name: &str) -> Result<()> {
    // A link must be down to be renamed.
    set_down(h, link).await?;
    let holder = links(h).await?.into_iter().find(|l| l.name == name);
    if let Some(other) = &holder {
        set_down(h, other).await?;
        // "kata-tmp-" and an index of up to 6 digits fit IFNAMSIZ.
        let temp = format!("kata-tmp-{}", other.index);
        set_name(h, other.index, &temp)
            .execute()
            .await
            .nl()
            .with_context(|| format!("renaming {} to {temp} to free its name", other.name))?;
    }
    set_name(h, link.index, name)
        .execute()
        .await
        .nl()
        .with_context(|| format!("renaming {} to {name}", link.name))?;
    if let Some(other) = holder {
        h.link()
            .set(
                LinkUnspec::new_with_index(other.index)
                    .name(link.name.clone())
                    .up()
                    .build(),
            )
            .execute()
            .await
            .nl()
            .with_context(|| format!("renaming {name} (the old one) to {}", link.name))?;
    }
    Ok(())
}

/// Bring `lo` up. Kata's runtime never sends it in UpdateInterface; the
/// agent as init raises it itself (Kata: src/agent/src/main.rs start_sandbox,
/// netlink.rs handle_localhost), or 127.0.0.1 is unreachable in the pod.
pub async fn bring_up_loopback(h: &Handle) -> Result<()> {
    let lo = links(h)
        .await?
        .into_iter()
        .find(|l| l.name == "lo")
        .context("the guest has no loopback interface \"lo\"")?;
    h.link()
        .set(LinkUnspec::new_with_index(lo.index).up().build())
        .execute()
        .await
        .nl()
        .context("bringing lo up")
}

pub fn is_up(flags: u32) -> bool {
    LinkFlags::from_bits_retain(flags).contains(LinkFlags::Up)
}
