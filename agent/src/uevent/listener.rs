//! The one netlink uevent listener of the agent: a thread reading the
//! kernel's uevent multicast group, handing each "add" event to every
//! current subscriber. Started by the first subscriber; if no socket can
//! be opened (no netlink in this namespace) there is no listener and
//! waiters rely on their sysfs rescans.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Matcher, Uevent, ADD};

struct Subscribers {
    next_id: u64,
    list: Vec<(u64, Sender<Uevent>)>,
}

static SUBSCRIBERS: Mutex<Subscribers> = Mutex::new(Subscribers {
    next_id: 0,
    list: Vec::new(),
});

/// Whether the listener thread runs (decided once).
static LISTENING: OnceLock<bool> = OnceLock::new();

/// The events seen from now on, until dropped.
pub struct Watch {
    id: u64,
    rx: Receiver<Uevent>,
}

pub fn subscribe() -> Watch {
    LISTENING.get_or_init(|| start().is_ok());
    let (tx, rx) = mpsc::channel();
    let mut subs = lock();
    let id = subs.next_id;
    subs.next_id += 1;
    subs.list.push((id, tx));
    Watch { id, rx }
}

impl Watch {
    /// The first event `matcher` accepts within `wait`, if any.
    pub fn next(&self, wait: Duration, matcher: &dyn Matcher) -> Option<Uevent> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(ev) if matcher.matches(&ev) => return Some(ev),
                Ok(_) => continue,
                // Disconnected cannot happen while we are subscribed; both
                // end this round, the caller rescans.
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        lock().list.retain(|(id, _)| *id != self.id);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Subscribers> {
    SUBSCRIBERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hand an "add" event to every subscriber (the others are not waited for).
pub(super) fn dispatch(ev: &Uevent) {
    if ev.action != ADD {
        return;
    }
    for (_, tx) in lock().list.iter() {
        // A subscriber that is going away unsubscribes itself.
        let _ = tx.send(ev.clone());
    }
}

/// Open and bind the socket here, so that it listens before the first
/// subscriber scans sysfs, then read it on a thread of its own.
fn start() -> Result<()> {
    let sock = open_socket()?;
    std::thread::Builder::new()
        .name("uevent".into())
        .spawn(move || listen(sock))
        .context("starting the uevent listener thread")?;
    Ok(())
}

fn open_socket() -> Result<OwnedFd> {
    use nix::sys::socket::{
        bind, setsockopt, socket, sockopt, AddressFamily, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkKObjectUEvent,
    )
    .context("opening a uevent socket")?;
    // A hot-plug can come with a burst of events (bridge, function, disk,
    // partitions): room for many. Best effort, the rescans cover overflow.
    let _ = setsockopt(&fd, sockopt::RcvBuf, &(1 << 20));
    // Multicast group 1: the kernel's own uevents.
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1)).context("binding the uevent socket")?;
    Ok(fd)
}

fn listen(sock: OwnedFd) {
    use nix::sys::socket::{recvfrom, NetlinkAddr};
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match recvfrom::<NetlinkAddr>(sock.as_raw_fd(), &mut buf) {
            // Only the kernel (port 0) sends real uevents; a process on
            // the group could forge them.
            Ok((n, Some(from))) if from.pid() == 0 => {
                if let Some(ev) = Uevent::parse(&buf[..n]) {
                    dispatch(&ev);
                }
            }
            Ok(_) => {}
            // Overflow lost some events: the waiters' rescans find them.
            Err(nix::errno::Errno::ENOBUFS | nix::errno::Errno::EINTR) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    struct Devpath(&'static str);

    impl fmt::Display for Devpath {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "device {}", self.0)
        }
    }

    impl Matcher for Devpath {
        fn subsystem(&self) -> &str {
            "block"
        }
        fn matches(&self, ev: &Uevent) -> bool {
            ev.devpath == self.0
        }
    }

    fn event(action: &str, devpath: &str) -> Uevent {
        Uevent {
            action: action.into(),
            devpath: devpath.into(),
            subsystem: "block".into(),
            devname: "vdz".into(),
            ..Default::default()
        }
    }

    /// A subscriber sees the "add" it matches among the events dispatched
    /// after it subscribed; a "remove" or another device does not end it.
    #[test]
    fn a_watch_sees_only_matching_adds() {
        let watch = subscribe();
        let want = Devpath("/devices/test-watch/block/vdz");
        dispatch(&event("remove", want.0));
        dispatch(&event(ADD, "/devices/test-watch/block/other"));
        assert_eq!(watch.next(Duration::from_millis(50), &want), None);
        dispatch(&event(ADD, want.0));
        let found = watch.next(Duration::from_secs(1), &want).expect("the add");
        assert_eq!(found.devpath, want.0);
        let id = watch.id;
        drop(watch);
        assert!(lock().list.iter().all(|(i, _)| *i != id), "unsubscribed");
    }

    /// `wait` returns an event dispatched while it waits, long before its
    /// timeout.
    #[test]
    fn wait_ends_on_a_dispatched_event() {
        let sysfs = tempfile::tempdir().expect("tempdir");
        let root = sysfs.path().to_path_buf();
        let start = Instant::now();
        let waiter = std::thread::spawn(move || {
            super::super::wait(
                &Devpath("/devices/test-wait/block/vdz"),
                &root,
                Duration::from_secs(20),
            )
        });
        // Other tests subscribe too: send until this waiter has it.
        while !waiter.is_finished() {
            dispatch(&event(ADD, "/devices/test-wait/block/vdz"));
            std::thread::sleep(Duration::from_millis(20));
        }
        let found = waiter.join().expect("waiter").expect("found");
        assert_eq!(found.devname, "vdz");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}
