//! Build the guest kernel from the pinned source and fragments, cached by hash.
//!
//! Flow: verify the tarball's sha256 → unpack it once into the cache
//! (`kernel-source/<sha256>/`) → hash every input into a key → on a miss, build
//! out of tree in `target/xtask/kernel/<arch>/build` and store the images plus
//! the final .config in `kernel/<key>/` → copy them to `target/artifacts/<arch>/`.

mod build;
mod fragments;
mod kata_symbols;
mod source;

pub use source::read_pin;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::arch::{Arch, ArchSelection};
use crate::{cache, cmd, paths, setup, ui};

use build::Toolchain;
use fragments::Fragment;
pub use fragments::Profile;
use source::Source;

/// Cache kind of built kernels.
const CACHE_KIND: &str = "kernel";
/// Bump when this build script changes in a way that changes its output.
const BUILD_SCRIPT_VERSION: &str = "kernel-build-1";
/// The kernel release, stored in each cache entry.
const RELEASE_FILE: &str = "kernel.release";
/// The final .config, in the cache entry and the artifacts dir.
const CONFIG_NAME: &str = "kernel.config";

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: ArchSelection,
    /// Rebuild even when the cache has this kernel (the entry is replaced).
    #[arg(long)]
    no_cache: bool,
    /// Build this kernel tarball (e.g. from kernel.org) instead of the pinned one.
    #[arg(long, requires = "sha256", value_name = "PATH")]
    source: Option<PathBuf>,
    /// The sha256 the --source tarball must have.
    #[arg(long, requires = "source", value_name = "HEX")]
    sha256: Option<String>,
    /// Parallel make jobs (default: the number of CPUs; does not change the
    /// output, so not part of the cache key).
    #[arg(long)]
    jobs: Option<usize>,
    /// Fragment set: `kata` (Kata's guest kernel features) or `minimal`
    /// (what boots Kata's default command lines, faster to build and boot).
    #[arg(long = "profile", value_enum, default_value = "kata")]
    profile: Profile,
    /// Keep the build dir of an interrupted build and let make continue
    /// where it stopped (kbuild rebuilds what the config or sources changed,
    /// so the result is the same as from a fresh dir; the cache entry and
    /// its checks are as usual).
    #[arg(long)]
    resume: bool,
}

/// A built kernel, copied into `target/artifacts/<arch>/`.
#[derive(Debug, Clone)]
pub struct KernelArtifacts {
    pub arch: Arch,
    /// The image QEMU's `-kernel` takes: vmlinuz (bzImage) on x86_64 and
    /// s390x, Image on aarch64, vmlinux on ppc64le.
    pub image: PathBuf,
    /// x86_64 only: the uncompressed ELF vmlinux with the PVH entry point, for
    /// direct boot (`-M microvm`, or q35 with qboot).
    pub pvh_vmlinux: Option<PathBuf>,
    /// The final kernel .config.
    pub config: PathBuf,
    /// The cache key (hash of every input).
    pub cache_key: String,
    /// `uname -r` of the kernel, e.g. "6.12.95".
    pub release: String,
    /// Where the source came from, e.g. "linux-source-6.12 6.12.95-1~bpo12+1".
    pub source: String,
}

pub fn run(args: Args) -> Result<()> {
    let source = match (&args.source, &args.sha256) {
        (Some(path), Some(sha)) => Source::from_path(path, sha)?,
        _ => Source::from_pin(&source::read_pin()?)?,
    };
    let opts = Options {
        source,
        no_cache: args.no_cache,
        jobs: args.jobs.unwrap_or_else(default_jobs).max(1),
        profile: args.profile,
        resume: args.resume,
    };
    for arch in args.arch.arches() {
        let k = build_kernel(arch, &opts).with_context(|| format!("kernel for {arch}"))?;
        print_summary(&k);
    }
    Ok(())
}

fn print_summary(k: &KernelArtifacts) {
    println!("kernel {}: {} from {}", k.arch, k.release, k.source);
    println!("  image:  {}", k.image.display());
    if let Some(v) = &k.pvh_vmlinux {
        println!("  vmlinux (PVH ELF): {}", v.display());
    }
    println!("  config: {}", k.config.display());
    println!("  cache key: {}", k.cache_key);
}

/// The pinned kernel of `profile` for `arch`, built if the cache lacks it.
/// The image and VM steps call it with their recipe's `kernel_profile`
/// (`image::kernel_of`).
pub fn ensure_built_profile(arch: Arch, profile: Profile) -> Result<KernelArtifacts> {
    let opts = Options {
        source: Source::from_pin(&source::read_pin()?)?,
        no_cache: false,
        jobs: default_jobs(),
        profile,
        resume: false,
    };
    build_kernel(arch, &opts).with_context(|| format!("kernel for {arch}"))
}

/// `make -j` default: every CPU this process may use.
fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

struct Options {
    source: Source,
    no_cache: bool,
    jobs: usize,
    profile: Profile,
    resume: bool,
}

