//! Config fragments (kernel/configs/fragments/{common,<arch>}/*.conf, plus
//! profile-kata/{common,<arch>}/*.conf for the `kata` profile) and the check
//! that every option they set survived `olddefconfig`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::paths::repo_root;

pub fn fragments_root() -> PathBuf {
    repo_root().join("kernel").join("configs").join("fragments")
}

/// One fragment file: its path relative to the fragments root (a stable label
/// for the cache key and messages) and its absolute path.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub label: String,
    pub path: PathBuf,
}

/// Which fragment set a kernel is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// What boots Kata's default command lines (virtio-blk, initrd, NVDIMM
    /// root with DAX, UEFI on arm64) and runs the agent's containers.
    Minimal,
    /// Minimal plus the rest of Kata's own guest kernel feature set
    /// (netfilter, IPVS, bridge/vxlan, tc, XFS, hardening, ...).
    Kata,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Minimal => "minimal",
            Profile::Kata => "kata",
        }
    }

    /// The extra fragment directory this profile adds, if any.
    fn dir(self) -> Option<&'static str> {
        match self {
            Profile::Minimal => None,
            Profile::Kata => Some("profile-kata"),
        }
    }
}

/// The fragments for `arch` and `profile`, in merge order: common/ then the
/// arch directory, then the profile's common/ and arch directories, each
/// sorted by file name (later files win on conflicts). A fragment whose
/// `# only-arch:` line does not name `arch` is left out.
pub fn for_arch(root: &Path, arch: Arch, profile: Profile) -> Result<Vec<Fragment>> {
    let mut subs = vec!["common".to_string(), arch.kernel_fragment_dir().to_string()];
    if let Some(p) = profile.dir() {
        subs.push(format!("{p}/common"));
        subs.push(format!("{p}/{}", arch.kernel_fragment_dir()));
    }
    let mut all = Vec::new();
    for sub in subs {
        for f in list_dir(root, &sub)? {
            let text = fs::read_to_string(&f.path)
                .with_context(|| format!("reading {}", f.path.display()))?;
            if applies_to(&text, arch) {
                all.push(f);
            }
        }
    }
    Ok(all)
}

/// Whether a fragment is for `arch`: it is unless it has an `# only-arch:`
/// line that does not name it.
fn applies_to(text: &str, arch: Arch) -> bool {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("# only-arch:"))
        .is_none_or(|list| list.split_whitespace().any(|a| a == arch.name()))
}

fn list_dir(root: &Path, sub: &str) -> Result<Vec<Fragment>> {
    let dir = root.join(sub);
    let mut names = Vec::new();
    for e in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".conf") {
            names.push(name);
        }
    }
    if names.is_empty() {
        bail!("no *.conf fragments in {}", dir.display());
    }
    names.sort();
    Ok(names
        .into_iter()
        .map(|n| Fragment {
            label: format!("{sub}/{n}"),
            path: dir.join(&n),
        })
        .collect())
}

/// Kconfig assignments of a config file: `CONFIG_X=v` and `# CONFIG_X is not set` (as "n").
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(sym) = rest.strip_suffix(" is not set") {
                if sym.starts_with("CONFIG_") {
                    out.insert(sym.to_string(), "n".to_string());
                }
            }
        } else if let Some((sym, val)) = line.split_once('=') {
            if sym.starts_with("CONFIG_") {
                out.insert(sym.to_string(), val.to_string());
            }
        }
    }
    out
}

/// An option a fragment asked for that the final .config does not have.
#[derive(Debug, PartialEq, Eq)]
pub struct Dropped {
    pub symbol: String,
    pub wanted: String,
    pub got: String,
    pub fragment: String,
}

/// Compare the merged wishes of `fragments` (label, text) with the final `.config`.
pub fn dropped(fragments: &[(String, String)], final_config: &str) -> Vec<Dropped> {
    let mut wanted: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (label, text) in fragments {
        for (sym, val) in parse(text) {
            wanted.insert(sym, (val, label.clone()));
        }
    }
    let have = parse(final_config);
    wanted
        .into_iter()
        .filter_map(|(sym, (val, fragment))| {
            // Absent from .config means the symbol's dependencies are off: "n".
            let got = have.get(&sym).cloned().unwrap_or_else(|| "n".to_string());
            (got != val).then_some(Dropped {
                symbol: sym,
                wanted: val,
                got,
                fragment,
            })
        })
        .collect()
}

