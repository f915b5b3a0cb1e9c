//! The grpc form of the OCI spec (`protocols::oci`) to `oci_spec::runtime`.
//!
//! The conversion goes through the OCI JSON layout: each grpc message becomes
//! the JSON object the OCI runtime spec defines, and oci-spec's own
//! deserialiser checks it (capability names, rlimit types, namespace types,
//! device types). A value it rejects is a bad request, reported with the
//! field that carries it.

use anyhow::{Context, Result};
use oci_spec::runtime::{Process, Spec};
use protocols::oci as grpc;
use serde_json::{json, Map, Value};

/// A whole container spec.
pub fn spec_from_grpc(s: &grpc::Spec) -> Result<Spec> {
    let mut spec = Map::new();
    let version = if s.Version.is_empty() {
        "1.0.2"
    } else {
        &s.Version
    };
    spec.insert("ociVersion".into(), json!(version));
    if let Some(p) = s.Process.as_ref() {
        spec.insert("process".into(), process_json(p));
    }
    if let Some(r) = s.Root.as_ref() {
        spec.insert(
            "root".into(),
            json!({"path": r.Path, "readonly": r.Readonly}),
        );
    }
    if !s.Hostname.is_empty() {
        spec.insert("hostname".into(), json!(s.Hostname));
    }
    let mounts: Vec<Value> = s
        .Mounts
        .iter()
        .map(|m| {
            json!({"destination": m.destination, "source": m.source,
                   "type": m.type_, "options": m.options})
        })
        .collect();
    spec.insert("mounts".into(), Value::Array(mounts));
    if let Some(h) = s.Hooks.as_ref() {
        spec.insert("hooks".into(), hooks_json(h));
    }
    if !s.Annotations.is_empty() {
        spec.insert("annotations".into(), json!(s.Annotations));
    }
    if let Some(l) = s.Linux.as_ref() {
        spec.insert("linux".into(), linux_json(l)?);
    }
    from_json(Value::Object(spec), |d| super::oci_de::spec(d)).context("the OCI spec")
}

/// The process of an ExecProcess request.
pub fn process_from_grpc(p: &grpc::Process) -> Result<Process> {
    from_json(process_json(p), |d| super::oci_de::process(d)).context("the OCI process")
}

