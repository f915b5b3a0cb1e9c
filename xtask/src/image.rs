//! Produce the disk image, initrd, manifest.json and SHA256SUMS for each arch
//! in target/artifacts/<arch>/, from a recipe, its lock, the agent and the kernel.

mod cpio;
mod disk;
mod fs;
mod initrd;
pub mod manifest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::arch::{Arch, ArchSelection};
use crate::cache::sha256_file;
use crate::rootfs::{self, lock, recipe, Recipe};
use crate::{kernel, paths, ui};
use manifest::{Hashed, KernelInfo, Manifest, Output, Package, RecipeInfo, RootfsInfo};

pub const IMAGE: &str = "kata-containers.img";
pub const INITRD: &str = "kata-containers-initrd.img";
pub const MANIFEST: &str = "manifest.json";
pub const SUMS: &str = "SHA256SUMS";

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: ArchSelection,
    /// The recipe in osbuilder-configs/.
    #[arg(long, default_value = recipe::DEFAULT_RECIPE, value_parser = recipe::arg_parser())]
    recipe: String,
    /// The disk image's filesystem (default: the recipe's [image] filesystem).
    #[arg(long, value_enum)]
    fs: Option<recipe::Filesystem>,
    /// Add the recipe's debug_console packages and /bin/sh (agent.debug_console).
    #[arg(long)]
    debug_console: bool,
    /// Take every pinned .deb and the kernel source from this input store
    /// (`cargo xtask fetch --to DIR`): a build with no network.
    #[arg(long, value_name = "DIR")]
    inputs: Option<PathBuf>,
    /// Ship this agent binary instead of building ours (Kata's
    /// AGENT_SOURCE_BIN): it must be a static ELF for the arch whose
    /// `--version` runs under qemu-user.
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    // The recipe and its lock first: a bad name costs nothing.
    if let Some(dir) = &args.inputs {
        crate::fetch::use_store(dir)?;
    }
    let recipe = Recipe::load(&args.recipe)?;
    lock::Lock::load(&recipe.name)?;
    crate::setup::ensure_host_packages(&["image"], &[])?;
    for arch in args.arch.arches() {
        let start = Instant::now();
        let fs_kind = args.fs.unwrap_or(recipe.image.filesystem);
        // The agent first: a compile error shows before the kernel build.
        let agent = rootfs::agent_binary(arch, args.agent.as_deref())?;
        let kernel = kernel::ensure_built(arch)?;
        build(arch, &recipe, fs_kind, args.debug_console, &agent, &kernel)
            .with_context(|| format!("building the {arch} image"))?;
        ui::info(format!(
            "xtask image: {arch} done in {:.1} s -> {}",
            start.elapsed().as_secs_f64(),
            paths::artifacts_dir(arch).display()
        ));
    }
    Ok(())
}

/// The image and initrd `vm test` boots (the shipped names in
/// `target/artifacts/<arch>/`).
#[derive(Clone, Debug)]
pub struct ImageArtifacts {
    pub image: PathBuf,
    pub initrd: PathBuf,
}

fn build(
    arch: Arch,
    recipe: &Recipe,
    fs_kind: recipe::Filesystem,
    debug_console: bool,
    agent: &Path,
    kernel: &kernel::KernelArtifacts,
) -> Result<ImageArtifacts> {
    let phase = ui::Phase::start(format!("image {arch}: rootfs, initrd, disk image"));
    let epoch = crate::epoch::image()?;
    let out_dir = paths::artifacts_dir(arch);
    let tree = assemble(arch, recipe, fs_kind, debug_console, agent, &out_dir)?;

    let packages = rootfs::packages(
        arch,
        recipe,
        &lock::Lock::load(&recipe.name)?,
        debug_console,
    )?;
    let m = Manifest {
        schema: 1,
        arch: arch.name().to_string(),
        source_date_epoch: epoch,
        git: manifest::git(),
        recipe: RecipeInfo {
            name: recipe.name.clone(),
            file_sha256: sha256_file(&Recipe::path(&recipe.name))?,
            lock_sha256: sha256_file(&lock::lock_path(&recipe.name))?,
            init: tree.init.clone(),
            filesystem: fs_kind.name().to_string(),
            debug_console,
        },
        packages: packages
            .iter()
            .map(|e| Package {
                name: e.name.clone(),
                version: e.version.clone(),
                arch: e.arch.clone(),
                sha256: e.sha256.clone(),
            })
            .collect(),
        agent: Hashed {
            sha256: sha256_file(agent)?,
        },
        kernel: kernel_info(kernel)?,
        rootfs: RootfsInfo {
            digest: tree.digest.clone(),
            entries: tree.nodes.len(),
            fs_uuid: fs::Ids::from_digest(&tree.digest).uuid,
        },
        toolchain: manifest::toolchain(),
        outputs: outputs(&out_dir)?,
    };
    write_file(&out_dir.join(MANIFEST), &m.to_json()?)?;
    write_sbom(arch, epoch, &packages, agent, kernel, &out_dir)?;
    write_sums(&out_dir, &kernel_files(kernel), agent)?;
    phase.done("");
    Ok(ImageArtifacts::in_dir(&out_dir))
}

