//! OCI specs for the test containers, in the agent API's protobuf form
//! (`protocols::oci`), as Kata's runtime sends them: root on the shared
//! directory, the usual kernel file systems, a fresh set of namespaces.

use protocols::oci::{Linux, LinuxNamespace, Mount, Process, Root, Spec, User};

/// A spec running `args` in the rootfs at `guest_root` (a path in the guest).
pub fn busybox(id: &str, guest_root: &str, args: &[&str]) -> Spec {
    let mut spec = Spec::new();
    spec.Version = "1.0.2".into();
    spec.Hostname = id.into();
    spec.Process = Some(process(args)).into();
    let mut root = Root::new();
    root.Path = guest_root.into();
    root.Readonly = false;
    spec.Root = Some(root).into();
    spec.Mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev"]),
    ];
    let mut linux = Linux::new();
    linux.Namespaces = ["pid", "mount", "ipc", "uts"]
        .iter()
        .map(|t| {
            let mut ns = LinuxNamespace::new();
            ns.Type = t.to_string();
            ns
        })
        .collect();
    linux.CgroupsPath = format!("/kata-e2e/{id}");
    spec.Linux = Some(linux).into();
    spec
}

/// A process as root in `/` with a minimal environment.
pub fn process(args: &[&str]) -> Process {
    let mut p = Process::new();
    p.Args = args.iter().map(|s| s.to_string()).collect();
    p.Env = vec!["PATH=/bin".to_string(), "HOME=/root".to_string()];
    p.Cwd = "/".into();
    p.Terminal = false;
    let mut user = User::new();
    user.UID = 0;
    user.GID = 0;
    p.User = Some(user).into();
    p
}

fn mount(dest: &str, source: &str, fstype: &str, options: &[&str]) -> Mount {
    let mut m = Mount::new();
    m.destination = dest.into();
    m.source = source.into();
    m.type_ = fstype.into();
    m.options = options.iter().map(|s| s.to_string()).collect();
    m
}

/// A spec the agent must refuse: no process and no root.
pub fn broken(id: &str) -> Spec {
    let mut spec = Spec::new();
    spec.Version = "1.0.2".into();
    spec.Hostname = id.into();
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_spec_has_root_process_and_namespaces() {
        let s = busybox(
            "c1",
            "/run/kata-containers/shared/containers/c1/rootfs",
            &["/bin/echo", "hello"],
        );
        assert_eq!(
            s.Root.as_ref().map(|r| r.Path.as_str()),
            Some("/run/kata-containers/shared/containers/c1/rootfs")
        );
        assert_eq!(s.Process.as_ref().map(|p| p.Args.len()), Some(2));
        let ns: Vec<_> = s
            .Linux
            .as_ref()
            .map(|l| l.Namespaces.iter().map(|n| n.Type.clone()).collect())
            .unwrap_or_default();
        assert!(ns.contains(&"pid".to_string()));
        assert!(broken("x").Process.is_none());
    }
}
