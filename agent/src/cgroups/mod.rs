//! Container cgroups (v1 and v2) through cgroups-rs: create, limit, account,
//! freeze, remove.
//!
//! CONTRACT (used by `container` and `rpc::resources`; keep the signatures):
//! a `Manager` per container, created before the container's init runs.
//!
//! cgroups-rs's `FsManager` applies OCI resources and collects statistics;
//! this module adds what the agent needs around it: a safe cgroup path,
//! trimming resources to the controllers the guest has, waiting for freeze
//! and removal to finish, cleanup on failure, and OOM notifications.

pub mod devices;
mod fs_error;
pub mod memory;
pub mod mounts;
pub mod oom;
pub mod path;
pub mod resources;
pub mod stats;

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cgroups_rs::fs::devices::DevicesController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hierarchies::{self, is_cgroup2_unified_mode};
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{Cgroup, Controller};
use cgroups_rs::manager::{FsManager, Manager as _};
use cgroups_rs::FreezerState;
use fs_error::FsError;
use oci_spec::runtime::LinuxResources;
use protocols::agent::CgroupStats;

/// How long destroy waits for exiting processes to leave the cgroup, and
/// freeze/thaw for the kernel to finish: bounded, polled every `POLL`.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(10);

/// The cgroup of one container.
pub struct Manager {
    pub container_id: String,
    /// Below each hierarchy's root, no leading slash.
    path: String,
    v2: bool,
    fs: Mutex<FsManager>,
    cgroup: Cgroup,
    controllers: HashSet<String>,
    /// Resource settings that could not be applied here, with the reason.
    skipped: Mutex<Vec<String>>,
    devices: Mutex<DeviceState>,
    _oom: Option<oom::OomWatch>,
}

/// The device rules in force, and on v2 the program enforcing them (kept
/// to be detached when an update replaces it).
#[derive(Default)]
struct DeviceState {
    rules: Vec<devices::Rule>,
    program: Option<Arc<OwnedFd>>,
}

impl Manager {
    /// Create (or adopt) the cgroup at `cgroups_path` (the spec's
    /// linux.cgroupsPath; a default derived from the id when empty) and apply
    /// `resources`. `unified`: cgroup v2 (agent config
    /// systemd.unified_cgroup_hierarchy, or detected).
    pub fn new(
        container_id: &str,
        cgroups_path: &str,
        resources: Option<&LinuxResources>,
        unified: bool,
    ) -> crate::error::Result<Manager> {
        let path = path::relative_path(container_id, cgroups_path)?;
        let v2 = select_hierarchy(unified)?;
        let cgroup = Cgroup::load(hierarchies::auto(), &path);
        let existed = cgroup.exists();
        cgroup
            .create()
            .with_context(|| format!("creating cgroup {path} for container {container_id}"))?;
        let fs = FsManager::new(&path)
            .map_err(FsError::from)
            .with_context(|| format!("opening cgroup {path} for container {container_id}"))?;
        let controllers = usable_controllers(&cgroup, &path, v2);
        let mut manager = Manager {
            container_id: container_id.to_string(),
            path,
            v2,
            fs: Mutex::new(fs),
            cgroup,
            controllers,
            skipped: Mutex::new(Vec::new()),
            devices: Mutex::new(DeviceState::default()),
            _oom: None,
        };
        match manager.set_up(resources) {
            Ok(()) => Ok(manager),
            Err(e) => {
                // Leave nothing behind that this call created.
                if !existed {
                    if let Err(d) = manager.destroy() {
                        return Err(e.context(format!("and removing the cgroup failed: {d:#}")));
                    }
                }
                Err(e)
            }
        }
    }

    fn set_up(&mut self, resources: Option<&LinuxResources>) -> crate::error::Result<()> {
        // Every container gets the default device list, with or without
        // spec rules (Kata's runtime sends none: kata_agent.go constrainGRPCSpec).
        let spec_devices = resources.and_then(|r| r.devices().as_deref());
        self.apply_devices(spec_devices.unwrap_or_default(), true)?;
        if let Some(r) = resources {
            self.update_limits(r)?;
        }
        if let Some(dir) = self.memory_dir() {
            let watch = oom::watch(&self.container_id, &dir, self.v2)
                .with_context(|| format!("watching cgroup {} for OOM", self.path))?;
            self._oom = Some(watch);
        }
        Ok(())
    }

