use std::fs;
use std::process::Command;

use super::*;

const SCHEMA: &str = include_str!("spdx-schema-2.3.json");

/// What the SPDX 2.3 JSON schema (spdx-spec, see SCHEMA-NOTICE.md) finds wrong.
fn spdx_errors(doc: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

fn assert_valid_spdx(doc: &Value) {
    let errors = spdx_errors(doc);
    assert!(
        errors.is_empty(),
        "SBOM does not match SPDX 2.3: {errors:#?}"
    );
}

/// A real .deb built with dpkg-deb: a DEP-5 copyright, a Source field.
fn make_deb(dir: &Path, name: &str, copyright: Option<&str>, doc_link: Option<&str>) -> PathBuf {
    let root = dir.join(format!("{name}-root"));
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1:2.0-1+b1\nArchitecture: amd64\nSource: {name}-src (2.0-1)\n\
             Maintainer: t <t@example.org>\nDescription: test\n"
        ),
    )
    .unwrap();
    let doc = root.join("usr/share/doc");
    fs::create_dir_all(&doc).unwrap();
    if let Some(text) = copyright {
        fs::create_dir_all(doc.join(name)).unwrap();
        fs::write(doc.join(name).join("copyright"), text).unwrap();
    }
    if let Some(target) = doc_link {
        std::os::unix::fs::symlink(target, doc.join(name)).unwrap();
    }
    let deb = dir.join(format!("{name}.deb"));
    crate::testutil::run_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "-b"])
            .arg(&root)
            .arg(&deb),
    );
    deb
}

fn entry(name: &str, deb: &Path) -> LockEntry {
    LockEntry {
        name: name.into(),
        version: "1:2.0-1+b1".into(),
        arch: "amd64".into(),
        sha256: sha256_file(deb).unwrap(),
        snapshot: None,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    entries: Vec<LockEntry>,
    debs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
                Files: *\nCopyright: someone\nLicense: GPL-2+ or public-domain\n";
    let a = make_deb(dir.path(), "libfoo1", Some(dep5), None);
    let b = make_deb(dir.path(), "libfoo-bin", None, Some("libfoo1"));
    let c = make_deb(
        dir.path(),
        "plain",
        Some("All rights reserved, kind of.\n"),
        None,
    );
    let entries = vec![
        entry("libfoo1", &a),
        entry("libfoo-bin", &b),
        entry("plain", &c),
    ];
    let files: Vec<PathBuf> = [
        "kata-agent",
        "vmlinuz",
        "kernel.config",
        "kata-containers.img",
        "kata-containers-initrd.img",
    ]
    .iter()
    .map(|n| {
        let p = dir.path().join(n);
        fs::write(&p, n.as_bytes()).unwrap();
        p
    })
    .collect();
    Fixture {
        _dir: dir,
        entries,
        debs: vec![a, b, c],
        files,
    }
}

fn build(f: &Fixture, epoch: i64) -> Value {
    let inputs = Inputs {
        arch: Arch::X86_64,
        epoch,
        packages: &f.entries,
        debs: &f.debs,
        agent: &f.files[0],
        kernel: Kernel {
            release: "6.12.95",
            source: "linux-source-6.12 6.12.95-1~bpo12+1",
            source_sha256: Some(&"c3".repeat(32)),
            image: &f.files[1],
            config: &f.files[2],
        },
        images: &f.files[3..],
    };
    let debs = debian::describe(inputs.packages, inputs.debs).unwrap();
    let (version, crates) = crates::agent_closure("x86_64-unknown-linux-musl").unwrap();
    document(&inputs, &debs, &version, &crates).unwrap()
}

fn package<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name}"))
}

