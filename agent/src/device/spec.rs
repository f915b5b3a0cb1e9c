//! The container's spec, from the host's devices to the guest's: the
//! runtime copies `linux.devices` and `linux.resources.devices` from the
//! host, with the host's major:minor; the same disk has other numbers in
//! the guest. Kata: device/mod.rs update_spec_devices and
//! insert_devices_cgroup_rule. The cgroup rules are only written here;
//! `cgroups` applies them.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources, Spec};

use super::Node;

/// For each (container path, guest node): the `linux.devices` entry at
/// that path gets the node's numbers, every `linux.resources.devices` rule
/// naming the entry's old (host) numbers gets the new ones, and a rule
/// allowing the node ("rwm") is added.
pub fn apply(spec: &mut Spec, found: &[(String, Node)]) -> Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    let mut by_path: HashMap<&str, &Node> = HashMap::with_capacity(found.len());
    for (path, node) in found {
        if by_path.insert(path.as_str(), node).is_some() {
            bail!("conflicting device updates for {path}");
        }
    }
    let linux = spec
        .linux_mut()
        .as_mut()
        .context("the spec has no linux section for its devices")?;
    // (type, host major, host minor) -> the guest's node.
    let mut renumber: HashMap<(String, i64, i64), &Node> = HashMap::new();
    for dev in linux.devices_mut().iter_mut().flatten() {
        let path = dev.path().to_string_lossy().into_owned();
        let Some(node) = by_path.remove(path.as_str()) else {
            continue;
        };
        let host = (dev.typ().as_str().to_string(), dev.major(), dev.minor());
        dev.set_major(node.major);
        dev.set_minor(node.minor);
        if renumber.insert(host.clone(), node).is_some() {
            bail!(
                "conflicting resource updates for host device {} {}:{}",
                host.0,
                host.1,
                host.2
            );
        }
    }
    if !by_path.is_empty() {
        let mut missing: Vec<&str> = by_path.into_keys().collect();
        missing.sort();
        bail!(
            "devices missing from the spec's linux.devices: {}",
            missing.join(" ")
        );
    }
    let resources = linux
        .resources_mut()
        .get_or_insert_with(LinuxResources::default);
    let rules = resources.devices_mut().get_or_insert_with(Vec::new);
    for rule in rules.iter_mut() {
        let (Some(major), Some(minor)) = (rule.major(), rule.minor()) else {
            continue;
        };
        let typ = rule.typ().unwrap_or_default().as_str().to_string();
        if let Some(node) = renumber.get(&(typ, major, minor)) {
            rule.set_major(Some(node.major));
            rule.set_minor(Some(node.minor));
        }
    }
    for (_, node) in found {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(node.typ));
        rule.set_major(Some(node.major));
        rule.set_minor(Some(node.minor));
        rule.set_access(Some("rwm".to_string()));
        rules.push(rule);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxDeviceBuilder, LinuxDeviceType};
    use std::path::PathBuf;

    fn node(major: i64, minor: i64) -> Node {
        Node {
            path: PathBuf::from("/dev/vdb"),
            typ: LinuxDeviceType::B,
            major,
            minor,
        }
    }

    fn spec_with(devices: &[(&str, i64, i64)], rules: Vec<LinuxDeviceCgroup>) -> Spec {
        let devices = devices
            .iter()
            .map(|(p, ma, mi)| {
                LinuxDeviceBuilder::default()
                    .path(*p)
                    .typ(LinuxDeviceType::B)
                    .major(*ma)
                    .minor(*mi)
                    .build()
                    .expect("device")
            })
            .collect::<Vec<_>>();
        let mut resources = LinuxResources::default();
        resources.set_devices(Some(rules));
        let linux = LinuxBuilder::default()
            .devices(devices)
            .resources(resources)
            .build()
            .expect("linux");
        let mut spec = Spec::default();
        spec.set_linux(Some(linux));
        spec
    }

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        mm: Option<(i64, i64)>,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(typ);
        r.set_major(mm.map(|m| m.0));
        r.set_minor(mm.map(|m| m.1));
        r.set_access(Some("rwm".into()));
        r
    }

    /// Kata's test_update_spec_devices cases: the numbers of the entry at
    /// the container path and of the rules naming its host numbers change,
    /// the others stay; an allow rule for the guest node is added.
    #[test]
    fn renumbers_devices_and_their_rules() {
        let mut spec = spec_with(
            &[("/dev/xda", 8, 0), ("/dev/other", 8, 16)],
            vec![
                rule(false, Some(LinuxDeviceType::A), None),
                rule(true, Some(LinuxDeviceType::B), Some((8, 0))),
                rule(true, Some(LinuxDeviceType::B), Some((8, 16))),
                rule(true, Some(LinuxDeviceType::C), Some((8, 0))),
            ],
        );
        apply(&mut spec, &[("/dev/xda".into(), node(254, 16))]).expect("apply");
        let linux = spec.linux().as_ref().expect("linux");
        let devs = linux.devices().as_ref().expect("devices");
        assert_eq!((devs[0].major(), devs[0].minor()), (254, 16));
        assert_eq!((devs[1].major(), devs[1].minor()), (8, 16));
        let rules = linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().as_ref())
            .expect("rules");
        let numbers: Vec<_> = rules
            .iter()
            .map(|r| (r.allow(), r.typ(), r.major(), r.minor()))
            .collect();
        assert_eq!(
            numbers,
            vec![
                (false, Some(LinuxDeviceType::A), None, None),
                (true, Some(LinuxDeviceType::B), Some(254), Some(16)),
                (true, Some(LinuxDeviceType::B), Some(8), Some(16)),
                // Same numbers, other type: not this device.
                (true, Some(LinuxDeviceType::C), Some(8), Some(0)),
                (true, Some(LinuxDeviceType::B), Some(254), Some(16)),
            ]
        );
        assert_eq!(rules[4].access().as_deref(), Some("rwm"));
    }

    #[test]
    fn mismatches_are_errors() {
        let mut spec = spec_with(&[("/dev/xda", 8, 0)], vec![]);
        let err = apply(&mut spec, &[("/dev/nope".into(), node(254, 0))]).expect_err("missing");
        assert!(format!("{err}").contains("/dev/nope"), "{err}");
        let err = apply(
            &mut spec,
            &[
                ("/dev/xda".into(), node(254, 0)),
                ("/dev/xda".into(), node(254, 16)),
            ],
        )
        .expect_err("twice");
        assert!(format!("{err}").contains("conflicting"), "{err}");
        // Two container paths with the same host numbers.
        let mut spec = spec_with(&[("/dev/a", 8, 0), ("/dev/b", 8, 0)], vec![]);
        let err = apply(
            &mut spec,
            &[
                ("/dev/a".into(), node(254, 0)),
                ("/dev/b".into(), node(254, 16)),
            ],
        )
        .expect_err("same host device");
        assert!(format!("{err}").contains("8:0"), "{err}");
        let mut bare = Spec::default();
        bare.set_linux(None);
        assert!(apply(&mut bare, &[("/dev/a".into(), node(1, 1))]).is_err());
        // Nothing to do: no error even without linux.
        apply(&mut bare, &[]).expect("no devices");
    }
}
