//! The end-to-end suite: Kata's container life cycle, driven through the
//! real agent inside the VM over hybrid vsock. Tests run in order; a test
//! whose prerequisite failed is skipped with the reason, so one broken RPC
//! gives one FAIL row rather than a cascade.
//!
//! The tests are listed once, in [`TESTS`]: a new test is an `async fn
//! name(ctx: &mut Ctx) -> Result<()>` here and one line in the table.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use agent_ctl::{describe, AgentClient, RpcResultExt};
use anyhow::{bail, ensure, Context, Result};
use protocols::agent::{
    CloseStdinRequest, CreateContainerRequest, CreateSandboxRequest, DestroySandboxRequest,
    ExecProcessRequest, GetIPTablesRequest, GuestDetailsRequest, ReadStreamRequest,
    RemoveContainerRequest, SetIPTablesRequest, SignalProcessRequest, StartContainerRequest,
    StatsContainerRequest, Storage, WaitProcessRequest, WriteStreamRequest,
};
use protocols::health::{health_check_response::ServingStatus, CheckRequest};

use test_support::spec::{self, PodRole};

use crate::fixture;
use crate::hotplug;
use crate::pod::{
    pod_app_container, pod_config_map_update, pod_exec_background_child_eof, pod_hotplug_memory,
    pod_loopback, pod_online_cpus, pod_pause_container, pod_ps_shows_own_processes,
    pod_teardown_leaves_no_mount, pod_volumes,
};
use crate::report::{Outcome, Verdict};

pub struct SuiteConfig {
    /// Hybrid vsock Unix socket of the VM's vsock backend.
    pub socket: PathBuf,
    pub port: u32,
    /// Host side of kataShared.
    pub shared_dir: PathBuf,
    /// "9p" or "virtio-fs": picks the Storage driver.
    pub share: String,
    /// The busybox rootfs to copy into the shared dir.
    pub busybox: PathBuf,
    pub serial_log: PathBuf,
    /// How long the agent may take to answer its first Health.Check.
    pub boot_timeout: Duration,
    /// Deadline of one RPC.
    pub rpc_timeout: Duration,
    /// Run only tests whose names contain one of these, and the tests they need (all when empty).
    pub only: Vec<String>,
    /// QEMU's pid: stop waiting for the agent once it has exited.
    pub vm_pid: Option<u32>,
    /// QEMU's QMP socket (the hot-plug tests and the pod scenario; they skip or fail without it).
    pub qmp_socket: Option<PathBuf>,
    /// The guest can take a hot-added vCPU (see pod::pod_online_cpus).
    pub cpu_hotplug: bool,
    /// The machine takes a pc-dimm (ACPI memory hot-plug).
    pub dimm_hotplug: bool,
}

const ECHO_ID: &str = "e2e-echo";
const LONG_ID: &str = "e2e-long";
const BAD_ID: &str = "e2e-bad";
const EXEC_ID: &str = "e2e-exec-cat";
const SECCOMP_ID: &str = "e2e-seccomp";
const DEVICES_ID: &str = "e2e-devices";
const SANDBOX_ID: &str = "e2e-sandbox";
/// The pod uid in the cgroup paths of the suite's own containers.
const SUITE_POD_UID: &str = "e2e0-suite-uid";
const DISKS_ID: &str = "e2e-disks";

/// One test of the suite: its name (the function's), the tests that must
/// have passed before it, and the function.
pub struct Test {
    pub name: &'static str,
    pub needs: &'static [&'static str],
    run: TestFn,
}

type TestFn = for<'a> fn(&'a mut Ctx) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// `tests! { name needs [other, ...]; ... }`: the table, in run order; each
/// name is the test's function.
macro_rules! tests {
    ($($name:ident needs [$($need:ident),*];)*) => {
        /// Every test in run order, each with the tests it needs to have passed.
        pub const TESTS: &[Test] = &[$(Test {
            name: stringify!($name),
            needs: &[$(stringify!($need)),*],
            run: |ctx| Box::pin($name(ctx)),
        }),*];
    };
}