fn build_kernel(arch: Arch, opts: &Options) -> Result<KernelArtifacts> {
    setup::ensure_host_packages(&["kernel", "cross"], &[arch])?;
    opts.source.verify()?;
    let tree = source::unpack(&opts.source)?;
    let tc = Toolchain::new(arch, crate::epoch::kernel(tree.source_date_epoch)?)?;
    let frags = fragments::for_arch(&fragments::fragments_root(), arch, opts.profile)?;
    let key = cache_key(arch, &opts.source, &frags, &tc)?;

    let entry = match cache::lookup(CACHE_KIND, &key) {
        Some(dir) if !opts.no_cache => {
            ui::detail(format!(
                "kernel {arch} ({}): cached ({})",
                opts.profile.name(),
                dir.display()
            ));
            dir
        }
        stale => refill(stale, &key, |out| {
            build_into(arch, &tc, &tree.dir, &frags, opts, out)
        })?,
    };
    export(arch, &entry, &key, &opts.source)
}

/// Fill the cache entry for `key`; an existing entry (`--no-cache`) is moved
/// aside first and restored if the rebuild fails.
fn refill(
    existing: Option<PathBuf>,
    key: &str,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let Some(old) = existing else {
        return cache::fill(CACHE_KIND, key, build);
    };
    let aside = old.with_file_name(format!(".old-{key}-{}", std::process::id()));
    fs::rename(&old, &aside).with_context(|| format!("moving {} aside", old.display()))?;
    match cache::fill(CACHE_KIND, key, build) {
        Ok(dir) => {
            fs::remove_dir_all(&aside).ok();
            Ok(dir)
        }
        Err(e) => {
            fs::rename(&aside, &old).ok();
            Err(e)
        }
    }
}

/// Hash of everything the kernel depends on.
fn cache_key(arch: Arch, src: &Source, frags: &[Fragment], tc: &Toolchain) -> Result<String> {
    let mut h = cache::KeyHasher::new(CACHE_KIND);
    h.str(BUILD_SCRIPT_VERSION)
        .str(&src.sha256)
        .str(arch.name())
        .str(arch.kernel_arch())
        .str(&tc.cross_compile);
    for f in frags {
        h.file(&f.label, &f.path)?;
    }
    for (k, v) in &tc.env {
        h.str(k).str(v);
    }
    let (targets, outs) = build::outputs(arch);
    for t in targets {
        h.str(t);
    }
    for o in outs {
        h.str(o.built).str(o.name);
    }
    for tool in [tc.gcc().as_str(), "gcc", "make"] {
        h.str(tool).str(&tool_version(tool)?);
    }
    Ok(h.finish())
}

/// `<tool> --version`, untrimmed: the compiler and make versions go into the
/// cache key, and the key must not change with how the xtask reads them.
fn tool_version(tool: &str) -> Result<String> {
    let out = cmd::output(Command::new(tool).arg("--version"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Configure, check and compile in a fresh build dir; store the results in `out`.
fn build_into(
    arch: Arch,
    tc: &Toolchain,
    src: &Path,
    frags: &[Fragment],
    opts: &Options,
    out: &Path,
) -> Result<()> {
    let jobs = opts.jobs;
    let work = paths::work_dir("kernel", arch);
    let dir = work.join("build");
    if dir.exists() && !opts.resume {
        fs::remove_dir_all(&dir).with_context(|| format!("cleaning {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = work.join("build.log");
    fs::write(&log, "").with_context(|| format!("creating {}", log.display()))?;
    ui::info(format!(
        "kernel {arch}: not cached, building with make -j{jobs} in {} (log: {})",
        dir.display(),
        log.display()
    ));
    let phase = ui::Phase::with_log(format!("kernel {arch}: make -j{jobs}"), &log);
    build::configure(arch, tc, src, &dir, frags, &log)?;
    if opts.profile == Profile::Kata {
        kata_symbols::check(arch, &dir.join(".config"))?;
    }
    build::compile(arch, tc, src, &dir, jobs, &log)?;
    phase.done("");

    let leaks = build::leaked_paths(&dir.join("vmlinux"), &[&dir, src, &work])?;
    if !leaks.is_empty() {
        bail!(
            "the kernel embeds build-machine paths {leaks:?}: the image would depend on \
             where it was built"
        );
    }
    for o in build::outputs(arch).1 {
        copy(&dir.join(o.built), &out.join(o.name))?;
    }
    copy(&dir.join(".config"), &out.join(CONFIG_NAME))?;
    let release = build::kernel_release(arch, tc, src, &dir)?;
    fs::write(out.join(RELEASE_FILE), &release).context("writing kernel.release")
}

/// Copy a cache entry to `target/artifacts/<arch>/`.
fn export(arch: Arch, entry: &Path, key: &str, src: &Source) -> Result<KernelArtifacts> {
    let dest = paths::artifacts_dir(arch);
    fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    let outs = build::outputs(arch).1;
    for o in outs {
        copy(&entry.join(o.name), &dest.join(o.name))?;
    }
    copy(&entry.join(CONFIG_NAME), &dest.join(CONFIG_NAME))?;
    let release_path = entry.join(RELEASE_FILE);
    let release = fs::read_to_string(&release_path)
        .with_context(|| format!("reading {}", release_path.display()))?;
    Ok(KernelArtifacts {
        arch,
        image: dest.join(outs[0].name),
        pvh_vmlinux: (arch == Arch::X86_64).then(|| dest.join("vmlinux")),
        config: dest.join(CONFIG_NAME),
        cache_key: key.to_string(),
        release: release.trim().to_string(),
        source: src.label.clone(),
    })
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}
