//! The check that the `kata` profile has Kata's guest kernel feature set:
//! every `=y` symbol of Kata's fragments (names in kernel/kata-symbols/<arch>.txt,
//! derived from a pinned Kata commit) is `=y` in the final .config, apart from
//! the reasoned exceptions in kernel/kata-symbols/exceptions.txt.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::paths::repo_root;

use super::fragments::parse;

fn dir() -> PathBuf {
    repo_root().join("kernel").join("kata-symbols")
}

/// Kata's wanted symbols for `arch` (`CONFIG_*` names, one a line).
pub fn wanted(arch: Arch) -> Result<Vec<String>> {
    let path = dir().join(format!("{}.txt", arch.name()));
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.starts_with("CONFIG_") || line.contains(char::is_whitespace) {
            bail!("{}:{}: not a CONFIG_ name: {line:?}", path.display(), n + 1);
        }
        out.push(line.to_string());
    }
    Ok(out)
}

/// The exceptions that apply to `arch`: symbol -> reason.
pub fn exceptions(arch: Arch) -> Result<BTreeMap<String, String>> {
    let path = dir().join("exceptions.txt");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_exceptions(&text, arch).with_context(|| format!("in {}", path.display()))
}

/// `SYMBOL ARCHES: REASON` lines; ARCHES is `all` or a comma list of arch names.
fn parse_exceptions(text: &str, arch: Arch) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("line {}: expected `CONFIG_X ARCHES: reason`", n + 1);
        let (head, reason) = line.split_once(':').with_context(bad)?;
        let mut words = head.split_whitespace();
        let (Some(sym), Some(arches), None) = (words.next(), words.next(), words.next()) else {
            bail!(bad());
        };
        if !sym.starts_with("CONFIG_") || reason.trim().is_empty() {
            bail!(bad());
        }
        let names: Vec<&str> = arches.split(',').collect();
        for a in &names {
            if *a != "all" && !Arch::ALL.iter().any(|x| x.name() == *a) {
                bail!("line {}: unknown arch {a:?}", n + 1);
            }
        }
        if names.contains(&"all") || names.contains(&arch.name()) {
            out.insert(sym.to_string(), reason.trim().to_string());
        }
    }
    Ok(out)
}

/// Wanted symbols that `config` (a .config or merged fragments) does not set
/// to `y` and that have no exception; and exceptions `config` does set to `y`
/// (stale: the list must only hold what is really missing).
pub fn compare(
    wanted: &[String],
    exceptions: &BTreeMap<String, String>,
    config: &BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>) {
    let is_y = |s: &str| config.get(s).map(String::as_str) == Some("y");
    let missing = wanted
        .iter()
        .filter(|s| !is_y(s) && !exceptions.contains_key(*s))
        .cloned()
        .collect();
    let stale = exceptions.keys().filter(|s| is_y(s)).cloned().collect();
    (missing, stale)
}

/// Fail unless the final .config at `config_path` has all of Kata's symbols
/// for `arch` but the listed exceptions.
pub fn check(arch: Arch, config_path: &Path) -> Result<()> {
    let text = fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let (missing, stale) = compare(&wanted(arch)?, &exceptions(arch)?, &parse(&text));
    if missing.is_empty() && stale.is_empty() {
        return Ok(());
    }
    bail!(
        "the kata profile must have Kata's guest kernel symbols (kernel/kata-symbols/):\n  \
         missing from {} ({}): {}\n  listed as exceptions but set: {}",
        config_path.display(),
        missing.len(),
        missing.join(" "),
        stale.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fragments::{for_arch, fragments_root, Profile};

    #[test]
    fn parses_exceptions_per_arch() {
        let t = "# c\nCONFIG_A all: gone\nCONFIG_B x86_64,s390x: renamed to C\n";
        let x86 = parse_exceptions(t, Arch::X86_64).unwrap();
        assert_eq!(
            x86.get("CONFIG_B").map(String::as_str),
            Some("renamed to C")
        );
        let arm = parse_exceptions(t, Arch::Aarch64).unwrap();
        assert_eq!(arm.keys().collect::<Vec<_>>(), vec!["CONFIG_A"]);
        assert!(parse_exceptions("CONFIG_A all\n", Arch::X86_64).is_err());
        assert!(parse_exceptions("CONFIG_A mips: x\n", Arch::X86_64).is_err());
        assert!(parse_exceptions("CONFIG_A all:  \n", Arch::X86_64).is_err());
    }

    #[test]
    fn compare_finds_missing_and_stale() {
        let wanted = vec!["CONFIG_A".to_string(), "CONFIG_B".into(), "CONFIG_C".into()];
        let exc = BTreeMap::from([
            ("CONFIG_B".to_string(), "r".to_string()),
            ("CONFIG_D".to_string(), "r".to_string()),
        ]);
        let cfg = parse("CONFIG_A=y\nCONFIG_C=m\nCONFIG_D=y\n");
        let (missing, stale) = compare(&wanted, &exc, &cfg);
        assert_eq!(missing, vec!["CONFIG_C"]);
        assert_eq!(stale, vec!["CONFIG_D"]);
    }

    /// The kata profile's fragments ask for every symbol of Kata's lists
    /// (the build then checks the final .config the same way, so a symbol
    /// olddefconfig drops fails the kernel step, see `check`).
    #[test]
    fn kata_profile_fragments_cover_kata_symbols() {
        for arch in Arch::ALL {
            let mut merged = BTreeMap::new();
            for f in for_arch(&fragments_root(), arch, Profile::Kata).unwrap() {
                merged.extend(parse(&fs::read_to_string(&f.path).unwrap()));
            }
            let wanted = wanted(arch).unwrap();
            assert!(wanted.len() > 500, "{arch}: {} symbols", wanted.len());
            let (missing, stale) = compare(&wanted, &exceptions(arch).unwrap(), &merged);
            assert!(missing.is_empty(), "{arch}: fragments lack {missing:?}");
            assert!(stale.is_empty(), "{arch}: exceptions set anyway {stale:?}");
        }
    }

    /// The same against the last built kata kernel's .config, when one is in
    /// the artifacts (cargo xtask kernel exports it).
    #[test]
    fn built_kata_config_has_kata_symbols() {
        for arch in Arch::ALL {
            let config = crate::paths::artifacts_dir(arch).join("kernel.config");
            let Ok(text) = fs::read_to_string(&config) else {
                // Not a missing capability: `cargo xtask test` runs the
                // cargo stage (strict) before any kernel is built.
                eprintln!(
                    "SKIPPED (not applicable here) {arch}: no built kernel at {}",
                    config.display()
                );
                continue;
            };
            // IPVS is only in the kata profile's fragments.
            if !text.contains("CONFIG_IP_VS=y") {
                eprintln!(
                    "SKIPPED {arch}: {} is a minimal-profile kernel",
                    config.display()
                );
                continue;
            }
            check(arch, &config).unwrap();
        }
    }
}
