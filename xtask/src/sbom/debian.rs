//! What the SBOM says about a Debian package: its source package and the
//! licences its `/usr/share/doc/<name>/copyright` declares (Debian's
//! machine-readable copyright format, DEP-5), mapped to SPDX identifiers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::rootfs::LockEntry;

/// One package of the rootfs, as the SBOM lists it.
pub struct DebPackage {
    pub entry: LockEntry,
    pub source: String,
    pub source_version: String,
    /// An SPDX licence expression, or NOASSERTION.
    pub license: String,
    /// How the licence was found (the copyright file, or why there is none).
    pub license_comment: String,
}

/// Read every package's control fields and copyright file. A package whose
/// doc directory is a symlink to another package's (libgcc-s1 -> gcc-12-base)
/// takes that package's copyright when it is in the same set.
pub fn describe(entries: &[LockEntry], debs: &[PathBuf]) -> Result<Vec<DebPackage>> {
    let mut raw = Vec::new();
    for (entry, deb) in entries.iter().zip(debs) {
        let fields = control_fields(deb)?;
        let doc = copyright(deb, &entry.name)
            .with_context(|| format!("reading the copyright file of {}", entry.name))?;
        raw.push((entry.clone(), fields, doc));
    }
    let texts: BTreeMap<String, String> = raw
        .iter()
        .filter_map(|(e, _, d)| match d {
            Doc::Text(t) => Some((e.name.clone(), t.clone())),
            _ => None,
        })
        .collect();
    Ok(raw
        .into_iter()
        .map(|(entry, (source, source_version), doc)| {
            let (license, license_comment) = match &doc {
                Doc::Text(t) => from_copyright(t, &entry.name),
                Doc::LinkTo(other) => match texts.get(other) {
                    Some(t) => from_copyright(t, other),
                    None => (
                        "NOASSERTION".to_string(),
                        format!(
                            "/usr/share/doc/{} links to {other}, which is not in the image",
                            entry.name
                        ),
                    ),
                },
                Doc::Missing => (
                    "NOASSERTION".to_string(),
                    format!("the package has no /usr/share/doc/{}/copyright", entry.name),
                ),
            };
            DebPackage {
                entry,
                source,
                source_version,
                license,
                license_comment,
            }
        })
        .collect())
}

/// The licence expression and the comment saying where it came from.
fn from_copyright(text: &str, owner: &str) -> (String, String) {
    match declared_licenses(text) {
        Some(expr) => (
            expr,
            format!("from the License fields of /usr/share/doc/{owner}/copyright (DEP-5)"),
        ),
        None => (
            "NOASSERTION".to_string(),
            format!("/usr/share/doc/{owner}/copyright is not in the machine-readable format"),
        ),
    }
}

/// `Source` and its version from the control file (`Source: name (version)`);
/// a package without a Source field is its own source.
fn control_fields(deb: &Path) -> Result<(String, String)> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .args(["Package", "Version", "Source"])
        .output()
        .context("running dpkg-deb -f")?;
    if !out.status.success() {
        bail!(
            "dpkg-deb -f {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_control(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("control fields of {}", deb.display()))
}

fn parse_control(text: &str) -> Result<(String, String)> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    let package = field("Package").context("no Package field")?;
    let version = field("Version").context("no Version field")?;
    Ok(match field("Source") {
        None => (package, version),
        Some(src) => match src.split_once(' ') {
            Some((name, v)) => (
                name.to_string(),
                v.trim_matches(|c| c == '(' || c == ')' || c == ' ')
                    .to_string(),
            ),
            None => (src, version),
        },
    })
}

enum Doc {
    Text(String),
    /// The doc directory is a symlink to this package's.
    LinkTo(String),
    Missing,
}

