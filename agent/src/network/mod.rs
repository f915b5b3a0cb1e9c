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
        .nl()
        .with_context(|| format!("listing {what}"))
}

/// rtnetlink's error as the agent reports it. rtnetlink's own Display
/// prints an unexpected message whole (`{:?}`), which links the Debug of
/// every netlink message type into the agent; this names it by its type.
/// Every rtnetlink error goes through it before anyhow wraps it (`.nl()`).
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("Received a netlink error message {0}")]
    Kernel(rtnetlink::packet_core::ErrorMessage),
    #[error("Received an unexpected netlink message of type {0}")]
    Unexpected(u16),
    #[error("{0}")]
    Other(String),
}

impl From<rtnetlink::Error> for NetlinkError {
    fn from(e: rtnetlink::Error) -> NetlinkError {
        use rtnetlink::Error as E;
        let other = |s: String| NetlinkError::Other(s);
        match e {
            E::NetlinkError(m) => NetlinkError::Kernel(m),
            E::UnexpectedMessage(m) => NetlinkError::Unexpected(m.header.message_type),
            E::RequestFailed => other("A netlink request failed".into()),
            E::NamespaceError(s) => other(format!("Namespace error {s}")),
            E::InvalidHardwareAddress(a) => other(format!("an invalid hardware address {a:?}")),
            E::InvalidIp(a) => other(format!("Failed to parse an IP address: {a:?}")),
            E::InvalidAddress(ip, mask) => other(format!(
                "Failed to parse a network address (IP and mask): {ip:?}/{mask:?}"
            )),
            E::InvalidNla(s) => other(format!("Attempting to set an invalid NLA: {s}")),
        }
    }
}

/// `.nl()` on an rtnetlink result: its error as a [`NetlinkError`].
pub trait NetlinkResult<T> {
    fn nl(self) -> Result<T, NetlinkError>;
}

impl<T> NetlinkResult<T> for Result<T, rtnetlink::Error> {
    fn nl(self) -> Result<T, NetlinkError> {
        self.map_err(NetlinkError::from)
    }
}

/// The kernel answered `errno` (a positive libc constant).
pub fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.to_io().raw_os_error() == Some(errno))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroI32;

    use rtnetlink::packet_core::{ErrorMessage, NetlinkMessage};
    use rtnetlink::packet_route::RouteNetlinkMessage;

    use super::*;

    #[test]
    fn an_unexpected_message_is_named_by_its_type() {
        let mut m = NetlinkMessage::from(RouteNetlinkMessage::NewLink(Default::default()));
        m.finalize();
        let e = NetlinkError::from(rtnetlink::Error::UnexpectedMessage(m));
        assert_eq!(
            e.to_string(),
            format!(
                "Received an unexpected netlink message of type {}",
                libc::RTM_NEWLINK
            )
        );
    }

    #[test]
    fn the_kernels_answer_reads_as_rtnetlink_says_it() {
        let mut m = ErrorMessage::default();
        m.code = NonZeroI32::new(-libc::EEXIST);
        let ours = NetlinkError::from(rtnetlink::Error::NetlinkError(m.clone()));
        assert_eq!(
            ours.to_string(),
            rtnetlink::Error::NetlinkError(m).to_string()
        );
        assert!(ours.to_string().contains("File exists"), "{ours}");
    }
}
