//! `bench compare`: A/B of two agents, as Firecracker's A/B tooling does.
//! One image per agent (the same recipe and kernel, assembled apart from
//! the artifacts), booted in turn, A B A B ..., so that host load drifting
//! during the run hits both sides alike. Each boot gives one sample per
//! metric (time to Health.Check, life-cycle p50/p99, agent RSS); per metric
//! the table shows both medians, their ratio, the median of the rounds'
//! ratios and two p-values: the Wilcoxon signed-rank test over the rounds'
//! pairs (wilcoxon.rs), which decides, and the Mann-Whitney rank-sum test of
//! the two sides as independent samples (mann_whitney.rs), which a host
//! drifting between rounds blinds.
//! A side is an agent binary or a git revision (revision.rs): only the agent
//! differs between the sides, the rest is this checkout's.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::mann_whitney;
use super::revision::Side;
use super::wilcoxon;
use super::workload;
use super::Probe;
use crate::arch::Arch;
use crate::ui;
use crate::vm::cleanup::Session;
use crate::vm::qemu::Console;
use crate::vm::start::{self, VmResources};
use crate::vm::{self as vm, BootMode, VmOpts};

/// Below this p-value a difference counts as significant.
const ALPHA: f64 = 0.05;

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The base (A) agent: a static ELF for the arch, or (when no such file
    /// exists) a git revision, checked out under target/xtask/compare/<sha>/
    /// and built there. Image recipe, kernel and harness stay this checkout's.
    #[arg(long, value_name = "REV|PATH")]
    base: String,
    /// The head (B) agent, as --base.
    #[arg(long, value_name = "REV|PATH")]
    head: String,
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: Arch,
    /// Boots per side, interleaved (6 is the fewest at which the paired
    /// test can reach p < 0.05: 2/64 when every round goes one way).
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Container life cycles per boot.
    #[arg(long, default_value_t = 10)]
    lifecycle_runs: usize,
    #[command(flatten)]
    out: super::ReportFiles,
    #[command(flatten)]
    opts: VmOpts,
}

impl CompareArgs {
    /// Everything that can be wrong with the arguments, before any build;
    /// the two sides (base, head) they name.
    fn validate(&self) -> Result<[Side; 2]> {
        self.opts.validate(&[self.arch])?;
        if self.rounds < 3 {
            crate::usage!(
                "--rounds {}: give 3 or more (6 or more to see p < 0.05)",
                self.rounds
            );
        }
        if self.lifecycle_runs == 0 {
            crate::usage!("--lifecycle-runs 0 measures no life cycle: give 1 or more");
        }
        if self.opts.verity {
            crate::usage!(
                "--verity: compare boots plain images (a measured one is not built here)"
            );
        }
        if self.opts.rootfs.is_some() {
            crate::usage!("--rootfs: compare builds one image per agent itself");
        }
        crate::report::check_paths(self.out.paths())?;
        let repo = crate::paths::repo_root();
        Ok([
            Side::resolve("--base", &self.base, &repo)?,
            Side::resolve("--head", &self.head, &repo)?,
        ])
    }
}

/// The metrics, in table order: name, unit.
const METRICS: [(&str, &str); 4] = [
    ("boot to Health.Check", "ms"),
    ("life cycle p50", "ms"),
    ("life cycle p99", "ms"),
    ("agent RSS after", "kB"),
];

/// The samples of one side: one value per metric per boot, and the round
/// each came from (a failed boot leaves its round out).
#[derive(Default, serde::Serialize)]
struct Samples {
    values: [Vec<f64>; 4],
    rounds: Vec<usize>,
    failures: Vec<String>,
}

impl Samples {
    /// Metric `k` of the rounds both sides have: (base, head) pairs.
    fn paired_with(&self, head: &Samples, k: usize) -> (Vec<f64>, Vec<f64>) {
        self.rounds
            .iter()
            .zip(&self.values[k])
            .filter_map(|(r, b)| {
                let j = head.rounds.iter().position(|hr| hr == r)?;
                Some((*b, head.values[k][j]))
            })
            .unzip()
    }
}

/// One metric's verdict.
#[derive(Debug, serde::Serialize)]
struct Verdict {
    metric: &'static str,
    unit: &'static str,
    base_median: Option<f64>,
    head_median: Option<f64>,
    /// head / base.
    ratio: Option<f64>,
    /// Rounds with a sample on both sides.
    pairs: usize,
    /// The median of the rounds' head / base.
    paired_ratio: Option<f64>,
    /// Wilcoxon signed-rank over the pairs.
    p_paired: Option<f64>,
    /// Mann-Whitney of the two sides as independent samples.
    p_value: Option<f64>,
    /// p_paired < ALPHA.
    significant: bool,
}