/// The package's copyright file, read from its data tarball.
fn copyright(deb: &Path, name: &str) -> Result<Doc> {
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running dpkg-deb --fsys-tarfile")?;
    let stdout = child.stdout.take().context("dpkg-deb has no stdout")?;
    let found = find_copyright(stdout, name);
    // Drain what is left so dpkg-deb is not killed by a broken pipe.
    let out = child
        .wait_with_output()
        .context("waiting for dpkg-deb --fsys-tarfile")?;
    let doc = found.with_context(|| format!("reading the data of {}", deb.display()))?;
    if !out.status.success() && matches!(doc, Doc::Missing) {
        bail!(
            "dpkg-deb --fsys-tarfile {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(doc)
}

fn find_copyright(data: impl Read, name: &str) -> Result<Doc> {
    let file = format!("usr/share/doc/{name}/copyright");
    let dir = format!("usr/share/doc/{name}");
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").trim_end_matches('/');
        if path == file && entry.header().entry_type().is_file() {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .with_context(|| format!("{file} is not UTF-8"))?;
            return Ok(Doc::Text(text));
        }
        if path == dir && entry.header().entry_type().is_symlink() {
            if let Some(target) = entry.link_name()? {
                let target = target.to_string_lossy();
                if let Some(other) = target.rsplit('/').next().filter(|s| !s.is_empty()) {
                    return Ok(Doc::LinkTo(other.to_string()));
                }
            }
        }
    }
    Ok(Doc::Missing)
}

/// The licences a DEP-5 copyright file declares, as one SPDX expression
/// (each distinct `License:` expression, joined with AND). None when the
/// file is not in the machine-readable format.
pub fn declared_licenses(text: &str) -> Option<String> {
    let first = text.lines().find(|l| !l.trim().is_empty())?;
    if !first.starts_with("Format:") {
        return None;
    }
    let exprs: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("License:"))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(to_spdx_expression)
        .collect();
    if exprs.is_empty() {
        return None;
    }
    let parts: Vec<String> = exprs
        .iter()
        .map(|e| {
            if exprs.len() > 1 && e.contains(' ') {
                format!("({e})")
            } else {
                e.clone()
            }
        })
        .collect();
    Some(parts.join(" AND "))
}

/// One DEP-5 licence expression (`GPL-2+ or BSD-3-clause`, `LGPL-2.1+ and
/// GPL-2+`, `GPL-2+ with OpenSSL exception`) in SPDX terms.
fn to_spdx_expression(debian: &str) -> String {
    let words: Vec<&str> = debian.split_whitespace().collect();
    let mut out: Vec<String> = Vec::new();
    let mut name: Vec<&str> = Vec::new();
    let flush = |name: &mut Vec<&str>, out: &mut Vec<String>| {
        if !name.is_empty() {
            out.push(to_spdx_id(&name.join("-")));
            name.clear();
        }
    };
    for w in words {
        match w.to_ascii_lowercase().trim_matches(',') {
            "or" => {
                flush(&mut name, &mut out);
                out.push("OR".into());
            }
            "and" => {
                flush(&mut name, &mut out);
                out.push("AND".into());
            }
            _ => name.push(w.trim_matches(',')),
        }
    }
    flush(&mut name, &mut out);
    out.join(" ")
}

