//! Guest-wide RPCs through the real client: GetGuestDetails, SetGuestDateTime,
//! CopyFile (atomic, chunked, confined to the shared directory),
//! GetVolumeStats, GetMetrics, ReseedRandomDev.

mod cpu;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use agent_ctl::context;
use protocols::agent::*;
use protocols::csi::volume_usage::Unit;
use test_support::rpc::code;
use test_support::TestAgent;

const SHARED: &str = "/run/kata-containers/shared/containers";

fn copy_req(path: &str, size: usize, offset: usize, data: &[u8], mode: u32) -> CopyFileRequest {
    let mut r = CopyFileRequest::new();
    r.path = path.into();
    r.file_size = size as i64;
    r.offset = offset as i64;
    r.data = data.to_vec();
    r.file_mode = mode;
    r.dir_mode = 0o750;
    r.uid = 0;
    r.gid = 0;
    r
}

/// A per-test directory below the shared dir, removed at the end.
struct SharedDir(String);

impl SharedDir {
    fn new(name: &str) -> SharedDir {
        SharedDir(format!("{SHARED}/test-{}-{name}", std::process::id()))
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_dir(SHARED);
    }
}

#[tokio::test]
async fn guest_details_report_the_agent() {
    let agent = TestAgent::start("").await;
    let mut req = GuestDetailsRequest::new();
    req.mem_block_size = true;
    req.mem_hotplug_probe = true;
    let resp = agent
        .client
        .agent
        .get_guest_details(context(10), &req)
        .await
        .expect("GetGuestDetails");
    let d = resp.agent_details.as_ref().expect("agent_details");
    assert_eq!(d.version, env!("CARGO_PKG_VERSION"));
    assert!(!d.init_daemon, "a stand-alone agent is not PID 1");
    // The agent applies linux.seccomp wherever the kernel has seccomp filters.
    let has_filters = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Seccomp_filters:")));
    assert_eq!(d.supports_seccomp, has_filters);
    for h in ["virtio-fs", "9p", "blk", "local", "ephemeral", "bind"] {
        assert!(
            d.storage_handlers.iter().any(|s| s == h),
            "{h} in {:?}",
            d.storage_handlers
        );
    }
    let file = Path::new("/sys/devices/system/memory/block_size_bytes");
    let want = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| u64::from_str_radix(t.trim(), 16).ok())
        .unwrap_or(0);
    assert_eq!(resp.mem_block_size_bytes, want);
    assert_eq!(
        resp.support_mem_hotplug_probe,
        Path::new("/sys/devices/system/memory/probe").exists()
    );
}

/// Sets the clock to the current time (a no-op for the host) and checks bad
/// values are refused before touching the clock.
#[tokio::test]
async fn set_guest_date_time_accepts_now_and_refuses_nonsense() {
    test_support::require_root!();
    let agent = TestAgent::start("").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    let mut req = SetGuestDateTimeRequest::new();
    req.Sec = now.as_secs() as i64;
    req.Usec = now.subsec_micros() as i64;
    agent
        .client
        .agent
        .set_guest_date_time(context(10), &req)
        .await
        .expect("SetGuestDateTime now");
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    assert!(
        after.as_secs().abs_diff(now.as_secs()) < 5,
        "the clock moved"
    );
    req.Usec = 2_000_000;
    let err = agent
        .client
        .agent
        .set_guest_date_time(context(10), &req)
        .await
        .expect_err("bad usec");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT);
}

