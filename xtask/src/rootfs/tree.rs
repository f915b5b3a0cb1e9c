//! Build a recipe's rootfs tree: unpack the pinned packages, drop what the
//! recipe strips, lay out the skeleton Kata expects, install the agent and
//! the init, then normalise owners and times.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::chrony;
use super::debs;
use super::lock::LockEntry;
use super::recipe::{InitMode, Recipe};
use super::scan::{self, Node};

/// Where the agent lives in the guest (Kata's path).
pub const AGENT_PATH: &str = "usr/bin/kata-agent";
const SYSTEMD_PATH: &str = "/lib/systemd/systemd";

pub struct Tree {
    pub root: PathBuf,
    pub nodes: Vec<Node>,
    /// sha256 of the normalised tree; seeds UUIDs and hash seeds.
    pub digest: String,
    /// The program the kernel should run as init (absolute, in the guest).
    pub init: String,
}

pub struct TreeInputs<'a> {
    pub recipe: &'a Recipe,
    pub packages: &'a [LockEntry],
    pub agent: &'a Path,
    pub debug_console: bool,
    pub epoch: i64,
}

pub fn build(root: &Path, inputs: &TreeInputs) -> Result<Tree> {
    if root.exists() {
        fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))?;
    }
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let debs = debs::fetch_all(inputs.packages)?;
    for (deb, entry) in debs.iter().zip(inputs.packages) {
        debs::unpack(deb, root).with_context(|| format!("unpacking {}", entry.apt_spec()))?;
    }
    strip(root, &inputs.recipe.packages.strip)?;
    skeleton(root, inputs.recipe)?;
    let chrony = chrony::configure(root)?;
    install_file(inputs.agent, &root.join(AGENT_PATH), 0o755)?;
    let init = match inputs.recipe.init.mode {
        InitMode::Agent => format!("/{AGENT_PATH}"),
        InitMode::Systemd => {
            systemd_units(root, chrony)?;
            SYSTEMD_PATH.to_string()
        }
    };
    replace_symlink(&init, &root.join("sbin/init"))?;
    if inputs.debug_console {
        debug_shell(root)?;
    }
    ca_bundle(root)?;
    let nodes = scan::scan(root)?;
    scan::normalise(root, &nodes, inputs.epoch)?;
    let digest = scan::digest(root, &nodes)?;
    Ok(Tree {
        root: root.to_path_buf(),
        nodes,
        digest,
        init,
    })
}

fn strip(root: &Path, paths: &[String]) -> Result<()> {
    for p in paths {
        let full = root.join(p);
        if full.is_dir() {
            fs::remove_dir_all(&full).with_context(|| format!("removing {}", full.display()))?;
        } else if full.exists() {
            fs::remove_file(&full).with_context(|| format!("removing {}", full.display()))?;
        }
    }
    Ok(())
}

/// Mount points, the minimal account files and what the agent touches.
fn skeleton(root: &Path, recipe: &Recipe) -> Result<()> {
    for d in &recipe.skeleton.dirs {
        let p = root.join(d);
        fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    }
    for (link, target) in &recipe.skeleton.links {
        skeleton_link(root, link, target)?;
    }
    let tmp = root.join("tmp");
    if tmp.is_dir() {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))?;
    }
    let etc = root.join("etc");
    fs::create_dir_all(&etc)?;
    write(
        &etc.join("hostname"),
        &format!("{}\n", recipe.skeleton.hostname),
        0o644,
    )?;
    write(
        &etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
        0o644,
    )?;
    write(&etc.join("group"), "root:x:0:\n", 0o644)?;
    // The agent bind-mounts the sandbox's resolv.conf over this file.
    write(&etc.join("resolv.conf"), "", 0o644)?;
    // systemd fills an empty machine-id at boot; the agent does not care.
    write(&etc.join("machine-id"), "", 0o444)?;
    Ok(())
}

/// A skeleton link. What a package put there may go only if it is empty:
/// a link never hides files.
fn skeleton_link(root: &Path, link: &str, target: &str) -> Result<()> {
    let path = root.join(link);
    if let Ok(meta) = fs::symlink_metadata(&path) {
        if meta.is_dir() {
            fs::remove_dir(&path).with_context(|| {
                format!("[skeleton] links: {link} is a directory that is not empty")
            })?;
        }
    }
    replace_symlink(target, &path)
}

