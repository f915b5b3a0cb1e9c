//! Ask apt about packages of any guest arch: `apt-cache show` stanzas and the
//! Depends/Pre-Depends closure a recipe's lock needs.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::lock::LockEntry;
use crate::arch::Arch;

/// The fields of one `apt-cache show` stanza that the lock needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stanza {
    pub package: String,
    pub version: String,
    pub architecture: String,
    pub sha256: String,
    /// Depends and Pre-Depends: a list of alternative groups.
    pub depends: Vec<Vec<String>>,
}

impl Stanza {
    pub fn lock_entry(&self) -> LockEntry {
        LockEntry {
            name: self.package.clone(),
            version: self.version.clone(),
            arch: self.architecture.clone(),
            sha256: self.sha256.clone(),
            snapshot: None,
        }
    }
}

/// Parse `apt-cache show` output (RFC 822-style stanzas).
pub fn parse_stanzas(text: &str) -> Result<Vec<Stanza>> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut s = Stanza::default();
        for line in block.lines() {
            if line.starts_with([' ', '\t']) {
                continue; // continuation of a multi-line field (Description)
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "Package" => s.package = value.to_string(),
                "Version" => s.version = value.to_string(),
                "Architecture" => s.architecture = value.to_string(),
                "SHA256" => s.sha256 = value.to_string(),
                "Depends" | "Pre-Depends" => s.depends.extend(parse_depends(value)),
                _ => {}
            }
        }
        if s.package.is_empty() {
            continue;
        }
        // SHA256 may be missing: dpkg's status record of an installed package has none.
        if s.version.is_empty() || s.architecture.is_empty() {
            bail!(
                "apt-cache stanza for {} lacks Version or Architecture",
                s.package
            );
        }
        out.push(s);
    }
    Ok(out)
}