pub fn run(args: CompareArgs) -> Result<()> {
    let sides = args.validate()?;
    crate::setup::ensure_host_packages(&["vm"], &[args.arch])?;
    // Read before anything is built: what the harness below is built from.
    let harness = this_checkout();
    let e2e = vm::e2e_binary()?;
    // Both agents are built before the first boot, so a failed build costs
    // no measurement.
    let repo = crate::paths::repo_root();
    let base_agent = sides[0].agent(&repo, args.arch)?;
    let head_agent = sides[1].agent(&repo, args.arch)?;
    let base = side_resources(&args, "base", &base_agent)?;
    let head = side_resources(&args, "head", &head_agent)?;
    let mut samples = [Samples::default(), Samples::default()];
    for round in 0..args.rounds {
        for (i, (name, res)) in [("base", &base), ("head", &head)].into_iter().enumerate() {
            let what = format!("round {round} {name}");
            match one_round(res, &args, &e2e) {
                Ok(values) => {
                    eprintln!("{what}: {values:?}");
                    for (k, v) in values.into_iter().enumerate() {
                        samples[i].values[k].push(v);
                    }
                    samples[i].rounds.push(round);
                }
                Err(e) => {
                    ui::warn(format!("{what}: {e:#}"));
                    samples[i].failures.push(format!("{what}: {e:#}"));
                }
            }
        }
    }
    let verdicts = verdicts(&samples[0], &samples[1]);
    let table = render(&args, &sides, &harness, &verdicts, &samples);
    println!("{table}");
    args.out.write_markdown(&table)?;
    args.out.write_json(&serde_json::json!({
            "arch": args.arch.name(),
            "base": sides[0].to_json(),
            "head": sides[1].to_json(),
            "harness": harness,
            "rounds": args.rounds,
            "lifecycle_runs": args.lifecycle_runs,
            "load_average": super::load_average(),
            "metrics": verdicts,
        "samples": { "base": samples[0], "head": samples[1] },
    }))
}

/// The image around `agent` (checked like `image --agent`) in the bench's
/// work dir, and the resources that boot it.
fn side_resources(args: &CompareArgs, name: &str, agent: &Path) -> Result<VmResources> {
    let arch = args.arch;
    let agent = crate::rootfs::agent_binary(arch, Some(agent))
        .with_context(|| format!("the {name} agent"))?;
    let dir = crate::paths::work_dir("bench-compare", arch).join(name);
    let images = crate::image::ensure_scratch_built(arch, &agent, &dir, false)
        .with_context(|| format!("the {name} image"))?;
    let mut opts = args.opts.clone();
    opts.rootfs = Some(match opts.boot {
        BootMode::Image => images.image,
        BootMode::Initrd => images.initrd,
    });
    let mut res = start::resources(arch, &opts)?;
    res.agent = Some(agent);
    Ok(res)
}

/// Boot once: time to Health.Check, then the life cycles in the same VM.
fn one_round(res: &VmResources, args: &CompareArgs, e2e: &Path) -> Result<[f64; 4]> {
    let arch = res.arch;
    let log = crate::paths::work_dir("bench-compare", arch).join("serial.log");
    let mut session = Session::new();
    let budget = crate::vm::accel::boot_budget(arch, res.accel);
    let vm = start::start(&mut session, res, &args.opts, Console::File(log), &[])?;
    let boot = super::probe_up(&mut session, &vm, Probe::Health, Some(e2e), budget)?;
    let r = workload::lifecycle(res, &vm, &args.opts, args.lifecycle_runs, e2e)?;
    Ok([
        boot.as_secs_f64() * 1000.0,
        r.p50_ms,
        r.p99_ms,
        (r.agent_rss_bytes / 1024) as f64,
    ])
}

fn verdicts(base: &Samples, head: &Samples) -> Vec<Verdict> {
    METRICS
        .iter()
        .enumerate()
        .map(|(k, &(metric, unit))| {
            let pairs = base.paired_with(head, k);
            verdict(metric, unit, &base.values[k], &head.values[k], pairs)
        })
        .collect()
}

