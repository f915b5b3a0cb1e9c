//! `cargo xtask sign` / `cargo xtask verify`: an SSH signature over a
//! release's SHA256SUMS, and the check of a downloaded release.
//!
//! `ssh-keygen -Y sign` because a consumer verifies it with openssh-client
//! alone, which every distribution ships:
//!
//! ```sh
//! echo "kata-image-release $(cut -d' ' -f1,2 key.pub)" > allowed_signers
//! ssh-keygen -Y verify -f allowed_signers -I kata-image-release \
//!     -n kata-image-release -s SHA256SUMS.sig < SHA256SUMS && sha256sum -c SHA256SUMS
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

use crate::cache::sha256_file;

/// The signature namespace (`-n`) and the signer identity (`-I`): a
/// signature made for anything else does not verify as a release.
pub const NAMESPACE: &str = "kata-image-release";
pub const SUMS: &str = "SHA256SUMS";
pub const SIG: &str = "SHA256SUMS.sig";

#[derive(clap::Args)]
pub struct SignArgs {
    /// The SSH private key (ed25519 recommended).
    #[arg(long)]
    key: PathBuf,
    /// The release directory holding SHA256SUMS.
    #[arg(long, default_value_os_t = crate::release::dist_dir())]
    dir: PathBuf,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The SSH public key of the release (key.pub).
    #[arg(long)]
    key: PathBuf,
    /// The downloaded release directory (SHA256SUMS, SHA256SUMS.sig, the files).
    #[arg(long, default_value_os_t = crate::release::dist_dir())]
    dir: PathBuf,
}

pub fn run_sign(args: SignArgs) -> Result<()> {
    crate::setup::ensure_host_packages(&["release"])?;
    let sig = sign(&args.dir, &args.key)?;
    eprintln!("xtask sign: {}", sig.display());
    Ok(())
}

pub fn run_verify(args: VerifyArgs) -> Result<()> {
    crate::setup::ensure_host_packages(&["release"])?;
    let n = verify(&args.dir, &args.key)?;
    eprintln!(
        "xtask verify: {}: signature good, {n} files match SHA256SUMS",
        args.dir.display()
    );
    Ok(())
}

