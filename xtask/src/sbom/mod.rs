//! `sbom.spdx.json`: the image's software bill of materials, SPDX 2.3 JSON.
//!
//! SPDX rather than CycloneDX: it is the ISO/IEC 5962 format Debian and the
//! kernel community already speak, its licence fields take SPDX expressions
//! (what DEP-5 copyright files and Cargo.toml map to), and its typed
//! relationships say exactly what the issue asks (the image CONTAINS the
//! packages and the agent, the agent and kernel are GENERATED_FROM their
//! sources).
//!
//! Byte-identical for equal inputs: the only time is SOURCE_DATE_EPOCH, every
//! list is sorted, and the document namespace is derived from the content
//! (`https://spdx.org/spdxdocs/kata-image-<arch>-<sha256>`, the sha256 of the
//! document serialised with an empty namespace), never random.

mod crates;
mod debian;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::cache::sha256_file;
use crate::rootfs::LockEntry;

pub const SBOM: &str = "sbom.spdx.json";
const NAMESPACE_PREFIX: &str = "https://spdx.org/spdxdocs/kata-image";

/// What an image build knows that the SBOM lists.
pub struct Inputs<'a> {
    pub arch: Arch,
    pub epoch: i64,
    /// The rootfs packages and their verified .debs, in the same order.
    pub packages: &'a [LockEntry],
    pub debs: &'a [PathBuf],
    pub agent: &'a Path,
    pub kernel: Kernel<'a>,
    /// The images (disk and initrd) beside the SBOM.
    pub images: &'a [PathBuf],
}

pub struct Kernel<'a> {
    pub release: &'a str,
    /// `linux-source-6.12 6.12.95-1~bpo12+1`: package and version.
    pub source: &'a str,
    pub source_sha256: Option<&'a str>,
    pub image: &'a Path,
    pub config: &'a Path,
}

/// Write the SBOM to `out`.
pub fn write(inputs: &Inputs, out: &Path) -> Result<()> {
    let debs = debian::describe(inputs.packages, inputs.debs)?;
    let (agent_version, crates) = crates::agent_closure(&inputs.arch.rust_target("musl"))?;
    let doc = document(inputs, &debs, &agent_version, &crates)?;
    std::fs::write(out, render(&doc)?).with_context(|| format!("writing {}", out.display()))
}

fn render(doc: &Value) -> Result<String> {
    let mut s = serde_json::to_string_pretty(doc).context("serialising the SBOM")?;
    s.push('\n');
    Ok(s)
}