/// `v` as an oci-spec type, through its text and `read` (oci_de.rs): the
/// container init decodes the same types from the text of its sync channel
/// (init/channel.rs), so their deserialisers (hundreds of KiB, oci-spec is
/// large) exist for that one serde_json deserialiser only, not also for
/// `from_value`'s.
fn from_json<T>(
    v: Value,
    read: impl FnOnce(&mut JsonText<'_>) -> serde_json::Result<T>,
) -> serde_json::Result<T> {
    let text = serde_json::to_string(&v)?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let t = read(&mut de)?;
    de.end()?;
    Ok(t)
}

type JsonText<'a> = serde_json::Deserializer<serde_json::de::StrRead<'a>>;

fn process_json(p: &grpc::Process) -> Value {
    let mut v = json!({
        "terminal": p.Terminal,
        "args": p.Args,
        "env": p.Env,
        "cwd": if p.Cwd.is_empty() { "/" } else { &p.Cwd },
        "noNewPrivileges": p.NoNewPrivileges,
        "rlimits": p.Rlimits.iter()
            .map(|r| json!({"type": r.Type, "hard": r.Hard, "soft": r.Soft}))
            .collect::<Vec<_>>(),
    });
    if let Some(u) = p.User.as_ref() {
        v["user"] = json!({"uid": u.UID, "gid": u.GID,
                           "additionalGids": u.AdditionalGids});
        if !u.Username.is_empty() {
            v["user"]["username"] = json!(u.Username);
        }
    } else {
        v["user"] = json!({"uid": 0, "gid": 0});
    }
    if let Some(b) = p.ConsoleSize.as_ref() {
        v["consoleSize"] = json!({"height": b.Height, "width": b.Width});
    }
    if let Some(c) = p.Capabilities.as_ref() {
        v["capabilities"] = json!({"bounding": c.Bounding, "effective": c.Effective,
            "inheritable": c.Inheritable, "permitted": c.Permitted, "ambient": c.Ambient});
    }
    if p.OOMScoreAdj != 0 {
        v["oomScoreAdj"] = json!(p.OOMScoreAdj);
    }
    if !p.ApparmorProfile.is_empty() {
        v["apparmorProfile"] = json!(p.ApparmorProfile);
    }
    if !p.SelinuxLabel.is_empty() {
        v["selinuxLabel"] = json!(p.SelinuxLabel);
    }
    v
}

fn hooks_json(h: &grpc::Hooks) -> Value {
    let list = |hooks: &[grpc::Hook]| -> Value {
        hooks
            .iter()
            .map(|k| {
                let mut v = json!({"path": k.Path, "args": k.Args, "env": k.Env});
                if k.Timeout > 0 {
                    v["timeout"] = json!(k.Timeout);
                }
                v
            })
            .collect()
    };
    json!({
        "prestart": list(&h.Prestart),
        "createRuntime": list(&h.CreateRuntime),
        "createContainer": list(&h.CreateContainer),
        "startContainer": list(&h.StartContainer),
        "poststart": list(&h.Poststart),
        "poststop": list(&h.Poststop),
    })
}

/// Namespace type names as runtimes send them ("net", "mnt" are accepted
/// aliases of the OCI names).
fn namespace_type(t: &str) -> &str {
    match t {
        "net" => "network",
        "mnt" => "mount",
        other => other,
    }
}

fn linux_json(l: &grpc::Linux) -> Result<Value> {
    let ids = |m: &[grpc::LinuxIDMapping]| -> Value {
        m.iter()
            .map(|i| json!({"containerID": i.ContainerID, "hostID": i.HostID, "size": i.Size}))
            .collect()
    };
    let mut v = json!({
        "uidMappings": ids(&l.UIDMappings),
        "gidMappings": ids(&l.GIDMappings),
        "sysctl": l.Sysctl,
        "namespaces": l.Namespaces.iter().map(|n| {
            let mut ns = json!({"type": namespace_type(&n.Type)});
            if !n.Path.is_empty() { ns["path"] = json!(n.Path); }
            ns
        }).collect::<Vec<_>>(),
        "devices": l.Devices.iter().map(|d| json!({
            "path": d.Path, "type": d.Type, "major": d.Major, "minor": d.Minor,
            "fileMode": d.FileMode, "uid": d.UID, "gid": d.GID,
        })).collect::<Vec<_>>(),
        "maskedPaths": l.MaskedPaths,
        "readonlyPaths": l.ReadonlyPaths,
    });
    if !l.CgroupsPath.is_empty() {
        v["cgroupsPath"] = json!(l.CgroupsPath);
    }
    if !l.RootfsPropagation.is_empty() {
        v["rootfsPropagation"] = json!(l.RootfsPropagation);
    }
    if !l.MountLabel.is_empty() {
        v["mountLabel"] = json!(l.MountLabel);
    }
    if let Some(r) = l.Resources.as_ref() {
        let resources = crate::cgroups::resources_from_grpc(r).context("linux.resources")?;
        v["resources"] = serde_json::to_value(resources).context("linux.resources")?;
    }
    if let Some(s) = l.Seccomp.as_ref() {
        v["seccomp"] = seccomp_json(s);
    }
    Ok(v)
}

/// oci-spec checks the names (actions, operators, architectures, flags).
/// An unset errnoRet stays unset (EPERM then), not 0: a oneof on the wire.
fn seccomp_json(s: &grpc::LinuxSeccomp) -> Value {
    let syscalls: Vec<Value> = s
        .Syscalls
        .iter()
        .map(|sc| {
            let mut v = json!({
                "names": sc.Names,
                "action": sc.Action,
                "args": sc.Args.iter().map(|a| json!({
                    "index": a.Index, "value": a.Value, "valueTwo": a.ValueTwo, "op": a.Op,
                })).collect::<Vec<_>>(),
            });
            if sc.has_errnoret() {
                v["errnoRet"] = json!(sc.errnoret());
            }
            v
        })
        .collect();
    json!({
        "defaultAction": s.DefaultAction,
        "architectures": s.Architectures,
        "flags": s.Flags,
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> grpc::Spec {
        let mut s = grpc::Spec::new();
        let mut p = grpc::Process::new();
        p.Args = vec!["/bin/true".into()];
        p.Env = vec!["PATH=/bin".into()];
        let mut caps = grpc::LinuxCapabilities::new();
        caps.Bounding = vec!["CAP_KILL".into()];
        p.Capabilities = Some(caps).into();
        let mut rl = grpc::POSIXRlimit::new();
        rl.Type = "RLIMIT_NOFILE".into();
        rl.Hard = 1024;
        rl.Soft = 1024;
        p.Rlimits = vec![rl];
        s.Process = Some(p).into();
        let mut root = grpc::Root::new();
        root.Path = "/run/r/rootfs".into();
        s.Root = Some(root).into();
        let mut l = grpc::Linux::new();
        let mut ns = grpc::LinuxNamespace::new();
        ns.Type = "net".into();
        ns.Path = "/proc/1/ns/net".into();
        l.Namespaces = vec![ns];
        s.Linux = Some(l).into();
        s
    }

    #[test]
    fn converts_a_spec() {
        let spec = spec_from_grpc(&sample()).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &vec!["/bin/true".to_string()]);
        assert_eq!(p.rlimits().as_ref().unwrap()[0].hard(), 1024);
        let ns = &spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()[0];
        assert_eq!(ns.typ(), oci_spec::runtime::LinuxNamespaceType::Network);
        assert_eq!(
            spec.root().as_ref().unwrap().path().to_str(),
            Some("/run/r/rootfs")
        );
    }

    fn seccomp(action: &str, errno: Option<u32>) -> grpc::LinuxSeccomp {
        let mut sc = grpc::LinuxSyscall::new();
        sc.Names = vec!["mkdirat".into()];
        sc.Action = action.into();
        if let Some(e) = errno {
            sc.set_errnoret(e);
        }
        let mut arg = grpc::LinuxSeccompArg::new();
        arg.Index = 1;
        arg.Value = 0o777;
        arg.Op = "SCMP_CMP_EQ".into();
        sc.Args = vec![arg];
        let mut s = grpc::LinuxSeccomp::new();
        s.DefaultAction = "SCMP_ACT_ALLOW".into();
        s.Architectures = vec!["SCMP_ARCH_X86_64".into()];
        s.Flags = vec!["SECCOMP_FILTER_FLAG_LOG".into()];
        s.Syscalls = vec![sc];
        s
    }

    #[test]
    fn converts_a_seccomp_profile() {
        let mut s = sample();
        s.Linux.as_mut().unwrap().Seccomp = Some(seccomp("SCMP_ACT_ERRNO", Some(38))).into();
        let spec = spec_from_grpc(&s).unwrap();
        let sc = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
        assert_eq!(sc.flags().as_ref().unwrap().len(), 1);
        let rule = &sc.syscalls().as_ref().unwrap()[0];
        assert_eq!(rule.errno_ret(), Some(38));
        assert_eq!(rule.args().as_ref().unwrap()[0].value(), 0o777);

        s.Linux.as_mut().unwrap().Seccomp = Some(seccomp("SCMP_ACT_ERRNO", None)).into();
        let spec = spec_from_grpc(&s).unwrap();
        let sc = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
        assert_eq!(sc.syscalls().as_ref().unwrap()[0].errno_ret(), None);
    }

    #[test]
    fn rejects_an_unknown_seccomp_action() {
        let mut s = sample();
        s.Linux.as_mut().unwrap().Seccomp = Some(seccomp("SCMP_ACT_BOGUS", None)).into();
        let err = format!("{:#}", spec_from_grpc(&s).unwrap_err());
        assert!(err.contains("SCMP_ACT_BOGUS"), "{err}");
    }

    #[test]
    fn rejects_unknown_capabilities_and_rlimits() {
        let mut s = sample();
        s.Process
            .as_mut()
            .unwrap()
            .Capabilities
            .as_mut()
            .unwrap()
            .Bounding = vec!["CAP_BOGUS".into()];
        assert!(spec_from_grpc(&s).is_err());
        let mut s = sample();
        s.Process.as_mut().unwrap().Rlimits[0].Type = "RLIMIT_BOGUS".into();
        assert!(spec_from_grpc(&s).is_err());
    }
}
