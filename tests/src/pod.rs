//! The pod scenario: a Kubernetes pod the way Kata's Go runtime hands it to
//! the agent, in the sandbox `create_sandbox` made. A pause container and
//! an application container; the app gets a configMap (watchable-bind,
//! updated while it runs), a memory emptyDir with an fsGroup, the
//! sandbox's /dev/shm, a CPU limit (after the vCPUs are onlined) and a
//! hot-added memory DIMM, and runs as a non-root user.
//!
//! What is sent, from src/runtime/virtcontainers/ in Kata:
//! - kata_agent.go createContainer: storages from
//!   container.go mountSharedDirMounts (the shared file, and for a
//!   configMap a `watchable-bind` storage whose mount point lies in
//!   `<shared>/watchable/`), handleShm (a bind of the sandbox's shm),
//!   handleEphemeralStorage (`ephemeral` tmpfs with `fsgid=`);
//!   constrainGRPCSpec and handlePidNamespace shape the spec
//!   (test_support::spec::as_kata_sends);
//! - kata_agent.go setupStorages: the sandbox's shm storage at CreateSandbox;
//! - fs_share_linux.go ShareFile / shareFileName: a shared file's name,
//!   `<container id>-<random hex>-<base of the destination>`;
//! - sandbox.go updateResources: ResizeVCPUs, then OnlineCPUMem with the
//!   vCPU *total* and cpu_only; updateMemory: ResizeMemory, then
//!   OnlineCPUMem(0, false);
//! - qemu.go hotplugAddCPUs / hotplugAddMemory: the QMP calls
//!   (agent_ctl::qmp).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use agent_ctl::qmp::Qmp;
use agent_ctl::RpcResultExt;
use anyhow::{bail, ensure, Context, Result};
use protocols::agent::{CreateContainerRequest, ExecProcessRequest, OnlineCPUMemRequest, Storage};
use protocols::oci;
use test_support::spec::{self, PodRole};

use crate::fixture::{self, GUEST_SHARED_DIR};
use crate::suite::{
    create_and_start, read_stdout_once, read_stdout_until, remove_one, wait_process, Ctx,
};

pub const PAUSE_ID: &str = "e2e-pod-pause";
pub const APP_ID: &str = "e2e-pod-app";
const POD_UID: &str = "e2e0-pod-uid";
/// The pod's securityContext: runAsUser/runAsGroup and fsGroup.
const APP_UID: u32 = 1000;
const APP_GID: u32 = 1000;
const FS_GROUP: u32 = 2000;
/// Where Kata puts the sandbox's shm and the ephemeral volumes
/// (kata_agent.go defaultKataGuestSandboxDir, shmDir, ephemeralPath).
const SANDBOX_SHM: &str = "/run/kata-containers/sandbox/shm";
const EPHEMERAL_DIR: &str = "/run/kata-containers/sandbox/ephemeral";
/// The shared configMap's name (shareFileName: id, 8 random bytes, dest base).
const CONFIG_NAME: &str = "e2e-pod-app-5eed5eed5eed5eed-config";
/// The emptyDir's name on the host (kubelet's volume directory name).
const EMPTYDIR_NAME: &str = "cache";
/// The memory a DIMM hot-adds.
const DIMM_MIB: u64 = 128;

/// The sandbox's shm storage (kata_agent.go setupStorages, 64 MiB as
/// the kubelet's default pod shm).
pub fn sandbox_shm_storage() -> Storage {
    let mut s = Storage::new();
    s.driver = "ephemeral".into();
    s.source = "shm".into();
    s.fstype = "tmpfs".into();
    s.mount_point = SANDBOX_SHM.into();
    s.options = ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"]
        .map(String::from)
        .to_vec();
    s
}

/// A pod container's spec with /dev/shm bound to the sandbox's (handleShm).
fn pod_spec(id: &str, root: &str, args: &[&str], role: PodRole) -> oci::Spec {
    let mut s = spec::container(id, root, args);
    s.Mounts.retain(|m| m.destination != "/dev/shm");
    spec::add_mount(&mut s, "/dev/shm", "bind", SANDBOX_SHM, &["rbind"]);
    spec::as_kata_sends(&mut s, id, POD_UID, PAUSE_ID, role);
    s
}