/// A Debian short licence name as an SPDX licence id: the GPL family with
/// `+` as `-or-later`, the names Debian spells differently, and a
/// `LicenseRef-Debian-<name>` for the rest (the document declares those).
pub fn to_spdx_id(name: &str) -> String {
    let (base, later) = match name.strip_suffix('+') {
        Some(b) => (b, true),
        None => (name, false),
    };
    let gnu = ["GPL", "LGPL", "AGPL", "GFDL"];
    if let Some((family, version)) = base.split_once('-') {
        let version_ok =
            !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if gnu.contains(&family) && version_ok {
            let version = if version.contains('.') {
                version.to_string()
            } else {
                format!("{version}.0")
            };
            let suffix = if later { "or-later" } else { "only" };
            return format!("{family}-{version}-{suffix}");
        }
    }
    let known = [
        ("expat", "MIT"),
        ("mit", "MIT"),
        ("bsd-2-clause", "BSD-2-Clause"),
        ("bsd-3-clause", "BSD-3-Clause"),
        ("bsd-4-clause", "BSD-4-Clause"),
        ("isc", "ISC"),
        ("zlib", "Zlib"),
        ("apache-2.0", "Apache-2.0"),
        ("mpl-1.1", "MPL-1.1"),
        ("mpl-2.0", "MPL-2.0"),
        ("cc0-1.0", "CC0-1.0"),
        ("artistic-2.0", "Artistic-2.0"),
        ("psf-2", "PSF-2.0"),
        ("curl", "curl"),
        ("openssl", "OpenSSL"),
        ("unicode-dfs-2016", "Unicode-DFS-2016"),
    ];
    if !later {
        if let Some((_, id)) = known.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            return id.to_string();
        }
    }
    license_ref(name)
}

/// `LicenseRef-Debian-<name>`, with what SPDX ids may not hold replaced.
pub fn license_ref(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| match c {
            '+' => 'P',
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => c,
            _ => '-',
        })
        .collect();
    format!("LicenseRef-Debian-{clean}")
}

/// The LicenseRefs an expression uses.
pub fn license_refs(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| w.starts_with("LicenseRef-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_debian_names_to_spdx() {
        assert_eq!(to_spdx_id("GPL-2+"), "GPL-2.0-or-later");
        assert_eq!(to_spdx_id("GPL-2"), "GPL-2.0-only");
        assert_eq!(to_spdx_id("LGPL-2.1+"), "LGPL-2.1-or-later");
        assert_eq!(to_spdx_id("Expat"), "MIT");
        assert_eq!(to_spdx_id("BSD-3-clause"), "BSD-3-Clause");
        assert_eq!(
            to_spdx_id("public-domain"),
            "LicenseRef-Debian-public-domain"
        );
        assert_eq!(to_spdx_id("MPL-2.0+"), "LicenseRef-Debian-MPL-2.0P");
        assert_eq!(
            to_spdx_expression("GPL-2+ or BSD-3-clause"),
            "GPL-2.0-or-later OR BSD-3-Clause"
        );
        assert_eq!(
            to_spdx_expression("GPL-2+ with OpenSSL exception"),
            "LicenseRef-Debian-GPL-2P-with-OpenSSL-exception"
        );
    }

    #[test]
    fn reads_dep5_license_fields() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
                    Upstream-Name: x\n\nFiles: *\nCopyright: me\nLicense: GPL-2+\n\n\
                    Files: lib/*\nLicense: LGPL-2.1+ or MIT\n\nLicense: GPL-2+\n Text of it.\n";
        assert_eq!(
            declared_licenses(text).as_deref(),
            Some("GPL-2.0-or-later AND (LGPL-2.1-or-later OR MIT)")
        );
        assert_eq!(declared_licenses("This is free software.\n"), None);
        let refs: Vec<&str> =
            license_refs("(MIT OR LicenseRef-Debian-a) AND LicenseRef-Debian-b").collect();
        assert_eq!(refs, ["LicenseRef-Debian-a", "LicenseRef-Debian-b"]);
    }

    #[test]
    fn control_source_with_and_without_version() {
        let p = parse_control("Package: libc6\nVersion: 2.36-9\nSource: glibc\n").unwrap();
        assert_eq!(p, ("glibc".into(), "2.36-9".into()));
        let p = parse_control("Package: libx1\nVersion: 1.0-1+b1\nSource: x (1.0-1)\n").unwrap();
        assert_eq!(p, ("x".into(), "1.0-1".into()));
        let p = parse_control("Package: busybox\nVersion: 1:1.35\n").unwrap();
        assert_eq!(p, ("busybox".into(), "1:1.35".into()));
        assert!(parse_control("Version: 1\n").is_err());
    }
}
