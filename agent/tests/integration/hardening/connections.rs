//! Issue 12, finding 7: the ttRPC server under connection and request
//! floods. With more connections held than its open-file limit, the accept
//! loop failed with EMFILE over and over without waiting (~65 % of a core);
//! a client pipelining requests without reading the answers made the agent
//! hold every one of them (3 MiB of requests: RSS 4 -> 215 MB). Kata's
//! agent has both (its server is ttrpc's, src/agent/src/rpc.rs start).
//! Each test prints what it measured; both failed before the fix. Needs
//! root (lowering another process's limit is allowed, raising ours past
//! 1,100 fds may not be); CI runs as root.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use agent_ctl::context;
use protobuf::Message;
use protocols::health::CheckRequest;
use test_support::TestAgent;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading stat");
    // Fields after the command (which may hold spaces) start after ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("reading status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn set_nofile(pid: u32, limit: u64) {
    let l = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit reads `l`, writes nothing (old limit pointer null).
    let r = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &l, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Room for `n` more fds in this test process.
fn ensure_own_fds(n: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    if l.rlim_cur < n {
        l.rlim_cur = l.rlim_max.max(n);
        l.rlim_max = l.rlim_cur;
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) };
    }
}

/// 1,100 connections against a PID-1 agent's 1,024 fds: the accept loop
/// must wait, not spin, and serve again once connections close.
#[tokio::test]
async fn held_connections_past_the_fd_limit_do_not_spin_the_accept_loop() {
    test_support::require_root!();
    ensure_own_fds(4096);
    let agent = TestAgent::start("").await;
    set_nofile(agent.pid(), 1024);
    let held: Vec<UnixStream> = (0..1100)
        .map(|i| {
            UnixStream::connect(&agent.socket).unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    // Let it accept what it can and reach EMFILE.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (t0, start) = (cpu_ticks(agent.pid()), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticks = cpu_ticks(agent.pid()) - t0;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let share = ticks as f64 / hz / start.elapsed().as_secs_f64();
    eprintln!(
        "agent CPU with 1100 connections held at a 1024 fd limit: {:.1} % of a core",
        share * 100.0
    );
    drop(held);
    assert!(
        share < 0.10,
        "the accept loop used {:.0} % of a core while out of fds",
        share * 100.0
    );
    // Once fds are free again, a new client is served.
    let client = agent_ctl::connect(&agent.addr, Duration::from_secs(10))
        .await
        .expect("connecting after the flood");
    client
        .health
        .check(context(10), &CheckRequest::new())
        .await
        .expect("Health.Check after the flood");
}

/// A Health.Check frame (10-byte header, then the ttrpc Request).
fn check_frame(stream_id: u32) -> Vec<u8> {
    let mut req = ttrpc::Request::new();
    req.service = "grpc.Health".into();
    req.method = "Check".into();
    req.payload = CheckRequest::new().write_to_bytes().expect("encoding");
    let body = req.write_to_bytes().expect("encoding");
    let mut f = Vec::with_capacity(10 + body.len());
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(&stream_id.to_be_bytes());
    f.extend_from_slice(&[1, 0]); // request, no flags
    f.extend_from_slice(&body);
    f
}

/// 3 MiB of pipelined requests whose answers are never read: the agent
/// stops reading the connection instead of holding every request and
/// answer; other connections are still served.
#[tokio::test]
async fn unread_pipelined_requests_do_not_grow_the_agent() {
    test_support::require_root!();
    let agent = TestAgent::start("").await;
    let before = rss_kib(agent.pid());
    let mut flood = Vec::new();
    let mut id = 1u32;
    while flood.len() < 3 << 20 {
        flood.extend(check_frame(id));
        id += 2;
    }
    let mut s = UnixStream::connect(&agent.socket).expect("connecting");
    s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let writer = std::thread::spawn(move || {
        let mut sent = 0;
        while sent < flood.len() {
            match s.write(&flood[sent..]) {
                Ok(n) => sent += n,
                Err(_) => break, // the agent stopped reading: that is the point
            }
        }
        (s, sent)
    });
    let (s, sent) = tokio::task::spawn_blocking(move || writer.join().expect("writer"))
        .await
        .expect("join");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(agent.pid());
    eprintln!(
        "agent RSS {} -> {} KiB after {} of {} KiB of unread pipelined requests ({} requests)",
        before,
        after,
        sent >> 10,
        3 << 10,
        id / 2
    );
    let other = agent.connect().await;
    other
        .health
        .check(context(10), &CheckRequest::new())
        .await
        .expect("another connection is still served");
    drop(s);
    assert!(
        after < before + (32 << 10),
        "RSS grew from {before} to {after} KiB"
    );
}
