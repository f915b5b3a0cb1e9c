//! oci-spec's `Spec` and `Process` read from JSON without their
//! `execCPUAffinity` field.
//!
//! oci-spec checks that field's value with a regex, so its own Deserialize
//! links the whole regex engine and its Unicode tables into the agent
//! (about 0.5 MB of the x86_64 release binary). The agent never has the
//! field: Kata's grpc Process has none, so `spec_from_grpc` never writes it,
//! and the container init reads only what the agent serialised. The fields
//! here are oci-spec 0.10's, named and defaulted as it does; every other
//! type (Root, Mount, Linux, User, ...) is read by oci-spec itself.

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::runtime::{
    Box as ConsoleSize, Hooks, Linux, LinuxCapabilities, LinuxIOPriority, Mount, PosixRlimit,
    Process, Root, Scheduler, Spec, User,
};
use serde::{Deserialize, Deserializer};

/// A Spec (for `#[serde(deserialize_with)]`).
pub fn spec<'de, D: Deserializer<'de>>(d: D) -> Result<Spec, D::Error> {
    SpecFields::deserialize(d).map(Spec::from)
}

/// A boxed Spec (for `#[serde(deserialize_with)]`).
pub fn boxed_spec<'de, D: Deserializer<'de>>(d: D) -> Result<std::boxed::Box<Spec>, D::Error> {
    spec(d).map(std::boxed::Box::new)
}

/// A Process (for `#[serde(deserialize_with)]`).
pub fn process<'de, D: Deserializer<'de>>(d: D) -> Result<Process, D::Error> {
    ProcessFields::deserialize(d).map(Process::from)
}

/// The runtime spec's members; the platforms the agent does not run
/// (solaris, windows, vm, zos) stay unset, as oci-spec leaves them when
/// absent.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecFields {
    #[serde(default, rename = "ociVersion")]
    version: String,
    #[serde(default)]
    root: Option<Root>,
    #[serde(default)]
    mounts: Option<Vec<Mount>>,
    #[serde(default)]
    process: Option<ProcessFields>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    domainname: Option<String>,
    #[serde(default)]
    hooks: Option<Hooks>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    linux: Option<Linux>,
}

impl From<SpecFields> for Spec {
    fn from(f: SpecFields) -> Spec {
        let mut s = Spec::default();
        s.set_version(f.version)
            .set_root(f.root)
            .set_mounts(f.mounts)
            .set_process(f.process.map(Process::from))
            .set_hostname(f.hostname)
            .set_domainname(f.domainname)
            .set_hooks(f.hooks)
            .set_annotations(f.annotations)
            .set_linux(f.linux)
            .set_solaris(None)
            .set_windows(None)
            .set_vm(None)
            .set_zos(None);
        s
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProcessFields {
    #[serde(default)]
    terminal: Option<bool>,
    #[serde(default)]
    console_size: Option<ConsoleSize>,
    user: User,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    command_line: Option<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
    cwd: PathBuf,
    #[serde(default)]
    capabilities: Option<LinuxCapabilities>,
    #[serde(default)]
    rlimits: Option<Vec<PosixRlimit>>,
    #[serde(default)]
    no_new_privileges: Option<bool>,
    #[serde(default)]
    apparmor_profile: Option<String>,
    oom_score_adj: Option<i32>,
    #[serde(default)]
    selinux_label: Option<String>,
    #[serde(default)]
    io_priority: Option<LinuxIOPriority>,
    #[serde(default)]
    scheduler: Option<Scheduler>,
}

impl From<ProcessFields> for Process {
    fn from(f: ProcessFields) -> Process {
        let mut p = Process::default();
        p.set_terminal(f.terminal)
            .set_console_size(f.console_size)
            .set_user(f.user)
            .set_args(f.args)
            .set_command_line(f.command_line)
            .set_env(f.env)
            .set_cwd(f.cwd)
            .set_capabilities(f.capabilities)
            .set_rlimits(f.rlimits)
            .set_no_new_privileges(f.no_new_privileges)
            .set_apparmor_profile(f.apparmor_profile)
            .set_oom_score_adj(f.oom_score_adj)
            .set_selinux_label(f.selinux_label)
            .set_io_priority(f.io_priority)
            .set_scheduler(f.scheduler)
            .set_exec_cpu_affinity(None);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours<T>(
        read: impl FnOnce(
            &mut serde_json::Deserializer<serde_json::de::StrRead<'_>>,
        ) -> serde_json::Result<T>,
        json: &str,
    ) -> serde_json::Result<T> {
        read(&mut serde_json::Deserializer::from_str(json))
    }

    /// Every member the agent can have, each set: read as oci-spec reads it.
    #[test]
    fn reads_a_full_spec_as_oci_spec_does() {
        let json = r#"{
            "ociVersion": "1.1.0",
            "root": {"path": "/run/rootfs", "readonly": true},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"]}],
            "process": {
                "terminal": true,
                "consoleSize": {"height": 24, "width": 80},
                "user": {"uid": 1, "gid": 2, "additionalGids": [3], "username": "u"},
                "args": ["sh", "-c", "true"],
                "commandLine": "sh -c true",
                "env": ["A=b"],
                "cwd": "/work",
                "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                  "inheritable": [], "permitted": ["CAP_KILL"], "ambient": []},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 10, "soft": 5}],
                "noNewPrivileges": true,
                "apparmorProfile": "a",
                "oomScoreAdj": -5,
                "selinuxLabel": "s",
                "ioPriority": {"class": "IOPRIO_CLASS_RT", "priority": 1},
                "scheduler": {"policy": "SCHED_OTHER", "nice": 1}
            },
            "hostname": "h",
            "domainname": "d",
            "hooks": {"prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 3}]},
            "annotations": {"k": "v"},
            "linux": {"namespaces": [{"type": "pid"}], "maskedPaths": ["/proc/kcore"]}
        }"#;
        let want: Spec = serde_json::from_str(json).unwrap();
        assert_eq!(ours(|d| spec(d), json).unwrap(), want);
    }

    #[test]
    fn absent_members_stay_unset_as_in_oci_spec() {
        for json in [
            r#"{}"#,
            r#"{"process": {"user": {"uid": 0, "gid": 0}, "cwd": "/"}}"#,
        ] {
            let want: Spec = serde_json::from_str(json).unwrap();
            assert_eq!(ours(|d| spec(d), json).unwrap(), want, "{json}");
        }
    }

    #[test]
    fn refuses_what_oci_spec_refuses() {
        for json in [
            r#"{"cwd": "/"}"#,
            r#"{"user": {"uid": 0, "gid": 0}}"#,
            r#"{"user": {"uid": 0, "gid": 0}, "cwd": "/", "rlimits": [{"type": "RLIMIT_NOPE", "hard": 1, "soft": 1}]}"#,
            r#"{"user": {"uid": 0, "gid": 0}, "cwd": "/", "capabilities": {"bounding": ["CAP_NOPE"]}}"#,
        ] {
            assert!(serde_json::from_str::<Process>(json).is_err(), "{json}");
            assert!(ours(|d| process(d), json).is_err(), "{json}");
        }
    }
}
