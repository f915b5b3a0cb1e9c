//! The guest network through rtnetlink: interfaces, addresses, routes, ARP
//! neighbours (Kata's runtime describes the pod network, the agent applies
//! it), and iptables rules through iptables-save/-restore.

pub mod convert;
pub mod iptables;
pub mod link;
pub mod neigh;
pub mod route;

use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use rtnetlink::Handle;

/// A netlink connection for one request. Its I/O task ends when the handle
/// is dropped.
pub fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Collect a netlink dump.
pub async fn collect<T>(
    stream: impl futures_util::Stream<Item = Result<T, rtnetlink::Error>>,
    what: &str,
) -> Result<Vec<T>> {
    stream
        .try_collect()
        .await
        .with_context(|| format!("listing {what}"))
}

/// The kernel answered `errno` (a positive libc constant).
pub fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.to_io().raw_os_error() == Some(errno))
}