/// `pairs`: the (base, head) samples of the rounds both sides have.
fn verdict(
    metric: &'static str,
    unit: &'static str,
    base: &[f64],
    head: &[f64],
    pairs: (Vec<f64>, Vec<f64>),
) -> Verdict {
    let (bm, hm) = (median(base), median(head));
    let ratio = bm.zip(hm).filter(|(b, _)| *b != 0.0).map(|(b, h)| h / b);
    let ratios: Vec<f64> = pairs
        .0
        .iter()
        .zip(&pairs.1)
        .filter(|(b, _)| **b != 0.0)
        .map(|(b, h)| h / b)
        .collect();
    let p_paired = wilcoxon::test(&pairs.0, &pairs.1).map(|o| o.p);
    Verdict {
        metric,
        unit,
        base_median: bm,
        head_median: hm,
        ratio,
        pairs: pairs.0.len(),
        paired_ratio: median(&ratios),
        p_paired,
        p_value: mann_whitney::test(base, head).map(|o| o.p),
        significant: p_paired.is_some_and(|p| p < ALPHA),
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The commit the harness, recipe and kernel come from ("+ changes" when
/// the worktree has some).
fn this_checkout() -> String {
    let repo = crate::paths::repo_root();
    let sha = super::revision::rev_parse(&repo, "HEAD")
        .ok()
        .flatten()
        .unwrap_or_else(|| "an unknown commit".to_string());
    let dirty = crate::cmd::read(std::process::Command::new("git").current_dir(&repo).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .is_ok_and(|s| !s.is_empty());
    if dirty {
        format!("{sha} + changes")
    } else {
        sha
    }
}

fn render(
    args: &CompareArgs,
    sides: &[Side; 2],
    harness: &str,
    verdicts: &[Verdict],
    samples: &[Samples; 2],
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## bench compare: {}, {} rounds A B A B ..., {} life cycles per boot, boot {:?}\n",
        args.arch, args.rounds, args.lifecycle_runs, args.opts.boot
    );
    let _ = writeln!(s, "- base (A): {}", sides[0].describe());
    let _ = writeln!(s, "- head (B): {}", sides[1].describe());
    let _ = writeln!(
        s,
        "- only the agent differs: both images are this checkout's recipe and kernel, \
         driven by its e2e harness (`{}`)",
        harness
    );
    if let Some(load) = super::load_average() {
        let _ = writeln!(s, "- {}", super::host_line(&load));
    }
    let _ = writeln!(
        s,
        "\n| metric | base median | head median | head/base | rounds' head/base (median) | p (Wilcoxon, paired) | p (Mann-Whitney) | significant (paired p < {ALPHA}) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    let num =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for v in verdicts {
        let _ = writeln!(
            s,
            "| {} | {} {u} | {} {u} | {} | {} ({} pairs) | {} | {} | {} |",
            v.metric,
            num(v.base_median, 1),
            num(v.head_median, 1),
            num(v.ratio, 3),
            num(v.paired_ratio, 3),
            v.pairs,
            num(v.p_paired, 4),
            num(v.p_value, 4),
            if v.significant { "yes" } else { "no" },
            u = v.unit,
        );
    }
    for (name, side) in ["base", "head"].iter().zip(samples) {
        if !side.failures.is_empty() {
            let _ = writeln!(s, "\nFailed boots of {name}:");
            for f in &side.failures {
                let _ = writeln!(s, "- {f}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_empty_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    fn aligned(base: &[f64], head: &[f64]) -> (Vec<f64>, Vec<f64>) {
        (base.to_vec(), head.to_vec())
    }

    #[test]
    fn a_clear_slowdown_is_significant_and_noise_is_not() {
        let base = [100.0, 102.0, 98.0, 101.0, 99.0, 100.5];
        let slower = [120.0, 118.0, 125.0, 121.0, 119.0, 120.0];
        let v = verdict("boot", "ms", &base, &slower, aligned(&base, &slower));
        assert_eq!(v.base_median, Some(100.25));
        assert_eq!(v.head_median, Some(120.0));
        assert!((v.ratio.unwrap() - 120.0 / 100.25).abs() < 1e-12);
        assert_eq!(v.pairs, 6);
        assert!(v.significant, "{v:?}");
        let same = [101.5, 98.5, 100.5, 99.5, 102.5, 99.0];
        let v = verdict("boot", "ms", &base, &same, aligned(&base, &same));
        assert!(!v.significant, "{v:?}");
    }

    /// The reason for the paired test: a steady 20 % under a host drifting
    /// by a second across rounds (the x86_64 A/B of session 8: 6 of 6 rounds
    /// faster, Mann-Whitney p = 0.18).
    #[test]
    fn a_steady_gain_under_drift_is_significant_paired() {
        let base = [1600.0, 2600.0, 1700.0, 2100.0, 1900.0, 2400.0];
        let head: Vec<f64> = base.iter().map(|b| b * 0.8).collect();
        let v = verdict("boot", "ms", &base, &head, aligned(&base, &head));
        assert!(v.p_value.unwrap() > 0.05, "{v:?}");
        assert!(v.significant, "{v:?}");
        assert!((v.paired_ratio.unwrap() - 0.8).abs() < 1e-12);
    }

    /// A round that failed on one side is left out of the pairs, not shifted.
    #[test]
    fn pairs_follow_the_rounds() {
        let base = Samples {
            values: [vec![10.0, 11.0, 12.0], vec![], vec![], vec![]],
            rounds: vec![0, 1, 2],
            failures: vec![],
        };
        let head = Samples {
            values: [vec![20.0, 22.0], vec![], vec![], vec![]],
            rounds: vec![0, 2],
            failures: vec!["round 1 head: boom".into()],
        };
        assert_eq!(
            base.paired_with(&head, 0),
            (vec![10.0, 12.0], vec![20.0, 22.0])
        );
        assert_eq!(base.paired_with(&head, 1), (vec![], vec![]));
    }

    #[test]
    fn a_side_without_samples_has_no_verdict() {
        let v = verdict("boot", "ms", &[1.0, 2.0, 3.0], &[], (vec![], vec![]));
        assert_eq!(v.head_median, None);
        assert_eq!(v.ratio, None);
        assert_eq!(v.p_value, None);
        assert_eq!(v.p_paired, None);
        assert_eq!(v.pairs, 0);
        assert!(!v.significant);
    }
}