/// kata-agent.service started by a kata-containers.target that is the
/// default; the target wants chronyd.service as Kata's does (and, with
/// chrony in the image, that alias of chrony.service exists).
fn systemd_units(root: &Path, chrony: bool) -> Result<()> {
    let dir = root.join("etc/systemd/system");
    fs::create_dir_all(dir.join("kata-containers.target.wants"))?;
    write(&dir.join("kata-containers.target"), KATA_TARGET, 0o644)?;
    if chrony {
        replace_symlink(&format!("/{}", chrony::UNIT), &root.join(chrony::ALIAS))?;
    }
    write(&dir.join("kata-agent.service"), AGENT_SERVICE, 0o644)?;
    replace_symlink(
        "/etc/systemd/system/kata-containers.target",
        &dir.join("default.target"),
    )?;
    replace_symlink(
        "/etc/systemd/system/kata-agent.service",
        &dir.join("kata-containers.target.wants/kata-agent.service"),
    )
}

const KATA_TARGET: &str = "\
[Unit]
Description=Kata Containers guest
Requires=basic.target kata-agent.service
Wants=chronyd.service
After=basic.target kata-agent.service
Conflicts=rescue.target rescue.service
AllowIsolate=yes
";

const AGENT_SERVICE: &str = "\
[Unit]
Description=Kata Containers agent
Documentation=https://github.com/kata-containers/kata-containers
Wants=kata-containers.target

[Service]
StandardOutput=tty
Type=simple
ExecStart=/usr/bin/kata-agent
LimitNOFILE=1048576
# The agent manages container cgroups itself.
Delegate=yes
# A dead agent means a dead sandbox: power off so the host notices.
FailureAction=poweroff

[Install]
WantedBy=kata-containers.target
";

/// /bin/sh for agent.debug_console, from busybox-static.
fn debug_shell(root: &Path) -> Result<()> {
    let busybox = root.join("bin/busybox");
    anyhow::ensure!(
        busybox.exists(),
        "--debug-console needs bin/busybox in the rootfs (recipe [packages] debug_console)"
    );
    if !root.join("bin/sh").exists() {
        replace_symlink("busybox", &root.join("bin/sh"))?;
    }
    Ok(())
}

/// What ca-certificates' maintainer script would write: every certificate
/// under /usr/share/ca-certificates, in name order, in one bundle.
fn ca_bundle(root: &Path) -> Result<()> {
    let share = root.join("usr/share/ca-certificates");
    if !share.is_dir() {
        return Ok(());
    }
    let mut certs: Vec<String> = scan::scan(&share)?
        .into_iter()
        .filter(|n| n.path.ends_with(".crt") && matches!(n.kind, scan::Kind::File { .. }))
        .map(|n| n.path)
        .collect();
    certs.sort();
    let mut bundle = String::new();
    for c in &certs {
        let text = fs::read_to_string(share.join(c)).with_context(|| format!("reading {c}"))?;
        bundle.push_str(&text);
        if !text.ends_with('\n') {
            bundle.push('\n');
        }
    }
    let dir = root.join("etc/ssl/certs");
    fs::create_dir_all(&dir)?;
    write(&dir.join("ca-certificates.crt"), &bundle, 0o644)
}

fn write(path: &Path, content: &str, mode: u32) -> Result<()> {
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn install_file(src: &Path, dest: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(src, dest)
        .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dest.display()))
}

fn replace_symlink(target: &str, link: &Path) -> Result<()> {
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent)?;
    }
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    symlink(target, link).with_context(|| format!("symlink {} -> {target}", link.display()))
}

#[cfg(test)]
mod skeleton_tests {
    use super::*;

    #[test]
    fn skeleton_links_replace_an_empty_dir_never_a_full_one() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("var/run")).unwrap();
        skeleton_link(t.path(), "var/run", "/run").unwrap();
        assert_eq!(
            fs::read_link(t.path().join("var/run")).unwrap(),
            Path::new("/run")
        );
        skeleton_link(t.path(), "var/run", "/run").unwrap();
        fs::create_dir_all(t.path().join("var/lock/x")).unwrap();
        let err = skeleton_link(t.path(), "var/lock", "/run/lock").unwrap_err();
        assert!(format!("{err:#}").contains("not empty"), "{err:#}");
        assert!(t.path().join("var/lock/x").is_dir());
    }
}