    /// Move `pid` into the cgroup.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        let pid = u64::try_from(pid).map_err(|_| anyhow!("bad pid {pid}"))?;
        self.cgroup
            .add_task_by_tgid(pid.into())
            .with_context(|| format!("moving pid {pid} into cgroup {}", self.path))
    }

    /// Apply new limits (UpdateContainer). Values the kernel refuses are
    /// `Error::InvalidArgument`; settings for controllers this guest
    /// lacks are skipped and listed by `skipped_settings`. Device rules are
    /// added to those in force (`devices`).
    pub fn update(&self, resources: &LinuxResources) -> crate::error::Result<()> {
        if let Some(rules) = resources.devices() {
            self.apply_devices(rules, false)?;
        }
        self.update_limits(resources)
    }

    /// The spec's device rules after the defaults (`fresh`) or after the
    /// rules in force, enforced by the devices controller (v1) or a BPF
    /// program (v2).
    fn apply_devices(
        &self,
        spec: &[oci_spec::runtime::LinuxDeviceCgroup],
        fresh: bool,
    ) -> crate::error::Result<()> {
        let spec = spec
            .iter()
            .map(devices::Rule::from_spec)
            .collect::<crate::error::Result<Vec<_>>>()?;
        let mut state = lock(&self.devices)?;
        let mut rules = if fresh {
            devices::defaults()
        } else {
            state.rules.clone()
        };
        let restarted = devices::append(&mut rules, &spec) || fresh;
        crate::limits::check(
            "device rules in force",
            rules.len() as u64,
            crate::limits::MAX_DEVICE_RULES,
        )
        .map_err(crate::error::Error::invalid)?;
        let what = || format!("setting the device rules of cgroup {}", self.path);
        if self.v2 {
            let program = devices::apply_v2(&self.v2_dir(), &rules, state.program.as_ref())
                .with_context(what)?;
            state.program = Some(program);
        } else if let Some(dc) = self
            .cgroup
            .controller_of::<DevicesController>()
            .filter(|_| self.controllers.contains("devices"))
        {
            // v1 keeps what was written: only the new rules, unless the
            // list started over from "deny all".
            let new = if restarted {
                &rules[..]
            } else {
                &rules[state.rules.len()..]
            };
            devices::apply_v1(dc, new).map_err(|e| classify_set_error(e, what()))?;
        } else {
            lock(&self.skipped)?
                .push("device rules not applied: no devices controller".to_string());
        }
        state.rules = rules;
        Ok(())
    }

    fn update_limits(&self, resources: &LinuxResources) -> crate::error::Result<()> {
        let (mut trimmed, skipped) =
            resources::trim_to_controllers(resources, &self.controllers, self.v2);
        lock(&self.skipped)?.extend(skipped);
        if let (Some(m), Some(dir)) = (*trimmed.memory(), self.memory_dir()) {
            if !memory::has_swap_accounting(&dir, self.v2) {
                let note = memory::apply_without_swap(&dir, &m, self.v2).map_err(|e| {
                    classify_set_error(e, format!("setting memory limits of cgroup {}", self.path))
                })?;
                lock(&self.skipped)?.extend(note);
                trimmed.set_memory(None);
            }
        }
        lock(&self.fs)?.set(&trimmed).map_err(|e| {
            classify_set_error(
                anyhow::Error::new(FsError::from(e)),
                format!("setting resources of cgroup {}", self.path),
            )
        })
    }

    /// Usage counters (StatsContainer).
    pub fn stats(&self) -> Result<CgroupStats> {
        let raw = lock(&self.fs)?.stats();
        let memory_stat = self
            .memory_dir()
            .map(|d| stats::read_flat_keyed(&d, "memory.stat"))
            .unwrap_or_default();
        let mut out = stats::to_grpc(&raw, memory_stat);
        if self.v2 {
            let text = std::fs::read_to_string(self.v2_dir().join("cpu.stat"))
                .with_context(|| format!("reading cpu.stat of cgroup {}", self.path))?;
            out.cpu_stats = Some(stats::cpu_from_v2_stat_file(&text)).into();
        } else if let Some(dir) = self.dir_of("cpuacct") {
            // cgroups-rs splits this one-line file by lines, losing it.
            let percpu =
                std::fs::read_to_string(dir.join("cpuacct.usage_percpu")).unwrap_or_default();
            if let Some(usage) = out.cpu_stats.as_mut().and_then(|c| c.cpu_usage.as_mut()) {
                usage.percpu_usage = percpu
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect();
            }
        }
        Ok(out)
    }

    pub fn freeze(&self) -> Result<()> {
        self.set_freezer(FreezerState::Frozen)
    }

    pub fn thaw(&self) -> Result<()> {
        self.set_freezer(FreezerState::Thawed)
    }

    /// After SIGKILL to every process: a frozen process (cgroup v1) dies
    /// only once thawed, so a paused container is resumed, as Kata's agent
    /// does after signalling all (src/agent/src/rpc.rs do_signal_process).
    pub fn thaw_if_frozen(&self) -> Result<()> {
        if !self.v2 && !self.controllers.contains("freezer") {
            return Ok(()); // nothing can have frozen it
        }
        if self.is_frozen()? {
            self.thaw()?;
        }
        Ok(())
    }

    /// Every pid in the cgroup (to signal all processes of a container).
    pub fn pids(&self) -> Result<Vec<i32>> {
        if !self.cgroup.exists() {
            bail!("cgroup {} does not exist", self.path);
        }
        Ok(self
            .cgroup
            .procs()
            .into_iter()
            .filter_map(|p| i32::try_from(p.pid).ok())
            .collect())
    }

    /// Remove the cgroup (its processes must be gone). Idempotent. Exiting
    /// processes may keep it busy for a moment, so this waits a bounded time.
    pub fn destroy(&self) -> Result<()> {
        if !self.cgroup.exists() {
            return Ok(());
        }
        let mut waited = Duration::ZERO;
        while !self.cgroup.procs().is_empty() && waited < SETTLE_TIMEOUT {
            std::thread::sleep(POLL);
            waited += POLL;
        }
        let left = self.cgroup.procs();
        if !left.is_empty() {
            let pids: Vec<u64> = left.iter().map(|p| p.pid).collect();
            bail!(
                "cgroup {} still has processes {pids:?}; not removed",
                self.path
            );
        }
        // cgroups-rs retries EBUSY on v1 itself; once more here covers v2.
        let mut result = self.cgroup.delete();
        while result.is_err() && self.cgroup.exists() && waited < SETTLE_TIMEOUT * 2 {
            std::thread::sleep(POLL);
            waited += POLL;
            result = self.cgroup.delete();
        }
        if self.cgroup.exists() {
            result.with_context(|| format!("removing cgroup {}", self.path))?;
            bail!("cgroup {} is still there after removal", self.path);
        }
        Ok(())
    }

    /// Cgroup v2 (else v1).
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// The cgroup path below the hierarchy roots.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Controllers this cgroup has (cgroups-rs names: "cpu", "memory", ...).
    pub fn controllers(&self) -> &HashSet<String> {
        &self.controllers
    }

    /// Settings skipped so far (no controller for them), oldest first; the
    /// list is emptied so each is reported once.
    pub fn skipped_settings(&self) -> Vec<String> {
        lock(&self.skipped)
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    /// The memory controller's directory of this cgroup, if it has one.
    pub fn memory_dir(&self) -> Option<PathBuf> {
        if !self.controllers.contains("memory") {
            return None;
        }
        let mem: &MemController = self.cgroup.controller_of()?;
        Some(mem.path().to_path_buf())
    }

    /// The directory of this cgroup in hierarchy `controller` (v1), or the
    /// one directory (v2, `controller` ignored).
    pub fn dir_of(&self, controller: &str) -> Option<PathBuf> {
        if self.v2 {
            return Some(self.v2_dir());
        }
        self.cgroup
            .subsystems()
            .iter()
            .find(|s| s.controller_name() == controller)
            .map(|s| s.to_controller().path().to_path_buf())
    }

    /// After CPUs came online: every level of this cgroup's cpuset below
    /// the hierarchy's root gets the guest's online CPUs `guest_cpus` (a v1
    /// child cpuset never gains a CPU by itself), top down, then this
    /// cgroup its own `cpus` (Kata's rustjail cgroups/fs update_cpuset_path).
    /// A level without cpuset.cpus (v2 without the controller there) is
    /// skipped.
    pub fn update_cpuset_path(&self, guest_cpus: &str, cpus: &str) -> Result<()> {
        if guest_cpus.is_empty() {
            return Ok(());
        }
        let Some(dir) = self.dir_of("cpuset") else {
            return Ok(());
        };
        let below = std::path::Path::new(&self.path);
        let root = dir
            .ancestors()
            .nth(below.components().count())
            .with_context(|| format!("the cpuset root above {}", dir.display()))?;
        let mut level = root.to_path_buf();
        for part in below.components() {
            level.push(part);
            let file = level.join("cpuset.cpus");
            if file.exists() {
                std::fs::write(&file, guest_cpus)
                    .with_context(|| format!("writing {guest_cpus} to {}", file.display()))?;
            }
        }
        let file = dir.join("cpuset.cpus");
        if !cpus.is_empty() && file.exists() {
            std::fs::write(&file, cpus)
                .with_context(|| format!("writing {cpus} to {}", file.display()))?;
        }
        Ok(())
    }

    fn v2_dir(&self) -> PathBuf {
        hierarchies::auto().root().join(&self.path)
    }

    /// Write the freezer state, then wait until the kernel reports it (v1
    /// passes through FREEZING; v2 reports "frozen" in cgroup.events).
    fn set_freezer(&self, state: FreezerState) -> Result<()> {
        let want = matches!(state, FreezerState::Frozen);
        let verb = if want { "freezing" } else { "thawing" };
        lock(&self.fs)?
            .freeze(state)
            .map_err(FsError::from)
            .with_context(|| format!("{verb} cgroup {}", self.path))?;
        let mut waited = Duration::ZERO;
        loop {
            if self.is_frozen()? == want {
                return Ok(());
            }
            if waited >= SETTLE_TIMEOUT {
                bail!(
                    "{verb} cgroup {}: not done after {SETTLE_TIMEOUT:?}",
                    self.path
                );
            }
            std::thread::sleep(POLL);
            waited += POLL;
        }
    }

    /// The kernel's view: all processes frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        if self.v2 {
            let events = stats::read_flat_keyed(&self.v2_dir(), "cgroup.events");
            return Ok(events.get("frozen") == Some(&1));
        }
        let freezer: &FreezerController = self
            .cgroup
            .controller_of()
            .ok_or_else(|| anyhow!("cgroup {} has no freezer controller", self.path))?;
        let state = std::fs::read_to_string(freezer.path().join("freezer.state"))
            .with_context(|| format!("reading freezer.state of cgroup {}", self.path))?;
        Ok(state.trim() == "FROZEN")
    }
}

