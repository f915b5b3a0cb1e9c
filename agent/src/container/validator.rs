//! Checks on a request before anything is touched: a bad id or spec is
//! refused with the reason, and nothing is created.

use std::path::{Component, Path};

use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::limits;

/// Container and exec ids: `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (as Kata checks
/// them); they name directories, so no `/` and never `.` or `..`.
pub fn check_id(what: &str, id: &str) -> Result<()> {
    let mut chars = id.chars();
    let Some(first) = chars.next() else {
        bail!("{what} is empty");
    };
    if !first.is_ascii_alphanumeric() {
        bail!("{what} {id:?} must start with a letter or a digit");
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c))) {
        bail!("{what} {id:?} contains {bad:?}; allowed: letters, digits, '_', '.', '-'");
    }
    if id.len() > 1024 {
        bail!("{what} is longer than 1024 characters");
    }
    Ok(())
}

/// Why a container in a user namespace of its own (Kubernetes
/// `hostUsers: false`) is refused rather than half made.
const USER_NS_REFUSED: &str = "user namespaces (hostUsers: false) are not supported by this \
agent: the pod's IPC and UTS namespaces and the sandbox's network namespace belong to the \
guest's initial user namespace, so a container in its own could not mount mqueue or sysfs in \
them, and its rootfs is not id-mapped; the VM is the pod's isolation boundary";

/// A container spec, before the container is created.
pub fn check_spec(spec: &Spec) -> Result<()> {
    let Some(root) = spec.root() else {
        bail!("the spec has no root");
    };
    if root.path().as_os_str().is_empty() {
        bail!("the spec's root.path is empty");
    }
    let Some(process) = spec.process() else {
        bail!("the spec has no process");
    };
    check_process(process)?;
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    limits::check(
        "the number of mounts",
        mounts.len() as u64,
        limits::MAX_MOUNTS,
    )?;
    for m in mounts {
        check_destination(m.destination())?;
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the spec has no linux section"))?;
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut seen = Vec::new();
    for ns in &namespaces {
        if seen.contains(&ns.typ()) {
            bail!("namespace {:?} is listed twice", ns.typ().to_string());
        }
        seen.push(ns.typ());
        if ns.typ() == LinuxNamespaceType::User {
            bail!("{USER_NS_REFUSED}");
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                bail!("namespace path {} is not absolute", p.display());
            }
        }
    }
    // Kata's validator: mappings belong to a user namespace
    // (src/agent/rustjail/src/validator.rs usernamespace).
    let mapped = |m: &Option<Vec<_>>| m.as_ref().is_some_and(|v: &Vec<_>| !v.is_empty());
    if mapped(linux.uid_mappings()) || mapped(linux.gid_mappings()) {
        bail!("linux.uidMappings/gidMappings are given without a user namespace");
    }
    let own_mount_ns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Mount && n.path().is_none());
    if !own_mount_ns {
        bail!("the spec must ask for a new mount namespace (the rootfs is set up inside it)");
    }
    for p in linux
        .masked_paths()
        .iter()
        .chain(linux.readonly_paths().iter())
        .flatten()
    {
        check_destination(Path::new(p))?;
    }
    Ok(())
}

/// A process (of the container or of an exec).
pub fn check_process(p: &Process) -> Result<()> {
    match p.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => bail!("the process has no args (nothing to execute)"),
    }
    let count = |v: &Option<Vec<String>>| v.as_ref().map_or(0, |v| v.len() as u64);
    limits::check("the number of args", count(p.args()), limits::MAX_ARGS)?;
    limits::check(
        "the number of env entries",
        count(p.env()),
        limits::MAX_ENV_ENTRIES,
    )?;
    if !p.cwd().is_absolute() {
        bail!("the process cwd {} is not absolute", p.cwd().display());
    }
    for e in p.env().iter().flatten() {
        if !e.contains('=') || e.contains('\0') {
            bail!("environment entry {e:?} is not NAME=value");
        }
    }
    Ok(())
}

/// Paths inside the container: absolute, and no `..` (a destination that
/// climbs is refused rather than guessed at).
fn check_destination(dest: &Path) -> Result<()> {
    if !dest.is_absolute() {
        bail!(
            "path {} inside the container is not absolute",
            dest.display()
        );
    }
    if dest.components().any(|c| c == Component::ParentDir) {
        bail!("path {} inside the container contains '..'", dest.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        for good in ["a", "abc-1_2.3", "0abc", "A"] {
            assert!(check_id("container id", good).is_ok(), "{good}");
        }
        for bad in ["", "..", ".", "-a", "a/b", "../x", "a b", "é", "_x"] {
            assert!(check_id("container id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations() {
        assert!(check_destination(Path::new("/etc/x")).is_ok());
        assert!(check_destination(Path::new("/../../etc")).is_err());
        assert!(check_destination(Path::new("etc")).is_err());
    }
}
