//! Memory cgroup OOM notifications, queued for GetOOMEvent.
//!
//! One watcher thread per container cgroup blocks in poll(2) on the kernel's
//! notification and on a stop eventfd, so it costs nothing while idle:
//! - v1: an eventfd registered through cgroup.event_control on
//!   memory.oom_control (the kernel signals it on every OOM in the cgroup);
//! - v2: inotify on memory.events; an OOM is a rise of its `oom_kill` count.
//!
//! Every OOM pushes the container id on one queue. The agent serves one
//! sandbox per process, so the queue is process-wide; GetOOMEvent pops it.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::stats::read_flat_keyed;

/// Ids of containers that hit OOM, oldest first.
pub struct OomQueue {
    tx: UnboundedSender<String>,
    rx: tokio::sync::Mutex<UnboundedReceiver<String>>,
}

impl OomQueue {
    /// Wait for the next OOM of any watched container.
    pub async fn next(&self) -> String {
        let mut rx = self.rx.lock().await;
        // The queue owns a sender, so the channel never closes.
        rx.recv().await.unwrap_or_default()
    }
}

/// The process-wide OOM queue.
pub fn queue() -> &'static OomQueue {
    static QUEUE: OnceLock<OomQueue> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = unbounded_channel();
        OomQueue {
            tx,
            rx: tokio::sync::Mutex::new(rx),
        }
    })
}

/// A running watcher; dropping it stops the thread.
pub struct OomWatch {
    stop: Arc<EventFd>,
}

impl Drop for OomWatch {
    fn drop(&mut self) {
        // Best effort: if the write fails the thread ends with the cgroup.
        let _ = self.stop.write(1);
    }
}

/// The kernel's notification source for one cgroup.
enum Source {
    V1 {
        event: EventFd,
        // Kept open: the registration lives as long as this file.
        _oom_control: File,
        dir: PathBuf,
    },
    V2 {
        inotify: Inotify,
        events_file: PathBuf,
        last_kills: u64,
    },
}

/// Watch the memory cgroup directory `dir` of `container_id`.
pub fn watch(container_id: &str, dir: &Path, v2: bool) -> Result<OomWatch> {
    let source = if v2 { source_v2(dir)? } else { source_v1(dir)? };
    let stop = Arc::new(
        EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).context("creating an eventfd")?,
    );
    let thread_stop = stop.clone();
    let id = container_id.to_string();
    std::thread::Builder::new()
        .name("oom-watch".into())
        .spawn(move || run(id, source, &thread_stop))
        .context("starting the OOM watcher thread")?;
    Ok(OomWatch { stop })
}

fn source_v1(dir: &Path) -> Result<Source> {
    let control_path = dir.join("memory.oom_control");
    let oom_control =
        File::open(&control_path).with_context(|| format!("opening {}", control_path.display()))?;
    let event =
        EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).context("creating an eventfd")?;
    let registration = format!("{} {}", event.as_raw_fd(), oom_control.as_raw_fd());
    let event_control = dir.join("cgroup.event_control");
    std::fs::write(&event_control, registration)
        .with_context(|| format!("registering for OOM events in {}", event_control.display()))?;
    Ok(Source::V1 {
        event,
        _oom_control: oom_control,
        dir: dir.to_path_buf(),
    })
}

fn source_v2(dir: &Path) -> Result<Source> {
    let events_file = dir.join("memory.events");
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .context("creating an inotify instance")?;
    inotify
        .add_watch(&events_file, AddWatchFlags::IN_MODIFY)
        .with_context(|| format!("watching {}", events_file.display()))?;
    let last_kills = oom_kills(&events_file);
    Ok(Source::V2 {
        inotify,
        events_file,
        last_kills,
    })
}

fn oom_kills(events_file: &Path) -> u64 {
    let dir = events_file.parent().unwrap_or(Path::new("/"));
    read_flat_keyed(dir, "memory.events")
        .get("oom_kill")
        .copied()
        .unwrap_or(0)
}

/// The watcher thread: wait for the kernel or for stop, forever.
fn run(id: String, mut source: Source, stop: &EventFd) {
    loop {
        let (ready, stopped) = {
            let kernel_fd = match &source {
                Source::V1 { event, .. } => event.as_fd(),
                Source::V2 { inotify, .. } => inotify.as_fd(),
            };
            let mut fds = [
                PollFd::new(kernel_fd, PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => (is_readable(&fds[0]), is_readable(&fds[1])),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        };
        // The kernel's news first: an OOM just before removal still counts.
        if ready && !handle(&id, &mut source) {
            return;
        }
        if stopped {
            return;
        }
    }
}

fn is_readable(fd: &PollFd) -> bool {
    fd.revents()
        .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR))
}

/// One wake-up from the kernel; false when the cgroup is gone.
fn handle(id: &str, source: &mut Source) -> bool {
    match source {
        Source::V1 { event, dir, .. } => {
            // The counter adds one per OOM, and one when the cgroup is
            // removed (then the watch ends, reporting OOMs counted before).
            let Ok(count) = event.read() else {
                return false;
            };
            let alive = dir.exists();
            if alive || count > 1 {
                let _ = queue().tx.send(id.to_string());
            }
            alive
        }
        Source::V2 {
            inotify,
            events_file,
            last_kills,
        } => {
            // Drain the inotify events; only the count matters.
            let _ = inotify.read_events();
            if !events_file.exists() {
                return false;
            }
            let kills = oom_kills(events_file);
            if kills > *last_kills {
                *last_kills = kills;
                let _ = queue().tx.send(id.to_string());
            }
            true
        }
    }
}