/// The pause container: the sandbox's first container, its id the sandbox's
/// in Kubernetes; busybox sleeps in place of /pause. It also sees the
/// guest's /proc at /guest-proc, the probe `pod_teardown_leaves_no_mount`
/// reads the agent's mount table through (not something Kata sends).
pub async fn pod_pause_container(ctx: &mut Ctx) -> Result<()> {
    let root = fixture::install_rootfs(&ctx.cfg.shared_dir, &ctx.cfg.busybox, PAUSE_ID)?;
    let mut s = pod_spec(PAUSE_ID, &root, &["/bin/sleep", "3600"], PodRole::Sandbox);
    spec::add_mount(&mut s, "/guest-proc", "bind", "/proc", &["rbind", "ro"]);
    let mut req = CreateContainerRequest::new();
    req.container_id = PAUSE_ID.into();
    req.exec_id = PAUSE_ID.into();
    req.OCI = Some(s).into();
    create_and_start(ctx, &req).await
}

/// Run `args` in container `id` (as `user`, root when None), return its
/// stdout (read until EOF) and exit status.
pub async fn exec_output(
    ctx: &Ctx,
    id: &str,
    exec_id: &str,
    args: &[&str],
    user: Option<(u32, u32, &[u32])>,
) -> Result<(String, i32)> {
    let mut p = spec::process(args);
    if let Some((uid, gid, extra)) = user {
        let mut u = oci::User::new();
        u.UID = uid;
        u.GID = gid;
        u.AdditionalGids = extra.to_vec();
        p.User = Some(u).into();
    }
    let mut req = ExecProcessRequest::new();
    req.container_id = id.into();
    req.exec_id = exec_id.into();
    req.process = Some(p).into();
    ctx.agent()?
        .agent
        .exec_process(ctx.ctx(), &req)
        .await
        .rpc(format!("ExecProcess {id}/{exec_id} {args:?}"))?;
    let out = read_to_eof(ctx, id, exec_id).await?;
    let status = wait_process(ctx, id, exec_id).await?;
    Ok((out, status))
}

/// ReadStdout until the stream ends (empty answer or an error after the
/// process exited), within the RPC budget.
pub async fn read_to_eof(ctx: &Ctx, id: &str, exec_id: &str) -> Result<String> {
    let mut got = Vec::new();
    let deadline = Instant::now() + ctx.cfg.rpc_timeout * 2;
    loop {
        ensure!(
            Instant::now() < deadline,
            "ReadStdout {id}/{exec_id}: no EOF after {:?} (got {:?})",
            ctx.cfg.rpc_timeout * 2,
            String::from_utf8_lossy(&got)
        );
        match read_stdout_once(ctx, id, exec_id).await? {
            Ok(data) if data.is_empty() => break,
            Ok(data) => got.extend_from_slice(&data),
            // The agent ends the stream with an error once the process is gone.
            Err(_) => break,
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// `0`, `0-3`, `0,2-3` (sysfs cpu lists) -> how many CPUs.
pub fn cpu_list_len(list: &str) -> Result<u32> {
    let mut n = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse()?, b.parse()?);
                ensure!(b >= a, "bad CPU range {part:?}");
                b - a + 1
            }
            None => {
                part.parse::<u32>()
                    .with_context(|| format!("bad CPU {part:?}"))?;
                1
            }
        };
    }
    Ok(n)
}

/// MemTotal of /proc/meminfo, in KiB.
pub fn mem_total_kib(meminfo: &str) -> Result<u64> {
    let line = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .context("no MemTotal in /proc/meminfo")?;
    line.split_whitespace()
        .nth(1)
        .context("MemTotal without a value")?
        .parse()
        .with_context(|| format!("MemTotal: {line:?}"))
}

