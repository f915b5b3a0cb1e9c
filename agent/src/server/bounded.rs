//! A bound on the requests one connection has in flight.
//!
//! ttrpc's server reads a request, spawns its handler and reads the next
//! at once; an answer waits in a queue for the socket. A client that
//! pipelines requests and never reads the answers makes the agent hold
//! all of them (3 MiB of Health.Check requests: ~190 MB of RSS). The
//! bound sits around ttrpc, in the connection's byte stream: it counts the
//! request frames handed to ttrpc and the response frames ttrpc writes,
//! and stops handing over the next frame while MAX_IN_FLIGHT are
//! unanswered. The client's writes then block in its socket, as over any
//! flow-controlled transport; nothing is refused or lost, and other
//! connections go on.
//!
//! A frame is a 10-byte header (u32 length, u32 stream id, u8 type, u8
//! flags, big-endian) and `length` bytes of payload. ttrpc answers each
//! request frame and each data frame (this agent has no streaming RPCs:
//! a data frame gets an error) with one response frame, and any frame too
//! long for it with one error response.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Requests one connection may have unanswered. Kata's runtime keeps one
/// connection per sandbox with about three long calls per live process
/// (WaitProcess, ReadStdout, ReadStderr) besides its short ones: this is
/// room for hundreds of processes, and a bounded cost per connection.
pub const MAX_IN_FLIGHT: usize = 1024;

const HEADER: usize = 10;
const TYPE_REQUEST: u8 = 1;
const TYPE_RESPONSE: u8 = 2;
const TYPE_DATA: u8 = 3;
/// ttrpc's largest frame (MESSAGE_LENGTH_MAX); a longer one is answered
/// with an error, whatever its type.
const MAX_FRAME: u32 = 4 << 20;

/// Follows the frames of one direction of a byte stream.
#[derive(Debug, Default)]
pub struct Frames {
    header: [u8; HEADER],
    have: usize,
    payload_left: u64,
}

impl Frames {
    /// Between two frames (no header or payload half seen).
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    /// Take in `bytes`; calls `frame(type, length)` for each header completed.
    pub fn feed(&mut self, mut bytes: &[u8], mut frame: impl FnMut(u8, u32)) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = (self.payload_left.min(bytes.len() as u64)) as usize;
                self.payload_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER {
                let h = self.header;
                let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                self.have = 0;
                self.payload_left = u64::from(len);
                frame(h[8], len);
            }
        }
    }
}

/// Does ttrpc answer this incoming frame?
fn is_answered(typ: u8, len: u32) -> bool {
    typ == TYPE_REQUEST || typ == TYPE_DATA || len > MAX_FRAME
}

/// A connection whose reads pause while MAX_IN_FLIGHT requests are
/// unanswered (`limit` in tests).
pub struct Bounded<S> {
    inner: S,
    limit: usize,
    incoming: Frames,
    outgoing: Frames,
    in_flight: usize,
    /// The reader parked on the bound, woken by the next response.
    parked: Option<Waker>,
}

impl<S> Bounded<S> {
    pub fn new(inner: S) -> Bounded<S> {
        Self::with_limit(inner, MAX_IN_FLIGHT)
    }

    pub fn with_limit(inner: S, limit: usize) -> Bounded<S> {
        Bounded {
            inner,
            limit,
            incoming: Frames::default(),
            outgoing: Frames::default(),
            in_flight: 0,
            parked: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Only between frames: a request half read would be held back
        // although its own answer cannot come.
        if this.in_flight >= this.limit && this.incoming.at_boundary() {
            this.parked = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let start = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let in_flight = &mut this.in_flight;
            this.incoming.feed(&buf.filled()[start..], |typ, len| {
                if is_answered(typ, len) {
                    *in_flight += 1;
                }
            });
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            let mut answered = 0;
            this.outgoing.feed(&buf[..n], |typ, _| {
                if typ == TYPE_RESPONSE {
                    answered += 1;
                }
            });
            if answered > 0 {
                this.in_flight = this.in_flight.saturating_sub(answered);
                if this.in_flight < this.limit {
                    if let Some(w) = this.parked.take() {
                        w.wake();
                    }
                }
            }
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(typ: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&[typ, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_are_found_in_any_chunking() {
        let mut bytes = frame(TYPE_REQUEST, b"hello");
        bytes.extend(frame(TYPE_DATA, b""));
        bytes.extend(frame(9, b"xyz"));
        for chunk in 1..bytes.len() {
            let mut f = Frames::default();
            let mut seen = Vec::new();
            for c in bytes.chunks(chunk) {
                f.feed(c, |t, l| seen.push((t, l)));
            }
            assert_eq!(seen, [(TYPE_REQUEST, 5), (TYPE_DATA, 0), (9, 3)], "{chunk}");
            assert!(f.at_boundary());
        }
        assert!(is_answered(7, MAX_FRAME + 1) && !is_answered(7, 3));
    }

    /// Three requests against a bound of two: the third is withheld until
    /// a response is written, and then delivered whole.
    #[tokio::test]
    async fn reads_pause_at_the_bound_until_an_answer_is_written() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = Bounded::with_limit(server, 2);
        let mut requests = Vec::new();
        for _ in 0..3 {
            requests.extend(frame(TYPE_REQUEST, b"abc"));
        }
        client.write_all(&requests).await.unwrap();
        let mut got = vec![0u8; 2 * 13];
        conn.read_exact(&mut got).await.unwrap();
        let mut one = [0u8; 1];
        let blocked =
            tokio::time::timeout(std::time::Duration::from_millis(100), conn.read(&mut one)).await;
        assert!(blocked.is_err(), "read past the bound");
        conn.write_all(&frame(TYPE_RESPONSE, b"ok")).await.unwrap();
        let mut third = vec![0u8; 13];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            conn.read_exact(&mut third),
        )
        .await
        .expect("read resumed after the answer")
        .unwrap();
        assert_eq!(third, frame(TYPE_REQUEST, b"abc"));
    }
}