tests! {
    health_check needs [];
    get_guest_details needs [health_check];
    agent_options_from_cmdline needs [health_check];
    iptables_round_trip needs [health_check];
    create_sandbox needs [health_check];
    container_echo_hello needs [create_sandbox];
    start_long_running needs [create_sandbox];
    exec_stdin_round_trip needs [start_long_running];
    stats_container needs [start_long_running];
    signal_process needs [start_long_running];
    seccomp_denies_mkdir needs [create_sandbox];
    devices_deny_a_guest_disk needs [create_sandbox];
    hotplug_disks needs [create_sandbox];
    remove_container needs [create_sandbox];
    bad_spec_rejected needs [health_check];
    pod_pause_container needs [create_sandbox];
    pod_online_cpus needs [pod_pause_container];
    pod_hotplug_memory needs [pod_pause_container];
    pod_app_container needs [pod_online_cpus];
    pod_volumes needs [pod_app_container];
    pod_config_map_update needs [pod_app_container];
    pod_ps_shows_own_processes needs [pod_app_container];
    pod_loopback needs [pod_app_container];
    pod_exec_background_child_eof needs [pod_app_container];
    pod_teardown_leaves_no_mount needs [pod_app_container];
    destroy_sandbox needs [create_sandbox];
}

fn rpc_code(e: &ttrpc::Error) -> Option<ttrpc::Code> {
    match e {
        ttrpc::Error::RpcStatus(s) => Some(s.code()),
        _ => None,
    }
}

/// A test that finds nothing to do (e.g. no container was created) skips.
#[derive(Debug)]
struct SkipTest(String);

impl std::fmt::Display for SkipTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SkipTest {}

pub struct Ctx {
    pub(crate) cfg: SuiteConfig,
    agent: Option<AgentClient>,
    passed: HashSet<&'static str>,
    /// Containers created so far, for remove_container.
    created: Vec<&'static str>,
}

impl Ctx {
    pub(crate) fn agent(&self) -> Result<&AgentClient> {
        self.agent.as_ref().context("no connection to the agent")
    }

    pub(crate) fn ctx(&self) -> ttrpc::context::Context {
        ttrpc::context::with_timeout(self.cfg.rpc_timeout.as_nanos() as i64)
    }
}

/// The tests `--only` picks (all when empty): those whose names contain one
/// of the words, and every test they need, transitively, so
/// `--only hotplug_disks` runs health_check and create_sandbox first instead
/// of skipping (and passing) for want of them.
fn selected(only: &[String]) -> HashSet<&'static str> {
    let mut picked: HashSet<&'static str> = TESTS
        .iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| t.name.contains(o.as_str())))
        .map(|t| t.name)
        .collect();
    // TESTS is in run order and a test only needs earlier ones: one pass
    // from the end closes the set.
    for t in TESTS.iter().rev() {
        if picked.contains(t.name) {
            picked.extend(t.needs.iter().copied());
        }
    }
    picked
}

/// Run the suite; one outcome per test in [`TESTS`] order.
pub async fn run(cfg: SuiteConfig) -> Vec<Outcome> {
    let mut ctx = Ctx {
        cfg,
        agent: None,
        passed: HashSet::new(),
        created: Vec::new(),
    };
    let mut outcomes = Vec::new();
    let selected = selected(&ctx.cfg.only);
    for &Test { name, needs, run } in TESTS {
        if !selected.contains(name) {
            continue;
        }
        let missing: Vec<&str> = needs
            .iter()
            .copied()
            .filter(|n| !ctx.passed.contains(n))
            .collect();
        if !missing.is_empty() {
            outcomes.push(Outcome {
                name,
                verdict: Verdict::Skip(format!("needs {}", missing.join(", "))),
                took: Duration::ZERO,
            });
            continue;
        }
        let started = Instant::now();
        // Each test gets a few RPC deadlines; health_check also the boot time.
        let budget = ctx.cfg.rpc_timeout * 3
            + if name == "health_check" {
                ctx.cfg.boot_timeout
            } else {
                Duration::ZERO
            };
        let verdict = match tokio::time::timeout(budget, run(&mut ctx)).await {
            Ok(Ok(())) => {
                ctx.passed.insert(name);
                Verdict::Pass
            }
            Ok(Err(e)) => match e.downcast_ref::<SkipTest>() {
                // CI is provisioned for every test: there a skip is a
                // defect of the machine set-up, not a pass.
                Some(SkipTest(why)) if test_support::skip::strict() => Verdict::Fail(format!(
                    "skipped ({why}), a failure under {}=1",
                    test_support::skip::STRICT_ENV
                )),
                Some(SkipTest(why)) => Verdict::Skip(why.clone()),
                None => Verdict::Fail(format!("{e:#}")),
            },
            Err(_) => Verdict::Fail(format!("timed out after {budget:?}")),
        };
        outcomes.push(Outcome {
            name,
            verdict,
            took: started.elapsed(),
        });
    }
    outcomes
}