/// Sign `dir/SHA256SUMS` with `key`; returns the signature's path.
pub fn sign(dir: &Path, key: &Path) -> Result<PathBuf> {
    let sums = dir.join(SUMS);
    ensure!(sums.is_file(), "{} does not exist", sums.display());
    ensure!(
        key.is_file(),
        "signing key {} does not exist",
        key.display()
    );
    let sig = dir.join(SIG);
    if sig.exists() {
        fs::remove_file(&sig).with_context(|| format!("removing the old {}", sig.display()))?;
    }
    let out = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", NAMESPACE, "-f"])
        .arg(key)
        .arg(&sums)
        .stdin(Stdio::null())
        .output()
        .context("running ssh-keygen -Y sign (install openssh-client)")?;
    if !out.status.success() || !sig.is_file() {
        bail!(
            "ssh-keygen -Y sign -f {} {} failed: {}",
            key.display(),
            sums.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(sig)
}

/// Check the signature of `dir/SHA256SUMS` against `pubkey`, then every file
/// it lists. Returns how many files it checked.
pub fn verify(dir: &Path, pubkey: &Path) -> Result<usize> {
    let sums = dir.join(SUMS);
    let sig = dir.join(SIG);
    ensure!(
        sig.is_file(),
        "{} does not exist: the release is not signed",
        sig.display()
    );
    check_signature(&sums, &sig, pubkey)?;
    check_sums(dir)
}

/// Check every file `dir/SHA256SUMS` lists; returns how many.
pub fn check_sums(dir: &Path) -> Result<usize> {
    let sums = dir.join(SUMS);
    let text = fs::read_to_string(&sums).with_context(|| format!("reading {}", sums.display()))?;
    let listed = parse_sums(&text).with_context(|| format!("parsing {}", sums.display()))?;
    let mut bad = Vec::new();
    for (name, want) in &listed {
        let path = dir.join(name);
        match sha256_file(&path) {
            Ok(got) if &got == want => {}
            Ok(got) => bad.push(format!("{name}: sha256 {got}, SHA256SUMS says {want}")),
            Err(e) => bad.push(format!("{name}: {e:#}")),
        }
    }
    if !bad.is_empty() {
        bail!(
            "{}: {} of {} files do not match SHA256SUMS:\n  {}",
            dir.display(),
            bad.len(),
            listed.len(),
            bad.join("\n  ")
        );
    }
    Ok(listed.len())
}

fn check_signature(sums: &Path, sig: &Path, pubkey: &Path) -> Result<()> {
    let key = fs::read_to_string(pubkey)
        .with_context(|| format!("reading public key {}", pubkey.display()))?;
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let allowed = tmp.path().join("allowed_signers");
    fs::write(&allowed, allowed_signers(&key)?)
        .with_context(|| format!("writing {}", allowed.display()))?;
    let input = fs::File::open(sums).with_context(|| format!("opening {}", sums.display()))?;
    let out = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(&allowed)
        .args(["-I", NAMESPACE, "-n", NAMESPACE, "-s"])
        .arg(sig)
        .stdin(input)
        .output()
        .context("running ssh-keygen -Y verify (install openssh-client)")?;
    if !out.status.success() {
        bail!(
            "{} is not a good signature of {} by {}: {}",
            sig.display(),
            sums.display(),
            pubkey.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// An allowed_signers line for a public key file (`type base64 [comment]`).
fn allowed_signers(pubkey: &str) -> Result<String> {
    let line = pubkey
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .context("the public key file is empty")?;
    let mut fields = line.split_whitespace();
    let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
        bail!("not an SSH public key: {line:?}");
    };
    ensure!(
        kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"),
        "not an SSH public key type: {kind:?}"
    );
    Ok(format!("{NAMESPACE} {kind} {blob}\n"))
}

/// `<sha256>  <name>` lines (sha256sum's format). Names are plain file names
/// of the release directory: a path could point outside it.
pub fn parse_sums(text: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (sum, name) = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .with_context(|| format!("line {}: expected `<sha256>  <name>`: {line:?}", n + 1))?;
        ensure!(
            sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()),
            "line {}: {sum:?} is not a sha256",
            n + 1
        );
        ensure!(
            !name.is_empty() && !name.contains('/') && name != "." && name != "..",
            "line {}: {name:?} is not a file name of the release directory",
            n + 1
        );
        ensure!(
            out.insert(name.to_string(), sum.to_ascii_lowercase())
                .is_none(),
            "line {}: {name} is listed twice",
            n + 1
        );
    }
    ensure!(!out.is_empty(), "SHA256SUMS lists no files");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(dir: &Path, name: &str) -> PathBuf {
        let key = dir.join(name);
        crate::testutil::run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
                .arg(&key),
        );
        key
    }

    /// A release dir with two files and their SHA256SUMS, signed by `key`.
    fn release(dir: &Path, key: &Path) {
        fs::write(dir.join("a.tar.gz"), b"tarball bytes").unwrap();
        fs::write(dir.join("sbom.spdx.json"), b"{}\n").unwrap();
        let sums: BTreeMap<String, String> = ["a.tar.gz", "sbom.spdx.json"]
            .iter()
            .map(|n| (n.to_string(), sha256_file(&dir.join(n)).unwrap()))
            .collect();
        fs::write(dir.join(SUMS), crate::image::manifest::sha256sums(&sums)).unwrap();
        sign(dir, key).unwrap();
    }

    fn flip_byte(path: &Path) {
        let mut bytes = fs::read(path).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x01;
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_signed_release_verifies_and_any_changed_byte_fails() {
        let keys = tempfile::tempdir().unwrap();
        let key = keypair(keys.path(), "k");
        let public = key.with_extension("pub");
        for victim in ["a.tar.gz", "sbom.spdx.json", SUMS, SIG] {
            let dir = tempfile::tempdir().unwrap();
            release(dir.path(), &key);
            assert_eq!(verify(dir.path(), &public).unwrap(), 2);
            flip_byte(&dir.path().join(victim));
            let err = format!("{:#}", verify(dir.path(), &public).unwrap_err());
            let named = if victim == SUMS || victim == SIG {
                SIG
            } else {
                victim
            };
            assert!(err.contains(named), "{victim}: {err}");
        }
    }

    #[test]
    fn a_wrong_key_or_a_missing_file_fails() {
        let keys = tempfile::tempdir().unwrap();
        let key = keypair(keys.path(), "k");
        let other = keypair(keys.path(), "other");
        let dir = tempfile::tempdir().unwrap();
        release(dir.path(), &key);
        let err = format!(
            "{:#}",
            verify(dir.path(), &other.with_extension("pub")).unwrap_err()
        );
        assert!(err.contains("not a good signature"), "{err}");
        fs::remove_file(dir.path().join("a.tar.gz")).unwrap();
        let err = format!(
            "{:#}",
            verify(dir.path(), &key.with_extension("pub")).unwrap_err()
        );
        assert!(err.contains("a.tar.gz"), "{err}");
        fs::remove_file(dir.path().join(SIG)).unwrap();
        let err = format!(
            "{:#}",
            verify(dir.path(), &key.with_extension("pub")).unwrap_err()
        );
        assert!(err.contains("not signed"), "{err}");
    }

    #[test]
    fn sums_names_stay_inside_the_release() {
        let h = "a".repeat(64);
        assert!(parse_sums(&format!("{h}  ok.tar.gz\n")).is_ok());
        for bad in [
            format!("{h}  ../etc/passwd\n"),
            format!("{h}  /abs\n"),
            "abc  x\n".to_string(),
            format!("{h}  x\n{h}  x\n"),
            String::new(),
        ] {
            assert!(parse_sums(&bad).is_err(), "{bad:?}");
        }
        assert!(allowed_signers("ssh-ed25519 AAAA c\n")
            .unwrap()
            .starts_with(NAMESPACE));
        assert!(allowed_signers("-----BEGIN OPENSSH PRIVATE KEY-----\n").is_err());
    }
}
