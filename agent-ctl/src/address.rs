//! Agent server addresses as users write them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `unix:///path/to/socket`
    Unix(PathBuf),
    /// `unix://@name`: Linux abstract socket.
    UnixAbstract(String),
    /// `vsock://CID:PORT`
    Vsock { cid: u32, port: u32 },
    /// `hvsock:///path/to/socket:PORT`: a host Unix socket speaking the
    /// hybrid-vsock `CONNECT <port>` protocol.
    HybridVsock { uds: PathBuf, port: u32 },
}

impl Address {
    /// The address in ttrpc's own syntax (not meaningful for hybrid vsock).
    pub fn ttrpc_addr(&self) -> String {
        match self {
            Address::Unix(p) => format!("unix://{}", p.display()),
            Address::UnixAbstract(n) => format!("unix://@{n}"),
            Address::Vsock { cid, port } => format!("vsock://{cid}:{port}"),
            Address::HybridVsock { uds, port } => format!("hvsock://{}:{port}", uds.display()),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ttrpc_addr())
    }
}

fn parse_port(s: &str, addr: &str) -> Result<u32> {
    s.parse()
        .with_context(|| format!("address {addr:?}: bad port {s:?}"))
}

impl FromStr for Address {
    type Err = anyhow::Error;

    fn from_str(addr: &str) -> Result<Address> {
        if let Some(rest) = addr.strip_prefix("unix://") {
            if let Some(name) = rest.strip_prefix('@') {
                if name.is_empty() {
                    bail!("address {addr:?}: empty abstract socket name");
                }
                return Ok(Address::UnixAbstract(name.to_string()));
            }
            if !rest.starts_with('/') {
                bail!("address {addr:?}: expected an absolute path after unix://");
            }
            return Ok(Address::Unix(PathBuf::from(rest)));
        }
        if let Some(rest) = addr.strip_prefix("vsock://") {
            let (cid, port) = rest
                .split_once(':')
                .with_context(|| format!("address {addr:?}: expected vsock://CID:PORT"))?;
            let cid = cid
                .parse()
                .with_context(|| format!("address {addr:?}: bad CID {cid:?}"))?;
            return Ok(Address::Vsock {
                cid,
                port: parse_port(port, addr)?,
            });
        }
        if let Some(rest) = addr.strip_prefix("hvsock://") {
            let (path, port) = rest
                .rsplit_once(':')
                .with_context(|| format!("address {addr:?}: expected hvsock:///path:PORT"))?;
            if !path.starts_with('/') {
                bail!("address {addr:?}: expected an absolute socket path after hvsock://");
            }
            return Ok(Address::HybridVsock {
                uds: PathBuf::from(path),
                port: parse_port(port, addr)?,
            });
        }
        bail!("address {addr:?}: expected unix:///path, unix://@name, vsock://CID:PORT or hvsock:///path:PORT")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            "unix:///run/a.sock".parse::<Address>().unwrap(),
            Address::Unix("/run/a.sock".into())
        );
        assert_eq!(
            "unix://@agent".parse::<Address>().unwrap(),
            Address::UnixAbstract("agent".into())
        );
        assert_eq!(
            "vsock://3:1024".parse::<Address>().unwrap(),
            Address::Vsock { cid: 3, port: 1024 }
        );
        assert_eq!(
            "hvsock:///tmp/vm.vsock:1024".parse::<Address>().unwrap(),
            Address::HybridVsock {
                uds: "/tmp/vm.vsock".into(),
                port: 1024
            }
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "unix://",
            "unix://@",
            "unix://rel/path",
            "vsock://3",
            "vsock://x:1",
            "vsock://3:y",
            "hvsock:///a",
            "hvsock://rel:1",
            "tcp://1.2.3.4:1",
        ] {
            assert!(
                bad.parse::<Address>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn round_trips_through_display() {
        for s in [
            "unix:///run/a.sock",
            "unix://@agent",
            "vsock://3:1024",
            "hvsock:///tmp/vm.vsock:1024",
        ] {
            assert_eq!(s.parse::<Address>().unwrap().to_string(), s);
        }
    }
}