/// Connect (retrying while the guest boots) and ask Health.Check.
async fn health_check(ctx: &mut Ctx) -> Result<()> {
    let deadline = Instant::now() + ctx.cfg.boot_timeout;
    let agent =
        crate::client::connect_until(&ctx.cfg.socket, ctx.cfg.port, deadline, ctx.cfg.vm_pid)
            .await?;
    ctx.agent = Some(agent);
    check_serving(ctx).await
}

async fn check_serving(ctx: &Ctx) -> Result<()> {
    let resp = ctx
        .agent()?
        .health
        .check(ctx.ctx(), &CheckRequest::new())
        .await
        .rpc("Health.Check")?;
    ensure!(
        resp.status.enum_value() == Ok(ServingStatus::SERVING),
        "Health.Check answered {:?}, expected SERVING",
        resp.status
    );
    Ok(())
}

async fn get_guest_details(ctx: &mut Ctx) -> Result<()> {
    let mut req = GuestDetailsRequest::new();
    req.mem_block_size = true;
    let resp = ctx
        .agent()?
        .agent
        .get_guest_details(ctx.ctx(), &req)
        .await
        .rpc("GetGuestDetails")?;
    let details = resp
        .agent_details
        .as_ref()
        .context("GetGuestDetails: no agent_details")?;
    ensure!(
        !details.version.is_empty(),
        "GetGuestDetails: empty agent version"
    );
    // The guest kernels have seccomp filters on every arch.
    ensure!(
        details.supports_seccomp,
        "GetGuestDetails: supports_seccomp is false"
    );
    Ok(())
}

/// The kataShared storage as Kata's runtime describes it for each transport.
pub fn shared_storage(share: &str) -> Result<Storage> {
    let mut s = Storage::new();
    s.source = "kataShared".into();
    s.mount_point = fixture::GUEST_SHARED_DIR.into();
    match share {
        "9p" => {
            s.driver = "9p".into();
            s.fstype = "9p".into();
            s.options = vec![
                "trans=virtio,version=9p2000.L,cache=mmap".into(),
                "nodev".into(),
            ];
        }
        "virtio-fs" => {
            s.driver = "virtio-fs".into();
            s.fstype = "virtiofs".into();
        }
        other => bail!("unknown share kind {other:?}"),
    }
    Ok(s)
}

/// `agent.log=debug` on the kernel command line shows on the console.
async fn agent_options_from_cmdline(ctx: &mut Ctx) -> Result<()> {
    crate::serial::check_agent_debug_log(&ctx.cfg.serial_log)
}

/// A filter table with a chain and a rule only this test sets, for a
/// documentation source address (RFC 5737, RFC 3849).
fn iptables_rules(source: &str) -> String {
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :KATA-E2E - [0:0]\n-A INPUT -s {source} -j KATA-E2E\n-A KATA-E2E -j DROP\nCOMMIT\n"
    )
}

