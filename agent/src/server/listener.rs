//! The listening socket and its accept loop, handed to ttrpc as a stream
//! of connections (`ttrpc::r#async::transport::Listener::new`).
//!
//! ttrpc's own loop logs a failed accept and tries again at once. Out of
//! file descriptors (EMFILE) the listening socket stays readable, so it
//! spins: 1,100 connections held against a PID-1 agent's 1,024 fds kept
//! it at ~65 % of a core. This loop waits after a failed accept, 5 ms
//! doubling to 1 s (Go's net/http waits so too), and logs the first
//! failure of a run once. Each connection is wrapped in `Bounded`.

use std::future::poll_fn;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener as StdUnixListener};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures_util::stream::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixListener;
use tokio_vsock::{VsockAddr, VsockListener, VMADDR_CID_ANY};
use ttrpc::r#async::transport::Listener;

use super::bounded::Bounded;

const FIRST_WAIT: Duration = Duration::from_millis(5);
const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// A socket that accepts connections.
trait Accept: Send + Sync + 'static {
    type Conn: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Conn>>;
}

impl Accept for UnixListener {
    type Conn = tokio::net::UnixStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Conn>> {
        UnixListener::poll_accept(self, cx).map_ok(|(s, _)| s)
    }
}

impl Accept for VsockListener {
    type Conn = tokio_vsock::VsockStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Conn>> {
        VsockListener::poll_accept(self, cx).map_ok(|(s, _)| s)
    }
}

/// Bind `addr` (checked by `validate_server_addr`): `vsock://CID:PORT`,
/// `unix:///path` or `unix://@abstract`. Must run inside the runtime.
pub fn bind(addr: &str, logger: slog::Logger) -> Result<Listener> {
    if let Some(rest) = addr.strip_prefix("vsock://") {
        let (cid, port) = rest
            .split_once(':')
            .with_context(|| format!("server address {addr:?}: expected vsock://CID:PORT"))?;
        let cid = match cid {
            "-1" => VMADDR_CID_ANY,
            c => c.parse().with_context(|| format!("bad CID {c:?}"))?,
        };
        let port = port.parse().with_context(|| format!("bad port {port:?}"))?;
        let l = VsockListener::bind(VsockAddr::new(cid, port))
            .with_context(|| format!("binding {addr}"))?;
        return Ok(incoming(l, logger));
    }
    let path = addr
        .strip_prefix("unix://")
        .with_context(|| format!("server address {addr:?}: not vsock:// or unix://"))?;
    let sockaddr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(path),
    }
    .with_context(|| format!("server address {addr:?}"))?;
    let std = StdUnixListener::bind_addr(&sockaddr).with_context(|| format!("binding {addr}"))?;
    std.set_nonblocking(true)
        .with_context(|| format!("binding {addr}"))?;
    let l = UnixListener::from_std(std).with_context(|| format!("binding {addr}"))?;
    Ok(incoming(l, logger))
}

/// Accepted connections; a failed accept is waited out, not yielded.
fn incoming<L: Accept>(listener: L, logger: slog::Logger) -> Listener {
    let state = (listener, logger, Backoff::default());
    let stream = futures_util::stream::unfold(state, |(l, logger, mut backoff)| async move {
        loop {
            match poll_fn(|cx| l.poll_accept(cx)).await {
                Ok(conn) => {
                    backoff.reset();
                    return Some((Ok(Bounded::new(conn)), (l, logger, backoff)));
                }
                Err(e) => {
                    let wait = backoff.next();
                    if wait == FIRST_WAIT {
                        slog::warn!(logger, "accepting a connection failed; waiting before retrying";
                            "error" => e.to_string());
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    });
    Listener::new(stream.boxed())
}

/// 5 ms, 10 ms, ... up to 1 s while accepts fail; back to 5 ms after one works.
#[derive(Default)]
struct Backoff {
    current: Option<Duration>,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = match self.current {
            None => FIRST_WAIT,
            Some(d) => (d * 2).min(LONGEST_WAIT),
        };
        self.current = Some(wait);
        wait
    }

    fn reset(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<_> = (0..10).map(|_| b.next().as_millis()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), FIRST_WAIT);
    }
}
