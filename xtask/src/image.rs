//! Produce the disk image, initrd, manifest.json and SHA256SUMS for each arch
//! in target/artifacts/<arch>/, from a recipe, its lock, the agent and the kernel.

mod cpio;
mod disk;
mod fs;
mod initrd;
pub mod manifest;
pub mod verity;

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
/// A measured root's `kernel_verity_params` (Kata's root_hash_<variant>.txt).
pub const ROOT_HASH: &str = "root_hash.txt";

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
    /// A measured root: add the dm-verity hash partition (default: the
    /// recipe's [image] verity).
    #[arg(long)]
    verity: bool,
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
    /// The kernel profile to ship (default: the recipe's `kernel_profile`).
    #[arg(long, value_enum)]
    kernel_profile: Option<kernel::Profile>,
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
        let disk = DiskOpts {
            fs: args.fs.unwrap_or(recipe.image.filesystem),
            verity: args.verity || recipe.image.verity,
        };
        // The agent first: a compile error shows before the kernel build.
        let agent = rootfs::agent_binary(arch, args.agent.as_deref())?;
        let kernel = kernel_of(arch, &recipe, args.kernel_profile)?;
        build(arch, &recipe, disk, args.debug_console, &agent, &kernel)
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
    /// The measured root's parameters, when the image has one.
    pub verity: Option<verity::Verity>,
}

/// How the disk image is laid out: its filesystem, and whether the hash
/// partition of a measured root follows it.
#[derive(Clone, Copy, Debug)]
pub struct DiskOpts {
    pub fs: recipe::Filesystem,
    pub verity: bool,
}

impl DiskOpts {
    /// The recipe's layout; `verity` asks for a measured root whatever the
    /// recipe says.
    fn of(recipe: &Recipe, verity: bool) -> DiskOpts {
        DiskOpts {
            fs: recipe.image.filesystem,
            verity: verity || recipe.image.verity,
        }
    }
}

fn build(
    arch: Arch,
    recipe: &Recipe,
    disk: DiskOpts,
    debug_console: bool,
    agent: &Path,
    kernel: &kernel::KernelArtifacts,
) -> Result<ImageArtifacts> {
    let _lock = lock_arch(arch)?;
    let phase = ui::Phase::start(format!("image {arch}: rootfs, initrd, disk image"));
    let epoch = crate::epoch::image()?;
    let out_dir = paths::artifacts_dir(arch);
    let (tree, measured) = assemble(arch, recipe, disk, debug_console, agent, &out_dir)?;

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
            filesystem: disk.fs.name().to_string(),
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
        verity: measured.clone(),
        toolchain: manifest::toolchain(),
        outputs: outputs(&out_dir)?,
    };
    write_file(&out_dir.join(MANIFEST), &m.to_json()?)?;
    write_sbom(arch, epoch, &packages, agent, kernel, &out_dir)?;
    write_sums(&out_dir, &kernel_files(kernel), agent)?;
    phase.done("");
    Ok(ImageArtifacts::in_dir(&out_dir, measured))
}

impl ImageArtifacts {
    fn in_dir(dir: &Path, verity: Option<verity::Verity>) -> ImageArtifacts {
        ImageArtifacts {
            image: dir.join(IMAGE),
            initrd: dir.join(INITRD),
            verity,
        }
    }
}

/// The rootfs tree, then the initrd and the disk image built from it (and
/// root_hash.txt for a measured root), in `out_dir`.
/// One image build per arch at a time in this checkout: every build of an
/// arch assembles the same rootfs tree (target/xtask/rootfs/<arch>/).
fn lock_arch(arch: Arch) -> Result<crate::lock::Guard> {
    let path = paths::target_dir()
        .join("xtask")
        .join("image")
        .join(format!("{arch}.lock"));
    crate::lock::exclusive(&path, &format!("the {arch} image"))
}

fn assemble(
    arch: Arch,
    recipe: &Recipe,
    disk: DiskOpts,
    debug_console: bool,
    agent: &Path,
    out_dir: &Path,
) -> Result<(rootfs::Tree, Option<verity::Verity>)> {
    let epoch = crate::epoch::image()?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let t = Instant::now();
    let tree = rootfs::build(arch, recipe, agent, debug_console)?;
    step("rootfs", t, &format!("{} entries", tree.nodes.len()));

    let t = Instant::now();
    initrd::write(&tree, epoch, &out_dir.join(INITRD))?;
    step("initrd", t, &size_of(&out_dir.join(INITRD)));

    let (_, measured) = write_disk(arch, recipe, disk, &tree, epoch, &out_dir.join(IMAGE))?;
    write_root_hash(out_dir, measured.as_ref())?;
    Ok((tree, measured))
}

/// root_hash.txt beside a measured image; none beside another (a stale one
/// from an earlier build would describe a different image).
fn write_root_hash(dir: &Path, measured: Option<&verity::Verity>) -> Result<()> {
    let path = dir.join(ROOT_HASH);
    match measured {
        Some(v) => write_file(&path, &format!("{}\n", v.kata_params())),
        None if path.exists() => {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
        }
        None => Ok(()),
    }
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
    if dir.join(ROOT_HASH).is_file() {
        names.push(ROOT_HASH.to_string());
    }
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
    let _lock = lock_arch(arch)?;
    let epoch = crate::epoch::image()?;
    let tree = rootfs::build(arch, recipe, agent, false)?;
    let disk = DiskOpts {
        fs: fs_kind,
        verity: false,
    };
    write_disk(arch, recipe, disk, &tree, epoch, out).map(|(len, _)| len)
}