/// GetIPTables / SetIPTables through the image's iptables-save/-restore, as
/// Kata's agent runs them (src/agent/src/rpc.rs get_ip_tables,
/// set_ip_tables; Kata's rootfs has iptables, rootfs-builder/ubuntu/config.sh):
/// the rules set come back from the guest's kernel as a table, for IPv4 and
/// IPv6. Then the filter tables are emptied again.
async fn iptables_round_trip(ctx: &mut Ctx) -> Result<()> {
    let agent = &ctx.agent()?.agent;
    for (v6, source) in [(false, "192.0.2.7/32"), (true, "2001:db8::7/128")] {
        let family = if v6 { "IPv6" } else { "IPv4" };
        let mut set = SetIPTablesRequest::new();
        set.is_ipv6 = v6;
        set.data = iptables_rules(source).into_bytes();
        agent
            .set_ip_tables(ctx.ctx(), &set)
            .await
            .rpc(format!("SetIPTables ({family})"))?;
        let mut get = GetIPTablesRequest::new();
        get.is_ipv6 = v6;
        let got = agent
            .get_ip_tables(ctx.ctx(), &get)
            .await
            .rpc(format!("GetIPTables ({family})"))?;
        let text = String::from_utf8_lossy(&got.data);
        let rule = format!("-A INPUT -s {source} -j KATA-E2E");
        for want in ["*filter", ":KATA-E2E - [0:0]", rule.as_str(), "COMMIT"] {
            ensure!(
                text.contains(want),
                "GetIPTables ({family}) lacks {want:?}:\n{text}"
            );
        }
        set.data =
            b"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
                .to_vec();
        agent
            .set_ip_tables(ctx.ctx(), &set)
            .await
            .rpc(format!("SetIPTables ({family}, empty filter table)"))?;
    }
    Ok(())
}

async fn create_sandbox(ctx: &mut Ctx) -> Result<()> {
    let mut req = CreateSandboxRequest::new();
    req.hostname = "kata-e2e".into();
    req.sandbox_id = SANDBOX_ID.into();
    req.sandbox_pidns = false;
    // The shared directory, and the pod's shm (kata_agent.go setupStorages).
    req.storages = vec![
        shared_storage(&ctx.cfg.share)?,
        crate::pod::sandbox_shm_storage(),
    ];
    ctx.agent()?
        .agent
        .create_sandbox(ctx.ctx(), &req)
        .await
        .rpc("CreateSandbox")?;
    Ok(())
}

/// Put a busybox rootfs in the shared dir and create a container running `args`.
async fn create_container(ctx: &mut Ctx, id: &'static str, args: &[&str]) -> Result<()> {
    create_container_with(ctx, id, args, |_| {}).await
}

/// `create_container`, with `edit` applied to the spec.
async fn create_container_with(
    ctx: &mut Ctx,
    id: &'static str,
    args: &[&str],
    edit: impl FnOnce(&mut protocols::oci::Spec),
) -> Result<()> {
    let root = fixture::install_rootfs(&ctx.cfg.shared_dir, &ctx.cfg.busybox, id)?;
    let mut req = CreateContainerRequest::new();
    req.container_id = id.into();
    req.exec_id = id.into();
    let mut oci = spec::container(id, &root, args);
    spec::as_kata_sends(&mut oci, id, SUITE_POD_UID, SANDBOX_ID, PodRole::Container);
    edit(&mut oci);
    req.OCI = Some(oci).into();
    create_and_start(ctx, &req).await?;
    ctx.created.push(id);
    Ok(())
}

/// CreateContainer, then StartContainer.
pub(crate) async fn create_and_start(ctx: &Ctx, req: &CreateContainerRequest) -> Result<()> {
    let id = &req.container_id;
    ctx.agent()?
        .agent
        .create_container(ctx.ctx(), req)
        .await
        .rpc(format!("CreateContainer {id}"))?;
    let mut start = StartContainerRequest::new();
    start.container_id = id.clone();
    ctx.agent()?
        .agent
        .start_container(ctx.ctx(), &start)
        .await
        .rpc(format!("StartContainer {id}"))?;
    Ok(())
}

/// One ReadStdout of up to 4 KiB: the data, or the RPC's error (the outer
/// error: no connection).
pub(crate) async fn read_stdout_once(
    ctx: &Ctx,
    id: &str,
    exec_id: &str,
) -> Result<std::result::Result<Vec<u8>, ttrpc::Error>> {
    let mut req = ReadStreamRequest::new();
    req.container_id = id.into();
    req.exec_id = exec_id.into();
    req.len = 4096;
    Ok(ctx
        .agent()?
        .agent
        .read_stdout(ctx.ctx(), &req)
        .await
        .map(|r| r.data))
}