fn document(
    inputs: &Inputs,
    debs: &[debian::DebPackage],
    agent_version: &str,
    crates: &[crates::Crate],
) -> Result<Value> {
    let arch = inputs.arch.name();
    let mut packages = Vec::new();
    let mut rels = Vec::new();
    let mut refs = BTreeSet::new();

    let mut image_ids = Vec::new();
    for img in inputs.images {
        let name = file_name(img)?;
        let id = spdx_id("image", &name);
        packages.push(json!({
            "SPDXID": id,
            "name": name,
            "versionInfo": arch,
            "packageFileName": name,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "checksums": [sha256(&sha256_file(img)?)],
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "OPERATING_SYSTEM",
        }));
        rels.push(rel("SPDXRef-DOCUMENT", "DESCRIBES", &id));
        image_ids.push(id);
    }

    let agent_id = "SPDXRef-kata-agent".to_string();
    packages.push(json!({
        "SPDXID": agent_id,
        "name": crates::AGENT_PACKAGE,
        "versionInfo": agent_version,
        "packageFileName": "usr/bin/kata-agent",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [sha256(&sha256_file(inputs.agent)?)],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "Apache-2.0",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "APPLICATION",
        "comment": format!("statically linked for {}", inputs.arch.rust_target("musl")),
    }));
    for img in &image_ids {
        rels.push(rel(img, "CONTAINS", &agent_id));
    }

    for d in debs {
        let e = &d.entry;
        let id = spdx_id("deb", &format!("{}-{}-{}", e.name, e.arch, &e.sha256[..12]));
        refs.extend(debian::license_refs(&d.license).map(str::to_string));
        packages.push(json!({
            "SPDXID": id,
            "name": e.name,
            "versionInfo": e.version,
            "packageFileName": crate::rootfs::debs::apt_file_name(e),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "checksums": [sha256(&e.sha256)],
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": d.license,
            "licenseComments": d.license_comment,
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("built from Debian source package {} {}", d.source, d.source_version),
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [purl(&deb_purl(e))],
        }));
        for img in &image_ids {
            rels.push(rel(img, "CONTAINS", &id));
        }
    }

    for c in crates {
        let id = spdx_id("crate", &format!("{}-{}", c.name, c.version));
        refs.extend(debian::license_refs(&c.license).map(str::to_string));
        let mut p = json!({
            "SPDXID": id,
            "name": c.name,
            "versionInfo": c.version,
            "downloadLocation": if c.registry {
                format!("https://crates.io/api/v1/crates/{}/{}/download", c.name, c.version)
            } else {
                "NOASSERTION".to_string()
            },
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": c.license,
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "SOURCE",
            "externalRefs": [purl(&format!("pkg:cargo/{}@{}", c.name, c.version))],
        });
        if let Some(sum) = &c.checksum {
            p["checksums"] = json!([sha256(sum)]);
        }
        if !c.registry {
            p["comment"] = json!("a member of the kata-image workspace");
        }
        packages.push(p);
        rels.push(rel(&agent_id, "GENERATED_FROM", &id));
    }

    packages.extend(kernel_packages(&inputs.kernel, &mut rels)?);

    let licence_infos: Vec<Value> = refs
        .iter()
        .map(|r| {
            json!({
                "licenseId": r,
                "name": r.trim_start_matches("LicenseRef-Debian-"),
                "extractedText": format!(
                    "A licence named `{}` in a Debian copyright file (DEP-5 short name) that no \
                     SPDX identifier covers; its text is in /usr/share/doc/<package>/copyright \
                     of each package that declares it.",
                    r.trim_start_matches("LicenseRef-Debian-")
                ),
            })
        })
        .collect();

    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("kata-image-{arch}"),
        "documentNamespace": "",
        "creationInfo": {
            "created": spdx_time(inputs.epoch)?,
            "creators": [format!("Tool: kata-image-xtask-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": rels,
    });
    if !licence_infos.is_empty() {
        doc["hasExtractedLicensingInfos"] = json!(licence_infos);
    }
    let digest = hex::encode(Sha256::digest(render(&doc)?.as_bytes()));
    doc["documentNamespace"] = json!(format!("{NAMESPACE_PREFIX}-{arch}-{digest}"));
    Ok(doc)
}

/// The kernel binary, its source and its config; the binary is generated
/// from the other two.
fn kernel_packages(k: &Kernel, rels: &mut Vec<Value>) -> Result<Vec<Value>> {
    let (src_name, src_version) = k
        .source
        .split_once(' ')
        .unwrap_or((k.source, "NOASSERTION"));
    let mut source = json!({
        "SPDXID": "SPDXRef-kernel-source",
        "name": src_name,
        "versionInfo": src_version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "GPL-2.0-only",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "SOURCE",
    });
    if let Some(sum) = k.source_sha256 {
        source["checksums"] = json!([sha256(sum)]);
    }
    let config_name = file_name(k.config)?;
    let config = json!({
        "SPDXID": "SPDXRef-kernel-config",
        "name": "kernel-config",
        "versionInfo": k.release,
        "packageFileName": config_name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [sha256(&sha256_file(k.config)?)],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "FILE",
        "comment": "the final .config: the defconfig merged with kernel/configs/fragments",
    });
    let image_name = file_name(k.image)?;
    let image = json!({
        "SPDXID": "SPDXRef-kernel",
        "name": "linux",
        "versionInfo": k.release,
        "packageFileName": image_name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [sha256(&sha256_file(k.image)?)],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "GPL-2.0-only",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "OPERATING_SYSTEM",
    });
    rels.push(rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-kernel"));
    rels.push(rel(
        "SPDXRef-kernel",
        "GENERATED_FROM",
        "SPDXRef-kernel-source",
    ));
    rels.push(rel(
        "SPDXRef-kernel",
        "GENERATED_FROM",
        "SPDXRef-kernel-config",
    ));
    Ok(vec![image, source, config])
}

fn rel(a: &str, kind: &str, b: &str) -> Value {
    json!({"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b})
}

fn sha256(hex: &str) -> Value {
    json!({"algorithm": "SHA256", "checksumValue": hex})
}

fn purl(locator: &str) -> Value {
    json!({"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": locator})
}

/// `pkg:deb/debian/<name>@<version>?arch=<arch>&distro=bookworm`, with the
/// version's `:` and `+` percent-encoded as the purl spec asks.
fn deb_purl(e: &LockEntry) -> String {
    let version = e.version.replace(':', "%3A").replace('+', "%2B");
    format!(
        "pkg:deb/debian/{}@{}?arch={}&distro=bookworm",
        e.name, version, e.arch
    )
}

/// `SPDXRef-<kind>-<name>` with what the id pattern (`[a-zA-Z0-9.-]+`)
/// does not allow replaced by `-`.
fn spdx_id(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{clean}")
}

/// SOURCE_DATE_EPOCH as SPDX's `YYYY-MM-DDThh:mm:ssZ`.
fn spdx_time(epoch: i64) -> Result<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch)
        .with_context(|| format!("SOURCE_DATE_EPOCH {epoch} is out of range"))?;
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f).context("formatting the SBOM creation time")
}

fn file_name(p: &Path) -> Result<String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no UTF-8 file name", p.display()))
}

#[cfg(test)]
mod tests;
