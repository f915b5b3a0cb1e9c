//! The crates the agent is built from: `cargo metadata` (offline, locked)
//! for the agent's target, walked from kata-agent over normal and build
//! dependencies; checksums from Cargo.lock.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::paths;

pub const AGENT_PACKAGE: &str = "kata-agent";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Crate {
    pub name: String,
    pub version: String,
    /// sha256 of the .crate (Cargo.lock), None for workspace members.
    pub checksum: Option<String>,
    /// SPDX expression from Cargo.toml, or NOASSERTION.
    pub license: String,
    pub registry: bool,
}

/// The agent's version and the crates it is built from, for one target triple.
pub fn agent_closure(triple: &str) -> Result<(String, Vec<Crate>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = paths::repo_root();
    let out = Command::new(&cargo)
        .current_dir(&root)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", triple])
        .output()
        .with_context(|| format!("running {cargo} metadata"))?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta: Metadata =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata's output")?;
    closure(&meta, &crate::cargo_lock::registry_checksums()?)
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetaPackage>,
    resolve: Option<Resolve>,
}

#[derive(Deserialize)]
struct MetaPackage {
    id: String,
    name: String,
    version: String,
    license: Option<String>,
    source: Option<String>,
}

#[derive(Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    deps: Vec<NodeDep>,
}

#[derive(Deserialize)]
struct NodeDep {
    pkg: String,
    dep_kinds: Vec<DepKind>,
}

#[derive(Deserialize)]
struct DepKind {
    kind: Option<String>,
}

fn closure(
    meta: &Metadata,
    sums: &BTreeMap<(String, String), String>,
) -> Result<(String, Vec<Crate>)> {
    let by_id: BTreeMap<&str, &MetaPackage> =
        meta.packages.iter().map(|p| (p.id.as_str(), p)).collect();
    let agent = meta
        .packages
        .iter()
        .find(|p| p.name == AGENT_PACKAGE && p.source.is_none())
        .with_context(|| format!("cargo metadata has no workspace package {AGENT_PACKAGE}"))?;
    let nodes: BTreeMap<&str, &Node> = meta
        .resolve
        .as_ref()
        .context("cargo metadata has no resolve graph")?
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n))
        .collect();
    let mut seen = BTreeSet::new();
    let mut todo = vec![agent.id.as_str()];
    while let Some(id) = todo.pop() {
        let node = nodes
            .get(id)
            .with_context(|| format!("{id} is not in the resolve graph"))?;
        for d in &node.deps {
            let built = d.dep_kinds.iter().any(|k| k.kind.as_deref() != Some("dev"));
            if built && seen.insert(d.pkg.as_str()) {
                todo.push(d.pkg.as_str());
            }
        }
    }
    let mut crates = seen
        .into_iter()
        .map(|id| {
            let p = by_id
                .get(id)
                .with_context(|| format!("{id} is not among cargo metadata's packages"))?;
            let registry = p
                .source
                .as_deref()
                .is_some_and(|s| s.starts_with("registry+"));
            let checksum = sums.get(&(p.name.clone(), p.version.clone())).cloned();
            if registry && checksum.is_none() {
                bail!("Cargo.lock has no checksum for {} {}", p.name, p.version);
            }
            Ok(Crate {
                name: p.name.clone(),
                version: p.version.clone(),
                checksum,
                license: p
                    .license
                    .as_deref()
                    .map(normalise_license)
                    .unwrap_or_else(|| "NOASSERTION".into()),
                registry,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    crates.sort();
    Ok((agent.version.clone(), crates))
}

/// Cargo's old `MIT/Apache-2.0` form as the SPDX expression it means.
fn normalise_license(s: &str) -> String {
    s.split('/').map(str::trim).collect::<Vec<_>>().join(" OR ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_closure_has_checksums_and_no_dev_only_crates() {
        let (version, crates) = agent_closure("x86_64-unknown-linux-musl").unwrap();
        assert!(!version.is_empty());
        let names: BTreeSet<&str> = crates.iter().map(|c| c.name.as_str()).collect();
        for needed in ["ttrpc", "tokio", "protocols", "nix"] {
            assert!(names.contains(needed), "{needed} missing from {names:?}");
        }
        // agent-ctl is a dev-dependency of the agent only; tempfile is one
        // too, but also a build dependency (of ttrpc-codegen), so it stays.
        assert!(!names.contains("agent-ctl"), "dev-dependency listed");
        assert!(names.contains("tempfile"), "build dependency missing");
        assert!(!names.contains(AGENT_PACKAGE));
        for c in &crates {
            assert_eq!(c.registry, c.checksum.is_some(), "{c:?}");
            if let Some(sum) = &c.checksum {
                assert_eq!(sum.len(), 64, "{c:?}");
            }
        }
    }

    #[test]
    fn old_slash_licences_become_or() {
        assert_eq!(normalise_license("MIT/Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(normalise_license("MIT OR Apache-2.0"), "MIT OR Apache-2.0");
    }
}