/// Fail, listing every dropped option, unless the final config honours all fragments.
pub fn verify(fragments: &[Fragment], config_path: &Path) -> Result<()> {
    let mut texts = Vec::new();
    for f in fragments {
        let text =
            fs::read_to_string(&f.path).with_context(|| format!("reading {}", f.path.display()))?;
        texts.push((f.label.clone(), text));
    }
    let config = fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let lost = dropped(&texts, &config);
    if lost.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = lost
        .iter()
        .map(|d| {
            format!(
                "  {}: {} wants {}, final .config has {}",
                d.symbol, d.fragment, d.wanted, d.got
            )
        })
        .collect();
    bail!(
        "{} fragment option(s) did not make it into {} (missing dependency or \
         wrong arch?):\n{}",
        lost.len(),
        config_path.display(),
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_set_unset_and_ignores_comments() {
        let m = parse("# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"x y\"\n\nFOO=1\n");
        assert_eq!(m.get("CONFIG_A").map(String::as_str), Some("y"));
        assert_eq!(m.get("CONFIG_B").map(String::as_str), Some("n"));
        assert_eq!(m.get("CONFIG_S").map(String::as_str), Some("\"x y\""));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn reports_dropped_options_with_their_fragment() {
        let frags = vec![
            (
                "common/a.conf".to_string(),
                "CONFIG_A=y\nCONFIG_B=y\n".to_string(),
            ),
            (
                "x86_64/b.conf".to_string(),
                "# CONFIG_B is not set\nCONFIG_C=y\n# CONFIG_D is not set\n".to_string(),
            ),
        ];
        let config = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n";
        let lost = dropped(&frags, config);
        assert_eq!(
            lost,
            vec![
                Dropped {
                    symbol: "CONFIG_B".into(),
                    wanted: "n".into(),
                    got: "y".into(),
                    fragment: "x86_64/b.conf".into()
                },
                Dropped {
                    symbol: "CONFIG_C".into(),
                    wanted: "y".into(),
                    got: "n".into(),
                    fragment: "x86_64/b.conf".into()
                },
            ]
        );
    }

    #[test]
    fn only_arch_lines_select_fragments() {
        assert!(applies_to("CONFIG_A=y\n", Arch::S390x));
        let t = "# only-arch: x86_64 aarch64\nCONFIG_A=y\n";
        assert!(applies_to(t, Arch::Aarch64));
        assert!(!applies_to(t, Arch::S390x));
        let s390: Vec<String> = for_arch(&fragments_root(), Arch::S390x, Profile::Minimal)
            .unwrap()
            .into_iter()
            .map(|f| f.label)
            .collect();
        assert!(
            !s390.contains(&"common/nvdimm.conf".to_string()),
            "{s390:?}"
        );
        let kata = for_arch(&fragments_root(), Arch::X86_64, Profile::Kata).unwrap();
        let minimal = for_arch(&fragments_root(), Arch::X86_64, Profile::Minimal).unwrap();
        assert!(kata.len() > minimal.len());
        assert!(kata
            .iter()
            .any(|f| f.label == "profile-kata/common/netfilter.conf"));
        assert!(!minimal.iter().any(|f| f.label.starts_with("profile-kata/")));
    }

    #[test]
    fn every_arch_has_fragments_and_no_modules() {
        for arch in Arch::ALL {
            let frags = for_arch(&fragments_root(), arch, Profile::Kata).unwrap();
            assert!(frags.iter().any(|f| f.label.starts_with("common/")));
            assert!(frags
                .iter()
                .any(|f| f.label.starts_with(arch.kernel_fragment_dir())));
            let mut all = BTreeMap::new();
            for f in &frags {
                all.extend(parse(&fs::read_to_string(&f.path).unwrap()));
            }
            assert_eq!(all.get("CONFIG_MODULES").map(String::as_str), Some("n"));
            assert_eq!(all.get("CONFIG_RD_GZIP").map(String::as_str), Some("y"));
        }
    }
}