/// ReadStdout until `want` has arrived (or the stream ends).
pub(crate) async fn read_stdout_until(
    ctx: &Ctx,
    id: &str,
    exec_id: &str,
    want: &str,
) -> Result<String> {
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(want) {
        match read_stdout_once(ctx, id, exec_id).await? {
            Ok(data) if data.is_empty() => break,
            Ok(data) => got.extend_from_slice(&data),
            Err(e) if !got.is_empty() => {
                bail!(
                    "ReadStdout {id}/{exec_id} ended ({}) after {:?}, expected {want:?}",
                    describe(&e),
                    String::from_utf8_lossy(&got)
                )
            }
            Err(e) => bail!("ReadStdout {id}/{exec_id}: {}", describe(&e)),
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

pub(crate) async fn wait_process(ctx: &Ctx, id: &str, exec_id: &str) -> Result<i32> {
    let mut req = WaitProcessRequest::new();
    req.container_id = id.into();
    req.exec_id = exec_id.into();
    // WaitProcess blocks until exit: allow it the whole test budget.
    let long = ttrpc::context::with_timeout((ctx.cfg.rpc_timeout * 2).as_nanos() as i64);
    let resp = ctx
        .agent()?
        .agent
        .wait_process(long, &req)
        .await
        .rpc(format!("WaitProcess {id}/{exec_id}"))?;
    Ok(resp.status)
}

async fn container_echo_hello(ctx: &mut Ctx) -> Result<()> {
    create_container(ctx, ECHO_ID, &["/bin/echo", "hello"]).await?;
    let out = read_stdout_until(ctx, ECHO_ID, ECHO_ID, "hello\n").await?;
    ensure!(
        out == "hello\n",
        "stdout was {out:?}, expected \"hello\\n\""
    );
    let status = wait_process(ctx, ECHO_ID, ECHO_ID).await?;
    ensure!(status == 0, "echo exited with {status}, expected 0");
    Ok(())
}

async fn start_long_running(ctx: &mut Ctx) -> Result<()> {
    create_container(ctx, LONG_ID, &["/bin/sleep", "600"]).await
}

async fn exec_stdin_round_trip(ctx: &mut Ctx) -> Result<()> {
    let mut req = ExecProcessRequest::new();
    req.container_id = LONG_ID.into();
    req.exec_id = EXEC_ID.into();
    req.process = Some(spec::process(&["/bin/cat"])).into();
    ctx.agent()?
        .agent
        .exec_process(ctx.ctx(), &req)
        .await
        .rpc("ExecProcess cat")?;
    let mut write = WriteStreamRequest::new();
    write.container_id = LONG_ID.into();
    write.exec_id = EXEC_ID.into();
    write.data = b"ping over vsock\n".to_vec();
    let resp = ctx
        .agent()?
        .agent
        .write_stdin(ctx.ctx(), &write)
        .await
        .rpc("WriteStdin")?;
    ensure!(
        resp.len as usize == write.data.len(),
        "WriteStdin took {} of {} bytes",
        resp.len,
        write.data.len()
    );
    let out = read_stdout_until(ctx, LONG_ID, EXEC_ID, "ping over vsock\n").await?;
    ensure!(
        out == "ping over vsock\n",
        "cat echoed {out:?}, expected \"ping over vsock\\n\""
    );
    let mut close = CloseStdinRequest::new();
    close.container_id = LONG_ID.into();
    close.exec_id = EXEC_ID.into();
    ctx.agent()?
        .agent
        .close_stdin(ctx.ctx(), &close)
        .await
        .rpc("CloseStdin")?;
    let status = wait_process(ctx, LONG_ID, EXEC_ID).await?;
    ensure!(
        status == 0,
        "cat exited with {status} after stdin closed, expected 0"
    );
    Ok(())
}

async fn stats_container(ctx: &mut Ctx) -> Result<()> {
    let mut req = StatsContainerRequest::new();
    req.container_id = LONG_ID.into();
    let resp = ctx
        .agent()?
        .agent
        .stats_container(ctx.ctx(), &req)
        .await
        .rpc("StatsContainer")?;
    let cg = resp
        .cgroup_stats
        .as_ref()
        .context("StatsContainer: no cgroup_stats")?;
    let pids = cg.pids_stats.as_ref().map(|p| p.current).unwrap_or(0);
    let mem = cg
        .memory_stats
        .as_ref()
        .and_then(|m| m.usage.as_ref())
        .map(|u| u.usage)
        .unwrap_or(0);
    ensure!(
        pids >= 1 || mem > 0,
        "StatsContainer: no pids and no memory usage for a running container ({cg:?})"
    );
    Ok(())
}

async fn signal_process(ctx: &mut Ctx) -> Result<()> {
    let mut req = SignalProcessRequest::new();
    req.container_id = LONG_ID.into();
    req.exec_id = String::new(); // the container's init process
    req.signal = libc::SIGKILL as u32;
    ctx.agent()?
        .agent
        .signal_process(ctx.ctx(), &req)
        .await
        .rpc("SignalProcess SIGKILL")?;
    let status = wait_process(ctx, LONG_ID, "").await?;
    // Like runc and Kata: a process killed by signal N reports 128 + N.
    ensure!(
        status == 128 + libc::SIGKILL,
        "killed sleep reported {status}, expected {}",
        128 + libc::SIGKILL
    );
    Ok(())
}

/// RemoveContainer with Kata's 10 s timeout.
pub(crate) async fn remove_one(ctx: &Ctx, id: &str) -> Result<()> {
    let mut req = RemoveContainerRequest::new();
    req.container_id = id.into();
    req.timeout = 10;
    ctx.agent()?
        .agent
        .remove_container(ctx.ctx(), &req)
        .await
        .rpc(format!("RemoveContainer {id}"))?;
    Ok(())
}

/// A container whose seccomp profile denies mkdir gets EPERM for it, and
/// the rest of its syscalls through (issue 12 point 11).
async fn seccomp_denies_mkdir(ctx: &mut Ctx) -> Result<()> {
    let script = "mkdir /made-here 2>&1; echo rc=$?; echo done";
    let out = run_script(ctx, SECCOMP_ID, script, spec::deny_mkdir).await?;
    ensure!(
        out.contains("Operation not permitted") && out.contains("rc=1"),
        "mkdir under a profile denying it printed {out:?}, expected EPERM"
    );
    Ok(())
}

/// Run `script` (ending with `echo done`) in a new container whose spec
/// `edit` adjusts; its output up to "done", once the shell exited 0.
async fn run_script(
    ctx: &mut Ctx,
    id: &'static str,
    script: &str,
    edit: impl FnOnce(&mut protocols::oci::Spec),
) -> Result<String> {
    create_container_with(ctx, id, &["sh", "-c", script], edit).await?;
    let out = read_stdout_until(ctx, id, id, "done\n").await?;
    let status = wait_process(ctx, id, id).await?;
    ensure!(
        status == 0,
        "the shell exited with {status}, expected 0: {out:?}"
    );
    Ok(out)
}

/// A container as Kata's runtime sends it (Docker's default capabilities,
/// CAP_MKNOD among them; no device rule for disks) makes a node for a disk
/// of the guest and cannot read it: the device cgroup (v1 rules, or the
/// eBPF program on a cgroup v2 guest such as `--machine kata`) refuses,
/// while /dev/zero, a default allowed device, reads (issue 12 point 10).
/// Kata's default rules (src/agent/rustjail/src/cgroups/fs/mod.rs
/// DEFAULT_ALLOWED_DEVICES) allow mknod of any block device but no read or
/// write; so the mknod may pass, the read must not.
async fn devices_deny_a_guest_disk(ctx: &mut Ctx) -> Result<()> {
    let script = "d=$(ls /sys/class/block | head -n 1); \
                  [ -n \"$d\" ] || { echo no-disk; echo done; exit 0; }; \
                  mm=$(cat /sys/class/block/$d/dev); echo disk=$d:$mm; \
                  mknod /dev/e2e-disk b ${mm%:*} ${mm#*:} 2>&1; \
                  head -c 1 /dev/e2e-disk >/dev/null 2>&1; echo read=$?; \
                  head -c 1 /dev/zero >/dev/null; echo zero=$?; echo done";
    let out = run_script(ctx, DEVICES_ID, script, |_| {}).await?;
    ensure!(
        !out.contains("no-disk"),
        "the guest lists no block device in /sys/class/block: {out:?}"
    );
    ensure!(
        out.contains("read=1") && out.contains("zero=0"),
        "a guest disk was readable from a container, or /dev/zero was not: {out:?}"
    );
    Ok(())
}

/// Hot-plug a virtio-blk disk and a scsi-hd through QMP, then
/// CreateContainer with the first as a `blk` device (`blk-ccw` on s390x,
/// and on pseries a second scsi-hd as a `scsi` device; the host's numbers
/// 8:16 in the spec) and the second as a `scsi` volume
/// with an fsGroup, as Kata's runtime sends them on the machine's arch
/// (see `hotplug`). The container reads the disk through its node
/// (renumbered by the agent) and the volume's file, owned by the group.
async fn hotplug_disks(ctx: &mut Ctx) -> Result<()> {
    let Some(socket) = ctx.cfg.qmp_socket.clone() else {
        return Err(SkipTest("no --qmp-socket to hot-plug through".into()).into());
    };
    let mut qmp = agent_ctl::qmp::Qmp::connect(&socket, ctx.cfg.rpc_timeout)?;
    if !hotplug::machine_can_hotplug(&mut qmp)? {
        return Err(SkipTest("this machine has no virtio-scsi controller scsi0".into()).into());
    }
    let plugged = hotplug::plug_disks(&mut qmp)?;
    let root = fixture::install_rootfs(&ctx.cfg.shared_dir, &ctx.cfg.busybox, DISKS_ID)?;
    let script = format!(
        "grep -o -m1 {} /dev/e2e-blk; head -c 1082 /dev/e2e-blk | tail -c 2 | od -An -tx1; \
         cat /data/scsi.txt; echo; echo gid=$(stat -c %g /data); echo END",
        hotplug::BLK_MARKER
    );
    let mut oci = spec::container(DISKS_ID, &root, &["/bin/sh", "-c", &script]);
    let volume = hotplug::scsi_volume(&plugged, 1234);
    spec::add_mount(
        &mut oci,
        "/data",
        "bind",
        &volume.mount_point,
        &["rbind", "rw"],
    );
    let linux = oci.Linux.as_mut().context("the spec has no linux")?;
    let mut dev = protocols::oci::LinuxDevice::new();
    dev.Path = "/dev/e2e-blk".into();
    dev.Type = "b".into();
    dev.Major = 8;
    dev.Minor = 16;
    dev.FileMode = 0o660;
    linux.Devices.push(dev);
    let mut rule = protocols::oci::LinuxDeviceCgroup::new();
    rule.Allow = true;
    rule.Type = "b".into();
    rule.Major = 8;
    rule.Minor = 16;
    rule.Access = "rwm".into();
    linux.Resources.mut_or_insert_default().Devices.push(rule);
    let mut req = CreateContainerRequest::new();
    req.container_id = DISKS_ID.into();
    req.exec_id = DISKS_ID.into();
    req.OCI = Some(oci).into();
    req.devices = vec![hotplug::blk_device(&plugged, "/dev/e2e-blk")];
    req.storages = vec![volume];
    ctx.agent()?
        .agent
        .create_container(ctx.ctx(), &req)
        .await
        .rpc(format!(
            "CreateContainer {DISKS_ID} ({} {}, scsi {})",
            plugged.blk_driver, plugged.blk_id, plugged.scsi_addr
        ))?;
    ctx.created.push(DISKS_ID);
    let mut start = StartContainerRequest::new();
    start.container_id = DISKS_ID.into();
    ctx.agent()?
        .agent
        .start_container(ctx.ctx(), &start)
        .await
        .rpc(format!("StartContainer {DISKS_ID}"))?;
    let out = read_stdout_until(ctx, DISKS_ID, DISKS_ID, "END").await?;
    let status = wait_process(ctx, DISKS_ID, DISKS_ID).await?;
    ensure!(status == 0, "the disk reader exited with {status}: {out:?}");
    for (want, what) in [
        (
            hotplug::BLK_MARKER,
            "the virtio-blk disk's content through /dev/e2e-blk",
        ),
        // Bytes, not a word: s390x is big-endian.
        ("53 ef", "ext4's magic through /dev/e2e-blk"),
        (hotplug::SCSI_MARKER, "the file on the scsi volume"),
        ("gid=1234", "the volume's fsGroup"),
    ] {
        ensure!(out.contains(want), "{what}: {want:?} not in {out:?}");
    }
    Ok(())
}

async fn remove_container(ctx: &mut Ctx) -> Result<()> {
    ensure!(
        !ctx.created.is_empty(),
        "no container was created to remove"
    );
    for id in ctx.created.clone() {
        remove_one(ctx, id).await?;
    }
    // A removed container is gone: asking for its stats must fail.
    let mut req = StatsContainerRequest::new();
    req.container_id = ctx.created[0].into();
    if ctx
        .agent()?
        .agent
        .stats_container(ctx.ctx(), &req)
        .await
        .is_ok()
    {
        bail!(
            "StatsContainer still answers for removed {}",
            ctx.created[0]
        );
    }
    ctx.created.clear();
    Ok(())
}

async fn bad_spec_rejected(ctx: &mut Ctx) -> Result<()> {
    let mut req = CreateContainerRequest::new();
    req.container_id = BAD_ID.into();
    req.exec_id = BAD_ID.into();
    req.OCI = Some(spec::broken(BAD_ID)).into();
    match ctx.agent()?.agent.create_container(ctx.ctx(), &req).await {
        Ok(_) => bail!("CreateContainer accepted a spec with no process and no root"),
        // Not implemented is not a rejection of the spec.
        Err(e) if rpc_code(&e) == Some(ttrpc::Code::UNIMPLEMENTED) => {
            bail!("CreateContainer: {}", describe(&e))
        }
        Err(_) => {}
    }
    check_serving(ctx)
        .await
        .context("agent not serving after a bad spec")
}

async fn destroy_sandbox(ctx: &mut Ctx) -> Result<()> {
    ctx.agent()?
        .agent
        .destroy_sandbox(ctx.ctx(), &DestroySandboxRequest::new())
        .await
        .rpc("DestroySandbox")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prerequisites_come_first() {
        for (i, Test { name, needs, .. }) in TESTS.iter().enumerate() {
            for n in *needs {
                let pos = TESTS.iter().position(|t| t.name == *n);
                assert!(
                    matches!(pos, Some(p) if p < i),
                    "{name} needs {n}, which does not run before it"
                );
            }
        }
    }

    /// `--only create_sandbox,hotplug_disks` without health_check reported
    /// "0 passed, 2 skipped" and PASS, strict or not.
    #[test]
    fn only_brings_in_what_the_picked_tests_need() {
        let picked = selected(&["hotplug_disks".to_string()]);
        let want: HashSet<&str> = ["health_check", "create_sandbox", "hotplug_disks"].into();
        assert_eq!(picked, want);
        let pod = selected(&["pod_loopback".to_string()]);
        for n in [
            "pod_pause_container",
            "pod_online_cpus",
            "pod_app_container",
        ] {
            assert!(pod.contains(n), "{n} missing from {pod:?}");
        }
        assert_eq!(selected(&[]).len(), TESTS.len());
    }

    #[test]
    fn names_are_unique() {
        let names: HashSet<&str> = TESTS.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), TESTS.len());
    }

    #[test]
    fn storage_per_share_kind() {
        let s = shared_storage("9p").unwrap();
        assert_eq!((s.driver.as_str(), s.source.as_str()), ("9p", "kataShared"));
        assert_eq!(s.mount_point, "/run/kata-containers/shared/containers");
        assert_eq!(shared_storage("virtio-fs").unwrap().fstype, "virtiofs");
        assert!(shared_storage("nfs").is_err());
    }
}
