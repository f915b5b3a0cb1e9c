//! Benchmarks that write a table. `bench vm`: time from starting QEMU to the
//! first answered Health.Check (or, with `--probe vsock`, to the guest
//! accepting on the agent port), per machine/firmware choice and with and
//! without `quiet`; then, in one more VM, create+start+wait of busybox `true`
//! repeated (p50/p99), the agent's RSS afterwards, and the asset sizes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::arch::{Arch, ArchSelection};
use crate::rootfs::recipe::{self, Filesystem};
use crate::ui;
use crate::vm::accel::{self, Accel};
use crate::vm::cleanup::Session;
use crate::vm::qemu::{Console, Machine};
use crate::vm::start::{self, VmResources};
use crate::vm::{self as vm, BootMode, VmOpts};

mod compare;
mod mann_whitney;
mod revision;
mod wilcoxon;
mod workload;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Boot time to the first answered Health.Check, per machine choice.
    Vm(VmBenchArgs),
    /// A/B: boot two agents' images in turn and test each metric's difference.
    Compare(compare::CompareArgs),
}

#[derive(clap::Args)]
struct VmBenchArgs {
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: ArchSelection,
    /// Boots per configuration.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// What counts as "up": an answered Health.Check, or an accepted vsock connection.
    #[arg(long, value_enum, default_value = "health")]
    probe: Probe,
    /// Measure with and without `quiet` (otherwise as --verbose-kernel says).
    #[arg(long)]
    both_quiet: bool,
    /// Container life cycles timed inside one VM (0: skip that part).
    #[arg(long, default_value_t = 100)]
    lifecycle_runs: usize,
    /// Compare disk image filesystems (e.g. `ext4,erofs`): one image per
    /// filesystem is built under the bench's work dir (the artifacts stay
    /// as they are) and each is booted `--runs` times.
    #[arg(long, value_enum, value_delimiter = ',')]
    fs: Vec<Filesystem>,
    /// Also write the boot rows as JUnit XML here (a row with a failed boot fails).
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    #[command(flatten)]
    out: ReportFiles,
    #[command(flatten)]
    opts: VmOpts,
}

/// Where a bench also writes its results (`bench vm`: the boot rows and
/// each arch's life-cycle report; `bench compare`: the verdicts and samples).
#[derive(clap::Args)]
struct ReportFiles {
    /// Also write the results as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also write the Markdown tables here.
    #[arg(long, value_name = "PATH")]
    markdown: Option<PathBuf>,
}

impl ReportFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        self.json
            .iter()
            .chain(self.markdown.iter())
            .map(PathBuf::as_path)
    }

    fn write_markdown(&self, text: &str) -> Result<()> {
        match &self.markdown {
            Some(p) => crate::report::write(p, text),
            None => Ok(()),
        }
    }

    fn write_json(&self, doc: &serde_json::Value) -> Result<()> {
        match &self.json {
            Some(p) => crate::report::write(p, &(serde_json::to_string_pretty(doc)? + "\n")),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Probe {
    /// An answered Health.Check.
    Health,
    /// An accepted vsock connection on the agent port.
    Vsock,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        BenchCommand::Vm(a) => {
            a.validate()?;
            crate::setup::ensure_host_packages(&["vm"], &a.arch.arches())?;
            bench_vm(a)
        }
        BenchCommand::Compare(a) => compare::run(a),
    }
}

impl VmBenchArgs {
    /// Everything that can be wrong with the arguments, before any build.
    fn validate(&self) -> Result<()> {
        self.opts.validate(&self.arch.arches())?;
        if !self.fs.is_empty() && (self.opts.boot != BootMode::Image || self.opts.rootfs.is_some())
        {
            crate::usage!("--fs compares disk images: it needs --boot image and no --rootfs");
        }
        if self.runs == 0 {
            crate::usage!("--runs 0 measures nothing: give 1 or more");
        }
        crate::report::check_paths(
            self.junit
                .iter()
                .map(PathBuf::as_path)
                .chain(self.out.paths()),
        )
    }
}

/// One measured configuration.
struct Row {
    rootfs: RootfsVariant,
    machine: Machine,
    quiet: bool,
    times: Vec<Duration>,
    failures: Vec<String>,
    command_line: String,
}

fn bench_vm(args: VmBenchArgs) -> Result<()> {
    let e2e = match args.probe {
        Probe::Health => Some(vm::e2e_binary()?),
        Probe::Vsock => None,
    };
    let mut cases = Vec::new();
    let mut lifecycles = serde_json::Map::new();
    let mut tables = String::new();
    for arch in args.arch.arches() {
        // Built and probed once per arch: every row boots these.
        let res = start::resources(arch, &args.opts)?;
        let rows = bench_arch(&res, &args, e2e.as_deref())?;
        cases.extend(rows.iter().map(|r| case(arch, r)));
        let mut table = render(arch, res.accel, &args, &rows);
        if args.lifecycle_runs > 0 {
            let e2e = match &e2e {
                Some(bin) => bin.clone(),
                None => vm::e2e_binary()?,
            };
            let section = workload::section(&res, &args.opts, args.lifecycle_runs, &e2e);
            table.push_str(&section.markdown);
            lifecycles.insert(
                arch.name().to_string(),
                serde_json::to_value(section.report)?,
            );
        }
        let out = crate::paths::target_dir()
            .join("bench")
            .join(format!("vm-{arch}.md"));
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&out, &table).with_context(|| format!("writing {}", out.display()))?;
        println!("{table}");
        ui::info(format!("table written to {}", out.display()));
        tables.push_str(&table);
    }
    if let Some(p) = &args.junit {
        crate::report::write(p, &crate::report::junit("bench vm", &cases))?;
    }
    args.out.write_json(&serde_json::json!({
        "boot": cases,
        "lifecycle": lifecycles,
        "load_average": load_average(),
    }))?;
    args.out.write_markdown(&tables)
}

