//! OCI specs for test containers in the agent API's protobuf form
//! (`protocols::oci`): the one builder of the agent's integration tests,
//! its benches and the e2e suite.

use std::path::Path;

use protocols::oci;

/// The parent of every test container's cgroup (its linux.cgroupsPath is
/// `/<CGROUP_PARENT>/<id>`).
pub const CGROUP_PARENT: &str = "kata-agent-tests";

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> oci::Mount {
    let mut m = oci::Mount::new();
    m.destination = dest.into();
    m.type_ = typ.into();
    m.source = source.into();
    m.options = options.iter().map(|s| s.to_string()).collect();
    m
}

/// A process as Kata's runtime sends it: root in `/`, Docker's default
/// capabilities, RLIMIT_NOFILE 1024, no_new_privileges.
pub fn process(args: &[&str]) -> oci::Process {
    let mut p = oci::Process::new();
    p.Args = args.iter().map(|s| s.to_string()).collect();
    p.Env = vec!["PATH=/bin:/sbin:/usr/bin".into(), "HOME=/root".into()];
    p.Cwd = "/".into();
    p.User = Some(oci::User::new()).into();
    let caps: Vec<String> = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut c = oci::LinuxCapabilities::new();
    c.Bounding = caps.clone();
    c.Effective = caps.clone();
    c.Permitted = caps;
    p.Capabilities = Some(c).into();
    let mut rl = oci::POSIXRlimit::new();
    rl.Type = "RLIMIT_NOFILE".into();
    rl.Hard = 1024;
    rl.Soft = 1024;
    p.Rlimits = vec![rl];
    p.NoNewPrivileges = true;
    p
}

/// A container spec like the ones Kata's runtime sends: new pid, ipc, uts
/// and mount namespaces (the network namespace is the sandbox's), the usual
/// kernel file systems, masked and read-only /proc paths. `rootfs` is a path
/// as the agent sees it (a host dir for a local agent, a guest path in a VM).
pub fn container(cid: &str, rootfs: impl AsRef<Path>, args: &[&str]) -> oci::Spec {
    let mut s = oci::Spec::new();
    s.Version = "1.0.2".into();
    s.Process = Some(process(args)).into();
    let mut root = oci::Root::new();
    root.Path = rootfs.as_ref().display().to_string();
    s.Root = Some(root).into();
    s.Hostname = "kata-test".into();
    s.Mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ];
    let mut l = oci::Linux::new();
    l.Namespaces = ["pid", "ipc", "uts", "mount"]
        .iter()
        .map(|t| {
            let mut ns = oci::LinuxNamespace::new();
            ns.Type = t.to_string();
            ns
        })
        .collect();
    l.CgroupsPath = format!("/{CGROUP_PARENT}/{cid}");
    l.MaskedPaths = vec!["/proc/kcore".into(), "/proc/keys".into()];
    l.ReadonlyPaths = vec!["/proc/sys".into(), "/proc/sysrq-trigger".into()];
    s.Linux = Some(l).into();
    s
}

/// One more mount at the end of the spec's list.
pub fn add_mount(s: &mut oci::Spec, dest: &str, typ: &str, source: &str, options: &[&str]) {
    s.Mounts.push(mount(dest, typ, source, options));
}

/// Which kind of pod container a spec is, in the CRI annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodRole {
    /// The pause container (the sandbox's first, whose id is the sandbox's).
    Sandbox,
    /// An application container of the pod.
    Container,
}