impl ImageArtifacts {
    fn in_dir(dir: &Path) -> ImageArtifacts {
        ImageArtifacts {
            image: dir.join(IMAGE),
            initrd: dir.join(INITRD),
        }
    }
}

/// The rootfs tree, then the initrd and the disk image built from it, in
/// `out_dir`.
fn assemble(
    arch: Arch,
    recipe: &Recipe,
    fs_kind: recipe::Filesystem,
    debug_console: bool,
    agent: &Path,
    out_dir: &Path,
) -> Result<rootfs::Tree> {
    let epoch = crate::epoch::image()?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let t = Instant::now();
    let tree = rootfs::build(arch, recipe, agent, debug_console)?;
    step("rootfs", t, &format!("{} entries", tree.nodes.len()));

    let t = Instant::now();
    initrd::write(&tree, epoch, &out_dir.join(INITRD))?;
    step("initrd", t, &size_of(&out_dir.join(INITRD)));

    write_disk(arch, recipe, fs_kind, &tree, epoch, &out_dir.join(IMAGE))?;
    Ok(tree)
}

/// sbom.spdx.json beside the manifest (see sbom.rs).
fn write_sbom(
    arch: Arch,
    epoch: i64,
    packages: &[lock::LockEntry],
    agent: &Path,
    k: &kernel::KernelArtifacts,
    out_dir: &Path,
) -> Result<()> {
    let source_sha256 = pinned_kernel_source_sha256();
    let inputs = crate::sbom::Inputs {
        arch,
        epoch,
        packages,
        debs: &rootfs::debs::fetch_all(packages)?,
        agent,
        kernel: crate::sbom::Kernel {
            release: &k.release,
            source: &k.source,
            source_sha256: source_sha256.as_deref(),
            image: &k.image,
            config: &k.config,
        },
        images: &[out_dir.join(IMAGE), out_dir.join(INITRD)],
    };
    crate::sbom::write(&inputs, &out_dir.join(crate::sbom::SBOM))
}

/// The kernel's files that exist: image, PVH vmlinux, .config.
fn kernel_files(k: &kernel::KernelArtifacts) -> Vec<PathBuf> {
    let mut files = vec![k.image.clone()];
    files.extend(k.pvh_vmlinux.iter().cloned());
    files.push(k.config.clone());
    files.retain(|f| f.is_file());
    files
}

fn kernel_info(k: &kernel::KernelArtifacts) -> Result<KernelInfo> {
    Ok(KernelInfo {
        files: hash_files(&kernel_files(k))?,
        release: k.release.clone(),
        source: k.source.clone(),
        source_sha256: pinned_kernel_source_sha256(),
        config_sha256: k
            .config
            .is_file()
            .then(|| sha256_file(&k.config))
            .transpose()?,
        cache_key: k.cache_key.clone(),
    })
}

/// The `sha256` of kernel/source.toml (the kernel step's pin), if present.
fn pinned_kernel_source_sha256() -> Option<String> {
    let text = std::fs::read_to_string(paths::repo_root().join("kernel/source.toml")).ok()?;
    let value: toml::Value = toml::from_str(&text).ok()?;
    value.get("sha256")?.as_str().map(str::to_string)
}

/// The two images, by hash and size.
fn outputs(dir: &Path) -> Result<BTreeMap<String, Output>> {
    [IMAGE, INITRD]
        .iter()
        .map(|n| {
            let p = dir.join(n);
            let size = std::fs::metadata(&p)
                .with_context(|| format!("stat {}", p.display()))?
                .len();
            Ok((
                n.to_string(),
                Output {
                    sha256: sha256_file(&p)?,
                    size,
                },
            ))
        })
        .collect()
}