/// The host's 1, 5 and 15 minute load averages: TCG timings scale with it.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let load: Vec<&str> = text.split_whitespace().take(3).collect();
    Some(load.join(" "))
}

/// A boot row as a report case: its median time, failed if a boot failed.
fn case(arch: Arch, r: &Row) -> crate::report::Case {
    let mut t = r.times.clone();
    t.sort();
    crate::report::Case {
        suite: format!("bench.vm.{arch}"),
        name: format!("{} {} quiet={}", r.rootfs.label, r.machine.name(), r.quiet),
        seconds: t.get(t.len() / 2).map_or(0.0, Duration::as_secs_f64),
        failure: (!r.failures.is_empty()).then(|| r.failures.join("; ")),
    }
}

/// The root filesystem a row boots: the default assets, or one disk image
/// per `--fs`.
#[derive(Clone)]
struct RootfsVariant {
    label: String,
    image: Option<PathBuf>,
    bytes: Option<u64>,
}

fn rootfs_variants(res: &VmResources, args: &VmBenchArgs) -> Result<Vec<RootfsVariant>> {
    let arch = res.arch;
    if args.fs.is_empty() {
        let label = match args.opts.boot {
            BootMode::Image => "image",
            BootMode::Initrd => "initrd",
        };
        return Ok(vec![RootfsVariant {
            label: label.to_string(),
            image: None,
            bytes: None,
        }]);
    }
    let agent = res
        .agent
        .as_deref()
        .context("--fs builds disk images around the agent this run built, and it built none")?;
    let recipe = recipe::Recipe::load(recipe::DEFAULT_RECIPE)?;
    let dir = crate::paths::work_dir("bench-vm", arch);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut variants = Vec::new();
    for &fs in &args.fs {
        let image = dir.join(format!("rootfs-{}.img", fs.name()));
        let bytes = crate::image::disk_image(arch, &recipe, fs, agent, &image)
            .with_context(|| format!("building the {} disk image", fs.name()))?;
        variants.push(RootfsVariant {
            label: fs.name().to_string(),
            image: Some(image),
            bytes: Some(bytes),
        });
    }
    Ok(variants)
}

/// What every root filesystem of one arch is booted with: decided once.
struct Sweep {
    machines: Vec<Machine>,
    quiet_modes: Vec<bool>,
}

fn bench_arch(res: &VmResources, args: &VmBenchArgs, e2e: Option<&Path>) -> Result<Vec<Row>> {
    let sweep = Sweep {
        machines: match args.opts.machine {
            Some(m) => vec![m],
            None => Machine::choices(res.arch),
        },
        quiet_modes: if args.both_quiet {
            vec![true, false]
        } else {
            vec![!args.opts.verbose_kernel]
        },
    };
    let mut rows = Vec::new();
    for variant in rootfs_variants(res, args)? {
        let mut res = res.clone();
        if let Some(image) = &variant.image {
            res.assets = res.assets.with_rootfs(image.clone());
        }
        rows.extend(bench_rootfs(&res, args, &sweep, &variant, e2e)?);
    }
    Ok(rows)
}