#[test]
fn the_sbom_is_valid_spdx_2_3_and_lists_everything() {
    let f = fixture();
    let doc = build(&f, 1_783_275_987);
    assert_valid_spdx(&doc);
    // The validator does reject what breaks the schema.
    let mut broken = doc.clone();
    broken["packages"][0]["filesAnalyzed"] = json!("no");
    broken["creationInfo"]["creators"] = json!([]);
    assert_eq!(spdx_errors(&broken).len(), 2, "{:?}", spdx_errors(&broken));
    assert_eq!(doc["creationInfo"]["created"], "2026-07-05T18:26:27Z");

    let foo = package(&doc, "libfoo1");
    assert_eq!(
        foo["licenseDeclared"],
        "GPL-2.0-or-later OR LicenseRef-Debian-public-domain"
    );
    assert_eq!(
        foo["sourceInfo"],
        "built from Debian source package libfoo1-src 2.0-1"
    );
    assert_eq!(
        foo["checksums"][0]["checksumValue"],
        f.entries[0].sha256.as_str()
    );
    assert_eq!(foo["versionInfo"], "1:2.0-1+b1");
    // The doc directory symlink takes the target package's copyright.
    assert_eq!(
        package(&doc, "libfoo-bin")["licenseDeclared"],
        foo["licenseDeclared"]
    );
    assert_eq!(package(&doc, "plain")["licenseDeclared"], "NOASSERTION");
    let ttrpc = package(&doc, "ttrpc");
    assert_eq!(
        ttrpc["checksums"][0]["checksumValue"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_ne!(ttrpc["licenseDeclared"], "NOASSERTION");
    assert_eq!(
        package(&doc, "linux-source-6.12")["versionInfo"],
        "6.12.95-1~bpo12+1"
    );

    let rels = doc["relationships"].as_array().unwrap();
    let has = |a: &str, kind: &str, b: &str| {
        rels.iter().any(|r| {
            r["spdxElementId"] == a && r["relationshipType"] == kind && r["relatedSpdxElement"] == b
        })
    };
    let img = "SPDXRef-image-kata-containers.img";
    assert!(has("SPDXRef-DOCUMENT", "DESCRIBES", img));
    assert!(has(img, "CONTAINS", "SPDXRef-kata-agent"));
    assert!(has(img, "CONTAINS", foo["SPDXID"].as_str().unwrap()));
    assert!(has(
        "SPDXRef-kata-agent",
        "GENERATED_FROM",
        ttrpc["SPDXID"].as_str().unwrap()
    ));
    assert!(has(
        "SPDXRef-kernel",
        "GENERATED_FROM",
        "SPDXRef-kernel-source"
    ));
    assert!(has(
        "SPDXRef-kernel",
        "GENERATED_FROM",
        "SPDXRef-kernel-config"
    ));
    // Every relationship names an element of the document.
    let ids: BTreeSet<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["SPDXID"].as_str().unwrap())
        .chain(["SPDXRef-DOCUMENT"])
        .collect();
    assert_eq!(
        ids.len(),
        doc["packages"].as_array().unwrap().len() + 1,
        "duplicate SPDXID"
    );
    for id in &ids {
        let rest = id.strip_prefix("SPDXRef-").unwrap();
        assert!(
            rest.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "{id}"
        );
    }
    for r in rels {
        assert!(ids.contains(r["spdxElementId"].as_str().unwrap()), "{r}");
        assert!(
            ids.contains(r["relatedSpdxElement"].as_str().unwrap()),
            "{r}"
        );
    }
    // Every LicenseRef used is declared.
    let declared: Vec<&str> = doc["hasExtractedLicensingInfos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["licenseId"].as_str().unwrap())
        .collect();
    assert!(declared.contains(&"LicenseRef-Debian-public-domain"));
}

#[test]
fn equal_inputs_give_equal_bytes_and_the_namespace_follows_the_content() {
    let f = fixture();
    let one = render(&build(&f, 1_700_000_000)).unwrap();
    let two = render(&build(&f, 1_700_000_000)).unwrap();
    assert_eq!(one, two);
    let later = build(&f, 1_700_000_001);
    let ns = |s: &str| -> String {
        serde_json::from_str::<Value>(s).unwrap()["documentNamespace"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(ns(&one).starts_with("https://spdx.org/spdxdocs/kata-image-x86_64-"));
    assert_ne!(ns(&one), later["documentNamespace"].as_str().unwrap());
}