/// Turn `s` into what Kata's runtime sends for container `id` of pod
/// `pod_uid` whose sandbox (pause) container is `sandbox_id`:
/// - namespaces as kata_agent.go leaves them: handlePidNamespace drops the
///   `pid` entry (the agent adds one), constrainGRPCSpec drops `network`,
///   `cgroup` and `time` and empties every path;
/// - containerd's cgroupfs path for a Burstable pod,
///   `/kubepods/burstable/pod<uid>/<id>`;
/// - the annotations containerd's CRI plugin and Kata's shim write
///   (`io.kubernetes.cri.*`, `io.katacontainers.pkg.oci.*`).
pub fn as_kata_sends(s: &mut oci::Spec, id: &str, pod_uid: &str, sandbox_id: &str, role: PodRole) {
    if let Some(linux) = s.Linux.as_mut() {
        linux
            .Namespaces
            .retain(|ns| !["pid", "network", "cgroup", "time"].contains(&ns.Type.as_str()));
        for ns in linux.Namespaces.iter_mut() {
            ns.Path.clear();
        }
    }
    let (cri, kata) = match role {
        PodRole::Sandbox => ("sandbox", "pod_sandbox"),
        PodRole::Container => ("container", "pod_container"),
    };
    for (k, v) in [
        ("io.kubernetes.cri.container-type", cri),
        ("io.kubernetes.cri.sandbox-id", sandbox_id),
        ("io.kubernetes.cri.sandbox-name", "e2e-pod"),
        ("io.kubernetes.cri.sandbox-namespace", "default"),
        ("io.kubernetes.cri.sandbox-uid", pod_uid),
        ("io.katacontainers.pkg.oci.container_type", kata),
    ] {
        s.Annotations.insert(k.into(), v.into());
    }
    s.Annotations.insert(
        "io.katacontainers.pkg.oci.bundle_path".into(),
        format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}"),
    );
    if let Some(linux) = s.Linux.as_mut() {
        linux.CgroupsPath = format!("/kubepods/burstable/pod{pod_uid}/{id}");
    }
}

/// A spec the agent must refuse: no process and no root.
pub fn broken(cid: &str) -> oci::Spec {
    let mut s = oci::Spec::new();
    s.Version = "1.0.2".into();
    s.Hostname = cid.into();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_has_root_process_namespaces_and_cgroup() {
        let s = container(
            "c1",
            "/run/kata-containers/shared/containers/c1/rootfs",
            &["echo", "hi"],
        );
        assert_eq!(
            s.Root.as_ref().map(|r| r.Path.as_str()),
            Some("/run/kata-containers/shared/containers/c1/rootfs")
        );
        assert_eq!(
            s.Process.as_ref().map(|p| p.Args.clone()),
            Some(vec!["echo".to_string(), "hi".to_string()])
        );
        let linux = s.Linux.as_ref().expect("linux section");
        let ns: Vec<&str> = linux.Namespaces.iter().map(|n| n.Type.as_str()).collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount"]);
        assert_eq!(linux.CgroupsPath, format!("/{CGROUP_PARENT}/c1"));
        let mut s = s;
        add_mount(&mut s, "/tmp", "tmpfs", "tmpfs", &["nodev"]);
        assert_eq!(
            s.Mounts.last().map(|m| m.destination.as_str()),
            Some("/tmp")
        );
        assert!(broken("x").Process.is_none() && broken("x").Root.is_none());
    }

    #[test]
    fn as_kata_sends_drops_pid_and_sets_cri_annotations() {
        let mut s = container("c1", "/r", &["true"]);
        if let Some(l) = s.Linux.as_mut() {
            let mut net = oci::LinuxNamespace::new();
            net.Type = "network".into();
            net.Path = "/var/run/netns/x".into();
            l.Namespaces.push(net);
            l.Namespaces[1].Path = "/proc/1/ns/ipc".into();
        }
        as_kata_sends(&mut s, "c1", "uid1", "pause1", PodRole::Container);
        let linux = s.Linux.as_ref().expect("linux section");
        let ns: Vec<&str> = linux.Namespaces.iter().map(|n| n.Type.as_str()).collect();
        assert_eq!(ns, ["ipc", "uts", "mount"]);
        assert!(linux.Namespaces.iter().all(|n| n.Path.is_empty()));
        assert_eq!(linux.CgroupsPath, "/kubepods/burstable/poduid1/c1");
        assert_eq!(
            s.Annotations["io.kubernetes.cri.container-type"],
            "container"
        );
        assert_eq!(s.Annotations["io.kubernetes.cri.sandbox-id"], "pause1");
        assert_eq!(
            s.Annotations["io.katacontainers.pkg.oci.container_type"],
            "pod_container"
        );
    }
}