/// A guest file as the pause container reads it (`cat`), e.g. sysfs.
async fn guest_file(ctx: &Ctx, exec_id: &str, path: &str) -> Result<String> {
    let (out, status) = exec_output(ctx, PAUSE_ID, exec_id, &["/bin/cat", path], None).await?;
    ensure!(
        status == 0,
        "cat {path} in the pause container exited {status}"
    );
    Ok(out)
}

async fn online_cpus(ctx: &Ctx, tag: &str) -> Result<u32> {
    cpu_list_len(
        &guest_file(
            ctx,
            &format!("cpus-{tag}"),
            "/sys/devices/system/cpu/online",
        )
        .await?,
    )
}

async fn mem_total(ctx: &Ctx, tag: &str) -> Result<u64> {
    mem_total_kib(&guest_file(ctx, &format!("mem-{tag}"), "/proc/meminfo").await?)
}

fn qmp(ctx: &Ctx) -> Result<Qmp> {
    let path = ctx
        .cfg
        .qmp_socket
        .as_deref()
        .context("no --qmp-socket: cannot hot-plug")?;
    Qmp::connect(path, ctx.cfg.rpc_timeout)
}

/// Before the app's CPU limit: Kata's updateResources. Hot-add a vCPU
/// where the guest can take one (`--cpu-hotplug`: on x86_64 q35 under
/// TCG the kernel sees no hot-pluggable slot, aarch64 virt has none in
/// QEMU 10; the onlining logic has host tests in agent/src/guest/hotplug.rs),
/// then OnlineCPUMem with the total, and check that many are online.
pub async fn pod_online_cpus(ctx: &mut Ctx) -> Result<()> {
    let before = online_cpus(ctx, "before").await?;
    let mut total = before;
    if ctx.cfg.cpu_hotplug {
        let mut q = qmp(ctx)?;
        let args = q
            .free_cpu_slot("cpu-0")?
            .context("query-hotpluggable-cpus lists no free vCPU slot")?;
        q.execute("device_add", args)?;
        total += 1;
    }
    let mut req = OnlineCPUMemRequest::new();
    req.wait = false;
    req.nb_cpus = total;
    req.cpu_only = true;
    ctx.agent()?
        .agent
        .online_cpu_mem(ctx.ctx(), &req)
        .await
        .rpc(format!("OnlineCPUMem nb_cpus={total}"))?;
    let after = online_cpus(ctx, "after").await?;
    ensure!(
        after == total,
        "{after} CPUs online after OnlineCPUMem(nb_cpus={total}), {before} before"
    );
    Ok(())
}