/// The rows of one root filesystem: every machine, every quiet mode.
fn bench_rootfs(
    res: &VmResources,
    args: &VmBenchArgs,
    sweep: &Sweep,
    variant: &RootfsVariant,
    e2e: Option<&Path>,
) -> Result<Vec<Row>> {
    let arch = res.arch;
    let mut rows = Vec::new();
    for &machine in &sweep.machines {
        let res = res.on(machine);
        if let Err(e) = res.assets.kernel_for(machine, arch) {
            ui::warn(format!("skipping {}: {e:#}", machine.name()));
            continue;
        }
        for &quiet in &sweep.quiet_modes {
            let mut opts = args.opts.clone();
            opts.verbose_kernel = !quiet;
            let serial_log = serial_log(arch, &variant.label, machine, quiet)?;
            let mut row = Row {
                rootfs: variant.clone(),
                machine,
                quiet,
                times: Vec::new(),
                failures: Vec::new(),
                command_line: String::new(),
            };
            for i in 0..args.runs {
                let console = Console::File(serial_log.clone());
                let what = format!(
                    "{arch} {} {} quiet={quiet} run {i}",
                    variant.label,
                    machine.name()
                );
                match one_boot(&res, &opts, console, args.probe, e2e, &mut row.command_line) {
                    Ok(t) => {
                        eprintln!("{what}: {t:?}");
                        row.times.push(t);
                    }
                    Err(e) => {
                        eprintln!("{what}: {e:#}");
                        row.failures.push(format!("{e:#}"));
                    }
                }
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn serial_log(arch: Arch, rootfs: &str, machine: Machine, quiet: bool) -> Result<PathBuf> {
    let dir = crate::paths::work_dir("bench-vm", arch);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(format!("{rootfs}-{}-quiet-{quiet}.log", machine.name())))
}

/// Boot once and time QEMU start to "up"; everything stops when the session drops.
fn one_boot(
    res: &VmResources,
    opts: &VmOpts,
    console: Console,
    probe: Probe,
    e2e: Option<&Path>,
    command_line: &mut String,
) -> Result<Duration> {
    let mut session = Session::new();
    let deadline_len = accel::boot_budget(res.arch, res.accel);
    let vm = start::start(&mut session, res, opts, console, &[])?;
    *command_line = vm.command_line.clone();
    let result = probe_up(&mut session, &vm, probe, e2e, deadline_len);
    if result.is_err() {
        // Keep this run's console and host logs under a name of their own.
        let n = std::process::id() ^ vm.qemu_pid;
        let kept = vm.serial_log.with_extension(format!("failed-{n}.log"));
        let _ = std::fs::copy(&vm.serial_log, &kept);
        vm::keep_host_logs(&vm, &kept);
        eprintln!("logs of the failed boot kept at {}*", kept.display());
    }
    result
}

fn probe_up(
    session: &mut Session,
    vm: &vm::RunningVm,
    probe: Probe,
    e2e: Option<&Path>,
    deadline_len: Duration,
) -> Result<Duration> {
    let deadline = vm.started + deadline_len;
    vm::wait_vsock_ready(session, vm, deadline)?;
    match (probe, e2e) {
        (Probe::Health, Some(bin)) => {
            let status = Command::new(bin)
                .arg("health")
                .arg("--socket")
                .arg(&vm.vsock_uds)
                .arg("--port")
                .arg(vm::vsock::AGENT_PORT.to_string())
                .arg("--vm-pid")
                .arg(vm.qemu_pid.to_string())
                .arg("--timeout-secs")
                .arg(deadline_len.as_secs().to_string())
                .stderr(std::process::Stdio::piped())
                .output()
                .context("running e2e health")?;
            if !status.status.success() {
                vm::check_qemu_alive(session, vm)?;
                let err = String::from_utf8_lossy(&status.stderr);
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                bail!("no Health.Check answer ({}): {last}", status.status);
            }
        }
        _ => {
            let _stream =
                vm::vsock::connect(&vm.vsock_uds, vm::vsock::AGENT_PORT, deadline, || {
                    vm::check_qemu_alive(session, vm)
                })?;
        }
    }
    Ok(vm.started.elapsed())
}

/// "Host: N cores, load average L at the end of the run."
fn host_line(load: &str) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("Host: {cores} cores, load average {load} at the end of the run.")
}

fn millis(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn render(arch: Arch, accel: Accel, args: &VmBenchArgs, rows: &[Row]) -> String {
    let what = match args.probe {
        Probe::Health => "first answered Health.Check",
        Probe::Vsock => "guest accepting on vsock port 1024",
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## bench vm: {arch}, {}, QEMU start to {what} (ms), boot {:?}, share {}\n",
        accel.name().to_uppercase(),
        args.opts.boot,
        args.opts.share_for(arch).name()
    );
    // Timings under TCG scale with host contention: record it.
    if let Some(load) = load_average() {
        let _ = writeln!(s, "{}\n", host_line(&load));
    }
    let _ = writeln!(
        s,
        "| rootfs | bytes | machine | quiet | runs | min | median | max | failed |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let mut t = r.times.clone();
        t.sort();
        let (min, med, max) = match (t.first(), t.get(t.len() / 2), t.last()) {
            (Some(a), Some(b), Some(c)) => (millis(*a), millis(*b), millis(*c)),
            _ => ("-".into(), "-".into(), "-".into()),
        };
        let bytes = r.rootfs.bytes.map_or("-".to_string(), |b| b.to_string());
        let _ = writeln!(
            s,
            "| {} | {bytes} | {} | {} | {} | {min} | {med} | {max} | {} |",
            r.rootfs.label,
            r.machine.name(),
            r.quiet,
            t.len(),
            r.failures.len()
        );
    }
    let _ = writeln!(s, "\nCommand lines (one run of each):\n");
    for r in rows {
        let _ = writeln!(
            s,
            "- {} {} quiet={}: `{}`",
            r.rootfs.label,
            r.machine.name(),
            r.quiet,
            r.command_line
        );
    }
    for r in rows.iter().filter(|r| !r.failures.is_empty()) {
        let _ = writeln!(
            s,
            "\nFailures of {} {} quiet={}:",
            r.rootfs.label,
            r.machine.name(),
            r.quiet
        );
        for f in &r.failures {
            let _ = writeln!(s, "- {f}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: VmBenchArgs,
    }

    fn parse(args: &[&str]) -> VmBenchArgs {
        let argv = std::iter::once("bench").chain(args.iter().copied());
        Cli::try_parse_from(argv).expect("valid arguments").bench
    }

    #[test]
    fn fs_takes_a_comma_separated_list() {
        let args = parse(&["--fs", "ext4,erofs"]);
        assert_eq!(args.fs, vec![Filesystem::Ext4, Filesystem::Erofs]);
        assert!(parse(&[]).fs.is_empty());
    }

    #[test]
    fn without_fs_the_default_assets_are_one_variant() {
        let args = parse(&["--boot", "initrd"]);
        let res = VmResources {
            arch: Arch::X86_64,
            machine: Machine::Q35,
            assets: crate::vm::assets::GuestAssets {
                kernel: "/k".into(),
                pvh_vmlinux: None,
                boot: crate::vm::qemu::Boot::Initrd("/i".into()),
                verity: None,
            },
            agent: None,
            busybox: "/b".into(),
            accel: Accel::Tcg,
        };
        let variants = rootfs_variants(&res, &args).expect("no image is built");
        assert_eq!(variants.len(), 1);
        assert_eq!(variants[0].label, "initrd");
        assert!(variants[0].image.is_none() && variants[0].bytes.is_none());
    }

    #[test]
    fn fs_refuses_an_initrd_boot_or_a_given_rootfs_before_any_build() {
        let img = tempfile::NamedTempFile::new().unwrap();
        let img = img.path().to_str().unwrap().to_string();
        for extra in [["--boot", "initrd"], ["--rootfs", img.as_str()]] {
            let mut argv = vec!["--fs", "erofs"];
            argv.extend(extra);
            let err = parse(&argv).validate().expect_err("refused");
            assert!(err.is::<crate::Usage>(), "{err:#}");
            assert!(
                err.to_string().contains("--fs compares disk images"),
                "{err}"
            );
        }
    }
}