/// SHA256SUMS over what is shipped from the arch's artifact dir: images,
/// manifest, and the kernel files and agent when they live there.
fn write_sums(dir: &Path, kernel_files: &[PathBuf], agent: &Path) -> Result<()> {
    let mut names: Vec<String> = [IMAGE, INITRD, MANIFEST, crate::sbom::SBOM]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for f in kernel_files
        .iter()
        .chain(std::iter::once(&agent.to_path_buf()))
    {
        if f.parent() == Some(dir) {
            if let Some(n) = f.file_name().and_then(|n| n.to_str()) {
                names.push(n.to_string());
            }
        }
    }
    let mut sums = BTreeMap::new();
    for n in names {
        sums.insert(n.clone(), sha256_file(&dir.join(&n))?);
    }
    write_file(&dir.join(SUMS), &manifest::sha256sums(&sums))
}

fn hash_files(files: &[PathBuf]) -> Result<BTreeMap<String, String>> {
    files
        .iter()
        .map(|f| {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("kernel file {} has no UTF-8 name", f.display()))?;
            Ok((name.to_string(), sha256_file(f)?))
        })
        .collect()
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn size_of(p: &Path) -> String {
    std::fs::metadata(p)
        .map(|m| format!("{} KiB", m.len() / 1024))
        .unwrap_or_default()
}

/// The disk image alone (rootfs on partition 1) with the given filesystem,
/// at `out`: for comparing filesystems (`bench vm --fs`) without touching
/// the artifacts. Returns its size in bytes.
pub fn disk_image(
    arch: Arch,
    recipe: &Recipe,
    fs_kind: recipe::Filesystem,
    agent: &Path,
    out: &Path,
) -> Result<u64> {
    let epoch = crate::epoch::image()?;
    let tree = rootfs::build(arch, recipe, agent, false)?;
    write_disk(arch, recipe, fs_kind, &tree, epoch, out)
}

fn write_disk(
    arch: Arch,
    recipe: &Recipe,
    fs_kind: recipe::Filesystem,
    tree: &rootfs::Tree,
    epoch: i64,
    out: &Path,
) -> Result<u64> {
    let t = Instant::now();
    let work = paths::work_dir("image", arch);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let fs_file = work.join(format!("rootfs.{}", fs_kind.name()));
    let fs_len = fs::make(fs_kind, tree, &recipe.image, epoch, &fs_file)?;
    let disk_len = disk::write(
        &fs_file,
        out,
        recipe.image.align_mib << 20,
        disk::disk_id(&tree.digest),
    )?;
    step(
        fs_kind.name(),
        t,
        &format!(
            "filesystem {} KiB, disk image {} KiB",
            fs_len / 1024,
            disk_len / 1024
        ),
    );
    Ok(disk_len)
}

fn step(name: &str, start: Instant, detail: &str) {
    ui::detail(format!(
        "xtask image:   {name:<7} {:>6.2} s  {detail}",
        start.elapsed().as_secs_f64()
    ));
}

/// What `vm test` boots: the image and initrd of the default recipe, built
/// from the given agent and kernel (the rootfs packages come from their cache).
pub fn ensure_built(
    arch: Arch,
    agent: &Path,
    kernel: &kernel::KernelArtifacts,
) -> Result<ImageArtifacts> {
    let recipe = Recipe::load(recipe::DEFAULT_RECIPE)?;
    let fs_kind = recipe.image.filesystem;
    build(arch, &recipe, fs_kind, false, agent, kernel)
        .with_context(|| format!("building the {arch} image"))
}

/// An image that is never shipped, in `out_dir`: `vm test`'s around a loop
/// agent (see agent::Profile), `bench compare`'s around each agent. The
/// default recipe and the given agent, assembled apart from the artifacts so
/// they never mix, without the manifest, SBOM and SHA256SUMS (they describe
/// what ships; hashing them is the slow part).
pub fn ensure_scratch_built(arch: Arch, agent: &Path, out_dir: &Path) -> Result<ImageArtifacts> {
    let recipe = Recipe::load(recipe::DEFAULT_RECIPE)?;
    let phase = ui::Phase::start(format!(
        "image {arch}: rootfs, initrd, disk image in {}",
        out_dir.display()
    ));
    assemble(
        arch,
        &recipe,
        recipe.image.filesystem,
        false,
        agent,
        out_dir,
    )
    .with_context(|| format!("building the {arch} image in {}", out_dir.display()))?;
    phase.done("");
    Ok(ImageArtifacts::in_dir(out_dir))
}