/// `a (>= 1) | b, c:any` -> [[a, b], [c]]: names only; apt's candidates of
/// one suite satisfy each other's version constraints.
pub fn parse_depends(value: &str) -> Vec<Vec<String>> {
    value
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let name = alt.split_whitespace().next()?;
                    let name = name.split(':').next().unwrap_or(name);
                    (!name.is_empty()).then(|| name.to_string())
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// The candidate stanzas of `names` for `arch`: `name:<arch>` first, then
/// `name:all` for architecture-independent packages. Missing names are absent.
pub fn show_candidates(arch: Arch, names: &[String]) -> Result<BTreeMap<String, Stanza>> {
    let mut found = BTreeMap::new();
    for qualifier in [arch.debian(), "all"] {
        let todo: Vec<String> = names
            .iter()
            .filter(|n| !found.contains_key(*n))
            .map(|n| format!("{n}:{qualifier}"))
            .collect();
        if todo.is_empty() {
            break;
        }
        let versions = parse_policy(&apt_cache(&["policy"], &todo)?);
        let specs: Vec<String> = versions
            .iter()
            .map(|(name, v)| format!("{name}:{qualifier}={v}"))
            .collect();
        if specs.is_empty() {
            continue;
        }
        for s in parse_stanzas(&apt_cache(&["show"], &specs)?)? {
            let wanted = versions.get(&s.package) == Some(&s.version);
            let arch_ok = s.architecture == arch.debian() || s.architecture == "all";
            // dpkg's status record of an installed package has no SHA256.
            if wanted && arch_ok && s.sha256.len() == 64 {
                found.insert(s.package.clone(), s);
            }
        }
    }
    Ok(found)
}

/// apt's candidate rule over downloadable versions only: highest pin
/// priority, then the highest version (listed first). A version that only
/// dpkg's status file knows (installed here, gone from the archive) cannot be
/// fetched, so it is never chosen.
pub fn parse_policy(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut name: Option<String> = None;
    let mut best: Option<(i64, String)> = None;
    let mut current: Option<String> = None;
    let mut flush = |name: &Option<String>, best: &mut Option<(i64, String)>| {
        if let (Some(n), Some((_, v))) = (name, best.take()) {
            out.insert(n.clone(), v);
        }
    };
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            flush(&name, &mut best);
            let header = line.trim_end_matches(':');
            name = Some(header.split(':').next().unwrap_or(header).to_string());
            current = None;
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let indent = line.len() - line.trim_start().len();
        match (indent, fields.as_slice()) {
            // " *** <version> <prio>" or "     <version> <prio>"
            (1, ["***", v, _]) | (5, [v, _]) => current = Some(v.to_string()),
            // "        <prio> <source...>"
            (8, [prio, source, ..]) if *source != "/var/lib/dpkg/status" => {
                if let (Some(v), Ok(p)) = (&current, prio.parse::<i64>()) {
                    if best.as_ref().is_none_or(|(bp, _)| p > *bp) {
                        best = Some((p, v.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    flush(&name, &mut best);
    out
}

/// apt-cache exits 100 when some names are unknown, and prints the rest.
fn apt_cache(args: &[&str], specs: &[String]) -> Result<String> {
    let out = Command::new("apt-cache")
        .args(args)
        .args(specs)
        .output()
        .with_context(|| format!("running apt-cache {}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Resolve `roots` for `arch`; with `follow` also their Depends/Pre-Depends
/// closure, skipping `exclude`. For an alternative group the first existing,
/// non-excluded name wins.
pub fn resolve(
    arch: Arch,
    roots: &[String],
    follow: bool,
    exclude: &[String],
) -> Result<Vec<LockEntry>> {
    let excluded: BTreeSet<&str> = exclude.iter().map(String::as_str).collect();
    let mut known: BTreeMap<String, Stanza> = BTreeMap::new();
    known.extend(show_candidates(arch, roots)?);
    if let Some(missing) = roots.iter().find(|r| !known.contains_key(*r)) {
        bail!(
            "package {missing} has no candidate for {} in apt's lists (run apt-get update?)",
            arch.debian()
        );
    }
    if !follow {
        return Ok(known.values().map(Stanza::lock_entry).collect());
    }
    loop {
        let frontier = next_frontier(arch, &known, &excluded)?;
        if frontier.is_empty() {
            break;
        }
        known.extend(show_candidates(arch, &frontier)?);
    }
    Ok(known.values().map(Stanza::lock_entry).collect())
}

/// Dependency names not yet known. All alternatives of the open groups are
/// looked up in one apt call (apt is slow to start), then the first real,
/// non-excluded alternative of each group is taken.
fn next_frontier(
    arch: Arch,
    known: &BTreeMap<String, Stanza>,
    excluded: &BTreeSet<&str>,
) -> Result<Vec<String>> {
    let mut open: Vec<(&str, Vec<String>)> = Vec::new();
    for stanza in known.values() {
        for group in &stanza.depends {
            let candidates: Vec<String> = group
                .iter()
                .filter(|n| !excluded.contains(n.as_str()))
                .cloned()
                .collect();
            if candidates.is_empty() || candidates.iter().any(|n| known.contains_key(n)) {
                continue;
            }
            open.push((stanza.package.as_str(), candidates));
        }
    }
    let mut names: Vec<String> = open.iter().flat_map(|(_, c)| c.clone()).collect();
    names.sort();
    names.dedup();
    let real = if names.is_empty() {
        BTreeMap::new()
    } else {
        show_candidates(arch, &names)?
    };
    let mut next = BTreeSet::new();
    for (package, candidates) in &open {
        match candidates.iter().find(|n| real.contains_key(n.as_str())) {
            Some(n) => {
                next.insert(n.clone());
            }
            None => bail!(
                "{package} depends on {} for {}: no real package (virtual?); add a provider to the recipe or exclude it",
                candidates.join(" | "),
                arch.debian()
            ),
        }
    }
    Ok(next.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_skips_versions_only_dpkg_knows() {
        let text = "\
libpcre2-8-0:
  Installed: 10.42-1+deb12u1
  Candidate: 10.42-1+deb12u1
  Version table:
 *** 10.42-1+deb12u1 100
        100 /var/lib/dpkg/status
     10.42-1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
systemd:s390x:
  Installed: (none)
  Candidate: 252.39-1~deb12u2
  Version table:
     254.26-1~bpo12+1 100
        100 http://deb.debian.org/debian bookworm-backports/main s390x Packages
     252.39-1~deb12u2 500
        500 http://deb.debian.org/debian bookworm/main s390x Packages
ca-certificates:arm64:
  Installed: (none)
  Candidate: (none)
  Version table:
";
        let v = parse_policy(text);
        assert_eq!(v.get("libpcre2-8-0").map(String::as_str), Some("10.42-1"));
        assert_eq!(
            v.get("systemd").map(String::as_str),
            Some("252.39-1~deb12u2")
        );
        assert!(!v.contains_key("ca-certificates"));
    }

    #[test]
    fn parses_depends_groups() {
        let d = parse_depends("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any");
        assert_eq!(
            d,
            vec![
                vec!["libc6".to_string()],
                vec!["debconf".to_string(), "debconf-2.0".to_string()],
                vec!["python3".to_string()],
            ]
        );
    }

    #[test]
    fn parses_stanzas_and_skips_continuations() {
        let h = "a".repeat(64);
        let text = format!(
            "Package: mount\nVersion: 2.38\nArchitecture: arm64\nPre-Depends: libc6 (>= 2.34)\n\
             Depends: libmount1\nDescription: x\n more: text\nSHA256: {h}\n\n\
             Package: ca-certificates\nVersion: 2023\nArchitecture: all\nSHA256: {h}\n"
        );
        let s = parse_stanzas(&text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].depends.len(), 2);
        assert_eq!(s[1].lock_entry().arch, "all");
        let broken = "Package: x\nVersion: 1\nSHA256: 0\n";
        assert!(parse_stanzas(broken).is_err());
    }
}