/// The controllers cgroups-rs can drive in this cgroup. On v2 that is what
/// the cgroup's own cgroup.controllers lists (a parent may not delegate
/// everything the root has), plus the freezer, which is core in v2.
fn usable_controllers(cgroup: &Cgroup, path: &str, v2: bool) -> HashSet<String> {
    let names = cgroup.subsystems().iter().map(|s| s.controller_name());
    if !v2 {
        return names.collect();
    }
    let file = hierarchies::auto()
        .root()
        .join(path)
        .join("cgroup.controllers");
    let enabled = std::fs::read_to_string(file).unwrap_or_default();
    let enabled: HashSet<&str> = enabled
        .split_whitespace()
        // cgroups-rs calls v2's io controller blkio.
        .map(|c| if c == "io" { "blkio" } else { c })
        .collect();
    names
        .filter(|n| n == "freezer" || enabled.contains(n.as_str()))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| anyhow!("cgroup manager state poisoned by an earlier panic"))
}

/// v2 when asked for (then /sys/fs/cgroup must be cgroup2) or when that is
/// what the guest mounted; otherwise v1, which needs some v1 hierarchy.
fn select_hierarchy(unified: bool) -> Result<bool> {
    if is_cgroup2_unified_mode() {
        return Ok(true);
    }
    if unified {
        bail!(
            "cgroup v2 was requested (systemd.unified_cgroup_hierarchy) but /sys/fs/cgroup is not a cgroup2 mount"
        );
    }
    // cgroups-rs's v1 hierarchy assumes at least one mounted v1 controller.
    let any_v1 = hierarchies::mountinfo_self()
        .iter()
        .any(|m| m.fs_type.0 == "cgroup");
    if !any_v1 {
        bail!("no cgroup hierarchy is mounted (neither cgroup2 at /sys/fs/cgroup nor a v1 controller)");
    }
    Ok(false)
}

/// The kernel refusing a value (EINVAL, ERANGE) is the caller's mistake.
fn classify_set_error(e: anyhow::Error, what: String) -> crate::error::Error {
    let refused = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            .is_some_and(|n| n == libc::EINVAL || n == libc::ERANGE)
    });
    let invalid_linux_resource = matches!(
        e.downcast_ref::<FsError>(),
        Some(FsError::InvalidLinuxResource)
    );
    if refused || invalid_linux_resource {
        crate::error::Error::invalid(format!(
            "{what}: invalid container resources: the kernel refused a value: {e:#}"
        ))
    } else {
        e.context(what).into()
    }
}

/// grpc LinuxResources (the wire form) to oci-spec's.
pub fn resources_from_grpc(
    r: &protocols::oci::LinuxResources,
) -> crate::error::Result<LinuxResources> {
    resources::from_grpc(r)
}