/// The disk image at `out`; returns its size and, for a measured root, the
/// verity parameters.
fn write_disk(
    arch: Arch,
    recipe: &Recipe,
    disk: DiskOpts,
    tree: &rootfs::Tree,
    epoch: i64,
    out: &Path,
) -> Result<(u64, Option<verity::Verity>)> {
    let t = Instant::now();
    let work = paths::work_dir("image", arch);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let fs_file = work.join(format!("rootfs.{}", disk.fs.name()));
    let fs_len = fs::make(disk.fs, tree, &recipe.image, epoch, &fs_file)?;
    let hash_file = work.join("rootfs.verity");
    let measured = disk
        .verity
        .then(|| measure(&fs_file, &tree.digest, &hash_file))
        .transpose()?;
    let mut parts = vec![fs_file.as_path()];
    if measured.is_some() {
        parts.push(&hash_file);
    }
    let disk_len = disk::write(
        &parts,
        out,
        recipe.image.align_mib << 20,
        disk::disk_id(&tree.digest),
    )?;
    step(
        disk.fs.name(),
        t,
        &format!(
            "filesystem {} KiB, disk image {} KiB",
            fs_len / 1024,
            disk_len / 1024
        ),
    );
    if let Some(v) = &measured {
        ui::detail(format!(
            "xtask image:   verity  root hash {}, {} data blocks",
            v.root_hash, v.data_blocks
        ));
    }
    Ok((disk_len, measured))
}

/// Pad the filesystem to the hash partition's MiB boundary (the data
/// device is the whole first partition, as in Kata's image) and write its
/// hash tree to `hash_file`.
fn measure(fs_file: &Path, digest: &str, hash_file: &Path) -> Result<verity::Verity> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(fs_file)
        .with_context(|| format!("opening {}", fs_file.display()))?;
    let len = f.metadata()?.len();
    f.set_len(len.div_ceil(disk::PART_ALIGN) * disk::PART_ALIGN)
        .with_context(|| format!("padding {}", fs_file.display()))?;
    drop(f);
    verity::write_tree(fs_file, &verity::salt_for(digest), hash_file)
}

fn step(name: &str, start: Instant, detail: &str) {
    ui::detail(format!(
        "xtask image:   {name:<7} {:>6.2} s  {detail}",
        start.elapsed().as_secs_f64()
    ));
}

/// The kernel an image of `recipe` ships: the profile given
/// (`--kernel-profile`), else the recipe's `kernel_profile`.
pub fn kernel_of(
    arch: Arch,
    recipe: &Recipe,
    profile: Option<kernel::Profile>,
) -> Result<kernel::KernelArtifacts> {
    kernel::ensure_built_profile(arch, profile.unwrap_or(recipe.recipe.kernel_profile))
}

/// The kernel of the default recipe's image (`vm test`, `release`,
/// `verify-repro`), or of `profile` when given.
pub fn default_kernel(
    arch: Arch,
    profile: Option<kernel::Profile>,
) -> Result<kernel::KernelArtifacts> {
    kernel_of(arch, &Recipe::load(recipe::DEFAULT_RECIPE)?, profile)
}

/// What `vm test` boots: the image and initrd of the default recipe, built
/// from the given agent and kernel (the rootfs packages come from their cache).
/// `verity` asks for a measured root whatever the recipe says.
pub fn ensure_built(
    arch: Arch,
    agent: &Path,
    kernel: &kernel::KernelArtifacts,
    verity: bool,
) -> Result<ImageArtifacts> {
    let recipe = Recipe::load(recipe::DEFAULT_RECIPE)?;
    let disk = DiskOpts::of(&recipe, verity);
    build(arch, &recipe, disk, false, agent, kernel)
        .with_context(|| format!("building the {arch} image"))
}

/// An image that is never shipped, in `out_dir`: `vm test`'s around a loop
/// agent (see agent::Profile), `bench compare`'s around each agent. The
/// default recipe and the given agent, assembled apart from the artifacts so
/// they never mix, without the manifest, SBOM and SHA256SUMS (they describe
/// what ships; hashing them is the slow part).
/// `verity` as for [`ensure_built`].
pub fn ensure_scratch_built(
    arch: Arch,
    agent: &Path,
    out_dir: &Path,
    verity: bool,
) -> Result<ImageArtifacts> {
    let recipe = Recipe::load(recipe::DEFAULT_RECIPE)?;
    let disk = DiskOpts::of(&recipe, verity);
    let _lock = lock_arch(arch)?;
    let phase = ui::Phase::start(format!(
        "image {arch}: rootfs, initrd, disk image in {}",
        out_dir.display()
    ));
    let (_, measured) = assemble(arch, &recipe, disk, false, agent, out_dir)
        .with_context(|| format!("building the {arch} image in {}", out_dir.display()))?;
    phase.done("");
    Ok(ImageArtifacts::in_dir(out_dir, measured))
}