/// Kata's updateMemory: a pc-dimm through QMP (`--dimm-hotplug`: machines
/// with ACPI memory hot-plug, q35), then OnlineCPUMem(0, false); MemTotal
/// must grow by about the DIMM (less the kernel's memmap).
pub async fn pod_hotplug_memory(ctx: &mut Ctx) -> Result<()> {
    if !ctx.cfg.dimm_hotplug {
        // Said, not skipped: the rest of the pod does not depend on it.
        println!(
            "pod_hotplug_memory: this machine takes no pc-dimm (no ACPI memory hot-plug); \
             only OnlineCPUMem(0, false) runs"
        );
    }
    let before = mem_total(ctx, "before").await?;
    if ctx.cfg.dimm_hotplug {
        qmp(ctx)?.hotplug_dimm(DIMM_MIB)?;
    }
    let mut req = OnlineCPUMemRequest::new();
    req.cpu_only = false;
    ctx.agent()?
        .agent
        .online_cpu_mem(ctx.ctx(), &req)
        .await
        .rpc("OnlineCPUMem nb_cpus=0 cpu_only=false")?;
    if !ctx.cfg.dimm_hotplug {
        return Ok(());
    }
    // The guest adds the DIMM on the ACPI event: poll a little.
    let deadline = Instant::now() + ctx.cfg.rpc_timeout;
    loop {
        let now = mem_total(ctx, &format!("after-{}", deadline.elapsed().as_millis())).await?;
        let grown = now.saturating_sub(before);
        if grown >= DIMM_MIB * 1024 * 9 / 10 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "MemTotal grew by {grown} KiB after a {DIMM_MIB} MiB DIMM and OnlineCPUMem \
                 ({before} KiB before, {now} KiB after)"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// kubelet's AtomicWriter layout of a configMap: `..<ts>/<key>`, `..data`
/// pointing at it, `<key>` -> `..data/<key>`. Writing a new version swaps
/// `..data` by rename, as the kubelet does.
fn write_config_map(dir: &Path, version: u32, greeting: &str) -> Result<()> {
    let ts = format!("..2026_12_01_00_00_0{version}.000000001");
    fs::create_dir_all(dir.join(&ts))?;
    fs::write(dir.join(&ts).join("greeting"), greeting)?;
    let tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp);
    symlink(&ts, &tmp)?;
    fs::rename(&tmp, dir.join("..data"))?;
    if !dir.join("greeting").exists() {
        symlink("..data/greeting", dir.join("greeting"))?;
    }
    Ok(())
}

/// The app container: the configMap, the emptyDir, the CPU limit, the
/// non-root user; it writes to /dev/stdout by path, then sleeps.
pub async fn pod_app_container(ctx: &mut Ctx) -> Result<()> {
    let root = fixture::install_rootfs(&ctx.cfg.shared_dir, &ctx.cfg.busybox, APP_ID)?;
    let config = ctx.cfg.shared_dir.join(CONFIG_NAME);
    write_config_map(&config, 1, "hello-1")
        .with_context(|| format!("writing the configMap in {}", config.display()))?;
    let shared_config = format!("{GUEST_SHARED_DIR}/{CONFIG_NAME}");
    let watchable = format!("{GUEST_SHARED_DIR}/watchable/{CONFIG_NAME}");
    let ephemeral = format!("{EPHEMERAL_DIR}/{EMPTYDIR_NAME}");

    let mut s = pod_spec(
        APP_ID,
        &root,
        &[
            "/bin/sh",
            "-c",
            "echo app-up > /dev/stdout && exec sleep 3600",
        ],
        PodRole::Container,
    );
    if let Some(p) = s.Process.as_mut() {
        let mut u = oci::User::new();
        u.UID = APP_UID;
        u.GID = APP_GID;
        u.AdditionalGids = vec![FS_GROUP];
        p.User = Some(u).into();
    }
    // containerd's options for a read-only and a writable volume.
    spec::add_mount(
        &mut s,
        "/etc/config",
        "bind",
        &watchable,
        &["rbind", "rprivate", "ro"],
    );
    spec::add_mount(
        &mut s,
        "/cache",
        "bind",
        &ephemeral,
        &["rbind", "rprivate", "rw"],
    );
    if let Some(linux) = s.Linux.as_mut() {
        // resources.limits.cpu 500m: quota 50000 of period 100000, as the
        // kubelet writes it; constrainGRPCSpec empties cpus and mems.
        let mut cpu = oci::LinuxCPU::new();
        cpu.Shares = 512;
        cpu.Quota = 50_000;
        cpu.Period = 100_000;
        let mut res = oci::LinuxResources::new();
        res.CPU = Some(cpu).into();
        linux.Resources = Some(res).into();
    }

    let mut watch = Storage::new();
    watch.driver = "watchable-bind".into();
    watch.source = shared_config;
    watch.fstype = "bind".into();
    watch.mount_point = watchable;
    watch.options = ["rbind", "rprivate", "ro"].map(String::from).to_vec();
    let mut eph = Storage::new();
    eph.driver = "ephemeral".into();
    eph.source = "tmpfs".into();
    eph.fstype = "tmpfs".into();
    eph.mount_point = ephemeral;
    eph.options = vec![format!("fsgid={FS_GROUP}")];

    let mut req = CreateContainerRequest::new();
    req.container_id = APP_ID.into();
    req.exec_id = APP_ID.into();
    req.storages = vec![watch, eph];
    req.OCI = Some(s).into();
    create_and_start(ctx, &req).await?;
    let out = read_stdout_until(ctx, APP_ID, APP_ID, "app-up\n").await?;
    ensure!(out == "app-up\n", "the app wrote {out:?} to /dev/stdout");
    Ok(())
}

/// The app's identity, its emptyDir (group-writable by the fsGroup) and
/// the pod's /dev/shm (the pause container sees what the app wrote).
pub async fn pod_volumes(ctx: &mut Ctx) -> Result<()> {
    let user: Option<(u32, u32, &[u32])> = Some((APP_UID, APP_GID, &[FS_GROUP]));
    let script = "id -u; busybox stat -c %g /cache; echo data > /cache/f && cat /cache/f; \
                  echo shm-note > /dev/shm/note && echo shm-ok";
    let (out, status) = exec_output(
        ctx,
        APP_ID,
        "volumes",
        &["/bin/busybox", "sh", "-c", script],
        user,
    )
    .await?;
    let want = format!("{APP_UID}\n{FS_GROUP}\ndata\nshm-ok\n");
    ensure!(
        status == 0 && out == want,
        "in the app (uid {APP_UID}, fsGroup {FS_GROUP}): exit {status}, output {out:?}, expected {want:?}"
    );
    let (shm, status) =
        exec_output(ctx, PAUSE_ID, "shm", &["/bin/cat", "/dev/shm/note"], None).await?;
    ensure!(
        status == 0 && shm == "shm-note\n",
        "the pause container reads {shm:?} (exit {status}) from the pod's /dev/shm"
    );
    Ok(())
}

/// Update the configMap on the host the kubelet's way; the app must see the
/// new value (the agent polls watchable-bind sources every 2 s).
pub async fn pod_config_map_update(ctx: &mut Ctx) -> Result<()> {
    let (first, _) = exec_output(
        ctx,
        APP_ID,
        "cm-0",
        &["/bin/cat", "/etc/config/greeting"],
        None,
    )
    .await?;
    ensure!(
        first == "hello-1",
        "the configMap reads {first:?}, expected \"hello-1\""
    );
    write_config_map(&ctx.cfg.shared_dir.join(CONFIG_NAME), 2, "hello-2")?;
    let deadline = Instant::now() + ctx.cfg.rpc_timeout;
    for n in 1.. {
        let (now, _) = exec_output(
            ctx,
            APP_ID,
            &format!("cm-{n}"),
            &["/bin/cat", "/etc/config/greeting"],
            None,
        )
        .await?;
        if now == "hello-2" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the app still reads {now:?} from its configMap after the update");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    unreachable!("the loop returns or fails")
}

/// `ps` in the app lists only the app's processes (its own PID namespace,
/// which the agent adds since the spec has no `pid` entry).
pub async fn pod_ps_shows_own_processes(ctx: &mut Ctx) -> Result<()> {
    let (out, status) = exec_output(ctx, APP_ID, "ps", &["/bin/ps"], None).await?;
    ensure!(status == 0, "ps exited {status}: {out:?}");
    let procs = ps_processes(&out)?;
    let mut comms: Vec<&str> = procs.iter().map(|(_, c)| c.as_str()).collect();
    comms.sort();
    ensure!(
        comms == ["ps", "sleep"] && procs.iter().any(|(p, c)| p == "1" && c == "sleep"),
        "ps in the app lists {procs:?}, expected its sleep as PID 1 and ps itself"
    );
    Ok(())
}

/// (PID, command name) of each row of busybox `ps` (its header says where
/// COMMAND starts: `PID USER TIME COMMAND` or `PID USER COMMAND`).
fn ps_processes(out: &str) -> Result<Vec<(String, String)>> {
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let col = header
        .iter()
        .position(|h| *h == "COMMAND")
        .with_context(|| format!("ps printed no COMMAND column: {out:?}"))?;
    Ok(lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let comm = f.get(col)?.rsplit('/').next()?;
            Some((f.first()?.to_string(), comm.to_string()))
        })
        .collect())
}