#[tokio::test]
async fn copy_file_is_chunked_and_atomic() {
    test_support::require_root!();
    let agent = TestAgent::start("").await;
    let dir = SharedDir::new("copy");
    let path = format!("{}/sub/dir/file.txt", dir.0);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let (a, b) = data.split_at(6000);
    let c = &agent.client.agent;
    c.copy_file(context(10), &copy_req(&path, data.len(), 0, a, 0o640))
        .await
        .expect("chunk 1");
    assert!(
        !Path::new(&path).exists(),
        "the target appears only with the last chunk"
    );
    c.copy_file(context(10), &copy_req(&path, data.len(), 6000, b, 0o640))
        .await
        .expect("chunk 2");
    assert_eq!(std::fs::read(&path).expect("read"), data);
    let meta = std::fs::metadata(&path).expect("stat");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.uid(), 0);
    let dmode = std::fs::metadata(format!("{}/sub/dir", dir.0))
        .expect("stat dir")
        .permissions()
        .mode();
    assert_eq!(dmode & 0o777, 0o750, "directories get dir_mode");
    let leftovers: Vec<_> = std::fs::read_dir(format!("{}/sub/dir", dir.0))
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp file left: {leftovers:?}");

    // Overwrite in one chunk: readers see the old or the new file, whole.
    c.copy_file(context(10), &copy_req(&path, 3, 0, b"new", 0o600))
        .await
        .expect("overwrite");
    assert_eq!(std::fs::read(&path).expect("read"), b"new");

    let err = c
        .copy_file(context(10), &copy_req(&path, 3, 2, b"toolong", 0o600))
        .await
        .expect_err("chunk beyond file_size");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT);
}

#[tokio::test]
async fn copy_file_cannot_escape_the_shared_dir() {
    test_support::require_root!();
    let agent = TestAgent::start("").await;
    let dir = SharedDir::new("escape");
    std::fs::create_dir_all(&dir.0).expect("mkdir");
    let c = &agent.client.agent;
    let marker = format!("kata-escape-{}", std::process::id());
    for path in [
        "/etc/passwd".to_string(),
        format!("{SHARED}/../../etc/{marker}"),
        format!("{}/../../../etc/{marker}", dir.0),
        "relative/file".to_string(),
        SHARED.to_string(),
    ] {
        let err = c
            .copy_file(context(10), &copy_req(&path, 1, 0, b"x", 0o644))
            .await
            .expect_err(&path);
        assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{path}: {err:?}");
    }
    // A symlink planted in the shared dir resolves inside the shared dir.
    std::os::unix::fs::symlink("/etc", format!("{}/link", dir.0)).expect("symlink");
    std::os::unix::fs::symlink("../../../../../etc", format!("{}/rel", dir.0)).expect("symlink");
    for via in ["link", "rel"] {
        let path = format!("{}/{via}/{marker}", dir.0);
        let _ = c
            .copy_file(context(10), &copy_req(&path, 1, 0, b"x", 0o644))
            .await;
        assert!(
            !Path::new(&format!("/etc/{marker}")).exists(),
            "escaped to /etc via {via}"
        );
    }
    let _ = std::fs::remove_dir_all(format!("{SHARED}/etc"));
}

#[tokio::test]
async fn volume_stats_metrics_and_reseed() {
    test_support::require_root!();
    let agent = TestAgent::start("").await;
    let c = &agent.client.agent;
    let mut req = VolumeStatsRequest::new();
    req.volume_guest_path = "/".into();
    let stats = c
        .get_volume_stats(context(10), &req)
        .await
        .expect("GetVolumeStats");
    let bytes = stats
        .usage
        .iter()
        .find(|u| u.unit.enum_value() == Ok(Unit::BYTES))
        .expect("bytes");
    assert!(bytes.total > 0 && bytes.used <= bytes.total && bytes.available <= bytes.total);
    let inodes = stats
        .usage
        .iter()
        .find(|u| u.unit.enum_value() == Ok(Unit::INODES))
        .expect("inodes");
    assert!(inodes.total >= inodes.used);
    req.volume_guest_path = "/no/such/volume".into();
    let err = c
        .get_volume_stats(context(10), &req)
        .await
        .expect_err("missing path");
    assert!(format!("{err:?}").contains("/no/such/volume"));

    let m = c
        .get_metrics(context(10), &GetMetricsRequest::new())
        .await
        .expect("GetMetrics");
    for name in [
        "kata_agent_process_resident_memory_bytes",
        "kata_agent_process_open_fds",
        "kata_agent_process_threads",
        "kata_agent_process_uptime_seconds",
    ] {
        assert!(
            m.metrics
                .lines()
                .any(|l| l.starts_with(&format!("{name} "))),
            "{name}:\n{}",
            m.metrics
        );
    }

    let mut r = ReseedRandomDevRequest::new();
    r.data = vec![7u8; 64];
    c.reseed_random_dev(context(10), &r)
        .await
        .expect("ReseedRandomDev");
}