/// The pod's loopback is up: 127.0.0.1 answers a ping from the app.
pub async fn pod_loopback(ctx: &mut Ctx) -> Result<()> {
    let (out, status) = exec_output(
        ctx,
        APP_ID,
        "ping",
        &["/bin/busybox", "ping", "-c", "1", "-W", "5", "127.0.0.1"],
        None,
    )
    .await?;
    ensure!(
        status == 0 && out.contains("1 packets received"),
        "ping 127.0.0.1 in the app: exit {status}, {out:?}"
    );
    Ok(())
}

/// An exec whose shell leaves a background child holding stdout: the
/// stream must still end once the shell exits (Kata's agent ends it with
/// the process, not with the last writer).
pub async fn pod_exec_background_child_eof(ctx: &mut Ctx) -> Result<()> {
    let (out, status) = exec_output(
        ctx,
        APP_ID,
        "bg",
        &["/bin/sh", "-c", "sleep 600 & echo bg-started"],
        None,
    )
    .await?;
    ensure!(
        status == 0 && out == "bg-started\n",
        "exec with a background child: exit {status}, output {out:?}"
    );
    Ok(())
}

/// Remove the app, then read the agent's mount table (through the pause
/// container's view of the guest's /proc): nothing of the app may remain
/// (its rootfs, its bind mounts, a bound watchable source).
pub async fn pod_teardown_leaves_no_mount(ctx: &mut Ctx) -> Result<()> {
    remove_one(ctx, APP_ID).await?;
    // The guest's PID 1 (the agent, or the init that started it) lives in
    // the mount namespace the agent mounts storages in.
    let (mounts, status) = exec_output(
        ctx,
        PAUSE_ID,
        "mounts",
        &["/bin/cat", "/guest-proc/1/mountinfo"],
        None,
    )
    .await?;
    ensure!(status == 0, "reading the agent's mountinfo: exit {status}");
    // The emptyDir stays: an ephemeral storage is the sandbox's until
    // DestroySandbox, as in Kata's agent (its ephemeral handler returns no
    // cleanup: src/agent/src/storage/ephemeral_handler.rs).
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(APP_ID)).collect();
    ensure!(
        left.is_empty(),
        "after RemoveContainer {APP_ID} the agent still has: {left:#?}"
    );
    remove_one(ctx, PAUSE_ID).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list_len("0\n").unwrap(), 1);
        assert_eq!(cpu_list_len("0-3").unwrap(), 4);
        assert_eq!(cpu_list_len("0,2-3\n").unwrap(), 3);
        assert!(cpu_list_len("3-1").is_err());
        assert!(cpu_list_len("x").is_err());
    }

    #[test]
    fn ps_rows_with_and_without_a_time_column() {
        let two = "PID   USER     COMMAND\n    1 1000     sleep 3600\n    7 root     ps\n";
        assert_eq!(
            ps_processes(two).unwrap(),
            [("1".into(), "sleep".into()), ("7".into(), "ps".into())]
        );
        let with_time = "PID USER TIME COMMAND\n 1 1000 0:00 /bin/sleep 3600\n";
        assert_eq!(
            ps_processes(with_time).unwrap(),
            [("1".to_string(), "sleep".to_string())]
        );
        assert!(ps_processes("garbage").is_err());
    }

    #[test]
    fn mem_total_from_meminfo() {
        let m = "MemTotal:         492180 kB\nMemFree:  1 kB\n";
        assert_eq!(mem_total_kib(m).unwrap(), 492_180);
        assert!(mem_total_kib("MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn config_map_versions_swap_data() {
        let t = std::env::temp_dir().join(format!("e2e-cm-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        write_config_map(&t, 1, "a").unwrap();
        assert_eq!(fs::read_to_string(t.join("greeting")).unwrap(), "a");
        write_config_map(&t, 2, "b").unwrap();
        assert_eq!(fs::read_to_string(t.join("greeting")).unwrap(), "b");
        fs::remove_dir_all(&t).unwrap();
    }
}
